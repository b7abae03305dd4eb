"""An independent CRI client for ImageService: upstream-generated stubs (PyPI
container-runtime-interface-api) over grpcio, sharing no code with crid.

Usage: cri_images.py SOCKET IMAGE -> pulls IMAGE, lists, inspects (verbose), removes, inspects
again, and prints one JSON document with what crid answered.
"""
import json
import sys

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc


def main() -> None:
    # See cri_client.py: grpc-go's authority, which tonic's h2 accepts.
    channel = grpc.insecure_channel(
        f"unix://{sys.argv[1]}", options=[("grpc.default_authority", "localhost")]
    )
    img = api_pb2_grpc.ImageServiceStub(channel)
    image = sys.argv[2]
    out = {}

    pulled = img.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=120)
    out["image_ref"] = pulled.image_ref

    listed = img.ListImages(api_pb2.ListImagesRequest(), timeout=10)
    out["list"] = [
        {"id": i.id, "repo_tags": list(i.repo_tags), "repo_digests": list(i.repo_digests), "size": i.size}
        for i in listed.images
    ]

    st = img.ImageStatus(api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image), verbose=True), timeout=10)
    out["status"] = {"id": st.image.id, "has_image": st.HasField("image"), "info": json.loads(st.info["info"])}

    fs = img.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=30)
    out["fs"] = {
        "mountpoint": fs.image_filesystems[0].fs_id.mountpoint,
        "used_bytes": fs.image_filesystems[0].used_bytes.value,
        "inodes_used": fs.image_filesystems[0].inodes_used.value,
    }

    img.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=30)
    gone = img.ImageStatus(api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)), timeout=10)
    out["after_remove_has_image"] = gone.HasField("image")

    try:
        img.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image="NOT a reference")), timeout=10)
        out["bad_pull"] = "OK"
    except grpc.RpcError as e:
        out["bad_pull"] = e.code().name

    print(json.dumps(out))


if __name__ == "__main__":
    main()

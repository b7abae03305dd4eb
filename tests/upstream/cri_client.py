"""An independent CRI client: upstream-generated stubs (PyPI container-runtime-interface-api)
over grpcio. It shares no code with crid, so it proves crid speaks the upstream wire format.

Usage: cri_client.py SOCKET   -> prints one JSON document with what crid answered.
"""
import json
import sys

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc


def main() -> None:
    # grpcio sends the socket path as :authority, which the h2 crate under tonic rejects as
    # malformed (RST_STREAM PROTOCOL_ERROR). grpc-go clients (kubelet, crictl, critest) send
    # "localhost"; do the same. docs/troubleshooting.md records this.
    channel = grpc.insecure_channel(
        f"unix://{sys.argv[1]}", options=[("grpc.default_authority", "localhost")]
    )
    rt = api_pb2_grpc.RuntimeServiceStub(channel)
    img = api_pb2_grpc.ImageServiceStub(channel)
    out = {}

    v = rt.Version(api_pb2.VersionRequest(version="0.1.0"), timeout=10)
    out["version"] = {
        "version": v.version,
        "runtime_name": v.runtime_name,
        "runtime_version": v.runtime_version,
        "runtime_api_version": v.runtime_api_version,
    }

    s = rt.Status(api_pb2.StatusRequest(verbose=True), timeout=10)
    out["status"] = {
        "conditions": {c.type: {"status": c.status, "reason": c.reason} for c in s.status.conditions},
        "handlers": [h.name for h in s.runtime_handlers],
        "info_keys": sorted(s.info.keys()),
    }

    rc = rt.RuntimeConfig(api_pb2.RuntimeConfigRequest(), timeout=10)
    out["cgroup_driver"] = api_pb2.CgroupDriver.Name(rc.linux.cgroup_driver)

    try:
        img.ListImages(api_pb2.ListImagesRequest(), timeout=10)
        out["list_images"] = "OK"
    except grpc.RpcError as e:
        out["list_images"] = e.code().name

    print(json.dumps(out))


if __name__ == "__main__":
    main()

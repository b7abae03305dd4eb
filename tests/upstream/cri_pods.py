"""An independent CRI client for pods and containers: upstream-generated stubs (PyPI
container-runtime-interface-api) over grpcio, sharing no code with crid.

Usage:
  cri_pods.py SOCKET run IMAGE LOGDIR  -> pulls IMAGE, runs a pod with a busybox container
      that logs, reads its CRI log, execs into it; prints JSON with the IDs and what it saw.
  cri_pods.py SOCKET check POD CTR     -> after a daemon restart: status of both, an exec,
      then stops and removes the pod; prints JSON.
  cri_pods.py SOCKET network HTTPD BUSYBOX HOSTPORT -> runs an httpd pod with a hostPort and
      a busybox pod, fetches the httpd page from the busybox pod over the pod network and
      from the host at 127.0.0.1:HOSTPORT, removes both pods; prints JSON.
"""
import socket
import json
import sys
import time

import grpc
from cri_api.v1 import api_pb2, api_pb2_grpc


def channel(sock):
    # See cri_client.py: grpc-go's authority, which tonic's h2 accepts.
    return grpc.insecure_channel(f"unix://{sock}", options=[("grpc.default_authority", "localhost")])


def run(rt, img, image, logdir):
    img.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=120)
    pod_config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="upstream", uid="upstream-uid", namespace="default"),
        hostname="upstream",
        log_directory=logdir,
    )
    pod = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config), timeout=60).pod_sandbox_id
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app"),
        image=api_pb2.ImageSpec(image=image),
        command=["sh", "-c", "echo hello from busybox; exec sleep 1000"],
        log_path="app.log",
    )
    ctr = rt.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod, config=config, sandbox_config=pod_config), timeout=60
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=ctr), timeout=60)
    status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=ctr), timeout=10).status
    log = ""
    for _ in range(100):
        with open(status.log_path) as f:
            log = f.read()
        if "hello" in log:
            break
        time.sleep(0.05)
    ex = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=ctr, cmd=["cat", "/etc/hostname"], timeout=10), timeout=30)
    return {
        "pod": pod,
        "ctr": ctr,
        "state": api_pb2.ContainerState.Name(status.state),
        "log_path": status.log_path,
        "log": log,
        "exec": {"stdout": ex.stdout.decode(), "exit_code": ex.exit_code},
    }


def check(rt, pod, ctr):
    st = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=ctr), timeout=10).status
    ps = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=10).status
    ex = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=ctr, cmd=["echo", "after restart"], timeout=10), timeout=30)
    listed = rt.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    stopped = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=ctr), timeout=10).status
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    return {
        "state": api_pb2.ContainerState.Name(st.state),
        "pod_state": api_pb2.PodSandboxState.Name(ps.state),
        "exec": ex.stdout.decode(),
        "listed": [c.id for c in listed],
        "stopped": api_pb2.ContainerState.Name(stopped.state),
        "pods_after_remove": len(rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items),
    }


def pod(rt, name, port_mappings=()):
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, uid=name + "-uid", namespace="default"),
        hostname=name,
        port_mappings=list(port_mappings),
    )
    return rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id, config


def container(rt, pod_id, pod_config, image, command):
    config = api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="c"), image=api_pb2.ImageSpec(image=image), command=command
    )
    ctr = rt.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_config), timeout=60
    ).container_id
    rt.StartContainer(api_pb2.StartContainerRequest(container_id=ctr), timeout=60)
    return ctr


def network(rt, img, httpd, busybox, host_port):
    for image in (httpd, busybox):
        img.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=120)
    mapping = api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=80, host_port=host_port)
    server, server_config = pod(rt, "web", [mapping])
    container(rt, server, server_config, httpd, [])
    client, client_config = pod(rt, "client")
    sh = container(rt, client, client_config, busybox, ["sleep", "1000"])
    ip = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=server), timeout=10).status.network.ip
    # nc, not wget: Debian's static busybox wget crashes in glibc's name resolution.
    script = (
        "for i in $(seq 20); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 80 && exit 0; sleep 0.25; done; exit 1" % ip
    )
    pod_to_pod = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=sh, cmd=["sh", "-c", script], timeout=30), timeout=60)
    from_host = b""
    for _ in range(40):
        try:
            with socket.create_connection(("127.0.0.1", host_port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while chunk := s.recv(65536):
                    from_host += chunk
            if from_host:
                break
        except OSError:
            time.sleep(0.25)
    for p in (server, client):
        rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=p), timeout=60)
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=p), timeout=60)
    return {
        "server_ip": ip,
        "pod_to_pod": pod_to_pod.stdout.decode(errors="replace"),
        "pod_to_pod_exit": pod_to_pod.exit_code,
        "from_host": from_host.decode(errors="replace"),
    }


def main() -> None:
    ch = channel(sys.argv[1])
    rt = api_pb2_grpc.RuntimeServiceStub(ch)
    img = api_pb2_grpc.ImageServiceStub(ch)
    if sys.argv[2] == "run":
        out = run(rt, img, sys.argv[3], sys.argv[4])
    elif sys.argv[2] == "network":
        out = network(rt, img, sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        out = check(rt, sys.argv[3], sys.argv[4])
    print(json.dumps(out))


if __name__ == "__main__":
    main()

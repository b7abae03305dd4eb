"""The Kubernetes Python client's WebSocket stream client against a CRI streaming URL.

    stream_client.py exec URL [--tty] [--stdin TEXT]   -> JSON {stdout, stderr, returncode}
    stream_client.py portforward URL PORT REQUEST      -> JSON {data, error}

tests/streaming.rs runs it with .venv's python (scripts/setup.sh installs the package).
"""

import json
import sys
import time

from kubernetes.client import Configuration
from kubernetes.stream import ws_client


def run_exec(url, args):
    tty = "--tty" in args
    stdin = None
    if "--stdin" in args:
        stdin = args[args.index("--stdin") + 1]
    client = ws_client.WSClient(
        Configuration(), ws_client.get_websocket_url(url), None, capture_all=True
    )
    if tty:
        client.write_channel(ws_client.RESIZE_CHANNEL, json.dumps({"Width": 100, "Height": 30}))
    if stdin is not None:
        client.write_stdin(stdin)
        client.close_channel(ws_client.STDIN_CHANNEL)
    client.run_forever(timeout=20)
    out = {
        "subprotocol": client.subprotocol,
        "stdout": client.read_stdout(timeout=0) or "",
        "stderr": client.read_stderr(timeout=0) or "",
        "returncode": client.returncode,
    }
    client.close()
    print(json.dumps(out))


def run_port_forward(url, port, request):
    pf = ws_client.portforward_call(
        Configuration(), "GET", url + ("&" if "?" in url else "?") + "ports=" + port
    )
    sock = pf.socket(int(port))
    sock.settimeout(10)
    sock.sendall(request.encode())
    got = b""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            chunk = sock.recv(65536)
        except Exception:
            break
        if not chunk:
            break
        got += chunk
        if b"</html>" in got:
            break
    print(json.dumps({"data": got.decode("utf-8", "replace"), "error": pf.error(int(port))}))
    pf.close()


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "exec":
        run_exec(url, sys.argv[3:])
    elif mode == "portforward":
        run_port_forward(url, sys.argv[3], sys.argv[4])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()

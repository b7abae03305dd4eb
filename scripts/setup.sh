#!/usr/bin/env bash
# Installs everything crid's build, tests and conformance run need on Debian 12, idempotently:
# Debian packages (runtimes, CNI plugins, registry, busybox for fixture images), a default CNI
# network configuration when the host has none, the Python environment of the upstream-client
# tests (.venv), cargo-nextest, and youki (not a Debian package: built from crates.io into
# target/tools, once).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  runc crun                      # OCI runtimes crid drives
  runsc                          # gVisor's runtime, a matrix cell (--platform=ptrace here)
  libseccomp-dev                 # youki's seccomp support links it (built below)
  containernetworking-plugins    # CNI plugins (bridge, host-local, portmap, loopback)
  busybox-static                 # the fixture images are built from its static binary
  docker-registry                # the real registry the fixtures push to
  apache2-utils                  # htpasswd, for the registry's basic-auth fixture
  skopeo                         # an independent image client the fixture tests check against
  containerd                     # the reference of the differential run and the pull benchmark
  conmon                         # CRI-O's monitor: the memory comparison of the lifecycle benchmark
  iproute2 iptables              # network namespaces and CNI's rules
  apparmor                       # apparmor_parser: crid-default is compiled in a unit test
  vagrant                        # `vagrant validate` of vagrant/ (no provider runs here)
  python3-venv                   # for Debian's python3; pyenv interpreters have venv built in
  golang-go golang-github-docker-spdystream-dev  # the independent SPDY client (tests/spdy-client)
  pkg-config gcc                 # build tools some crates expect
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing; run as root to install them: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A default pod network when the host has none: bridge crid0 on 10.88.0.0/16 with host-local
# IPAM and portmap (fixtures/cni/10-crid-bridge.conflist). Loopback is not in the chain: crid
# brings `lo` up in each pod's namespace itself. An existing .conf/.conflist/.json is kept.
cni_dir=/etc/cni/net.d
if ! compgen -G "$cni_dir/*.conf" >/dev/null && ! compgen -G "$cni_dir/*.conflist" >/dev/null \
    && ! compgen -G "$cni_dir/*.json" >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: $cni_dir has no CNI configuration; run as root to install the default one" >&2
    exit 1
  fi
  echo "setup: installing $cni_dir/10-crid-bridge.conflist"
  install -d -m 0755 "$cni_dir"
  install -m 0644 fixtures/cni/10-crid-bridge.conflist "$cni_dir/10-crid-bridge.conflist"
fi

# The upstream-generated CRI client (PyPI container-runtime-interface-api) that checks crid's
# wire format from the outside: tests/upstream_client.rs and api/tests/upstream_wire.rs.
if ! .venv/bin/python -c 'import grpc, cri_api.v1.api_pb2, kubernetes.stream' 2>/dev/null; then
  echo "setup: creating .venv for the upstream-client tests"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/upstream/requirements.txt
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# youki, a matrix cell: crates.io's youki, pinned, with both cgroup versions (its published
# crate enables no cgroup feature by default, and this host is hybrid), systemd and seccomp.
# Its own target directory, so crid's build is untouched; kept, so a rebuild is quick.
youki_version=0.7.0
if ! target/tools/bin/youki --version 2>/dev/null | grep -q "version: $youki_version"; then
  echo "setup: building youki $youki_version into target/tools (about two minutes)"
  CARGO_TARGET_DIR=target/tools/build cargo install --locked --quiet youki \
    --version "$youki_version" --features "v1 v2 systemd seccomp" --root target/tools
fi

#!/usr/bin/env bash
# Installs what the VM fixture (crid-conformance fixtures vm) needs on a Debian 12 host,
# idempotently, apart from scripts/setup.sh so that the normal CI path does not pay for it:
# mmdebstrap and e2fsprogs to build the guest image from Debian packages, and QEMU.
# QEMU: Debian's qemu-system-x86 when apt installs it; when apt refuses it (a newer
# qemu-utils from backports conflicts with it, as on the CI hosts), its packages are
# fetched with `apt-get download` and unpacked with `dpkg -x` into a private prefix
# ($CRID_VM_QEMU_PREFIX, default /opt/crid-vm/qemu), leaving the host's packages alone.
# Their shared libraries do not conflict and come from apt.
set -euo pipefail

prefix=${CRID_VM_QEMU_PREFIX:-/opt/crid-vm/qemu}
packages=(mmdebstrap e2fsprogs)
# The libraries qemu-system-x86 and qemu-system-common 7.2 depend on (minus qemu packages).
qemu_libs=(libaio1 libasound2 libbpf1 libbrlapi0.8 libcacard0 libcap-ng0 libcapstone4 libepoxy0
  libfdt1 libfuse3-3 libgbm1 libglib2.0-0 libgmp10 libgnutls30 libhogweed6 libibverbs1
  libjpeg62-turbo libncursesw6 libnettle8 libnuma1 libpixman-1-0 libpmem1 libpng16-16 librdmacm1
  libsasl2-2 libseccomp2 libslirp0 libsndio7.0 libspice-server1 libtinfo6 libudev1 liburing2
  libusb-1.0-0 libusbredirparser1 libvdeplug2 libzstd1 zlib1g)
qemu_debs=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu)

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "vm-setup: $1; run as root" >&2
    exit 1
  fi
}

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

have_qemu() {
  command -v qemu-system-x86_64 >/dev/null 2>&1 || [ -x "$prefix/usr/bin/qemu-system-x86_64" ]
}

mapfile -t missing < <(missing_pkgs "${packages[@]}")
updated=""
if ((${#missing[@]})); then
  need_root "these Debian packages are missing: ${missing[*]}"
  echo "vm-setup: installing ${missing[*]}"
  apt-get update -q && updated=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! have_qemu; then
  need_root "QEMU is missing"
  [ -n "$updated" ] || apt-get update -q
  # Debian's package first, unless installing it would remove anything.
  if ! apt-get install -s --no-install-recommends qemu-system-x86 2>/dev/null | grep -q '^Remv' \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86; then
    echo "vm-setup: installed qemu-system-x86"
  else
    echo "vm-setup: apt would remove packages for qemu-system-x86; unpacking it into $prefix"
    mapfile -t libs < <(missing_pkgs "${qemu_libs[@]}")
    if ((${#libs[@]})); then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${libs[@]}"
    fi
    dl=$(mktemp -d /tmp/crid-vm-qemu.XXXXXX)
    (cd "$dl" && apt-get download -q "${qemu_debs[@]}")
    rm -rf "$prefix.new" && mkdir -p "$prefix.new"
    for deb in "$dl"/*.deb; do dpkg -x "$deb" "$prefix.new"; done
    rm -rf "$dl" "$prefix" && mv "$prefix.new" "$prefix"
    if ldd "$prefix/usr/bin/qemu-system-x86_64" | grep -q 'not found'; then
      echo "vm-setup: $prefix/usr/bin/qemu-system-x86_64 misses libraries:" >&2
      ldd "$prefix/usr/bin/qemu-system-x86_64" | grep 'not found' >&2
      exit 1
    fi
  fi
fi
echo "vm-setup: ready ($(command -v qemu-system-x86_64 || echo "$prefix/usr/bin/qemu-system-x86_64"))"

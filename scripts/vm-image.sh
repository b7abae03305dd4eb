#!/usr/bin/env bash
# Builds a VM fixture guest from Debian packages (no downloaded cloud image) and prints the
# directory that holds it: rootfs.ext4 (the root disk), vmlinuz and initrd.img (Debian's
# kernel, for QEMU's direct kernel boot), cmdline, and recipe.sha256.
#
#   scripts/vm-image.sh [RECIPE_DIR] [CACHE_DIR]
#
# RECIPE_DIR (default fixtures/vm/debian12-cgroupv2) holds `packages` (one a line),
# `cmdline` (the kernel command line) and `customize.sh` (mmdebstrap's customize hook).
# The image is cached in CACHE_DIR (default $CARGO_TARGET_DIR/vm or target/vm) under the
# recipe's name and a hash of the recipe and of this script: a changed recipe builds a new
# image (and removes the older ones of that recipe); an unchanged one is reused. Needs root
# (mmdebstrap in root mode) and scripts/vm-setup.sh's packages. $CRID_VM_MIRROR overrides
# the Debian mirror.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
recipe=$(cd "${1:-$here/fixtures/vm/debian12-cgroupv2}" && pwd)
cache=${2:-${CARGO_TARGET_DIR:-$here/target}/vm}
suite=bookworm
mirror=${CRID_VM_MIRROR:-http://deb.debian.org/debian}
size=${CRID_VM_DISK_SIZE:-4G}

for f in packages cmdline customize.sh; do
  [ -f "$recipe/$f" ] || { echo "vm-image: $recipe/$f is missing" >&2; exit 1; }
done
name=$(basename "$recipe")
# The key: the recipe's files, this script, the suite (the mirror does not change content).
key=$( { (cd "$recipe" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
         sha256sum < "$0"; echo "$suite"; } | sha256sum | cut -c1-16)
out="$cache/$name-$key"
if [ -f "$out/recipe.sha256" ]; then
  echo "$out"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "vm-image: building the guest needs root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "vm-image: mmdebstrap missing; run scripts/vm-setup.sh" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.$name.lock"
flock 9
if [ -f "$out/recipe.sha256" ]; then  # built by another process while this one waited
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$cache/.build-$name.XXXXXX")
# mmdebstrap mounts /proc, /sys and /dev inside the root while it builds and unmounts them
# when it ends; a build killed half-way may leave them. Unmount whatever is still mounted
# below the build directory (deepest first) before removing it, and never cross into
# another file system while removing.
cleanup() {
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
pkgs=$(grep -v '^\s*#' "$recipe/packages" | xargs | tr ' ' ',')
started=$(date +%s)
echo "vm-image: building $name ($key) from $suite at $mirror" >&2
# A directory target: no loop devices and no mounts left behind; mke2fs -d makes the disk.
# One retry on a fresh root: a bootstrap failed once here in dpkg's first unpack (exit 28,
# its cause not in the output) and the next attempt with the same recipe built.
for attempt in 1 2; do
  if mmdebstrap --quiet --mode=root --variant=minbase --include="$pkgs" \
      --customize-hook="$recipe/customize.sh \"\$1\"" \
      "$suite" "$work/root" "$mirror" >&2; then
    break
  fi
  [ "$attempt" = 2 ] && { echo "vm-image: mmdebstrap failed twice" >&2; exit 1; }
  echo "vm-image: mmdebstrap failed; retrying once on a fresh root" >&2
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$work/root"
done
mkdir -p "$work/out"
kernel=$(ls "$work/root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$work/root"/boot/initrd.img-* | sort -V | tail -1)
cp "$kernel" "$work/out/vmlinuz"
cp "$initrd" "$work/out/initrd.img"
basename "$kernel" | sed 's/^vmlinuz-//' > "$work/out/kernel-version"
tr -s ' \n' ' ' < "$recipe/cmdline" | sed 's/ $//' > "$work/out/cmdline"
mke2fs -q -t ext4 -L crid-vm -d "$work/root" "$work/out/rootfs.ext4" "$size"
echo "$key" > "$work/out/recipe.sha256"
# Older images of this recipe go; the new one appears only when complete.
rm -rf "$cache/$name"-*
mv "$work/out" "$out"
echo "vm-image: built $out in $(( $(date +%s) - started ))s ($(du -sh --apparent-size "$out" | cut -f1) apparent, $(du -sh "$out" | cut -f1) on disk)" >&2
echo "$out"

#!/usr/bin/env bash
# The VM job: crid and the conformance suite inside a Debian 12 guest with systemd as PID 1,
# cgroup v2 only and AppArmor (docs/vm.md), judged against the guest's baseline
# (conformance/baseline/crid-vm-cgroupv2.toml).
#
#   scripts/vm.sh          every area of the suite, in two cells: crid with its cgroupfs
#                          driver, then with its systemd driver (pod slices, container scopes)
#   scripts/vm.sh --ci     the CI subset: runtime-info, pod-sandbox, container, resources, stats,
#                          security-context (AppArmor is judged only in this guest) with the
#                          cgroupfs driver; runtime-info, resources and stats with systemd's
#
# Installs the VM packages (scripts/vm-setup.sh), builds the guest image or reuses the cached
# one (target/vm/, keyed by the recipe's hash), boots it with QEMU (KVM when a guest kernel
# boots under it, TCG otherwise) and brings the cell's reports back to
# target/conformance/vm/vm-debian12-cgroupv2/ and .../vm-debian12-cgroupv2-systemd/ (or
# $CRID_REPORT_DIR/vm/...), one directory per cell: junit.xml,
# report.md, report.html, baseline.txt, the guest's crid.log, journal and serial console.
# CRID_BIN_DIR=target/debug reuses binaries already built. Fails on any difference from the
# baseline and on a guest that does not boot, hangs or ends without a result. Under TCG a
# whole-suite run may show kubelet-replay cases whose 1 s ExecSync probes time out (see the
# baseline's header); the --ci subset does not run them.
set -euo pipefail
cd "$(dirname "$0")/.."

ci_areas=(runtime-info pod-sandbox container resources stats security-context)
# The systemd driver changes where cgroups are made and read: the areas that look at them.
systemd_ci_areas=(runtime-info resources stats)
areas=()
systemd_areas=()
# Each guest's whole time (QEMU is killed after it): the cgroupfs subset takes about 9
# minutes under TCG on a loaded 2-core host (security-context 2 of them), the systemd one
# about 4, the whole suite about 20.
timeout=3600
for arg in "$@"; do
  case $arg in
    --ci) areas=("${ci_areas[@]}"); systemd_areas=("${systemd_ci_areas[@]}"); timeout=1500 ;;
    *) echo "usage: scripts/vm.sh [--ci]" >&2; exit 2 ;;
  esac
done

scripts/vm-setup.sh
if [ -n "${CRID_BIN_DIR:-}" ]; then
  bin=$CRID_BIN_DIR
else
  cargo build --release --locked -p crid -p crid-conformance --bins
  bin=target/release
fi
for b in crid crid-monitor crid-conformance; do
  [ -x "$bin/$b" ] || { echo "vm: $bin/$b is missing; build it or unset CRID_BIN_DIR" >&2; exit 1; }
done
bin=$(cd "$bin" && pwd)
out=${CRID_REPORT_DIR:-$PWD/target/conformance}/vm
mkdir -p "$out"

# One guest per cell: name, crid's cgroup driver, the cell's baseline, its areas.
run_cell() {
  local cell=$1 driver=$2 baseline=$3; shift 3
  local args=(fixtures vm run --bin-dir "$bin" --out "$out" --timeout "$timeout"
    --cgroup-driver "$driver" --baseline "$baseline")
  local a
  for a in "$@"; do args+=(--area "$a"); done
  local started rc=0
  started=$(date +%s)
  "$bin/crid-conformance" "${args[@]}" || rc=$?
  echo "vm $cell: finished in $(( $(date +%s) - started ))s; reports in $out/$cell/"
  [ -f "$out/$cell/baseline.txt" ] && cat "$out/$cell/baseline.txt"
  case $rc in
    0) echo "vm $cell: the guest's results match its baseline" ;;
    1) echo "vm $cell: the guest's results differ from its baseline (see baseline.txt above)" >&2 ;;
    *) echo "vm $cell: the guest failed (exit $rc); its console log is in $out/$cell/console.log" >&2 ;;
  esac
  return "$rc"
}

status=0
run_cell vm-debian12-cgroupv2 cgroupfs conformance/baseline/crid-vm-cgroupv2.toml \
  "${areas[@]}" || status=$?
rc=0
run_cell vm-debian12-cgroupv2-systemd systemd conformance/baseline/crid-vm-cgroupv2-systemd.toml \
  "${systemd_areas[@]}" || rc=$?
# A guest that failed (2) outranks results that differ (1).
[ "$rc" -gt "$status" ] && status=$rc
exit "$status"

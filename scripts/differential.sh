#!/usr/bin/env bash
# The differential check: the whole conformance suite against Debian's containerd 1.6 (its
# CRI plugin, runc, the CNI plugins, the fixture registry as a plain-HTTP mirror), compared
# with conformance/baseline/containerd-1.6.toml. Exits non-zero on any unexplained
# difference (a failure the baseline does not list, or a listed case that now passes), or
# when the host is not left as it was found. This is how the suite proves its cases right
# rather than fitted to crid. Reports land in target/conformance/containerd/.
# CRID_BIN_DIR=target/debug reuses the crid-conformance the test run already built (CI does);
# without it a debug build is made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

if [ -n "${CRID_BIN_DIR:-}" ]; then
  bin=$(cd "$CRID_BIN_DIR" && pwd)/crid-conformance
  [ -x "$bin" ] || { echo "differential: $bin is missing; build it or unset CRID_BIN_DIR" >&2; exit 1; }
else
  cargo build --locked -p crid-conformance --bin crid-conformance
  bin="$PWD/target/debug/crid-conformance"
fi
out=${CRID_REPORT_DIR:-$PWD/target/conformance}/containerd
mkdir -p "$out"

work=$(mktemp -d /tmp/crid-differential.XXXXXX)
teardown() {
  # Each fixture stops only what it started: by recorded PID, shims by our socket path.
  if [ -f "$work/containerd/containerd-state.json" ]; then
    "$bin" fixtures containerd down --state-dir "$work/containerd" || echo "differential: containerd teardown reported leftovers" >&2
  fi
  if [ -f "$work/fixtures/state.json" ]; then
    "$bin" fixtures down --state-dir "$work/fixtures" >/dev/null || true
  fi
}
trap 'teardown; rm -rf "$work"' EXIT

"$bin" fixtures up --state-dir "$work/fixtures" | head -1
"$bin" fixtures containerd up --state-dir "$work/containerd" --registry-state "$work/fixtures"
bridge=$(sed -n 's/.*"bridge": "\([^"]*\)".*/\1/p' "$work/containerd/containerd-state.json")

"$bin" run --endpoint "unix://$work/containerd/containerd.sock" \
  --registry-state "$work/fixtures" \
  --junit "$out/junit.xml" --markdown "$out/report.md" \
  || echo "run: some cases failed (judged against the baseline below)"
echo
status=0
"$bin" compare --junit "$out/junit.xml" \
  --baseline conformance/baseline/containerd-1.6.toml | tee "$out/baseline.txt" || status=$?

# Tear down now, then check that nothing of this run is left on the host.
teardown
leftovers=()
for p in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -qF "$work/"; then
    leftovers+=("process ${p#/proc/}: $(tr '\0' ' ' 2>/dev/null < "$p/cmdline")")
  fi
done
if grep -qF "$work/" /proc/self/mountinfo; then
  leftovers+=("mounts: $(grep -F "$work/" /proc/self/mountinfo | cut -d' ' -f5 | tr '\n' ' ')")
fi
if [ -n "$bridge" ] && [ -e "/sys/class/net/$bridge" ]; then
  leftovers+=("bridge $bridge")
fi
if [ -n "$bridge" ] && iptables-save 2>/dev/null | grep -qF "crt-${bridge#crt}"; then
  leftovers+=("iptables rules naming network crt-${bridge#crt}")
fi
if [ -e "$work/containerd" ] || [ -e "$work/fixtures" ]; then
  leftovers+=("directories under $work")
fi
if ((${#leftovers[@]})); then
  printf 'differential: left on the host: %s\n' "${leftovers[@]}" >&2
  status=1
else
  echo "differential: host left as found (no process, mount, bridge, rule or directory of this run)"
fi
echo "reports: $out/report.md, $out/junit.xml, $out/baseline.txt"
exit "$status"

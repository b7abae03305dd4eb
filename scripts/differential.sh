#!/usr/bin/env bash
# The differential check: the whole conformance suite against Debian's containerd 1.6 (its
# CRI plugin, runc, the CNI plugins, the fixture registry as a plain-HTTP mirror), compared
# with conformance/baseline/containerd-1.6.toml. Exits non-zero on any unexplained
# difference (a failure the baseline does not list, a listed failure with another message, a
# listed case that now passes, a case missing from the report), on a harness error (the run
# exits other than 0 or 1), or when the host is not left as it was found. A second containerd
# with an empty CNI directory is the NetworkReady=false endpoint of
# runtime-info/status-not-ready-reason. This is how the suite proves its cases right
# rather than fitted to crid. Reports land in target/conformance/containerd/.
# CRID_BIN_DIR=target/debug reuses the binary the test run built (CI does this).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/judge.sh
scripts/setup.sh

if [ -n "${CRID_BIN_DIR:-}" ]; then
  bin="$(cd "$CRID_BIN_DIR" && pwd)/crid-conformance"
  [ -x "$bin" ] || { echo "differential: $bin is missing; build it or unset CRID_BIN_DIR" >&2; exit 1; }
else
  cargo build --release --locked -p crid-conformance --bin crid-conformance
  bin="$PWD/target/release/crid-conformance"
fi
out=${CRID_REPORT_DIR:-$PWD/target/conformance}/containerd
mkdir -p "$out"
# Reports of an earlier run go first: a run that writes none must not be judged by them.
fresh_report "$out/junit.xml" "$out/report.md" "$out/baseline.txt"

work=$(mktemp -d /tmp/crid-differential.XXXXXX)
teardown() {
  # Each fixture stops only what it started: by recorded PID, shims by our socket path.
  for d in "$work/containerd" "$work/containerd-unready"; do
    if [ -f "$d/containerd-state.json" ]; then
      "$bin" fixtures containerd down --state-dir "$d" || echo "differential: containerd teardown ($d) reported leftovers" >&2
    fi
  done
  if [ -f "$work/fixtures/state.json" ]; then
    "$bin" fixtures down --state-dir "$work/fixtures" >/dev/null || true
  fi
}
trap 'teardown; rm -rf "$work"' EXIT

"$bin" fixtures up --state-dir "$work/fixtures" | head -1
"$bin" fixtures containerd up --state-dir "$work/containerd" --registry-state "$work/fixtures"
"$bin" fixtures containerd up --state-dir "$work/containerd-unready" --registry-state "$work/fixtures" --no-network
bridge=$(sed -n 's/.*"bridge": "\([^"]*\)".*/\1/p' "$work/containerd/containerd-state.json")

# 0: every required case passed; 1: some failed (the baseline judges them); else a harness
# error, which ends the job.
run_suite run "$bin" run --endpoint "unix://$work/containerd/containerd.sock" \
  --registry-state "$work/fixtures" \
  --not-ready-endpoint "unix://$work/containerd-unready/containerd.sock" \
  --junit "$out/junit.xml" --markdown "$out/report.md" || exit
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
if [ -e "$work/containerd" ] || [ -e "$work/containerd-unready" ] || [ -e "$work/fixtures" ]; then
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

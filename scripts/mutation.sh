#!/usr/bin/env bash
# The mutation score (issue 15): builds crid with its named faults (`--features faults`,
# src/faults.rs), starts the fixture registry, and runs `crid-conformance mutate`: for each
# fault a fresh crid started with `--fault NAME` and the cases of the areas the fault
# declares, after a control run without a fault. The results are merged into
# conformance/traceability/mutation.toml and docs/traceability.md is regenerated from it;
# the job fails when a fault is caught by no case (a gap in the harness).
#
#   scripts/mutation.sh                  every fault, its areas (15 min 30 s measured)
#   scripts/mutation.sh --full           every fault, the whole suite (about 2 h 30 min)
#   scripts/mutation.sh --fault NAME...  these faults only (merged into the record)
#   scripts/mutation.sh --sample         CI: three faults, nothing recorded
#
# CRID_FAULTS_BIN_DIR reuses a faults build (crid and crid-monitor); otherwise one is built
# in target/faults, apart from the normal build. CRID_BIN_DIR names the harness's directory
# (default: built in target/debug). CRID_REGISTRY_STATE reuses a running fixture registry.
# CRID_MUTATION_SUBNET is the daemons' CNI subnet (default 10.219.0.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
record=conformance/traceability/mutation.toml
while (($#)); do
  case $1 in
    --full) args+=(--full) ;;
    --fault) args+=(--fault "${2:?--fault needs a name}"); shift ;;
    # One fault an outside suite found (the first), one of the spec translation, one of
    # the monitor (another process, reached through the daemon's environment).
    --sample) args+=(--fault stop-unknown-not-found --fault ignore-readonly-rootfs --fault log-no-partial-tag); record="" ;;
    *) echo "usage: scripts/mutation.sh [--full] [--sample] [--fault NAME]..." >&2; exit 2 ;;
  esac
  shift
done

if [ -n "${CRID_FAULTS_BIN_DIR:-}" ]; then
  faults_bin=$CRID_FAULTS_BIN_DIR
else
  cargo build --locked --features faults --bin crid --bin crid-monitor --target-dir target/faults
  faults_bin=target/faults/debug
fi
if [ -n "${CRID_BIN_DIR:-}" ]; then
  harness=$CRID_BIN_DIR/crid-conformance
else
  cargo build --locked -p crid-conformance --bin crid-conformance
  harness=target/debug/crid-conformance
fi
faults_bin=$(cd "$faults_bin" && pwd)

work=$(mktemp -d /tmp/crid-mutation.XXXXXX)
cleanup() {
  if [ -f "$work/fixtures/state.json" ]; then
    "$harness" fixtures down --state-dir "$work/fixtures" >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
registry=${CRID_REGISTRY_STATE:-}
if [ -z "$registry" ]; then
  "$harness" fixtures up --state-dir "$work/fixtures" | head -1
  registry=$work/fixtures
fi

status=0
"$harness" mutate --crid-bin-dir "$faults_bin" --registry-state "$registry" --work-dir "$work" \
  --subnet "${CRID_MUTATION_SUBNET:-10.219.0.0/24}" \
  ${record:+--record "$record"} "${args[@]}" || status=$?
if [ -n "$record" ]; then
  # The generator reads the record at build time: build it again, then regenerate.
  cargo run -q --locked -p crid-conformance -- traceability > docs/traceability.md
  echo "mutation: docs/traceability.md regenerated from $record"
fi
exit "$status"

#!/usr/bin/env bash
# The main job: set-up, build, start the fixture registry and crid on a private socket (and a
# second crid without a network, for the NetworkReady=false case), run the conformance suite
# against crid and print the report, then compare the results with crid's baseline
# (conformance/baseline/crid.toml); then run the suite on crid's other runtime handler
# (crun) and compare it with the same baseline; then the core areas (pod, container, exec,
# logs, stats) on a third crid's handlers, each compared with its own baseline: a shim v2
# (containerd-shim-runc-v2, the path Kata takes; conformance/baseline/crid-shim.toml),
# youki (crid-youki.toml) and gVisor's runsc (crid-runsc.toml); then a bounded property-based run against crid;
# then a bounded run of malformed and hostile requests against crid; then a 4-minute soak (beside the runsc cell);
# then a sample of the mutation score (three faults of crid's faults build, each caught);
# last, the grid of every cell that ran (runc, crun, shim v2, youki, runsc, the guests) in
# one matrix report (target/conformance/grid/).
# The job fails on any unexplained difference (a failure the baseline does not list, a listed
# failure with another message, a listed case that now passes, a case missing from a report),
# on a harness error (exit status other than 0 or 1), on a props failure or timeout, and on
# a hostile-run failure (a wrong answer, a leaked or lost object, a panic) or timeout.
# Reports land in target/conformance/ (or $CRID_REPORT_DIR); earlier ones are removed first.
# CRID_BIN_DIR=target/debug reuses binaries that the test run already built (CI does this:
# building only the binaries would unify features differently and recompile shared crates).
# --vm also runs the whole suite in the cgroup v2 guest, with crid's cgroupfs and systemd
# drivers (scripts/vm.sh, docs/vm.md), after the host's job; --vm-ci runs the guests' CI
# subsets (scripts/vm.sh --ci) instead. --full runs every area, not only the core ones, on
# the shim v2, youki and runsc cells (about 3, 3 and 12 minutes instead of 1.5, 1.5 and 5).
set -euo pipefail
cd "$(dirname "$0")/.."
vm=()
full=false
for arg in "$@"; do
  case $arg in
    --vm) vm=(scripts/vm.sh) ;;
    --vm-ci) vm=(scripts/vm.sh --ci) ;;
    --full) full=true ;;
    *) echo "usage: scripts/conformance.sh [--vm | --vm-ci] [--full]" >&2; exit 2 ;;
  esac
done
. scripts/lib/judge.sh
scripts/setup.sh

if [ -n "${CRID_BIN_DIR:-}" ]; then
  bin=$CRID_BIN_DIR
  for b in crid crid-conformance; do
    [ -x "$bin/$b" ] || { echo "conformance: $bin/$b is missing; build it or unset CRID_BIN_DIR" >&2; exit 1; }
  done
else
  # Both packages: in this workspace a bare `--bins` builds only the root package (crid).
  cargo build --release --locked -p crid -p crid-conformance --bins
  bin=target/release
fi
bin=$(cd "$bin" && pwd)
out=${CRID_REPORT_DIR:-$PWD/target/conformance}
mkdir -p "$out"

# Reports of an earlier run go first: a run that writes none must not be judged by them.
fresh_report "$out/junit.xml" "$out/report.md" "$out/report.html" "$out/baseline.txt" \
  "$out/matrix" "$out/matrix.txt" "$out/shim" "$out/youki" "$out/runsc" "$out/props.txt" "$out/hostile.txt" "$out/soak.txt" \
  "$out/mutation.txt" "$out/grid" "$out/vm"

work=$(mktemp -d /tmp/crid-conformance.XXXXXX)
crid_pid=""
unready_pid=""
cell_crids=()
cell_bridges=()
cleanup() {
  # Only the daemons this script started, by PID; the registry by its recorded PID.
  for pid in "$crid_pid" "$unready_pid" "${cell_crids[@]}"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" || true
    fi
  done
  if [ -f "$work/fixtures/state.json" ]; then
    "$bin/crid-conformance" fixtures down --state-dir "$work/fixtures" >/dev/null || true
  fi
  for b in "${bridge:-}" "${cell_bridges[@]}"; do
    if [ -n "$b" ] && [ -e "/sys/class/net/$b" ]; then
      ip link del "$b" || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/crid-conformance" fixtures up --state-dir "$work/fixtures" | head -1
# The fixture registry speaks plain HTTP on loopback: crid must list it as insecure.
registry=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["host"])' "$work/fixtures/state.json")

mkdir -p "$work/net.d" "$work/crid.d"
# A CNI network of this run's own (bridge, private subnet, lease directory), so the
# networking cases run and nothing touches the host's default network.
bridge="crcf$$"
bridge=${bridge:0:15}
cat > "$work/net.d/10-conformance.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "crid-conformance", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.216.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$work/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
cat > "$work/crid.toml" <<TOML
[server]
listen = "$work/crid.sock"
[image]
insecure_registries = ["$registry"]
pause_image = "$registry/pause:latest"
[storage]
root = "$work/root"
runroot = "$work/run"
[network]
cni_config_dir = "$work/net.d"
TOML

# The same crid with an empty CNI directory and storage of its own: NetworkReady is false
# there, which runtime-info/status-not-ready-reason needs (a healthy endpoint has no false
# condition to judge). It serves only Status.
mkdir -p "$work/unready/net.d" "$work/unready/crid.d"
cat > "$work/unready/crid.toml" <<TOML
[server]
listen = "$work/unready/crid.sock"
[storage]
root = "$work/unready/root"
runroot = "$work/unready/run"
[network]
cni_config_dir = "$work/unready/net.d"
TOML

"$bin/crid" --config "$work/crid.toml" --config-dir "$work/crid.d" check || true
"$bin/crid" --config "$work/crid.toml" --config-dir "$work/crid.d" 2>"$out/crid.log" &
crid_pid=$!
"$bin/crid" --config "$work/unready/crid.toml" --config-dir "$work/unready/crid.d" 2>"$out/crid-unready.log" &
unready_pid=$!
wait_socket "$work/crid.sock" "$crid_pid" "$out/crid.log"
wait_socket "$work/unready/crid.sock" "$unready_pid" "$out/crid-unready.log"
unready="unix://$work/unready/crid.sock"

# The run reads its results against crid's baseline: its reports list the expected failures
# apart, with their reasons, and the differences from containerd 1.6; its exit status is 0
# when every required failure is an expected one, 1 otherwise. `compare` below stays the
# strict check. Anything else is a harness error and ends the job.
run_suite run "$bin/crid-conformance" run --endpoint "unix://$work/crid.sock" \
  --registry-state "$work/fixtures" --not-ready-endpoint "$unready" \
  --baseline conformance/baseline/crid.toml \
  --compare-baseline conformance/baseline/containerd-1.6.toml \
  --junit "$out/junit.xml" --markdown "$out/report.md" --html "$out/report.html" || exit
echo
status=0
"$bin/crid-conformance" compare --junit "$out/junit.xml" \
  --baseline conformance/baseline/crid.toml | tee "$out/baseline.txt" || status=$?
# The matrix cell of crid's other runtime handler, crun (the run above is runc's, the
# default): JUnit per cell; every cell is compared with the baseline (entries may name
# their handlers). The grid at the end shows it beside the others.
echo
run_suite matrix "$bin/crid-conformance" matrix --endpoint "unix://$work/crid.sock" \
  --runtime-handler crun --registry-state "$work/fixtures" --not-ready-endpoint "$unready" \
  --out "$out/matrix" >"$out/matrix.txt" || { cat "$out/matrix.txt"; exit 1; }
grep -E '^#[0-9]+ ' "$out/matrix.txt" || true
compare_cells "$bin/crid-conformance" conformance/baseline/crid.toml "$out/matrix" \
  | tee "$out/matrix/baseline.txt" || status=1
# The cells of the other handler kinds, each on a crid of its own (network, storage,
# images: the cells clean up the images they pull, so they cannot share a store), whose
# default handler it is: the shim v2 handler (Debian's containerd-shim-runc-v2 driven over
# ttrpc), youki (built by setup.sh) and gVisor's runsc (ptrace platform: this host has no
# usable KVM; its sandbox joins the pod's network namespace with host networking, since
# runsc's own netstack refuses to start here). The core areas run on each, compared with
# the handler's own baseline: about 1.5 minutes each for the shim and youki, 5 for runsc
# (a sandbox boots in each pod), side by side.
echo
# start_cell_crid NAME SUBNET: starts the cell's crid; its handler table is on stdin.
start_cell_crid() {
  local name=$1 subnet=$2 dir="$work/cells/$1" bridge
  bridge="crc${name:0:2}$$"
  bridge=${bridge:0:15}
  cell_bridges+=("$bridge")
  mkdir -p "$dir/net.d" "$dir/crid.d"
  cat > "$dir/net.d/10-conformance.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "crid-conformance-$name", "plugins": [
  {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$dir/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
  {
    cat <<TOML
[server]
listen = "$dir/crid.sock"
[image]
insecure_registries = ["$registry"]
pause_image = "$registry/pause:latest"
[storage]
root = "$dir/root"
runroot = "$dir/run"
[network]
cni_config_dir = "$dir/net.d"
[runtime]
default_runtime = "$name"
TOML
    cat
  } > "$dir/crid.toml"
  "$bin/crid" --config "$dir/crid.toml" --config-dir "$dir/crid.d" 2>"$out/crid-$name.log" &
  cell_crids+=("$!")
  wait_socket "$dir/crid.sock" "$!" "$out/crid-$name.log"
}
start_cell_crid shim 10.221.0.0/24 <<TOML
[runtime.runtimes.shim]
path = "/usr/bin/containerd-shim-runc-v2"
type = "vm"
TOML
start_cell_crid youki 10.222.0.0/24 <<TOML
[runtime.runtimes.youki]
path = "$PWD/target/tools/bin/youki"
TOML
start_cell_crid runsc 10.223.0.0/24 <<TOML
[runtime.runtimes.runsc]
path = "runsc"
args = ["--platform=ptrace", "--network=host"]
always_infra = true
TOML
# The three cells run side by side (runsc's is the long one; the others fit beside it),
# each in a subshell of its own (so `exit 2`, a harness error, ends only its cell): each
# writes its own files, and its exit status says whether it was judged clean.
# exec/ first: runsc's terminal cases have failed once under the soak's load, and the area
# is done before the soak starts. --full: then every other area of the catalogue.
cell_areas=(exec/ pod-sandbox/ container/ logs/ stats/)
if $full; then
  for area in $("$bin/crid-conformance" list | cut -d/ -f1 | uniq); do
    case " ${cell_areas[*]} " in *" $area/ "*) ;; *) cell_areas+=("$area/") ;; esac
  done
fi
handler_cell() {
  local handler=$1 area name rc=0
  for area in "${cell_areas[@]}"; do
    name=${area%/}
    run_suite "$handler $name" "$bin/crid-conformance" run --endpoint "unix://$work/cells/$handler/crid.sock" \
      --registry-state "$work/fixtures" --not-ready-endpoint "$unready" --filter "$area" --runtime-handler "$handler" \
      --baseline conformance/baseline/crid-$handler.toml \
      --compare-baseline conformance/baseline/crid.toml \
      --junit "$out/$handler/junit-$name.xml" >"$out/$handler/$name.txt" || exit 2
    "$bin/crid-conformance" compare --junit "$out/$handler/junit-$name.xml" --filter "$area" \
      --baseline conformance/baseline/crid-$handler.toml >>"$out/$handler/baseline.txt" || rc=1
  done
  return "$rc"
}
# judge_cell HANDLER PID: waits for the cell and prints and judges what it wrote.
judge_cell() {
  local handler=$1 rc=0 f
  wait "$2" || rc=$?
  for f in "$out/$handler"/*.txt; do
    case $f in */baseline.txt | */cell.txt) continue ;; esac
    tail -1 "$f" | sed "s|^|$handler $(basename "$f" .txt): |"
  done
  cat "$out/$handler/baseline.txt" 2>/dev/null || true
  case $rc in
    0) ;;
    1) status=1 ;;
    *) cat "$out/$handler/cell.txt" >&2; echo "$handler cell: the harness failed" >&2; exit 1 ;;
  esac
}
declare -A cell_pid
for handler in shim youki runsc; do
  mkdir -p "$out/$handler"
  (handler_cell "$handler") >"$out/$handler/cell.txt" 2>&1 &
  cell_pid[$handler]=$!
done
judge_cell shim "${cell_pid[shim]}"
judge_cell youki "${cell_pid[youki]}"
# runsc's cell goes on beside the props, hostile and soak runs below (each judges only
# its own objects on its own crid), and is judged after them.
# Property-based lifecycle sequences against crid, bounded in number and in time: a
# failure, a harness error or running out of time fails the job.
echo
props_limit=${CRID_PROPS_TIMEOUT:-600}
timeout --kill-after=10 "$props_limit" "$bin/crid-conformance" props \
  --endpoint "unix://$work/crid.sock" --registry-state "$work/fixtures" \
  --cases "${CRID_PROPS_CASES:-24}" --max-ops 8 --op-timeout 30 | tee "$out/props.txt" || {
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "props: no verdict within ${props_limit}s (a hang is a failure)" | tee -a "$out/props.txt"
  else
    echo "props: failed (exit $rc)" | tee -a "$out/props.txt"
  fi
  status=1
}
# Malformed and hostile requests to every RPC, seeded and bounded in number and in time: a
# wrong answer, a leaked or lost object, a refused stream check, a panic in crid's log, a
# harness error or running out of time fails the job.
echo
hostile_limit=${CRID_HOSTILE_TIMEOUT:-600}
timeout --kill-after=10 "$hostile_limit" "$bin/crid-conformance" hostile \
  --endpoint "unix://$work/crid.sock" --registry-state "$work/fixtures" \
  --requests "${CRID_HOSTILE_REQUESTS:-2000}" --seed "${CRID_HOSTILE_SEED:-16}" --op-timeout 30 \
  --daemon-log "$out/crid.log" | tee "$out/hostile.txt" || {
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "hostile: no verdict within ${hostile_limit}s (a hang is a failure)" | tee -a "$out/hostile.txt"
  else
    echo "hostile: failed (exit $rc)" | tee -a "$out/hostile.txt"
  fi
  status=1
}
# Soak: pods churned by 4 workers for a bounded time while crid's RSS, descriptors,
# threads, mounts, cgroups and monitors are sampled; a failed operation, RSS growth over
# 1 MiB, anything left after the clean-up, a harness error or running out of time fails
# the job. (docs/reliability.md has the hour-long run.)
echo
soak_seconds=${CRID_SOAK_SECONDS:-240}
timeout --kill-after=10 "$((soak_seconds + 300))" "$bin/crid-conformance" soak \
  --endpoint "unix://$work/crid.sock" --registry-state "$work/fixtures" \
  --daemon-pid "$crid_pid" --state-dir "$work/root" --state-dir "$work/run" \
  --duration "$soak_seconds" --sample-every 30 --parallel 4 | tee "$out/soak.txt" || {
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "soak: no verdict in time (a hang is a failure)" | tee -a "$out/soak.txt"
  else
    echo "soak: failed (exit $rc)" | tee -a "$out/soak.txt"
  fi
  status=1
}
echo
judge_cell runsc "${cell_pid[runsc]}"
for pid in "${cell_crids[@]}"; do
  kill -TERM "$pid" && wait "$pid" || true
done
cell_crids=()
# The mutation sample (issue 15, scripts/mutation.sh): the faults build of crid and three
# of its faults end to end on the same fixture registry, each of which a case must catch.
# On the debug path (CI) the faults build shares the test build's target directory, so only
# crid itself is rebuilt; without --fault it behaves as the normal build.
echo
mkdir -p "$work/faults-bin"
if [ -n "${CRID_BIN_DIR:-}" ]; then
  cargo build --locked --features faults --bin crid --bin crid-monitor
  cp target/debug/crid target/debug/crid-monitor "$work/faults-bin/"
else
  cargo build --release --locked --features faults --bin crid --bin crid-monitor --target-dir target/faults
  cp target/faults/release/crid target/faults/release/crid-monitor "$work/faults-bin/"
fi
mutation_limit=${CRID_MUTATION_TIMEOUT:-300}
CRID_BIN_DIR=$bin CRID_FAULTS_BIN_DIR=$work/faults-bin CRID_REGISTRY_STATE=$work/fixtures \
  timeout --kill-after=10 "$mutation_limit" scripts/mutation.sh --sample 2>&1 | tee "$out/mutation.txt" || {
  echo "mutation sample: failed or no verdict within ${mutation_limit}s" | tee -a "$out/mutation.txt"
  status=1
}
if ((${#vm[@]})); then
  echo
  CRID_BIN_DIR=$bin CRID_REPORT_DIR=$out "${vm[@]}" || status=1
fi
# The grid: every cell that ran, read back from its JUnit with its own baseline (the
# strict comparisons above judged them; this is the report people read).
echo
cells=(--cell "junit=$out/junit.xml;baseline=conformance/baseline/crid.toml")
for f in "$out"/matrix/junit-*.xml; do
  cells+=(--cell "junit=$f;baseline=conformance/baseline/crid.toml")
done
for handler in shim youki runsc; do
  reports=$(printf '%s,' "$out/$handler"/junit-*.xml)
  cells+=(--cell "junit=${reports%,};baseline=conformance/baseline/crid-$handler.toml")
done
for cell in vm-debian12-cgroupv2:crid-vm-cgroupv2 vm-debian12-cgroupv2-systemd:crid-vm-cgroupv2-systemd; do
  [ -f "$out/vm/${cell%%:*}/junit.xml" ] || continue
  cells+=(--cell "junit=$out/vm/${cell%%:*}/junit.xml;baseline=conformance/baseline/${cell#*:}.toml;fixture=${cell%%:*}")
done
"$bin/crid-conformance" grid "${cells[@]}" --out "$out/grid" || status=1
echo
echo "grid of every cell: $out/grid/report.html, $out/grid/summary.md"
echo "crun cell: $out/matrix/junit-*.xml, $out/matrix/baseline.txt"
echo "shim v2, youki and runsc cells: $out/{shim,youki,runsc}/junit-*.xml, .../baseline.txt (daemon logs: $out/crid-{shim,youki,runsc}.log)"
echo "reports: $out/report.html, $out/report.md, $out/junit.xml, $out/baseline.txt, $out/props.txt, $out/hostile.txt, $out/soak.txt, $out/mutation.txt (daemon log: $out/crid.log)"
exit "$status"

# Shared by scripts/conformance.sh and scripts/differential.sh (sourced, not run): how a
# suite run and a daemon start-up are judged. Small functions so that
# conformance/tests/scripts.rs can run them with fake binaries.

# run_suite WHAT CMD...: runs a suite whose exit status means 0 = every required case
# passed, 1 = some failed (the baseline judges them next), anything else = the harness
# itself failed (no endpoint, unreadable fixtures, a crash). Returns 0 for 0 and 1, and
# the status otherwise, so that `run_suite ... || exit` ends the job on a harness error.
run_suite() {
  local what=$1 rc=0
  shift
  "$@" || rc=$?
  case $rc in
    0) ;;
    1) echo "$what: some cases failed (judged against the baseline below)" ;;
    *)
      echo "$what: the harness failed (exit $rc), so there is nothing to judge" >&2
      return "$rc"
      ;;
  esac
}

# fresh_report FILE...: removes reports of an earlier run, so that a run that writes none
# is never judged by the previous one's.
fresh_report() {
  rm -rf -- "$@"
}

# wait_socket SOCKET PID LOG [SECONDS]: waits until the daemon PID serves SOCKET; fails
# (printing its LOG) when it exits first or when SECONDS (default 10) pass.
wait_socket() {
  local socket=$1 pid=$2 log=$3 limit=${4:-10} i
  for ((i = 0; i < limit * 10; i++)); do
    [ -S "$socket" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the daemon (pid $pid) exited before serving $socket; its log:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  [ -S "$socket" ] && return 0
  echo "the daemon (pid $pid) did not serve $socket within ${limit}s; its log:" >&2
  cat "$log" >&2
  return 1
}

# compare_cells BIN BASELINE DIR: compares every matrix cell's JUnit (DIR/junit-*.xml) with
# BASELINE; fails when there is none or when any cell differs.
compare_cells() {
  local bin=$1 baseline=$2 dir=$3 status=0 n=0 f
  for f in "$dir"/junit-*.xml; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    echo "cell $(basename "$f"):"
    "$bin" compare --junit "$f" --baseline "$baseline" || status=1
  done
  if [ "$n" -eq 0 ]; then
    echo "matrix: no junit-*.xml in $dir, so no cell was judged" >&2
    return 1
  fi
  return "$status"
}

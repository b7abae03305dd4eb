#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the workspace.
# Run as root on Debian 12: integration tests start real runtimes, registries and daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# vagrant/ is for users' machines; no provider runs here, so CI checks that it validates.
(cd vagrant && vagrant validate --ignore-provider)
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features failpoints -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
# The crash sweep needs crid built with its crash points (the `failpoints` feature): here one
# crash at each point; CRID_CRASH_SWEEP_PASSES=N crashes at every arrival at every point N
# times over (docs/reliability.md).
cargo nextest run --locked --features failpoints --test crash_sweep
# The plain build back in target/debug: later jobs (CRID_BIN_DIR=target/debug) judge crid
# as it ships, without crash points.
cargo build --locked --bins

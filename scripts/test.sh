#!/usr/bin/env bash
# The test command: set-up, formatting, lints, then every test of the workspace.
# Run as root on Debian 12: integration tests start real runtimes, registries and daemons.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast

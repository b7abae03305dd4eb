#!/bin/bash
# Vagrant provisioner (root, in the guest): checks the kernel command line took effect, then
# installs the Rust toolchain (rustup; Debian 12's rustc is older than the workspace's
# rust-version) and runs the project's own setup script, which installs runc, crun, the CNI
# plugins, docker-registry and the rest (scripts/setup.sh, idempotent).
set -euo pipefail
echo "kernel: $(uname -r); cmdline: $(cat /proc/cmdline)"
echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup); LSMs: $(cat /sys/kernel/security/lsm)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends ca-certificates curl git build-essential pkg-config
if ! [ -x /root/.cargo/bin/cargo ]; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
    --component rustfmt,clippy
fi
export PATH=/root/.cargo/bin:$PATH
cd /vagrant
scripts/setup.sh

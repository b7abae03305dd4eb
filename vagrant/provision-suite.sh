#!/bin/bash
# Vagrant provisioner (root, in the guest): builds crid and runs the README's two commands,
# scripts/conformance.sh (the main job) and scripts/test.sh (formatting, lints, every test),
# in /vagrant, the guest's rsync copy of the repository: the build and the reports
# (/vagrant/target/conformance/) stay on the guest's disk.
set -uo pipefail
name=${1:-guest}
export PATH=/root/.cargo/bin:$PATH
cd /vagrant
status=0
scripts/conformance.sh || status=1
scripts/test.sh || status=1
echo "suite ($name): exit $status; reports in /vagrant/target/conformance/ in the guest"
exit "$status"

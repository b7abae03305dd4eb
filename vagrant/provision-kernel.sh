#!/bin/bash
# Vagrant provisioner (root, in the guest): puts crid's kernel arguments ($1) on the kernel
# command line through a GRUB drop-in, and installs AppArmor's userspace. The Vagrantfile
# reboots the guest afterwards.
set -euo pipefail
args=$1
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends apparmor apparmor-utils
install -d /etc/default/grub.d
cat > /etc/default/grub.d/90-crid.cfg <<CFG
# crid's guest (vagrant/provision-kernel.sh): cgroup hierarchy and LSM.
GRUB_CMDLINE_LINUX_DEFAULT="\$GRUB_CMDLINE_LINUX_DEFAULT $args"
CFG
update-grub
echo "provision-kernel: next boot uses: $args"

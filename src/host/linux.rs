//! The real [`Host`]: system calls on this machine.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Host, NamespaceError, PinRequest, Pinned, cgroups, namespaces};
use crate::storage::overlay::{self, RootfsLayout};

/// The host crid runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Host for Linux {
    fn pin_namespaces(&self, req: &PinRequest) -> Result<Pinned, NamespaceError> {
        namespaces::pin(req)
    }

    fn unpin(&self, path: &Path) -> io::Result<()> {
        namespaces::unpin(path)
    }

    fn is_pinned(&self, path: &Path) -> bool {
        namespaces::is_pinned(path)
    }

    fn mount_shm(&self, path: &Path) -> Result<(), NamespaceError> {
        namespaces::mount_shm(path)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        crate::storage::unmount(path)
    }

    fn mount_rootfs(&self, layout: &RootfsLayout, lower: &[PathBuf]) -> io::Result<()> {
        overlay::mount_rootfs(layout, lower)
    }

    fn remove_rootfs(&self, layout: &RootfsLayout) -> io::Result<()> {
        overlay::remove_rootfs(layout)
    }

    fn mount_image_volume(&self, target: &Path, lower: &[PathBuf]) -> io::Result<()> {
        crate::storage::image_volume::mount_volume(target, lower)
    }

    fn kill_remaining(&self, cgroups_path: &str, limit: Duration) -> io::Result<usize> {
        cgroups::kill_remaining(cgroups_path, limit)
    }

    fn remove_cgroup(&self, cgroups_path: &str) -> io::Result<()> {
        cgroups::kill_and_remove(cgroups_path)
    }

    fn set_oom_score_adj(&self, cgroups_path: &str, pid: i32, value: i64) -> io::Result<()> {
        cgroups::set_oom_score_adj(cgroups_path, pid, value)
    }

    fn write_cgroup_v1(
        &self,
        controller: &str,
        cgroups_path: &str,
        file: &str,
        value: &str,
    ) -> io::Result<()> {
        cgroups::write_v1(controller, cgroups_path, file, value)
    }

    fn sysctl_exists(&self, key: &str) -> bool {
        super::sysctl_exists(key)
    }

    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

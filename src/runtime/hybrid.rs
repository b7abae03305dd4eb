//! crun on hybrid cgroup hosts: cgroup v1 controllers under `/sys/fs/cgroup` plus an empty
//! cgroup2 hierarchy at `/sys/fs/cgroup/unified`.
//!
//! crun 1.8 refuses that layout ("cgroups in hybrid mode not supported, drop all controllers
//! from cgroupv2"). It runs, and places the container in the v1 controllers, when it does not
//! see the cgroup2 mount. So every crun command (and the crid-monitor that runs `crun create`)
//! starts in a private mount namespace of its own where `/sys/fs/cgroup/unified` is unmounted:
//! `unshare(CLONE_NEWNS)`, `/` made a recursive slave, then a lazy unmount. Only that process
//! tree sees the difference; the host's mounts are untouched.
//!
//! Slave rather than private: with either, nothing done in the namespace propagates back to
//! the host. With slave, unmounts on the host (a removed pod's rootfs, its volumes) still
//! reach the namespace, so a monitor living as long as its container does not keep copies
//! of other pods' mounts alive. On hosts where `/` is not a shared mount the two are the same.
//! The container's state directory (`--root`) is a plain directory, so `state`, `kill` and
//! `delete` find the container whichever namespace they run in.

use std::io;
use std::path::Path;

/// Where the cgroup2 hierarchy sits on a hybrid host.
pub const UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";

/// What kind of filesystems the cgroup mount points are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    /// `/sys/fs/cgroup` is itself cgroup2 (a unified, v2-only host).
    pub root_is_cgroup2: bool,
    /// `/sys/fs/cgroup/unified` is a cgroup2 mount (hybrid when the root is not).
    pub unified_is_cgroup2: bool,
}

impl CgroupLayout {
    /// Reads the layout of this host with statfs(2).
    pub fn detect() -> Self {
        Self {
            root_is_cgroup2: is_cgroup2(Path::new("/sys/fs/cgroup")),
            unified_is_cgroup2: is_cgroup2(Path::new(UNIFIED_MOUNT)),
        }
    }

    /// Hybrid: v1 controllers at the root, cgroup2 beside them.
    pub fn is_hybrid(self) -> bool {
        self.unified_is_cgroup2 && !self.root_is_cgroup2
    }
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Whether a runtime whose `--version` output is `version` needs the private mount namespace
/// on a host with `layout`: crun (any version that says so) on a hybrid host.
pub fn needs_private_mount_ns(version: &str, layout: CgroupLayout) -> bool {
    layout.is_hybrid() && version.to_ascii_lowercase().contains("crun")
}

/// Moves the calling process into a private mount namespace without the cgroup2 mount.
///
/// Meant for `pre_exec` (between fork and exec), so it only makes raw system calls: no
/// allocation, no locks. An absent `/sys/fs/cgroup/unified` (EINVAL, ENOENT) is fine.
pub fn enter_private_mount_ns() -> io::Result<()> {
    // SAFETY: plain system calls with static NUL-terminated strings and null pointers where
    // the kernel accepts them; they touch no memory of this process.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0 {
            let err = io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
                return Err(err);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: CgroupLayout = CgroupLayout {
        root_is_cgroup2: false,
        unified_is_cgroup2: true,
    };

    #[test]
    fn only_crun_on_a_hybrid_host_needs_the_namespace() {
        let crun = "crun version 1.8.1";
        let runc = "runc version 1.1.5+ds1";
        assert!(needs_private_mount_ns(crun, HYBRID));
        assert!(!needs_private_mount_ns(runc, HYBRID));
        assert!(!needs_private_mount_ns("youki version 0.3.0", HYBRID));
        // cgroup v2 only: /sys/fs/cgroup is cgroup2 (and has no `unified` below it).
        let unified = CgroupLayout {
            root_is_cgroup2: true,
            unified_is_cgroup2: false,
        };
        assert!(!needs_private_mount_ns(crun, unified));
        // cgroup v1 only: no cgroup2 anywhere.
        assert!(!needs_private_mount_ns(crun, CgroupLayout::default()));
        // A root that is cgroup2 is never hybrid, whatever sits below it.
        let odd = CgroupLayout {
            root_is_cgroup2: true,
            unified_is_cgroup2: true,
        };
        assert!(!odd.is_hybrid());
        assert!(HYBRID.is_hybrid());
    }

    #[test]
    fn version_match_ignores_case() {
        assert!(needs_private_mount_ns("CRUN version 9", HYBRID));
    }
}

//! Facts about the host that decide what crid can do: cgroup layout and overlayfs.

use std::fmt;
use std::path::Path;

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v2 only, mounted at /sys/fs/cgroup.
    Unified,
    /// v1 controllers plus a cgroup2 hierarchy at /sys/fs/cgroup/unified (crun 1.8 refuses this).
    Hybrid,
    /// v1 controllers only.
    Legacy,
    /// /sys/fs/cgroup is missing or of an unknown type.
    Unknown,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupMode::Unified => "v2 (unified)",
            CgroupMode::Hybrid => "hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)",
            CgroupMode::Legacy => "v1 (legacy)",
            CgroupMode::Unknown => "unknown",
        })
    }
}

/// Reads the cgroup layout from the filesystem types under /sys/fs/cgroup.
pub fn cgroup_mode() -> CgroupMode {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
    match statfs(Path::new("/sys/fs/cgroup")).map(|s| s.filesystem_type()) {
        Ok(t) if t == CGROUP2_SUPER_MAGIC => CgroupMode::Unified,
        Ok(t) if t == TMPFS_MAGIC => {
            let unified = statfs(Path::new("/sys/fs/cgroup/unified")).map(|s| s.filesystem_type());
            if matches!(unified, Ok(t) if t == CGROUP2_SUPER_MAGIC) {
                CgroupMode::Hybrid
            } else {
                CgroupMode::Legacy
            }
        }
        _ => CgroupMode::Unknown,
    }
}

/// Whether the kernel offers overlayfs now (built in or loaded).
pub fn overlayfs_available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| filesystems_list_overlay(&s))
}

fn filesystems_list_overlay(proc_filesystems: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// The capabilities this process may still grant (its bounding set), without `CAP_`: what a
/// runtime can give a container. Some hosts lack a few (here, CAP_SYS_RESOURCE).
pub fn bounding_capabilities() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    crate::spec::security::ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_is_found_in_proc_filesystems_format() {
        assert!(filesystems_list_overlay(
            "nodev\tsysfs\nnodev\toverlay\n\text4\n"
        ));
        assert!(!filesystems_list_overlay(
            "nodev\tsysfs\n\text4\nnodev\toverlayfoo\n"
        ));
    }

    #[test]
    fn bounding_set_is_read() {
        // Every process keeps at least CAP_KILL in its bounding set unless deliberately dropped.
        assert!(bounding_capabilities().iter().any(|c| c == "KILL"));
    }

    #[test]
    fn this_host_has_a_known_cgroup_mode() {
        // Every machine crid supports mounts cgroups somewhere under /sys/fs/cgroup.
        assert_ne!(cgroup_mode(), CgroupMode::Unknown);
    }
}

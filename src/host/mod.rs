//! The kernel side of crid: facts about the host that decide what crid can do (cgroup
//! layout, what its cgroups can enforce, capabilities, sysctls, overlayfs, AppArmor), and the [`Host`]
//! seam through which the pod and container services change it (namespace pins, mounts,
//! cgroups). [`Linux`] is the real implementation; [`fake::Recording`] records calls and
//! keeps a model of what exists, so the services' rules are tested without root.

pub mod apparmor;
pub mod cgroups;
#[cfg(test)]
pub mod fake;
mod linux;
pub mod namespaces;

pub use linux::Linux;
pub use namespaces::{NamespaceError, PinRequest, Pinned};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::storage::overlay::RootfsLayout;

/// What the pod and container services ask of the kernel. Every method is idempotent
/// where the name says remove, unpin or unmount: absent is fine. Methods may block
/// (`pin_namespaces` and the cgroup sweeps do): callers run those on blocking threads.
pub trait Host: Send + Sync + fmt::Debug {
    /// Creates and pins the namespaces `req` asks for (see [`namespaces::pin`]).
    fn pin_namespaces(&self, req: &PinRequest) -> Result<Pinned, NamespaceError>;
    /// Unpins a namespace and removes its file.
    fn unpin(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` is a live namespace pin.
    fn is_pinned(&self, path: &Path) -> bool;
    /// Mounts a pod's /dev/shm tmpfs at `path`.
    fn mount_shm(&self, path: &Path) -> Result<(), NamespaceError>;
    /// Lazily unmounts `path`.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Mounts a container's overlay root filesystem over `lower` (topmost first).
    fn mount_rootfs(&self, layout: &RootfsLayout, lower: &[PathBuf]) -> io::Result<()>;
    /// Unmounts and removes a container's root filesystem and writable layer.
    fn remove_rootfs(&self, layout: &RootfsLayout) -> io::Result<()>;
    /// Mounts an image volume: the layers `lower` (bottom first) read-only at `target`
    /// (see [`crate::storage::image_volume::mount_volume`]).
    fn mount_image_volume(&self, target: &Path, lower: &[PathBuf]) -> io::Result<()>;
    /// Kills what is left in the cgroup `cgroups_path` and waits up to `limit` for it to
    /// go; returns how many processes were signalled.
    fn kill_remaining(&self, cgroups_path: &str, limit: Duration) -> io::Result<usize>;
    /// Kills what is in the cgroup and removes its directory in every hierarchy.
    fn remove_cgroup(&self, cgroups_path: &str) -> io::Result<()>;
    /// Sets the oom_score_adj of the container whose init is `pid` and whose cgroup is
    /// `cgroups_path`, on every process of it (see [`cgroups::set_oom_score_adj`]).
    fn set_oom_score_adj(&self, cgroups_path: &str, pid: i32, value: i64) -> io::Result<()>;
    /// Writes `value` into `file` of a container's cgroup in the v1 hierarchy `controller`.
    fn write_cgroup_v1(
        &self,
        controller: &str,
        cgroups_path: &str,
        file: &str,
        value: &str,
    ) -> io::Result<()>;
    /// Whether the kernel has the sysctl `key`.
    fn sysctl_exists(&self, key: &str) -> bool;
    /// The host's name.
    fn hostname(&self) -> String;
}

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
    cgroup_mode_at(Path::new("/sys/fs/cgroup"))
}

fn cgroup_mode_at(root: &Path) -> CgroupMode {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
    match statfs(root).map(|s| s.filesystem_type()) {
        Ok(t) if t == CGROUP2_SUPER_MAGIC => CgroupMode::Unified,
        Ok(t) if t == TMPFS_MAGIC => {
            let unified = statfs(&root.join("unified")).map(|s| s.filesystem_type());
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

/// Probes what the host's cgroups and kernel can enforce (see [`crate::spec::host`]).
/// Read once at start: controllers are not mounted or unmounted under a running node.
pub fn probe_resources() -> crate::spec::HostResources {
    probe_resources_at(
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/kernel/mm/hugepages"),
    )
}

fn probe_resources_at(cgroup: &Path, hugepages: &Path) -> crate::spec::HostResources {
    use std::collections::BTreeSet;
    let mode = cgroup_mode_at(cgroup);
    let v2_controllers = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_to_string(dir.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let kernel_sizes: BTreeSet<String> = std::fs::read_dir(hugepages)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(page_size_name(kb * 1024))
        })
        .collect();
    let (hugetlb_controller, hugetlb_sizes, swap_accounting, unified_controllers) = match mode {
        CgroupMode::Unified => {
            let controllers = v2_controllers(cgroup);
            // memory.swap.max exists in non-root cgroups when swap accounting is on.
            let swap = std::fs::read_dir(cgroup)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join("memory.swap.max").exists());
            let hugetlb = controllers.contains("hugetlb");
            (
                hugetlb,
                if hugetlb {
                    kernel_sizes
                } else {
                    BTreeSet::new()
                },
                swap,
                Some(controllers),
            )
        }
        _ => {
            // v1 controllers decide, also on hybrid hosts: the runtime sets limits there.
            let hugetlb_dir = cgroup.join("hugetlb");
            let sizes: BTreeSet<String> = std::fs::read_dir(&hugetlb_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    Some(
                        name.strip_prefix("hugetlb.")?
                            .strip_suffix(".limit_in_bytes")?
                            .to_owned(),
                    )
                })
                .collect();
            let swap = cgroup.join("memory/memory.memsw.limit_in_bytes").exists();
            (!sizes.is_empty(), sizes, swap, None)
        }
    };
    let own_adj: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let oom_score_adj_min = if effective_capability("SYS_RESOURCE") {
        -1000
    } else {
        own_adj
    };
    // A kernel without NUMA has no node directory: its memory is node 0.
    let memory_nodes = std::fs::read_to_string("/sys/devices/system/node/online")
        .ok()
        .and_then(|s| crate::spec::host::parse_list(&s).ok())
        .unwrap_or_else(|| [0].into());
    crate::spec::HostResources {
        hugetlb_controller,
        hugetlb_sizes,
        swap_accounting,
        unified_controllers,
        oom_score_adj_min,
        memory_nodes,
    }
}

/// The CRI's name of a page size (`2MB`, `1GB`, `64KB`), as the kubelet and the hugetlb
/// controller's file names write it.
fn page_size_name(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Whether this process has capability `name` (without `CAP_`) in its effective set.
fn effective_capability(name: &str) -> bool {
    let Some(bit) = crate::spec::security::ALL_CAPABILITIES
        .iter()
        .position(|c| *c == name)
    else {
        return false;
    };
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1u64 << bit) != 0)
}

/// Whether the kernel has sysctl `key` (dotted) at all; namespaced ones show in the
/// host's /proc/sys too.
pub fn sysctl_exists(key: &str) -> bool {
    !key.split('.').any(|p| p.is_empty() || p == "..")
        && Path::new("/proc/sys").join(key.replace('.', "/")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_named_as_the_cri_names_them() {
        assert_eq!(page_size_name(2 << 20), "2MB");
        assert_eq!(page_size_name(1 << 30), "1GB");
        assert_eq!(page_size_name(64 << 10), "64KB");
        assert_eq!(page_size_name(32 << 20), "32MB");
    }

    #[test]
    fn hybrid_host_without_hugetlb_is_probed_as_such() {
        // A v1-style tree (tmpfs mode is read from statfs, so the probe is given the
        // layout through a directory that is not a cgroup filesystem: Unknown counts as v1).
        let root = tempfile::tempdir().expect("tempdir");
        let cg = root.path().join("cgroup");
        let hp = root.path().join("hugepages");
        std::fs::create_dir_all(cg.join("memory")).expect("mkdir");
        std::fs::write(cg.join("memory/memory.memsw.limit_in_bytes"), "0").expect("w");
        std::fs::create_dir_all(hp.join("hugepages-2048kB")).expect("mkdir");
        std::fs::create_dir_all(hp.join("hugepages-1048576kB")).expect("mkdir");
        let host = probe_resources_at(&cg, &hp);
        assert!(!host.hugetlb_controller);
        assert!(host.hugetlb_sizes.is_empty());
        assert!(host.swap_accounting);
        assert_eq!(host.unified_controllers, None);
        // With a v1 hugetlb controller, its files name the sizes.
        std::fs::create_dir_all(cg.join("hugetlb")).expect("mkdir");
        std::fs::write(cg.join("hugetlb/hugetlb.2MB.limit_in_bytes"), "0").expect("w");
        let host = probe_resources_at(&cg, &hp);
        assert!(host.hugetlb_controller);
        assert_eq!(host.hugetlb_sizes, ["2MB".to_owned()].into());
    }

    #[test]
    fn this_host_is_probed() {
        // Whatever this host is, the probe agrees with the files it reads.
        let host = probe_resources();
        let v1_hugetlb = Path::new("/sys/fs/cgroup/hugetlb").exists();
        if cgroup_mode() != CgroupMode::Unified {
            assert_eq!(host.hugetlb_controller, v1_hugetlb);
        }
        assert!(host.oom_score_adj_min <= 1000 && host.oom_score_adj_min >= -1000);
    }

    #[test]
    fn sysctls_are_looked_up_safely() {
        assert!(sysctl_exists("kernel.hostname"));
        assert!(!sysctl_exists("kernel.no_such_sysctl_crid"));
        assert!(!sysctl_exists("kernel..hostname"));
        assert!(!sysctl_exists("net...x"));
    }

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

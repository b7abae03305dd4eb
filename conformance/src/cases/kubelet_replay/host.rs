//! The kubelet's side of the node during a replay: what it creates on the host before it
//! calls the runtime (log directories, emptyDir and hostPath directories, the pod's
//! `etc-hosts`, termination-log files), what it removes after (the pod's cgroup), and the
//! checks that nothing of a pod is left on the host (cgroups, mounts, processes).
//!
//! Everything lives under one directory per case, inside the harness's log root, so the
//! scope's cleanup removes it; nothing here knows which runtime is under test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crid_api::cri;

/// Where cgroup file systems are mounted on this host (v1 controllers and cgroup2).
fn cgroup_mounts() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mountpoint = left.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mountpoint))
        })
        .collect()
}

/// The directories `parent` (a cgroupfs-style path such as `/kubepods/burstable/pod<uid>`)
/// names in every cgroup hierarchy where it exists.
pub(in crate::cases) fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Child cgroups under `parent` in any hierarchy: what a runtime left behind once all of
/// the pod's containers and its sandbox are removed.
pub(in crate::cases) fn cgroup_children(parent: &str) -> Vec<PathBuf> {
    cgroup_dirs(parent)
        .into_iter()
        .flat_map(|d| {
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Removes the pod cgroup `parent` where it is empty, as the kubelet's pod cgroup manager
/// does after the runtime removed the sandbox, and then its ancestors that did not exist
/// before (`existed`); a directory still in use stays (rmdir refuses).
pub(in crate::cases) fn remove_pod_cgroups(parent: &str, existed: &[PathBuf]) {
    let mut rel = PathBuf::from(parent.trim_start_matches('/'));
    loop {
        for m in cgroup_mounts() {
            let dir = m.join(&rel);
            if dir.is_dir() && !existed.contains(&dir) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if !rel.pop() || rel.as_os_str().is_empty() {
            break;
        }
    }
}

/// The cgroup directories on the way to `parent` that exist now (left alone later).
pub(in crate::cases) fn existing_ancestors(parent: &str) -> Vec<PathBuf> {
    let mut rel = PathBuf::from(parent.trim_start_matches('/'));
    let mut out = Vec::new();
    while !rel.as_os_str().is_empty() {
        for m in cgroup_mounts() {
            let dir = m.join(&rel);
            if dir.is_dir() {
                out.push(dir);
            }
        }
        if !rel.pop() {
            break;
        }
    }
    out
}

/// Mount table entries of this (the host's) mount namespace that mention `needle`.
pub(super) fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line mentions `needle` (a monitor or shim of a container).
pub(super) fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle)
                .then(|| format!("{}: {}", e.file_name().to_string_lossy(), cmd.trim()))
        })
        .collect()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| io("creating", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("chmod", path, e))
}

/// What the kubelet creates before RunPodSandbox: the pod's log directory.
pub(super) fn before_run_pod(config: &cri::PodSandboxConfig) -> Result<(), String> {
    if !config.log_directory.is_empty() {
        mkdir(Path::new(&config.log_directory), 0o755)?;
    }
    Ok(())
}

/// What the kubelet creates before CreateContainer: the container's log directory and
/// every host path it mounts that lies under `root` (the case's stand-in for
/// /var/lib/kubelet and the hostPath volume): `/etc/hosts` gets the pod's hosts file,
/// `/dev/termination-log` an empty world-writable file, anything else (emptyDir,
/// hostPath `DirectoryOrCreate`) a world-writable directory.
pub(super) fn before_create(
    root: &Path,
    sandbox: &cri::PodSandboxConfig,
    config: &cri::ContainerConfig,
    pod_ip: &str,
) -> Result<(), String> {
    if let Some(dir) = Path::new(&sandbox.log_directory)
        .join(&config.log_path)
        .parent()
    {
        mkdir(dir, 0o755)?;
    }
    for m in &config.mounts {
        let host = Path::new(&m.host_path);
        if !host.starts_with(root) || host.exists() {
            continue;
        }
        match m.container_path.as_str() {
            "/etc/hosts" => {
                if let Some(parent) = host.parent() {
                    mkdir(parent, 0o750)?;
                }
                let hosts = format!(
                    "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{}\n",
                    sandbox.hostname
                );
                std::fs::write(host, hosts).map_err(|e| io("writing", host, e))?;
                std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| io("chmod", host, e))?;
            }
            "/dev/termination-log" => {
                if let Some(parent) = host.parent() {
                    mkdir(parent, 0o750)?;
                }
                std::fs::write(host, b"").map_err(|e| io("creating", host, e))?;
                std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| io("chmod", host, e))?;
            }
            _ => mkdir(host, 0o777)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_host_paths_are_created() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let sandbox = cri::PodSandboxConfig {
            hostname: "pod-a".to_owned(),
            log_directory: r.join("logs/ns_pod_uid").display().to_string(),
            ..Default::default()
        };
        let mount = |container: &str, host: &str| cri::Mount {
            container_path: container.to_owned(),
            host_path: r.join(host).display().to_string(),
            ..Default::default()
        };
        let config = cri::ContainerConfig {
            log_path: "web/0.log".to_owned(),
            mounts: vec![
                mount("/etc/hosts", "kubelet/pods/uid/etc-hosts"),
                mount(
                    "/dev/termination-log",
                    "kubelet/pods/uid/containers/web/abc",
                ),
                mount(
                    "/shared",
                    "kubelet/pods/uid/volumes/kubernetes.io~empty-dir/shared",
                ),
                cri::Mount {
                    container_path: "/etc/elsewhere".to_owned(),
                    host_path: "/etc".to_owned(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        before_run_pod(&sandbox).expect("pod dirs");
        before_create(r, &sandbox, &config, "10.1.2.3").expect("container paths");
        assert!(r.join("logs/ns_pod_uid/web").is_dir());
        let hosts = std::fs::read_to_string(r.join("kubelet/pods/uid/etc-hosts")).expect("hosts");
        assert!(hosts.ends_with("10.1.2.3\tpod-a\n"), "{hosts}");
        let term = r.join("kubelet/pods/uid/containers/web/abc");
        assert_eq!(std::fs::metadata(&term).expect("file").len(), 0);
        let shared = r.join("kubelet/pods/uid/volumes/kubernetes.io~empty-dir/shared");
        let mode = std::fs::metadata(&shared)
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777);
    }

    #[test]
    fn absent_cgroups_have_no_children() {
        assert!(cgroup_children("/no-such-parent/pod0").is_empty());
        assert!(cgroup_dirs("/no-such-parent/pod0").is_empty());
    }
}

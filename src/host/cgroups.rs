//! Direct work on a container's cgroup, where the runtime's own commands cannot help:
//! - last-resort cleanup (cgroupfs driver): when the runtime never finished creating a
//!   container (the daemon was killed in the middle), its `delete` knows nothing, yet
//!   `runc init` may be waiting in the cgroup. Kill what is there and remove the directory
//!   in every hierarchy;
//! - the processes that outlive a container's init (a pod-shared or host PID namespace):
//!   once init has exited the runtime sees a stopped container, so crid kills the rest;
//! - what a runtime's `update` leaves out: oom_score_adj of the container's processes, and
//!   hugetlb limits on cgroup v1 (`runc update` applies neither).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of `cgroups_path` in every mounted hierarchy that has it.
pub fn dirs(cgroups_path: &str) -> Vec<PathBuf> {
    // Only cgroupfs paths: a systemd scope is the runtime's (and systemd's) to clean.
    if cgroups_path.contains(':') {
        return Vec::new();
    }
    existing_dirs(cgroups_path)
}

/// The directory of a cgroups path of either driver's syntax in every mounted hierarchy.
fn existing_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let Some(rel) = crate::stats::relative_dir(cgroups_path).filter(|r| !r.as_os_str().is_empty())
    else {
        return Vec::new();
    };
    let root = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    // cgroup v2 only: /sys/fs/cgroup is the hierarchy itself.
    let direct = root.join(&rel);
    if direct.join("cgroup.procs").exists() {
        out.push(direct);
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let d = e.path().join(&rel);
            if d.join("cgroup.procs").exists() {
                out.push(d);
            }
        }
    }
    out
}

fn procs(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Sets the `oom_score_adj` of a container: its init `pid` first (an error there is the
/// answer: EACCES when lowering it needs CAP_SYS_RESOURCE), then every other process in its
/// cgroup, which may have left meanwhile.
pub fn set_oom_score_adj(cgroups_path: &str, pid: i32, value: i64) -> io::Result<()> {
    let write = |p: i32| std::fs::write(format!("/proc/{p}/oom_score_adj"), value.to_string());
    write(pid)?;
    for other in procs(&existing_dirs(cgroups_path)) {
        if other == pid {
            continue;
        }
        match write(other) {
            Err(e)
                if e.raw_os_error() != Some(libc::ESRCH) && e.kind() != io::ErrorKind::NotFound =>
            {
                return Err(e);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `value` into `file` of the container's cgroup in the v1 hierarchy `controller`
/// (either driver's syntax).
pub fn write_v1(controller: &str, cgroups_path: &str, file: &str, value: &str) -> io::Result<()> {
    let rel = crate::stats::relative_dir(cgroups_path)
        .filter(|r| !r.as_os_str().is_empty())
        .ok_or_else(|| {
            io::Error::other(format!("cgroups path {cgroups_path:?} names no cgroup"))
        })?;
    if file.contains('/') || controller.contains('/') {
        return Err(io::Error::other(format!(
            "{controller}/{file} is not a cgroup file"
        )));
    }
    std::fs::write(
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(rel)
            .join(file),
        value,
    )
}

/// SIGKILLs whatever is still in a container's cgroup after its init exited (processes of a
/// container in a pod-shared or the host's PID namespace outlive their init) and waits up
/// to `limit` for them to go. Either driver's syntax; the cgroup itself stays. Returns how
/// many processes were killed.
pub fn kill_remaining(cgroups_path: &str, limit: Duration) -> io::Result<usize> {
    let dirs = existing_dirs(cgroups_path);
    let deadline = Instant::now() + limit;
    let mut killed = std::collections::BTreeSet::new();
    loop {
        let pids = procs(&dirs);
        if pids.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "{} processes in cgroup {cgroups_path} survive SIGKILL",
                pids.len()
            )));
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs every process in the cgroup, waits for them to go, removes the directories.
pub fn kill_and_remove(cgroups_path: &str) -> io::Result<()> {
    let dirs = dirs(cgroups_path);
    if dirs.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = procs(&dirs);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "processes in cgroup {cgroups_path} survive SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for d in dirs {
        match std::fs::remove_dir(&d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_cgroupfs_paths_are_considered() {
        assert!(dirs("").is_empty());
        assert!(dirs("/").is_empty());
        assert!(
            dirs("system.slice:crid:abc").is_empty(),
            "systemd syntax is the runtime's"
        );
        assert!(dirs("/crid/../../etc").is_empty());
        assert!(dirs("/crid/crid-definitely-not-there").is_empty());
    }
}

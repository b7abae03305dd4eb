//! One crid of a test build (feature `faults`) with one fault, started for one mutation
//! run: its own storage, socket and CNI network (a bridge on a private subnet) under a
//! fresh directory, the fixture registry as an insecure registry; torn down with
//! everything it left (pods through CRI, then containers, mounts, monitors, the bridge).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::MutateError;
use crate::fixtures::containerd::{conflist, link_exists, mounts_under, remove_all_pods};

/// How long crid may take to serve its socket.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How long crid may take to stop after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A running crid and its directory.
#[derive(Debug)]
pub struct Daemon {
    dir: PathBuf,
    bridge: String,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `bin_dir/crid` (with `--fault fault` when given) under a fresh directory in
    /// `work_root`, and waits until it serves its socket.
    pub fn start(
        bin_dir: &Path,
        work_root: &Path,
        fault: Option<&str>,
        registry: &str,
        subnet: &str,
    ) -> Result<Daemon, MutateError> {
        let io = |what: String| move |source| MutateError::Io { what, source };
        let dir = tempfile::Builder::new()
            .prefix("crid-mutate-")
            .tempdir_in(work_root)
            .map_err(io(format!(
                "creating a directory in {}",
                work_root.display()
            )))?
            .keep();
        // Bridge names are at most 15 bytes; the directory's random suffix keeps runs apart.
        let suffix: String = dir
            .file_name()
            .map(|n| n.to_string_lossy().chars().rev().take(8).collect())
            .unwrap_or_default();
        let bridge = format!("crmt{suffix}");
        let mut daemon = Daemon {
            dir: dir.clone(),
            bridge: bridge.clone(),
            child: None,
        };
        for d in ["net.d", "crid.d"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(io(format!("creating {}/{d}", dir.display())))?;
        }
        std::fs::write(
            dir.join("net.d/10-mutate.conflist"),
            conflist("crid-mutate", &bridge, subnet, &dir.join("ipam")),
        )
        .map_err(io("writing the CNI config".into()))?;
        let d = dir.display();
        let config = format!(
            "[server]\nlisten = \"{d}/crid.sock\"\n[image]\ninsecure_registries = [\"{registry}\"]\n\
             pause_image = \"{registry}/pause:latest\"\n[storage]\nroot = \"{d}/root\"\n\
             runroot = \"{d}/run\"\n[network]\ncni_config_dir = \"{d}/net.d\"\n"
        );
        std::fs::write(dir.join("crid.toml"), config).map_err(io("writing crid.toml".into()))?;
        let log =
            std::fs::File::create(dir.join("crid.log")).map_err(io("creating crid.log".into()))?;
        let mut cmd = Command::new(bin_dir.join("crid"));
        cmd.arg("--config")
            .arg(dir.join("crid.toml"))
            .arg("--config-dir")
            .arg(dir.join("crid.d"));
        if let Some(f) = fault {
            cmd.arg("--fault").arg(f);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {}/crid", bin_dir.display())))?;
        daemon.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while !daemon.socket().exists() {
            let exited = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(MutateError::Start {
                    fault: fault.unwrap_or("none").to_owned(),
                    log: daemon.log_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
        Ok(daemon)
    }

    /// The CRI endpoint.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("crid.sock")
    }

    /// The end of crid's log, for a report.
    pub fn log_tail(&self) -> String {
        let data = std::fs::read(self.dir.join("crid.log")).unwrap_or_default();
        let start = data.len().saturating_sub(2000);
        String::from_utf8_lossy(&data[start..]).into_owned()
    }

    /// Removes every pod through CRI (what runs CNI DEL), stops crid, then removes what a
    /// faulty crid left: runc containers under its runroot, its monitors, mounts under its
    /// directory, its bridge, the directory. Returns what could not be removed.
    pub async fn shutdown(mut self) -> Vec<String> {
        remove_all_pods(&self.socket()).await;
        let mut child = self.child.take();
        let dir = self.dir.clone();
        let bridge = self.bridge.clone();
        tokio::task::spawn_blocking(move || clean(&dir, &bridge, child.as_mut()))
            .await
            .unwrap_or_else(|e| vec![format!("teardown task: {e}")])
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only when shutdown did not run (an error or a panic on the way).
        if let Some(mut child) = self.child.take() {
            let left = clean(&self.dir, &self.bridge, Some(&mut child));
            if !left.is_empty() {
                eprintln!("mutate: left behind: {}", left.join(", "));
            }
        }
    }
}

fn clean(dir: &Path, bridge: &str, child: Option<&mut Child>) -> Vec<String> {
    let mut left = Vec::new();
    if let Some(child) = child
        && let Ok(raw) = i32::try_from(child.id())
    {
        'signals: for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            let _ = kill(Pid::from_raw(raw), signal);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                    break 'signals;
                }
                std::thread::sleep(POLL);
            }
        }
    }
    // Containers outlive crid by design: delete what is still under its runtimes' roots.
    let runtimes = dir.join("run/runtimes");
    for root in read_dirs(&runtimes) {
        for c in read_dirs(&root) {
            if c.join("state.json").is_file() {
                let _ = Command::new(root.file_name().unwrap_or_default())
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(c.file_name().unwrap_or_default())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    // Monitors name their bundle (under our directory) on their command line.
    for pid in processes_mentioning(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    for mount in mounts_under(dir).into_iter().rev() {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&mount)
            .stderr(Stdio::null())
            .status();
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        left.push(format!("mounts {mounts:?}"));
    }
    if link_exists(bridge) {
        let _ = Command::new("ip").args(["link", "del", bridge]).status();
        if link_exists(bridge) {
            left.push(format!("bridge {bridge}"));
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        left.push(format!("directory {} ({e})", dir.display()));
    }
    left
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// PIDs whose command line names a path under `dir`.
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

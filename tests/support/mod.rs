//! Starting the real `crid` binary in a private directory, for integration tests.
//!
//! Each [`TestDaemon`] owns a temp dir with its config, drop-ins, CNI directory, socket and
//! state. Dropping it kills the daemon by PID (only the process this test started) and
//! removes the directory, even when the test fails.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod bundle;
pub mod cri;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// The crid binary under test: `CRID_TEST_BIN` when set (a copied build, so a long run is
/// not disturbed by rebuilds of the target directory), else the one Cargo built for this run.
pub fn crid() -> PathBuf {
    std::env::var_os("CRID_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crid")))
}

/// A crid started for one test.
pub struct TestDaemon {
    /// The private directory (config, state, socket).
    pub dir: tempfile::TempDir,
    /// The daemon process, until it has been waited for.
    child: Option<Child>,
}

impl TestDaemon {
    /// A fresh directory with a config whose paths all point into it; nothing started yet.
    pub fn prepare(extra_toml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crid-it-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        for sub in ["crid.d", "net.d", "root", "run"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let base = format!(
            "[network]\ncni_config_dir = \"{}\"\n[storage]\nroot = \"{}\"\nrunroot = \"{}\"\n",
            d.join("net.d").display(),
            d.join("root").display(),
            d.join("run").display(),
        );
        std::fs::write(d.join("crid.toml"), format!("{base}{extra_toml}")).expect("write config");
        Self { dir, child: None }
    }

    /// Prepares with `extra_toml` and starts the daemon, waiting until it serves.
    pub fn start(extra_toml: &str) -> Self {
        let mut d = Self::prepare(extra_toml);
        d.spawn();
        d.wait_ready();
        d
    }

    /// The socket the daemon listens on.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock/crid.sock")
    }

    /// `crid` with `--config`, `--config-dir` and `--listen` pointing into the test dir.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(crid());
        cmd.arg("--config")
            .arg(d.join("crid.toml"))
            .arg("--config-dir")
            .arg(d.join("crid.d"))
            .arg("--listen")
            .arg(self.socket());
        cmd
    }

    /// Runs a crid subcommand (`config`, `check`, ...) to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run crid")
    }

    /// Starts the daemon in the background; its stderr goes to `crid.log` in the test dir.
    pub fn spawn(&mut self) {
        self.spawn_with_env(&[]);
    }

    /// [`TestDaemon::spawn`] with extra environment variables (a failpoint build's
    /// `CRID_FAILPOINT`, say).
    pub fn spawn_with_env(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.path().join("crid.log")).expect("log file");
        let child = self
            .command()
            .envs(env.iter().copied())
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn crid");
        self.child = Some(child);
    }

    /// Waits until the socket accepts connections (or the daemon dies).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("crid exited early with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("crid did not serve within 20s:\n{}", self.log());
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("crid.log")).unwrap_or_default()
    }

    /// The daemon's PID.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends `signal` and waits up to `limit` for the exit status.
    pub fn signal_and_wait(&mut self, signal: Signal, limit: Duration) -> ExitStatus {
        kill(self.pid(), signal).expect("signal crid");
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "crid did not exit within {limit:?} after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the daemon to exit by itself; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A gRPC channel to the daemon.
    pub async fn channel(&self) -> Channel {
        crid_api::client::connect_path(&self.socket())
            .await
            .expect("connect")
    }

    /// Writes a file into the test dir, relative to it.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// The test dir.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only the process this test started, by PID.
            let _ = child.kill();
            let _ = child.wait();
        }
        sweep(self.dir.path());
    }
}

/// Object IDs this test daemon created: record names and bundle directories.
pub fn object_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for sub in [
        "root/state/pods",
        "root/state/containers",
        "run/containers",
        "run/pods",
    ] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.trim_end_matches(".json").to_owned();
                if id.len() == 64 && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Live (not zombie) processes in the cgroup of one of `ids` (`crid-<id>`), or crid-monitors
/// watching one.
pub fn processes_of(ids: &[String]) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A zombie holds nothing but its PID; this host's PID 1 reaps orphans lazily.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let hit = ids.iter().any(|id| {
            cgroup.contains(&format!("crid-{id}"))
                || (args.first().is_some_and(|a| a.ends_with(b"crid-monitor"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--id" && w[1] == id.as_bytes()))
        });
        if hit {
            pids.push(pid);
        }
    }
    pids
}

/// cgroup directories named `crid-<id>` for one of `ids`, in any hierarchy.
pub fn cgroups_of(ids: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name == format!("crid-{id}")) {
                found.push(e.path());
            } else if d.components().count() < 6 {
                stack.push(e.path());
            }
        }
    }
    found
}

/// Best-effort removal of everything a killed test daemon may have left: its containers'
/// processes and monitors (by cgroup and command line, for this daemon's IDs only), their
/// cgroups, and every mount under its directory.
pub fn sweep(dir: &Path) {
    let ids = object_ids(dir);
    if !ids.is_empty() {
        for _ in 0..50 {
            let pids = processes_of(&ids);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for cg in cgroups_of(&ids) {
            let _ = std::fs::remove_dir(&cg);
        }
    }
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A minimal valid CNI network list, enough for NetworkReady.
pub const BRIDGE_CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"crid-test","plugins":[{"type":"bridge","bridge":"crid-test0","ipam":{"type":"host-local","subnet":"10.250.0.0/24"}}]}"#;

/// Runs `tests/upstream/<script>` (an independent CRI client: upstream-generated stubs over
/// grpcio, from the `.venv` that scripts/setup.sh creates) and parses the JSON it prints.
pub fn upstream_client(script: &str, args: &[&str]) -> serde_json::Value {
    let py = std::env::var_os("CRID_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/upstream")
        .join(script);
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run scripts/setup.sh to create .venv",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "upstream client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

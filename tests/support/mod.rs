//! Starting the real `crid` binary in a private directory, for integration tests.
//!
//! Each [`TestDaemon`] owns a temp dir with its config, drop-ins, CNI directory, socket and
//! state. Dropping it kills the daemon by PID (only the process this test started) and
//! removes the directory, even when the test fails.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod bundle;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// Path of the crid binary Cargo built for this test run.
pub const CRID: &str = env!("CARGO_BIN_EXE_crid");

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
        let mut cmd = Command::new(CRID);
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
        let log = std::fs::File::create(self.dir.path().join("crid.log")).expect("log file");
        let child = self
            .command()
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
    }
}

/// A minimal valid CNI network list, enough for NetworkReady.
pub const BRIDGE_CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"crid-test","plugins":[{"type":"bridge","bridge":"crid-test0","ipam":{"type":"host-local","subnet":"10.250.0.0/24"}}]}"#;

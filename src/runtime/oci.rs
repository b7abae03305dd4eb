//! OCI runtime CLIs (runc, crun, and others with the same command line): the daemon side.
//!
//! Containers are created under crid-monitor, which runs the runtime's `create` and stays
//! with the container; everything else (`start`, `state`, `kill`, `delete`, `exec`,
//! `update`) is one bounded runtime invocation. Every invocation runs in a process group of
//! its own with stdin from /dev/null, is killed and reaped on timeout, and reports the
//! runtime's stderr on failure.
//!
//! Handler-specific facts live here, not in callers:
//! - runc `create`/`start` leave the container holding inherited descriptors, so `start`
//!   sends stderr to a file (the monitor already redirects `create`).
//! - crun on a hybrid cgroup host runs in a private mount namespace (see [`super::hybrid`]).
//! - A container sharing the host PID namespace needs `kill --all`: its init is not a PID 1
//!   whose death takes the other processes with it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio::process::{Child, Command};

use super::hybrid::{self, CgroupLayout};
use super::invoke::{self, Capture, Running};
use super::{PROBE_TIMEOUT, RuntimeError, resolve_binary};
use crate::config::{CgroupDriver, RuntimeHandler, RuntimeKind};
use crate::spec::oci::{Process, Resources};

/// Default bound on each runtime command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of each of an exec'd process's stdout and stderr is kept.
pub const EXEC_OUTPUT_CAP: usize = 16 << 20;

/// How much of a runtime command's own output is kept.
const OUTPUT_CAP: usize = 1 << 20;

/// After an exec'd process was killed, how long its runtime may take to notice and exit.
const EXEC_KILL_GRACE: Duration = Duration::from_secs(5);

/// How long a killed monitor may take to be reaped.
const MONITOR_REAP_LIMIT: Duration = Duration::from_secs(10);

/// One OCI runtime handler, ready to run commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    name: String,
    binary: PathBuf,
    root: PathBuf,
    global_args: Vec<String>,
    private_mount_ns: bool,
    timeout: Duration,
}

/// What [`OciRuntime::create`] needs to create a container under crid-monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// Container ID.
    pub id: String,
    /// Bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// CRI log file the monitor writes.
    pub log_path: PathBuf,
    /// Log size cap in bytes.
    pub log_max_size: Option<u64>,
    /// Where the monitor writes the exit record. Its file name should be the container ID,
    /// which is what [`crate::monitor::watch::watch_exits`] reports.
    pub exit_file: PathBuf,
    /// Where the runtime writes the container's host PID.
    pub pid_file: PathBuf,
    /// The container's memory cgroup directory, for OOM detection.
    pub memory_cgroup: Option<PathBuf>,
}

impl CreateRequest {
    /// Where crid-monitor's own diagnostics go: `<pid_file>.monitor.log`.
    pub fn monitor_log(&self) -> PathBuf {
        let mut p = self.pid_file.clone().into_os_string();
        p.push(".monitor.log");
        p.into()
    }
}

/// A container created and held by its monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Host PID of the container's init.
    pub pid: i32,
    /// Host PID of crid-monitor.
    pub monitor_pid: i32,
}

/// What the runtime's `state` says about a container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    /// `created`, `running`, `stopped` or `paused`.
    pub status: String,
    /// Host PID of the init; 0 once stopped.
    #[serde(default)]
    pub pid: i32,
}

/// The result of [`OciRuntime::exec`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// What the process wrote on stdout (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stdout: Vec<u8>,
    /// What the process wrote on stderr (at most [`EXEC_OUTPUT_CAP`] bytes).
    pub stderr: Vec<u8>,
    /// Exit status; 128 + N when killed by signal N.
    pub exit_code: i32,
    /// The timeout expired and the process was killed.
    pub timed_out: bool,
}

/// One runtime command and its operands (global options come from the runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Start(&'a str),
    State(&'a str),
    Kill {
        id: &'a str,
        signal: &'a str,
        all: bool,
    },
    Delete {
        id: &'a str,
        force: bool,
    },
    Exec {
        id: &'a str,
        process: &'a Path,
        pid_file: &'a Path,
    },
    Update {
        id: &'a str,
        resources: &'a Path,
    },
}

impl Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::Start(_) => "start",
            Op::State(_) => "state",
            Op::Kill { .. } => "kill",
            Op::Delete { .. } => "delete",
            Op::Exec { .. } => "exec",
            Op::Update { .. } => "update",
        }
    }

    fn id(&self) -> &str {
        match self {
            Op::Start(id) | Op::State(id) => id,
            Op::Kill { id, .. }
            | Op::Delete { id, .. }
            | Op::Exec { id, .. }
            | Op::Update { id, .. } => id,
        }
    }

    /// The command and its operands, options before the container ID.
    fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![self.name().into()];
        match *self {
            Op::Start(id) | Op::State(id) => a.push(id.into()),
            Op::Kill { id, signal, all } => {
                if all {
                    a.push("--all".into());
                }
                a.push(id.into());
                a.push(signal.into());
            }
            Op::Delete { id, force } => {
                if force {
                    a.push("--force".into());
                }
                a.push(id.into());
            }
            Op::Exec {
                id,
                process,
                pid_file,
            } => {
                a.extend(["--process".into(), process.into()]);
                a.extend(["--pid-file".into(), pid_file.into(), id.into()]);
            }
            Op::Update { id, resources } => {
                a.extend(["--resources".into(), resources.into(), id.into()]);
            }
        }
        a
    }
}

impl OciRuntime {
    /// A runtime for handler `name`. Its `--root` is `handler.root`, else
    /// `<runroot>/runtimes/<name>`; the systemd cgroup driver adds `--systemd-cgroup`.
    /// On a hybrid cgroup host the binary is asked for its version to tell crun apart.
    pub fn new(
        name: &str,
        handler: &RuntimeHandler,
        runroot: &Path,
        cgroup_driver: CgroupDriver,
    ) -> Result<OciRuntime, RuntimeError> {
        if handler.kind != RuntimeKind::Oci {
            return Err(RuntimeError::NotOci {
                handler: name.to_owned(),
            });
        }
        let binary = resolve_binary(&handler.path).ok_or_else(|| RuntimeError::NotFound {
            handler: name.to_owned(),
            path: handler.path.clone(),
            searched_path: !handler.path.is_absolute(),
        })?;
        let layout = CgroupLayout::detect();
        let private_mount_ns = layout.is_hybrid() && {
            let version = version_blocking(name, &binary, PROBE_TIMEOUT)?;
            hybrid::needs_private_mount_ns(&version, layout)
        };
        Ok(OciRuntime {
            name: name.to_owned(),
            root: handler
                .root
                .clone()
                .unwrap_or_else(|| runroot.join("runtimes").join(name)),
            global_args: global_args(cgroup_driver),
            binary,
            private_mount_ns,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds each runtime command (and the wait for the monitor's status) by `t`.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Overrides the detection of the crun private-mount-namespace workaround.
    pub fn with_private_mount_ns(mut self, on: bool) -> Self {
        self.private_mount_ns = on;
        self
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The runtime's state directory (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether commands run in a private mount namespace without the cgroup2 mount.
    pub fn private_mount_ns(&self) -> bool {
        self.private_mount_ns
    }

    /// The bound on each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Spawns crid-monitor (`monitor` is its binary), which runs the runtime's `create`, and
    /// returns once the monitor reported the container's PID (the container is `created`)
    /// or an error (with the runtime's stderr). On error or timeout nothing is left: the
    /// monitor is killed and reaped and `delete --force` has run. A container the runtime
    /// already knows under this ID is refused untouched ([`RuntimeError::Exists`]). If this
    /// future is dropped before the monitor reported, the monitor is killed but the
    /// container may remain: `delete --force` it.
    pub async fn create(
        &self,
        monitor: &Path,
        req: &CreateRequest,
    ) -> Result<Created, RuntimeError> {
        self.check_id(&req.id)?;
        // The cleanup below force-deletes by ID: never let it reach a container that was
        // there before.
        if self.state(&req.id).await?.is_some() {
            return Err(RuntimeError::Exists {
                handler: self.name.clone(),
                id: req.id.clone(),
            });
        }
        let io_err = |source| RuntimeError::Io {
            handler: self.name.clone(),
            command: "create",
            id: req.id.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(req.monitor_log())
            .map_err(io_err)?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(monitor);
        cmd.args(self.monitor_args(req))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // No kill_on_drop: the monitor must outlive this call (and the daemon). Until it has
        // reported, the guard kills it if this future is dropped.
        self.isolate(&mut cmd);
        let child = cmd.spawn().map_err(|e| RuntimeError::Monitor {
            handler: self.name.clone(),
            id: req.id.clone(),
            reason: format!("cannot run {}: {e}", monitor.display()),
        })?;
        let mut guard = MonitorGuard(Some(child));
        let monitor_pid = guard.pid();
        let stdout = guard.0.as_mut().and_then(|c| c.stdout.take());
        tracing::debug!(handler = %self.name, id = %req.id, monitor_pid, "monitor spawned");

        let outcome = match tokio::time::timeout(self.timeout, read_status(stdout)).await {
            Ok(Ok(MonitorStatus::Pid(pid))) => {
                if let Some(mut child) = guard.0.take() {
                    // The monitor is our child: reap it whenever it ends.
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                return Ok(Created { pid, monitor_pid });
            }
            Ok(Ok(MonitorStatus::Error(stderr))) => RuntimeError::Create {
                handler: self.name.clone(),
                id: req.id.clone(),
                stderr,
            },
            Ok(Err(reason)) => {
                // Let it finish writing why, then quote it.
                if let Some(child) = guard.0.as_mut() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                }
                RuntimeError::Monitor {
                    handler: self.name.clone(),
                    id: req.id.clone(),
                    reason: format!(
                        "{reason}; monitor log: {}",
                        read_from(&req.monitor_log(), log_start)
                    ),
                }
            }
            Err(_) => RuntimeError::Timeout {
                handler: self.name.clone(),
                binary: monitor.to_path_buf(),
                command: "create".into(),
                id: Some(req.id.clone()),
                timeout: self.timeout,
            },
        };
        guard.kill_and_reap().await;
        if let Err(e) = self.delete(&req.id, true).await {
            tracing::warn!(handler = %self.name, id = %req.id, "cleanup after a failed create: {e}");
        }
        Err(outcome)
    }

    /// `start`: runs the created container's process.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let op = Op::Start(id);
        let out = self.run(&op, Capture::StderrFile).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failed(&op, &out))
        }
    }

    /// `state`; `None` when the runtime does not know the container.
    pub async fn state(&self, id: &str) -> Result<Option<State>, RuntimeError> {
        let op = Op::State(id);
        let out = self.run(&op, Capture::Pipes).await?;
        if !out.status.success() {
            if is_not_found(&String::from_utf8_lossy(&out.stderr), id) {
                return Ok(None);
            }
            return Err(self.failed(&op, &out));
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| RuntimeError::BadOutput {
                handler: self.name.clone(),
                command: op.name(),
                id: id.to_owned(),
                reason: e.to_string(),
            })
    }

    /// `kill [--all] ID SIGNAL`; `signal` as the runtimes take it (`SIGTERM`, `KILL`, `15`).
    /// A container that is already stopped or unknown is not an error. `all` signals every
    /// process of the container: needed when it shares the host PID namespace.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        let valid = !signal.is_empty()
            && !signal.starts_with('-')
            && signal
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
        if !valid {
            return Err(RuntimeError::InvalidArgument {
                handler: self.name.clone(),
                what: "signal",
                value: signal.to_owned(),
            });
        }
        let op = Op::Kill { id, signal, all };
        let out = self.run(&op, Capture::Pipes).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || is_not_found(&stderr, id) || is_not_running(&stderr) {
            Ok(())
        } else {
            Err(self.failed(&op, &out))
        }
    }

    /// `delete [--force] ID`; an unknown container is not an error. `force` kills a running
    /// container first.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let op = Op::Delete { id, force };
        let out = self.run(&op, Capture::Pipes).await?;
        if out.status.success() || is_not_found(&String::from_utf8_lossy(&out.stderr), id) {
            Ok(())
        } else {
            Err(self.failed(&op, &out))
        }
    }

    /// Runs `process` in the container with `exec` and collects its output (each stream
    /// capped at [`EXEC_OUTPUT_CAP`]) and exit code. `process.terminal` is ignored (no TTY).
    /// When `timeout` expires the process (and its process group) is killed by host PID and
    /// reaped, and `timed_out` is set. A runtime that fails before the process started is an
    /// error; afterwards, the exit code is the process's.
    ///
    /// Processes the exec'd process leaves behind holding stdout/stderr: runc copies output
    /// until EOF, so they would hold up `runc exec` until the timeout (or forever). When the
    /// process has exited and the runtime has not returned 2 s later, its process group is
    /// killed. crun returns when the process exits; its leftovers keep running, and their
    /// output is no longer read after those 2 s.
    pub async fn exec(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.check_id(id)?;
        let io_err = |source| RuntimeError::Io {
            handler: self.name.clone(),
            command: "exec",
            id: id.to_owned(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("crid-exec-")
            .tempdir()
            .map_err(io_err)?;
        let process_file = dir.path().join("process.json");
        let pid_file = dir.path().join("pid");
        let process = Process {
            terminal: false,
            ..process.clone()
        };
        let json = serde_json::to_vec(&process).map_err(|e| io_err(io::Error::other(e)))?;
        std::fs::write(&process_file, json).map_err(io_err)?;
        let op = Op::Exec {
            id,
            process: &process_file,
            pid_file: &pid_file,
        };
        let cmd = self.command(&op);
        // Declared after `dir`, so dropped (and run) before the pid file goes with it.
        let mut cancel = ExecCancelGuard {
            pid_file: &pid_file,
            armed: true,
        };
        let mut running = Running::spawn(cmd, Capture::Pipes, EXEC_OUTPUT_CAP).map_err(io_err)?;
        // The exec'd process's group, once known: what a timeout or leftovers kill.
        let group = std::sync::OnceLock::new();
        let leftovers = leftovers_after_exit(&pid_file, &group);
        tokio::pin!(leftovers);
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut leftovers_done = false;
        let (status, timed_out) = loop {
            tokio::select! {
                r = running.wait() => break (Some(r.map_err(io_err)?), false),
                () = &mut deadline => {
                    tracing::debug!(handler = %self.name, id, "exec timed out, killing it");
                    if let Some(pid) = read_pid(&pid_file) {
                        kill_exec_process(pid, group.get().copied());
                    }
                    let status = match running.wait_for(EXEC_KILL_GRACE).await {
                        Ok(Some(s)) => Some(s),
                        _ => running.kill().await.ok().flatten(),
                    };
                    // The process may have started while we were looking.
                    if let Some(pid) = read_pid(&pid_file) {
                        kill_exec_process(pid, group.get().copied());
                    }
                    break (status, true);
                }
                () = &mut leftovers, if !leftovers_done => {
                    // The process exited a while ago, but the runtime is still running: runc
                    // copies output until EOF, and what the process left behind in its group
                    // holds the pipes. Those leftovers go, so that the runtime can report.
                    leftovers_done = true;
                    if let Some(g) = group.get() {
                        tracing::debug!(handler = %self.name, id, "killing what exec left behind");
                        let _ = nix::sys::signal::killpg(*g, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        };
        let started = read_pid(&pid_file).is_some();
        let out = running.finish().await;
        cancel.armed = false;
        let exit_code = status.map(exit_code).unwrap_or(128 + libc::SIGKILL);
        if !timed_out && !started && exit_code != 0 {
            return Err(RuntimeError::Command {
                handler: self.name.clone(),
                command: "exec",
                id: id.to_owned(),
                status: status.map(|s| s.to_string()).unwrap_or_default(),
                stderr: invoke::stderr_text(&out.stderr),
            });
        }
        Ok(ExecOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code,
            timed_out,
        })
    }

    /// `update --resources FILE ID` with the OCI `LinuxResources` JSON.
    pub async fn update(&self, id: &str, resources: &Resources) -> Result<(), RuntimeError> {
        self.check_id(id)?;
        let io_err = |source| RuntimeError::Io {
            handler: self.name.clone(),
            command: "update",
            id: id.to_owned(),
            source,
        };
        let mut file = tempfile::Builder::new()
            .prefix("crid-resources-")
            .suffix(".json")
            .tempfile()
            .map_err(io_err)?;
        serde_json::to_writer(&mut file, resources).map_err(|e| io_err(io::Error::other(e)))?;
        let op = Op::Update {
            id,
            resources: file.path(),
        };
        let out = self.run(&op, Capture::Pipes).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failed(&op, &out))
        }
    }

    /// The full argument list of a command: `--root`, global options, then the command.
    fn argv(&self, op: &Op<'_>) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--root".into(), self.root.clone().into()];
        a.extend(self.global_args.iter().map(OsString::from));
        a.extend(op.args());
        a
    }

    /// crid-monitor's arguments for `req`.
    fn monitor_args(&self, req: &CreateRequest) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut pair = |k: &str, v: &OsStr| {
            a.push(k.into());
            a.push(v.to_owned());
        };
        pair("--runtime", self.binary.as_os_str());
        pair("--runtime-root", self.root.as_os_str());
        for g in &self.global_args {
            pair("--runtime-arg", OsStr::new(g));
        }
        pair("--bundle", req.bundle.as_os_str());
        pair("--id", OsStr::new(&req.id));
        pair("--log-path", req.log_path.as_os_str());
        if let Some(max) = req.log_max_size {
            pair("--log-max-size", OsStr::new(&max.to_string()));
        }
        pair("--exit-file", req.exit_file.as_os_str());
        pair("--pid-file", req.pid_file.as_os_str());
        if let Some(cg) = &req.memory_cgroup {
            pair("--memory-cgroup", cg.as_os_str());
        }
        a
    }

    /// Applies the crun workaround, when needed, to a command about to be spawned.
    fn isolate(&self, cmd: &mut Command) {
        if self.private_mount_ns {
            // SAFETY: the closure only makes raw system calls (async-signal-safe).
            unsafe {
                cmd.pre_exec(hybrid::enter_private_mount_ns);
            }
        }
    }

    fn command(&self, op: &Op<'_>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.argv(op));
        self.isolate(&mut cmd);
        cmd
    }

    async fn run(&self, op: &Op<'_>, capture: Capture) -> Result<invoke::Finished, RuntimeError> {
        self.check_id(op.id())?;
        tracing::debug!(handler = %self.name, id = op.id(), command = op.name(), "runtime command");
        match invoke::run(self.command(op), capture, OUTPUT_CAP, self.timeout).await {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(RuntimeError::Timeout {
                handler: self.name.clone(),
                binary: self.binary.clone(),
                command: op.name().into(),
                id: Some(op.id().to_owned()),
                timeout: self.timeout,
            }),
            Err(source) => Err(RuntimeError::Io {
                handler: self.name.clone(),
                command: op.name(),
                id: op.id().to_owned(),
                source,
            }),
        }
    }

    fn failed(&self, op: &Op<'_>, out: &invoke::Finished) -> RuntimeError {
        RuntimeError::Command {
            handler: self.name.clone(),
            command: op.name(),
            id: op.id().to_owned(),
            status: out.status.to_string(),
            stderr: invoke::stderr_text(&out.stderr),
        }
    }

    /// Container IDs go on command lines: no empty ones, no options, no paths.
    fn check_id(&self, id: &str) -> Result<(), RuntimeError> {
        let valid = !id.is_empty()
            && !id.starts_with('-')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
        if valid {
            Ok(())
        } else {
            Err(RuntimeError::InvalidArgument {
                handler: self.name.clone(),
                what: "container id",
                value: id.to_owned(),
            })
        }
    }
}

/// Global options for the cgroup driver.
fn global_args(driver: CgroupDriver) -> Vec<String> {
    match driver {
        CgroupDriver::Cgroupfs => Vec::new(),
        CgroupDriver::Systemd => vec!["--systemd-cgroup".to_owned()],
    }
}

/// The runtime does not know container `id` (runc: "container does not exist"; crun: ENOENT
/// on its state directory `<root>/<id>`, so only an ENOENT naming the container counts).
fn is_not_found(stderr: &str, id: &str) -> bool {
    stderr.contains("does not exist")
        || (stderr.contains("No such file or directory") && stderr.contains(&format!("/{id}")))
}

/// The container has no process left to signal (runc: "container not running" or, newer,
/// "process already finished"; crun: ESRCH).
fn is_not_running(stderr: &str) -> bool {
    ["not running", "already finished", "No such process"]
        .iter()
        .any(|m| stderr.contains(m))
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// The process group of an exec'd process, if it is safe to kill as a whole. runc makes the
/// process a session and group leader; crun leaves it in a session whose leader (its own
/// helper) has exited. Never a group led by another live process (it could be the
/// container's init), nor ours.
fn exec_group(pid: i32) -> Option<nix::unistd::Pid> {
    let pid = nix::unistd::Pid::from_raw(pid);
    let pgid = nix::unistd::getpgid(Some(pid)).ok()?;
    let leader_gone = !Path::new("/proc").join(pgid.to_string()).exists();
    (pgid != nix::unistd::getpgrp() && (pgid == pid || leader_gone)).then_some(pgid)
}

/// SIGKILLs an exec'd process and its process group (`group` when recorded earlier, else
/// looked up now).
fn kill_exec_process(pid: i32, group: Option<nix::unistd::Pid>) {
    use nix::sys::signal::{Signal, kill, killpg};
    if let Some(g) = group.or_else(|| exec_group(pid)) {
        let _ = killpg(g, Signal::SIGKILL);
    }
    let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
}

/// Completes [`invoke::DRAIN_AFTER_EXIT`] after the exec'd process (PID from `pid_file`)
/// exited, having recorded its process group in `group` while it was alive. Watches the
/// exit with a pidfd; only the pid file's appearance is polled, for the first moments.
async fn leftovers_after_exit(pid_file: &Path, group: &std::sync::OnceLock<nix::unistd::Pid>) {
    let pid = loop {
        if let Some(pid) = read_pid(pid_file) {
            break pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if let Some(g) = exec_group(pid) {
        let _ = group.set(g);
    }
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw >= 0 {
        // SAFETY: `raw` is a descriptor we just opened and own from here on.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
        // SAFETY: the OwnedFd stays open, and is the same descriptor, while the AsyncFd
        // that owns it lives.
        match unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        } {
            // A pidfd turns readable when the process exits.
            Ok(afd) => drop(afd.readable().await),
            Err(_) => return std::future::pending().await,
        }
    }
    tokio::time::sleep(invoke::DRAIN_AFTER_EXIT).await;
}

/// Kills the exec'd process if [`OciRuntime::exec`] is dropped before it finished (the
/// runtime itself goes with `kill_on_drop`, but the process it started would stay).
struct ExecCancelGuard<'a> {
    pid_file: &'a Path,
    armed: bool,
}

impl Drop for ExecCancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Some(pid) = read_pid(self.pid_file)
        {
            kill_exec_process(pid, None);
        }
    }
}

/// The monitor's status line.
#[derive(Debug, PartialEq, Eq)]
enum MonitorStatus {
    Pid(i32),
    Error(String),
}

/// Reads and parses the one status line crid-monitor writes on its stdout.
async fn read_status(stdout: Option<tokio::process::ChildStdout>) -> Result<MonitorStatus, String> {
    let stdout = stdout.ok_or("no status pipe")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout.take(64 * 1024))
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading the status line: {e}"))?;
    parse_status(&line)
}

fn parse_status(line: &str) -> Result<MonitorStatus, String> {
    if line.trim().is_empty() {
        return Err("exited without a status line".into());
    }
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad status line {line:?}: {e}"))?;
    if let Some(pid) = v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
        && pid > 0
    {
        return Ok(MonitorStatus::Pid(pid));
    }
    match v["error"].as_str() {
        Some(e) => Ok(MonitorStatus::Error(e.to_owned())),
        None => Err(format!("bad status line {line:?}")),
    }
}

/// The text of `path` from byte `start`, bounded, for error messages.
fn read_from(path: &Path, start: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = f.take(4096).read_to_end(&mut buf);
    }
    invoke::stderr_text(&buf)
}

/// Kills the monitor if the create did not complete (error, timeout, or cancellation).
struct MonitorGuard(Option<Child>);

impl MonitorGuard {
    fn pid(&self) -> i32 {
        self.0.as_ref().and_then(Child::id).map_or(0, |p| p as i32)
    }

    fn signal(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if let Some(pid) = child.id() {
                // After its setsid the monitor leads its group, with the runtime's `create`
                // in it (the container's init has a session of its own). Before, the group
                // does not exist and this fails harmlessly.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
        }
    }

    async fn kill_and_reap(&mut self) {
        self.signal();
        if let Some(mut child) = self.0.take() {
            let _ = tokio::time::timeout(MONITOR_REAP_LIMIT, child.wait()).await;
        }
    }
}

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        // Dropped before the monitor reported (the create future was cancelled): kill it;
        // tokio reaps dropped children in the background.
        self.signal();
    }
}

/// Runs `binary --version` synchronously (for [`OciRuntime::new`]), bounded by `limit`.
fn version_blocking(name: &str, binary: &Path, limit: Duration) -> Result<String, RuntimeError> {
    use std::io::Read;
    let exec_err = |source| RuntimeError::Exec {
        handler: name.to_owned(),
        binary: binary.to_path_buf(),
        source,
    };
    let mut child = std::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(exec_err)?;
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(exec_err)? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RuntimeError::Timeout {
                handler: name.to_owned(),
                binary: binary.to_path_buf(),
                command: "--version".into(),
                id: None,
                timeout: limit,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(RuntimeError::Failed {
            handler: name.to_owned(),
            binary: binary.to_path_buf(),
            arg: "--version",
            status,
            stderr: String::new(),
        });
    }
    Ok(out.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(driver: CgroupDriver, root: Option<&str>) -> OciRuntime {
        let handler = RuntimeHandler {
            path: "/bin/true".into(),
            root: root.map(PathBuf::from),
            kind: RuntimeKind::Oci,
        };
        OciRuntime::new("runc", &handler, Path::new("/run/crid"), driver)
            .expect("runtime")
            .with_private_mount_ns(false)
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn root_defaults_below_runroot_and_systemd_adds_its_flag() {
        let r = runtime(CgroupDriver::Cgroupfs, None);
        assert_eq!(r.root(), Path::new("/run/crid/runtimes/runc"));
        assert_eq!(r.name(), "runc");
        assert_eq!(r.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(
            strings(r.argv(&Op::Start("c1"))),
            ["--root", "/run/crid/runtimes/runc", "start", "c1"]
        );
        let r = runtime(CgroupDriver::Systemd, Some("/var/run/runc"));
        assert_eq!(
            strings(r.argv(&Op::State("c1"))),
            ["--root", "/var/run/runc", "--systemd-cgroup", "state", "c1"]
        );
    }

    #[test]
    fn command_arguments() {
        let r = runtime(CgroupDriver::Cgroupfs, Some("/r"));
        let cases: [(Op<'_>, &[&str]); 6] = [
            (
                Op::Kill {
                    id: "c",
                    signal: "SIGTERM",
                    all: false,
                },
                &["kill", "c", "SIGTERM"],
            ),
            (
                Op::Kill {
                    id: "c",
                    signal: "9",
                    all: true,
                },
                &["kill", "--all", "c", "9"],
            ),
            (
                Op::Delete {
                    id: "c",
                    force: true,
                },
                &["delete", "--force", "c"],
            ),
            (
                Op::Delete {
                    id: "c",
                    force: false,
                },
                &["delete", "c"],
            ),
            (
                Op::Exec {
                    id: "c",
                    process: Path::new("/t/p.json"),
                    pid_file: Path::new("/t/pid"),
                },
                &[
                    "exec",
                    "--process",
                    "/t/p.json",
                    "--pid-file",
                    "/t/pid",
                    "c",
                ],
            ),
            (
                Op::Update {
                    id: "c",
                    resources: Path::new("/t/r.json"),
                },
                &["update", "--resources", "/t/r.json", "c"],
            ),
        ];
        for (op, want) in cases {
            let got = strings(r.argv(&op));
            assert_eq!(got[..2], ["--root", "/r"]);
            assert_eq!(got[2..], *want, "{op:?}");
            assert_eq!(op.id(), "c");
        }
    }

    #[test]
    fn monitor_arguments() {
        let r = runtime(CgroupDriver::Systemd, Some("/r"));
        let req = CreateRequest {
            id: "c1".into(),
            bundle: "/b".into(),
            log_path: "/l".into(),
            log_max_size: Some(4096),
            exit_file: "/exits/c1".into(),
            pid_file: "/c/pid".into(),
            memory_cgroup: Some("/sys/fs/cgroup/memory/c1".into()),
        };
        assert_eq!(
            strings(r.monitor_args(&req)),
            [
                "--runtime",
                "/bin/true",
                "--runtime-root",
                "/r",
                "--runtime-arg",
                "--systemd-cgroup",
                "--bundle",
                "/b",
                "--id",
                "c1",
                "--log-path",
                "/l",
                "--log-max-size",
                "4096",
                "--exit-file",
                "/exits/c1",
                "--pid-file",
                "/c/pid",
                "--memory-cgroup",
                "/sys/fs/cgroup/memory/c1",
            ]
        );
        assert_eq!(req.monitor_log(), Path::new("/c/pid.monitor.log"));
        // The monitor parses what we build.
        let parsed = crate::monitor::supervise::parse_args(strings(r.monitor_args(&req)))
            .expect("monitor accepts its arguments");
        assert_eq!(parsed.runtime_args, ["--systemd-cgroup"]);
        assert_eq!(parsed.log_max_size, Some(4096));
        let minimal = CreateRequest {
            log_max_size: None,
            memory_cgroup: None,
            ..req
        };
        let a = strings(r.monitor_args(&minimal));
        assert!(
            !a.iter()
                .any(|s| s == "--memory-cgroup" || s == "--log-max-size")
        );
    }

    #[test]
    fn ids_and_signals_that_could_be_options_are_refused() {
        let r = runtime(CgroupDriver::Cgroupfs, None);
        for bad in ["", "-x", "--force", "a/b", "a b", "../x"] {
            assert!(r.check_id(bad).is_err(), "{bad:?}");
        }
        for good in ["c1", "crid-test-abc_1.2", "a+b"] {
            assert!(r.check_id(good).is_ok(), "{good:?}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        for bad in ["", "-9", "SIG TERM", "--all"] {
            let err = rt.block_on(r.kill("c1", bad, false)).expect_err(bad);
            assert!(matches!(err, RuntimeError::InvalidArgument { .. }), "{err}");
        }
    }

    #[test]
    fn runtime_messages_are_classified() {
        // runc 1.1
        assert!(is_not_found(
            r#"time="2026-11-28T10:20:43Z" level=error msg="container does not exist""#,
            "c1"
        ));
        assert!(is_not_running(
            r#"time="2026-11-28T10:20:42Z" level=error msg="container not running""#
        ));
        // crun 1.8
        assert!(is_not_found(
            "error opening file `/run/crun/c1/status`: No such file or directory",
            "c1"
        ));
        assert!(is_not_found(
            "cannot open directory '/run/crun/c1': No such file or directory",
            "c1"
        ));
        assert!(is_not_running("kill container: No such process"));
        assert!(!is_not_found("permission denied", "c1"));
        // An ENOENT about something else (a cgroup, a mount) is a real failure.
        assert!(!is_not_found(
            "open `/sys/fs/cgroup/memory/x/memory.limit_in_bytes`: No such file or directory",
            "c1"
        ));
        assert!(!is_not_running("permission denied"));
    }

    #[test]
    fn monitor_status_lines() {
        assert_eq!(parse_status("{\"pid\":42}\n"), Ok(MonitorStatus::Pid(42)));
        assert_eq!(
            parse_status("{\"error\":\"runc create failed: boom\"}\n"),
            Ok(MonitorStatus::Error("runc create failed: boom".into()))
        );
        assert!(parse_status("").is_err());
        assert!(parse_status("{\"pid\":0}").is_err());
        assert!(parse_status("garbage").is_err());
    }

    #[test]
    fn vm_handlers_are_not_oci_runtimes() {
        let handler = RuntimeHandler {
            path: "/bin/sh".into(),
            root: None,
            kind: RuntimeKind::Vm,
        };
        let err = OciRuntime::new("kata", &handler, Path::new("/run"), CgroupDriver::Cgroupfs)
            .expect_err("vm");
        assert!(matches!(err, RuntimeError::NotOci { .. }), "{err}");
    }

    #[test]
    fn exit_codes_follow_the_cri_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}

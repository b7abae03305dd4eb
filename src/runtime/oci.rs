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

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

mod create;
mod exec;
pub mod interactive;
mod monitor_start;

use super::hybrid::{self, CgroupLayout};
use super::invoke::{self, Capture};
use super::{PROBE_TIMEOUT, RuntimeError, resolve_binary};
use crate::config::{CgroupDriver, RuntimeHandler, RuntimeKind};
use crate::spec::oci::Resources;

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
    features: super::handler::Features,
    exit_via_wait: bool,
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
    /// The bundle directory.
    #[serde(default)]
    pub bundle: PathBuf,
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
    pub async fn new(
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
        let features = probe_features(&binary).await;
        let private_mount_ns = layout.is_hybrid() && {
            let probe = super::probe_within(name, handler, PROBE_TIMEOUT).await?;
            hybrid::needs_private_mount_ns(&probe.version, layout)
        };
        let exit_via_wait = handler
            .exit_via_wait
            .unwrap_or_else(|| binary.file_name().is_some_and(|n| n == "runsc"));
        Ok(OciRuntime {
            name: name.to_owned(),
            exit_via_wait,
            root: handler
                .root
                .clone()
                .unwrap_or_else(|| runroot.join("runtimes").join(name)),
            global_args: global_args(cgroup_driver)
                .into_iter()
                .chain(handler.args.iter().cloned())
                .collect(),
            binary,
            private_mount_ns,
            timeout: DEFAULT_TIMEOUT,
            features,
        })
    }

    /// What the runtime supports, as `<runtime> features` said when the handler was made.
    pub fn features(&self) -> super::handler::Features {
        self.features
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

    /// Whether crid-monitor learns exits from the runtime's `wait` (`exit_via_wait`).
    pub fn exit_via_wait(&self) -> bool {
        self.exit_via_wait
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
        super::check_id(&self.name, id)
    }
}

/// Global options for the cgroup driver.
/// Asks the runtime what it supports (`<runtime> features`, the OCI runtime-spec's
/// features document, which runc has and crun 1.8 lacks). A runtime that does not answer
/// within the probe timeout, or answers something else, supports nothing optional.
async fn probe_features(binary: &Path) -> super::handler::Features {
    let run = tokio::process::Command::new(binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match tokio::time::timeout(super::PROBE_TIMEOUT, run).await {
        Ok(Ok(out)) if out.status.success() => features_from(&out.stdout, &kernel),
        _ => super::handler::Features::default(),
    }
}

/// The optional features crid can use, from a runtime's features document and the
/// kernel's release:
/// - recursive read-only mounts need the `rro` mount option and `mount_setattr(2)` with
///   `AT_RECURSIVE`, Linux 5.12 or later (api.proto, RuntimeHandlerFeatures);
/// - user namespaces stay off: crid does not map pods' IDs yet, whatever the runtime can do.
pub(crate) fn features_from(document: &[u8], kernel: &str) -> super::handler::Features {
    #[derive(serde::Deserialize)]
    struct Document {
        #[serde(rename = "mountOptions", default)]
        mount_options: Vec<String>,
    }
    let rro = serde_json::from_slice::<Document>(document)
        .is_ok_and(|d| d.mount_options.iter().any(|o| o == "rro"));
    let mut release = kernel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (release.next().unwrap_or(0), release.next().unwrap_or(0));
    super::handler::Features {
        recursive_read_only_mounts: rro && version >= (5, 12),
        user_namespaces: false,
    }
}

fn global_args(driver: CgroupDriver) -> Vec<String> {
    match driver {
        CgroupDriver::Cgroupfs => Vec::new(),
        CgroupDriver::Systemd => vec!["--systemd-cgroup".to_owned()],
    }
}

/// The runtime does not know container `id` (runc: "container does not exist"; crun: ENOENT
/// on its state directory `<root>/<id>`, so only an ENOENT naming the container counts).
pub(crate) fn is_not_found(stderr: &str, id: &str) -> bool {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn runtime(driver: CgroupDriver, root: Option<&str>) -> OciRuntime {
        let handler = RuntimeHandler {
            path: "/bin/true".into(),
            root: root.map(PathBuf::from),
            kind: RuntimeKind::Oci,
            args: Vec::new(),
            always_infra: false,
            timeout_secs: None,
            exit_via_wait: None,
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt")
            .block_on(OciRuntime::new(
                "runc",
                &handler,
                Path::new("/run/crid"),
                driver,
            ))
            .expect("runtime")
            .with_private_mount_ns(false)
    }

    pub(crate) fn strings(v: Vec<OsString>) -> Vec<String> {
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

    // `rro` in the features document and a 5.12+ kernel: recursive read-only mounts.
    #[test]
    fn features_come_from_the_document_and_the_kernel() {
        let runc = br#"{"ociVersionMin":"1.0.0","mountOptions":["bind","rbind","ro","rro"]}"#;
        let old = br#"{"mountOptions":["bind","ro"]}"#;
        let yes = |d: &[u8], k: &str| features_from(d, k).recursive_read_only_mounts;
        assert!(yes(runc, "6.1.0-27-amd64"));
        assert!(yes(runc, "5.12.0"));
        assert!(!yes(runc, "5.11.22-generic"), "mount_setattr came in 5.12");
        assert!(!yes(old, "6.1.0"), "a runtime without rro");
        assert!(!yes(b"unknown command features", "6.1.0"), "crun 1.8");
        assert!(!yes(b"", "6.1.0"));
        assert!(!features_from(runc, "6.1.0").user_namespaces);
    }

    // A handler's `args` (runsc's `--platform=ptrace`, say) go after crid's own global
    // options and before every command.
    #[test]
    fn handler_args_precede_every_command() {
        let handler = RuntimeHandler {
            path: "/bin/true".into(),
            root: Some("/r".into()),
            kind: RuntimeKind::Oci,
            args: vec!["--platform=ptrace".into(), "--network=none".into()],
            always_infra: true,
            timeout_secs: None,
            exit_via_wait: None,
        };
        let r = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt")
            .block_on(OciRuntime::new(
                "runsc",
                &handler,
                Path::new("/run/crid"),
                CgroupDriver::Systemd,
            ))
            .expect("runtime");
        assert_eq!(
            strings(r.argv(&Op::Start("c1"))),
            [
                "--root",
                "/r",
                "--systemd-cgroup",
                "--platform=ptrace",
                "--network=none",
                "start",
                "c1"
            ]
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

    /// The daemon spawns these futures onto its multi-threaded runtime.
    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        let r = runtime(CgroupDriver::Cgroupfs, None);
        let req = CreateRequest {
            id: "c".into(),
            bundle: "/b".into(),
            log_path: "/l".into(),
            log_max_size: None,
            exit_file: "/e".into(),
            pid_file: "/p".into(),
            memory_cgroup: None,
        };
        send(r.create(Path::new("/m"), &req));
        send(r.start("c"));
        send(r.state("c"));
        send(r.kill("c", "KILL", true));
        send(r.delete("c", true));
        send(r.exec("c", &crate::spec::oci::Process::default(), None));
        send(r.update("c", &Resources::default()));
    }

    #[test]
    fn vm_handlers_are_not_oci_runtimes() {
        let handler = RuntimeHandler {
            path: "/bin/sh".into(),
            root: None,
            kind: RuntimeKind::Vm,
            args: Vec::new(),
            always_infra: false,
            timeout_secs: None,
            exit_via_wait: None,
        };
        let err = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt")
            .block_on(OciRuntime::new(
                "kata",
                &handler,
                Path::new("/run"),
                CgroupDriver::Cgroupfs,
            ))
            .expect_err("vm");
        assert!(matches!(err, RuntimeError::NotOci { .. }), "{err}");
    }
}

//! Starting a container and learning its exit through the runtime's own commands, for
//! runtimes whose containers are not host processes the monitor can reap: gVisor's runsc
//! runs them inside its sandbox, and the PID its `create` reports is the sandbox's (shared
//! by every container of the pod). Two more quirks follow from that design:
//! - runsc hands a container the stdio of its `start` command (not of its `create`), so
//!   the monitor, which holds the container's pipes, runs `start` itself when the daemon
//!   asks (SIGUSR2) and writes the outcome to [`START_RESULT`] in the bundle;
//! - `<runtime> wait ID` blocks until the container exits and prints
//!   `{"id":ID,"exitStatus":N}` (128 + the signal for a killed process), but refuses a
//!   container that has not started: the monitor runs it after its `start`, and again
//!   after a failure while the sandbox lives.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::Pid;

/// The file in the bundle where the monitor writes how the `start` the daemon asked for
/// went: `{"ok":true}` or `{"error":"..."}`.
pub const START_RESULT: &str = "start.result";

/// First delay before running `wait` again after it failed; doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest delay between two runs of `wait`.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest the runtime's `start` may take before the monitor kills it.
const START_LIMIT: Duration = Duration::from_secs(60);

/// What the runtime's `wait` printed: the container's exit code, if it said one.
pub fn parse_exit(output: &[u8]) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_slice(output).ok()?;
    let code = v.get("exitStatus")?.as_i64()?;
    i32::try_from(code).ok().filter(|c| (0..=255).contains(c))
}

/// What [`START_RESULT`] says: `Ok` once started, `Err(reason)` otherwise; `None` while
/// it does not hold a complete answer.
pub fn parse_start_result(text: &[u8]) -> Option<Result<(), String>> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    if v.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        return Some(Ok(()));
    }
    v.get("error")
        .and_then(serde_json::Value::as_str)
        .map(|e| Err(e.to_owned()))
}

/// The container's end of its stdio, kept by the monitor until the runtime's `start` has
/// handed it over.
#[derive(Debug)]
pub struct ContainerStdio {
    /// The read end of its stdin, when it has one.
    pub stdin: Option<OwnedFd>,
    /// The write end of its stdout pipe (or its terminal).
    pub stdout: OwnedFd,
    /// The write end of its stderr pipe (or its terminal).
    pub stderr: OwnedFd,
}

/// One container started and waited on through the runtime's commands.
#[derive(Debug)]
pub struct RuntimeWait {
    runtime: PathBuf,
    root: PathBuf,
    args: Vec<String>,
    id: String,
    bundle: PathBuf,
    /// The sandbox: while it lives, a failed `wait` is tried again.
    sandbox: Pid,
    /// Until the container started.
    stdio: Option<ContainerStdio>,
    started: bool,
    running: Option<(Pid, File)>,
    retry_at: Option<Instant>,
    delay: Duration,
}

/// What became of the `wait` child the monitor just reaped.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// Not the `wait` child.
    Other,
    /// The container exited with this code.
    Exited(i32),
    /// `wait` failed; it runs again later while the sandbox lives.
    Retry,
    /// The container is gone: its sandbox ended, or it was deleted before it started.
    Gone,
}

impl RuntimeWait {
    /// Container `id` of `bundle` under `runtime --root root args...`, whose sandbox
    /// process is `sandbox` and whose stdio `start` hands over.
    pub fn new(
        runtime: PathBuf,
        root: PathBuf,
        args: Vec<String>,
        id: String,
        bundle: PathBuf,
        sandbox: Pid,
        stdio: ContainerStdio,
    ) -> Self {
        RuntimeWait {
            runtime,
            root,
            args,
            id,
            bundle,
            sandbox,
            stdio: Some(stdio),
            started: false,
            running: None,
            retry_at: None,
            delay: RETRY_FIRST,
        }
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(&self.root)
            .args(&self.args)
            .arg(verb)
            .arg(&self.id)
            .stdin(Stdio::null());
        // The monitor blocks SIGCHLD and friends for its signalfd; children must not
        // inherit that.
        unsafe {
            cmd.pre_exec(|| {
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                    .map_err(io::Error::from)
            });
        }
        cmd
    }

    /// The daemon asks for the start (SIGUSR2): runs the runtime's `start` with the
    /// container's stdio, writes [`START_RESULT`], then runs `wait`. A container already
    /// started answers `ok` again. `Some(Waited::Gone)` when the container is gone (the
    /// daemon deleted it unstarted, to stop it: runsc signals no created container).
    pub fn on_start_requested(&mut self) -> Option<Waited> {
        if self.started {
            self.write_result(Ok(()));
            return None;
        }
        match self.start() {
            Ok(()) => {
                self.started = true;
                // The runtime holds the container's ends now; ours would keep its
                // pipes from ever ending.
                self.stdio = None;
                self.write_result(Ok(()));
                self.spawn_wait();
                None
            }
            Err(reason) if !self.known() => {
                self.write_result(Err(format!("{reason}; the container is gone")));
                Some(Waited::Gone)
            }
            Err(reason) => {
                self.write_result(Err(reason));
                None
            }
        }
    }

    fn start(&self) -> Result<(), String> {
        let Some(stdio) = self.stdio.as_ref() else {
            return Err("the container's stdio is gone".into());
        };
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| format!("duplicating stdio: {e}"))
        };
        let mut cmd = self.command("start");
        if let Some(i) = &stdio.stdin {
            cmd.stdin(Stdio::from(dup(i)?));
        }
        cmd.stdout(Stdio::from(dup(&stdio.stdout)?))
            .stderr(Stdio::from(dup(&stdio.stderr)?));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("running {} start: {e}", self.runtime.display()))?;
        drop(cmd);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                // What it said went where it was told to write: the container's stderr.
                Ok(Some(status)) => {
                    return Err(format!(
                        "{} start failed ({status}); what it said is in the container's log",
                        self.runtime.display()
                    ));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} start did not finish within {}s",
                        self.runtime.display(),
                        START_LIMIT.as_secs()
                    ));
                }
                Err(e) => return Err(format!("waiting for {} start: {e}", self.runtime.display())),
            }
        }
    }

    /// Writes the start's outcome whole (a temporary file renamed), for the daemon that
    /// polls for it.
    fn write_result(&self, outcome: Result<(), String>) {
        let text = match outcome {
            Ok(()) => serde_json::json!({ "ok": true }),
            Err(e) => serde_json::json!({ "error": e }),
        };
        let path = start_result_path(&self.bundle);
        let tmp = self.bundle.join(format!("{START_RESULT}.tmp"));
        if let Err(e) =
            std::fs::write(&tmp, text.to_string()).and_then(|()| std::fs::rename(&tmp, &path))
        {
            eprintln!(
                "crid-monitor: container {}: writing {}: {e}",
                self.id,
                path.display()
            );
        }
    }

    /// When `wait` is due to run again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Runs `wait` again if it is due.
    pub fn tick(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.spawn_wait();
        }
    }

    fn spawn_wait(&mut self) {
        match self.wait_command() {
            Ok(running) => self.running = Some(running),
            Err(e) => {
                eprintln!(
                    "crid-monitor: container {}: running the runtime's wait: {e}",
                    self.id
                );
                self.schedule_retry();
            }
        }
    }

    fn wait_command(&self) -> io::Result<(Pid, File)> {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut cmd = self.command("wait");
        cmd.stdout(Stdio::from(w));
        let child = cmd.spawn()?;
        // The monitor reaps it by PID through its SIGCHLD loop, not through `child`.
        let pid = Pid::from_raw(child.id() as i32);
        drop(cmd);
        Ok((pid, File::from(r)))
    }

    /// Whether the runtime still knows the container (`state` succeeds); when it cannot
    /// tell, it is taken as known, so `wait` is tried again.
    fn known(&self) -> bool {
        match self.command("state").output() {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                !crate::runtime::oci::is_not_found(&String::from_utf8_lossy(&o.stderr), &self.id)
            }
            Err(_) => true,
        }
    }

    fn schedule_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(RETRY_MAX);
    }

    /// A child the monitor reaped: if it is `wait`, what it said.
    pub fn reaped(&mut self, pid: Pid) -> Waited {
        match &self.running {
            Some((p, _)) if *p == pid => {}
            _ => return Waited::Other,
        }
        let Some((_, mut out)) = self.running.take() else {
            return Waited::Other;
        };
        // It has exited: its few bytes are all in the pipe, whose only writer is gone.
        let mut said = Vec::new();
        let _ = out.read_to_end(&mut said);
        if let Some(code) = parse_exit(&said) {
            return Waited::Exited(code);
        }
        if nix::sys::signal::kill(self.sandbox, None::<Signal>).is_err() || !self.known() {
            return Waited::Gone;
        }
        eprintln!(
            "crid-monitor: container {}: the runtime's wait said `{}`; trying again",
            self.id,
            String::from_utf8_lossy(&said).trim()
        );
        self.schedule_retry();
        Waited::Retry
    }
}

/// The bundle's start result file.
pub fn start_result_path(bundle: &Path) -> PathBuf {
    bundle.join(START_RESULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_read_from_runsc_wait_output() {
        assert_eq!(parse_exit(br#"{"id":"c1","exitStatus":5}"#), Some(5));
        assert_eq!(
            parse_exit(b"{\"id\":\"c\",\"exitStatus\":137}\n"),
            Some(137)
        );
        assert_eq!(parse_exit(br#"{"id":"c1"}"#), None);
        assert_eq!(parse_exit(br#"{"exitStatus":-1}"#), None);
        assert_eq!(parse_exit(br#"{"exitStatus":256}"#), None);
        assert_eq!(parse_exit(b"waiting on container: not started"), None);
        assert_eq!(parse_exit(b""), None);
    }

    #[test]
    fn start_results_parse() {
        assert_eq!(parse_start_result(br#"{"ok":true}"#), Some(Ok(())));
        assert_eq!(
            parse_start_result(br#"{"error":"no"}"#),
            Some(Err("no".to_owned()))
        );
        assert_eq!(parse_start_result(br#"{"ok":"#), None);
        assert_eq!(parse_start_result(b"{}"), None);
    }

    /// A stand-in runtime in `dir`: a script answering `start`, `wait` and `state` (its
    /// third argument, after `--root R`) with the given shell snippets.
    fn fake_runtime(dir: &Path, start: &str, wait: &str, state: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(dir).expect("dir");
        let script = dir.join("fake-runsc");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$3\" in\nstart) {start};;\nwait) {wait};;\nstate) {state};;\nesac\n"
            ),
        )
        .expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        script
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("crid-runtime-wait-{name}-{}", std::process::id()))
    }

    /// The container's stdio for a test: pipes whose read ends the test keeps.
    fn stdio() -> (ContainerStdio, File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let err = w.try_clone().expect("dup");
        (
            ContainerStdio {
                stdin: None,
                stdout: w,
                stderr: err,
            },
            File::from(r),
        )
    }

    fn waiter(dir: &Path, runtime: PathBuf, sandbox: Pid) -> (RuntimeWait, File) {
        let (io, out) = stdio();
        let w = RuntimeWait::new(
            runtime,
            "/r".into(),
            vec![],
            "c".into(),
            dir.to_owned(),
            sandbox,
            io,
        );
        (w, out)
    }

    /// Runs `w`'s `wait` child to its end and returns its PID.
    fn run_wait(w: &RuntimeWait) -> Pid {
        let pid = w
            .running
            .as_ref()
            .map(|(p, _)| *p)
            .expect("wait is running");
        nix::sys::wait::waitpid(pid, None).expect("reap");
        pid
    }

    fn result(dir: &Path) -> Option<Result<(), String>> {
        parse_start_result(&std::fs::read(start_result_path(dir)).unwrap_or_default())
    }

    #[test]
    fn start_runs_with_the_containers_stdio_then_wait_tells_the_exit() {
        let dir = scratch("exit");
        let runtime = fake_runtime(
            &dir,
            "echo started-with-my-stdout",
            r#"echo '{"id":"c","exitStatus":42}'"#,
            "exit 0",
        );
        let (mut w, mut out) = waiter(&dir, runtime, Pid::this());
        assert_eq!(w.on_start_requested(), None);
        assert_eq!(result(&dir), Some(Ok(())));
        assert!(
            w.stdio.is_none(),
            "the monitor's ends are dropped once started"
        );
        let mut said = String::new();
        out.read_to_string(&mut said).expect("read");
        assert_eq!(
            said, "started-with-my-stdout\n",
            "start wrote into the container's stdout"
        );
        let pid = run_wait(&w);
        assert_eq!(w.reaped(Pid::from_raw(1)), Waited::Other);
        assert_eq!(w.reaped(pid), Waited::Exited(42));
        // A repeated request answers ok without starting again.
        std::fs::remove_file(start_result_path(&dir)).expect("rm");
        assert_eq!(w.on_start_requested(), None);
        assert_eq!(result(&dir), Some(Ok(())));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_start_is_reported_and_the_container_stays_created() {
        let dir = scratch("startfail");
        let runtime = fake_runtime(&dir, "exit 3", "exit 1", "exit 0");
        let (mut w, _out) = waiter(&dir, runtime, Pid::this());
        assert_eq!(w.on_start_requested(), None);
        let Some(Err(reason)) = result(&dir) else {
            panic!("no failure recorded: {:?}", result(&dir));
        };
        assert!(reason.contains("start failed"), "{reason}");
        assert!(w.stdio.is_some(), "kept for another try");
        assert!(w.running.is_none(), "no wait before a start");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_start_of_a_deleted_container_ends_it() {
        let dir = scratch("deleted");
        let runtime = fake_runtime(
            &dir,
            "exit 1",
            "exit 1",
            "echo 'container \"c\" does not exist' >&2; exit 1",
        );
        let (mut w, _out) = waiter(&dir, runtime, Pid::this());
        assert_eq!(w.on_start_requested(), Some(Waited::Gone));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_wait_is_retried_while_the_sandbox_lives_and_backs_off() {
        // This test process stands in for the live sandbox.
        let dir = scratch("retry");
        let runtime = fake_runtime(&dir, "exit 0", "echo 'sandbox busy'", "exit 0");
        let (mut w, _out) = waiter(&dir, runtime, Pid::this());
        w.on_start_requested();
        let pid = run_wait(&w);
        assert_eq!(w.reaped(pid), Waited::Retry);
        let due = w.retry_at().expect("a retry is scheduled");
        assert!(due > Instant::now());
        w.tick(Instant::now());
        assert!(w.running.is_none(), "not due yet");
        w.tick(due);
        let pid = run_wait(&w);
        assert_eq!(w.reaped(pid), Waited::Retry);
        assert_eq!(w.delay, RETRY_FIRST * 4, "the delay doubles");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_wait_with_the_sandbox_gone_ends_the_container() {
        let dir = scratch("gone");
        let runtime = fake_runtime(&dir, "exit 0", "echo 'sandbox no longer running'", "exit 0");
        // No process has this PID (above the kernel's pid_max).
        let (mut w, _out) = waiter(&dir, runtime, Pid::from_raw(i32::MAX));
        w.on_start_requested();
        let pid = run_wait(&w);
        assert_eq!(w.reaped(pid), Waited::Gone);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! `exec`: a process in a running container, its output, its exit code, and no leftovers.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EXEC_KILL_GRACE, EXEC_OUTPUT_CAP, ExecOutput, OciRuntime, Op};
use crate::runtime::RuntimeError;
use crate::runtime::interactive::exit_code;
use crate::runtime::invoke::{self, Capture, Running};
use crate::spec::oci::Process;

/// The scratch files of one `exec`: the process spec the runtime reads and the pid file it
/// writes, in a directory removed on drop.
pub(super) struct ExecFiles {
    dir: tempfile::TempDir,
    process_file: PathBuf,
    pub(super) pid_file: PathBuf,
}

impl ExecFiles {
    /// The runtime operation that runs the process these files describe in container `id`.
    pub(super) fn op<'a>(&'a self, id: &'a str) -> Op<'a> {
        Op::Exec {
            id,
            process: &self.process_file,
            pid_file: &self.pid_file,
        }
    }

    /// Keeps the directory alive as long as the returned guard.
    pub(super) fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }
}

impl OciRuntime {
    /// An `exec` failure of container `id`, naming this handler.
    pub(super) fn exec_error(&self, id: &str, source: io::Error) -> RuntimeError {
        RuntimeError::Io {
            handler: self.name.clone(),
            command: "exec",
            id: id.to_owned(),
            source,
        }
    }

    /// Writes `process` (with `terminal` set as given) for `exec` in container `id`.
    pub(super) fn exec_files(
        &self,
        id: &str,
        process: &Process,
        terminal: bool,
    ) -> Result<ExecFiles, RuntimeError> {
        self.check_id(id)?;
        let io_err = |source| self.exec_error(id, source);
        let dir = tempfile::Builder::new()
            .prefix("crid-exec-")
            .tempdir()
            .map_err(io_err)?;
        let process_file = dir.path().join("process.json");
        let pid_file = dir.path().join("pid");
        let process = Process {
            terminal,
            ..process.clone()
        };
        let json = serde_json::to_vec(&process).map_err(|e| io_err(io::Error::other(e)))?;
        std::fs::write(&process_file, json).map_err(io_err)?;
        Ok(ExecFiles {
            dir,
            process_file,
            pid_file,
        })
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
        let io_err = |source| self.exec_error(id, source);
        let files = self.exec_files(id, process, false)?;
        let pid_file = files.pid_file.as_path();
        let cmd = self.command(&files.op(id));
        // Declared after `files`, so dropped (and run) before the pid file goes with it.
        let mut cancel = ExecCancelGuard {
            pid_file,
            armed: true,
        };
        let mut running = Running::spawn(cmd, Capture::Pipes, EXEC_OUTPUT_CAP).map_err(io_err)?;
        // The exec'd process's group, once known: what a timeout or leftovers kill.
        let group = std::sync::OnceLock::new();
        let leftovers = leftovers_after_exit(pid_file, &group);
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
                    if let Some(pid) = read_pid(pid_file) {
                        kill_exec_process(pid, group.get().copied());
                    }
                    let status = match running.wait_for(EXEC_KILL_GRACE).await {
                        Ok(Some(s)) => Some(s),
                        _ => running.kill().await.ok().flatten(),
                    };
                    // The process may have started while we were looking.
                    if let Some(pid) = read_pid(pid_file) {
                        kill_exec_process(pid, group.get().copied());
                    }
                    break (status, true);
                }
                () = &mut leftovers, if !leftovers_done => {
                    // The process exited a while ago, but the runtime is still running: runc
                    // copies output until EOF, and what the process left behind in its group
                    // holds the pipes. Those leftovers go, so that the runtime can report.
                    leftovers_done = true;
                    let g = group.get().copied().or_else(|| {
                        // It exited before we saw it. runc made it a group leader, and its
                        // group outlives it in what it left behind.
                        read_pid(pid_file)
                            .map(nix::unistd::Pid::from_raw)
                            .filter(|pid| group_has_members(*pid))
                    });
                    if let Some(g) = g {
                        tracing::debug!(handler = %self.name, id, "killing what exec left behind");
                        let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        };
        let started = read_pid(pid_file).is_some();
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
}

pub(super) fn read_pid(path: &Path) -> Option<i32> {
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

/// Whether live processes other than ours are in process group `pgid` (field 5 of
/// `/proc/PID/stat`). A group ID is not reused while the group has members.
fn group_has_members(pgid: nix::unistd::Pid) -> bool {
    if pgid == nix::unistd::getpgrp() {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok).any(|e| {
        std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')').is_some_and(|(_, rest)| {
                let mut fields = rest.split_whitespace();
                let state = fields.next();
                let pgrp = fields.nth(1);
                state != Some("Z") && pgrp == Some(&*pgid.to_string())
            })
        })
    })
}

/// SIGKILLs an exec'd process and its process group (`group` when recorded earlier, else
/// looked up now).
pub(super) fn kill_exec_process(pid: i32, group: Option<nix::unistd::Pid>) {
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn group_members_are_found_and_ours_is_never_offered() {
        assert!(!group_has_members(nix::unistd::getpgrp()));
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert!(group_has_members(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!group_has_members(pid));
    }
}

//! `create` under crid-monitor: spawn it, read its status line, clean up on failure.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
use tokio::process::{Child, Command};

use super::{CreateRequest, Created, MONITOR_REAP_LIMIT, OciRuntime};
use crate::runtime::RuntimeError;
use crate::runtime::invoke;

impl OciRuntime {
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
        if let Some(f) = crate::faults::active() {
            cmd.env(crate::faults::ENV, f.name());
        }
        let child = cmd.spawn().map_err(|e| RuntimeError::Monitor {
            handler: self.name.clone(),
            id: req.id.clone(),
            reason: format!("cannot run {}: {e}", monitor.display()),
        })?;
        let mut guard = MonitorGuard(Some(child));
        let monitor_pid = guard.pid();
        // Recorded before anything can go wrong, so a daemon killed during this create can
        // find and end the monitor (and the runtime's `create` under it) when it restarts.
        let _ = std::fs::write(
            req.bundle.join(crate::monitor::liveness::PID_FILE),
            monitor_pid.to_string(),
        );
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
        if self.exit_via_wait() {
            a.push("--exit-via-wait".into());
        }
        a
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CgroupDriver;
    use crate::runtime::oci::tests::{runtime, strings};

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
}

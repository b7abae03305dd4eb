//! Running a runtime command as a child process, bounded in time and in output.
//!
//! Every child runs in a process group of its own, so a timeout kills the whole group (a
//! wrapper script and what it started, not only the script) and then reaps the child: no
//! zombie and no stray process is left behind. Output is read concurrently with the wait, so
//! a chatty child never blocks on a full pipe, and kept up to a cap.

use std::io::{self, Read, Seek};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long output is still read after the child exited, for grandchildren (processes in the
/// container) that may hold the pipes open.
pub(crate) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a killed child may take to be reaped before we give up waiting.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// Where a child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// stdout and stderr to pipes, read while the child runs.
    Pipes,
    /// stdout to /dev/null, stderr to an unlinked temporary file. For commands whose
    /// descendants keep inherited descriptors (runc `start`): a pipe would never see EOF.
    StderrFile,
}

/// A child's (capped) output.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A finished child's status and (capped) output.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A spawned child with its output collectors.
pub(crate) struct Running {
    child: Child,
    stdout: Option<Collector>,
    stderr: Option<Collector>,
    stderr_file: Option<std::fs::File>,
    cap: usize,
}

impl Running {
    /// Spawns `cmd` (stdin from /dev/null, its own process group, killed when dropped).
    pub(crate) fn spawn(mut cmd: Command, capture: Capture, cap: usize) -> io::Result<Self> {
        cmd.stdin(Stdio::null()).process_group(0).kill_on_drop(true);
        let mut stderr_file = None;
        match capture {
            Capture::Pipes => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Capture::StderrFile => {
                let f = tempfile::tempfile()?;
                cmd.stdout(Stdio::null()).stderr(f.try_clone()?);
                stderr_file = Some(f);
            }
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().map(|r| Collector::spawn(r, cap));
        let stderr = child.stderr.take().map(|r| Collector::spawn(r, cap));
        Ok(Self {
            child,
            stdout,
            stderr,
            stderr_file,
            cap,
        })
    }

    /// Waits for the child to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Waits up to `limit` for the child; `Ok(None)` if it is still running then.
    pub(crate) async fn wait_for(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// SIGKILLs the child's process group and reaps the child.
    pub(crate) async fn kill(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(pid) = self.child.id() {
            // The child leads its own group (process_group(0)) and is not reaped yet, so
            // the group ID still names only it and what it started.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
        self.wait_for(REAP_LIMIT).await
    }

    /// Collects the output of a child that has exited (or was killed).
    pub(crate) async fn finish(mut self) -> Output {
        let (stdout, mut stderr) =
            tokio::join!(drain(self.stdout.take()), drain(self.stderr.take()));
        if let Some(mut f) = self.stderr_file.take() {
            let mut buf = Vec::new();
            let _ = f.rewind();
            let _ = f.take(self.cap as u64).read_to_end(&mut buf);
            stderr = buf;
        }
        Output { stdout, stderr }
    }
}

/// Runs `cmd` to completion within `limit`; `Ok(None)` when it timed out (then the child's
/// process group was killed and the child reaped).
pub(crate) async fn run(
    cmd: Command,
    capture: Capture,
    cap: usize,
    limit: Duration,
) -> io::Result<Option<Finished>> {
    let mut running = Running::spawn(cmd, capture, cap)?;
    match running.wait_for(limit).await {
        Ok(Some(status)) => {
            let Output { stdout, stderr } = running.finish().await;
            Ok(Some(Finished {
                status,
                stdout,
                stderr,
            }))
        }
        Ok(None) => {
            running.kill().await?;
            Ok(None)
        }
        Err(e) => {
            let _ = running.kill().await;
            Err(e)
        }
    }
}

/// Reads a pipe in the background into a shared buffer, keeping the first `cap` bytes (the
/// rest is read and dropped, so the writer never blocks). What was read stays available
/// even when the pipe never reaches EOF.
pub(crate) struct Collector {
    kept: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Collector {
    fn spawn(mut r: impl AsyncRead + Unpin + Send + 'static, cap: usize) -> Self {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&kept);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut kept = shared.lock().unwrap_or_else(|e| e.into_inner());
                        let room = cap.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
        });
        Self { kept, task }
    }

    /// Waits up to [`DRAIN_AFTER_EXIT`] for EOF, then returns what was read. Processes
    /// that still hold the pipe (a daemon started in the container) keep it, but nothing
    /// more is read from it.
    async fn drain(mut self) -> Vec<u8> {
        if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn drain(collector: Option<Collector>) -> Vec<u8> {
    match collector {
        Some(c) => c.drain().await,
        None => Vec::new(),
    }
}

/// Trims a runtime's stderr for an error message: runc prints logrus lines
/// (`time=... level=error msg="..."`); keep them whole, just bounded.
pub(crate) fn stderr_text(stderr: &[u8]) -> String {
    const MAX: usize = 4096;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[tokio::test]
    async fn output_is_captured_and_capped() {
        let out = run(
            sh("printf 0123456789; printf err >&2; exit 4"),
            Capture::Pipes,
            4,
            Duration::from_secs(10),
        )
        .await
        .expect("run")
        .expect("finished");
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout, b"0123");
        assert_eq!(out.stderr, b"err");
    }

    #[tokio::test]
    async fn stderr_file_mode_reads_stderr_back() {
        let out = run(
            sh("echo hidden; echo oops >&2; exit 1"),
            Capture::StderrFile,
            1024,
            Duration::from_secs(10),
        )
        .await
        .expect("run")
        .expect("finished");
        assert!(out.stdout.is_empty());
        assert_eq!(out.stderr, b"oops\n");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 60 & echo $! > {p}; echo $$ >> {p}; wait",
            p = pids.display()
        );
        let started = std::time::Instant::now();
        let out = run(
            sh(&script),
            Capture::Pipes,
            1024,
            Duration::from_millis(500),
        )
        .await
        .expect("run");
        assert!(out.is_none(), "must time out");
        assert!(started.elapsed() < Duration::from_secs(10));
        let text = std::fs::read_to_string(&pids).expect("pids");
        let pids: Vec<&str> = text.split_whitespace().collect();
        let [sleep, shell] = pids[..] else {
            panic!("pids file: {text:?}")
        };
        // The shell was our child: killed and reaped, so it is gone entirely.
        assert!(!std::path::Path::new("/proc").join(shell).exists());
        // The sleep was killed with the group; init reaps it, so allow it a zombie moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(sleep) {
            assert!(
                std::time::Instant::now() < deadline,
                "sleep {sleep} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Exists and is not a zombie.
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn output_read_before_a_grandchild_kept_the_pipe_is_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let started = std::time::Instant::now();
        let out = run(
            sh(&format!(
                "sleep 30 & echo $! > {}; echo early",
                pid_file.display()
            )),
            Capture::Pipes,
            1024,
            Duration::from_secs(10),
        )
        .await
        .expect("run")
        .expect("finished");
        // The sleep we started holds the pipe: stop it, by its PID.
        let sleep: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sleep),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(out.stdout, b"early\n");
        let took = started.elapsed();
        assert!(took < DRAIN_AFTER_EXIT + Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn stderr_text_is_trimmed_and_bounded() {
        assert_eq!(stderr_text(b"  boom\n"), "boom");
        let long = "é".repeat(5000);
        let t = stderr_text(long.as_bytes());
        assert!(t.len() <= 4099 && t.ends_with("..."));
    }
}

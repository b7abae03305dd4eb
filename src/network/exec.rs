//! Running one plugin binary: the CNI environment, its stdin, a deadline that kills the
//! plugin's whole process group, and reaping so no zombie is left.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The CNI operation, as `CNI_COMMAND` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Check,
    Del,
    Version,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution of a plugin.
pub(crate) struct Invocation<'a> {
    pub binary: &'a Path,
    pub command: Command,
    pub container_id: &'a str,
    pub netns: &'a OsStr,
    pub ifname: &'a str,
    pub args: &'a str,
    pub cni_path: &'a OsStr,
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// What the plugin did, when it ran to its end.
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why there is no [`Output`].
pub(crate) enum RunError {
    /// The binary could not be started.
    Spawn(std::io::Error),
    /// Its pipes failed.
    Io(std::io::Error),
    /// It did not finish (and close its output) within the timeout; its group was killed.
    TimedOut,
}

/// Runs the plugin with the CNI variables added to the daemon's environment (plugins need
/// `PATH` for iptables and friends), in a process group of its own.
pub(crate) async fn run(inv: &Invocation<'_>) -> Result<Output, RunError> {
    let mut cmd = tokio::process::Command::new(inv.binary);
    cmd.env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", inv.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let finished = tokio::time::timeout(inv.timeout, async {
        let write = async {
            if let Some(mut s) = stdin {
                // A plugin that exits without reading its stdin is not an error here.
                let _ = s.write_all(inv.stdin).await;
            }
        };
        let (_, out, err, status) =
            tokio::join!(write, read_all(stdout), read_all(stderr), child.wait());
        Ok::<_, std::io::Error>(Output {
            status: status?,
            stdout: out?,
            stderr: err?,
        })
    })
    .await;

    match finished {
        Ok(result) => result.map_err(RunError::Io),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The group id is the plugin's pid (process_group(0)); this also reaches
                // children it started. ESRCH means they are all gone already.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Kill (if still alive) and reap.
            let _ = child.kill().await;
            Err(RunError::TimedOut)
        }
    }
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        p.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

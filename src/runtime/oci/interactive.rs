//! Interactive `exec` through an OCI runtime CLI.
//!
//! With a terminal, the runtime runs without `--detach` and relays between the
//! container's terminal and its own stdio, which is a pseudo-terminal crid opened: the
//! runtime leads a session on it, so a window size set on crid's side reaches it as
//! SIGWINCH and it resizes the container's terminal. Without one, the runtime's pipes are
//! the process's. Either way the runtime exits with the process's status.

use std::io;
use std::path::PathBuf;

use super::OciRuntime;
use super::exec::{kill_exec_process, read_pid};
use crate::runtime::RuntimeError;
use crate::runtime::interactive::{ChildProcess, Interactive, Running, Streams};
use crate::spec::oci::Process;

/// The runtime's `exec`, and where it writes the exec'd process's host PID.
struct RuntimeExec {
    runtime: ChildProcess,
    pid_file: PathBuf,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Running for RuntimeExec {
    async fn wait(&mut self) -> io::Result<i32> {
        self.runtime.wait().await
    }
}

impl Drop for RuntimeExec {
    fn drop(&mut self) {
        // The client left before the process ended: it goes, with its group (the runtime
        // goes when `runtime` drops).
        if !self.runtime.done()
            && let Some(pid) = read_pid(&self.pid_file)
        {
            kill_exec_process(pid, None);
        }
    }
}

impl OciRuntime {
    /// Starts `process` in container `id` for an interactive session (`exec` without
    /// `--detach`). `process.terminal` is set from `streams.tty`.
    pub fn exec_interactive(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        let files = self.exec_files(id, process, streams.tty)?;
        tracing::debug!(handler = %self.name, id, tty = streams.tty, "interactive exec");
        let (runtime, stdio) = ChildProcess::spawn(self.command(&files.op(id)), streams)
            .map_err(|e| self.exec_error(id, e))?;
        let running = RuntimeExec {
            runtime,
            pid_file: files.pid_file.clone(),
            _dir: files.into_dir(),
        };
        Ok(Interactive::new(Box::new(running), stdio))
    }
}

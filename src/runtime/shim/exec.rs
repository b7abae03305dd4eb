//! Exec through the task API: a process added to the task with its stdio on FIFOs. ExecSync
//! collects its output, kills it at the timeout and deletes it; a streaming Exec relays its
//! stdio to the client, resizes its terminal (ResizePty) and closes its stdin (CloseIO).
//! Either way it is killed and deleted if the call or the session is dropped first.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::MessageField;
use tokio::io::AsyncWrite;
use tokio::net::unix::pipe;

use super::client::ProcessRef;
use super::{KILL_GRACE, PROCESS_TYPE_URL, ShimHandler, any_json, io};
use crate::runtime::interactive::{
    Input, Interactive, Output, ProcessIo, Running, Streams, Terminal,
};
use crate::runtime::oci::{EXEC_OUTPUT_CAP, ExecOutput};
use crate::runtime::{RuntimeError, invoke};
use crate::spec::oci::Process;

/// A process added to a task and started, with crid's ends of its FIFOs.
struct Started {
    /// The process; kills and deletes it if dropped armed.
    guard: ExecGuard,
    stdin: Option<pipe::Sender>,
    stdout: pipe::Receiver,
    /// Never written with a terminal (its output is stdout).
    stderr: pipe::Receiver,
    /// Where the FIFOs are; removed when dropped.
    dir: tempfile::TempDir,
}

impl ShimHandler {
    /// Exec + Start of `process` in task `id`, its output on FIFOs crid reads (stdin too
    /// when `stdin`; with `terminal` the shim holds the process's terminal and copies it to
    /// stdout). On failure nothing is left in the shim.
    async fn start_exec(
        &self,
        id: &str,
        process: &Process,
        stdin: bool,
        terminal: bool,
    ) -> Result<Started, RuntimeError> {
        let (record, client) = self
            .task(id)
            .await?
            .ok_or_else(|| self.unknown("exec", id))?;
        let exec_id = exec_id();
        let dir = tempfile::Builder::new()
            .prefix("exec-")
            .tempdir_in(&record.bundle)
            .map_err(|e| self.io("exec", id, e))?;
        let fifos = io::FifoPair::make(dir.path(), "exec").map_err(|e| self.io("exec", id, e))?;
        let (stdout, stderr) = fifos.open().map_err(|e| self.io("exec", id, e))?;
        let stdin_path = dir.path().join("exec-stdin");
        let stdin = if stdin {
            Some(io::stdin_fifo(&stdin_path).map_err(|e| self.io("exec", id, e))?)
        } else {
            None
        };
        let process = Process {
            terminal,
            ..process.clone()
        };
        let spec = any_json(PROCESS_TYPE_URL, &process)
            .map_err(|e| self.io("exec", id, std::io::Error::other(e)))?;
        let path = |p: &std::path::Path| p.display().to_string();
        let req = api::ExecProcessRequest {
            id: id.to_owned(),
            exec_id: exec_id.clone(),
            terminal,
            stdin: if stdin.is_some() {
                path(&stdin_path)
            } else {
                String::new()
            },
            stdout: path(&fifos.stdout),
            stderr: if terminal {
                String::new()
            } else {
                path(&fifos.stderr)
            },
            spec: MessageField::some(spec),
            ..Default::default()
        };
        client
            .exec(&req, self.timeout)
            .await
            .map_err(|e| self.failed("exec", id, e))?;
        // Armed from here: a caller dropped while the process starts kills and deletes it.
        let mut guard = ExecGuard {
            process: ProcessRef {
                client: client.clone(),
                id: id.to_owned(),
                exec_id: exec_id.clone(),
                timeout: self.timeout,
            },
            armed: true,
        };
        if let Err(e) = client.start(id, &exec_id, self.timeout).await {
            let _ = client.delete(id, &exec_id, self.timeout).await;
            guard.armed = false;
            return Err(self.failed("exec", id, e));
        }
        Ok(Started {
            guard,
            stdin,
            stdout,
            stderr,
            dir,
        })
    }

    /// ExecSync: Exec + Start + Wait (killed at `timeout`) + Delete, output collected
    /// from FIFOs in the bundle and capped like the OCI driver's.
    pub(super) async fn exec_sync(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let Started {
            mut guard,
            stdout,
            stderr,
            dir,
            ..
        } = self.start_exec(id, process, false, false).await?;
        let (client, exec_id) = (guard.process.client.clone(), guard.process.exec_id.clone());
        let collected = io::Collected::start(stdout, stderr, EXEC_OUTPUT_CAP);
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, client.wait(id, &exec_id, None)).await,
            None => Ok(client.wait(id, &exec_id, None).await),
        };
        let (exit_code, timed_out) = match waited {
            Ok(Ok(resp)) => (resp.exit_status as i32, false),
            Ok(Err(e)) => return Err(self.failed("exec", id, e)),
            Err(_) => {
                tracing::debug!(handler = %self.name, container = %id, "exec timed out, killing it");
                let _ = client
                    .kill(id, &exec_id, libc::SIGKILL as u32, false, self.timeout)
                    .await;
                let code = match client.wait(id, &exec_id, Some(KILL_GRACE)).await {
                    Ok(resp) => resp.exit_status as i32,
                    Err(_) => 128 + libc::SIGKILL,
                };
                (code, true)
            }
        };
        let (stdout, stderr) = collected.finish(invoke::DRAIN_AFTER_EXIT).await;
        let _ = client.delete(id, &exec_id, self.timeout).await;
        guard.armed = false;
        drop(dir);
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
            timed_out,
        })
    }

    /// Exec (streaming): the process started through the task API, its stdio relayed
    /// from FIFOs, its terminal resized with ResizePty, its stdin closed with CloseIO.
    pub(super) async fn exec_session(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        let started = self
            .start_exec(id, process, streams.stdin, streams.tty)
            .await?;
        let control = started.guard.process.clone();
        tracing::debug!(handler = %self.name, container = %id, exec_id = %control.exec_id, tty = streams.tty, "interactive exec");
        // Output the client did not ask for is read and discarded by the relay, so the
        // shim never blocks on a full FIFO.
        let stdio = ProcessIo {
            stdin: started.stdin.map(|s| {
                Box::pin(StdinFifo {
                    fifo: Some(s),
                    control: Some(control.clone()),
                }) as Input
            }),
            stdout: Some(Box::pin(started.stdout) as Output),
            stderr: (!streams.tty).then(|| Box::pin(started.stderr) as Output),
            terminal: streams
                .tty
                .then(|| Terminal::remote(Arc::new(control.clone()))),
        };
        let running = TaskProcess {
            guard: started.guard,
            _dir: started.dir,
        };
        Ok(Interactive::new(Box::new(running), stdio))
    }
}

/// An exec'd process of a task in a session: waited for through the task API, then
/// deleted; killed and deleted by its guard if the session ends first.
struct TaskProcess {
    guard: ExecGuard,
    _dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Running for TaskProcess {
    async fn wait(&mut self) -> std::io::Result<i32> {
        let g = &mut self.guard;
        let p = &g.process;
        let resp = p
            .client
            .wait(&p.id, &p.exec_id, None)
            .await
            .map_err(std::io::Error::other)?;
        let _ = p.client.delete(&p.id, &p.exec_id, p.timeout).await;
        g.armed = false;
        Ok(resp.exit_status as i32)
    }
}

/// crid's end of an exec'd process's stdin FIFO. Shutting it down closes it and asks the
/// shim to close its own end (CloseIO), after which the process reads end of file.
struct StdinFifo {
    fifo: Option<pipe::Sender>,
    control: Option<ProcessRef>,
}

impl AsyncWrite for StdinFifo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.fifo.as_mut() {
            Some(f) => Pin::new(f).poll_write(cx, data),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.fifo = None;
        if let Some(c) = self.control.take() {
            tokio::spawn(async move { c.close_stdin().await });
        }
        Poll::Ready(Ok(()))
    }
}

/// A unique exec ID within one crid.
pub(super) fn exec_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "exec-{}-{}-{}",
        std::process::id(),
        crate::state::now_ns(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills and deletes an exec'd process if its call or session is dropped before it ended.
struct ExecGuard {
    process: ProcessRef,
    armed: bool,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if self.armed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let ProcessRef {
                client,
                id,
                exec_id,
                ..
            } = self.process.clone();
            rt.spawn(async move {
                let _ = client
                    .kill(&id, &exec_id, libc::SIGKILL as u32, false, KILL_GRACE)
                    .await;
                let _ = client.wait(&id, &exec_id, Some(KILL_GRACE)).await;
                let _ = client.delete(&id, &exec_id, KILL_GRACE).await;
            });
        }
    }
}

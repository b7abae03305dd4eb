//! ExecSync through the task API: a process added to the task, its output collected from
//! FIFOs, killed at the timeout, and deleted; killed too if the call is dropped.

use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::MessageField;

use super::client::TaskClient;
use super::{KILL_GRACE, PROCESS_TYPE_URL, ShimHandler, any_json, io};
use crate::runtime::oci::{EXEC_OUTPUT_CAP, ExecOutput};
use crate::runtime::{RuntimeError, invoke};
use crate::spec::oci::Process;

impl ShimHandler {
    /// ExecSync: Exec + Start + Wait (killed at `timeout`) + Delete, output collected
    /// from FIFOs in the bundle and capped like the OCI driver's.
    pub(super) async fn exec_sync(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
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
        let process = Process {
            terminal: false,
            ..process.clone()
        };
        let spec = any_json(PROCESS_TYPE_URL, &process)
            .map_err(|e| self.io("exec", id, std::io::Error::other(e)))?;
        let req = api::ExecProcessRequest {
            id: id.to_owned(),
            exec_id: exec_id.clone(),
            terminal: false,
            stdout: fifos.stdout.display().to_string(),
            stderr: fifos.stderr.display().to_string(),
            spec: MessageField::some(spec),
            ..Default::default()
        };
        client
            .exec(&req, self.timeout)
            .await
            .map_err(|e| self.failed("exec", id, e))?;
        let collected = io::Collected::start(stdout, stderr, EXEC_OUTPUT_CAP);
        let mut guard = ExecGuard {
            client: client.clone(),
            id: id.to_owned(),
            exec_id: exec_id.clone(),
            armed: true,
        };
        if let Err(e) = client.start(id, &exec_id, self.timeout).await {
            let _ = client.delete(id, &exec_id, self.timeout).await;
            guard.armed = false;
            return Err(self.failed("exec", id, e));
        }
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

/// Kills and deletes an exec'd process if [`ShimHandler::exec`] is dropped before it ended.
struct ExecGuard {
    client: TaskClient,
    id: String,
    exec_id: String,
    armed: bool,
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if self.armed
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (client, id, exec_id) =
                (self.client.clone(), self.id.clone(), self.exec_id.clone());
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

//! `start` and stop-before-start of a container whose crid-monitor runs the runtime's
//! commands itself (`exit_via_wait`, runsc): see [`crate::monitor::runtime_wait`].

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::OciRuntime;
use crate::monitor::liveness::{PID_FILE, recorded_monitor};
use crate::monitor::runtime_wait::{parse_start_result, start_result_path};
use crate::runtime::RuntimeError;

/// How often the start result is looked for.
const POLL: Duration = Duration::from_millis(5);

impl OciRuntime {
    /// Asks the container's monitor to run the runtime's `start` (SIGUSR2) and returns
    /// its outcome, bounded by the handler's timeout.
    pub async fn start_via_monitor(&self, id: &str) -> Result<(), RuntimeError> {
        let (bundle, monitor) = self.monitor_of(id).await?;
        let result = start_result_path(&bundle);
        // A result of an earlier request must not answer this one.
        let _ = std::fs::remove_file(&result);
        self.ask_monitor(id, monitor)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Some(outcome) = std::fs::read(&result)
                .ok()
                .and_then(|text| parse_start_result(&text))
            {
                let _ = std::fs::remove_file(&result);
                return outcome.map_err(|reason| RuntimeError::Command {
                    handler: self.name.clone(),
                    command: "start",
                    id: id.to_owned(),
                    status: "failed".into(),
                    stderr: reason,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Timeout {
                    handler: self.name.clone(),
                    binary: self.binary.clone(),
                    command: "start".into(),
                    id: Some(id.to_owned()),
                    timeout: self.timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes a container that was created but never started (runsc signals no such
    /// container), then tells its monitor, whose `start` then finds it gone and records
    /// it as killed.
    pub async fn delete_unstarted(&self, id: &str) -> Result<(), RuntimeError> {
        let monitor = self.monitor_of(id).await.ok();
        self.delete(id, true).await?;
        if let Some((_, pid)) = monitor {
            self.ask_monitor(id, pid)?;
        }
        Ok(())
    }

    /// The container's bundle (from the runtime's `state`) and its monitor's PID (recorded
    /// there, checked to be that container's monitor).
    async fn monitor_of(&self, id: &str) -> Result<(PathBuf, i32), RuntimeError> {
        let gone = |reason: String| RuntimeError::Monitor {
            handler: self.name.clone(),
            id: id.to_owned(),
            reason,
        };
        let state = self
            .state(id)
            .await?
            .ok_or_else(|| gone("the runtime does not know the container".into()))?;
        let bundle = state.bundle;
        let pid = recorded_monitor(&bundle, id).ok_or_else(|| {
            gone(format!(
                "its monitor (recorded in {}) is gone",
                bundle.join(PID_FILE).display()
            ))
        })?;
        Ok((bundle, pid))
    }

    fn ask_monitor(&self, id: &str, pid: i32) -> Result<(), RuntimeError> {
        kill(Pid::from_raw(pid), Signal::SIGUSR2).map_err(|e| RuntimeError::Monitor {
            handler: self.name.clone(),
            id: id.to_owned(),
            reason: format!("signalling its monitor (pid {pid}): {e}"),
        })
    }
}

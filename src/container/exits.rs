//! How container exits reach their records: the exit files the runtime handler writes
//! (watched with inotify), and, for handlers with a monitor process, that process's death.

use std::sync::Arc;
use std::time::Duration;

use super::{ContainerService, is_live, mark_exited};
use crate::monitor::exit;
use crate::registry::EventKind;
use crate::state::ContainerState;

/// How long after a monitor ends its exit file may still be on its way through inotify.
const MONITOR_EXIT_GRACE: Duration = Duration::from_millis(500);

/// ContainerStatus.reason of a container whose monitor died without recording its exit.
pub const MONITOR_DIED: &str = "MonitorDied";

impl ContainerService {
    /// Starts applying exit files as they appear. Call before recovery, so that an exit
    /// during recovery is not missed.
    pub fn watch_exits(self: &Arc<Self>) -> std::io::Result<()> {
        let mut exits = crate::monitor::watch::watch_exits(&self.layout.exits())?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(id) = exits.recv().await {
                let Some(s) = weak.upgrade() else { return };
                s.record_exit(&id);
            }
        });
        Ok(())
    }

    /// Watches the monitors of every live container (after recovery).
    pub fn watch_live_monitors(self: &Arc<Self>) {
        for c in self.registry.containers(None) {
            let (id, pid, live) = c.read(|r| (r.id.clone(), r.monitor_pid, is_live(r.state)));
            if live {
                self.watch_monitor(&id, pid);
            }
        }
    }

    /// Applies a container's exit file to its record (a no-op when already applied, or
    /// when the file is not there yet). Returns whether the container is now exited. The
    /// record is persisted in the background: the exit file stays until the container is
    /// removed, so a lost write is learned again at recovery.
    pub(crate) fn record_exit(&self, id: &str) -> bool {
        let Some(c) = self.registry.container(id) else {
            return false;
        };
        let record = match exit::read(&self.layout.exit_file(id)) {
            Ok(Some(r)) => r,
            Ok(None) => return c.read(|r| r.state == ContainerState::Exited),
            Err(e) => {
                tracing::warn!(container = id, "unreadable exit file: {e}");
                return false;
            }
        };
        let pod_id = c.update_soon(|r| {
            let live = is_live(r.state);
            if live {
                mark_exited(
                    r,
                    record.exit_code,
                    record.exited_at_ns,
                    record.oom_killed,
                    "",
                );
            }
            live.then(|| r.pod_id.clone())
        });
        if let Some(pod_id) = pod_id {
            tracing::info!(
                container = id,
                exit_code = record.exit_code,
                "container exited"
            );
            self.registry.emit(id, &pod_id, EventKind::Stopped);
        }
        true
    }

    /// Watches the life of container `id`'s monitor (`pid`): should it end without an exit
    /// file (SIGKILL, the OOM killer), the container is killed and recorded as exited, as
    /// CRI-O does when conmon dies, instead of being left "running" with nobody to report
    /// its exit. A handler without a monitor process (pid 0) reports exits itself.
    pub(crate) fn watch_monitor(self: &Arc<Self>, id: &str, pid: i32) {
        if pid <= 0 {
            return;
        }
        let fd = crate::monitor::liveness::Pidfd::open(pid);
        // Opened first, then checked: a PID reused since the record was written is not
        // this container's monitor, and the pidfd then points at the wrong process.
        let alive = fd.is_ok() && crate::monitor::liveness::is_monitor_of(pid, id);
        let weak = Arc::downgrade(self);
        let id = id.to_owned();
        tokio::spawn(async move {
            if let (true, Ok(fd)) = (alive, fd)
                && let Err(e) = fd.exited().await
            {
                tracing::warn!(container = %id, monitor = pid, "cannot watch the monitor: {e}");
                return;
            }
            // A monitor that ended normally wrote its exit file just before: let the
            // inotify watch deliver it first.
            tokio::time::sleep(MONITOR_EXIT_GRACE).await;
            if let Some(s) = weak.upgrade() {
                s.monitor_ended(&id, pid).await;
            }
        });
    }

    /// Container `id`'s monitor `pid` has ended: apply its exit file, or, when it wrote
    /// none, kill what is left of the container and record it as exited.
    async fn monitor_ended(&self, id: &str, pid: i32) {
        if self.record_exit(id) {
            return;
        }
        let Some(c) = self.registry.container(id) else {
            return;
        };
        let record = c.get();
        if record.monitor_pid != pid || !is_live(record.state) {
            return;
        }
        tracing::warn!(container = %id, monitor = pid, "the container's monitor died without recording an exit; killing the container");
        let killed = match self.runtime_of_pod(&record.pod_id).await {
            Ok(rt) => match rt.kill(id, "KILL", false).await {
                Ok(()) => "its processes were killed",
                Err(e) => {
                    tracing::warn!(container = %id, "killing a container whose monitor died: {e}");
                    "killing its processes failed (see the daemon log)"
                }
            },
            Err(_) => "its runtime handler is gone",
        };
        // The exit file may have landed while the runtime was asked.
        if self.record_exit(id) {
            return;
        }
        let message = format!(
            "crid-monitor (pid {pid}) died without recording the exit; {killed}; the exit code is unknown"
        );
        let result = c
            .update(|r| {
                let live = is_live(r.state);
                if live {
                    mark_exited(r, 255, crate::state::now_ns(), false, &message);
                    r.reason = MONITOR_DIED.to_owned();
                }
                live.then(|| r.pod_id.clone())
            })
            .await;
        match result {
            Ok(Some(pod_id)) => self.registry.emit(id, &pod_id, EventKind::Stopped),
            Ok(None) => {}
            Err(e) => tracing::error!(container = id, "cannot persist the exit: {e}"),
        }
    }
}

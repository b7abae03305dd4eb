//! Recovery at start: records are reconciled with the runtime, the exit files, the mount
//! table and the processes that outlived the daemon. Whatever a crash left half-made is
//! removed; running containers are adopted as they are.

use std::sync::Arc;

use super::{Lifecycle, Object, Result, io, mark_exited};
use crate::pod::namespaces;
use crate::state::{ContainerRecord, ContainerState, Layout, PodRecord, PodState};

impl Lifecycle {
    pub(super) async fn recover(self: &Arc<Self>) -> Result<()> {
        let pods = Layout::load::<PodRecord>(&self.layout.pod_records())
            .map_err(io("reading the pod records"))?;
        for loaded in pods {
            let record = match loaded {
                Ok(r) => r,
                Err((path, e)) => {
                    tracing::error!(path = %path.display(), "unreadable pod record, set aside: {e}");
                    let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                    continue;
                }
            };
            let pod = Object::new(
                &record.id,
                self.layout.pod_record(&record.id),
                record.clone(),
            );
            self.pods
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(record.id.clone(), pod.clone());
            match record.state {
                PodState::Creating => {
                    tracing::info!(pod = %record.id, "removing a pod whose RunPodSandbox was interrupted");
                    // Its containers cannot exist yet: CreateContainer needs a ready pod.
                    self.release_pod_for_recovery(&pod).await;
                }
                PodState::Ready => {
                    let lost = record
                        .netns
                        .as_deref()
                        .is_some_and(|p| !namespaces::is_pinned(p));
                    if lost {
                        tracing::warn!(pod = %record.id, "pod namespaces are gone (host rebooted?); marking it not ready");
                        let _ = pod.update(|r| r.state = PodState::NotReady);
                    }
                }
                PodState::NotReady => {}
            }
        }

        let containers = Layout::load::<ContainerRecord>(&self.layout.container_records())
            .map_err(io("reading the container records"))?;
        for loaded in containers {
            let record = match loaded {
                Ok(r) => r,
                Err((path, e)) => {
                    tracing::error!(path = %path.display(), "unreadable container record, set aside: {e}");
                    let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                    continue;
                }
            };
            let id = record.id.clone();
            let c = Object::new(&id, self.layout.container_record(&id), record.clone());
            self.containers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), c.clone());
            let pod_known = self.pod(&record.pod_id).is_some();
            if record.state == ContainerState::Creating || !pod_known {
                tracing::info!(container = %id, "removing a container whose CreateContainer was interrupted");
                self.kill_orphan_monitor(&id);
                if let Ok(runtime) = self.runtime_of(&record) {
                    let pod = self.pod(&record.pod_id).map(|p| p.get());
                    let _ = self
                        .remove_container_resources(&runtime, &id, pod.as_ref())
                        .await;
                } else {
                    let _ = crate::storage::overlay::remove_rootfs(&self.rootfs_layout(&id));
                    let _ = crate::state::remove_dir_all(&self.layout.bundle(&id));
                }
                let _ = c.forget();
                self.containers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                continue;
            }
            if matches!(
                record.state,
                ContainerState::Created | ContainerState::Running
            ) && !self.record_exit(&id)
            {
                self.reconcile_live(&c, &record).await;
            }
        }

        self.sweep_strays();
        let pods = self.pods.read().map(|p| p.len()).unwrap_or(0);
        let containers = self.containers.read().map(|c| c.len()).unwrap_or(0);
        tracing::info!(pods, containers, "state recovered");
        Ok(())
    }

    /// A container the record says is alive, with no exit file: trust the monitor if it is
    /// still there, else ask the runtime.
    async fn reconcile_live(&self, c: &Arc<Object<ContainerRecord>>, record: &ContainerRecord) {
        let id = &record.id;
        if crate::container::is_monitor_of(record.monitor_pid, id) {
            return;
        }
        let state = match self.runtime_of(record) {
            Ok(rt) => rt.state(id).await.ok().flatten(),
            Err(_) => None,
        };
        // The monitor is gone without writing an exit file: the exit code is lost.
        if state.as_ref().is_none_or(|s| s.status == "stopped") {
            tracing::warn!(container = %id, "container's monitor vanished without an exit record");
            let _ = c.update(|r| {
                mark_exited(
                    r,
                    255,
                    crate::state::now_ns(),
                    false,
                    "crid-monitor ended without recording the exit",
                )
            });
        }
    }

    /// The monitor of a container whose creation was interrupted may still be running the
    /// runtime's `create`: end its session (monitors are session leaders).
    fn kill_orphan_monitor(&self, id: &str) {
        let pid_file = self.layout.bundle(id).join("monitor.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return;
        };
        if crate::container::is_monitor_of(pid, id) {
            tracing::info!(container = %id, monitor = pid, "killing the monitor of an interrupted create");
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            // It is not our child (the daemon that spawned it is gone): wait for it to vanish.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while crate::container::is_monitor_of(pid, id) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    async fn release_pod_for_recovery(&self, pod: &Arc<Object<PodRecord>>) {
        let id = pod.id().to_owned();
        self.kill_orphan_monitor(&id);
        if let Err(e) = self.release_pod(pod).await {
            tracing::warn!(pod = %id, "cleanup of an interrupted pod incomplete: {e}");
        }
        let _ = crate::state::remove_dir_all(&self.layout.pod_dir(&id));
        let _ = pod.forget();
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Bundles, pod directories and exit files that no record owns: left by a crash
    /// between creating them and writing the record, or after removing the record.
    fn sweep_strays(&self) {
        let known = |id: &str| self.pod(id).is_some() || self.container(id).is_some();
        let dirs = [
            self.layout.runroot().join("containers"),
            self.layout.runroot().join("pods"),
            self.layout.exits(),
            self.layout.container_storage(""),
        ];
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || known(&name) {
                    continue;
                }
                let path = e.path();
                tracing::info!(path = %path.display(), "removing state no record owns");
                let _ = crate::storage::overlay::remove_rootfs(
                    &crate::storage::overlay::RootfsLayout {
                        storage: self.layout.container_storage(&name),
                        target: self.layout.bundle(&name).join("rootfs"),
                    },
                );
                for ns in ["net", "ipc", "uts"] {
                    let _ = namespaces::unpin(&path.join("ns").join(ns));
                }
                let _ = namespaces::unmount(&path.join("shm"));
                if path.is_dir() {
                    let _ = crate::state::remove_dir_all(&path);
                } else {
                    let _ = crate::state::remove_file(&path);
                }
            }
        }
    }
}

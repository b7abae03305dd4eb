//! Recovery at start, above both services: records are reconciled with the runtime, the
//! exit files, the mount table and the processes that outlived the daemon. Whatever a crash
//! left half-made is removed; running containers are adopted as they are.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::container::{ContainerService, mark_exited};
use crate::error::Result;
use crate::monitor::liveness::{is_monitor_of, recorded_monitor};
use crate::pod::PodService;
use crate::registry::Object;
use crate::state::store::RecordKind;
use crate::state::{ContainerRecord, ContainerState, PodRecord, PodState};

/// Loads the records of `kind`; unreadable ones are set aside with an error in the log.
fn load<T: DeserializeOwned>(pods: &PodService, kind: RecordKind) -> Result<Vec<T>> {
    let store = pods.containers().registry().store().clone();
    let loaded = store.load(kind).map_err(crate::error::Error::host(format!(
        "reading the {kind} records"
    )))?;
    let mut out = Vec::new();
    for (id, bytes) in loaded {
        let parsed = bytes.and_then(|b| {
            serde_json::from_slice::<T>(&b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        });
        match parsed {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::error!(%kind, id, "unreadable record, set aside: {e}");
                store.set_aside(kind, &id);
            }
        }
    }
    Ok(out)
}

/// Recovers every pod and container of the store into the registry.
pub async fn recover(pods: &Arc<PodService>) -> Result<()> {
    let containers = pods.containers().clone();
    let registry = containers.registry().clone();
    for record in load::<PodRecord>(pods, RecordKind::Pod)? {
        let pod = registry.adopt_pod(record.clone());
        match record.state {
            PodState::Creating => {
                tracing::info!(pod = %record.id, "removing a pod whose RunPodSandbox was interrupted");
                // Its containers cannot exist yet: CreateContainer needs a ready pod.
                release_interrupted(pods, &pod).await;
                crate::failpoint!("recover.pod-released");
            }
            PodState::Ready => {
                let lost = record
                    .netns
                    .as_deref()
                    .is_some_and(|p| !containers.host().is_pinned(p));
                if lost {
                    tracing::warn!(pod = %record.id, "pod namespaces are gone (host rebooted?); marking it not ready");
                    let _ = pod.update(|r| r.state = PodState::NotReady).await;
                } else if record.infra.is_some() && !infra_running(&containers, &record).await {
                    // A ready pod's infra holds its PID namespace: without it no container
                    // of the pod can be created (cri:PodSandboxState SANDBOX_NOTREADY).
                    tracing::warn!(pod = %record.id, "pod's infra container is gone; marking it not ready");
                    let _ = pod.update(|r| r.state = PodState::NotReady).await;
                }
            }
            PodState::NotReady => {}
        }
    }

    for record in load::<ContainerRecord>(pods, RecordKind::Container)? {
        let id = record.id.clone();
        let c = registry.adopt_container(record.clone());
        let pod = registry.pod(&record.pod_id).map(|p| p.get());
        if record.state == ContainerState::Creating || pod.is_none() {
            tracing::info!(container = %id, "removing a container whose CreateContainer was interrupted");
            kill_orphan_monitor(&containers, &id);
            match containers.runtime_of_pod(&record.pod_id).await {
                Ok(runtime) => {
                    let _ = containers
                        .remove_resources(runtime.as_ref(), &id, pod.as_ref())
                        .await;
                }
                Err(_) => {
                    let _ = containers
                        .host()
                        .remove_rootfs(&containers.rootfs_layout(&id));
                    let _ = crate::state::remove_dir_all(&containers.layout().bundle(&id));
                }
            }
            let _ = c.forget().await;
            crate::failpoint!("recover.container-removed");
            registry.drop_container(&id);
            continue;
        }
        if matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) && !containers.record_exit(&id)
        {
            reconcile_live(&containers, &c, &record).await;
        }
    }

    sweep_strays(&containers);
    tracing::info!(
        pods = registry.pods().len(),
        containers = registry.containers(None).len(),
        "state recovered"
    );
    Ok(())
}

/// Whether the runtime still runs the pod's infra container.
async fn infra_running(containers: &ContainerService, pod: &PodRecord) -> bool {
    match containers.runtime_of_pod(&pod.id).await {
        Ok(rt) => rt
            .state(&pod.id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.status == "running"),
        Err(_) => false,
    }
}

/// A container the record says is alive, with no exit file: trust the monitor if it is
/// still there, else ask the runtime. A container recorded as created that the runtime
/// runs had its StartContainer cut short after the runtime's `start`: it is running (a
/// second StartContainer would fail).
async fn reconcile_live(
    containers: &ContainerService,
    c: &Arc<Object<ContainerRecord>>,
    record: &ContainerRecord,
) {
    let id = &record.id;
    let monitored = is_monitor_of(record.monitor_pid, id);
    if monitored && record.state != ContainerState::Created {
        return;
    }
    let status = match containers.runtime_of_pod(&record.pod_id).await {
        Ok(rt) => rt.state(id).await.ok().flatten().map(|s| s.status),
        Err(_) => None,
    };
    match status.as_deref() {
        Some("running") if record.state == ContainerState::Created => {
            tracing::info!(container = %id, "container started before its record said so; now running");
            let _ = c
                .update(|r| {
                    r.state = ContainerState::Running;
                    r.started_at_ns = crate::state::now_ns();
                })
                .await;
        }
        // The monitor is gone without writing an exit file: the exit code is lost.
        None | Some("stopped") if !monitored => {
            tracing::warn!(container = %id, "container's monitor vanished without an exit record");
            let _ = c
                .update(|r| {
                    mark_exited(
                        r,
                        255,
                        crate::state::now_ns(),
                        false,
                        "crid-monitor ended without recording the exit",
                    )
                })
                .await;
        }
        _ => {}
    }
}

/// The monitor of a container whose creation was interrupted may still be running the
/// runtime's `create`: end its session (monitors are session leaders).
fn kill_orphan_monitor(containers: &ContainerService, id: &str) {
    if let Some(pid) = recorded_monitor(&containers.layout().bundle(id), id) {
        tracing::info!(container = %id, monitor = pid, "killing the monitor of an interrupted create");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // It is not our child (the daemon that spawned it is gone): wait for it to vanish.
        // Recovery runs before anything is served, so this short wait blocks no client.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_monitor_of(pid, id) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

async fn release_interrupted(pods: &PodService, pod: &Arc<Object<PodRecord>>) {
    let id = pod.id().to_owned();
    let containers = pods.containers();
    kill_orphan_monitor(containers, &id);
    if let Err(e) = pods.release(pod).await {
        tracing::warn!(pod = %id, "cleanup of an interrupted pod incomplete: {e}");
    }
    let _ = crate::state::remove_dir_all(&containers.layout().pod_dir(&id));
    let _ = pod.forget().await;
    containers.registry().drop_pod(&id);
}

/// Bundles, pod directories and exit files that no record owns: left by a crash between
/// creating them and writing the record, or after removing the record.
fn sweep_strays(containers: &ContainerService) {
    let registry = containers.registry();
    let layout = containers.layout();
    let host = containers.host();
    let known = |id: &str| registry.pod(id).is_some() || registry.container(id).is_some();
    let dirs = [
        layout.runroot().join("containers"),
        layout.runroot().join("pods"),
        layout.exits(),
        layout.container_storage(""),
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
            let _ = host.remove_rootfs(&containers.rootfs_layout(&name));
            let _ = containers.remove_image_volumes(&name);
            for ns in ["net", "ipc", "uts"] {
                let _ = host.unpin(&path.join("ns").join(ns));
            }
            let _ = host.unmount(&path.join("shm"));
            if path.is_dir() {
                let _ = crate::state::remove_dir_all(&path);
            } else {
                let _ = crate::state::remove_file(&path);
            }
            crate::failpoint!("recover.stray-removed");
        }
    }
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;

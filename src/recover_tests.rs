//! Recovery's rules, without root: a restarted daemon over the same record store, host
//! model, runtime and directories (see `crate::testkit`).

use tonic::Code;

use crate::state::store::RecordKind;
use crate::state::{ContainerRecord, ContainerState, PodRecord, PodState};
use crate::testkit::{Kit, code};

// Pods and containers survive a restart as they were; running containers are adopted.
#[tokio::test]
async fn a_restart_adopts_pods_and_running_containers() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let c = kit.running(&pod, "app").await;
    let kit = kit.restart();
    assert!(kit.registry.pods().is_empty(), "a fresh registry");
    super::recover(&kit.pods).await.expect("recover");
    assert_eq!(kit.pods.status(&pod).expect("pod").state, PodState::Ready);
    // The fake runtime has no monitor process: the runtime says the container runs.
    assert_eq!(
        kit.containers.status(&c).expect("container").state,
        ContainerState::Running
    );
    // And it can be stopped and removed by the new daemon.
    kit.pods.remove(&pod).await.expect("remove");
    assert!(kit.runtime.containers().is_empty());
    assert!(kit.host.model().is_clean());
}

// An exit while the daemon was down is learned from the exit file.
#[tokio::test]
async fn an_exit_during_the_downtime_is_learned() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let c = kit.running(&pod, "app").await;
    let kit = kit.restart();
    kit.runtime.exit(&c, 7);
    super::recover(&kit.pods).await.expect("recover");
    let record = kit.containers.status(&c).expect("status");
    assert_eq!(
        (record.state, record.exit_code),
        (ContainerState::Exited, 7)
    );
}

// A container whose runtime no longer knows it, and whose exit was never recorded, is
// exited with the exit code unknown (255), not left running.
#[tokio::test]
async fn a_container_the_runtime_lost_is_exited() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let c = kit.running(&pod, "app").await;
    let kit = kit.restart();
    // Gone from the runtime without an exit file (a reboot, a runtime wipe).
    crate::runtime::RuntimeHandler::delete(kit.runtime.as_ref(), &c, true)
        .await
        .expect("delete");
    super::recover(&kit.pods).await.expect("recover");
    let record = kit.containers.status(&c).expect("status");
    assert_eq!(
        (record.state, record.exit_code),
        (ContainerState::Exited, 255)
    );
}

// What an interrupted RunPodSandbox or CreateContainer left is removed at start, with
// its pins, mounts and runtime container; stray directories no record owns go too.
#[tokio::test]
async fn half_made_objects_and_strays_are_removed() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let c = kit.running(&pod, "app").await;
    let half_pod = kit.pod("half").await;
    // As if the daemon had died in the middle of both creations.
    let mut p: PodRecord = kit.store.get(RecordKind::Pod, &half_pod).expect("pod");
    p.state = PodState::Creating;
    let stored = kit.registry.pod(&half_pod).expect("pod");
    stored.update(|r| *r = p).await.expect("write");
    let obj = kit.registry.container(&c).expect("container");
    obj.update(|r| r.state = ContainerState::Creating)
        .await
        .expect("write");
    let stray = kit.dir.path().join("run/containers/stray");
    std::fs::create_dir_all(&stray).expect("stray");
    // With an image volume still mounted in it.
    crate::host::Host::mount_image_volume(
        kit.host.as_ref(),
        &stray.join("image-volumes/0"),
        &[kit.dir.path().join("layer")],
    )
    .expect("volume");
    let kit = kit.restart();
    super::recover(&kit.pods).await.expect("recover");
    assert_eq!(
        code(kit.pods.status(&half_pod).expect_err("gone")),
        Code::NotFound
    );
    assert_eq!(
        code(kit.containers.status(&c).expect_err("gone")),
        Code::NotFound
    );
    assert!(
        kit.store
            .get::<ContainerRecord>(RecordKind::Container, &c)
            .is_none()
    );
    assert!(
        kit.store
            .get::<PodRecord>(RecordKind::Pod, &half_pod)
            .is_none()
    );
    assert!(
        kit.runtime.containers().is_empty(),
        "the container is deleted"
    );
    assert!(!stray.exists(), "a bundle no record owns is removed");
    let model = kit.host.model();
    // Only the intact pod's pins and shm remain.
    assert_eq!(model.pins.len(), 3, "{model:?}");
    assert!(
        model
            .mounts
            .iter()
            .all(|m| m.starts_with(kit.dir.path().join("run/pods").join(&pod))),
        "{model:?}"
    );
}

// A pod whose namespaces are gone (the host rebooted) is marked not ready.
#[tokio::test]
async fn a_pod_whose_namespaces_are_gone_is_not_ready() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let netns = kit.pods.status(&pod).expect("pod").netns.expect("netns");
    crate::host::Host::unpin(kit.host.as_ref(), &netns).expect("unpin");
    let kit = kit.restart();
    super::recover(&kit.pods).await.expect("recover");
    assert_eq!(
        kit.pods.status(&pod).expect("pod").state,
        PodState::NotReady
    );
}

// An unreadable record is set aside, and the rest recovers.
#[tokio::test]
async fn an_unreadable_record_is_set_aside() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    crate::state::store::RecordStore::put(
        kit.store.as_ref(),
        RecordKind::Pod,
        "garbage",
        b"{not json".to_vec(),
    )
    .await
    .expect("put");
    let kit = kit.restart();
    super::recover(&kit.pods).await.expect("recover");
    assert!(kit.pods.status(&pod).is_ok());
    assert_eq!(kit.store.ids(RecordKind::Pod), [pod]);
}

// StartContainer cut short between the runtime's `start` and the record's update (the
// crash sweep's `start.runtime-started`): the container runs, so it is recovered as
// running; a second StartContainer would fail in the runtime.
#[tokio::test]
async fn a_start_cut_short_after_the_runtime_started_is_running() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let c = kit
        .containers
        .create(&pod, Kit::container_config("app"))
        .await
        .expect("create");
    crate::runtime::RuntimeHandler::start(kit.runtime.as_ref(), &c)
        .await
        .expect("runtime start");
    let kit = kit.restart();
    super::recover(&kit.pods).await.expect("recover");
    let record = kit.containers.status(&c).expect("status");
    assert_eq!(record.state, ContainerState::Running);
    assert!(record.started_at_ns > 0, "{record:?}");
    kit.containers.stop(&c, 0).await.expect("stop");
}

// A ready pod whose infra container is gone cannot take containers (they join its PID
// namespace): it is recovered as not ready (the sweep's `release.cni-deleted`).
#[tokio::test]
async fn a_ready_pod_without_its_infra_is_not_ready() {
    let kit = Kit::new();
    let mut config = kit.pod_config("p");
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.pid = crid_api::cri::NamespaceMode::Pod as i32;
    }
    let pod = kit.pods.run(config, "").await.expect("run");
    assert!(kit.pods.status(&pod).expect("pod").infra.is_some());
    let kit = kit.restart();
    super::recover(&kit.pods).await.expect("recover");
    assert_eq!(kit.pods.status(&pod).expect("pod").state, PodState::Ready);
    let kit = kit.restart();
    crate::runtime::RuntimeHandler::delete(kit.runtime.as_ref(), &pod, true)
        .await
        .expect("delete the infra");
    super::recover(&kit.pods).await.expect("recover");
    assert_eq!(
        kit.pods.status(&pod).expect("pod").state,
        PodState::NotReady
    );
    kit.pods.remove(&pod).await.expect("remove");
    assert!(kit.host.model().is_clean());
}

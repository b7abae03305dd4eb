//! The container service's rules, without root: the state machine, idempotent calls,
//! rollback of every failing step, name reservation and the code of every refusal, over
//! the fakes of `crate::testkit`.

use std::time::Duration;

use tonic::Code;

use crate::registry::EventKind;
use crate::state::store::RecordKind;
use crate::state::{ContainerRecord, ContainerState};
use crate::testkit::{Kit, code};

/// Nothing of any container is left: record, runtime container, rootfs mount, bundle,
/// writable layer, exit file.
fn assert_no_container_left(kit: &Kit) {
    assert!(kit.registry.containers(None).is_empty(), "registry");
    assert!(kit.store.ids(RecordKind::Container).is_empty(), "records");
    assert!(kit.runtime.containers().is_empty(), "runtime");
    let model = kit.host.model();
    assert!(
        model.mounts.iter().all(|m| m.ends_with("shm")),
        "only pod shm mounts: {model:?}"
    );
    assert!(kit.entries("run/containers").is_empty(), "bundles");
    assert!(kit.entries("root/storage/containers").is_empty(), "layers");
    assert!(kit.entries("run/exits").is_empty(), "exit files");
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// cri:RuntimeService.CreateContainer, StartContainer, ContainerStatus: created ->
// running -> exited, with the exit code and reason, and an event at each step.
#[tokio::test]
async fn created_running_exited() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let mut events = kit.registry.subscribe();
    let id = kit
        .containers
        .create(&pod, Kit::container_config("app"))
        .await
        .expect("create");
    let c = kit.containers.status(&id).expect("status");
    assert_eq!((c.state, c.started_at_ns), (ContainerState::Created, 0));
    let stored: ContainerRecord = kit.store.get(RecordKind::Container, &id).expect("stored");
    assert_eq!(stored.state, ContainerState::Created);
    assert!(c.log_path.ends_with("app.log"), "{:?}", c.log_path);

    kit.containers.start(&id).await.expect("start");
    let c = kit.containers.status(&id).expect("status");
    assert_eq!(c.state, ContainerState::Running);
    assert!(c.started_at_ns >= c.created_at_ns);

    kit.runtime.exit(&id, 3);
    eventually("the exit is recorded", || {
        kit.containers
            .status(&id)
            .is_ok_and(|c| c.state == ContainerState::Exited)
    })
    .await;
    let c = kit.containers.status(&id).expect("status");
    assert_eq!((c.exit_code, c.reason.as_str()), (3, "Error"));
    let kinds: Vec<EventKind> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EventKind::Created, EventKind::Started, EventKind::Stopped]
    );
    // The exit reaches the store too (in the background).
    eventually("the exit is persisted", || {
        kit.store
            .get::<ContainerRecord>(RecordKind::Container, &id)
            .is_some_and(|r| r.state == ContainerState::Exited)
    })
    .await;
}

// cri:RuntimeService.StartContainer: only a created container starts.
#[tokio::test]
async fn start_refusals_have_their_codes() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let id = kit.running(&pod, "app").await;
    let e = kit.containers.start(&id).await.expect_err("twice");
    assert!(e.to_string().contains("CONTAINER_RUNNING"), "{e}");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_eq!(
        code(kit.containers.start("nope").await.expect_err("unknown")),
        Code::NotFound
    );
    assert_eq!(
        code(kit.containers.start("").await.expect_err("empty")),
        Code::InvalidArgument
    );
}

// cri:RuntimeService.StopContainer: stop signal, then SIGKILL after the timeout;
// idempotent; unknown IDs are not errors.
#[tokio::test]
async fn stop_escalates_and_is_idempotent() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let polite = kit.running(&pod, "polite").await;
    kit.containers.stop(&polite, 10).await.expect("stop");
    let c = kit.containers.status(&polite).expect("status");
    assert_eq!((c.state, c.exit_code), (ContainerState::Exited, 143));

    kit.runtime.ignore("SIGTERM");
    let stubborn = kit.running(&pod, "stubborn").await;
    let started = std::time::Instant::now();
    kit.containers.stop(&stubborn, 1).await.expect("stop");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the timeout"
    );
    let c = kit.containers.status(&stubborn).expect("status");
    assert_eq!((c.state, c.exit_code), (ContainerState::Exited, 137));
    let kills: Vec<String> = kit
        .runtime
        .calls()
        .into_iter()
        .filter(|c| c.starts_with(&format!("kill {stubborn}")))
        .collect();
    assert_eq!(
        kills,
        [
            format!("kill {stubborn} SIGTERM"),
            format!("kill {stubborn} KILL")
        ]
    );
    kit.containers.stop(&stubborn, 1).await.expect("again");
    kit.containers.stop("unknown", 1).await.expect("unknown");
    // What outlived the init is swept from the container's cgroup.
    assert!(
        kit.host
            .calls()
            .iter()
            .any(|c| c.starts_with("kill_remaining") && c.ends_with(&stubborn)),
        "{:?}",
        kit.host.calls()
    );
}

// cri:RuntimeService.RemoveContainer: forcible, idempotent, removes everything.
#[tokio::test]
async fn remove_is_forcible_idempotent_and_complete() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let id = kit.running(&pod, "app").await;
    let mut events = kit.registry.subscribe();
    kit.containers.remove(&id).await.expect("remove running");
    kit.containers.remove(&id).await.expect("again");
    kit.containers.remove("unknown").await.expect("unknown");
    assert_eq!(
        code(kit.containers.status(&id).expect_err("gone")),
        Code::NotFound
    );
    assert_no_container_left(&kit);
    let kinds: Vec<EventKind> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EventKind::Stopped, EventKind::Deleted]);
    assert_eq!(
        code(kit.containers.remove("").await.expect_err("empty")),
        Code::InvalidArgument
    );
}

/// Each step of CreateContainer failing in turn: its code, and nothing left behind; the
/// same request then succeeds (the name was released).
#[tokio::test]
async fn every_failing_step_of_create_container_rolls_back() {
    type Inject = fn(&Kit, bool);
    let steps: [(&str, Inject); 3] = [
        ("rootfs mount", |k, on| {
            if on {
                k.host.fail("mount_rootfs")
            } else {
                k.host.heal("mount_rootfs")
            }
        }),
        ("runtime create", |k, on| {
            if on {
                k.runtime.fail("create")
            } else {
                k.runtime.heal("create")
            }
        }),
        ("record write", |k, on| k.store.fail_writes(on)),
    ];
    for (step, inject) in steps {
        let kit = Kit::new();
        let pod = kit.pod("p").await;
        inject(&kit, true);
        let e = kit
            .containers
            .create(&pod, Kit::container_config("app"))
            .await
            .expect_err(step);
        assert_eq!(code(e), Code::Internal, "{step}");
        assert_no_container_left(&kit);
        inject(&kit, false);
        kit.containers
            .create(&pod, Kit::container_config("app"))
            .await
            .unwrap_or_else(|e| panic!("{step}: retry: {e}"));
    }
}

// A rollback that fails too answers with the first failure's code and names both.
#[tokio::test]
async fn a_failed_rollback_reports_both_failures() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    kit.runtime.fail("create");
    kit.host.fail("remove_rootfs");
    let e = kit
        .containers
        .create(&pod, Kit::container_config("app"))
        .await
        .expect_err("fails");
    let text = crate::error::chain(&e);
    assert!(text.contains("injected failure of create"), "{text}");
    assert!(text.contains("injected failure of remove_rootfs"), "{text}");
    assert_eq!(code(e), Code::Internal);
}

// The refusals of CreateContainer, each with its code, before anything is created.
#[tokio::test]
async fn create_container_refusals_have_their_codes() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let with = |f: fn(&mut crid_api::cri::ContainerConfig)| {
        let mut c = Kit::container_config("c");
        f(&mut c);
        c
    };
    let cases = [
        (
            pod.as_str(),
            with(|c| c.metadata = None),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            with(|c| c.image = None),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            with(|c| c.log_path = "../../etc/cron.d/x".into()),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            with(|c| c.log_path = "/etc/passwd".into()),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            with(|c| {
                c.mounts.push(crid_api::cri::Mount {
                    container_path: "/data".into(),
                    host_path: "/no/such/dir/anywhere".into(),
                    ..Default::default()
                })
            }),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            with(|c| {
                c.image = Some(crid_api::cri::ImageSpec {
                    image: "not-pulled".into(),
                    ..Default::default()
                })
            }),
            Code::NotFound,
        ),
        // The kit's host has no AppArmor: a Localhost profile cannot be honoured.
        (
            pod.as_str(),
            with(|c| {
                let linux = c.linux.get_or_insert_with(Default::default);
                linux
                    .security_context
                    .get_or_insert_with(Default::default)
                    .apparmor = Some(crid_api::cri::SecurityProfile {
                    profile_type: crid_api::cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "k8s-x".into(),
                });
            }),
            Code::InvalidArgument,
        ),
        (
            pod.as_str(),
            #[allow(deprecated)] // The deprecated field is the one refused.
            with(|c| {
                let linux = c.linux.get_or_insert_with(Default::default);
                linux
                    .security_context
                    .get_or_insert_with(Default::default)
                    .apparmor_profile = "docker-default-x".into();
            }),
            Code::InvalidArgument,
        ),
        ("", Kit::container_config("c"), Code::InvalidArgument),
        ("no-such-pod", Kit::container_config("c"), Code::NotFound),
    ];
    for (pod_id, config, want) in cases {
        let e = kit
            .containers
            .create(pod_id, config)
            .await
            .expect_err("refused");
        let text = e.to_string();
        assert_eq!(code(e), want, "{text}");
    }
    assert_no_container_left(&kit);
    assert!(!kit.dir.path().join("etc").exists());
}

// A container is created only in a ready pod.
#[tokio::test]
async fn create_in_a_stopped_pod_is_refused() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    kit.pods.stop(&pod).await.expect("stop");
    let e = kit
        .containers
        .create(&pod, Kit::container_config("late"))
        .await
        .expect_err("not ready");
    assert!(e.to_string().contains("SANDBOX_NOTREADY"), "{e}");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_no_container_left(&kit);
}

// Container names are reserved per pod: concurrent creates of one name give one container.
#[tokio::test]
async fn concurrent_creates_of_one_name_give_one_container() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let other = kit.pod("q").await;
    let creates = (0..8).map(|_| kit.containers.create(&pod, Kit::container_config("dup")));
    let results = futures_util::future::join_all(creates).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for e in results.into_iter().filter_map(Result::err) {
        assert_eq!(code(e), Code::AlreadyExists);
    }
    // The same name in another pod is another container.
    kit.containers
        .create(&other, Kit::container_config("dup"))
        .await
        .expect("other pod");
}

// cri:RuntimeService.ExecSync, Exec, Attach, UpdateContainerResources and
// ReopenContainerLog need a live (running) container.
#[tokio::test]
async fn operations_on_a_container_that_is_not_running() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let created = kit
        .containers
        .create(&pod, Kit::container_config("created"))
        .await
        .expect("create");
    let e = kit
        .containers
        .exec_sync(&created, vec!["true".into()], 0)
        .await
        .expect_err("created");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_eq!(
        code(
            kit.containers
                .attach_target(&created)
                .await
                .expect_err("created")
        ),
        Code::FailedPrecondition
    );
    let running = kit.running(&pod, "running").await;
    let out = kit
        .containers
        .exec_sync(&running, vec!["echo".into(), "hi".into()], 0)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"echo hi");
    assert_eq!(
        code(
            kit.containers
                .exec_sync(&running, Vec::new(), 0)
                .await
                .expect_err("no cmd")
        ),
        Code::InvalidArgument
    );
    kit.containers.stop(&running, 0).await.expect("stop");
    let e = kit
        .containers
        .update_resources(&running, Some(Default::default()))
        .await
        .expect_err("exited");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_eq!(
        code(kit.containers.reopen_log(&running).await.expect_err("x")),
        Code::FailedPrecondition
    );
}

// Resources the host cannot enforce are refused with FailedPrecondition when configured so.
#[tokio::test]
async fn unenforceable_resources_are_refused_by_configuration() {
    let kit = Kit::with_settings(|s| {
        s.host_resources.hugetlb_controller = false;
        s.tolerate_missing_hugetlb = false;
    });
    let pod = kit.pod("p").await;
    let mut config = Kit::container_config("huge");
    config
        .linux
        .get_or_insert_with(Default::default)
        .resources
        .get_or_insert_with(Default::default)
        .hugepage_limits
        .push(crid_api::cri::HugepageLimit {
            page_size: "2MB".into(),
            limit: 0,
        });
    let e = kit
        .containers
        .create(&pod, config)
        .await
        .expect_err("refused");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_no_container_left(&kit);
}

// A pod's stop stops its containers; its removal removes them, with their events.
#[tokio::test]
async fn a_pods_removal_removes_its_containers() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let a = kit.running(&pod, "a").await;
    let b = kit.running(&pod, "b").await;
    kit.pods.remove(&pod).await.expect("remove");
    for id in [a, b] {
        assert_eq!(
            code(kit.containers.status(&id).expect_err("gone")),
            Code::NotFound
        );
    }
    assert_no_container_left(&kit);
}

// cri:Mount.recursive_read_only: refused with FailedPrecondition, naming the handler, when
// the handler's runtime lacks it (Status reports it false); otherwise the bundle's mount
// carries `rro` beside `ro`.
#[tokio::test]
async fn recursive_read_only_follows_the_handlers_features() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let host = kit.dir.path().join("volume");
    std::fs::create_dir_all(&host).expect("mkdir");
    let config = || {
        let mut c = Kit::container_config("rro");
        c.mounts.push(crid_api::cri::Mount {
            container_path: "/data".into(),
            host_path: host.display().to_string(),
            readonly: true,
            recursive_read_only: true,
            ..Default::default()
        });
        c
    };
    let refused = kit
        .containers
        .create(&pod, config())
        .await
        .expect_err("the fake handler lacks rro");
    assert!(
        refused.to_string().contains("runtime handler fake"),
        "{refused}"
    );
    assert_eq!(code(refused), Code::FailedPrecondition);
    assert_no_container_left(&kit);

    kit.runtime.set_features(crate::runtime::handler::Features {
        recursive_read_only_mounts: true,
        user_namespaces: false,
    });
    let id = kit.containers.create(&pod, config()).await.expect("create");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(kit.containers.layout().bundle(&id).join("config.json")).expect("config"),
    )
    .expect("json");
    let data = spec["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["destination"] == "/data")
        .expect("the /data mount")
        .clone();
    assert_eq!(
        data["options"],
        serde_json::json!(["rbind", "rprivate", "ro", "rro"])
    );
}

// cri:RuntimeService.UpdateContainerResources#linux.oom_score_adj: a value is written to
// the container's processes and recorded; 0 (proto3's "not given", which the kubelet never
// sends) keeps it, so an update of other limits does not reset it.
#[tokio::test]
async fn an_update_sets_oom_score_adj_and_zero_keeps_it() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let id = kit
        .containers
        .create(&pod, Kit::container_config("app"))
        .await
        .expect("create");
    kit.containers.start(&id).await.expect("start");
    let update = |adj: i64| crid_api::cri::LinuxContainerResources {
        cpu_shares: 512,
        oom_score_adj: adj,
        ..Default::default()
    };
    kit.containers
        .update_resources(&id, Some(update(300)))
        .await
        .expect("update to 300");
    let set = |kit: &Kit| {
        kit.host
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("set_oom_score_adj"))
            .count()
    };
    assert_eq!(set(&kit), 1, "{:?}", kit.host.calls());
    let adj = |kit: &Kit| {
        kit.containers
            .status(&id)
            .expect("status")
            .resources
            .map(|r| r.oom_score_adj)
    };
    assert_eq!(adj(&kit), Some(300));
    kit.containers
        .update_resources(&id, Some(update(0)))
        .await
        .expect("update without oom_score_adj");
    assert_eq!(set(&kit), 1, "0 writes nothing: {:?}", kit.host.calls());
    assert_eq!(adj(&kit), Some(300), "0 keeps the value");
}

// cri:Mount#image: the image is mounted read-only for the container and unmounted with it,
// and counts as in use meanwhile; an absent image is NotFound, an unknown handler (of the
// volume or of the container's image) InvalidArgument, a failing mount is rolled back: each
// naming its field, with nothing left.
#[tokio::test]
async fn image_volumes_live_and_go_with_their_container() {
    use crate::image::{ImageSource, ImageUsers};
    use crid_api::cri;
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    let with_volume = |name: &str, image: &str, handler: &str| {
        let mut c = Kit::container_config(name);
        c.mounts = vec![cri::Mount {
            container_path: "/vol".into(),
            image: Some(cri::ImageSpec {
                image: image.into(),
                runtime_handler: handler.into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        c
    };
    let id = kit
        .containers
        .create(&pod, with_volume("app", "pause", ""))
        .await
        .expect("create");
    let target = kit.containers.image_volumes_dir(&id).join("0");
    assert!(kit.host.model().mounts.contains(&target), "volume mounted");
    let pause = kit
        .images
        .find("pause", "image")
        .expect("find")
        .expect("pause");
    assert_eq!(
        kit.containers.containers_using(&pause.id),
        std::slice::from_ref(&id)
    );
    kit.containers.start(&id).await.expect("start");
    kit.containers.remove(&id).await.expect("remove");
    assert!(kit.containers.containers_using(&pause.id).is_empty());
    assert_no_container_left(&kit);

    let refusal = |e: crate::error::Error| {
        let msg = e.to_string();
        (code(e), msg)
    };
    let (c, msg) = refusal(
        kit.containers
            .create(&pod, with_volume("absent", "nope", ""))
            .await
            .expect_err("absent image"),
    );
    assert!(
        c == Code::NotFound && msg.contains("config.mounts.image"),
        "{c:?} {msg}"
    );
    let (c, msg) = refusal(
        kit.containers
            .create(&pod, with_volume("handler", "pause", "no-such-handler"))
            .await
            .expect_err("unknown handler"),
    );
    assert!(
        c == Code::InvalidArgument && msg.contains("config.mounts.image.runtime_handler"),
        "{c:?} {msg}"
    );
    let mut own = Kit::container_config("own-handler");
    if let Some(i) = own.image.as_mut() {
        i.runtime_handler = "no-such-handler".into();
    }
    let (c, msg) = refusal(kit.containers.create(&pod, own).await.expect_err("unknown"));
    assert!(
        c == Code::InvalidArgument && msg.contains("config.image.runtime_handler"),
        "{c:?} {msg}"
    );
    kit.host.fail("mount_image_volume");
    kit.containers
        .create(&pod, with_volume("failing", "pause", ""))
        .await
        .expect_err("mount fails");
    assert_no_container_left(&kit);
}

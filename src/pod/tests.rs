//! The pod service's rules, without root: the services run over a recording host, a fake
//! runtime, an in-memory record store and a fake network (see `crate::testkit`).

use std::time::Duration;

use crid_api::cri;
use tonic::Code;

use crate::state::store::RecordKind;
use crate::state::{PodRecord, PodState};
use crate::testkit::{Kit, code};

/// Nothing of any pod is left: no record, no pin or mount, no network attachment, no
/// runtime container, no pod directory.
fn assert_no_pod_left(kit: &Kit) {
    assert!(kit.registry.pods().is_empty(), "registry");
    assert!(kit.store.ids(RecordKind::Pod).is_empty(), "records");
    assert!(kit.host.model().is_clean(), "{:?}", kit.host.model());
    assert!(kit.network.attached().is_empty(), "network");
    assert!(kit.runtime.containers().is_empty(), "runtime");
    assert!(
        kit.entries("run/pods").is_empty(),
        "{:?}",
        kit.entries("run/pods")
    );
}

fn shared_pid(mut config: cri::PodSandboxConfig) -> cri::PodSandboxConfig {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default)
        .pid = cri::NamespaceMode::Pod as i32;
    config
}

// cri:RuntimeService.RunPodSandbox: the pod is SANDBOX_READY with its namespaces, shm,
// network and durable record.
#[tokio::test]
async fn a_pod_runs_with_its_namespaces_network_and_record() {
    let kit = Kit::new();
    let id = kit.pod("web").await;
    let pod = kit.pods.status(&id).expect("status");
    assert_eq!(pod.state, PodState::Ready);
    assert_eq!(pod.ips, ["10.0.0.2"]);
    assert!(pod.network_attached);
    let stored: PodRecord = kit.store.get(RecordKind::Pod, &id).expect("stored");
    assert_eq!(stored.state, PodState::Ready);
    let model = kit.host.model();
    assert_eq!(model.pins.len(), 3, "{model:?}");
    assert_eq!(model.mounts.len(), 1, "the pod's shm: {model:?}");
    let hosts =
        std::fs::read_to_string(kit.containers.layout().pod_files(&id).hosts()).expect("hosts");
    assert!(hosts.contains("10.0.0.2\tweb"), "{hosts}");
    assert_eq!(kit.pods.list().len(), 1);
    // Namespaces are pinned: no infra container without a shared PID namespace.
    assert!(kit.runtime.containers().is_empty());
}

// cri:RuntimeService.RunPodSandbox: a pod-shared PID namespace gets an infra container.
#[tokio::test]
async fn a_shared_pid_namespace_runs_an_infra_container() {
    let kit = Kit::new();
    let id = kit
        .pods
        .run(shared_pid(kit.pod_config("shared")), "")
        .await
        .expect("run");
    assert_eq!(kit.runtime.containers(), std::slice::from_ref(&id));
    assert!(kit.pods.status(&id).expect("status").infra.is_some());
    kit.pods.stop(&id).await.expect("stop");
    assert!(kit.runtime.containers().is_empty(), "infra deleted");
    assert!(kit.pods.status(&id).expect("status").infra.is_none());
}

/// Each step of RunPodSandbox failing in turn: the error's code, and nothing left behind.
#[tokio::test]
async fn every_failing_step_of_run_pod_sandbox_rolls_back() {
    type Inject = fn(&Kit, bool);
    let steps: [(&str, Inject, Code); 6] = [
        (
            "record write",
            |k, on| k.store.fail_writes(on),
            Code::Internal,
        ),
        (
            "namespace pins",
            |k, on| {
                if on {
                    k.host.fail("pin_namespaces")
                } else {
                    k.host.heal("pin_namespaces")
                }
            },
            Code::Internal,
        ),
        (
            "shm mount",
            |k, on| {
                if on {
                    k.host.fail("mount_shm")
                } else {
                    k.host.heal("mount_shm")
                }
            },
            Code::Internal,
        ),
        (
            "infra rootfs",
            |k, on| {
                if on {
                    k.host.fail("mount_rootfs")
                } else {
                    k.host.heal("mount_rootfs")
                }
            },
            Code::Internal,
        ),
        (
            "infra create",
            |k, on| {
                if on {
                    k.runtime.fail("create")
                } else {
                    k.runtime.heal("create")
                }
            },
            Code::Internal,
        ),
        (
            "infra start",
            |k, on| {
                if on {
                    k.runtime.fail("start")
                } else {
                    k.runtime.heal("start")
                }
            },
            Code::Internal,
        ),
    ];
    for (step, inject, want) in steps {
        let kit = Kit::new();
        inject(&kit, true);
        let err = kit
            .pods
            .run(shared_pid(kit.pod_config("p")), "")
            .await
            .expect_err(step);
        assert_eq!(code(err), want, "{step}");
        assert_no_pod_left(&kit);
        // The same request succeeds once the fault is gone: the name was released.
        inject(&kit, false);
        kit.pods
            .run(shared_pid(kit.pod_config("p")), "")
            .await
            .unwrap_or_else(|e| panic!("{step}: retry: {e}"));
    }
}

// A broken network plugin fails RunPodSandbox and leaves nothing.
#[tokio::test]
async fn a_failing_network_rolls_back() {
    let kit = Kit::new();
    kit.network.fail(true);
    let err = kit
        .pods
        .run(kit.pod_config("n"), "")
        .await
        .expect_err("fails");
    let text = err.to_string();
    assert!(text.contains("injected failure"), "{text}");
    assert_eq!(code(err), Code::Internal);
    assert_no_pod_left(&kit);
}

// cri:RuntimeService.RunPodSandbox: a pod name is reserved (name, namespace, uid, attempt).
#[tokio::test]
async fn concurrent_runs_of_one_name_give_one_pod() {
    let kit = Kit::new();
    let config = kit.pod_config("twin");
    let runs = (0..8).map(|_| kit.pods.run(config.clone(), ""));
    let results = futures_util::future::join_all(runs).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.into_iter().filter_map(Result::err) {
        let text = r.to_string();
        assert_eq!(code(r), Code::AlreadyExists, "{text}");
    }
    assert_eq!(kit.pods.list().len(), 1);
    // Removing the pod frees its name.
    let id = kit.pods.list()[0].id.clone();
    kit.pods.remove(&id).await.expect("remove");
    kit.pods.run(config, "").await.expect("name free again");
}

// cri:RuntimeService.StopPodSandbox and RemovePodSandbox are idempotent, and unknown IDs
// are not errors.
#[tokio::test]
async fn stop_and_remove_are_idempotent() {
    let kit = Kit::new();
    let id = kit.pod("idem").await;
    let c = kit.running(&id, "app").await;
    for _ in 0..2 {
        kit.pods.stop(&id).await.expect("stop");
    }
    assert_eq!(
        kit.pods.status(&id).expect("status").state,
        PodState::NotReady
    );
    assert!(kit.host.model().pins.is_empty(), "namespaces released");
    assert!(kit.network.attached().is_empty(), "network detached");
    assert_eq!(
        kit.containers.status(&c).expect("status").state,
        crate::state::ContainerState::Exited
    );
    for _ in 0..2 {
        kit.pods.remove(&id).await.expect("remove");
    }
    assert_eq!(
        code(kit.pods.status(&id).expect_err("gone")),
        Code::NotFound
    );
    assert!(kit.registry.containers(None).is_empty());
    assert!(kit.store.ids(RecordKind::Container).is_empty());
    assert_no_pod_left(&kit);
    kit.pods.stop("no-such-pod").await.expect("unknown stop");
    kit.pods
        .remove("no-such-pod")
        .await
        .expect("unknown remove");
}

// The refusals of RunPodSandbox, each with its code and naming its field.
#[tokio::test]
async fn run_pod_sandbox_refusals_have_their_codes() {
    let kit = Kit::new();
    let mut no_metadata = kit.pod_config("x");
    no_metadata.metadata = None;
    let mut no_uid = kit.pod_config("x");
    if let Some(m) = no_uid.metadata.as_mut() {
        m.uid.clear();
    }
    let mut huge_name = kit.pod_config("x");
    if let Some(m) = huge_name.metadata.as_mut() {
        m.name = "n".repeat(200_000);
    }
    let mut bad_sysctl = kit.pod_config("x");
    bad_sysctl
        .linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("kernel.hostname".into(), "x".into());
    let mut relative_logs = kit.pod_config("x");
    relative_logs.log_directory = "var/log".into();
    let mut bad_parent = kit.pod_config("x");
    bad_parent
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = "/kubepods/../../etc".into();
    let cases = [
        (no_metadata, "", Code::InvalidArgument, "config.metadata"),
        (no_uid, "", Code::InvalidArgument, "config.metadata.uid"),
        (huge_name, "", Code::InvalidArgument, "config.metadata.name"),
        (
            bad_sysctl,
            "",
            Code::InvalidArgument,
            "config.linux.sysctls",
        ),
        (
            relative_logs,
            "",
            Code::InvalidArgument,
            "config.log_directory",
        ),
        (
            bad_parent,
            "",
            Code::InvalidArgument,
            "config.linux.cgroup_parent",
        ),
        (
            kit.pod_config("x"),
            "no-such-handler",
            Code::InvalidArgument,
            "runtime_handler",
        ),
    ];
    for (config, handler, want, field) in cases {
        let e = kit.pods.run(config, handler).await.expect_err(field);
        let text = e.to_string();
        assert!(text.starts_with(field), "{text}");
        assert_eq!(code(e), want, "{text}");
    }
    assert_no_pod_left(&kit);
}

// A sysctl the kernel lacks is dropped, or refused with FailedPrecondition by configuration.
#[tokio::test]
async fn a_sysctl_the_kernel_lacks_is_dropped_or_refused() {
    let mut config = Kit::new().pod_config("s");
    config
        .linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("net.no.such.sysctl".into(), "1".into());
    let tolerant = Kit::new();
    tolerant
        .pods
        .run(config.clone(), "")
        .await
        .expect("dropped");
    let strict = Kit::with_settings(|s| s.tolerate_unsupported = false);
    let e = strict.pods.run(config, "").await.expect_err("refused");
    assert_eq!(code(e), Code::FailedPrecondition);
    assert_no_pod_left(&strict);
}

// cri:RuntimeService.PodSandboxStatus of an unknown or empty ID.
#[tokio::test]
async fn status_of_unknown_pods_is_not_found() {
    let kit = Kit::new();
    assert_eq!(
        code(kit.pods.status("nope").expect_err("x")),
        Code::NotFound
    );
    assert_eq!(code(kit.pods.netns("nope").expect_err("x")), Code::NotFound);
    let id = kit.pod("pf").await;
    kit.pods.stop(&id).await.expect("stop");
    // PortForward needs a ready pod.
    assert_eq!(
        code(kit.pods.netns(&id).expect_err("not ready")),
        Code::FailedPrecondition
    );
}

/// A stalled disk blocks only its object: with every record write held, a RunPodSandbox
/// waits, and List and Status of other objects still answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_blocks_only_its_object() {
    let kit = Kit::new();
    let other = kit.pod("other").await;
    let c = kit.running(&other, "app").await;
    let held = kit.store.hold().await;
    let pods = kit.pods.clone();
    let config = kit.pod_config("stalled");
    let stalled = tokio::spawn(async move { pods.run(config, "").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stalled.is_finished(), "the write is held");
    let limit = Duration::from_millis(50);
    let answers = tokio::time::timeout(limit, async {
        (
            kit.pods.list(),
            kit.pods.status(&other),
            kit.containers.status(&c),
            kit.containers.list(),
        )
    })
    .await
    .expect("List and Status answer within 50 ms");
    assert_eq!(answers.0.len(), 1, "the stalled pod is still being created");
    assert!(answers.1.is_ok() && answers.2.is_ok());
    assert_eq!(answers.3.len(), 1);
    drop(held);
    let id = tokio::time::timeout(Duration::from_secs(5), stalled)
        .await
        .expect("finishes once the disk is back")
        .expect("join")
        .expect("run");
    assert_eq!(kit.pods.status(&id).expect("status").state, PodState::Ready);
}

// A pause image that is missing and cannot be pulled fails the pod that needs an infra
// container with the image's own code, and leaves nothing.
#[tokio::test]
async fn a_missing_pause_image_fails_cleanly() {
    let kit = Kit::new();
    kit.images.remove("pause");
    let e = kit
        .pods
        .run(shared_pid(kit.pod_config("nopause")), "")
        .await
        .expect_err("no pause image");
    assert_eq!(code(e), Code::NotFound);
    assert_no_pod_left(&kit);
    // A pod without a shared PID namespace needs no pause image.
    kit.pod("plain").await;
}

// StopPodSandbox marks the pod not ready before it tears anything down: a stop that fails
// half-way (or is cut short by a crash: the sweep's `stop-pod.not-ready`) leaves a pod
// that takes no container, and the retry finishes the job.
#[tokio::test]
async fn a_failed_stop_leaves_the_pod_not_ready_and_a_retry_finishes_it() {
    let kit = Kit::new();
    let pod = kit.pod("p").await;
    kit.host.fail("unpin");
    kit.pods.stop(&pod).await.expect_err("unpin fails");
    assert_eq!(
        kit.pods.status(&pod).expect("status").state,
        PodState::NotReady
    );
    let refused = kit
        .containers
        .create(&pod, Kit::container_config("late"))
        .await
        .expect_err("a not-ready pod takes no container");
    assert_eq!(code(refused), Code::FailedPrecondition);
    kit.host.heal("unpin");
    kit.pods.stop(&pod).await.expect("retry");
    kit.pods.remove(&pod).await.expect("remove");
    assert!(kit.host.model().is_clean());
}

// A handler that needs an infra container in every pod (runsc: `always_infra`) gets one
// even when the pod's containers keep their own PID namespaces, which alone would run none.
#[tokio::test]
async fn a_sandboxed_handler_gets_an_infra_container_in_every_pod() {
    let kit = Kit::new();
    let plain = kit.pod("plain").await;
    assert!(kit.pods.status(&plain).expect("status").infra.is_none());
    kit.runtime.needs_infra_always(true);
    let sandboxed = kit.pod("sandboxed").await;
    let infra = kit.pods.status(&sandboxed).expect("status").infra;
    assert_eq!(infra.map(|i| i.id), Some(sandboxed.clone()));
    assert!(kit.runtime.containers().contains(&sandboxed));
    kit.pods.remove(&sandboxed).await.expect("remove");
    kit.pods.remove(&plain).await.expect("remove");
    assert!(kit.host.model().is_clean());
}

// A pod that asks for its own user namespace on a handler without user namespaces (every
// handler, until crid maps IDs) is refused with FailedPrecondition naming the handler, and
// nothing is left.
#[tokio::test]
async fn a_user_namespace_on_a_handler_without_them_is_refused() {
    let kit = Kit::new();
    let mut config = kit.pod_config("userns");
    if let Some(ns) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        ns.userns_options = Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        });
    }
    let err = kit.pods.run(config, "").await.expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("runtime handler fake") && text.contains("userns_options.mode"),
        "{text}"
    );
    assert_eq!(code(err), Code::FailedPrecondition);
    assert!(kit.pods.list().is_empty());
    assert!(kit.host.model().is_clean());
}

fn resources(cpu_shares: i64, cpuset_cpus: &str) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_shares,
        cpuset_cpus: cpuset_cpus.into(),
        ..Default::default()
    }
}

fn recorded(kit: &Kit, id: &str) -> cri::LinuxPodSandboxConfig {
    let stored: PodRecord = kit.store.get(RecordKind::Pod, id).expect("stored");
    stored.config.linux.unwrap_or_default()
}

// cri:RuntimeService.UpdatePodSandboxResources: the config's overhead and resources are
// replaced durably (an absent one is kept); impossible values, an empty and an unknown ID
// are refused and change nothing; a stopped pod is updated too.
#[tokio::test]
async fn update_pod_sandbox_resources_records_durably() {
    let kit = Kit::new();
    let mut config = kit.pod_config("sized");
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.overhead = Some(resources(10, "0"));
    linux.resources = Some(resources(20, "0"));
    let id = kit.pods.run(config, "").await.expect("run");
    kit.pods
        .update_resources(&id, None, Some(resources(30, "0-1")))
        .await
        .expect("update");
    let linux = recorded(&kit, &id);
    assert_eq!(linux.overhead, Some(resources(10, "0")), "absent: kept");
    assert_eq!(linux.resources, Some(resources(30, "0-1")));
    for (overhead, res, field) in [
        (Some(resources(-1, "")), None, "overhead.cpu_shares"),
        (None, Some(resources(1, "1-0")), "resources.cpuset_cpus"),
    ] {
        let e = kit
            .pods
            .update_resources(&id, overhead, res)
            .await
            .expect_err(field);
        assert!(e.to_string().starts_with(field), "{e}");
        assert_eq!(code(e), Code::InvalidArgument);
    }
    assert_eq!(recorded(&kit, &id).resources, Some(resources(30, "0-1")));
    let e = kit
        .pods
        .update_resources("", None, None)
        .await
        .expect_err("empty");
    assert_eq!(code(e), Code::InvalidArgument);
    let e = kit
        .pods
        .update_resources("nope", None, None)
        .await
        .expect_err("unknown");
    assert_eq!(code(e), Code::NotFound);
    kit.pods.stop(&id).await.expect("stop");
    kit.pods
        .update_resources(&id, Some(resources(40, "")), None)
        .await
        .expect("a stopped pod");
    assert_eq!(recorded(&kit, &id).overhead, Some(resources(40, "")));
}

// cri:RuntimeService.RunPodSandbox: impossible pod resources and a Localhost seccomp
// profile that cannot be read are refused naming the field, with an infra container or
// without, and leave nothing.
#[tokio::test]
async fn pod_resources_and_seccomp_are_checked_before_anything_is_created() {
    let kit = Kit::new();
    let mut bad_resources = kit.pod_config("x");
    bad_resources
        .linux
        .get_or_insert_with(Default::default)
        .resources = Some(resources(0, "a-b"));
    let mut missing_profile = kit.pod_config("x");
    missing_profile
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: "/nonexistent/crid-profile.json".into(),
    });
    for (config, field) in [
        (bad_resources, "config.linux.resources.cpuset_cpus"),
        (
            missing_profile.clone(),
            "config.linux.security_context.seccomp.localhost_ref",
        ),
        (
            shared_pid(missing_profile),
            "config.linux.security_context.seccomp.localhost_ref",
        ),
    ] {
        let e = kit.pods.run(config, "").await.expect_err(field);
        assert!(e.to_string().starts_with(field), "{e}");
        assert_eq!(code(e), Code::InvalidArgument);
    }
    assert_no_pod_left(&kit);
}

// cri:RuntimeService.RunPodSandbox#config.linux.resources: the infra container's spec
// carries containerd's annotations of the pod's resources (for VM runtimes), and the
// pod's seccomp (Unconfined here: no filter).
#[tokio::test]
async fn the_infra_spec_carries_the_pods_resources_and_seccomp() {
    let kit = Kit::new();
    let mut config = shared_pid(kit.pod_config("vm"));
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.resources = Some(cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 200_000,
        cpu_shares: 2048,
        memory_limit_in_bytes: 512 << 20,
        ..Default::default()
    });
    linux
        .security_context
        .get_or_insert_with(Default::default)
        .seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    });
    let id = kit.pods.run(config, "").await.expect("run");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(kit.containers.layout().bundle(&id).join("config.json")).expect("spec"),
    )
    .expect("JSON");
    let a = &spec["annotations"];
    assert_eq!(a["io.kubernetes.cri.container-type"], "sandbox");
    assert_eq!(a["io.kubernetes.cri.sandbox-cpu-period"], "100000");
    assert_eq!(a["io.kubernetes.cri.sandbox-cpu-quota"], "200000");
    assert_eq!(a["io.kubernetes.cri.sandbox-cpu-shares"], "2048");
    assert_eq!(
        a["io.kubernetes.cri.sandbox-memory"],
        (512i64 << 20).to_string()
    );
    assert!(spec["linux"]["seccomp"].is_null(), "{}", spec["linux"]);
    // cri:PodSandboxConfig#hostname: in the sandbox's spec, for runtimes that name the
    // pod from it (gVisor, Kata).
    assert_eq!(spec["hostname"], "vm");
    kit.pods.stop(&id).await.expect("stop");
}

//! Pod sandbox lifecycle: RunPodSandbox, PodSandboxStatus, StopPodSandbox,
//! RemovePodSandbox (idempotence) and ListPodSandbox filters.

use std::sync::Arc;

use crid_api::cri;
use tonic::Code;

use super::support::{
    SLEEP_SCRIPT, Scope, check_verbose_info, ctr_ns, drained, ok_or_not_found, pod_ns, pod_sc,
    refused, refused_duplicate, scoped, status_field,
};
use super::{Area, Case, CaseResult, Needs, ensure, status_text};
use crate::fixtures::image::{BUSYBOX, LATEST, PAUSE};

/// Pods need root, a runtime handler and (for runtimes that pull one) the pause image.
pub(super) const POD_NEEDS: Needs = Needs {
    root: true,
    runtime_handler: true,
    image: Some(PAUSE),
    not_ready_endpoint: false,
};

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::PodSandbox.cases().needs(POD_NEEDS);
    vec![
        cases.required(
            "pod-sandbox/run-ready",
            "cri:RuntimeService.RunPodSandbox#pod_sandbox_id",
            "RunPodSandbox returns an id whose status is SANDBOX_READY with the config's metadata and a creation time",
            |ctx| Box::pin(scoped(ctx, "pr", run_ready)),
        ),
        cases.required(
            "pod-sandbox/status-labels-annotations",
            "cri:RuntimeService.PodSandboxStatus#status.labels",
            "PodSandboxStatus returns the labels and annotations of the config (the kubelet matches pods by them)",
            |ctx| Box::pin(scoped(ctx, "pl", status_labels)),
        ),
        cases.required(
            "pod-sandbox/stop-not-ready",
            "cri:RuntimeService.StopPodSandbox#state",
            "after StopPodSandbox the pod is SANDBOX_NOTREADY",
            |ctx| Box::pin(scoped(ctx, "ps", stop_not_ready)),
        ),
        cases.required(
            "pod-sandbox/stop-idempotent",
            "cri:RuntimeService.StopPodSandbox#idempotent",
            "StopPodSandbox twice succeeds both times (the call is idempotent)",
            |ctx| Box::pin(scoped(ctx, "psi", stop_idempotent)),
        ),
        cases.required(
            "pod-sandbox/stop-kills-containers",
            "cri:RuntimeService.StopPodSandbox#containers",
            "StopPodSandbox forcibly terminates the pod's running containers",
            |ctx| Box::pin(scoped(ctx, "psk", stop_kills_containers)),
        ),
        cases.required(
            "pod-sandbox/remove-idempotent",
            "cri:RuntimeService.RemovePodSandbox#idempotent",
            "RemovePodSandbox twice succeeds both times; the pod is gone from the list",
            |ctx| Box::pin(scoped(ctx, "pri", remove_idempotent)),
        ),
        cases.required(
            "pod-sandbox/remove-unknown-id",
            "cri:RuntimeService.RemovePodSandbox#idempotent",
            "RemovePodSandbox of an id never seen answers OK or NotFound (the kubelet treats both as removed)",
            |ctx| Box::pin(scoped(ctx, "pru", remove_unknown)),
        ),
        cases.required(
            "pod-sandbox/stop-unknown-id",
            "cri:RuntimeService.StopPodSandbox#idempotent",
            "StopPodSandbox of an id never seen succeeds: the kubelet stops pods again after restarts and treats an error as a failed teardown",
            |ctx| Box::pin(scoped(ctx, "psu", stop_unknown)),
        ),
        cases.required(
            "pod-sandbox/remove-running-forces",
            "cri:RuntimeService.RemovePodSandbox#containers",
            "RemovePodSandbox of a ready pod forcibly terminates and removes its running container: it is NotFound and its processes are gone from the host (a MUST, though the kubelet stops first)",
            |ctx| Box::pin(scoped(ctx, "prf", remove_running)),
        ),
        cases.optional(
            "pod-sandbox/status-unknown-not-found",
            "cri:RuntimeService.PodSandboxStatus#pod_sandbox_id",
            "PodSandboxStatus of an unknown id is NotFound (the kubelet checks for that code)",
            |ctx| Box::pin(scoped(ctx, "pnf", status_unknown)),
        ),
        cases.optional(
            "pod-sandbox/duplicate-metadata-refused",
            "cri:RuntimeService.RunPodSandbox#config.metadata",
            "a second RunPodSandbox with the metadata of a pod that exists is refused for the name (AlreadyExists, or an error naming it; metadata should identify a pod uniquely), and the first pod stays ready",
            |ctx| Box::pin(scoped(ctx, "pdu", duplicate_metadata)),
        ),
        cases.optional(
            "pod-sandbox/status-verbose",
            "cri:RuntimeService.PodSandboxStatus#verbose",
            "PodSandboxStatus returns info (JSON values) when verbose is true and none when it is false",
            |ctx| Box::pin(scoped(ctx, "pvb", status_verbose)),
        ),
        cases.required(
            "pod-sandbox/runtime-handler",
            "cri:RuntimeService.RunPodSandbox#runtime_handler",
            "RunPodSandbox with an unknown runtime_handler is rejected and leaves no pod; with the run's handler the status names it",
            |ctx| Box::pin(scoped(ctx, "prh", runtime_handler)),
        ),
        cases.required(
            "pod-sandbox/infra-security-context",
            "cri:RuntimeService.RunPodSandbox#config.linux.security_context",
            "in a pod sharing one PID namespace, the sandbox's own process (PID 1 to its containers) runs with the pod's run_as_user, run_as_group, supplemental_groups and readonly_rootfs",
            |ctx| Box::pin(scoped(ctx, "pis", infra_security_context)),
        ),
        cases.optional(
            "pod-sandbox/stream-filters",
            "cri:RuntimeService.StreamPodSandboxes#filter",
            "StreamPodSandboxes filtered by id, by state and by label selector streams exactly the matching pods",
            |ctx| Box::pin(scoped(ctx, "psf", stream_filters)),
        ),
        cases.required(
            "pod-sandbox/list-filter-id",
            "cri:RuntimeService.ListPodSandbox#filter.id",
            "ListPodSandbox with an id filter returns exactly that pod",
            |ctx| Box::pin(scoped(ctx, "pfi", list_filter_id)),
        ),
        cases.required(
            "pod-sandbox/list-filter-state",
            "cri:RuntimeService.ListPodSandbox#filter.state",
            "ListPodSandbox with a state filter separates ready from not-ready pods",
            |ctx| Box::pin(scoped(ctx, "pfs", list_filter_state)),
        ),
        cases.required(
            "pod-sandbox/list-filter-label-selector",
            "cri:RuntimeService.ListPodSandbox#filter.label_selector",
            "ListPodSandbox with a label selector returns only pods carrying every selected label",
            |ctx| Box::pin(scoped(ctx, "pfl", list_filter_labels)),
        ),
    ]
}

async fn list(s: &Scope, filter: cri::PodSandboxFilter) -> Result<Vec<cri::PodSandbox>, String> {
    s.rs()
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .map(|r| r.into_inner().items)
        .map_err(|e| format!("ListPodSandbox: {}", status_text(&e)))
}

async fn stop_pod(s: &Scope, id: &str) -> Result<(), String> {
    s.rs()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .map(drop)
        .map_err(|e| format!("StopPodSandbox: {}", status_text(&e)))
}

async fn remove_pod(s: &Scope, id: &str) -> Result<(), String> {
    s.rs()
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        .map(drop)
        .map_err(|e| format!("RemovePodSandbox: {}", status_text(&e)))
}

async fn run_ready(s: Arc<Scope>) -> CaseResult {
    let (id, config) = s.pod().await?;
    ensure(!id.is_empty(), || "empty pod_sandbox_id".into())?;
    let st = s.pod_status(&id).await?;
    ensure(st.id == id, || format!("status id {:?} != {id:?}", st.id))?;
    ensure(
        st.state == cri::PodSandboxState::SandboxReady as i32,
        || format!("state {} is not SANDBOX_READY", st.state),
    )?;
    ensure(st.metadata == config.metadata, || {
        format!(
            "metadata {:?} differs from the config's {:?}",
            st.metadata, config.metadata
        )
    })?;
    ensure(st.created_at > 0, || "created_at is 0".into())?;
    Ok(format!("pod {id}"))
}

async fn status_labels(s: Arc<Scope>) -> CaseResult {
    let mut config = s.pod_config();
    config.labels.insert("app".into(), "conformance".into());
    config
        .annotations
        .insert("example.com/note".into(), "a value with spaces".into());
    let id = s.run_pod(&config).await?;
    let st = s.pod_status(&id).await?;
    ensure(st.labels == config.labels, || {
        format!("labels {:?} != {:?}", st.labels, config.labels)
    })?;
    ensure(st.annotations == config.annotations, || {
        format!(
            "annotations {:?} != {:?}",
            st.annotations, config.annotations
        )
    })?;
    Ok(String::new())
}

async fn stop_not_ready(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s.pod().await?;
    stop_pod(&s, &id).await?;
    let st = s.pod_status(&id).await?;
    ensure(
        st.state == cri::PodSandboxState::SandboxNotready as i32,
        || format!("state {} after stop, expected SANDBOX_NOTREADY", st.state),
    )?;
    Ok(String::new())
}

async fn stop_idempotent(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s.pod().await?;
    stop_pod(&s, &id).await?;
    stop_pod(&s, &id)
        .await
        .map_err(|e| format!("second stop: {e}"))?;
    Ok(String::new())
}

async fn stop_kills_containers(s: Arc<Scope>) -> CaseResult {
    let (pod, ctr) = s.sleeper(|_| {}).await?;
    stop_pod(&s, &pod).await?;
    let st = s.container_status(&ctr).await?;
    ensure(
        st.state == cri::ContainerState::ContainerExited as i32,
        || {
            format!(
                "container is {} after StopPodSandbox",
                super::support::container_state_name(st.state)
            )
        },
    )?;
    Ok(String::new())
}

async fn remove_idempotent(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s.pod().await?;
    stop_pod(&s, &id).await?;
    remove_pod(&s, &id).await?;
    remove_pod(&s, &id)
        .await
        .map_err(|e| format!("second remove: {e}"))?;
    let left = list(
        &s,
        cri::PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure(left.is_empty(), || {
        format!("removed pod still listed: {left:?}")
    })?;
    Ok(String::new())
}

async fn remove_unknown(s: Arc<Scope>) -> CaseResult {
    let r = s
        .rs()
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: s.name("never-created"),
        })
        .await;
    ok_or_not_found("RemovePodSandbox", r)?;
    Ok(String::new())
}

async fn stop_unknown(s: Arc<Scope>) -> CaseResult {
    s.rs()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: s.name("never-created"),
        })
        .await
        .map_err(|e| format!("StopPodSandbox of an unknown id: {}", status_text(&e)))?;
    Ok(String::new())
}

async fn remove_running(s: Arc<Scope>) -> CaseResult {
    let watcher = s.host_pid_watcher().await?;
    let marker = s.name("victim");
    let (pod, ctr, _) = s
        .busybox(&format!("{SLEEP_SCRIPT} # {marker}"), |_| {}, |_| {})
        .await?;
    s.wait_processes(&watcher, &marker, true).await?;
    remove_pod(&s, &pod).await?;
    let pods = list(
        &s,
        cri::PodSandboxFilter {
            id: pod.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure(pods.is_empty(), || "pod still listed after remove".into())?;
    let r = s
        .rs()
        .container_status(cri::ContainerStatusRequest {
            container_id: ctr,
            verbose: false,
        })
        .await;
    ensure(matches!(&r, Err(e) if e.code() == Code::NotFound), || {
        format!("the pod's container survived its removal: {r:?}")
    })?;
    // Removed from the records is not enough: the container's processes must be gone.
    s.wait_processes(&watcher, &marker, false).await?;
    Ok(String::new())
}

async fn status_unknown(s: Arc<Scope>) -> CaseResult {
    let r = s
        .rs()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: s.name("never-created"),
            verbose: false,
        })
        .await;
    match r {
        Err(e) if e.code() == Code::NotFound => Ok(String::new()),
        Err(e) => Err(format!("expected NotFound, got {}", status_text(&e))),
        Ok(_) => Err("PodSandboxStatus of an unknown id succeeded".into()),
    }
}

async fn duplicate_metadata(s: Arc<Scope>) -> CaseResult {
    let (first, config) = s.pod().await?;
    let r = s
        .rs()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: s.ctx.runtime_handler.clone(),
        })
        .await;
    if let Ok(created) = &r {
        s.track_pod(&created.get_ref().pod_sandbox_id);
    }
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    let note = refused_duplicate("RunPodSandbox", r, name)?;
    // The first pod is untouched.
    let st = s.pod_status(&first).await?;
    ensure(
        st.state == cri::PodSandboxState::SandboxReady as i32,
        || {
            format!(
                "the first pod is {:?} after the refused duplicate",
                st.state
            )
        },
    )?;
    Ok(note)
}

async fn list_filter_id(s: Arc<Scope>) -> CaseResult {
    let (a, _) = s.pod().await?;
    let (_b, _) = s.pod().await?;
    let got = list(
        &s,
        cri::PodSandboxFilter {
            id: a.clone(),
            ..Default::default()
        },
    )
    .await?;
    let ids: Vec<_> = got.iter().map(|p| p.id.as_str()).collect();
    ensure(ids == [a.as_str()], || {
        format!("expected [{a}], got {ids:?}")
    })?;
    Ok(String::new())
}

async fn list_filter_state(s: Arc<Scope>) -> CaseResult {
    let (ready, _) = s.pod().await?;
    let (stopped, _) = s.pod().await?;
    stop_pod(&s, &stopped).await?;
    let mine = |pods: Vec<cri::PodSandbox>| -> Vec<String> {
        pods.into_iter()
            .filter(|p| p.id == ready || p.id == stopped)
            .map(|p| p.id)
            .collect()
    };
    let state = |st: cri::PodSandboxState| cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue { state: st as i32 }),
        ..Default::default()
    };
    let r = mine(list(&s, state(cri::PodSandboxState::SandboxReady)).await?);
    ensure(r == [ready.clone()], || {
        format!("READY filter gave {r:?}, expected [{ready}]")
    })?;
    let n = mine(list(&s, state(cri::PodSandboxState::SandboxNotready)).await?);
    ensure(n == [stopped.clone()], || {
        format!("NOTREADY filter gave {n:?}, expected [{stopped}]")
    })?;
    Ok(String::new())
}

async fn list_filter_labels(s: Arc<Scope>) -> CaseResult {
    let mut a = s.pod_config();
    a.labels.insert("tier".into(), "front".into());
    a.labels.insert("color".into(), "blue".into());
    let mut b = s.pod_config();
    b.labels.insert("tier".into(), "front".into());
    let a_id = s.run_pod(&a).await?;
    let b_id = s.run_pod(&b).await?;
    let select = |pairs: &[(&str, &str)]| cri::PodSandboxFilter {
        label_selector: s.selector(pairs),
        ..Default::default()
    };
    let mut both: Vec<_> = list(&s, select(&[("tier", "front")]))
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    both.sort();
    let mut want = vec![a_id.clone(), b_id];
    want.sort();
    ensure(both == want, || {
        format!("tier=front gave {both:?}, expected {want:?}")
    })?;
    let one: Vec<_> = list(&s, select(&[("tier", "front"), ("color", "blue")]))
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    ensure(one == [a_id.clone()], || {
        format!("tier=front,color=blue gave {one:?}, expected [{a_id}]")
    })?;
    Ok(String::new())
}

async fn status_verbose(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s.pod().await?;
    let ask = |verbose| {
        let s = s.clone();
        let id = id.clone();
        async move {
            s.rs()
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose,
                })
                .await
                .map(|r| r.into_inner().info)
                .map_err(|e| format!("PodSandboxStatus verbose={verbose}: {}", status_text(&e)))
        }
    };
    check_verbose_info("PodSandboxStatus", ask(false).await?, ask(true).await?)
}

async fn runtime_handler(s: Arc<Scope>) -> CaseResult {
    // api.proto: an unknown runtime handler must be rejected, not replaced by the default.
    let config = s.pod_config();
    let unknown = s.name("no-such-handler");
    let r = s
        .rs()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: unknown.clone(),
        })
        .await;
    if let Ok(ok) = &r {
        s.track_pod(&ok.get_ref().pod_sandbox_id);
    }
    let code = refused(
        &format!("RunPodSandbox with runtime_handler {unknown:?}"),
        r,
    )?;
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let left: Vec<String> = list(&s, cri::PodSandboxFilter::default())
        .await?
        .into_iter()
        .filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == name))
        .map(|p| {
            s.track_pod(&p.id);
            p.id
        })
        .collect();
    ensure(left.is_empty(), || {
        format!("the refused RunPodSandbox left pods {left:?}")
    })?;
    // The run's own handler (empty: the runtime's default) is accepted and reported.
    let (id, _) = s.pod().await?;
    let st = s.pod_status(&id).await?;
    let want = &s.ctx.runtime_handler;
    ensure(want.is_empty() || st.runtime_handler == *want, || {
        format!(
            "status.runtime_handler {:?}, the pod was run with {want:?}",
            st.runtime_handler
        )
    })?;
    Ok(format!("unknown handler refused with {code:?}"))
}

/// The sandbox's settings, chosen unlike any default so that an ignored field shows.
const INFRA_UID: i64 = 1234;
const INFRA_GID: i64 = 2345;
const INFRA_GROUP: i64 = 3456;

async fn infra_security_context(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let shared = |n: &mut cri::NamespaceOption| n.pid = cri::NamespaceMode::Pod as i32;
    let (_, id, _) = s
        .started_in_new_pod(
            &image,
            &["sh", "-c", SLEEP_SCRIPT],
            |p| {
                shared(pod_ns(p));
                let psc = pod_sc(p);
                psc.run_as_user = Some(cri::Int64Value { value: INFRA_UID });
                psc.run_as_group = Some(cri::Int64Value { value: INFRA_GID });
                psc.supplemental_groups = vec![INFRA_GROUP];
                psc.readonly_rootfs = true;
            },
            |c| shared(ctr_ns(c)),
        )
        .await?;
    let status = s.sh(&id, "cat /proc/1/status").await?;
    let ids = |key| {
        status_field(&status, key)
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (uid, gid, groups) = (ids("Uid"), ids("Gid"), ids("Groups"));
    ensure(
        uid.iter().all(|u| *u == INFRA_UID.to_string()) && uid.len() == 4,
        || format!("the sandbox process runs as Uid {uid:?}, run_as_user was {INFRA_UID}"),
    )?;
    ensure(
        gid.iter().all(|g| *g == INFRA_GID.to_string()) && gid.len() == 4,
        || format!("the sandbox process runs as Gid {gid:?}, run_as_group was {INFRA_GID}"),
    )?;
    ensure(groups.contains(&INFRA_GROUP.to_string()), || {
        format!(
            "the sandbox process has Groups {groups:?}, supplemental_groups was [{INFRA_GROUP}]"
        )
    })?;
    // mountinfo fields: id, parent, dev, root, mount point, options; PID 1's root is "/".
    let mountinfo = s.sh(&id, "cat /proc/1/mountinfo").await?;
    let root = mountinfo
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .rfind(|f| f.len() > 5 && f[4] == "/")
        .map(|f| f[5].to_owned())
        .ok_or_else(|| format!("no root mount in the sandbox's mountinfo: {mountinfo:.400}"))?;
    ensure(root.split(',').any(|o| o == "ro"), || {
        format!("the sandbox's root is mounted {root}, readonly_rootfs was true")
    })?;
    Ok(String::new())
}

async fn stream_filters(s: Arc<Scope>) -> CaseResult {
    // Pod a is ready and labelled pick=a; pod b is stopped and labelled pick=b.
    let mut ids = Vec::new();
    for v in ["a", "b"] {
        let mut config = s.pod_config();
        config.labels.insert("pick".into(), v.into());
        ids.push(s.run_pod(&config).await?);
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    stop_pod(&s, &b).await?;
    let state = |st: cri::PodSandboxState| Some(cri::PodSandboxStateValue { state: st as i32 });
    let scope = s.selector(&[]);
    for (what, filter, want) in [
        (
            "id",
            cri::PodSandboxFilter {
                id: a.clone(),
                ..Default::default()
            },
            &a,
        ),
        (
            "state READY",
            cri::PodSandboxFilter {
                state: state(cri::PodSandboxState::SandboxReady),
                label_selector: scope.clone(),
                ..Default::default()
            },
            &a,
        ),
        (
            "state NOTREADY",
            cri::PodSandboxFilter {
                state: state(cri::PodSandboxState::SandboxNotready),
                label_selector: scope.clone(),
                ..Default::default()
            },
            &b,
        ),
        (
            "label_selector pick=b",
            cri::PodSandboxFilter {
                label_selector: s.selector(&[("pick", "b")]),
                ..Default::default()
            },
            &b,
        ),
    ] {
        let got: Vec<String> = drained(
            "StreamPodSandboxes",
            s.rs()
                .stream_pod_sandboxes(cri::StreamPodSandboxesRequest {
                    filter: Some(filter),
                })
                .await,
        )
        .await?
        .into_iter()
        .flat_map(|m| m.pod_sandboxes)
        .map(|p| p.id)
        .collect();
        ensure(got == [want.clone()], || {
            format!("filter {what} streamed {got:?}, expected [{want}]")
        })?;
    }
    Ok(String::new())
}

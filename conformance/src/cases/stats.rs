//! Stats: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;

use super::container::CONTAINER_NEEDS;
use super::support::{SLEEP_SCRIPT, Scope, drained, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longer than containerd's default stats_collect_period (10 s).
const USAGE_WAIT: Duration = Duration::from_secs(25);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Stats
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "stats/container-stats",
            "cri:RuntimeService.ContainerStats#stats.memory",
            "ContainerStats of a running container names it and reports non-zero memory working set and CPU usage (the kubelet's summary API)",
            |ctx| Box::pin(scoped(ctx, "tc", container_stats)),
        ),
        cases.required(
            "stats/list-container-stats-filter",
            "cri:RuntimeService.ListContainerStats#filter.id",
            "ListContainerStats filtered by id returns that container's stats only",
            |ctx| Box::pin(scoped(ctx, "tl", list_container_stats)),
        ),
        cases.optional(
            "stats/container-writable-layer",
            "cri:RuntimeService.ContainerStats#stats.writable_layer",
            "ContainerStats reports the writable layer's usage, which grows when the container writes (ephemeral-storage eviction with CRI stats)",
            |ctx| Box::pin(scoped(ctx, "tw", writable_layer)),
        ),
        cases.optional(
            "stats/pod-sandbox-stats",
            "cri:RuntimeService.PodSandboxStats#stats.linux",
            "PodSandboxStats reports the pod's memory and its containers (needed only with the kubelet's CRI stats provider)",
            |ctx| Box::pin(scoped(ctx, "tp", pod_stats)),
        ),
        cases.optional(
            "stats/list-pod-sandbox-stats-filter",
            "cri:RuntimeService.ListPodSandboxStats#filter.id",
            "ListPodSandboxStats filtered by id returns that pod only",
            |ctx| Box::pin(scoped(ctx, "tq", list_pod_stats)),
        ),
        cases.required(
            "stats/list-container-stats-filter-pod-labels",
            "cri:RuntimeService.ListContainerStats#filter.pod_sandbox_id",
            "ListContainerStats filtered by pod_sandbox_id, and by label_selector, returns only the matching container's stats",
            |ctx| Box::pin(scoped(ctx, "tp", list_container_stats_pod_labels)),
        ),
        cases.required(
            "stats/list-pod-sandbox-stats-filter-labels",
            "cri:RuntimeService.ListPodSandboxStats#filter.label_selector",
            "ListPodSandboxStats filtered by label_selector returns only the pods carrying every selected label",
            |ctx| Box::pin(scoped(ctx, "tv", list_pod_stats_labels)),
        ),
        cases.optional(
            "stats/stream-container-stats-filters",
            "cri:RuntimeService.StreamContainerStats#filter",
            "StreamContainerStats filtered by id, by pod and by label selector streams only the matching container's stats",
            |ctx| Box::pin(scoped(ctx, "tsc", stream_container_stats)),
        ),
        cases.optional(
            "stats/stream-pod-sandbox-stats-filters",
            "cri:RuntimeService.StreamPodSandboxStats#filter",
            "StreamPodSandboxStats filtered by id and by label selector streams only the matching pod's stats",
            |ctx| Box::pin(scoped(ctx, "tsp", stream_pod_stats)),
        ),
    ]
}

fn check_stats(id: &str, st: &cri::ContainerStats) -> Result<String, String> {
    let attr = st.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or("");
    ensure(attr == id, || {
        format!("attributes.id {attr:?}, expected {id}")
    })?;
    let ws = st
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    ensure(ws > 0, || {
        format!("memory working set {ws}: {:?}", st.memory)
    })?;
    // The container has run a shell loop since it started: its CPU time is not zero.
    let cpu = st
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .ok_or_else(|| format!("no CPU usage: {:?}", st.cpu))?;
    ensure(cpu > 0, || {
        format!("CPU usage 0 ns for a running container: {:?}", st.cpu)
    })?;
    Ok(format!("working set {ws} B, CPU {cpu} ns"))
}

/// ContainerStats of `id`.
async fn container_stats_of(s: &Scope, id: &str) -> Result<cri::ContainerStats, String> {
    s.rs()
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.to_owned(),
        })
        .await
        .map_err(|e| format!("ContainerStats: {}", status_text(&e)))?
        .into_inner()
        .stats
        .ok_or_else(|| "ContainerStats answered without stats".to_owned())
}

async fn container_stats(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let st = container_stats_of(&s, &id).await?;
    check_stats(&id, &st)
}

async fn writable_layer(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    s.sh(
        &id,
        "dd if=/dev/zero of=/fill bs=1024 count=4096 2>/dev/null",
    )
    .await?;
    // Runtimes may sample disk usage periodically (containerd every 10 s): poll a while.
    let deadline = std::time::Instant::now() + USAGE_WAIT;
    loop {
        let st = container_stats_of(&s, &id).await?;
        let used = st
            .writable_layer
            .as_ref()
            .and_then(|w| w.used_bytes)
            .map(|u| u.value)
            .ok_or_else(|| format!("no writable_layer.used_bytes: {:?}", st.writable_layer))?;
        if used >= 4 * 1024 * 1024 {
            return Ok(format!("{used} bytes"));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "writable layer uses {used} bytes {USAGE_WAIT:?} after writing 4 MiB"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn list_container_stats(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let (_, _other) = s.sleeper(|_| {}).await?;
    let stats = s
        .rs()
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                id: id.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("ListContainerStats: {}", status_text(&e)))?
        .into_inner()
        .stats;
    ensure(stats.len() == 1, || {
        format!("{} entries for one id", stats.len())
    })?;
    check_stats(&id, &stats[0])
}

async fn pod_stats(s: Arc<Scope>) -> CaseResult {
    let (pod, ctr) = s.sleeper(|_| {}).await?;
    let st = s
        .rs()
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .map_err(|e| format!("PodSandboxStats: {}", status_text(&e)))?
        .into_inner()
        .stats
        .ok_or("PodSandboxStats answered without stats")?;
    let attr = st.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or("");
    ensure(attr == pod, || {
        format!("attributes.id {attr:?}, expected {pod}")
    })?;
    let linux = st.linux.ok_or("no linux stats")?;
    ensure(
        linux
            .containers
            .iter()
            .any(|c| c.attributes.as_ref().is_some_and(|a| a.id == ctr)),
        || "the pod's container is not in its stats".into(),
    )?;
    Ok(String::new())
}

async fn list_pod_stats(s: Arc<Scope>) -> CaseResult {
    let (pod, _) = s.sleeper(|_| {}).await?;
    let (_other, _) = s.sleeper(|_| {}).await?;
    let stats = s
        .rs()
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("ListPodSandboxStats: {}", status_text(&e)))?
        .into_inner()
        .stats;
    let ids: Vec<_> = stats
        .iter()
        .map(|p| {
            p.attributes
                .as_ref()
                .map(|a| a.id.clone())
                .unwrap_or_default()
        })
        .collect();
    ensure(ids == [pod.clone()], || {
        format!("got {ids:?}, expected [{pod}]")
    })?;
    Ok(String::new())
}

/// Two running containers, each in a pod of its own; the first container and its pod carry
/// the label `pick=a`, the second `pick=b`. Returns (pod a, container a, pod b, container b).
async fn labelled_pair(s: &Scope) -> Result<(String, String, String, String), String> {
    let mut ids = Vec::new();
    for v in ["a", "b"] {
        let label = |m: &mut std::collections::HashMap<String, String>| {
            m.insert("pick".into(), v.into());
        };
        let (pod, ctr, _) = s
            .busybox(
                SLEEP_SCRIPT,
                |p| label(&mut p.labels),
                |c| label(&mut c.labels),
            )
            .await?;
        ids.push((pod, ctr));
    }
    let (b, a) = (ids.pop(), ids.pop());
    match (a, b) {
        (Some((pa, ca)), Some((pb, cb))) => Ok((pa, ca, pb, cb)),
        _ => Err("two containers were asked for".into()),
    }
}

async fn list_container_stats_with(
    s: &Scope,
    filter: cri::ContainerStatsFilter,
) -> Result<Vec<String>, String> {
    Ok(s.rs()
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|e| format!("ListContainerStats: {}", status_text(&e)))?
        .into_inner()
        .stats
        .into_iter()
        .map(|st| st.attributes.map(|a| a.id).unwrap_or_default())
        .collect())
}

async fn list_container_stats_pod_labels(s: Arc<Scope>) -> CaseResult {
    let (pod_a, ctr_a, _, _) = labelled_pair(&s).await?;
    let by_pod = list_container_stats_with(
        &s,
        cri::ContainerStatsFilter {
            pod_sandbox_id: pod_a.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure(by_pod == [ctr_a.clone()], || {
        format!("filter.pod_sandbox_id {pod_a}: stats of {by_pod:?}, expected [{ctr_a}]")
    })?;
    let by_label = list_container_stats_with(
        &s,
        cri::ContainerStatsFilter {
            label_selector: s.selector(&[("pick", "a")]),
            ..Default::default()
        },
    )
    .await?;
    ensure(by_label == [ctr_a.clone()], || {
        format!("filter.label_selector pick=a: stats of {by_label:?}, expected [{ctr_a}]")
    })?;
    Ok(String::new())
}

async fn list_pod_stats_labels(s: Arc<Scope>) -> CaseResult {
    let (pod_a, _, _, _) = labelled_pair(&s).await?;
    let ids: Vec<String> = s
        .rs()
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                label_selector: s.selector(&[("pick", "a")]),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("ListPodSandboxStats: {}", status_text(&e)))?
        .into_inner()
        .stats
        .into_iter()
        .map(|p| p.attributes.map(|a| a.id).unwrap_or_default())
        .collect();
    ensure(ids == [pod_a.clone()], || {
        format!("filter.label_selector pick=a: stats of pods {ids:?}, expected [{pod_a}]")
    })?;
    Ok(String::new())
}

async fn stream_container_stats(s: Arc<Scope>) -> CaseResult {
    let (_, ctr_a, pod_b, ctr_b) = labelled_pair(&s).await?;
    for (what, filter, want) in [
        (
            "id",
            cri::ContainerStatsFilter {
                id: ctr_a.clone(),
                ..Default::default()
            },
            &ctr_a,
        ),
        (
            "pod_sandbox_id",
            cri::ContainerStatsFilter {
                pod_sandbox_id: pod_b.clone(),
                ..Default::default()
            },
            &ctr_b,
        ),
        (
            "label_selector pick=a",
            cri::ContainerStatsFilter {
                label_selector: s.selector(&[("pick", "a")]),
                ..Default::default()
            },
            &ctr_a,
        ),
    ] {
        let got: Vec<String> = drained(
            "StreamContainerStats",
            s.rs()
                .stream_container_stats(cri::StreamContainerStatsRequest {
                    filter: Some(filter),
                })
                .await,
        )
        .await?
        .into_iter()
        .flat_map(|m| m.container_stats)
        .map(|st| st.attributes.map(|a| a.id).unwrap_or_default())
        .collect();
        ensure(got == [want.clone()], || {
            format!("filter {what} streamed stats of {got:?}, expected [{want}]")
        })?;
    }
    Ok(String::new())
}

async fn stream_pod_stats(s: Arc<Scope>) -> CaseResult {
    let (pod_a, _, pod_b, _) = labelled_pair(&s).await?;
    for (what, filter, want) in [
        (
            "id",
            cri::PodSandboxStatsFilter {
                id: pod_a.clone(),
                ..Default::default()
            },
            &pod_a,
        ),
        (
            "label_selector pick=b",
            cri::PodSandboxStatsFilter {
                label_selector: s.selector(&[("pick", "b")]),
                ..Default::default()
            },
            &pod_b,
        ),
    ] {
        let got: Vec<String> = drained(
            "StreamPodSandboxStats",
            s.rs()
                .stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest {
                    filter: Some(filter),
                })
                .await,
        )
        .await?
        .into_iter()
        .flat_map(|m| m.pod_sandbox_stats)
        .map(|p| p.attributes.map(|a| a.id).unwrap_or_default())
        .collect();
        ensure(got == [want.clone()], || {
            format!("filter {what} streamed stats of pods {got:?}, expected [{want}]")
        })?;
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU usage must be non-zero, not only present: a running shell loop has used some.
    #[test]
    fn stats_need_non_zero_cpu() {
        let stats = |cpu: Option<u64>| cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: "c".into(),
                ..Default::default()
            }),
            cpu: Some(cri::CpuUsage {
                usage_core_nano_seconds: cpu.map(|value| cri::UInt64Value { value }),
                ..Default::default()
            }),
            memory: Some(cri::MemoryUsage {
                working_set_bytes: Some(cri::UInt64Value { value: 4096 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_stats("c", &stats(Some(1_000_000))).is_ok());
        assert!(
            check_stats("c", &stats(Some(0)))
                .unwrap_err()
                .contains("CPU usage 0")
        );
        assert!(check_stats("c", &stats(None)).is_err());
        assert!(check_stats("other", &stats(Some(1))).is_err());
    }
}

//! Resource requests whose answer depends on the host: cgroup v2 `unified` keys (applied on
//! a cgroup v2 host, refused where containers' cgroups are v1), hugetlb limits (applied
//! where a hugetlb controller exists, dropped like at creation where none does), memory
//! nodes (node 0 is what the cgroup reports, a node the host lacks is refused); and
//! oom_score_adj, which a runtime's `update` command does not change (the CRI runtime must).

use std::sync::Arc;

use crid_api::cri;
use tonic::Code;

use super::super::support::{Scope, scoped};
use super::super::{Case, CaseBuilder, CaseResult, ensure, status_text};
use super::{MIB, limits};
use crate::fixtures::image::{BUSYBOX, LATEST};

pub(super) fn cases(cases: &CaseBuilder) -> Vec<Case> {
    vec![
        cases.required(
            "resources/update-oom-score-adj",
            "cri:RuntimeService.UpdateContainerResources#linux.oom_score_adj",
            "UpdateContainerResources raises a running container's oom_score_adj from 100 to 300 (its process' /proc/1/oom_score_adj), and ContainerStatus reports the new value when it reports resources",
            |ctx| Box::pin(scoped(ctx, "ra", update_oom_score_adj)),
        ),
        cases.required(
            "resources/unified",
            "cri:RuntimeService.CreateContainer#config.linux.resources.unified",
            "cgroup v2: unified memory.high reaches the container's cgroup at creation and after UpdateContainerResources; cgroup v1 or hybrid: both are refused with InvalidArgument naming unified, leaving no container",
            |ctx| Box::pin(scoped(ctx, "rn", unified)),
        ),
        cases.required(
            "resources/update-hugepage-limits",
            "cri:RuntimeService.UpdateContainerResources#linux.hugepage_limits",
            "with a hugetlb controller, UpdateContainerResources' hugepage limit is the container cgroup's hugetlb limit; without one, the update succeeds and the container keeps running (limits the host cannot enforce are dropped, as at creation)",
            |ctx| Box::pin(scoped(ctx, "rh", update_hugepage_limits)),
        ),
        cases.required(
            "resources/cpuset-mems",
            "cri:RuntimeService.CreateContainer#config.linux.resources.cpuset_mems",
            "cpuset_mems naming the host's first memory node is the cgroup's cpuset.mems at creation and after UpdateContainerResources; a node the host lacks is refused with InvalidArgument naming cpuset_mems by both, leaving no container",
            |ctx| Box::pin(scoped(ctx, "rm", cpuset_mems)),
        ),
    ]
}

/// UpdateContainerResources of `id` with `linux`.
async fn update(
    s: &Scope,
    id: &str,
    linux: cri::LinuxContainerResources,
) -> Result<tonic::Response<cri::UpdateContainerResourcesResponse>, tonic::Status> {
    s.rs()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.to_owned(),
            linux: Some(linux),
            ..Default::default()
        })
        .await
}

/// Requires `r` to be InvalidArgument with a message naming `field`.
fn invalid_naming<T>(
    rpc: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!(
            "{rpc} succeeded, expected InvalidArgument naming {field}"
        )),
        Err(s) if s.code() == Code::InvalidArgument && s.message().contains(field) => Ok(()),
        Err(s) => Err(format!(
            "{rpc}: {}, expected InvalidArgument naming {field}",
            status_text(&s)
        )),
    }
}

/// Creates a busybox with `resources` in the pod of running container `beside`, expecting
/// InvalidArgument naming `field`, and no container of that name left in the pod.
async fn create_refused(
    s: &Scope,
    pod_id: &str,
    resources: cri::LinuxContainerResources,
    field: &str,
) -> Result<(), String> {
    let image = s.image(BUSYBOX, LATEST)?;
    let pod = s.pod_config();
    let mut config = s.container_config(&pod, &image, &["sleep", "60"]);
    limits(&mut config, resources);
    let (r, left) = s.create_refused(pod_id, &pod, config).await?;
    invalid_naming("CreateContainer", r, field)?;
    ensure(left.is_empty(), || {
        format!("the refused CreateContainer left containers {left:?}")
    })
}

/// The container is still running and answers.
async fn still_running(s: &Scope, id: &str, after: &str) -> Result<(), String> {
    let st = s.container_status(id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerRunning as i32,
        || format!("the container is {:?} after {after}", st.state),
    )?;
    s.sh(id, "true").await.map(|_| ())
}

async fn update_oom_score_adj(s: Arc<Scope>) -> CaseResult {
    // Raising only: any process may raise its score, so the runtime needs no
    // CAP_SYS_RESOURCE (lowering below the floor it started with would).
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    oom_score_adj: 100,
                    ..Default::default()
                },
            )
        })
        .await?;
    let before = s.sh(&id, "cat /proc/1/oom_score_adj").await?;
    ensure(before == "100", || {
        format!("oom_score_adj {before} at creation")
    })?;
    update(
        &s,
        &id,
        cri::LinuxContainerResources {
            oom_score_adj: 300,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let after = s.sh(&id, "cat /proc/1/oom_score_adj").await?;
    ensure(after == "300", || {
        format!("oom_score_adj {after} after updating it to 300")
    })?;
    let reported = s
        .container_status(&id)
        .await?
        .resources
        .and_then(|r| r.linux)
        .map(|l| l.oom_score_adj);
    ensure(reported.is_none_or(|v| v == 300), || {
        format!("ContainerStatus reports oom_score_adj {reported:?} after the update to 300")
    })?;
    Ok(String::new())
}

/// `v2` when the container's /sys/fs/cgroup is a cgroup v2 hierarchy, else `v1`.
const CGROUP_VERSION: &str =
    "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then echo v2; else echo v1; fi";

async fn unified(s: Arc<Scope>) -> CaseResult {
    let (pod_id, probe) = s.sleeper(|_| {}).await?;
    let version = s.sh(&probe, CGROUP_VERSION).await?;
    let with = |high: i64| cri::LinuxContainerResources {
        unified: [("memory.high".to_owned(), high.to_string())].into(),
        ..Default::default()
    };
    if version == "v1" {
        create_refused(&s, &pod_id, with(64 * MIB), "unified").await?;
        invalid_naming(
            "UpdateContainerResources",
            update(&s, &probe, with(64 * MIB)).await,
            "unified",
        )?;
        still_running(&s, &probe, "the refused update").await?;
        return Ok("cgroup v1: refused".into());
    }
    let (_, id) = s.sleeper(|c| limits(c, with(64 * MIB))).await?;
    let high = s.sh(&id, "cat /sys/fs/cgroup/memory.high").await?;
    ensure(high == (64 * MIB).to_string(), || {
        format!("memory.high {high}, created with {}", 64 * MIB)
    })?;
    update(&s, &id, with(128 * MIB))
        .await
        .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let high = s.sh(&id, "cat /sys/fs/cgroup/memory.high").await?;
    ensure(high == (128 * MIB).to_string(), || {
        format!("memory.high {high} after the update to {}", 128 * MIB)
    })?;
    Ok("cgroup v2: applied".into())
}

/// The container's hugetlb limit files: `v1 <file>` or `v2 <file>`, one a line.
const HUGETLB_FILES: &str = "for f in /sys/fs/cgroup/hugetlb/hugetlb.*.limit_in_bytes; do [ -e \"$f\" ] && echo v1 $f; done; for f in /sys/fs/cgroup/hugetlb.*.max; do case $f in *rsvd*) ;; *) [ -e \"$f\" ] && echo v2 $f;; esac; done; true";

/// Bytes of a page size as the CRI names it (`2MB`, `1GB`, `64KB`).
fn page_bytes(size: &str) -> Option<i64> {
    let (n, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    Some(match unit {
        "KB" => n << 10,
        "MB" => n << 20,
        "GB" => n << 30,
        _ => return None,
    })
}

async fn update_hugepage_limits(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let files = s.sh(&id, HUGETLB_FILES).await?;
    // The page size and the file of the first limit the container's cgroup has.
    let found = files.lines().find_map(|l| {
        let path = l.split_once(' ')?.1;
        let size = path.rsplit('/').next()?.strip_prefix("hugetlb.")?;
        let size = size.split('.').next()?;
        Some((size.to_owned(), path.to_owned(), page_bytes(size)?))
    });
    let Some((size, file, bytes)) = found else {
        // No hugetlb controller: the kubelet still sends a limit per page size.
        update(
            &s,
            &id,
            cri::LinuxContainerResources {
                hugepage_limits: ["2MB", "1GB"]
                    .map(|p| cri::HugepageLimit {
                        page_size: p.into(),
                        limit: 0,
                    })
                    .into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            format!(
                "UpdateContainerResources with hugepage limits on a host without a hugetlb controller: {}",
                status_text(&e)
            )
        })?;
        still_running(&s, &id, "the update").await?;
        return Ok("no hugetlb controller: dropped".into());
    };
    let limit = 2 * bytes;
    update(
        &s,
        &id,
        cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: size.clone(),
                limit: limit as u64,
            }],
            ..Default::default()
        },
    )
    .await
    .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let got = s.sh(&id, &format!("cat {file}")).await?;
    ensure(got == limit.to_string(), || {
        format!("{file} is {got} after updating the {size} limit to {limit}")
    })?;
    Ok(format!("{size}: applied"))
}

/// The container cgroup's memory nodes (v1 or v2).
const CPUSET_MEMS: &str = "cat /sys/fs/cgroup/cpuset/cpuset.mems 2>/dev/null || cat /sys/fs/cgroup/cpuset.mems 2>/dev/null || cat /sys/fs/cgroup/cpuset.mems.effective";

async fn cpuset_mems(s: Arc<Scope>) -> CaseResult {
    let (pod_id, probe) = s.sleeper(|_| {}).await?;
    // sysfs is the host's: its online memory nodes, as a kernel list (`0`, `0-1`).
    let online = s
        .sh(
            &probe,
            "cat /sys/devices/system/node/online 2>/dev/null || echo 0",
        )
        .await?;
    let last: u32 = online
        .rsplit([',', '-'])
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot read the online memory nodes {online:?}"))?;
    let first = online.split([',', '-']).next().unwrap_or("0").to_owned();
    let lacking = (last + 1).to_string();
    let with = |mems: &str| cri::LinuxContainerResources {
        cpuset_mems: mems.to_owned(),
        ..Default::default()
    };
    create_refused(&s, &pod_id, with(&lacking), "cpuset_mems").await?;
    invalid_naming(
        "UpdateContainerResources",
        update(&s, &probe, with(&lacking)).await,
        "cpuset_mems",
    )?;
    still_running(&s, &probe, "the refused update").await?;
    let (_, id) = s.sleeper(|c| limits(c, with(&first))).await?;
    let mems = s.sh(&id, CPUSET_MEMS).await?;
    ensure(mems == first, || {
        format!("cpuset.mems {mems}, created with cpuset_mems {first}")
    })?;
    update(&s, &probe, with(&first))
        .await
        .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let mems = s.sh(&probe, CPUSET_MEMS).await?;
    ensure(mems == first, || {
        format!("cpuset.mems {mems} after updating cpuset_mems to {first}")
    })?;
    Ok(format!("online nodes {online}"))
}

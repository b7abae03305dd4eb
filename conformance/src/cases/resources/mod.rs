//! Resources: limits from the container config land in the container's cgroup, and
//! UpdateContainerResources changes them on a running container. The cgroup files are
//! read from inside the container (cgroup v1 or v2 layout). [`host_bound`] holds the
//! requests whose answer depends on what the host has (cgroup version, hugetlb, memory
//! nodes) and the ones a runtime's `update` command leaves to the runtime (oom_score_adj).

mod host_bound;

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;

use super::container::CONTAINER_NEEDS;
use super::kubelet_replay::host;
use super::support::{SLEEP_SCRIPT, Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
pub(super) const MIB: i64 = 1024 * 1024;

/// `memory.limit_in_bytes` (v1) or `memory.max` (v2).
const MEMORY_LIMIT: &str =
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
/// `cpu.cfs_quota_us cpu.cfs_period_us` (v1) or `cpu.max` (v2), as "quota period".
const CPU_MAX: &str = "if [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); else cat /sys/fs/cgroup/cpu.max; fi";
/// `cpu.shares` (v1) or `cpu.weight` (v2), prefixed with the version.
const CPU_SHARES: &str = "if [ -e /sys/fs/cgroup/cpu/cpu.shares ]; then echo v1 $(cat /sys/fs/cgroup/cpu/cpu.shares); else echo v2 $(cat /sys/fs/cgroup/cpu.weight); fi";

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Resources
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "resources/memory-limit",
            "cri:RuntimeService.CreateContainer#config.linux.resources.memory_limit_in_bytes",
            "memory_limit_in_bytes 64 MiB is the container cgroup's memory limit",
            |ctx| Box::pin(scoped(ctx, "rm", memory_limit)),
        ),
        cases.required(
            "resources/cpu-quota",
            "cri:RuntimeService.CreateContainer#config.linux.resources.cpu_quota",
            "cpu_quota 50000 over cpu_period 100000 is the container cgroup's CFS quota",
            |ctx| Box::pin(scoped(ctx, "rq", cpu_quota)),
        ),
        cases.required(
            "resources/cpu-shares",
            "cri:RuntimeService.CreateContainer#config.linux.resources.cpu_shares",
            "cpu_shares 512 is the cgroup's cpu.shares (v1) or its cpu.weight equivalent (v2)",
            |ctx| Box::pin(scoped(ctx, "rs", cpu_shares)),
        ),
        cases.required(
            "resources/update-container-resources",
            "cri:RuntimeService.UpdateContainerResources#linux",
            "UpdateContainerResources raises a running container's memory limit and CPU quota",
            |ctx| Box::pin(scoped(ctx, "ru", update)),
        ),
        cases.required(
            "resources/oom-score-adj",
            "cri:RuntimeService.CreateContainer#config.linux.resources.oom_score_adj",
            "oom_score_adj 500 is the oom_score_adj of the container's process",
            |ctx| Box::pin(scoped(ctx, "ro", oom_score_adj)),
        ),
        cases.required(
            "resources/cpuset-cpus",
            "cri:RuntimeService.CreateContainer#config.linux.resources.cpuset_cpus",
            "cpuset_cpus naming one CPU confines the container's process to it",
            |ctx| Box::pin(scoped(ctx, "rc", cpuset_cpus)),
        ),
        cases.required(
            "resources/update-cpu-shares-cpuset",
            "cri:RuntimeService.UpdateContainerResources#linux.cpu_shares",
            "UpdateContainerResources changes a running container's cpu_shares and moves it to another CPU (cpuset_cpus)",
            |ctx| Box::pin(scoped(ctx, "rv", update_shares_cpuset)),
        ),
        cases.optional(
            "resources/memory-swap-limit",
            "cri:RuntimeService.CreateContainer#config.linux.resources.memory_swap_limit_in_bytes",
            "memory_swap_limit_in_bytes is the cgroup's memory+swap limit, and UpdateContainerResources changes it on a running container (optional: the host must account swap)",
            |ctx| Box::pin(scoped(ctx, "rw", memory_swap_limit)),
        ),
        cases.required(
            "resources/oom-killed",
            "cri:RuntimeService.ContainerStatus#status.reason",
            "a container whose process outgrows memory_limit_in_bytes is killed by the cgroup's OOM killer and reported EXITED with exit code 137 and reason OOMKilled",
            |ctx| Box::pin(scoped(ctx, "rk", oom_killed)),
        ),
        cases.required(
            "resources/kubelet-cgroup-parent",
            "cri:RuntimeService.RunPodSandbox#config.linux.cgroup_parent",
            "a pod whose cgroup_parent is the kubelet's QoS-and-UID parent in the driver RuntimeConfig reports (systemd: kubepods-besteffort-pod<uid>.slice; cgroupfs: /kubepods/besteffort/pod<uid>) has its containers' cgroups below it, and none left there after its removal",
            |ctx| Box::pin(scoped(ctx, "rp", kubelet_cgroup_parent)),
        ),
        cases.optional(
            "resources/status-resources",
            "cri:RuntimeService.ContainerStatus#status.resources",
            "ContainerStatus reports the container's current memory limit (in-place pod resize reads it)",
            |ctx| Box::pin(scoped(ctx, "rr", status_resources)),
        ),
    ]
    .into_iter()
    .chain(host_bound::cases(&cases))
    .collect()
}

pub(super) fn limits(c: &mut cri::ContainerConfig, r: cri::LinuxContainerResources) {
    c.linux.get_or_insert_with(Default::default).resources = Some(r);
}

async fn memory_limit(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 * MIB,
                    ..Default::default()
                },
            )
        })
        .await?;
    let v = s.sh(&id, MEMORY_LIMIT).await?;
    ensure(v == (64 * MIB).to_string(), || format!("memory limit {v}"))?;
    Ok(String::new())
}

async fn cpu_quota(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    ..Default::default()
                },
            )
        })
        .await?;
    let v = s.sh(&id, CPU_MAX).await?;
    ensure(v == "50000 100000", || format!("quota/period {v:?}"))?;
    Ok(String::new())
}

async fn cpu_shares(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    cpu_shares: 512,
                    ..Default::default()
                },
            )
        })
        .await?;
    let v = s.sh(&id, CPU_SHARES).await?;
    // v2: weight = 1 + (shares - 2) * 9999 / 262142, the conversion runc and crun use.
    ensure(v == "v1 512" || v == "v2 20", || format!("{v:?}"))?;
    Ok(v)
}

async fn update(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 * MIB,
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    ..Default::default()
                },
            )
        })
        .await?;
    s.rs()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 * MIB,
                cpu_period: 100_000,
                cpu_quota: 80_000,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let mem = s.sh(&id, MEMORY_LIMIT).await?;
    ensure(mem == (128 * MIB).to_string(), || {
        format!("memory limit {mem} after update")
    })?;
    let cpu = s.sh(&id, CPU_MAX).await?;
    ensure(cpu == "80000 100000", || {
        format!("quota/period {cpu:?} after update")
    })?;
    Ok(String::new())
}

async fn oom_score_adj(s: Arc<Scope>) -> CaseResult {
    // Positive: any process may raise its own score, so no runtime needs CAP_SYS_RESOURCE.
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    oom_score_adj: 500,
                    ..Default::default()
                },
            )
        })
        .await?;
    let v = s.sh(&id, "cat /proc/1/oom_score_adj").await?;
    ensure(v == "500", || format!("oom_score_adj {v}"))?;
    Ok(String::new())
}

/// `v1 <memory.memsw.limit_in_bytes>` or `v2 <memory.swap.max>` (swap alone on v2).
const SWAP_LIMIT: &str = "if [ -e /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ]; then echo v1 $(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes); else echo v2 $(cat /sys/fs/cgroup/memory.swap.max); fi";

/// Judges [`SWAP_LIMIT`]'s output against a memory limit and a memory+swap limit.
fn check_swap(got: &str, memory: i64, swap: i64, when: &str) -> Result<(), String> {
    let v1 = format!("v1 {swap}");
    let v2 = format!("v2 {}", swap - memory);
    ensure(got == v1 || got == v2, || {
        format!(
            "{when}: {got:?}, expected {v1:?} (cgroup v1 memory+swap) or {v2:?} (cgroup v2 swap alone)"
        )
    })
}

async fn memory_swap_limit(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 * MIB,
                    memory_swap_limit_in_bytes: 128 * MIB,
                    ..Default::default()
                },
            )
        })
        .await?;
    let got = s.sh(&id, SWAP_LIMIT).await?;
    check_swap(&got, 64 * MIB, 128 * MIB, "created with 128 MiB")?;
    s.rs()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 64 * MIB,
                memory_swap_limit_in_bytes: 256 * MIB,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let after = s.sh(&id, SWAP_LIMIT).await?;
    check_swap(&after, 64 * MIB, 256 * MIB, "updated to 256 MiB")?;
    Ok(after)
}

/// The CPU list the container's process may run on (`Cpus_allowed_list`).
const CPUS_ALLOWED: &str = "grep Cpus_allowed_list /proc/1/status | cut -f2";

/// The highest online CPU of the host as the container sees it (sysfs is the host's);
/// the cases need two CPUs to tell a confined process from one that is not.
async fn last_cpu(s: &Scope, id: &str) -> Result<u32, String> {
    let online = s.sh(id, "cat /sys/devices/system/cpu/online").await?;
    let last = online
        .rsplit([',', '-'])
        .next()
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| format!("cannot read the online CPUs {online:?}"))?;
    ensure(last > 0, || {
        format!("the host has one CPU ({online}): cpuset placement cannot be told apart")
    })?;
    Ok(last)
}

async fn cpuset_cpus(s: Arc<Scope>) -> CaseResult {
    let (_, probe) = s.sleeper(|_| {}).await?;
    let last = last_cpu(&s, &probe).await?;
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    cpuset_cpus: last.to_string(),
                    ..Default::default()
                },
            )
        })
        .await?;
    let v = s.sh(&id, CPUS_ALLOWED).await?;
    ensure(v == last.to_string(), || {
        format!("Cpus_allowed_list {v}, cpuset_cpus was {last}")
    })?;
    Ok(String::new())
}

async fn update_shares_cpuset(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    cpu_shares: 512,
                    cpuset_cpus: "0".into(),
                    ..Default::default()
                },
            )
        })
        .await?;
    let last = last_cpu(&s, &id).await?;
    let before = s.sh(&id, CPUS_ALLOWED).await?;
    ensure(before == "0", || {
        format!("Cpus_allowed_list {before} before the update")
    })?;
    s.rs()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: 1024,
                cpuset_cpus: last.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("UpdateContainerResources: {}", status_text(&e)))?;
    let shares = s.sh(&id, CPU_SHARES).await?;
    // v2: weight 1 + (1024 - 2) * 9999 / 262142 = 39.
    ensure(shares == "v1 1024" || shares == "v2 39", || {
        format!("{shares:?} after updating cpu_shares to 1024")
    })?;
    let cpus = s.sh(&id, CPUS_ALLOWED).await?;
    ensure(cpus == last.to_string(), || {
        format!("Cpus_allowed_list {cpus} after updating cpuset_cpus to {last}")
    })?;
    Ok(String::new())
}

async fn status_resources(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            limits(
                c,
                cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 * MIB,
                    ..Default::default()
                },
            )
        })
        .await?;
    let st = s.container_status(&id).await?;
    let got = st
        .resources
        .and_then(|r| r.linux)
        .map(|l| l.memory_limit_in_bytes);
    ensure(got == Some(64 * MIB), || {
        format!("status.resources memory limit {got:?}")
    })?;
    Ok(String::new())
}

/// A shell holding 64 MiB in a variable, limited to 16 MiB: the kernel's OOM killer ends it
/// (PID 1 of the container, so the container exits 137) and the runtime must say why. No
/// swap limit is set: with swap on the host the shell could swap instead, and the failure
/// says so.
async fn oom_killed(s: Arc<Scope>) -> CaseResult {
    let (id, st) = s
        .busybox_exited(
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}; sleep 5",
            |c| {
                limits(
                    c,
                    cri::LinuxContainerResources {
                        memory_limit_in_bytes: 16 * MIB,
                        ..Default::default()
                    },
                )
            },
            Duration::from_secs(60),
        )
        .await?;
    if st.exit_code == 0 {
        let swaps = s.sh(&id, "cat /proc/swaps").await.unwrap_or_default();
        return Err(format!(
            "the process outgrew its 16 MiB limit and exited 0 (swap on the host: {swaps:?})"
        ));
    }
    ensure(st.exit_code == 137 && st.reason == "OOMKilled", || {
        format!(
            "exit code {} reason {:?} message {:?}; expected 137 and OOMKilled",
            st.exit_code, st.reason, st.message
        )
    })?;
    Ok(format!("exit {} {}", st.exit_code, st.reason))
}

/// The kubelet's cgroup parent for a BestEffort pod, in the form of `driver`: the parent to
/// send, and the cgroup path (from a hierarchy's root) the pod's containers must be under.
fn kubelet_parent(driver: cri::CgroupDriver, uid: &str) -> (String, String) {
    if driver == cri::CgroupDriver::Systemd {
        // The kubelet escapes the UID's dashes: a dash in a slice name means nesting.
        let u = uid.replace('-', "_");
        (
            format!("kubepods-besteffort-pod{u}.slice"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice"),
        )
    } else {
        let path = format!("/kubepods/besteffort/pod{uid}");
        (path.clone(), path)
    }
}

/// The container's cgroup (memory controller on v1, the unified entry on v2) in a
/// /proc/PID/cgroup text.
fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    let mut v2 = None;
    for l in proc_cgroup.lines() {
        let mut fields = l.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(path.trim().to_owned());
        }
        if controllers.is_empty() && l.starts_with("0::") {
            v2 = Some(path.trim().to_owned());
        }
    }
    v2
}

/// Slices systemd has active now, of `names`; empty without systemctl.
fn active_units(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            std::process::Command::new("systemctl")
                .args(["is-active", "--quiet", n.as_str()])
                .status()
                .is_ok_and(|s| s.success())
        })
        .cloned()
        .collect()
}

async fn kubelet_cgroup_parent(s: Arc<Scope>) -> CaseResult {
    let driver = match s.rs().runtime_config(cri::RuntimeConfigRequest {}).await {
        Ok(r) => r
            .into_inner()
            .linux
            .ok_or("RuntimeConfig answered without linux")?
            .cgroup_driver(),
        // A runtime that does not say is configured by hand; cgroupfs is the kubelet's default.
        Err(st) if st.code() == tonic::Code::Unimplemented => cri::CgroupDriver::Cgroupfs,
        Err(st) => return Err(format!("RuntimeConfig: {}", status_text(&st))),
    };
    let mut config = s.pod_config();
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let (parent, path) = kubelet_parent(driver, &uid);
    config
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = parent.clone();
    // What the kubelet would have made before; the case removes only what it caused.
    let systemd = driver == cri::CgroupDriver::Systemd;
    let slices: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let slices_before = if systemd {
        active_units(&slices)
    } else {
        Vec::new()
    };
    let dirs_before = host::existing_ancestors(&path);
    let checked = check_kubelet_parent(&s, config, &path, systemd).await;
    if systemd {
        for unit in slices.iter().rev().filter(|u| !slices_before.contains(u)) {
            let _ = std::process::Command::new("systemctl")
                .args(["stop", unit.as_str()])
                .status();
        }
    } else {
        host::remove_pod_cgroups(&path, &dirs_before);
    }
    checked
}

async fn check_kubelet_parent(
    s: &Scope,
    config: cri::PodSandboxConfig,
    path: &str,
    systemd: bool,
) -> CaseResult {
    let (pod_id, id, _) = s.busybox(SLEEP_SCRIPT, |p| *p = config, |_| {}).await?;
    let own = match container_pid(s, &id).await? {
        // The host's view: a cgroup namespace inside the container hides the path.
        Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| format!("reading /proc/{pid}/cgroup: {e}"))?,
        None => s.sh(&id, "cat /proc/self/cgroup").await?,
    };
    let cgroup =
        own_cgroup(&own).ok_or_else(|| format!("no memory or unified cgroup in {own:?}"))?;
    ensure(cgroup.starts_with(&format!("{path}/")), || {
        format!("the container's cgroup is {cgroup}, not below the pod's parent {path}")
    })?;
    ensure(!systemd || cgroup.ends_with(".scope"), || {
        format!("systemd driver, but the container's cgroup {cgroup} is not a scope unit")
    })?;
    s.stop(&id, 0).await?;
    s.remove_container(&id).await?;
    s.rs()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .map_err(|e| format!("StopPodSandbox: {}", status_text(&e)))?;
    s.rs()
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .map_err(|e| format!("RemovePodSandbox: {}", status_text(&e)))?;
    let left = host::cgroup_children(path);
    ensure(left.is_empty(), || {
        format!("cgroups left below the pod's parent after its removal: {left:?}")
    })?;
    Ok(cgroup)
}

/// The container's host PID from ContainerStatus' verbose info (`info` → `pid`, as
/// containerd and crid report it), when the runtime gives one.
async fn container_pid(s: &Scope, id: &str) -> Result<Option<u32>, String> {
    let r = s
        .rs()
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        })
        .await
        .map_err(|e| format!("ContainerStatus: {}", status_text(&e)))?
        .into_inner();
    Ok(r.info
        .get("info")
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v.get("pid").and_then(serde_json::Value::as_u64))
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_parents_follow_the_driver() {
        assert_eq!(
            kubelet_parent(cri::CgroupDriver::Systemd, "a-b-1"),
            (
                "kubepods-besteffort-poda_b_1.slice".to_owned(),
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b_1.slice"
                    .to_owned()
            )
        );
        assert_eq!(
            kubelet_parent(cri::CgroupDriver::Cgroupfs, "a-b-1"),
            (
                "/kubepods/besteffort/poda-b-1".to_owned(),
                "/kubepods/besteffort/poda-b-1".to_owned()
            )
        );
    }

    #[test]
    fn the_own_cgroup_is_memorys_on_v1_and_the_unified_one_on_v2() {
        let v1 = "12:pids:/a\n5:memory:/kubepods/x/y\n0::/\n";
        assert_eq!(own_cgroup(v1).as_deref(), Some("/kubepods/x/y"));
        let v2 = "0::/kubepods.slice/p.slice/crid-1.scope\n";
        assert_eq!(
            own_cgroup(v2).as_deref(),
            Some("/kubepods.slice/p.slice/crid-1.scope")
        );
        assert_eq!(own_cgroup("garbage"), None);
    }
}

//! Runtime information: Version, Status, RuntimeConfig, UpdateRuntimeConfig.

use crid_api::RuntimeServiceClient;
use crid_api::cri;
use tonic::Code;

use super::container::CONTAINER_NEEDS;
use super::support::{SLEEP_SCRIPT, Scope, scoped};
use super::{Area, Case, CaseResult, Ctx, Needs, ensure, status_text};

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::RuntimeInfo.cases();
    vec![
        cases.required(
            "runtime-info/version-api-version",
            "cri:RuntimeService.Version#runtime_api_version",
            "Version reports runtime_api_version v1",
            |ctx| Box::pin(version_api_version(ctx)),
        ),
        cases.required(
            "runtime-info/version-runtime-identity",
            "cri:RuntimeService.Version#runtime_name",
            "Version names the runtime and its version",
            |ctx| Box::pin(version_identity(ctx)),
        ),
        cases.required(
            "runtime-info/status-conditions",
            "cri:RuntimeService.Status#status.conditions",
            "Status reports both RuntimeReady and NetworkReady, RuntimeReady true",
            |ctx| Box::pin(status_conditions(ctx)),
        ),
        cases
            .needs(Needs {
                not_ready_endpoint: true,
                ..Needs::default()
            })
            .required(
            "runtime-info/status-not-ready-reason",
            "cri:RuntimeService.Status#RuntimeCondition.reason",
            "a condition that is false carries a reason and a message: NetworkReady on an \
             endpoint of the same runtime started without a network configuration",
            |ctx| Box::pin(status_not_ready_reason(ctx)),
        ),
        cases.optional(
            "runtime-info/status-verbose-info",
            "cri:RuntimeService.Status#info",
            "verbose Status returns info only when asked, with JSON values",
            |ctx| Box::pin(status_verbose_info(ctx)),
        ),
        cases.optional(
            "runtime-info/status-runtime-handlers",
            "cri:RuntimeService.Status#runtime_handlers",
            "runtime_handlers are listed once each, with features",
            |ctx| Box::pin(status_runtime_handlers(ctx)),
        ),
        cases.optional(
            "runtime-info/runtime-config-cgroup-driver",
            "cri:RuntimeService.RuntimeConfig#linux.cgroup_driver",
            "RuntimeConfig reports a cgroup driver (or is Unimplemented, which the kubelet tolerates)",
            |ctx| Box::pin(runtime_config_cgroup_driver(ctx)),
        ),
        cases.needs(CONTAINER_NEEDS).optional(
            "runtime-info/cgroup-driver-matches-containers",
            "cri:RuntimeService.RuntimeConfig#linux.cgroup_driver",
            "the reported cgroup driver is the one containers are placed with: a systemd \
             driver's containers are in .scope units, a cgroupfs driver's are not",
            |ctx| Box::pin(scoped(ctx, "rc", cgroup_driver_matches_containers)),
        ),
        cases.required(
            "runtime-info/update-runtime-config-pod-cidr",
            "cri:RuntimeService.UpdateRuntimeConfig#runtime_config.network_config.pod_cidr",
            "UpdateRuntimeConfig accepts a valid pod CIDR",
            |ctx| Box::pin(update_runtime_config_pod_cidr(ctx)),
        ),
    ]
}

fn client(ctx: &Ctx) -> RuntimeServiceClient<tonic::transport::Channel> {
    RuntimeServiceClient::new(ctx.channel.clone())
}

async fn version(ctx: &Ctx) -> Result<cri::VersionResponse, String> {
    client(ctx)
        .version(cri::VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("Version failed: {}", status_text(&s)))
}

async fn status(ctx: &Ctx, verbose: bool) -> Result<cri::StatusResponse, String> {
    client(ctx)
        .status(cri::StatusRequest { verbose })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| format!("Status failed: {}", status_text(&s)))
}

async fn version_api_version(ctx: Ctx) -> CaseResult {
    let v = version(&ctx).await?;
    ensure(v.runtime_api_version == "v1", || {
        format!(
            "runtime_api_version is {:?}, expected \"v1\"",
            v.runtime_api_version
        )
    })?;
    Ok(String::new())
}

async fn version_identity(ctx: Ctx) -> CaseResult {
    let v = version(&ctx).await?;
    ensure(!v.runtime_name.is_empty(), || {
        "runtime_name is empty".into()
    })?;
    ensure(!v.runtime_version.is_empty(), || {
        "runtime_version is empty".into()
    })?;
    Ok(format!("{} {}", v.runtime_name, v.runtime_version))
}

async fn status_conditions(ctx: Ctx) -> CaseResult {
    let s = status(&ctx, false).await?;
    let conditions = s.status.map(|st| st.conditions).unwrap_or_default();
    let has = |kind: &str| conditions.iter().filter(|c| c.r#type == kind).count();
    for kind in ["RuntimeReady", "NetworkReady"] {
        ensure(has(kind) == 1, || {
            format!(
                "expected exactly one {kind} condition, got {} in {conditions:?}",
                has(kind)
            )
        })?;
    }
    // api.proto: RuntimeReady means the runtime "is up and ready to accept basic
    // containers", which the endpoint the suite runs its containers on is: a false one
    // makes the kubelet report the node NotReady and run nothing on it.
    ensure(
        conditions
            .iter()
            .any(|c| c.r#type == "RuntimeReady" && c.status),
        || format!("RuntimeReady is false on an endpoint that runs containers: {conditions:?}"),
    )?;
    let summary: Vec<_> = conditions
        .iter()
        .map(|c| format!("{}={}", c.r#type, c.status))
        .collect();
    Ok(summary.join(" "))
}

/// The clause needs a condition that is false, which a healthy endpoint never shows: the
/// run is given a second endpoint of the same runtime started with an empty CNI
/// configuration directory (`--not-ready-endpoint`), where NetworkReady must be false.
/// False conditions of the main endpoint, if any, are held to the same rule.
async fn status_not_ready_reason(ctx: Ctx) -> CaseResult {
    let Some(not_ready) = ctx.not_ready.clone() else {
        return Err("no endpoint without a network was given (--not-ready-endpoint)".into());
    };
    let unready = Ctx {
        channel: not_ready,
        ..ctx.clone()
    };
    let conditions = |s: cri::StatusResponse| s.status.map(|st| st.conditions).unwrap_or_default();
    let main = conditions(status(&ctx, false).await?);
    let other = conditions(status(&unready, false).await?);
    judge_not_ready(&main, &other)
}

/// The judgment of status-not-ready-reason: NetworkReady must be false on the endpoint
/// without a network (`other`), and every false condition of either endpoint carries a
/// reason and a message.
fn judge_not_ready(main: &[cri::RuntimeCondition], other: &[cri::RuntimeCondition]) -> CaseResult {
    let network = other
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .ok_or("the endpoint without a network reports no NetworkReady condition")?;
    ensure(!network.status, || {
        "NetworkReady is true on the endpoint without a network configuration".into()
    })?;
    for c in main.iter().chain(other).filter(|c| !c.status) {
        ensure(!c.reason.is_empty(), || {
            format!("{} is false without a reason", c.r#type)
        })?;
        ensure(!c.message.is_empty(), || {
            format!("{} is false without a message", c.r#type)
        })?;
    }
    Ok(format!(
        "NetworkReady=false: {}: {}",
        network.reason, network.message
    ))
}

async fn status_verbose_info(ctx: Ctx) -> CaseResult {
    let quiet = status(&ctx, false).await?;
    ensure(quiet.info.is_empty(), || {
        format!(
            "info returned without verbose: keys {:?}",
            quiet.info.keys().collect::<Vec<_>>()
        )
    })?;
    let loud = status(&ctx, true).await?;
    ensure(!loud.info.is_empty(), || {
        "verbose Status returned no info".into()
    })?;
    for (key, value) in &loud.info {
        serde_json::from_str::<serde_json::Value>(value)
            .map_err(|e| format!("info[{key:?}] is not JSON ({e}): {value:.80}"))?;
    }
    Ok(format!(
        "keys: {}",
        loud.info.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

async fn status_runtime_handlers(ctx: Ctx) -> CaseResult {
    let s = status(&ctx, false).await?;
    let mut seen = std::collections::HashSet::new();
    for h in &s.runtime_handlers {
        ensure(seen.insert(h.name.as_str()), || {
            format!("handler {:?} listed twice", h.name)
        })?;
        ensure(h.features.is_some(), || {
            format!("handler {:?} has no features", h.name)
        })?;
    }
    let names: Vec<_> = s
        .runtime_handlers
        .iter()
        .map(|h| {
            if h.name.is_empty() {
                "(default)"
            } else {
                h.name.as_str()
            }
        })
        .collect();
    Ok(names.join(", "))
}

async fn runtime_config_cgroup_driver(ctx: Ctx) -> CaseResult {
    match client(&ctx)
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
    {
        Ok(r) => {
            let linux = r
                .into_inner()
                .linux
                .ok_or("RuntimeConfig answered without linux")?;
            let driver = cri::CgroupDriver::try_from(linux.cgroup_driver).map_err(|_| {
                format!(
                    "cgroup_driver {} is not a CgroupDriver value",
                    linux.cgroup_driver
                )
            })?;
            Ok(driver.as_str_name().to_owned())
        }
        Err(s) if s.code() == Code::Unimplemented => Ok("Unimplemented (allowed)".into()),
        Err(s) => Err(format!("RuntimeConfig failed: {}", status_text(&s))),
    }
}

/// The kubelet builds every cgroup_parent in the driver RuntimeConfig reports, so a wrong
/// answer places pods where the kubelet does not look. What tells the drivers apart from the
/// inside: the systemd driver puts each container into a transient `.scope` unit (runc's
/// `<prefix>-<id>.scope`, containerd's `cri-containerd-<id>.scope`), cgroupfs into a plain
/// directory. With a cgroup namespace the container sees only `/`, and nothing is judged.
async fn cgroup_driver_matches_containers(s: std::sync::Arc<Scope>) -> CaseResult {
    let driver = match s.rs().runtime_config(cri::RuntimeConfigRequest {}).await {
        Ok(r) => r
            .into_inner()
            .linux
            .ok_or("RuntimeConfig answered without linux")?
            .cgroup_driver(),
        Err(st) if st.code() == Code::Unimplemented => {
            return Ok("RuntimeConfig is Unimplemented: no driver to compare".into());
        }
        Err(st) => return Err(format!("RuntimeConfig failed: {}", status_text(&st))),
    };
    let (_, id, _) = s.busybox(SLEEP_SCRIPT, |_| {}, |_| {}).await?;
    let cgroups = s.sh(&id, "cat /proc/self/cgroup").await?;
    judge_cgroup_driver(driver, &cgroups)
}

/// The judgment: the container's own cgroup (memory controller on v1, the unified entry
/// on v2) ends in `.scope` exactly when the driver is systemd.
fn judge_cgroup_driver(driver: cri::CgroupDriver, proc_cgroup: &str) -> CaseResult {
    let path = proc_cgroup
        .lines()
        .filter_map(|l| {
            // hierarchy-ID:controllers:path; the path may hold a colon of its own.
            let mut fields = l.splitn(3, ':').skip(1);
            Some((fields.next()?, fields.next()?))
        })
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .or_else(|| {
            proc_cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| ("", p)))
        })
        .map(|(_, p)| p.trim())
        .ok_or_else(|| {
            format!("no memory or unified cgroup in /proc/self/cgroup: {proc_cgroup:?}")
        })?;
    if path == "/" {
        return Ok(format!(
            "{}: the container is in a cgroup namespace",
            driver.as_str_name()
        ));
    }
    let scope = path
        .rsplit('/')
        .next()
        .is_some_and(|c| c.ends_with(".scope"));
    ensure(scope == (driver == cri::CgroupDriver::Systemd), || {
        format!(
            "RuntimeConfig reports {} but the container's cgroup is {path}",
            driver.as_str_name()
        )
    })?;
    Ok(format!("{}: {path}", driver.as_str_name()))
}

async fn update_runtime_config_pod_cidr(ctx: Ctx) -> CaseResult {
    // A documentation range: valid, and routes nowhere on a test host.
    let req = cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: "192.0.2.0/24".into(),
            }),
        }),
    };
    client(&ctx)
        .update_runtime_config(req)
        .await
        .map_err(|s| format!("UpdateRuntimeConfig failed: {}", status_text(&s)))?;
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup_driver_is_judged_by_the_containers_cgroup() {
        use crid_api::cri::CgroupDriver::{Cgroupfs, Systemd};
        let v1 = |p: &str| format!("12:pids:/x\n4:memory:{p}\n0::/\n");
        assert!(super::judge_cgroup_driver(Cgroupfs, &v1("/crid/crid-abc")).is_ok());
        assert!(super::judge_cgroup_driver(Systemd, &v1("/crid/crid-abc")).is_err());
        assert!(super::judge_cgroup_driver(Systemd, &v1("/k.slice/crid-abc.scope")).is_ok());
        assert!(super::judge_cgroup_driver(Cgroupfs, &v1("/k.slice/crid-abc.scope")).is_err());
        // v2 only, and a cgroup namespace: nothing to judge.
        assert!(super::judge_cgroup_driver(Systemd, "0::/a.slice/cri-x.scope\n").is_ok());
        assert!(super::judge_cgroup_driver(Cgroupfs, "0::/\n").is_ok());
    }

    use super::*;

    fn cond(t: &str, status: bool, reason: &str) -> cri::RuntimeCondition {
        cri::RuntimeCondition {
            r#type: t.into(),
            status,
            reason: reason.into(),
            message: if reason.is_empty() {
                String::new()
            } else {
                format!("{reason} because")
            },
        }
    }

    /// A healthy endpoint has no false condition: the case used to pass on it, checking
    /// nothing. It must see NetworkReady=false, with a reason and a message.
    #[test]
    fn the_not_ready_judgment_needs_a_false_condition_with_a_reason() {
        let healthy = [
            cond("RuntimeReady", true, ""),
            cond("NetworkReady", true, ""),
        ];
        assert!(judge_not_ready(&healthy, &healthy).is_err());
        let unready = [
            cond("RuntimeReady", true, ""),
            cond("NetworkReady", false, "NetworkPluginNotReady"),
        ];
        assert!(judge_not_ready(&healthy, &unready).is_ok());
        let bare = [cond("NetworkReady", false, "")];
        assert!(
            judge_not_ready(&healthy, &bare)
                .unwrap_err()
                .contains("without a reason")
        );
        assert!(judge_not_ready(&bare, &unready).is_err());
        assert!(judge_not_ready(&healthy, &[]).is_err());
    }
}

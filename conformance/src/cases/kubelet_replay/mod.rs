//! The kubelet's own requests, replayed: traces of a real kubelet v1.36.2 driving three
//! static pods (see `testdata/kubelet-1.36/README.md`), rewritten only where they are
//! specific to the capturing host, sent in the kubelet's order with its deadlines, and
//! judged by what the kubelet checks (codes, states, exit codes, ready IP, log files,
//! probe results). After each pod's removal nothing of it may be left: no sandbox or
//! container under its uid, no cgroup under its cgroup parent, no mount of its volumes.

mod engine;
pub(super) mod host;
mod judge;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crid_api::cri;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use self::engine::{LEFT_BEHIND, Replay};
use super::container::CONTAINER_NEEDS;
use super::logs::parse_line;
use super::support::{Scope, ok_or_not_found, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};
use crate::kubelet_corpus::{self as corpus, Call};

/// A replay stops containers with the kubelet's 5 s grace period; some pods take a few.
const CASE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a container's output may take to reach its log file.
const LOG_WAIT: Duration = Duration::from_secs(10);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::KubeletReplay
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "kubelet-replay/busybox-static",
            "cri:RuntimeService.RunPodSandbox#kubelet-sequence",
            "the kubelet's calls for a pod with exec probes, replayed in its order, get the answers the kubelet got (states, exit codes, IP, probes, lists, NotFound after removal); nothing is left",
            |ctx| {
                Box::pin(scoped(ctx, "kbb", |s| {
                    replay(s, "busybox-static", |r| Box::pin(busybox_static(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/shared-volume-static",
            "cri:RuntimeService.CreateContainer#config.mounts",
            "the kubelet's calls for a pod with an init container and two containers sharing an emptyDir: the init container runs to completion first and what it wrote is read by the next",
            |ctx| {
                Box::pin(scoped(ctx, "ksv", |s| {
                    replay(s, "shared-volume-static", |r| {
                        Box::pin(shared_volume_static(r))
                    })
                }))
            },
        ),
        cases.required(
            "kubelet-replay/rich-static",
            "cri:RuntimeService.CreateContainer#config.linux.security_context",
            "the kubelet's calls for a pod with limits, run-as user and groups, read-only rootfs, dropped capabilities, env, a host port, a Memory emptyDir, a hostPath and a shared PID namespace; its HTTP probe answers",
            |ctx| {
                Box::pin(scoped(ctx, "krs", |s| {
                    replay(s, "rich-static", |r| Box::pin(rich_static(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/hugepage-limits-zero",
            "cri:RuntimeService.CreateContainer#config.linux.resources.hugepage_limits",
            "CreateContainer with the kubelet's hugepage entries (2MB and 1GB, limit 0) succeeds and the container runs, on a host with or without a hugetlb controller",
            |ctx| {
                Box::pin(scoped(ctx, "khp", |s| {
                    replay(s, "busybox-static", |r| Box::pin(hugepage_limits_zero(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/teardown-order",
            "cri:RuntimeService.ContainerStatus#not-found-after-remove",
            "the kubelet's teardown (StopContainer, StopPodSandbox twice, RemoveContainer, RemovePodSandbox) succeeds in its order; statuses of what was removed answer NotFound; repeats of stop and remove are accepted",
            |ctx| {
                Box::pin(scoped(ctx, "ktd", |s| {
                    replay(s, "busybox-static", |r| Box::pin(teardown_order(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/probes",
            "cri:RuntimeService.ExecSync#timeout",
            "the kubelet's exec probes (ExecSync, timeout 1) answer exit 0 with the expected output every time; a probe outliving its timeout ends by the timeout and does not report success",
            |ctx| {
                Box::pin(scoped(ctx, "kpr", |s| {
                    replay(s, "busybox-static", |r| Box::pin(probes(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/status-polls",
            "cri:RuntimeService.PodSandboxStatus#status.network.ip",
            "the kubelet's polls see a ready pod with an IP, a running container under the pod's cgroup parent, and the container's output in CRI format at log_directory/log_path",
            |ctx| {
                Box::pin(scoped(ctx, "ksp", |s| {
                    replay(s, "busybox-static", |r| Box::pin(status_polls(r)))
                }))
            },
        ),
        cases.required(
            "kubelet-replay/refused-create-leaves-nothing",
            "cri:RuntimeService.CreateContainer#atomic",
            "the kubelet's CreateContainer with a seccomp profile that does not exist is refused, and with a CDI device, a recursive read-only or an ID-mapped mount it is accepted and runs or is refused; a refusal leaves no container, mount or monitor behind, and the kubelet's own request with the same name succeeds after",
            |ctx| {
                Box::pin(scoped(ctx, "krf", |s| {
                    replay(s, "busybox-static", |r| Box::pin(refused_create(r)))
                }))
            },
        ),
        cases.optional(
            "kubelet-replay/refusal-names-field",
            "cri:RuntimeService.CreateContainer#invalid-argument",
            "every refusal of those CreateContainer variants names the field it could not honour and is InvalidArgument, or FailedPrecondition naming the runtime handler that lacks it",
            |ctx| {
                Box::pin(scoped(ctx, "krn", |s| {
                    replay(s, "busybox-static", |r| Box::pin(refusal_names_field(r)))
                }))
            },
        ),
    ]
}

/// A case body: runs on a prepared replay of one pod.
type Body = for<'a> fn(&'a mut Replay) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// Prepares the replay of `pod` and runs `body` on it; when the body fails, removes the
/// pod and its cgroup at once (the scope alone would leave the kubelet's pod cgroup).
async fn replay(s: Arc<Scope>, pod: &str, body: Body) -> CaseResult {
    let mut r = Replay::prepare(s, pod).await?;
    let result = body(&mut r).await;
    if result.is_err() {
        r.abort().await;
    }
    result
}

fn is_stop(c: &Call) -> bool {
    c.rpc == "StopContainer" || c.rpc == "StopPodSandbox"
}

/// Waits until the log file of `container` has a line whose content is `want` (recorded
/// world: rewritten first); checks every line is in the CRI format.
async fn expect_log(r: &Replay, container: &str, want: &str) -> Result<(), String> {
    let want = r.rewrite().text(want);
    let path = r.log_file(&r.container(container)?.config);
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        let lines = text
            .lines()
            .map(parse_line)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if lines
            .iter()
            .any(|l| l.content == want && l.stream == "stdout")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} has no stdout line {want:?}: {text:?}",
                path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Replays the whole trace, checking the logs in `logs` before the teardown.
async fn whole_pod(r: &mut Replay, logs: &[(&str, &str)]) -> CaseResult {
    r.run_until(is_stop).await?;
    for (container, want) in logs {
        expect_log(r, container, want).await?;
    }
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    Ok(replayed(r))
}

fn replayed(r: &Replay) -> String {
    format!("{} calls replayed", r.calls().len())
}

async fn busybox_static(r: &mut Replay) -> CaseResult {
    whole_pod(r, &[("busybox", "hello-from-static-pod")]).await
}

async fn shared_volume_static(r: &mut Replay) -> CaseResult {
    whole_pod(r, &[("reader", "init-ran")]).await
}

async fn rich_static(r: &mut Replay) -> CaseResult {
    r.run_until(is_stop).await?;
    expect_log(
        r,
        "web",
        "GREETING=hello-cri POD=rich-static-kcheck IP=10.99.0.12 MEM=67108864",
    )
    .await?;
    let ip = r.pod_ip.clone().ok_or("the pod reported no IP")?;
    http_probe(&ip, 8080, "/healthz").await?;
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    Ok(replayed(r))
}

/// The kubelet's HTTP probe: GET from the node to the pod IP answers 200.
async fn http_probe(ip: &str, port: u16, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let attempt = async {
            let mut conn = tokio::net::TcpStream::connect((ip, port))
                .await
                .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
            conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut answer = String::new();
            conn.read_to_string(&mut answer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let status = answer.lines().next().unwrap_or_default().to_owned();
            if status.split(' ').nth(1) == Some("200") {
                Ok(())
            } else {
                Err(format!("GET {path} answered {status:?}"))
            }
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if Instant::now() > deadline => {
                return Err(format!("the kubelet's HTTP probe: {e}"));
            }
            Err(_) if Instant::now() > deadline => {
                return Err("the kubelet's HTTP probe timed out".to_owned());
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn hugepage_limits_zero(r: &mut Replay) -> CaseResult {
    let create = r
        .calls()
        .iter()
        .find(|c| c.rpc == "CreateContainer")
        .cloned()
        .ok_or("the trace has no CreateContainer")?;
    let sizes = create
        .request
        .pointer("/config/linux/resources/hugepage_limits")
        .and_then(Value::as_array)
        .map(|a| a.len())
        .unwrap_or_default();
    ensure(sizes > 0, || {
        "the trace's CreateContainer has no hugepage_limits".to_owned()
    })?;
    let start = r
        .calls()
        .iter()
        .find(|c| c.rpc == "StartContainer")
        .map(|c| c.seq)
        .ok_or("the trace has no StartContainer")?;
    r.run_until(|c| c.seq > start).await?;
    let id = r.container("busybox")?.id.clone();
    let s = r.scope();
    s.wait_state(
        &id,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await?;
    let out = s.sh(&id, "echo alive").await?;
    ensure(out == "alive", || {
        format!("exec in the container printed {out:?}")
    })?;
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    Ok(format!("{sizes} hugepage entries with limit 0 accepted"))
}

async fn teardown_order(r: &mut Replay) -> CaseResult {
    let stops = r
        .calls()
        .iter()
        .filter(|c| c.rpc == "StopPodSandbox")
        .count();
    ensure(stops >= 2, || {
        format!("the trace stops the pod {stops} times, the kubelet did twice")
    })?;
    r.run_to_end().await?;
    let sandbox = r.sandbox_id()?.to_owned();
    let container = r.container("busybox")?.id.clone();
    let mut rs = r.scope().rs();
    let st = rs
        .container_status(cri::ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await;
    ensure(matches!(&st, Err(e) if e.code() == Code::NotFound), || {
        format!("ContainerStatus of a removed container: {st:?}, the kubelet expects NotFound")
    })?;
    let st = rs
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await;
    ensure(matches!(&st, Err(e) if e.code() == Code::NotFound), || {
        format!("PodSandboxStatus of a removed pod: {st:?}, the kubelet expects NotFound")
    })?;
    ok_or_not_found(
        "StopPodSandbox of a removed pod",
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await,
    )?;
    ok_or_not_found(
        "RemoveContainer of a removed container",
        rs.remove_container(cri::RemoveContainerRequest {
            container_id: container,
        })
        .await,
    )?;
    ok_or_not_found(
        "RemovePodSandbox of a removed pod",
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox,
        })
        .await,
    )?;
    r.check_nothing_left().await?;
    Ok(replayed(r))
}

async fn probes(r: &mut Replay) -> CaseResult {
    r.run_until(is_stop).await?;
    let probes: Vec<Call> = r
        .calls()
        .iter()
        .filter(|c| c.rpc == "ExecSync" && c.code == "OK")
        .cloned()
        .collect();
    ensure(!probes.is_empty(), || {
        "the trace has no exec probe".to_owned()
    })?;
    for _ in 0..3 {
        for p in &probes {
            r.replay(p).await?;
        }
    }
    // The kubelet's probe with a command that outlives its 1 s timeout.
    let mut slow = probes[0].clone();
    slow.request["cmd"] = json!(["sleep", "10"]);
    let m: cri::ExecSyncRequest = corpus::decode(
        &corpus::request_type("ExecSync"),
        &r.rewrite().applied(&slow.request),
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let answer = r.scope().rs().exec_sync(m).await;
    let took = started.elapsed();
    ensure(took < Duration::from_secs(5), || {
        format!("ExecSync with timeout 1 of `sleep 10` took {took:?}")
    })?;
    if let Ok(a) = &answer {
        ensure(a.get_ref().exit_code != 0, || {
            "ExecSync past its timeout reported exit 0: the kubelet would count the probe as passed"
                .to_owned()
        })?;
    }
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    let how = match answer {
        Ok(a) => format!("exit {}", a.into_inner().exit_code),
        Err(e) => status_text(&e),
    };
    Ok(format!(
        "{} probes x3 passed; the slow probe ended after {took:?} with {how}",
        probes.len()
    ))
}

async fn status_polls(r: &mut Replay) -> CaseResult {
    r.run_until(is_stop).await?;
    let pod = r.scope().pod_status(r.sandbox_id()?).await?;
    ensure(
        pod.state == cri::PodSandboxState::SandboxReady as i32,
        || format!("pod state {}", pod.state),
    )?;
    let ip = pod.network.map(|n| n.ip).unwrap_or_default();
    ensure(Some(&ip) == r.pod_ip.as_ref() && !ip.is_empty(), || {
        format!("PodSandboxStatus IP {ip:?}, earlier {:?}", r.pod_ip)
    })?;
    let busybox = r.container("busybox")?.clone();
    let st = r.scope().container_status(&busybox.id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerRunning as i32,
        || format!("container state {}", st.state),
    )?;
    let log = r.log_file(&busybox.config);
    ensure(st.log_path == log.display().to_string(), || {
        format!(
            "ContainerStatus log_path {:?}, the kubelet reads {}",
            st.log_path,
            log.display()
        )
    })?;
    expect_log(r, "busybox", "hello-from-static-pod").await?;
    // The kubelet accounts the pod in the cgroup parent it named (cgroupfs form).
    let parent = r.cgroup_parent();
    let children = host::cgroup_children(&parent);
    ensure(!children.is_empty(), || {
        format!("nothing runs under the pod's cgroup parent {parent} in any hierarchy")
    })?;
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    Ok(format!(
        "pod IP {ip}, log at {}, {} cgroups under {parent}",
        log.display(),
        children.len()
    ))
}

/// One edit of the kubelet's CreateContainer: a field some runtimes do not support.
struct Variant {
    /// The field, as a refusal should name it (any of these spellings).
    field: &'static [&'static str],
    /// Whether every runtime must refuse it (it cannot be honoured anywhere).
    must_refuse: bool,
    /// Applies the edit to the recorded request (before rewriting).
    edit: fn(&mut Value, &Replay),
}

/// The variants: a seccomp profile that does not exist (refused everywhere), then fields
/// newer than some runtimes or beyond what they can do on this host.
const VARIANTS: &[Variant] = &[
    Variant {
        field: &["seccomp"],
        must_refuse: true,
        edit: |v, r| {
            let profile = r.root.join("no-such-seccomp-profile.json");
            v["config"]["linux"]["security_context"]["seccomp"] = json!({
                "profile_type": "Localhost",
                "localhost_ref": profile.display().to_string(),
            });
        },
    },
    Variant {
        field: &["CDI_devices", "cdi_devices", "CDIDevices"],
        must_refuse: false,
        edit: |v, _| {
            v["config"]["CDI_devices"] = json!([{ "name": "vendor.example/replay=none" }]);
        },
    },
    Variant {
        field: &["recursive_read_only", "recursiveReadOnly"],
        must_refuse: false,
        edit: |v, _| {
            v["config"]["mounts"][0]["readonly"] = json!(true);
            v["config"]["mounts"][0]["recursive_read_only"] = json!(true);
        },
    },
    Variant {
        field: &["uidMappings", "uid_mappings"],
        must_refuse: false,
        edit: |v, _| {
            let map = json!([{ "host_id": 100000, "container_id": 0, "length": 65536 }]);
            v["config"]["mounts"][0]["uidMappings"] = map.clone();
            v["config"]["mounts"][0]["gidMappings"] = map;
        },
    },
];

/// What one variant came to.
enum Outcome {
    /// Created, started and removed again.
    Accepted,
    /// Refused; the report says how and whether anything was left.
    Refused(tonic::Status, String),
}

/// Replays the busybox pod up to its CreateContainer, then sends that request once per
/// variant; an accepted variant is started and removed again (the kubelet's own request
/// must find its name free). Returns what each came to.
async fn try_variants(r: &mut Replay) -> Result<Vec<(&'static Variant, Outcome)>, String> {
    r.run_until(|c| c.rpc == "CreateContainer").await?;
    let create = r
        .remaining()
        .first()
        .cloned()
        .ok_or("the trace has no CreateContainer")?;
    let mut out = Vec::new();
    for v in VARIANTS {
        let mut bad = create.clone();
        (v.edit)(&mut bad.request, r);
        let outcome = match r.send_create(&bad).await? {
            Ok(id) => {
                let s = r.scope();
                s.start(&id)
                    .await
                    .map_err(|e| format!("{} accepted by CreateContainer, then {e}", v.field[0]))?;
                s.stop(&id, 0).await?;
                s.rs()
                    .remove_container(cri::RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await
                    .map_err(|e| format!("RemoveContainer: {}", status_text(&e)))?;
                Outcome::Accepted
            }
            Err(status) => {
                let log = r.log_file(&cri::ContainerConfig {
                    log_path: bad.request["config"]["log_path"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    ..Default::default()
                });
                let report = r.refusal("CreateContainer", &status, Some(&log)).await;
                Outcome::Refused(status, report)
            }
        };
        out.push((v, outcome));
    }
    Ok(out)
}

fn summary(outcomes: &[(&Variant, Outcome)]) -> String {
    outcomes
        .iter()
        .map(|(v, o)| match o {
            Outcome::Accepted => format!("{}: accepted", v.field[0]),
            Outcome::Refused(s, _) => format!("{}: refused ({:?})", v.field[0], s.code()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn refused_create(r: &mut Replay) -> CaseResult {
    let outcomes = try_variants(r).await?;
    for (v, o) in &outcomes {
        match o {
            Outcome::Accepted if v.must_refuse => {
                return Err(format!(
                    "CreateContainer with {} that cannot be honoured succeeded",
                    v.field[0]
                ));
            }
            Outcome::Refused(_, report) if report.contains(LEFT_BEHIND) => {
                return Err(report.clone());
            }
            _ => {}
        }
    }
    // The kubelet retries its own request (same name, attempt 0).
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    Ok(summary(&outcomes))
}

async fn refusal_names_field(r: &mut Replay) -> CaseResult {
    let outcomes = try_variants(r).await?;
    r.run_to_end().await?;
    r.check_nothing_left().await?;
    let unnamed: Vec<&String> = outcomes
        .iter()
        .filter_map(|(v, o)| match o {
            // InvalidArgument for a request crid cannot honour at all; FailedPrecondition
            // for one the pod's runtime handler lacks (recursive read-only mounts on a
            // handler whose runtime has no `rro`), whose message names the handler too.
            Outcome::Refused(s, report)
                if !(s.code() == Code::InvalidArgument
                    || (s.code() == Code::FailedPrecondition
                        && s.message().contains("runtime handler")))
                    || !v.field.iter().any(|f| s.message().contains(f)) =>
            {
                Some(report)
            }
            _ => None,
        })
        .collect();
    ensure(unnamed.is_empty(), || {
        format!(
            "refusals that are not InvalidArgument (or FailedPrecondition naming the runtime handler) naming the field: {}",
            unnamed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        )
    })?;
    Ok(summary(&outcomes))
}

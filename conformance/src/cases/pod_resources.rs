//! Pod-level resources: `config.linux.overhead` and `config.linux.resources` of
//! RunPodSandbox, and UpdatePodSandboxResources, which (api.proto) "synchronously updates
//! the PodSandboxConfig with the pod-level resource values" after the kubelet resized the
//! pod cgroup. The kubelet owns that cgroup, so the runtime's effect is the recorded config:
//! what NRI plugins and VM runtimes read. The cases read it where containerd reports it,
//! the `config` key of the verbose PodSandboxStatus info (the whole PodSandboxConfig as
//! JSON, proto field names); lowerCamelCase names and quoted 64-bit integers (the
//! canonical proto3 JSON) are accepted too.

use std::sync::Arc;

use crid_api::cri;
use serde_json::{Value, json};
use tonic::Code;

use super::pod_sandbox::POD_NEEDS;
use super::support::{Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::PodSandbox.cases().needs(POD_NEEDS);
    vec![
        cases.optional(
            "pod-sandbox/resources-reported",
            "cri:RuntimeService.RunPodSandbox#config.linux.resources",
            "a pod run with a distinct value in every field of linux.overhead and linux.resources reports each of them back in its verbose status (info `config`, as containerd)",
            |ctx| Box::pin(scoped(ctx, "prr", resources_reported)),
        ),
        cases.optional(
            "pod-sandbox/update-resources-recorded",
            "cri:RuntimeService.UpdatePodSandboxResources#resources",
            "UpdatePodSandboxResources with new overhead and resources makes the verbose status report the new values, and a second update the second ones",
            |ctx| Box::pin(scoped(ctx, "pur", update_recorded)),
        ),
        cases.optional(
            "pod-sandbox/update-resources-unknown-not-found",
            "cri:RuntimeService.UpdatePodSandboxResources#pod_sandbox_id",
            "UpdatePodSandboxResources of an id never seen is NotFound",
            |ctx| Box::pin(scoped(ctx, "pun", update_unknown)),
        ),
        cases.optional(
            "pod-sandbox/update-resources-empty-id-refused",
            "cri:RuntimeService.UpdatePodSandboxResources#pod_sandbox_id",
            "UpdatePodSandboxResources without a pod_sandbox_id is refused (InvalidArgument, or NotFound as no pod has that id)",
            |ctx| Box::pin(scoped(ctx, "pue", update_empty_id)),
        ),
        cases.optional(
            "pod-sandbox/update-resources-invalid-refused",
            "cri:RuntimeService.UpdatePodSandboxResources#resources",
            "UpdatePodSandboxResources with values no kernel accepts (a negative memory limit, a malformed cpuset, a hugepage size that is no size) is refused with InvalidArgument naming the field, and the recorded resources stay as they were",
            |ctx| Box::pin(scoped(ctx, "pui", update_invalid)),
        ),
    ]
}

/// A resources message with a distinct value in every field, offset by `n` (so that two
/// sets differ in each field); the values are ones a kubelet could send.
fn distinct(n: i64) -> cri::LinuxContainerResources {
    let mib = 1 << 20;
    cri::LinuxContainerResources {
        cpu_period: 100_000 + 1_000 * n,
        cpu_quota: 50_000 + 1_000 * n,
        cpu_shares: 512 + n,
        memory_limit_in_bytes: (256 + n) * mib,
        oom_score_adj: 100 + n,
        cpuset_cpus: if n % 2 == 0 { "0" } else { "0-1" }.into(),
        cpuset_mems: if n % 2 == 0 { "0" } else { "0-0" }.into(),
        hugepage_limits: vec![if n % 2 == 0 {
            cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: (1 + n as u64) * (2 << 20),
            }
        } else {
            cri::HugepageLimit {
                page_size: "1GB".into(),
                limit: (1 + n as u64) << 30,
            }
        }],
        unified: [("memory.high".to_owned(), ((200 + n) * mib).to_string())].into(),
        memory_swap_limit_in_bytes: (512 + n) * mib,
    }
}

/// The JSON of `r` as containerd writes it: proto field names, every field set.
fn expected(r: &cri::LinuxContainerResources) -> Value {
    json!({
        "cpu_period": r.cpu_period,
        "cpu_quota": r.cpu_quota,
        "cpu_shares": r.cpu_shares,
        "memory_limit_in_bytes": r.memory_limit_in_bytes,
        "oom_score_adj": r.oom_score_adj,
        "cpuset_cpus": r.cpuset_cpus,
        "cpuset_mems": r.cpuset_mems,
        "hugepage_limits": r.hugepage_limits.iter()
            .map(|h| json!({"page_size": h.page_size, "limit": h.limit}))
            .collect::<Vec<_>>(),
        "unified": r.unified,
        "memory_swap_limit_in_bytes": r.memory_swap_limit_in_bytes,
    })
}

/// `snake_case` → `lowerCamelCase`, the canonical proto3 JSON name.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A key of a JSON object by its proto name or its lowerCamelCase JSON name.
fn key<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).or_else(|| v.get(camel(name)))
}

/// Collects where `got` differs from `want` (field by field, below `path`). Map keys (the
/// `unified` map) are matched exactly; numbers may come quoted.
fn differences(path: &str, want: &Value, got: Option<&Value>, map: bool, out: &mut Vec<String>) {
    let Some(got) = got else {
        out.push(format!("{path} is missing (sent {want})"));
        return;
    };
    match want {
        Value::Object(fields) => {
            for (k, w) in fields {
                let g = if map { got.get(k) } else { key(got, k) };
                differences(&format!("{path}.{k}"), w, g, k == "unified", out);
            }
        }
        Value::Array(items) => match got.as_array() {
            Some(g) if g.len() == items.len() => {
                for (i, (w, g)) in items.iter().zip(g).enumerate() {
                    differences(&format!("{path}[{i}]"), w, Some(g), false, out);
                }
            }
            _ => out.push(format!("{path} is {got}, sent {want}")),
        },
        Value::Number(n) => {
            let same = got == want || got.as_str().is_some_and(|s| s == n.to_string());
            if !same {
                out.push(format!("{path} is {got}, sent {want}"));
            }
        }
        _ => {
            if got != want {
                out.push(format!("{path} is {got}, sent {want}"));
            }
        }
    }
}

/// The recorded `linux` of the pod's config, from its verbose status: `info["info"]`
/// (or a key of its own) holding `config`, the PodSandboxConfig as JSON.
async fn recorded_linux(s: &Scope, id: &str) -> Result<Value, String> {
    let info = s
        .rs()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        })
        .await
        .map_err(|e| format!("PodSandboxStatus verbose: {}", status_text(&e)))?
        .into_inner()
        .info;
    let mut keys: Vec<&String> = info.keys().collect();
    keys.sort();
    let config = info
        .get("info")
        .and_then(|v| serde_json::from_str::<Value>(v).ok())
        .and_then(|v| v.get("config").cloned())
        .or_else(|| {
            info.get("config")
                .and_then(|v| serde_json::from_str::<Value>(v).ok())
        })
        .filter(Value::is_object)
        .ok_or_else(|| {
            format!(
                "the verbose status has no `config` (the PodSandboxConfig as JSON, which \
                 containerd reports in info[\"info\"]); info keys {keys:?}"
            )
        })?;
    config
        .get("linux")
        .cloned()
        .ok_or_else(|| format!("the reported config has no `linux`: {config:.600}"))
}

/// Checks that the recorded overhead and resources are `overhead` and `resources`.
async fn check_recorded(
    s: &Scope,
    id: &str,
    overhead: &cri::LinuxContainerResources,
    resources: &cri::LinuxContainerResources,
    when: &str,
) -> Result<(), String> {
    let linux = recorded_linux(s, id).await?;
    let mut out = Vec::new();
    differences(
        "linux.overhead",
        &expected(overhead),
        key(&linux, "overhead"),
        false,
        &mut out,
    );
    differences(
        "linux.resources",
        &expected(resources),
        key(&linux, "resources"),
        false,
        &mut out,
    );
    ensure(out.is_empty(), || format!("{when}: {}", out.join("; ")))
}

fn with_resources(
    s: &Scope,
    overhead: cri::LinuxContainerResources,
    resources: cri::LinuxContainerResources,
) -> cri::PodSandboxConfig {
    let mut config = s.pod_config();
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.overhead = Some(overhead);
    linux.resources = Some(resources);
    config
}

async fn update(
    s: &Scope,
    id: &str,
    overhead: Option<cri::LinuxContainerResources>,
    resources: Option<cri::LinuxContainerResources>,
) -> Result<tonic::Response<cri::UpdatePodSandboxResourcesResponse>, tonic::Status> {
    s.rs()
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.to_owned(),
            overhead,
            resources,
        })
        .await
}

async fn resources_reported(s: Arc<Scope>) -> CaseResult {
    let (overhead, resources) = (distinct(1), distinct(2));
    let id = s
        .run_pod(&with_resources(&s, overhead.clone(), resources.clone()))
        .await?;
    check_recorded(&s, &id, &overhead, &resources, "after RunPodSandbox").await?;
    Ok(String::new())
}

async fn update_recorded(s: Arc<Scope>) -> CaseResult {
    let id = s
        .run_pod(&with_resources(&s, distinct(1), distinct(2)))
        .await?;
    for (round, (overhead, resources)) in [(distinct(3), distinct(4)), (distinct(5), distinct(6))]
        .into_iter()
        .enumerate()
    {
        let when = format!("after update {}", round + 1);
        update(&s, &id, Some(overhead.clone()), Some(resources.clone()))
            .await
            .map_err(|e| format!("UpdatePodSandboxResources ({when}): {}", status_text(&e)))?;
        check_recorded(&s, &id, &overhead, &resources, &when).await?;
    }
    Ok(String::new())
}

async fn update_unknown(s: Arc<Scope>) -> CaseResult {
    let r = update(&s, &s.name("never-created"), None, Some(distinct(1))).await;
    match r {
        Err(e) if e.code() == Code::NotFound => Ok(String::new()),
        Err(e) => Err(format!("expected NotFound, got {}", status_text(&e))),
        Ok(_) => Err("UpdatePodSandboxResources of an unknown id succeeded".into()),
    }
}

async fn update_empty_id(s: Arc<Scope>) -> CaseResult {
    let r = update(&s, "", None, Some(distinct(1))).await;
    match r {
        Err(e) if matches!(e.code(), Code::InvalidArgument | Code::NotFound) => {
            Ok(format!("{:?}", e.code()))
        }
        Err(e) => Err(format!(
            "expected InvalidArgument (or NotFound), got {}",
            status_text(&e)
        )),
        Ok(_) => Err("UpdatePodSandboxResources without a pod_sandbox_id succeeded".into()),
    }
}

/// Makes one field of a resources message impossible.
type Spoil = fn(&mut cri::LinuxContainerResources);

async fn update_invalid(s: Arc<Scope>) -> CaseResult {
    let (overhead, resources) = (distinct(1), distinct(2));
    let id = s
        .run_pod(&with_resources(&s, overhead.clone(), resources.clone()))
        .await?;
    let bad: [(&str, Spoil); 4] = [
        ("memory_limit_in_bytes", |r| r.memory_limit_in_bytes = -5),
        ("cpu_shares", |r| r.cpu_shares = -2),
        ("cpuset_cpus", |r| r.cpuset_cpus = "3-1,x".into()),
        ("page_size", |r| {
            r.hugepage_limits[0].page_size = "huge".into()
        }),
    ];
    let mut notes = Vec::new();
    for (field, spoil) in bad {
        for in_overhead in [false, true] {
            let (mut o, mut r) = (distinct(7), distinct(8));
            spoil(if in_overhead { &mut o } else { &mut r });
            let part = if in_overhead { "overhead" } else { "resources" };
            let what = format!("{part} with a bad {field}");
            match update(&s, &id, Some(o), Some(r)).await {
                Ok(_) => return Err(format!("UpdatePodSandboxResources accepted {what}")),
                Err(e) if e.code() == Code::InvalidArgument => {
                    ensure(e.message().contains(field), || {
                        format!(
                            "the refusal of {what} does not name it: {}",
                            status_text(&e)
                        )
                    })?;
                    notes.push(e.message().to_owned());
                }
                Err(e) => {
                    return Err(format!(
                        "{what}: expected InvalidArgument, got {}",
                        status_text(&e)
                    ));
                }
            }
            check_recorded(
                &s,
                &id,
                &overhead,
                &resources,
                &format!("after the refused {what}"),
            )
            .await?;
        }
    }
    Ok(notes.first().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_fields_are_matched_by_either_json_name() {
        let want = expected(&distinct(1));
        let mut out = Vec::new();
        differences("r", &want, Some(&want), false, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Canonical proto3 JSON: lowerCamelCase and quoted 64-bit integers.
        let canonical = json!({
            "cpuPeriod": "101000", "cpuQuota": "51000", "cpuShares": "513",
            "memoryLimitInBytes": (257i64 << 20).to_string(), "oomScoreAdj": "101",
            "cpusetCpus": "0-1", "cpusetMems": "0-0",
            "hugepageLimits": [{"pageSize": "1GB", "limit": (2u64 << 30).to_string()}],
            "unified": {"memory.high": (201i64 << 20).to_string()},
            "memorySwapLimitInBytes": (513i64 << 20).to_string(),
        });
        differences("r", &want, Some(&canonical), false, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let mut wrong = want.clone();
        wrong["cpu_shares"] = json!(2);
        wrong.as_object_mut().map(|o| o.remove("cpuset_mems"));
        differences("r", &want, Some(&wrong), false, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("cpu_shares") && out[1].contains("cpuset_mems is missing"));
    }

    #[test]
    fn every_field_differs_between_sets() {
        let (a, b) = (expected(&distinct(1)), expected(&distinct(2)));
        for (k, v) in a.as_object().expect("object") {
            assert_ne!(Some(v), b.get(k), "{k}");
        }
    }
}

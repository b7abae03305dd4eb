//! Cuts the capture into one ordered trace per pod.
//!
//! A pod's trace holds, in the kubelet's order: every call that names the pod (its uid,
//! sandbox id or a container id: RunPodSandbox, ImageStatus/PullImage for it,
//! CreateContainer/StartContainer per container including init containers, status
//! polls, ExecSync probes, filtered lists, StopContainer, StopPodSandbox, RemoveContainer,
//! RemovePodSandbox, ContainerStatus answering NotFound after removal), and the node-wide
//! calls made meanwhile (Version, Status, ImageFsInfo, ListImages, ListContainerStats,
//! unfiltered lists), from the kubelet's start to a little after the pod is gone.
//!
//! Three cuts keep it small and sequentially replayable:
//! - repeats are dropped: of calls alike in phase (before, running, stopping, removed),
//!   RPC, request, code and answer, the first [`KEEP_ALIKE`] stay ([`KEEP_ALIKE_NODE`] of
//!   the node-wide ones);
//! - ExecSync probes of a container after its StopContainer was sent are dropped: the
//!   kubelet's probe raced the stop, which a sequential replay cannot do;
//! - responses keep only what a replay compares (ids, states, exit codes, log paths, the
//!   pod IP, probe output), and list answers only the pod's own objects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use super::{Call, CorpusError, NODE, parse_capture};

/// How many calls alike a trace keeps of those naming the pod.
pub const KEEP_ALIKE: usize = 2;
/// How many calls alike a trace keeps of the node-wide ones.
pub const KEEP_ALIKE_NODE: usize = 1;

/// A pod found in the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The manifest name, e.g. `busybox-static` (the pod name without `-<node>`).
    pub name: String,
    /// The pod UID (for static pods, the config hash).
    pub uid: String,
    /// The sandbox id containerd returned.
    pub sandbox_id: String,
    /// Container ids containerd returned, with their names, in creation order.
    pub containers: Vec<(String, String)>,
}

impl Pod {
    fn ids(&self) -> impl Iterator<Item = &str> {
        [self.uid.as_str(), self.sandbox_id.as_str()]
            .into_iter()
            .chain(self.containers.iter().map(|(id, _)| id.as_str()))
    }

    fn names_pod(&self, call: &Call) -> bool {
        let text = call.request.to_string();
        self.ids().any(|id| text.contains(id))
    }

    fn owns(&self, id: &str) -> bool {
        id == self.sandbox_id || self.containers.iter().any(|(c, _)| c == id)
    }
}

/// The pods of a capture: one per successful RunPodSandbox, with its containers.
pub fn pods(calls: &[Call]) -> Vec<Pod> {
    let mut pods: Vec<Pod> = calls
        .iter()
        .filter(|c| c.rpc == "RunPodSandbox" && c.code == "OK")
        .filter_map(|c| {
            let meta = c.request.pointer("/config/metadata")?;
            let full = meta.get("name")?.as_str()?;
            Some(Pod {
                name: full
                    .strip_suffix(&format!("-{NODE}"))
                    .unwrap_or(full)
                    .to_owned(),
                uid: meta.get("uid")?.as_str()?.to_owned(),
                sandbox_id: c
                    .response
                    .as_ref()?
                    .get("pod_sandbox_id")?
                    .as_str()?
                    .to_owned(),
                containers: Vec::new(),
            })
        })
        .collect();
    for c in calls
        .iter()
        .filter(|c| c.rpc == "CreateContainer" && c.code == "OK")
    {
        let sandbox = c.request.get("pod_sandbox_id").and_then(Value::as_str);
        let name = c
            .request
            .pointer("/config/metadata/name")
            .and_then(Value::as_str);
        let id = c
            .response
            .as_ref()
            .and_then(|r| r.get("container_id"))
            .and_then(Value::as_str);
        if let (Some(sandbox), Some(name), Some(id)) = (sandbox, name, id)
            && let Some(p) = pods.iter_mut().find(|p| p.sandbox_id == sandbox)
        {
            p.containers.push((id.to_owned(), name.to_owned()));
        }
    }
    pods
}

/// Where a call falls in a pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    Running,
    Stopping,
    Removed,
}

/// The trace of `pod` out of the whole capture.
pub fn trace(calls: &[Call], all: &[Pod], pod: &Pod) -> Vec<Call> {
    let mut phase = Phase::Before;
    let mut stopped: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for c in calls {
        let mine = pod.names_pod(c);
        let others = all.iter().any(|p| p.uid != pod.uid && p.names_pod(c));
        if others && !mine {
            continue;
        }
        let container = c.request.get("container_id").and_then(Value::as_str);
        if c.rpc == "ExecSync" && container.is_some_and(|id| stopped.contains(id)) {
            continue;
        }
        if mine {
            match c.rpc.as_str() {
                "RunPodSandbox" => phase = Phase::Running,
                "StopContainer" | "StopPodSandbox" if phase == Phase::Running => {
                    phase = Phase::Stopping;
                }
                _ => {}
            }
        }
        if c.rpc == "StopContainer"
            && let Some(id) = container
        {
            stopped.insert(id.to_owned());
        }
        if c.rpc == "StopPodSandbox" && mine {
            stopped.extend(pod.containers.iter().map(|(id, _)| id.clone()));
        }
        let mut kept = c.clone();
        kept.response = c.response.as_ref().map(|r| slim(&c.rpc, r, pod));
        let key = format!(
            "{phase:?} {} {} {} {}",
            c.rpc,
            kept.request,
            c.code,
            kept.response.clone().unwrap_or_default()
        );
        let n = seen.entry(key).or_default();
        *n += 1;
        let lifecycle = mine
            && matches!(
                c.rpc.as_str(),
                "RunPodSandbox"
                    | "CreateContainer"
                    | "StartContainer"
                    | "StopContainer"
                    | "StopPodSandbox"
                    | "RemoveContainer"
                    | "RemovePodSandbox"
            );
        let keep = if mine { KEEP_ALIKE } else { KEEP_ALIKE_NODE };
        if lifecycle || *n <= keep {
            out.push(kept);
        }
        if mine && c.rpc == "RemovePodSandbox" {
            phase = Phase::Removed;
        }
    }
    out
}

/// The parts of a response a replay compares; lists keep only `pod`'s objects.
fn slim(rpc: &str, r: &Value, pod: &Pod) -> Value {
    let pick = |v: &Value, keys: &[&str]| -> Value {
        let mut o = serde_json::Map::new();
        for k in keys {
            if let Some(x) = v.get(*k) {
                o.insert((*k).to_owned(), x.clone());
            }
        }
        Value::Object(o)
    };
    let own_items = |key: &str, keys: &[&str]| -> Value {
        let items: Vec<Value> = r
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|i| {
                i.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| pod.owns(id))
            })
            .map(|i| pick(i, keys))
            .collect();
        json!({ key: items })
    };
    match rpc {
        "RunPodSandbox" => pick(r, &["pod_sandbox_id"]),
        "CreateContainer" => pick(r, &["container_id"]),
        "PodSandboxStatus" => json!({
            "status": pick(r.get("status").unwrap_or(&Value::Null), &["id", "state", "network"])
        }),
        "ContainerStatus" => json!({
            "status": pick(
                r.get("status").unwrap_or(&Value::Null),
                &["id", "metadata", "state", "exit_code", "log_path"],
            )
        }),
        "ExecSync" => pick(r, &["stdout", "stderr", "exit_code"]),
        "ListPodSandbox" => own_items("items", &["id", "state"]),
        "ListContainers" => own_items("containers", &["id", "pod_sandbox_id", "state"]),
        "ListContainerStats" => {
            let stats: Vec<Value> = r
                .get("stats")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.pointer("/attributes/id").and_then(Value::as_str))
                .filter(|id| pod.owns(id))
                .map(|id| json!({ "attributes": { "id": id } }))
                .collect();
            json!({ "stats": stats })
        }
        "ImageStatus" => match r.pointer("/image/id") {
            Some(id) => json!({ "image": { "id": id } }),
            None => json!({}),
        },
        "PullImage" => pick(r, &["image_ref"]),
        _ => json!({}),
    }
}

/// Reads `<from>/calls.jsonl`, writes `<out>/<pod>.jsonl` per pod and `<out>/README.md`;
/// returns the README's text.
pub fn extract_dir(from: &Path, out: &Path) -> Result<String, CorpusError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CorpusError::Io { path, source }
    };
    let src = from.join("calls.jsonl");
    let text = std::fs::read_to_string(&src).map_err(io(&src))?;
    let calls = parse_capture(&text)?;
    let all = pods(&calls);
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut readme = README_HEAD.to_owned();
    for pod in &all {
        let trace = trace(&calls, &all, pod);
        let mut lines = String::new();
        for c in &trace {
            // Serializing a Value-backed struct cannot fail.
            lines.push_str(&serde_json::to_string(c).unwrap_or_default());
            lines.push('\n');
        }
        let path = out.join(format!("{}.jsonl", pod.name));
        std::fs::write(&path, &lines).map_err(io(&path))?;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &trace {
            *counts.entry(c.rpc.as_str()).or_default() += 1;
        }
        let containers: Vec<&str> = pod.containers.iter().map(|(_, n)| n.as_str()).collect();
        let _ = writeln!(
            readme,
            "\n## `{}.jsonl`\n{} calls, {} bytes; containers {}.\n",
            pod.name,
            trace.len(),
            lines.len(),
            containers.join(", ")
        );
        for (rpc, n) in counts {
            let _ = writeln!(readme, "- {rpc}: {n}");
        }
    }
    let path = out.join("README.md");
    std::fs::write(&path, &readme).map_err(io(&path))?;
    Ok(readme)
}

const README_HEAD: &str = "\
# Kubelet v1.36.2 traces, one per static pod

Generated by `crid-conformance kubelet-corpus extract --from <capture dir> --out
conformance/testdata/kubelet-1.36`, from a capture of every CRI call a real kubelet v1.36.2
(standalone, static pods, cgroupfs driver) made to containerd 1.6.20 while it started,
probed, stopped and removed three static pods. Do not edit by hand: re-run the command.

Each line is one call in the kubelet's order: `seq` (its place in the capture), `rpc`,
`timeout_s` (the deadline the kubelet set), `request` (protobuf JSON, snake_case names,
zero values omitted, int64 as strings), `code` (what containerd answered) and `response`
(only what a replay compares).

What a trace holds: every call naming the pod (its uid, sandbox id or container ids) and
the node-wide calls made meanwhile (Version, Status, ImageFsInfo, ListImages,
ListContainerStats, unfiltered lists), from the kubelet's start to a little after the pod
is removed. Cut out: repeats (of calls alike in phase, RPC, request, code and answer only
the first two stay, the first one of node-wide calls), ExecSync probes sent after their container's StopContainer (they
raced the stop in the kubelet, which a sequential replay cannot do), calls naming only
other pods, and list items of other pods. The capture wrote `config.envs[].value` base64
encoded; the traces carry the strings the kubelet sent.

The replay (`kubelet-replay/...` cases) rewrites only what is host-specific: pod uid,
sandbox and container ids, the image id and name, log and volume paths, the node name,
the pod IP in env values, host ports and `kubernetes.io/config.seen`.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn call(seq: u64, rpc: &str, request: Value, response: Value) -> Call {
        Call {
            seq,
            rpc: rpc.to_owned(),
            timeout_s: Some(120.0),
            request,
            code: "OK".to_owned(),
            response: Some(response),
        }
    }

    fn capture() -> Vec<Call> {
        let run = |seq, name: &str, uid: &str, id: &str| {
            call(
                seq,
                "RunPodSandbox",
                json!({"config": {"metadata": {"name": format!("{name}-kcheck"), "uid": uid}}}),
                json!({"pod_sandbox_id": id}),
            )
        };
        vec![
            call(1, "Version", json!({}), json!({"version": "0.1.0"})),
            run(2, "a", "uida", "sba"),
            run(3, "b", "uidb", "sbb"),
            call(
                4,
                "CreateContainer",
                json!({"pod_sandbox_id": "sba", "config": {"metadata": {"name": "c"}}}),
                json!({"container_id": "ctra"}),
            ),
            call(
                5,
                "ListContainers",
                json!({}),
                json!({"containers": [
                {"id": "ctra", "state": "CONTAINER_RUNNING", "image_ref": "x"},
                {"id": "ctrb", "state": "CONTAINER_RUNNING"}]}),
            ),
            call(
                6,
                "ListContainers",
                json!({}),
                json!({"containers": [
                {"id": "ctra", "state": "CONTAINER_RUNNING"}]}),
            ),
            call(
                7,
                "ListContainers",
                json!({}),
                json!({"containers": [
                {"id": "ctra", "state": "CONTAINER_RUNNING"}]}),
            ),
            call(8, "ExecSync", json!({"container_id": "ctra"}), json!({})),
            call(
                9,
                "PodSandboxStatus",
                json!({"pod_sandbox_id": "sbb"}),
                json!({}),
            ),
            call(
                10,
                "StopContainer",
                json!({"container_id": "ctra"}),
                json!({}),
            ),
            call(11, "ExecSync", json!({"container_id": "ctra"}), json!({})),
            call(
                12,
                "RemovePodSandbox",
                json!({"pod_sandbox_id": "sba"}),
                json!({}),
            ),
            call(13, "Version", json!({}), json!({})),
        ]
    }

    /// The committed traces are what the extractor makes of the shared capture.
    #[test]
    fn committed_traces_are_up_to_date() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let from = manifest.join("../../shared/fixtures/kubelet-1.36");
        if !from.join("calls.jsonl").exists() {
            eprintln!("{} not here: skipped", from.display());
            return;
        }
        let out = tempfile::tempdir().expect("tempdir");
        extract_dir(&from, out.path()).expect("extracts");
        let committed = manifest.join("testdata/kubelet-1.36");
        for (pod, text) in crate::kubelet_corpus::TRACES {
            let fresh = std::fs::read_to_string(out.path().join(format!("{pod}.jsonl")))
                .expect("extracted trace");
            assert!(
                fresh == *text,
                "testdata/kubelet-1.36/{pod}.jsonl is stale: run crid-conformance kubelet-corpus extract --from {} --out {}",
                from.display(),
                committed.display()
            );
        }
        let readme = std::fs::read_to_string(out.path().join("README.md")).expect("readme");
        assert_eq!(
            std::fs::read_to_string(committed.join("README.md")).expect("committed readme"),
            readme
        );
    }

    #[test]
    fn pods_are_found_with_their_containers() {
        let all = pods(&capture());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "a");
        assert_eq!(all[0].containers, [("ctra".to_owned(), "c".to_owned())]);
        assert!(all[1].containers.is_empty());
    }

    #[test]
    fn a_trace_keeps_its_pod_node_wide_calls_and_drops_the_rest() {
        let calls = capture();
        let all = pods(&calls);
        let t = trace(&calls, &all, &all[0]);
        let seqs: Vec<u64> = t.iter().map(|c| c.seq).collect();
        // 3 (other pod), 9 (other pod), 11 (probe after stop) are out; 6 and 7 repeat 5
        // once the other pod's container is projected away, so they go too.
        assert_eq!(seqs, [1, 2, 4, 5, 8, 10, 12, 13]);
        let list = &t[3];
        assert_eq!(
            list.response,
            Some(json!({"containers": [{"id": "ctra", "state": "CONTAINER_RUNNING"}]}))
        );
    }
}

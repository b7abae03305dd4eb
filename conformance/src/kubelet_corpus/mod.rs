//! The kubelet's own CRI calls as test data.
//!
//! A gRPC proxy recorded every call a kubelet v1.36.2 made to containerd 1.6 while it ran,
//! probed, stopped and removed three static pods (`calls.jsonl`, protobuf JSON with the
//! proto's snake_case field names). [`extract`] cuts that capture into one ordered trace
//! per pod, which is committed under `testdata/kubelet-1.36/` and embedded here
//! ([`TRACES`]); [`rewrite`] replaces what is specific to the capturing host; [`decode`]
//! turns a request or response into the generated prost message through the descriptor
//! set crid-api embeds, so the bytes on the wire are the ones the kubelet sent.

pub mod extract;
pub mod rewrite;

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The committed traces, one per static pod: `(pod, JSON lines)`.
pub const TRACES: &[(&str, &str)] = &[
    (
        "busybox-static",
        include_str!("../../testdata/kubelet-1.36/busybox-static.jsonl"),
    ),
    (
        "shared-volume-static",
        include_str!("../../testdata/kubelet-1.36/shared-volume-static.jsonl"),
    ),
    (
        "rich-static",
        include_str!("../../testdata/kubelet-1.36/rich-static.jsonl"),
    ),
];

/// The node name of the capture: part of pod names and hostnames.
pub const NODE: &str = "kcheck";

/// One recorded call: what the kubelet sent and what containerd answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// Arrival order in the capture.
    pub seq: u64,
    /// The RPC's method name, e.g. `CreateContainer`.
    pub rpc: String,
    /// The deadline the kubelet set, in seconds; `None` for none (PullImage).
    pub timeout_s: Option<f64>,
    /// The request, protobuf JSON (zero values omitted).
    pub request: Value,
    /// The gRPC code containerd answered, e.g. `OK`, `NOT_FOUND`.
    pub code: String,
    /// The response (in traces: only the fields a replay compares); `None` on error.
    #[serde(default)]
    pub response: Option<Value>,
}

/// What went wrong reading the corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A line is not a call.
    #[error("line {line}: {source}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A message does not decode as its proto type.
    #[error("{message}: {reason}")]
    Decode {
        /// Full proto name, e.g. `runtime.v1.CreateContainerRequest`.
        message: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Parses JSON lines of calls (a capture or a committed trace); blank lines are skipped.
pub fn parse_calls(text: &str) -> Result<Vec<Call>, CorpusError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| CorpusError::Line {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Parses the raw capture and undoes its one recording quirk: the proxy wrote
/// `KeyValue.value` of `config.envs` base64-encoded, as if it were bytes; it is a string
/// in the CRI proto, so it is decoded here (values that are not base64 stay as they are).
pub fn parse_capture(text: &str) -> Result<Vec<Call>, CorpusError> {
    let mut calls = parse_calls(text)?;
    for c in &mut calls {
        if c.rpc == "CreateContainer" {
            decode_env_values(&mut c.request);
        }
    }
    Ok(calls)
}

fn decode_env_values(request: &mut Value) {
    use base64::Engine as _;
    let Some(envs) = request
        .pointer_mut("/config/envs")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for kv in envs {
        let Some(v) = kv.get_mut("value") else {
            continue;
        };
        let decoded = v
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| String::from_utf8(b).ok());
        if let Some(d) = decoded {
            *v = Value::String(d);
        }
    }
}

/// The pool of `runtime.v1` descriptors, from the set crid-api embeds.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The set is generated at build time from our own proto; failing here is a build bug.
        DescriptorPool::decode(crid_api::FILE_DESCRIPTOR_SET)
            .expect("crid-api's embedded descriptor set decodes")
    })
}

/// Full proto name of the request message of `rpc`, e.g. `runtime.v1.VersionRequest`.
pub fn request_type(rpc: &str) -> String {
    format!("{}.{rpc}Request", crid_api::PACKAGE)
}

/// Full proto name of the response message of `rpc`.
pub fn response_type(rpc: &str) -> String {
    format!("{}.{rpc}Response", crid_api::PACKAGE)
}

/// Decodes protobuf JSON `value` as proto message `message` into the prost type `T`;
/// unknown fields are refused, so a field our proto lacks is seen rather than dropped.
pub fn decode<T: prost::Message + Default>(message: &str, value: &Value) -> Result<T, CorpusError> {
    let err = |reason: String| CorpusError::Decode {
        message: message.to_owned(),
        reason,
    };
    let desc = pool()
        .get_message_by_name(message)
        .ok_or_else(|| err("no such message in runtime.v1".to_owned()))?;
    let dynamic =
        DynamicMessage::deserialize(desc, value.clone()).map_err(|e| err(e.to_string()))?;
    dynamic.transcode_to::<T>().map_err(|e| err(e.to_string()))
}

/// Decodes a call's request as a [`DynamicMessage`] of its RPC's request type.
pub fn decode_dynamic(message: &str, value: &Value) -> Result<DynamicMessage, CorpusError> {
    let desc = pool()
        .get_message_by_name(message)
        .ok_or_else(|| CorpusError::Decode {
            message: message.to_owned(),
            reason: "no such message in runtime.v1".to_owned(),
        })?;
    DynamicMessage::deserialize(desc, value.clone()).map_err(|e| CorpusError::Decode {
        message: message.to_owned(),
        reason: e.to_string(),
    })
}

/// The trace of `pod`, parsed.
pub fn trace(pod: &str) -> Result<Vec<Call>, CorpusError> {
    let text = TRACES
        .iter()
        .find(|(p, _)| *p == pod)
        .map(|(_, t)| *t)
        .unwrap_or_default();
    parse_calls(text)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crid_api::cri;

    use super::*;

    /// The shared capture, when this checkout sits next to it.
    fn capture_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/kubelet-1.36/calls.jsonl")
    }

    fn decodes_all(calls: &[Call]) {
        for c in calls {
            decode_dynamic(&request_type(&c.rpc), &c.request)
                .unwrap_or_else(|e| panic!("seq {} {} request: {e}", c.seq, c.rpc));
            if let Some(r) = &c.response {
                decode_dynamic(&response_type(&c.rpc), r)
                    .unwrap_or_else(|e| panic!("seq {} {} response: {e}", c.seq, c.rpc));
            }
        }
    }

    #[test]
    fn every_call_of_the_capture_decodes() {
        let path = capture_path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("{} not here: skipped", path.display());
            return;
        };
        let calls = parse_capture(&text).expect("capture parses");
        assert_eq!(calls.len(), 800);
        decodes_all(&calls);
    }

    #[test]
    fn every_call_of_the_committed_traces_decodes() {
        for (pod, _) in TRACES {
            let calls = trace(pod).expect("trace parses");
            assert!(calls.len() > 10, "{pod}: {} calls", calls.len());
            decodes_all(&calls);
        }
    }

    #[test]
    fn a_create_container_decodes_with_the_kubelets_values() {
        let calls = trace("rich-static").expect("trace");
        let create = calls
            .iter()
            .find(|c| c.rpc == "CreateContainer")
            .expect("a CreateContainer");
        let r: cri::CreateContainerRequest =
            decode(&request_type("CreateContainer"), &create.request).expect("decodes");
        let config = r.config.expect("config");
        let linux = config.linux.expect("linux");
        let res = linux.resources.expect("resources");
        assert_eq!(res.oom_score_adj, 999);
        assert_eq!(res.memory_limit_in_bytes, 64 << 20);
        let sizes: Vec<_> = res
            .hugepage_limits
            .iter()
            .map(|h| h.page_size.as_str())
            .collect();
        assert_eq!(sizes, ["2MB", "1GB"]);
        assert!(res.hugepage_limits.iter().all(|h| h.limit == 0));
        let sc = linux.security_context.expect("security context");
        assert!(sc.readonly_rootfs && sc.no_new_privs);
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(sc.masked_paths.len(), 12);
        let env: Vec<_> = config
            .envs
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert!(env.contains(&("GREETING", "hello-cri")), "{env:?}");
    }

    #[test]
    fn env_values_are_decoded_from_the_capture_quirk() {
        let line = r#"{"seq":1,"rpc":"CreateContainer","timeout_s":1.0,"request":{"config":{"envs":[{"key":"A","value":"aGVsbG8tY3Jp"}]}},"code":"OK"}"#;
        let calls = parse_capture(line).expect("parses");
        assert_eq!(calls[0].request["config"]["envs"][0]["value"], "hello-cri");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let v = serde_json::json!({"container_id": "x", "no_such_field": 1});
        assert!(decode::<cri::StartContainerRequest>(&request_type("StartContainer"), &v).is_err());
    }
}

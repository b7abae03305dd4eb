//! Rewriting a recorded request for another host: a pure function of the JSON.
//!
//! Only what is specific to the capturing host changes: substrings given as pairs (pod
//! uid, sandbox and container ids, image id and name, path prefixes, node name, pod IP;
//! they reach labels, annotations, `cgroup_parent`, `log_directory`, mount host paths,
//! label selectors and env values alike), host ports (`host_port` fields and the
//! container-ports annotation) and the `kubernetes.io/config.seen` annotation. Everything
//! else the kubelet sent (resources, hugepage limits, security contexts, masked paths) is
//! the point of a replay and stays as it is. Map keys are never rewritten.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The annotation the kubelet sets to when it first saw a pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// A set of rewrites; [`Rewrite::apply`] applies them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pairs: Vec<(String, String)>,
    ports: BTreeMap<u64, u64>,
    seen: Option<String>,
}

impl Rewrite {
    /// No rewrites.
    pub fn new() -> Rewrite {
        Rewrite::default()
    }

    /// Replaces every occurrence of `from` in string values by `to`; pairs apply in the
    /// order they were added. An empty or identical pair, or a repeated `from`, is ignored.
    pub fn replace(&mut self, from: &str, to: &str) -> &mut Rewrite {
        if !from.is_empty() && from != to && !self.pairs.iter().any(|(f, _)| f == from) {
            self.pairs.push((from.to_owned(), to.to_owned()));
        }
        self
    }

    /// Maps host port `from` to `to`, in `host_port` fields and in the kubelet's
    /// `io.kubernetes.container.ports` annotation.
    pub fn port(&mut self, from: u64, to: u64) -> &mut Rewrite {
        self.ports.insert(from, to);
        self.replace(
            &format!("\"hostPort\":{from},"),
            &format!("\"hostPort\":{to},"),
        )
    }

    /// Sets the value of the `kubernetes.io/config.seen` annotation.
    pub fn seen(&mut self, value: &str) -> &mut Rewrite {
        self.seen = Some(value.to_owned());
        self
    }

    /// What `from` was mapped to by [`Rewrite::replace`], if anything.
    pub fn mapped(&self, from: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(f, _)| f == from)
            .map(|(_, t)| t.as_str())
    }

    /// `s` with every pair applied.
    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (from, to) in &self.pairs {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }

    /// Rewrites `v` in place.
    pub fn apply(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.apply(i)),
            Value::Object(map) => {
                for (k, x) in map.iter_mut() {
                    match (k.as_str(), &self.seen) {
                        ("host_port", _) => self.apply_port(x),
                        (CONFIG_SEEN, Some(seen)) if x.is_string() => {
                            *x = Value::String(seen.clone());
                        }
                        _ => self.apply(x),
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn apply_port(&self, x: &mut Value) {
        if let Some(to) = x.as_u64().and_then(|p| self.ports.get(&p)) {
            *x = Value::from(*to);
        }
    }

    /// A rewritten copy of `v`.
    pub fn applied(&self, v: &Value) -> Value {
        let mut v = v.clone();
        self.apply(&mut v);
        v
    }
}

/// A fresh 32-hex-digit pod uid (the form static pods' config hashes have), from `seed`
/// and the clock.
pub fn fresh_uid(seed: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{seed}/{now}/{}", std::process::id()));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// `t` as the kubelet writes `config.seen`: RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days end each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const UID: &str = "86f1e64349c5095c56854717bd1a5a07";

    fn rewrite() -> Rewrite {
        let mut r = Rewrite::new();
        r.replace("/var/log/pods", "/tmp/t/logs")
            .replace("/var/lib/kubelet", "/tmp/t/kubelet")
            .replace("/var/lib/kcheck-hostpath", "/tmp/t/hostpath")
            .replace(UID, "00112233445566778899aabbccddeeff")
            .replace("-kcheck", "-node1")
            .replace("10.99.0.12", "10.1.2.3")
            .port(18080, 40000)
            .seen("2030-01-01T00:00:00.000000000Z");
        r
    }

    #[test]
    fn host_specific_values_are_rewritten_everywhere() {
        let mut v = json!({
            "pod_sandbox_id": "sb",
            "config": {
                "metadata": {"name": "rich-static-kcheck", "uid": UID},
                "hostname": "rich-static-kcheck",
                "log_directory": format!("/var/log/pods/default_rich-static-kcheck_{UID}"),
                "port_mappings": [{"container_port": 8080, "host_port": 18080}],
                "labels": {"io.kubernetes.pod.uid": UID, "app": "kcheck-rich"},
                "annotations": {
                    "kubernetes.io/config.seen": "2026-12-05T22:29:25.344652177Z",
                    "io.kubernetes.container.ports":
                        "[{\"name\":\"http\",\"hostPort\":18080,\"containerPort\":8080,\"protocol\":\"TCP\"}]"
                },
                "mounts": [
                    {"container_path": "/host", "host_path": "/var/lib/kcheck-hostpath"},
                    {"host_path": format!("/var/lib/kubelet/pods/{UID}/etc-hosts")}
                ],
                "envs": [{"key": "POD_IP", "value": "10.99.0.12"}],
                "linux": {"cgroup_parent": format!("/kubepods/burstable/pod{UID}"),
                          "resources": {"hugepage_limits": [{"page_size": "2MB"}],
                                        "oom_score_adj": "999"}}
            }
        });
        rewrite().apply(&mut v);
        let new = "00112233445566778899aabbccddeeff";
        assert_eq!(v["config"]["metadata"]["name"], "rich-static-node1");
        assert_eq!(v["config"]["metadata"]["uid"], new);
        assert_eq!(v["config"]["hostname"], "rich-static-node1");
        assert_eq!(
            v["config"]["log_directory"],
            format!("/tmp/t/logs/default_rich-static-node1_{new}")
        );
        assert_eq!(v["config"]["port_mappings"][0]["host_port"], 40000);
        assert_eq!(v["config"]["port_mappings"][0]["container_port"], 8080);
        assert_eq!(v["config"]["labels"]["io.kubernetes.pod.uid"], new);
        assert_eq!(v["config"]["labels"]["app"], "kcheck-rich");
        assert_eq!(
            v["config"]["annotations"]["kubernetes.io/config.seen"],
            "2030-01-01T00:00:00.000000000Z"
        );
        assert!(
            v["config"]["annotations"]["io.kubernetes.container.ports"]
                .as_str()
                .is_some_and(|s| s.contains("\"hostPort\":40000,") && s.contains("8080"))
        );
        assert_eq!(v["config"]["mounts"][0]["host_path"], "/tmp/t/hostpath");
        assert_eq!(
            v["config"]["mounts"][1]["host_path"],
            format!("/tmp/t/kubelet/pods/{new}/etc-hosts")
        );
        assert_eq!(v["config"]["envs"][0]["value"], "10.1.2.3");
        assert_eq!(
            v["config"]["linux"]["cgroup_parent"],
            format!("/kubepods/burstable/pod{new}")
        );
        // What the kubelet asked for stays.
        assert_eq!(
            v["config"]["linux"]["resources"],
            json!({"hugepage_limits": [{"page_size": "2MB"}], "oom_score_adj": "999"})
        );
        assert_eq!(v["pod_sandbox_id"], "sb");
    }

    #[test]
    fn keys_are_never_rewritten_and_pairs_are_first_come() {
        let mut r = Rewrite::new();
        r.replace("a", "b")
            .replace("a", "c")
            .replace("", "x")
            .replace("same", "same");
        assert_eq!(r.mapped("a"), Some("b"));
        assert_eq!(r.mapped(""), None);
        assert_eq!(r.applied(&json!({"a": "a"})), json!({"a": "b"}));
    }

    #[test]
    fn fresh_uids_look_like_config_hashes_and_differ() {
        let a = fresh_uid("x");
        std::thread::sleep(Duration::from_millis(1));
        let b = fresh_uid("x");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2026-12-05T22:29:25.344652177Z, the capture's config.seen.
        let t = UNIX_EPOCH + Duration::new(1_796_509_765, 344_652_177);
        assert_eq!(rfc3339(t), "2026-12-05T22:29:25.344652177Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
    }
}

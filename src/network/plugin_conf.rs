//! What one plugin invocation is given: the `CNI_ARGS` string and the stdin configuration
//! (the plugin's own object with the list's `name`, `cniVersion`, the previous result and the
//! runtime configuration of the capabilities it declares). Pure functions, no I/O.

use serde_json::{Map, Value};

use super::types::{Attachment, PortMapping};

/// The capability key of port mappings (CNI CONVENTIONS.md), the portmap plugin's input.
pub(crate) const PORT_MAPPINGS: &str = "portMappings";

/// `CNI_ARGS` for a pod: `IgnoreUnknown=1` and the four `K8S_*` keys kubelet conventions name.
pub(crate) fn cni_args(a: &Attachment) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
    )
}

/// `CNI_ARGS` when only the container id is known (DEL without a cached entry).
pub(crate) fn cni_args_for_id(container_id: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={container_id}")
}

/// The runtime's capability arguments; a capability with nothing to say is left out.
pub(crate) fn capability_args(port_mappings: &[PortMapping]) -> Map<String, Value> {
    let mut args = Map::new();
    if !port_mappings.is_empty() {
        let mappings = port_mappings
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("hostPort".into(), p.host_port.into());
                m.insert("containerPort".into(), p.container_port.into());
                m.insert("protocol".into(), p.protocol.to_ascii_lowercase().into());
                if !p.host_ip.is_empty() {
                    m.insert("hostIP".into(), p.host_ip.clone().into());
                }
                Value::Object(m)
            })
            .collect();
        args.insert(PORT_MAPPINGS.into(), Value::Array(mappings));
    }
    args
}

/// The stdin of one plugin: its configuration object with `name` and `cniVersion` from the
/// list, `prevResult` when given, and `runtimeConfig` holding only the capability arguments
/// whose capability the plugin declares `true`.
pub(crate) fn plugin_stdin(
    plugin: &Value,
    name: &str,
    cni_version: &str,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Result<Vec<u8>, String> {
    let mut conf = plugin
        .as_object()
        .cloned()
        .ok_or("a plugin configuration is not a JSON object")?;
    conf.insert("name".into(), name.into());
    conf.insert("cniVersion".into(), cni_version.into());
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared = conf
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let runtime: Map<String, Value> = capability_args
        .iter()
        .filter(|(k, _)| declared.get(k.as_str()).and_then(Value::as_bool) == Some(true))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&Value::Object(conf)).map_err(|e| e.to_string())
}

/// True when `version` (e.g. `0.4.0`) is at least `major.minor.0`; unparsable or empty
/// versions count as the oldest, `0.1.0`, as plugins treat them.
pub(crate) fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(ma), Some(mi)) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

/// Checks a value that goes into `CNI_ARGS`, where `;` and `=` are separators.
pub(crate) fn check_arg(what: &str, value: &str) -> Result<(), String> {
    if value.contains([';', '=']) || value.chars().any(char::is_control) {
        return Err(format!(
            "{what} {value:?} contains `;`, `=` or a control character"
        ));
    }
    Ok(())
}

/// Checks an identifier that names files (container id, interface name): CNI allows
/// letters, digits, `-`, `_` and `.`, and it must not be `.` or `..`.
pub(crate) fn check_id(what: &str, value: &str, max_len: usize) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= max_len
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {value:?} must be 1 to {max_len} letters, digits, `-`, `_` or `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

    fn attachment(ports: Vec<PortMapping>) -> Attachment {
        Attachment {
            container_id: "abc123".into(),
            netns: PathBuf::from("/run/crid/netns/abc123"),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            pod_uid: "0b5c-11ee".into(),
            port_mappings: ports,
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        assert_eq!(
            cni_args(&attachment(vec![])),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0b5c-11ee"
        );
        assert_eq!(
            cni_args_for_id("abc"),
            "IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=abc"
        );
    }

    #[test]
    fn stdin_injects_name_version_prev_result_and_declared_capabilities() {
        let caps = capability_args(&[PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "TCP".into(),
            host_ip: String::new(),
        }]);
        let portmap = json!({"type": "portmap", "name": "ignored", "cniVersion": "0.1.0",
            "capabilities": {"portMappings": true, "bandwidth": false}});
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.2/16"}]});
        let bytes = plugin_stdin(&portmap, "crid", "1.0.0", Some(&prev), &caps).expect("stdin");
        let got: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            got,
            json!({"type": "portmap", "name": "crid", "cniVersion": "1.0.0",
                "capabilities": {"portMappings": true, "bandwidth": false},
                "prevResult": prev,
                "runtimeConfig": {"portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}})
        );

        // A plugin that declares nothing gets no runtimeConfig; no prevResult on the first.
        let bridge = json!({"type": "bridge", "bridge": "crid0"});
        let bytes = plugin_stdin(&bridge, "crid", "1.0.0", None, &caps).expect("stdin");
        let got: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            got,
            json!({"type": "bridge", "bridge": "crid0", "name": "crid", "cniVersion": "1.0.0"})
        );

        // A declared capability with no argument is left out too.
        let bytes = plugin_stdin(&portmap, "crid", "1.0.0", None, &Map::new()).expect("stdin");
        let got: Value = serde_json::from_slice(&bytes).expect("json");
        assert!(got.get("runtimeConfig").is_none(), "{got}");

        assert!(plugin_stdin(&json!([1]), "n", "1.0.0", None, &caps).is_err());
    }

    #[test]
    fn host_ip_is_passed_when_set() {
        let caps = capability_args(&[PortMapping {
            host_port: 1,
            container_port: 2,
            protocol: "udp".into(),
            host_ip: "127.0.0.1".into(),
        }]);
        assert_eq!(
            Value::Object(caps),
            json!({"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "udp",
                "hostIP": "127.0.0.1"}]})
        );
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_at_least("1.0.0", 0, 4));
        assert!(version_at_least("0.4.0", 0, 4));
        assert!(!version_at_least("0.3.1", 0, 4));
        assert!(!version_at_least("", 0, 4));
        assert!(!version_at_least("x.y", 0, 4));
    }

    #[test]
    fn identifiers_and_args_are_checked() {
        assert!(check_id("container id", "abc-1_2.3", 64).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_id("container id", bad, 64).is_err(), "{bad}");
        }
        assert!(check_arg("pod name", "web-0").is_ok());
        assert!(check_arg("pod name", "a;b").is_err());
        assert!(check_arg("pod name", "a=b").is_err());
    }
}

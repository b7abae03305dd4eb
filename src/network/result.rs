//! Reading what plugins answer: ADD results (CNI 0.3.x, 0.4.0 and 1.0.0, and the `ip4`/`ip6`
//! shape of 0.1/0.2), JSON errors, and VERSION answers. Pure functions, no I/O.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct RawResult {
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIp>,
    // CNI 0.1.0 / 0.2.0.
    ip4: Option<LegacyIp>,
    ip6: Option<LegacyIp>,
}

#[derive(Debug, Deserialize)]
struct RawInterface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Debug, Deserialize)]
struct RawIp {
    address: String,
    interface: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct LegacyIp {
    ip: String,
}

/// The pod's addresses from an ADD result, IPv4 first, then IPv6, each in result order.
///
/// When the result lists interfaces and its IPs name them, only the IPs of the interface
/// called `ifname` inside a sandbox count (a bridge's own gateway address is not the pod's);
/// when none match, every IP of the result counts.
pub(crate) fn pod_ips(result: &Value, ifname: &str) -> Result<Vec<IpAddr>, String> {
    let raw = RawResult::deserialize(result).map_err(|e| format!("malformed result: {e}"))?;
    let mut addresses: Vec<&str> = raw.ips.iter().map(|ip| ip.address.as_str()).collect();
    let on_pod_interface: Vec<&str> = raw
        .ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| raw.interfaces.get(i))
                .is_some_and(|iface| iface.name == ifname && !iface.sandbox.is_empty())
        })
        .map(|ip| ip.address.as_str())
        .collect();
    if !on_pod_interface.is_empty() {
        addresses = on_pod_interface;
    }
    addresses.extend(raw.ip4.iter().chain(raw.ip6.iter()).map(|l| l.ip.as_str()));

    let mut ips = addresses
        .into_iter()
        .map(parse_cidr_address)
        .collect::<Result<Vec<_>, _>>()?;
    // Stable: keeps the result's order within each family.
    ips.sort_by_key(IpAddr::is_ipv6);
    Ok(ips)
}

/// The address part of `10.88.0.2/16` (a bare address is accepted too).
fn parse_cidr_address(cidr: &str) -> Result<IpAddr, String> {
    let (addr, prefix) = match cidr.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (cidr, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid IP address {cidr:?}"))?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => return Err(format!("invalid prefix length in {cidr:?}")),
        }
    }
    Ok(ip)
}

/// A plugin's error, as the spec's error object gives it (`code`, `msg`, `details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginFailure {
    /// The error code; 1 to 99 are the spec's, 100 and up the plugin's own.
    pub code: Option<u32>,
    /// The message.
    pub msg: String,
    /// Further details, possibly empty.
    pub details: String,
}

/// Reads a failed plugin's answer: its JSON error on stdout, or else whatever it printed
/// (stdout, then stderr), or else its exit status.
pub(crate) fn plugin_failure(stdout: &[u8], stderr: &[u8], status: &str) -> PluginFailure {
    #[derive(Deserialize)]
    struct RawError {
        code: Option<u32>,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    if let Ok(e) = serde_json::from_slice::<RawError>(stdout)
        && (!e.msg.is_empty() || e.code.is_some())
    {
        let msg = if e.msg.is_empty() {
            format!("error code {}", e.code.unwrap_or_default())
        } else {
            e.msg
        };
        return PluginFailure {
            code: e.code,
            msg,
            details: e.details,
        };
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    let msg = [text(stdout), text(stderr)]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| format!("exited with {status} and printed nothing"));
    PluginFailure {
        code: None,
        msg,
        details: String::new(),
    }
}

/// The `supportedVersions` of a VERSION answer.
pub(crate) fn supported_versions(stdout: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawVersion {
        supported_versions: Vec<String>,
    }
    serde_json::from_slice::<RawVersion>(stdout)
        .map(|v| v.supported_versions)
        .map_err(|e| format!("malformed VERSION answer: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn result_1_0_0_prefers_the_pod_interface_and_puts_ipv4_first() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "crid0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.88.0.1/16", "interface": 0},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        assert_eq!(
            pod_ips(&result, "eth0").expect("parse"),
            [ip("10.88.0.5"), ip("fd00::5")]
        );
        // Another interface name matches nothing: every address counts.
        assert_eq!(
            pod_ips(&result, "net1").expect("parse"),
            [ip("10.88.0.1"), ip("10.88.0.5"), ip("fd00::5")]
        );
    }

    #[test]
    fn result_0_4_0_with_versions_and_no_interfaces() {
        let result = json!({
            "cniVersion": "0.4.0",
            "ips": [
                {"version": "6", "address": "2001:db8::2/64"},
                {"version": "4", "address": "192.168.1.7/24", "gateway": "192.168.1.1"}
            ]
        });
        assert_eq!(
            pod_ips(&result, "eth0").expect("parse"),
            [ip("192.168.1.7"), ip("2001:db8::2")]
        );
    }

    #[test]
    fn result_0_2_0_and_empty_results() {
        let result = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24"}});
        assert_eq!(pod_ips(&result, "eth0").expect("parse"), [ip("10.1.2.3")]);
        assert!(
            pod_ips(&json!({"cniVersion": "1.0.0"}), "eth0")
                .expect("parse")
                .is_empty()
        );
    }

    #[test]
    fn malformed_results_are_errors() {
        for bad in [
            json!({"ips": [{"address": "10.1.2.300/24"}]}),
            json!({"ips": [{"address": "10.1.2.3/33"}]}),
            json!({"ips": [{"gateway": "10.1.2.1"}]}),
            json!({"ips": "no"}),
        ] {
            assert!(pod_ips(&bad, "eth0").is_err(), "{bad}");
        }
    }

    #[test]
    fn json_errors_give_code_msg_and_details() {
        let f = plugin_failure(
            br#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}"#,
            b"",
            "exit status: 1",
        );
        assert_eq!(
            f,
            PluginFailure {
                code: Some(11),
                msg: "failed to allocate".into(),
                details: "range full".into()
            }
        );
        let f = plugin_failure(b"", b"panic: boom\n", "exit status: 2");
        assert_eq!(f.msg, "panic: boom");
        assert_eq!(f.code, None);
        let f = plugin_failure(b"", b"", "exit status: 3");
        assert_eq!(f.msg, "exited with exit status: 3 and printed nothing");
        let f = plugin_failure(br#"{"code":4}"#, b"", "exit status: 1");
        assert_eq!(f.msg, "error code 4");
    }

    #[test]
    fn version_answers_list_supported_versions() {
        let v = supported_versions(
            br#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}"#,
        )
        .expect("parse");
        assert_eq!(v, ["0.3.1", "0.4.0", "1.0.0"]);
        assert!(supported_versions(b"nope").is_err());
    }
}

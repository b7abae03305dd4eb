//! The files a pod shares with its containers: /etc/resolv.conf, /etc/hosts, /etc/hostname.
//!
//! Pure: they are rendered from the pod config here and written by the pod lifecycle.

use std::fmt::Write;
use std::net::IpAddr;

use crid_api::cri;

/// Why a pod's DNS or hostname request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FileError {
    /// The request field, as named in api.proto.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Renders resolv.conf from the pod's DNS config (cri:PodSandboxConfig#dns_config).
///
/// `None` when the config asks for nothing: the pod then gets the host's resolv.conf.
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Result<Option<String>, FileError> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return Ok(None);
    };
    let word = |field: &'static str, v: &str| {
        if v.is_empty() || v.chars().any(char::is_whitespace) {
            Err(FileError {
                field,
                reason: format!("`{v}` must be one non-empty word"),
            })
        } else {
            Ok(())
        }
    };
    let mut out = String::new();
    if !dns.searches.is_empty() && !crate::faults::on(crate::faults::Fault::DnsSearchesDropped) {
        for s in &dns.searches {
            word("dns_config.searches", s)?;
        }
        let _ = writeln!(out, "search {}", dns.searches.join(" "));
    }
    for s in &dns.servers {
        s.parse::<IpAddr>().map_err(|_| FileError {
            field: "dns_config.servers",
            reason: format!("`{s}` is not an IP address"),
        })?;
        let _ = writeln!(out, "nameserver {s}");
    }
    if !dns.options.is_empty() {
        for o in &dns.options {
            word("dns_config.options", o)?;
        }
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    Ok(Some(out))
}

/// Checks a pod hostname: 1 to 64 characters (HOST_NAME_MAX), DNS label characters and dots.
pub fn validate_hostname(h: &str) -> Result<(), FileError> {
    let ok = (1..=64).contains(&h.len())
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(FileError {
            field: "hostname",
            reason: format!(
                "`{h}` is not a valid hostname (1-64 characters: letters, digits, '-' and '.')"
            ),
        })
    }
}

/// Renders /etc/hosts: the loopback names, then the pod's IPs mapped to its hostname.
pub fn hosts(hostname: &str, pod_ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        let _ = writeln!(out, "{ip}\t{hostname}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> cri::DnsConfig {
        let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect();
        cri::DnsConfig {
            servers: v(servers),
            searches: v(searches),
            options: v(options),
        }
    }

    // cri:PodSandboxConfig#dns_config: servers, searches and options land in resolv.conf.
    #[test]
    fn resolv_conf_carries_servers_searches_and_options() {
        let text = resolv_conf(Some(&dns(
            &["10.96.0.10", "fd00::a"],
            &["ns.svc.cluster.local", "svc.cluster.local"],
            &["ndots:5", "timeout:2"],
        )))
        .expect("valid")
        .expect("rendered");
        assert_eq!(
            text,
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 timeout:2\n"
        );
    }

    #[test]
    fn empty_dns_config_means_the_hosts_file() {
        assert_eq!(resolv_conf(None), Ok(None));
        assert_eq!(resolv_conf(Some(&dns(&[], &[], &[]))), Ok(None));
    }

    #[test]
    fn invalid_dns_names_the_field() {
        let e = resolv_conf(Some(&dns(&["not-an-ip"], &[], &[]))).expect_err("bad server");
        assert_eq!(e.field, "dns_config.servers");
        let e = resolv_conf(Some(&dns(&[], &["two words"], &[]))).expect_err("bad search");
        assert_eq!(e.field, "dns_config.searches");
        let e = resolv_conf(Some(&dns(&[], &[], &[""]))).expect_err("bad option");
        assert_eq!(e.field, "dns_config.options");
    }

    #[test]
    fn hostnames() {
        for ok in ["pod", "web-0", "a.b.c", &"x".repeat(64)] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "under_score", &"x".repeat(65)] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_maps_pod_ips_to_the_hostname() {
        let h = hosts("web-0", &["10.88.0.5".parse().expect("ip")]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.0.5\tweb-0\n"));
    }
}

//! Checks on the merged configuration that types alone cannot express.

use std::path::Path;

use super::load::{Origins, origin_of};
use super::{Config, Problem};

/// Every problem of a decoded configuration, each naming its source and key.
pub(super) fn check(config: &Config, origins: &Origins) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |key: String, reason: String| {
        let source = origin_of(origins, &key);
        problems.push(Problem {
            source,
            key,
            reason,
        });
    };

    absolute(&config.server.listen, "server.listen", &mut bad);
    if config.server.shutdown_timeout_secs == 0 {
        bad(
            "server.shutdown_timeout_secs".into(),
            "must be at least 1".into(),
        );
    }

    let streaming = &config.streaming;
    if streaming.token_ttl_secs == 0 {
        bad(
            "streaming.token_ttl_secs".into(),
            "must be at least 1".into(),
        );
    }
    if streaming.tls_cert.is_some() != streaming.tls_key.is_some() {
        bad(
            "streaming.tls_cert".into(),
            "tls_cert and tls_key go together".into(),
        );
    }

    if !config
        .runtime
        .runtimes
        .contains_key(&config.runtime.default_runtime)
    {
        let known: Vec<_> = config.runtime.runtimes.keys().map(String::as_str).collect();
        bad(
            "runtime.default_runtime".into(),
            format!(
                "no runtime handler named `{}` (configured: {})",
                config.runtime.default_runtime,
                known.join(", ")
            ),
        );
    }
    for (name, handler) in &config.runtime.runtimes {
        let key = format!("runtime.runtimes.{name}");
        if !is_handler_name(name) {
            bad(
                key.clone(),
                "a handler name is 1-63 lowercase letters, digits, '-', '_' or '.'".into(),
            );
        }
        if handler.path.as_os_str().is_empty() {
            bad(format!("{key}.path"), "must not be empty".into());
        } else if handler.path.components().count() > 1 && !handler.path.is_absolute() {
            bad(
                format!("{key}.path"),
                format!(
                    "`{}` must be an absolute path or a bare command name looked up in PATH",
                    handler.path.display()
                ),
            );
        }
        if let Some(root) = &handler.root {
            absolute(root, &format!("{key}.root"), &mut bad);
        }
        if let Some(t) = handler.timeout_secs
            && !(1..=3600).contains(&t)
        {
            bad(
                format!("{key}.timeout_secs"),
                format!("{t} is out of range: 1 to 3600 seconds"),
            );
        }
    }

    let image = &config.image;
    if image.pause_image.trim().is_empty() || image.pause_image.contains(char::is_whitespace) {
        bad(
            "image.pause_image".into(),
            format!("`{}` is not an image reference", image.pause_image),
        );
    }
    for (i, host) in image.insecure_registries.iter().enumerate() {
        if let Err(why) = registry_host(host) {
            bad(format!("image.insecure_registries[{i}]"), why);
        }
    }
    for (i, host) in image.short_name_search.iter().enumerate() {
        if let Err(why) = registry_host(host) {
            bad(format!("image.short_name_search[{i}]"), why);
        }
    }
    if !(1..=64).contains(&image.max_concurrent_downloads) {
        bad(
            "image.max_concurrent_downloads".into(),
            format!("{} is not from 1 to 64", image.max_concurrent_downloads),
        );
    }
    if image.pull_progress_timeout_secs == 0 {
        bad(
            "image.pull_progress_timeout_secs".into(),
            "must be at least 1".into(),
        );
    }
    for (registry, mirrors) in &image.mirrors {
        let key = format!("image.mirrors.\"{registry}\"");
        if let Err(why) = registry_host(registry) {
            bad(key.clone(), why);
        }
        for (i, mirror) in mirrors.iter().enumerate() {
            if let Err(why) = mirror_location(mirror) {
                bad(format!("{key}[{i}]"), why);
            }
        }
    }

    absolute(
        &config.network.cni_config_dir,
        "network.cni_config_dir",
        &mut bad,
    );
    if config.network.plugin_timeout_secs == 0 {
        bad(
            "network.plugin_timeout_secs".into(),
            "must be at least 1".into(),
        );
    }
    if config.network.cni_plugin_dirs.is_empty() {
        bad(
            "network.cni_plugin_dirs".into(),
            "needs at least one directory".into(),
        );
    }
    for (i, dir) in config.network.cni_plugin_dirs.iter().enumerate() {
        absolute(dir, &format!("network.cni_plugin_dirs[{i}]"), &mut bad);
    }

    absolute(&config.storage.root, "storage.root", &mut bad);
    absolute(&config.storage.runroot, "storage.runroot", &mut bad);
    if config.storage.root == config.storage.runroot {
        bad(
            "storage.runroot".into(),
            "must differ from storage.root: volatile and persistent state would mix".into(),
        );
    }
    problems
}

fn absolute(path: &Path, key: &str, bad: &mut impl FnMut(String, String)) {
    if !path.is_absolute() {
        bad(
            key.to_owned(),
            format!("`{}` must be an absolute path", path.display()),
        );
    }
}

/// Handler names travel in `RunPodSandboxRequest.runtime_handler` and become directory names.
fn is_handler_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// A registry is named by `host[:port]`: a DNS name, an IPv4 address or a bracketed IPv6 one.
pub(crate) fn registry_host(s: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: unclosed '[' in IPv6 address"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{s}`: `{addr}` is not an IPv6 address"))?;
        match after {
            "" => (addr, None),
            p => (
                addr,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{s}`: expected ':port' after ']'"))?,
                ),
            ),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!(
            "`{s}`: port `{port}` is not a number from 1 to 65535"
        ));
    }
    if s.starts_with('[') {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{s}` is not a registry host: expected host[:port] with no scheme or path"
        ));
    }
    Ok(())
}

/// A mirror is `http://host[:port][/path]`, `https://…`, or a bare `host[:port][/path]` (HTTPS).
fn mirror_location(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    if rest.contains("://") {
        return Err(format!(
            "`{s}`: only http:// and https:// mirrors are supported"
        ));
    }
    let host = rest.split('/').next().unwrap_or_default();
    registry_host(host).map_err(|why| format!("mirror {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        for ok in [
            "docker.io",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
            "[fd00::1]",
            "a-b.example.com",
        ] {
            assert_eq!(registry_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "http://docker.io",
            "docker.io/library",
            "host:0",
            "host:99999",
            "-a.com",
            "[::1",
            "a..b",
        ] {
            assert!(registry_host(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn mirror_locations() {
        for ok in [
            "http://127.0.0.1:5000",
            "https://mirror.example/v2-cache",
            "mirror.local:8443",
        ] {
            assert_eq!(mirror_location(ok), Ok(()), "{ok}");
        }
        for bad in ["ftp://x", "http://", "http://bad host"] {
            assert!(mirror_location(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn handler_names() {
        assert!(is_handler_name("runc"));
        assert!(is_handler_name("kata-qemu"));
        assert!(!is_handler_name(""));
        assert!(!is_handler_name("Runc"));
        assert!(!is_handler_name("a/b"));
    }
}

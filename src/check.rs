//! `crid check`: validates the host against the configuration and prints a readable report.
//!
//! It uses the same probes as `Status`, so what it reports is what the kubelet will see.

use std::fmt;
use std::path::PathBuf;

use crate::config::Config;
use crate::host::{self, CgroupMode};
use crate::{network, runtime};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Works.
    Ok,
    /// Works with a caveat, or an optional part is missing.
    Warn,
    /// crid cannot work as configured.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// What was checked, e.g. `runtime runc`.
    pub subject: String,
    /// What was found.
    pub detail: String,
}

/// All findings, in the order they were checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, subject: impl Into<String>, detail: impl Into<String>) {
        self.findings.push(Finding {
            level,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    /// True when nothing failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.level != Level::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .findings
            .iter()
            .map(|x| x.subject.len())
            .max()
            .unwrap_or(0);
        for x in &self.findings {
            let tag = match x.level {
                Level::Ok => " ok ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            writeln!(f, "[{tag}] {:width$}  {}", x.subject, x.detail)?;
        }
        let count = |l| self.findings.iter().filter(|x| x.level == l).count();
        write!(
            f,
            "\n{} ok, {} warnings, {} failures",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail)
        )
    }
}

/// Checks runtimes, CNI, overlayfs and cgroups against `config`.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();

    // The same registry the daemon's Status and RunPodSandbox ask.
    let runtimes = runtime::RuntimeRegistry::new(config, crate::monitor::binary());
    for name in config.runtime.runtimes.keys() {
        let is_default = *name == config.runtime.default_runtime;
        let subject = if is_default {
            format!("runtime {name} (default)")
        } else {
            format!("runtime {name}")
        };
        match runtimes.probe(name).await {
            Ok(p) => report.push(
                Level::Ok,
                subject,
                format!("{} ({})", p.version, p.binary.display()),
            ),
            // Only the default handler is needed for crid to be ready; others are optional.
            Err(e) => report.push(
                if is_default { Level::Fail } else { Level::Warn },
                subject,
                e.to_string(),
            ),
        }
    }

    let dir = &config.network.cni_config_dir;
    match network::discover(dir) {
        Err(e) => report.push(
            Level::Fail,
            "cni config",
            format!("cannot read {}: {e}", dir.display()),
        ),
        Ok(d) => {
            for (file, why) in &d.rejected {
                report.push(
                    Level::Warn,
                    "cni config",
                    format!("skipped {}: {why}", file.display()),
                );
            }
            match d.default {
                None => report.push(
                    Level::Warn,
                    "cni config",
                    format!(
                        "no network configuration in {}: pods will not get a network",
                        dir.display()
                    ),
                ),
                Some(net) => {
                    report.push(
                        Level::Ok,
                        "cni config",
                        format!("network {} from {}", net.name, net.file.display()),
                    );
                    // The chain and the IPAM plugins it delegates to. No loopback plugin:
                    // crid brings `lo` up itself when it pins a pod's network namespace.
                    let mut versioned = net.plugin_types.clone();
                    for ipam in ipam_types(&net.list) {
                        if !versioned.contains(&ipam) {
                            versioned.push(ipam);
                        }
                    }
                    for plugin in versioned.clone() {
                        match find_plugin(&config.network.cni_plugin_dirs, &plugin) {
                            Some(p) => {
                                report.push(
                                    Level::Ok,
                                    format!("cni plugin {plugin}"),
                                    p.display().to_string(),
                                );
                                if versioned.contains(&plugin) {
                                    check_plugin_version(
                                        &mut report,
                                        config,
                                        &plugin,
                                        &net.cni_version,
                                    )
                                    .await;
                                }
                            }
                            None => report.push(
                                Level::Fail,
                                format!("cni plugin {plugin}"),
                                format!(
                                    "not found in {}",
                                    join_paths(&config.network.cni_plugin_dirs)
                                ),
                            ),
                        }
                    }
                }
            }
        }
    }

    if host::overlayfs_available() {
        report.push(Level::Ok, "overlayfs", "available");
    } else {
        report.push(
            Level::Fail,
            "overlayfs",
            "the kernel lists no overlay filesystem (try `modprobe overlay`)",
        );
    }

    let mode = host::cgroup_mode();
    let detail = mode.to_string();
    match mode {
        CgroupMode::Unknown => report.push(
            Level::Fail,
            "cgroups",
            "no cgroup filesystem at /sys/fs/cgroup",
        ),
        CgroupMode::Hybrid if config.runtime.runtimes.contains_key("crun") => report.push(
            Level::Warn,
            "cgroups",
            format!("{detail}; crun runs in a private mount namespace without the v2 hierarchy"),
        ),
        _ => report.push(Level::Ok, "cgroups", detail),
    }

    let apparmor = host::apparmor::probe();
    let detail = match &apparmor {
        host::apparmor::Support::Enabled { .. } => format!(
            "{apparmor}; RuntimeDefault containers get {} ({})",
            crate::spec::apparmor::DEFAULT_PROFILE,
            match host::apparmor::loaded(crate::spec::apparmor::DEFAULT_PROFILE) {
                Ok(Some(mode)) => format!("loaded, {mode}"),
                Ok(None) => "loaded at first use".to_owned(),
                Err(e) => e.to_string(),
            }
        ),
        host::apparmor::Support::Disabled { .. } => {
            format!("{apparmor}; containers run without a profile, Localhost profiles are refused")
        }
    };
    report.push(Level::Ok, "apparmor", detail);

    let host = host::probe_resources();
    let hugetlb = if host.hugetlb_controller {
        format!(
            "hugetlb controller for {}",
            host.hugetlb_sizes
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if config.runtime.tolerate_missing_hugetlb_controller {
        "no hugetlb controller: hugepage_limits are dropped from containers' specs".to_owned()
    } else {
        "no hugetlb controller: containers with hugepage_limits (every one a kubelet creates) are refused; set [runtime] tolerate_missing_hugetlb_controller = true".to_owned()
    };
    let level = if host.hugetlb_controller || config.runtime.tolerate_missing_hugetlb_controller {
        Level::Ok
    } else {
        Level::Warn
    };
    report.push(level, "cgroup limits", hugetlb);
    report.push(
        Level::Ok,
        "cgroup limits",
        format!(
            "swap accounting: {}; cgroup v2 controllers for unified keys: {}; lowest oom_score_adj: {}; memory nodes: {}",
            if host.swap_accounting { "yes" } else { "no (swap limits are dropped)" },
            host.unified_controllers
                .as_ref()
                .map_or("none (v1 limits; unified keys are refused)".to_owned(), |c| c.iter().cloned().collect::<Vec<_>>().join(" ")),
            host.oom_score_adj_min,
            host.memory_nodes.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        ),
    );

    for (subject, path) in [
        ("storage root", &config.storage.root),
        ("storage runroot", &config.storage.runroot),
    ] {
        let detail = match nearest_existing(path) {
            Some(p) if p == *path => format!("{} exists", path.display()),
            Some(p) => format!("{} will be created under {}", path.display(), p.display()),
            None => format!("{} has no existing ancestor", path.display()),
        };
        report.push(Level::Ok, subject, detail);
    }
    check_modes(&mut report, config);
    report
}

/// Directories of image and container content other users can walk into are a way to
/// root (a setuid binary of an image); the daemon repairs them at start, this reports them.
fn check_modes(report: &mut Report, config: &Config) {
    let layout = crate::state::Layout::new(&config.storage.root, &config.storage.runroot);
    let mut problems = Vec::new();
    // A root others can list is untidy; a content directory others can enter is the hole.
    let mut level = Level::Warn;
    for (dir, access) in layout.private_dirs() {
        let problem = crate::state::access::mode_problem(&dir, access);
        if access == crate::state::access::Access::Private && !matches!(problem, Ok(None)) {
            level = Level::Fail;
        }
        match problem {
            Ok(None) => {}
            Ok(Some(r)) => problems.push(format!(
                "{} is {:04o}, must be {:04o}",
                dir.display(),
                r.was,
                r.now
            )),
            Err(e) => problems.push(format!("cannot stat {}: {e}", dir.display())),
        }
    }
    if problems.is_empty() {
        report.push(
            Level::Ok,
            "storage modes",
            "image and container content is private to root",
        );
    } else {
        report.push(
            level,
            "storage modes",
            format!(
                "other users can reach crid's directories: {} (crid repairs these modes when it starts)",
                problems.join("; ")
            ),
        );
    }
}

/// Asks a plugin of the default network (CNI VERSION) whether it speaks the network's
/// `cniVersion`; a plugin that does not fails every ADD.
async fn check_plugin_version(report: &mut Report, config: &Config, plugin: &str, wanted: &str) {
    let subject = format!("cni plugin {plugin} version");
    let cni = network::Cni::from_config(config).with_timeout(VERSION_TIMEOUT);
    match cni.version(plugin).await {
        Err(e) => report.push(Level::Warn, subject, e.to_string()),
        Ok(versions) if wanted.is_empty() || versions.iter().any(|v| v == wanted) => report.push(
            Level::Ok,
            subject,
            format!("supports {}", versions.join(", ")),
        ),
        Ok(versions) => report.push(
            Level::Fail,
            subject,
            format!(
                "does not support cniVersion {wanted} of the network (supports {})",
                versions.join(", ")
            ),
        ),
    }
}

/// How long `crid check` waits for a plugin's VERSION answer.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The `ipam.type` of each plugin of a network list that has one.
fn ipam_types(list: &serde_json::Value) -> Vec<String> {
    list.get("plugins")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/ipam/type").and_then(serde_json::Value::as_str))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn find_plugin(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| runtime::resolve_binary(p).is_some())
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn nearest_existing(path: &std::path::Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|p| p.exists())
        .map(std::path::Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::{RuntimeHandler, RuntimeKind};

    #[tokio::test]
    async fn missing_default_runtime_and_plugin_fail_the_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&net).expect("mkdir");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(
            net.join("10.conflist"),
            r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#,
        )
        .expect("write");
        for plugin in ["bridge", "host-local", "loopback"] {
            let p = bin.join(plugin);
            std::fs::write(
                &p,
                "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n",
            )
            .expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut config = Config::default();
        config.network.cni_config_dir = net.clone();
        config.network.cni_plugin_dirs = vec![bin.clone()];
        config.storage.root = dir.path().join("root");
        config.storage.runroot = dir.path().join("run");
        config.runtime.runtimes.insert(
            "runc".into(),
            RuntimeHandler {
                path: "/nonexistent/runc".into(),
                root: None,
                kind: RuntimeKind::Oci,
                args: Vec::new(),
                always_infra: false,
                timeout_secs: None,
                exit_via_wait: None,
            },
        );
        let report = run(&config).await;
        let level_of = |s: &str| {
            report
                .findings
                .iter()
                .find(|f| f.subject == s)
                .map(|f| f.level)
        };
        assert_eq!(
            level_of("runtime runc (default)"),
            Some(Level::Fail),
            "{report}"
        );
        assert_eq!(level_of("cni plugin bridge"), Some(Level::Ok), "{report}");
        assert_eq!(
            level_of("cni plugin loopback"),
            None,
            "crid needs no loopback plugin: {report}"
        );
        assert_eq!(
            level_of("cni plugin host-local version"),
            Some(Level::Ok),
            "{report}"
        );
        assert_eq!(
            level_of("cni plugin bridge version"),
            Some(Level::Ok),
            "{report}"
        );
        assert!(!report.passed());
        assert_eq!(level_of("storage modes"), Some(Level::Ok), "{report}");

        // A layer store others can enter (as crid before 0.1 made it) fails.
        let layers = dir.path().join("root/storage/layers");
        std::fs::create_dir_all(&layers).expect("mkdir");
        std::fs::set_permissions(&layers, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let report = run(&config).await;
        let modes = report
            .findings
            .iter()
            .find(|f| f.subject == "storage modes")
            .expect("storage modes finding");
        assert_eq!(modes.level, Level::Fail, "{report}");
        assert!(
            modes
                .detail
                .contains("storage/layers is 0755, must be 0700"),
            "{report}"
        );

        // A network in a cniVersion the plugin does not speak fails.
        std::fs::write(
            net.join("10.conflist"),
            r#"{"cniVersion":"1.1.0","name":"t","plugins":[{"type":"bridge"}]}"#,
        )
        .expect("write");
        let report = run(&config).await;
        assert_eq!(
            report
                .findings
                .iter()
                .find(|f| f.subject == "cni plugin bridge version")
                .map(|f| f.level),
            Some(Level::Fail),
            "{report}"
        );

        std::fs::remove_file(bin.join("bridge")).expect("rm");
        let report = run(&config).await;
        assert_eq!(
            report
                .findings
                .iter()
                .find(|f| f.subject == "cni plugin bridge")
                .map(|f| f.level),
            Some(Level::Fail),
            "{report}"
        );
    }
}

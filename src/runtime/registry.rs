//! The one runtime registry: handler names to runtimes, resolved when asked. Status,
//! RunPodSandbox and `crid check` all ask it, so a runtime binary installed or removed
//! while crid runs is seen by all three at once. A built runtime is cached by its binary's
//! path and modification time, so its version is probed again only when the binary changed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::handler::{OciHandler, RuntimeHandler};
use super::oci::OciRuntime;
use super::shim::ShimHandler;
use super::{HandlerProbe, RuntimeError};
use crate::config::{CgroupDriver, Config, RuntimeHandler as HandlerConfig, RuntimeKind};

/// Why a handler name gives no runtime.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// No handler of that name is configured.
    #[error("runtime_handler: unknown runtime handler `{name}` (configured: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configured names.
        known: String,
    },
    /// The handler's binary is missing or broken.
    #[error("runtime handler {name} is not usable: {source}")]
    Unusable {
        /// The handler.
        name: String,
        /// Why.
        source: Box<RuntimeError>,
    },
}

#[derive(Debug)]
struct Built {
    binary: PathBuf,
    modified: Option<SystemTime>,
    handler: Arc<dyn RuntimeHandler>,
}

/// Every configured runtime handler.
#[derive(Debug)]
pub struct RuntimeRegistry {
    handlers: BTreeMap<String, HandlerConfig>,
    default: String,
    runroot: PathBuf,
    cgroup_driver: CgroupDriver,
    monitor: PathBuf,
    built: Mutex<HashMap<String, Built>>,
    /// Handlers given as they are (tests, and runtimes that are not a binary).
    fixed: BTreeMap<String, Arc<dyn RuntimeHandler>>,
}

impl RuntimeRegistry {
    /// The handlers of `config`; OCI runtimes run their containers under `monitor`.
    pub fn new(config: &Config, monitor: PathBuf) -> Self {
        RuntimeRegistry {
            handlers: config.runtime.runtimes.clone(),
            default: config.runtime.default_runtime.clone(),
            runroot: config.storage.runroot.clone(),
            cgroup_driver: config.runtime.cgroup_driver,
            monitor,
            built: Mutex::default(),
            fixed: BTreeMap::new(),
        }
    }

    /// A registry of ready-made handlers, the first being the default.
    pub fn fixed(handlers: Vec<Arc<dyn RuntimeHandler>>) -> Self {
        let default = handlers
            .first()
            .map(|h| h.name().to_owned())
            .unwrap_or_default();
        RuntimeRegistry {
            handlers: BTreeMap::new(),
            default,
            runroot: PathBuf::new(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            monitor: PathBuf::new(),
            built: Mutex::default(),
            fixed: handlers
                .into_iter()
                .map(|h| (h.name().to_owned(), h))
                .collect(),
        }
    }

    /// The default handler's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Every configured handler name.
    pub fn names(&self) -> Vec<String> {
        self.handlers
            .keys()
            .chain(self.fixed.keys())
            .cloned()
            .collect()
    }

    /// Whether `requested` (empty: the default) names a configured handler; otherwise why
    /// not, naming the configured ones, for a field other than RunPodSandbox's own
    /// (`image.runtime_handler`, say) to carry.
    pub fn check_known(&self, requested: &str) -> Result<(), String> {
        match self.resolve_name(requested) {
            Ok(_) => Ok(()),
            Err(HandlerError::Unknown { known, .. }) => Err(format!(
                "unknown runtime handler `{requested}` (configured: {known})"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The configured name `requested` stands for (empty: the default).
    pub fn resolve_name(&self, requested: &str) -> Result<String, HandlerError> {
        let name = if requested.is_empty() {
            self.default.as_str()
        } else {
            requested
        };
        if self.handlers.contains_key(name) || self.fixed.contains_key(name) {
            return Ok(name.to_owned());
        }
        Err(HandlerError::Unknown {
            name: name.to_owned(),
            known: self.names().join(", "),
        })
    }

    /// The runtime of handler `requested` (empty: the default), as its binary is now.
    pub async fn get(
        &self,
        requested: &str,
    ) -> Result<(String, Arc<dyn RuntimeHandler>), HandlerError> {
        let name = self.resolve_name(requested)?;
        if let Some(h) = self.fixed.get(&name) {
            return Ok((name, h.clone()));
        }
        let Some(config) = self.handlers.get(&name) else {
            return Err(HandlerError::Unknown {
                known: self.names().join(", "),
                name,
            });
        };
        let unusable = |source| HandlerError::Unusable {
            name: name.clone(),
            source: Box::new(source),
        };
        let binary = super::resolve_binary(&config.path).ok_or_else(|| {
            unusable(RuntimeError::NotFound {
                handler: name.clone(),
                path: config.path.clone(),
                searched_path: !config.path.is_absolute(),
            })
        })?;
        let modified = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
        if let Some(b) = self.lock().get(&name)
            && b.binary == binary
            && b.modified == modified
        {
            return Ok((name, b.handler.clone()));
        }
        let timeout = config.timeout_secs.map(Duration::from_secs);
        let handler: Arc<dyn RuntimeHandler> = match config.kind {
            RuntimeKind::Oci => {
                let mut runtime = OciRuntime::new(&name, config, &self.runroot, self.cgroup_driver)
                    .await
                    .map_err(unusable)?;
                if let Some(t) = timeout {
                    runtime = runtime.with_timeout(t);
                }
                Arc::new(
                    OciHandler::new(runtime, self.monitor.clone())
                        .always_infra(config.always_infra),
                )
            }
            RuntimeKind::Vm => {
                let shim = ShimHandler::new(&name, binary.clone(), &self.runroot)
                    .always_infra(config.always_infra);
                Arc::new(match timeout {
                    Some(t) => shim.with_timeout(t),
                    None => shim,
                })
            }
        };
        self.lock().insert(
            name.clone(),
            Built {
                binary,
                modified,
                handler: handler.clone(),
            },
        );
        Ok((name, handler))
    }

    /// Runs handler `name`'s binary with its version flag: what RuntimeReady and
    /// `crid check` report.
    pub async fn probe(&self, name: &str) -> Result<HandlerProbe, HandlerError> {
        let name = self.resolve_name(name)?;
        if let Some(h) = self.fixed.get(&name) {
            return Ok(HandlerProbe {
                binary: PathBuf::new(),
                version: h.name().to_owned(),
            });
        }
        let Some(config) = self.handlers.get(&name) else {
            return Err(HandlerError::Unknown {
                known: self.names().join(", "),
                name,
            });
        };
        super::probe(&name, config)
            .await
            .map_err(|source| HandlerError::Unusable {
                name,
                source: Box::new(source),
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Built>> {
        self.built.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.storage.runroot = dir.join("run");
        c.runtime.runtimes.clear();
        c.runtime.runtimes.insert(
            "late".into(),
            HandlerConfig {
                path: dir.join("bin/late-runtime"),
                root: None,
                kind: RuntimeKind::Oci,
                args: Vec::new(),
                always_infra: false,
                timeout_secs: None,
                exit_via_wait: None,
            },
        );
        c.runtime.runtimes.insert(
            "kata".into(),
            HandlerConfig {
                path: "/bin/true".into(),
                root: None,
                kind: RuntimeKind::Vm,
                args: Vec::new(),
                always_infra: false,
                timeout_secs: None,
                exit_via_wait: None,
            },
        );
        c.runtime.default_runtime = "late".into();
        c
    }

    /// The stale-handler bug: Status said RuntimeReady for a runtime installed after
    /// start while RunPodSandbox answered "unknown runtime handler" until a restart.
    /// Both now ask the same registry, which looks at the binary every time.
    #[tokio::test]
    async fn a_runtime_installed_or_removed_while_running_is_seen_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RuntimeRegistry::new(&config(dir.path()), "/bin/false".into());
        let missing = registry.get("").await.expect_err("not installed yet");
        assert!(
            matches!(missing, HandlerError::Unusable { .. }),
            "{missing}"
        );
        assert!(registry.probe("late").await.is_err());

        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let path = bin.join("late-runtime");
        std::fs::write(&path, "#!/bin/sh\necho 'late version 1.0'\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        let (name, handler) = registry.get("").await.expect("installed now");
        assert_eq!((name.as_str(), handler.name()), ("late", "late"));
        assert_eq!(
            registry.probe("late").await.expect("probe").version,
            "late version 1.0"
        );

        std::fs::remove_file(&path).expect("uninstall");
        assert!(
            registry.get("late").await.is_err(),
            "removed: refused at once"
        );
        assert!(registry.probe("").await.is_err());
    }

    #[tokio::test]
    async fn unknown_handlers_are_refused_and_vm_handlers_are_shims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = RuntimeRegistry::new(&config(dir.path()), "/bin/false".into());
        let e = registry.get("nope").await.expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "runtime_handler: unknown runtime handler `nope` (configured: kata, late)"
        );
        let (_, kata) = registry.get("kata").await.expect("a shim v2 handler");
        assert_eq!(kata.kind(), RuntimeKind::Vm);
    }
}

//! The composition root: [`Daemon::open`] takes the storage root, opens the image store and
//! the runtime registry, builds the pod and container services over their seams and runs
//! recovery; `server` only serves and translates. The daemon also answers the
//! runtime-information operations of the CRI (version, status, runtime config).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::config::{CgroupDriver, Config};
use crate::container::{ContainerService, Settings};
use crate::image::{ImageService, LocalImages};
use crate::pod::PodService;
use crate::registry::Registry;
use crate::runtime::RuntimeRegistry;
use crate::state::Layout;
use crate::state::store::DiskRecords;
use crate::{host, network};

/// The name crid reports in `VersionResponse.runtime_name`.
pub const RUNTIME_NAME: &str = "crid";
/// crid's version, from Cargo.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The CRI API version crid serves.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet runtime API version reported in `VersionResponse.version` (fixed at 0.1.0 upstream).
pub const KUBELET_API_VERSION: &str = "0.1.0";

/// Why the daemon could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The storage root could not be locked (another crid uses it) or its directories
    /// could not be created or secured.
    #[error("{0}")]
    Root(std::io::Error),
    /// The image store could not be opened.
    #[error("cannot open the image store: {0}")]
    Images(#[from] crate::image::ImageError),
    /// The exit directory could not be watched.
    #[error("cannot watch the exit directory: {0}")]
    Exits(std::io::Error),
    /// Pods and containers could not be recovered.
    #[error("cannot recover pods and containers: {0}")]
    Recovery(#[from] crate::error::Error),
}

/// Errors of the core operations; the gRPC edge maps each variant to one status code.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field, as named in api.proto.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// One readiness condition of `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `RuntimeReady` or `NetworkReady`.
    pub kind: &'static str,
    /// Whether the condition holds.
    pub ready: bool,
    /// A CamelCase reason when not ready.
    pub reason: String,
    /// A human-readable explanation when not ready.
    pub message: String,
}

impl Condition {
    fn ready(kind: &'static str) -> Self {
        Self {
            kind,
            ready: true,
            reason: String::new(),
            message: String::new(),
        }
    }

    fn not_ready(kind: &'static str, reason: &str, message: String) -> Self {
        Self {
            kind,
            ready: false,
            reason: reason.to_owned(),
            message,
        }
    }
}

/// Features a runtime handler supports, as `StatusResponse.runtime_handlers` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// Handler name; the default handler is also reported under the empty name.
    pub name: String,
    /// Recursive read-only mounts (`rro` in the runtime's features, Linux 5.12+).
    pub recursive_read_only_mounts: bool,
    /// User namespaces for pods (not supported yet, whatever the runtime).
    pub user_namespaces: bool,
}

/// Everything a running daemon serves: built by [`Daemon::open`].
#[derive(Debug)]
pub struct Services {
    /// Runtime information.
    pub daemon: Arc<Daemon>,
    /// The image store.
    pub images: Arc<ImageService>,
    /// Pods and containers, and their events.
    pub registry: Arc<Registry>,
    /// The pod service.
    pub pods: Arc<PodService>,
    /// The container service.
    pub containers: Arc<ContainerService>,
    /// The storage root, held for the daemon's lifetime.
    _root_lock: nix::fcntl::Flock<std::fs::File>,
}

/// What `Status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// RuntimeReady, then NetworkReady.
    pub conditions: Vec<Condition>,
    /// Every configured handler.
    pub handlers: Vec<HandlerFeatures>,
}

/// The daemon's runtime information. One instance serves all RPCs; it holds no global lock.
#[derive(Debug)]
pub struct Daemon {
    config: Config,
    runtimes: Arc<RuntimeRegistry>,
    host_resources: crate::spec::HostResources,
    pod_cidr: RwLock<String>,
}

impl Daemon {
    /// A core over an already validated configuration, resolving handlers through
    /// `runtimes`.
    pub fn new(
        config: Config,
        runtimes: Arc<RuntimeRegistry>,
        host_resources: crate::spec::HostResources,
    ) -> Self {
        Self {
            config,
            runtimes,
            host_resources,
            pod_cidr: RwLock::new(String::new()),
        }
    }

    /// Opens everything a serving daemon needs, in order: the storage root's lock (a second
    /// crid on the same root would "recover" this one's pods and pulls), its directories
    /// (an older crid's modes are repaired before any content is read), the image store
    /// (which removes what an interrupted pull left), the runtime registry, the services,
    /// the exit watch and recovery. Nothing is served before this returns, so a client
    /// never sees half-recovered state.
    pub async fn open(config: Config) -> Result<Services, OpenError> {
        let storage = &config.storage;
        let layout = Layout::new(&storage.root, &storage.runroot);
        let root_lock = layout.lock().map_err(OpenError::Root)?;
        layout.create().map_err(OpenError::Root)?;
        let images = Arc::new(ImageService::open(&config)?);
        let runtimes = Arc::new(RuntimeRegistry::new(&config, crate::monitor::binary()));
        let host_resources = host::probe_resources();
        let registry = Registry::new(Arc::new(DiskRecords::new(layout.clone())));
        let containers = ContainerService::new(
            registry.clone(),
            runtimes.clone(),
            Arc::new(host::Linux),
            Arc::new(LocalImages(images.clone())),
            layout,
            Settings::new(&config, host_resources.clone()),
        );
        tracing::info!(apparmor = %containers.settings().apparmor, "AppArmor");
        let pods = PodService::new(
            registry.clone(),
            containers.clone(),
            Arc::new(network::Cni::from_config(&config)),
        );
        // Watch before recovering, so an exit during recovery is not missed.
        containers.watch_exits().map_err(OpenError::Exits)?;
        crate::recover::recover(&pods).await?;
        containers.watch_live_monitors();
        Ok(Services {
            daemon: Arc::new(Daemon::new(config, runtimes, host_resources)),
            images,
            registry,
            pods,
            containers,
            _root_lock: root_lock,
        })
    }

    /// What the host's cgroups can enforce, as probed at start.
    pub fn host_resources(&self) -> &crate::spec::HostResources {
        &self.host_resources
    }

    /// The runtime handlers.
    pub fn runtimes(&self) -> &Arc<RuntimeRegistry> {
        &self.runtimes
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// RuntimeReady holds when the default handler's binary runs; NetworkReady when a
    /// valid CNI configuration exists. Both are checked afresh on every call, so a runtime
    /// installed or a CNI config written later is picked up without a restart.
    pub async fn status(&self) -> RuntimeStatus {
        let default = self.runtimes.default_name().to_owned();
        // The same registry RunPodSandbox asks: both see a runtime as it is now.
        let runtime = match self.runtimes.probe(&default).await {
            Ok(_) => Condition::ready("RuntimeReady"),
            Err(crate::runtime::HandlerError::Unknown { .. }) => Condition::not_ready(
                "RuntimeReady",
                "RuntimeHandlerMissing",
                format!("default runtime handler {default} is not configured"),
            ),
            Err(e) => Condition::not_ready("RuntimeReady", "RuntimeNotReady", e.to_string()),
        };

        let dir = &self.config.network.cni_config_dir;
        let network = match network::discover(dir) {
            Ok(d) if d.default.is_some() => Condition::ready("NetworkReady"),
            Ok(d) => {
                let mut message =
                    format!("no valid CNI network configuration in {}", dir.display());
                for (file, why) in &d.rejected {
                    message.push_str(&format!("; {}: {why}", file.display()));
                }
                Condition::not_ready("NetworkReady", "NetworkPluginNotReady", message)
            }
            Err(e) => Condition::not_ready(
                "NetworkReady",
                "NetworkPluginNotReady",
                format!(
                    "cannot read CNI configuration directory {}: {e}",
                    dir.display()
                ),
            ),
        };

        // Each handler's features as its runtime reports them (probed once per binary); a
        // handler that cannot be made supports nothing.
        let mut handlers = Vec::new();
        for name in self.runtimes.names() {
            let features = match self.runtimes.get(&name).await {
                Ok((_, h)) => h.features(),
                Err(_) => Default::default(),
            };
            handlers.push(HandlerFeatures {
                name,
                recursive_read_only_mounts: features.recursive_read_only_mounts,
                user_namespaces: features.user_namespaces,
            });
        }
        // The kubelet looks up the empty name for pods that ask for no handler.
        if let Some(d) = handlers.iter().find(|h| h.name == default).cloned() {
            handlers.insert(
                0,
                HandlerFeatures {
                    name: String::new(),
                    ..d
                },
            );
        }
        RuntimeStatus {
            conditions: vec![runtime, network],
            handlers,
        }
    }

    /// Extra information for a verbose `Status`: values are JSON documents, as upstream does.
    pub async fn status_info(&self) -> BTreeMap<String, String> {
        let json = |v: serde_json::Value| v.to_string();
        let config = serde_json::to_value(&self.config).unwrap_or_default();
        let handlers = json(self.handlers_info().await);
        BTreeMap::from([
            ("runtimeHandlers".to_owned(), handlers),
            ("config".to_owned(), json(config)),
            ("podCIDR".to_owned(), json(self.pod_cidr().into())),
            (
                "cgroupMode".to_owned(),
                json(host::cgroup_mode().to_string().into()),
            ),
            (
                "hostResources".to_owned(),
                serde_json::to_string(&self.host_resources).unwrap_or_default(),
            ),
        ])
    }

    /// Each handler's kind, binary, version and features, as its runtime answers now; an
    /// unusable handler says why.
    async fn handlers_info(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for name in self.runtimes.names() {
            let entry = match (
                self.runtimes.get(&name).await,
                self.runtimes.probe(&name).await,
            ) {
                (Ok((_, h)), Ok(probe)) => {
                    let f = h.features();
                    serde_json::json!({
                        "kind": h.kind(),
                        "binary": probe.binary,
                        "version": probe.version,
                        "features": {
                            "recursiveReadOnlyMounts": f.recursive_read_only_mounts,
                            "userNamespaces": f.user_namespaces,
                        },
                    })
                }
                (Err(e), _) => serde_json::json!({ "error": e.to_string() }),
                (_, Err(e)) => serde_json::json!({ "error": e.to_string() }),
            };
            out.insert(name, entry);
        }
        serde_json::Value::Object(out)
    }

    /// The cgroup driver the kubelet must match.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.config.runtime.cgroup_driver
    }

    /// The pod CIDR last given by the kubelet (empty when none).
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Records the node's pod CIDR: one CIDR, or two separated by a comma for dual stack.
    pub fn update_pod_cidr(&self, cidr: &str) -> Result<(), DaemonError> {
        let field = "runtime_config.network_config.pod_cidr";
        let cidr = cidr.trim();
        if !cidr.is_empty() {
            for part in cidr.split(',') {
                parse_cidr(part.trim())
                    .map_err(|reason| DaemonError::InvalidArgument { field, reason })?;
            }
        }
        if let Ok(mut current) = self.pod_cidr.write() {
            current.clear();
            current.push_str(cidr);
        }
        tracing::info!(pod_cidr = cidr, "pod CIDR updated");
        Ok(())
    }
}

/// Parses `addr/prefix`, checking the prefix fits the address family.
fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a CIDR (expected address/prefix)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{s}`: `{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok((addr, p)),
        _ => Err(format!("`{s}`: prefix must be a number from 0 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon() -> Daemon {
        let config = Config::default();
        let runtimes = Arc::new(RuntimeRegistry::new(&config, "crid-monitor".into()));
        Daemon::new(config, runtimes, Default::default())
    }

    #[test]
    fn pod_cidr_accepts_single_and_dual_stack() {
        let d = daemon();
        d.update_pod_cidr("10.88.0.0/16").expect("v4");
        assert_eq!(d.pod_cidr(), "10.88.0.0/16");
        d.update_pod_cidr("10.88.0.0/16,fd00::/64").expect("dual");
        assert_eq!(d.pod_cidr(), "10.88.0.0/16,fd00::/64");
        d.update_pod_cidr("").expect("clear");
        assert_eq!(d.pod_cidr(), "");
    }

    #[test]
    fn bad_pod_cidr_names_the_field_and_keeps_the_old_value() {
        let d = daemon();
        d.update_pod_cidr("10.0.0.0/8").expect("v4");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "fd00::/129",
            "nonsense/8",
            "10.0.0.0/8,",
        ] {
            let err = d.update_pod_cidr(bad).expect_err(bad);
            assert!(
                err.to_string()
                    .starts_with("runtime_config.network_config.pod_cidr: "),
                "{err}"
            );
        }
        assert_eq!(d.pod_cidr(), "10.0.0.0/8");
    }
}

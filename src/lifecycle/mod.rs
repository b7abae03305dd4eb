//! The pod and container core: the registry of pods and containers, the errors their
//! operations return, and how container exits reach their records.
//!
//! The operations themselves live with their subject: `crate::pod::sandbox` (RunPodSandbox
//! and friends) and `crate::container` (CreateContainer and friends); recovery after a
//! restart lives in `recover`. There is no global lock: the maps below are held only to
//! look up or insert, and each object has its own operation lock (see [`Object`]).

pub mod object;
mod recover;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use object::Object;

use crate::config::{CgroupDriver, Config, RuntimeKind};
use crate::image::{ImageError, ImageService, ImageUsers};
use crate::monitor::exit;
use crate::runtime::RuntimeError;
use crate::runtime::oci::OciRuntime;
use crate::state::{ContainerRecord, ContainerState, Layout, PodRecord};

/// Why a pod or container operation failed; the gRPC edge maps each variant once.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as named in api.proto.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No such pod or container.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `pod sandbox` or `container`.
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// A name is already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is in the wrong state for the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation did not finish in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The runtime handler failed.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done, naming the object.
        what: String,
        /// The runtime's error.
        source: Box<RuntimeError>,
    },
    /// A CNI plugin failed; the message carries the plugin's own.
    #[error("pod network: {0}")]
    Network(Box<crate::network::CniError>),
    /// The image is missing or broken.
    #[error(transparent)]
    Image(Box<ImageError>),
    /// The host failed us (a mount, a file, a namespace).
    #[error("{what}: {detail}")]
    Internal {
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        detail: String,
    },
}

impl LifecycleError {
    /// An InvalidArgument naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LifecycleError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An Internal error from anything displayable.
    pub fn internal<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> Self {
        let what = what.into();
        move |e| LifecycleError::Internal {
            what,
            detail: e.to_string(),
        }
    }

    /// Wraps a runtime error with what was being done.
    pub fn runtime(what: impl Into<String>) -> impl FnOnce(RuntimeError) -> Self {
        let what = what.into();
        move |source| LifecycleError::Runtime {
            what,
            source: Box::new(source),
        }
    }
}

impl From<ImageError> for LifecycleError {
    fn from(e: ImageError) -> Self {
        LifecycleError::Image(Box::new(e))
    }
}

impl From<crate::network::CniError> for LifecycleError {
    fn from(e: crate::network::CniError) -> Self {
        LifecycleError::Network(Box::new(e))
    }
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, LifecycleError>;

/// Maps an I/O error to Internal naming what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let what = what.into();
    move |e| LifecycleError::Internal {
        what,
        detail: e.to_string(),
    }
}

/// The pod and container core.
pub struct Lifecycle {
    pub(crate) layout: Layout,
    pub(crate) images: Arc<ImageService>,
    pub(crate) runtimes: BTreeMap<String, Arc<OciRuntime>>,
    /// Handlers configured with a type this build cannot run (shim v2), with the type.
    pub(crate) unsupported: BTreeMap<String, RuntimeKind>,
    pub(crate) default_runtime: String,
    pub(crate) cgroup_driver: CgroupDriver,
    pub(crate) pause_image: String,
    pub(crate) log_size_max: Option<u64>,
    pub(crate) monitor: PathBuf,
    pub(crate) host_capabilities: Vec<String>,
    /// What the host's cgroups can enforce, probed once at start.
    pub(crate) host_resources: crate::spec::HostResources,
    /// `[runtime] tolerate_missing_hugetlb_controller`.
    pub(crate) tolerate_missing_hugetlb: bool,
    /// `[runtime] tolerate_unsupported_resources`.
    pub(crate) tolerate_unsupported: bool,
    pub(crate) cni: crate::network::Cni,
    pub(crate) cpu_rates: crate::stats::CpuRates,
    pub(crate) pods: RwLock<HashMap<String, Arc<Object<PodRecord>>>>,
    pub(crate) containers: RwLock<HashMap<String, Arc<Object<ContainerRecord>>>>,
    events: tokio::sync::broadcast::Sender<Event>,
}

/// A container lifecycle event (cri:RuntimeService.GetContainerEvents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The container.
    pub container_id: String,
    /// Its pod.
    pub pod_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When, ns since the epoch.
    pub at_ns: i64,
}

/// The CRI's container event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// CreateContainer finished.
    Created,
    /// StartContainer finished.
    Started,
    /// The container exited.
    Stopped,
    /// RemoveContainer finished.
    Deleted,
}

/// Events buffered per subscriber before a slow one starts missing some.
const EVENT_BUFFER: usize = 1024;

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// How long a container may take to die after SIGKILL before crid stops waiting for its
/// monitor and asks the runtime instead.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long after a monitor ends its exit file may still be on its way through inotify.
const MONITOR_EXIT_GRACE: Duration = Duration::from_millis(500);

/// ContainerStatus.reason of a container whose monitor died without recording its exit.
pub const MONITOR_DIED: &str = "MonitorDied";

impl Lifecycle {
    /// Opens the core: loads the records, reconciles them with the runtimes, the exit
    /// files and the mount table, and starts watching for exits.
    pub async fn open(config: &Config, images: Arc<ImageService>) -> Result<Arc<Lifecycle>> {
        let layout = Layout::new(&config.storage.root, &config.storage.runroot);
        layout
            .create()
            .map_err(io("creating the state directories"))?;
        let mut runtimes = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        for (name, handler) in &config.runtime.runtimes {
            match handler.kind {
                RuntimeKind::Oci => {
                    match OciRuntime::new(
                        name,
                        handler,
                        &config.storage.runroot,
                        config.runtime.cgroup_driver,
                    ) {
                        Ok(r) => {
                            runtimes.insert(name.clone(), Arc::new(r));
                        }
                        // A missing binary makes RuntimeReady false (Status says why);
                        // pods on that handler fail with the same message.
                        Err(e) => tracing::warn!(handler = %name, "runtime handler unusable: {e}"),
                    }
                }
                kind => {
                    unsupported.insert(name.clone(), kind);
                }
            }
        }
        let lifecycle = Arc::new(Lifecycle {
            layout,
            images,
            runtimes,
            unsupported,
            default_runtime: config.runtime.default_runtime.clone(),
            cgroup_driver: config.runtime.cgroup_driver,
            pause_image: config.image.pause_image.clone(),
            log_size_max: (config.runtime.log_size_max > 0).then_some(config.runtime.log_size_max),
            monitor: monitor_binary(),
            host_capabilities: crate::host::bounding_capabilities(),
            host_resources: crate::host::probe_resources(),
            tolerate_missing_hugetlb: config.runtime.tolerate_missing_hugetlb_controller,
            tolerate_unsupported: config.runtime.tolerate_unsupported_resources,
            cni: crate::network::Cni::from_config(config),
            cpu_rates: crate::stats::CpuRates::default(),
            pods: RwLock::default(),
            containers: RwLock::default(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
        });
        // Watch before recovering, so an exit during recovery is not missed.
        let exits = crate::monitor::watch::watch_exits(&lifecycle.layout.exits())
            .map_err(io("watching the exit directory"))?;
        lifecycle.recover().await?;
        tokio::spawn(Self::exit_loop(Arc::downgrade(&lifecycle), exits));
        for c in lifecycle.all_containers(None) {
            let (id, pid, live) = c.read(|r| {
                (
                    r.id.clone(),
                    r.monitor_pid,
                    matches!(r.state, ContainerState::Created | ContainerState::Running),
                )
            });
            if live {
                lifecycle.watch_monitor(&id, pid);
            }
        }
        Ok(lifecycle)
    }

    async fn exit_loop(
        lifecycle: std::sync::Weak<Lifecycle>,
        mut exits: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        while let Some(id) = exits.recv().await {
            let Some(l) = lifecycle.upgrade() else { return };
            l.record_exit(&id);
        }
    }

    /// Applies a container's exit file to its record (a no-op when already applied, or
    /// when the file is not there yet). Returns whether the container is now exited.
    pub(crate) fn record_exit(&self, id: &str) -> bool {
        let Some(c) = self.container(id) else {
            return false;
        };
        let record = match exit::read(&self.layout.exit_file(id)) {
            Ok(Some(r)) => r,
            Ok(None) => return c.read(|r| r.state == ContainerState::Exited),
            Err(e) => {
                tracing::warn!(container = id, "unreadable exit file: {e}");
                return false;
            }
        };
        let result = c.update(|r| {
            let live = matches!(r.state, ContainerState::Created | ContainerState::Running);
            if live {
                mark_exited(
                    r,
                    record.exit_code,
                    record.exited_at_ns,
                    record.oom_killed,
                    "",
                );
            }
            live.then(|| r.pod_id.clone())
        });
        match result {
            Ok(Some(pod_id)) => {
                tracing::info!(
                    container = id,
                    exit_code = record.exit_code,
                    "container exited"
                );
                self.emit(id, &pod_id, EventKind::Stopped);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(container = id, "cannot persist the exit: {e}"),
        }
        true
    }

    /// Watches the life of container `id`'s monitor (`pid`): should it end without an exit
    /// file (SIGKILL, the OOM killer), the container is killed and recorded as exited, as
    /// CRI-O does when conmon dies, instead of being left "running" with nobody to report
    /// its exit. Called after CreateContainer and, for live containers, after recovery.
    pub(crate) fn watch_monitor(self: &Arc<Self>, id: &str, pid: i32) {
        let fd = crate::monitor::liveness::Pidfd::open(pid);
        // Opened first, then checked: a PID reused since the record was written is not
        // this container's monitor, and the pidfd then points at the wrong process.
        let alive = fd.is_ok() && crate::container::is_monitor_of(pid, id);
        let weak = Arc::downgrade(self);
        let id = id.to_owned();
        tokio::spawn(async move {
            if let (true, Ok(fd)) = (alive, fd)
                && let Err(e) = fd.exited().await
            {
                tracing::warn!(container = %id, monitor = pid, "cannot watch the monitor: {e}");
                return;
            }
            // A monitor that ended normally wrote its exit file just before: let the
            // inotify watch deliver it first.
            tokio::time::sleep(MONITOR_EXIT_GRACE).await;
            if let Some(l) = weak.upgrade() {
                l.monitor_ended(&id, pid).await;
            }
        });
    }

    /// Container `id`'s monitor `pid` has ended: apply its exit file, or, when it wrote
    /// none, kill what is left of the container and record it as exited.
    async fn monitor_ended(&self, id: &str, pid: i32) {
        if self.record_exit(id) {
            return;
        }
        let Some(c) = self.container(id) else {
            return;
        };
        let record = c.get();
        if record.monitor_pid != pid
            || !matches!(
                record.state,
                ContainerState::Created | ContainerState::Running
            )
        {
            return;
        }
        tracing::warn!(container = %id, monitor = pid, "the container's monitor died without recording an exit; killing the container");
        let killed = match self.runtime_of(&record) {
            Ok(rt) => match rt.kill(id, "KILL", false).await {
                Ok(()) => "its processes were killed",
                Err(e) => {
                    tracing::warn!(container = %id, "killing a container whose monitor died: {e}");
                    "killing its processes failed (see the daemon log)"
                }
            },
            Err(_) => "its runtime handler is gone",
        };
        // The exit file may have landed while the runtime was asked.
        if self.record_exit(id) {
            return;
        }
        let message = format!(
            "crid-monitor (pid {pid}) died without recording the exit; {killed}; the exit code is unknown"
        );
        let result = c.update(|r| {
            let live = matches!(r.state, ContainerState::Created | ContainerState::Running);
            if live {
                mark_exited(r, 255, crate::state::now_ns(), false, &message);
                r.reason = MONITOR_DIED.to_owned();
            }
            live.then(|| r.pod_id.clone())
        });
        match result {
            Ok(Some(pod_id)) => self.emit(id, &pod_id, EventKind::Stopped),
            Ok(None) => {}
            Err(e) => tracing::error!(container = id, "cannot persist the exit: {e}"),
        }
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes an event (nobody listening is fine).
    pub(crate) fn emit(&self, container_id: &str, pod_id: &str, kind: EventKind) {
        let _ = self.events.send(Event {
            container_id: container_id.to_owned(),
            pod_id: pod_id.to_owned(),
            kind,
            at_ns: crate::state::now_ns(),
        });
    }

    /// A pod by ID.
    /// What the host's cgroups can enforce, as probed at start.
    pub fn host_resources(&self) -> &crate::spec::HostResources {
        &self.host_resources
    }

    /// Applies the host's limits to a container's resources: what it cannot enforce is
    /// dropped with a debug line naming it, or refused with FailedPrecondition when the
    /// configuration says so.
    pub(crate) fn check_enforceable(
        &self,
        id: &str,
        resources: Option<&crid_api::cri::LinuxContainerResources>,
    ) -> Result<()> {
        let Some(r) = resources else { return Ok(()) };
        for lack in crate::spec::host::enforceable(r, &self.host_resources).1 {
            let tolerated = match lack.lack {
                crate::spec::Lack::HugetlbController => self.tolerate_missing_hugetlb,
                crate::spec::Lack::Other => self.tolerate_unsupported,
            };
            if !tolerated {
                return Err(LifecycleError::FailedPrecondition(format!(
                    "container {id}: {lack} (the host cannot enforce it, and crid is configured to refuse)"
                )));
            }
            tracing::debug!(container = %id, "dropped from the OCI spec: {lack}");
        }
        Ok(())
    }

    pub(crate) fn pod(&self, id: &str) -> Option<Arc<Object<PodRecord>>> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// A container by ID.
    pub(crate) fn container(&self, id: &str) -> Option<Arc<Object<ContainerRecord>>> {
        self.containers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every pod.
    pub(crate) fn all_pods(&self) -> Vec<Arc<Object<PodRecord>>> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every container, or those of one pod.
    pub(crate) fn all_containers(&self, pod: Option<&str>) -> Vec<Arc<Object<ContainerRecord>>> {
        self.containers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| pod.is_none_or(|p| c.read(|r| r.pod_id == p)))
            .cloned()
            .collect()
    }

    /// The runtime of a handler name (empty means the default).
    pub(crate) fn runtime(&self, handler: &str) -> Result<(String, Arc<OciRuntime>)> {
        let name = if handler.is_empty() {
            self.default_runtime.as_str()
        } else {
            handler
        };
        if let Some(r) = self.runtimes.get(name) {
            return Ok((name.to_owned(), r.clone()));
        }
        if let Some(kind) = self.unsupported.get(name) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "runtime handler {name} has type {kind:?}, which this build of crid cannot run yet"
            )));
        }
        let known: Vec<&str> = self.runtimes.keys().map(String::as_str).collect();
        Err(LifecycleError::invalid(
            "runtime_handler",
            format!(
                "unknown runtime handler `{name}` (configured: {})",
                known.join(", ")
            ),
        ))
    }
}

impl ImageUsers for Lifecycle {
    fn containers_using(&self, image_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all_containers(None)
            .iter()
            .filter(|c| c.read(|r| r.image_id == image_id))
            .map(|c| c.id().to_owned())
            .collect();
        // Infra containers use the pause image.
        for p in self.all_pods() {
            if p.read(|r| r.infra.as_ref().is_some_and(|i| i.image_id == image_id)) {
                ids.push(p.id().to_owned());
            }
        }
        ids
    }
}

/// Sets the exit fields of a record: the reason follows the CRI's convention.
pub(crate) fn mark_exited(
    r: &mut ContainerRecord,
    exit_code: i32,
    exited_at_ns: i64,
    oom_killed: bool,
    message: &str,
) {
    r.state = ContainerState::Exited;
    r.exit_code = exit_code;
    r.finished_at_ns = exited_at_ns;
    r.reason = if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
    .to_owned();
    r.message = message.to_owned();
}

/// crid-monitor: next to the running executable (how it is installed and built), else PATH.
fn monitor_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("crid-monitor")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => crate::runtime::resolve_binary(std::path::Path::new("crid-monitor"))
            .unwrap_or_else(|| PathBuf::from("crid-monitor")),
    }
}

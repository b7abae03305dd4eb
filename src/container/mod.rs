//! The container service: created -> running -> exited, and removal.
//!
//! CreateContainer mounts the rootfs, builds the OCI spec (`crate::spec`, pure) and has the
//! pod's runtime handler create the container; exits come back through the exit files the
//! handler writes (`exits` watches them), so nothing polls containers. The service holds
//! only what it uses, each behind a seam: the shared [`Registry`], the [`RuntimeRegistry`],
//! the [`Host`] for the kernel side and an [`ImageSource`].

pub mod bundle;
mod cdi;
mod exits;
pub mod log_path;
pub mod stats;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cri::NamespaceMode;
use crid_api::cri;

pub use exits::MONITOR_DIED;

use crate::config::{CgroupDriver, Config};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::image::ImageSource;
use crate::monitor::liveness::is_monitor_of;
use crate::registry::{EventKind, Object, Registry};
use crate::runtime::{CreateRequest, Created, ExecOutput, RuntimeHandler, RuntimeRegistry};
use crate::spec::{self, HostResources, PidNamespace, PodFiles, PodNamespaces, SpecInput, oci};
use crate::state::{self, ContainerRecord, ContainerState, Layout, PodRecord, PodState};

/// Most bytes of stdout and of stderr ExecSync returns (the kubelet's message limit is 16 MiB).
pub const EXEC_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// How long a container may take to die after SIGKILL before crid stops waiting for its
/// exit record and asks the runtime instead.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long ReopenContainerLog waits for the monitor to open the new file.
const REOPEN_LIMIT: Duration = Duration::from_secs(5);

/// What the configuration and the host decide for every container.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cgroup driver, which decides the cgroups path syntax.
    pub cgroup_driver: CgroupDriver,
    /// The log size cap handed to the monitor.
    pub log_size_max: Option<u64>,
    /// The pause image of infra containers.
    pub pause_image: String,
    /// The capabilities this host can grant.
    pub host_capabilities: Vec<String>,
    /// What the host's cgroups can enforce, probed once at start.
    pub host_resources: HostResources,
    /// `[runtime] tolerate_missing_hugetlb_controller`.
    pub tolerate_missing_hugetlb: bool,
    /// `[runtime] tolerate_unsupported_resources`.
    pub tolerate_unsupported: bool,
    /// Whether containers get a cgroup namespace (cgroup v2 hosts).
    pub cgroup_namespace: bool,
    /// Whether this host enforces AppArmor, probed once at start.
    pub apparmor: crate::host::apparmor::Support,
    /// `[runtime] cdi_spec_dirs`, in rising precedence.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

impl Settings {
    /// The settings of `config` on a host with `host_resources`.
    pub fn new(config: &Config, host_resources: HostResources) -> Settings {
        Settings {
            cgroup_driver: config.runtime.cgroup_driver,
            log_size_max: (config.runtime.log_size_max > 0).then_some(config.runtime.log_size_max),
            pause_image: config.image.pause_image.clone(),
            host_capabilities: crate::host::bounding_capabilities(),
            host_resources,
            tolerate_missing_hugetlb: config.runtime.tolerate_missing_hugetlb_controller,
            tolerate_unsupported: config.runtime.tolerate_unsupported_resources,
            cgroup_namespace: crate::host::cgroup_mode() == crate::host::CgroupMode::Unified,
            apparmor: crate::host::apparmor::probe(),
            cdi_spec_dirs: config.runtime.cdi_spec_dirs.clone(),
        }
    }
}

/// The container service.
#[derive(Debug)]
pub struct ContainerService {
    registry: Arc<Registry>,
    runtimes: Arc<RuntimeRegistry>,
    host: Arc<dyn Host>,
    images: Arc<dyn ImageSource>,
    layout: Layout,
    settings: Settings,
    cpu_rates: crate::stats::CpuRates,
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        kind: "container",
        id: id.to_owned(),
    }
}

fn is_live(s: ContainerState) -> bool {
    matches!(s, ContainerState::Created | ContainerState::Running)
}

impl ContainerService {
    /// A service over these parts.
    pub fn new(
        registry: Arc<Registry>,
        runtimes: Arc<RuntimeRegistry>,
        host: Arc<dyn Host>,
        images: Arc<dyn ImageSource>,
        layout: Layout,
        settings: Settings,
    ) -> Arc<Self> {
        Arc::new(ContainerService {
            registry,
            runtimes,
            host,
            images,
            layout,
            settings,
            cpu_rates: crate::stats::CpuRates::default(),
        })
    }

    /// The settings every container gets.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The state layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The host seam.
    pub fn host(&self) -> &Arc<dyn Host> {
        &self.host
    }

    /// The images.
    pub fn images(&self) -> &Arc<dyn ImageSource> {
        &self.images
    }

    /// The runtime registry.
    pub fn runtimes(&self) -> &Arc<RuntimeRegistry> {
        &self.runtimes
    }

    /// Applies the host's limits to a container's resources: what cannot apply on this
    /// host at all is refused with InvalidArgument naming the field; what it cannot
    /// enforce is dropped with a debug line naming it, or refused with FailedPrecondition
    /// when the configuration says so. `field` names the resources in the request
    /// (`config.linux.resources` for CreateContainer, `linux` for an update).
    pub(crate) fn check_enforceable(
        &self,
        id: &str,
        field: &str,
        resources: Option<&cri::LinuxContainerResources>,
    ) -> Result<()> {
        let Some(r) = resources else { return Ok(()) };
        if let Some(refused) = spec::host::refusal(r, &self.settings.host_resources) {
            return Err(Error::invalid(
                format!("{field}.{}", refused.field),
                format!("container {id}: {}", refused.reason),
            ));
        }
        for lack in spec::host::enforceable(r, &self.settings.host_resources).1 {
            let tolerated = match lack.lack {
                spec::Lack::HugetlbController => self.settings.tolerate_missing_hugetlb,
                spec::Lack::Other => self.settings.tolerate_unsupported,
            };
            let named = lack
                .field
                .strip_prefix("config.linux.resources")
                .map_or_else(|| lack.field.to_owned(), |rest| format!("{field}{rest}"));
            if !tolerated {
                return Err(Error::Unsupported(format!(
                    "container {id}: {named}: {} (the host cannot enforce it, and crid is configured to refuse)",
                    lack.detail
                )));
            }
            tracing::debug!(container = %id, "dropped from the OCI spec: {named}: {}", lack.detail);
        }
        Ok(())
    }

    /// The cgroups path of container `id` in `pod`, in the configured driver's syntax.
    pub(crate) fn cgroups_path(&self, pod: &PodRecord, id: &str) -> String {
        cgroups_path(self.settings.cgroup_driver, &pod.cgroup_parent, id)
    }

    /// The namespaces a container of `pod` joins.
    pub(crate) fn pod_namespaces(&self, pod: &PodRecord, pid: PidNamespace) -> PodNamespaces {
        let s = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        PodNamespaces {
            network: s(&pod.netns),
            ipc: s(&pod.ipcns),
            uts: s(&pod.utsns),
            pid,
            cgroup: self.settings.cgroup_namespace,
        }
    }

    /// The runtime of the pod `pod_id` runs on.
    pub(crate) async fn runtime_of_pod(&self, pod_id: &str) -> Result<Arc<dyn RuntimeHandler>> {
        let handler = self
            .registry
            .pod(pod_id)
            .map(|p| p.read(|r| r.runtime_handler.clone()))
            .unwrap_or_default();
        Ok(self.runtimes.get(&handler).await?.1)
    }

    /// Writes the bundle's config.json and has the handler create the container.
    pub(crate) async fn create_in_runtime(
        &self,
        runtime: &dyn RuntimeHandler,
        id: &str,
        spec: &oci::Spec,
        log_path: &Path,
        pod: &PodRecord,
    ) -> Result<Created> {
        let bundle = self.layout.bundle(id);
        let json = serde_json::to_vec_pretty(spec).map_err(|e| {
            Error::host(format!("container {id}: encoding its spec"))(std::io::Error::other(e))
        })?;
        // The bundle lives on the runroot (a tmpfs): atomic, not durable.
        state::write_volatile(&bundle.join("config.json"), &json)
            .map_err(Error::host(format!("container {id}: writing config.json")))?;
        // Where the monitor reads OOM kills: the same path rules as the stats reader, so
        // cgroupfs and systemd scopes both work.
        let memory_root = if self.settings.cgroup_namespace {
            Path::new("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup/memory")
        };
        let memory_cgroup = crate::stats::relative_dir(&self.cgroups_path(pod, id))
            .map(|rel| memory_root.join(rel));
        let req = CreateRequest {
            id: id.to_owned(),
            bundle: bundle.clone(),
            log_path: log_path.to_path_buf(),
            log_max_size: self.settings.log_size_max,
            exit_file: self.layout.exit_file(id),
            pid_file: bundle.join("pid"),
            memory_cgroup,
        };
        runtime
            .create(&req)
            .await
            .map_err(Error::runtime(format!("container {id}: creating it")))
    }

    /// Checks a CreateContainer request before anything is reserved or created.
    fn validate(pod_id: &str, config: &cri::ContainerConfig) -> Result<()> {
        if pod_id.is_empty() {
            return Err(Error::invalid("pod_sandbox_id", "must not be empty"));
        }
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
        if md.name.is_empty() {
            return Err(Error::invalid("config.metadata.name", "must not be empty"));
        }
        // A log path that leaves the pod's log directory is refused outright.
        if !config.log_path.is_empty() {
            log_path::check(&config.log_path)
                .map_err(|reason| Error::invalid("config.log_path", reason))?;
        }
        bundle::check_mount_sources(&config.mounts)?;
        if config.image.as_ref().is_none_or(|i| i.image.is_empty()) {
            return Err(Error::invalid("config.image.image", "must not be empty"));
        }
        spec::requests::check_container(config).map_err(|e| {
            if crate::faults::on(crate::faults::Fault::RefusalNotInvalidArgument) {
                Error::Unsupported(e.to_string())
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    /// cri:RuntimeService.CreateContainer. Returns the new container's ID. On any failure
    /// everything done so far is undone.
    pub async fn create(
        self: &Arc<Self>,
        pod_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        Self::validate(pod_id, &config)?;
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.check_enforceable(
            &name,
            "config.linux.resources",
            config.linux.as_ref().and_then(|l| l.resources.as_ref()),
        )?;
        let pod = self.registry.pod(pod_id).ok_or_else(|| Error::NotFound {
            kind: "pod sandbox",
            id: pod_id.to_owned(),
        })?;
        // Under the pod's lock from this check until the container is reserved and locked:
        // a StopPodSandbox either ran before (the pod is not ready) or finds the container
        // and stops it once its creation is done.
        let pod_op = pod.lock().await;
        let pod_record = pod.get();
        if pod_record.state != PodState::Ready {
            return Err(Error::InvalidState {
                kind: "pod sandbox",
                id: pod_id.to_owned(),
                state: pod_record.state.cri_name().to_owned(),
                wanted: "containers are created only in a ready pod",
            });
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self
            .images
            .find(&image_name, "config.image.image")?
            .ok_or_else(|| Error::NotFound {
                kind: "image",
                id: image_name.clone(),
            })?;
        // cri:ImageSpec#runtime_handler: images are one store for every handler, so any
        // configured handler finds them; an unknown one is refused, as RunPodSandbox does.
        if let Some(requested) = config.image.as_ref().map(|i| &i.runtime_handler) {
            self.check_image_handler(requested, "config.image.runtime_handler")?;
        }
        let volumes = self.image_volume_images(&config)?;
        let (handler, runtime) = self.runtimes.get(&pod_record.runtime_handler).await?;
        // The kubelet checks Status's handler features before it asks; a client that did
        // not gets the same answer here rather than a mount that is read-only on top only.
        if let Some(m) = config.mounts.iter().find(|m| m.recursive_read_only)
            && !runtime.features().recursive_read_only_mounts
        {
            return Err(Error::Unsupported(format!(
                "config.mounts.recursive_read_only: mount {}: runtime handler {handler} does not support recursive read-only mounts (its runtime lacks the rro mount option, or the kernel is older than 5.12)",
                m.container_path
            )));
        }
        // CDI devices are looked up before anything exists: an unknown one leaves nothing.
        let cdi_edits = cdi::resolve(&self.settings.cdi_spec_dirs, &config.cdi_devices).await?;
        let id = state::new_id().map_err(Error::host("generating a container ID"))?;
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod_id.to_owned(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            state: ContainerState::Creating,
            created_at_ns: state::now_ns(),
            started_at_ns: 0,
            finished_at_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            monitor_pid: 0,
            log_path: PathBuf::new(),
            stop_signal: "SIGTERM".into(),
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            image_volume_ids: volumes.iter().map(|(_, v)| v.id.clone()).collect(),
            config,
        };
        let reserved = record.reserved_name();
        let container =
            self.registry
                .reserve_container(record)
                .map_err(|other| Error::NameReserved {
                    kind: "container",
                    name: format!("{reserved} in pod {pod_id}"),
                    by: format!("container {other}"),
                })?;
        let _op = container.lock().await;
        drop(pod_op);
        let setup = async {
            container.persist().await?;
            crate::failpoint!("create.recorded");
            self.setup(
                &container,
                &pod_record,
                &image,
                &volumes,
                runtime.as_ref(),
                &cdi_edits,
            )
            .await
        };
        match setup.await {
            Ok(()) => Ok(id),
            Err(e) => {
                tracing::warn!(container = %id, "CreateContainer failed, rolling back: {e}");
                let mut cleanup = self
                    .remove_resources(runtime.as_ref(), &id, Some(&pod_record))
                    .await;
                if let Err(f) = container.forget().await {
                    cleanup = cleanup.and(Err(f.into()));
                }
                self.registry.drop_container(&id);
                if let Err(c) = &cleanup {
                    tracing::error!(container = %id, "rollback incomplete: {c}");
                }
                Err(e.with_cleanup(cleanup))
            }
        }
    }

    async fn setup(
        self: &Arc<Self>,
        container: &Arc<Object<ContainerRecord>>,
        pod: &PodRecord,
        image: &crate::image::ImageRecord,
        volumes: &[(usize, crate::image::ImageRecord)],
        runtime: &dyn RuntimeHandler,
        cdi_edits: &spec::cdi::Resolved,
    ) -> Result<()> {
        let record = container.get();
        let id = record.id.clone();
        let c = &record.config;
        let sc = c
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let (process, image_stop_signal) = self.images.process_config(image)?;
        // cri:ContainerConfig#stop_signal overrides the image's StopSignal.
        let stop_signal = spec::requests::stop_signal(c).unwrap_or(image_stop_signal);
        let devices = bundle::resolve_devices(&c.devices)?;
        let host_devices = if sc.privileged {
            bundle::host_devices()
        } else {
            Vec::new()
        };
        let seccomp = bundle::localhost_seccomp(sc.seccomp.as_ref())?;
        self.prepare_apparmor(&sc).await?;
        let pid = match NamespaceMode::try_from(sc.namespace_options.as_ref().map_or(0, |n| n.pid))
        {
            Ok(NamespaceMode::Node) => PidNamespace::Host,
            Ok(NamespaceMode::Pod) => match &pod.infra {
                Some(infra) => PidNamespace::Join(format!("/proc/{}/ns/pid", infra.pid)),
                None => PidNamespace::Private,
            },
            Ok(NamespaceMode::Target) => {
                let target = sc
                    .namespace_options
                    .as_ref()
                    .map(|n| n.target_id.clone())
                    .unwrap_or_default();
                let t = self
                    .registry
                    .container(&target)
                    .filter(|t| {
                        t.read(|r| r.pod_id == pod.id && r.state == ContainerState::Running)
                    })
                    .ok_or_else(|| {
                        Error::invalid(
                            "config.linux.security_context.namespace_options.target_id",
                            format!("`{target}` is not a running container of pod {}", pod.id),
                        )
                    })?;
                PidNamespace::Join(format!("/proc/{}/ns/pid", t.read(|r| r.pid)))
            }
            _ => PidNamespace::Private,
        };
        let rootfs = self.mount_rootfs(&id, image)?;
        crate::failpoint!("create.rootfs-mounted");
        let image_volumes = self.mount_image_volumes(&id, c, volumes)?;
        let users = bundle::user_db(&rootfs);
        let paths = self.layout.pod_files(&pod.id);
        let own_ipc = pod.ipcns.is_some();
        let files = PodFiles {
            hostname: Some(paths.hostname().display().to_string()),
            hosts: Some(paths.hosts().display().to_string()),
            resolv_conf: Some(paths.resolv_conf().display().to_string()),
            shm: Some(if own_ipc {
                paths.shm().display().to_string()
            } else {
                "/dev/shm".into()
            }),
        };
        let mut spec = spec::build(&SpecInput {
            container: c,
            sandbox: &pod.config,
            sandbox_id: &pod.id,
            container_id: &id,
            image: &process,
            users: &users,
            rootfs: &rootfs.display().to_string(),
            namespaces: &self.pod_namespaces(pod, pid),
            files: &files,
            cgroups_path: &self.cgroups_path(pod, &id),
            host_capabilities: &self.settings.host_capabilities,
            devices: &devices,
            host_devices: &host_devices,
            localhost_seccomp: seccomp.as_ref(),
            host: &self.settings.host_resources,
            apparmor: self.settings.apparmor.enforces(),
            image_volumes: &image_volumes,
        })?;
        cdi_edits.apply(&mut spec);

        let log_path =
            log_path::create(&pod.config.log_directory, &c.log_path)?.unwrap_or_default();
        crate::failpoint!("create.log-created");
        let monitor_log = if log_path.as_os_str().is_empty() {
            PathBuf::from("/dev/null")
        } else {
            log_path.clone()
        };
        let created = self
            .create_in_runtime(runtime, &id, &spec, &monitor_log, pod)
            .await?;
        crate::failpoint!("create.runtime-created");
        container
            .update(|r| {
                r.state = ContainerState::Created;
                r.pid = created.pid;
                r.monitor_pid = created.monitor_pid;
                r.log_path = log_path;
                r.stop_signal = stop_signal;
                r.uid = spec.process.user.uid;
                r.gid = spec.process.user.gid;
                r.additional_gids = spec.process.user.additional_gids.clone();
            })
            .await?;
        crate::failpoint!("create.created");
        tracing::info!(container = %id, pod = %pod.id, "container created");
        self.watch_monitor(&id, created.monitor_pid);
        self.registry.emit(&id, &pod.id, EventKind::Created);
        Ok(())
    }

    /// Makes the AppArmor profile that security context `sc` asks for usable before the
    /// runtime is asked to apply it: crid's default profile is loaded when the kernel does
    /// not list it (at first use, and again if someone unloaded it), and a Localhost profile
    /// must already be loaded, else InvalidArgument naming the field and the profile (as
    /// for a Localhost seccomp profile that cannot be read).
    pub(crate) async fn prepare_apparmor(
        &self,
        sc: &cri::LinuxContainerSecurityContext,
    ) -> Result<()> {
        use crate::host::apparmor::{self, Support};
        let profile = spec::apparmor::profile(sc, self.settings.apparmor.enforces())?;
        let Support::Enabled { parser } = &self.settings.apparmor else {
            return Ok(());
        };
        let parser = parser.clone();
        let what = format!("AppArmor profile {}", profile.oci_name());
        // Reading securityfs and running apparmor_parser block: off the async workers.
        let checked = tokio::task::spawn_blocking(move || match &profile {
            spec::apparmor::Profile::None => Ok(None),
            spec::apparmor::Profile::Default => apparmor::ensure_loaded(
                &parser,
                spec::apparmor::DEFAULT_PROFILE,
                &spec::apparmor::default_profile_text(),
            )
            .map(|()| None),
            spec::apparmor::Profile::Localhost { name, field } => match apparmor::loaded(name) {
                Ok(Some(_)) => Ok(None),
                Ok(None) => Ok(Some(Error::invalid(
                    *field,
                    format!(
                        "AppArmor profile `{name}` is not loaded on this host (not listed in \
                         /sys/kernel/security/apparmor/profiles); load it with apparmor_parser \
                         before creating the container"
                    ),
                ))),
                Err(e) => Err(e),
            },
        })
        .await
        .map_err(|e| Error::host(what.clone())(std::io::Error::other(e)))?;
        match checked {
            Ok(None) => Ok(()),
            Ok(Some(refusal)) => Err(refusal),
            Err(e) => Err(Error::host(what)(std::io::Error::other(e))),
        }
    }

    /// A container past creation; InvalidArgument for an empty ID.
    fn live_container(&self, id: &str) -> Result<Arc<Object<ContainerRecord>>> {
        if id.is_empty() {
            return Err(Error::invalid("container_id", "must not be empty"));
        }
        self.registry
            .container(id)
            .filter(|c| c.read(|r| r.state != ContainerState::Creating))
            .ok_or_else(|| not_found(id))
    }

    /// cri:RuntimeService.StartContainer: only a created container starts.
    pub async fn start(&self, id: &str) -> Result<()> {
        let c = self.live_container(id)?;
        let _op = c.lock().await;
        let record = c.get();
        if record.state != ContainerState::Created {
            return Err(Error::InvalidState {
                kind: "container",
                id: id.to_owned(),
                state: record.state.cri_name().to_owned(),
                wanted: "only a created container can be started",
            });
        }
        let runtime = self.runtime_of_pod(&record.pod_id).await?;
        runtime
            .start(id)
            .await
            .map_err(Error::runtime(format!("container {id}: starting it")))?;
        crate::failpoint!("start.runtime-started");
        c.update(|r| {
            r.started_at_ns = state::now_ns();
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
        })
        .await?;
        crate::failpoint!("start.running");
        self.registry.emit(id, &record.pod_id, EventKind::Started);
        // It may have exited before the record said Running.
        self.record_exit(id);
        tracing::info!(container = %id, "container started");
        Ok(())
    }

    /// cri:RuntimeService.StopContainer: the stop signal, `timeout` seconds, then SIGKILL.
    /// Idempotent, and an unknown ID is not an error: the kubelet retries stops after
    /// restarts and treats NotFound as a failure (api.proto: "must not return an error if
    /// the container has already been stopped").
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<()> {
        match self.live_container(id) {
            Ok(c) => self.stop_object(&c, timeout).await,
            Err(Error::NotFound { .. })
                if !crate::faults::on(crate::faults::Fault::StopUnknownNotFound) =>
            {
                tracing::debug!(container = %id, "StopContainer of an unknown container: nothing to do");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stops every container of pod `pod_id` forcibly (StopPodSandbox).
    pub(crate) async fn stop_all(&self, pod_id: &str) -> Result<()> {
        for c in self.registry.containers(Some(pod_id)) {
            self.stop_object(&c, 0).await?;
        }
        Ok(())
    }

    /// Removes every container of pod `pod_id` (RemovePodSandbox).
    pub(crate) async fn remove_all(&self, pod_id: &str) -> Result<()> {
        for c in self.registry.containers(Some(pod_id)) {
            self.remove_object(&c).await?;
        }
        Ok(())
    }

    async fn stop_object(&self, c: &Arc<Object<ContainerRecord>>, timeout: i64) -> Result<()> {
        let _op = c.lock().await;
        let id = c.id().to_owned();
        let record = c.get();
        if !self.record_exit(&id) && c.read(|r| is_live(r.state)) {
            self.signal_until_exit(c, &record, timeout).await?;
        }
        // The container is its init: once that has exited the container has, but processes
        // it left in a pod-shared or the host's PID namespace live on in its cgroup (and
        // would hold its output pipes). Nothing of a stopped container may survive.
        if record.state != ContainerState::Created
            && let Some(pod) = self.registry.pod(&record.pod_id).map(|p| p.get())
        {
            let path = self.cgroups_path(&pod, &id);
            let host = self.host.clone();
            let swept = on_host(move || host.kill_remaining(&path, KILL_GRACE)).await;
            match swept {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(container = %id, killed = n, "killed processes that outlived the container's init")
                }
                Err(e) => {
                    return Err(Error::host(format!(
                        "container {id}: killing what outlived its init"
                    ))(e));
                }
            }
            crate::failpoint!("stop.exited");
        }
        Ok(())
    }

    /// The stop signal, `timeout` seconds, then SIGKILL, until the container's init exited.
    async fn signal_until_exit(
        &self,
        c: &Arc<Object<ContainerRecord>>,
        record: &ContainerRecord,
        timeout: i64,
    ) -> Result<()> {
        let id = record.id.clone();
        let runtime = self.runtime_of_pod(&record.pod_id).await?;
        let all = shares_host_pid(&record.config);
        if timeout > 0 && !crate::faults::on(crate::faults::Fault::StopKillsAtOnce) {
            runtime
                .kill(
                    &id,
                    if crate::faults::on(crate::faults::Fault::IgnoreStopSignal) {
                        "TERM"
                    } else {
                        &record.stop_signal
                    },
                    all,
                )
                .await
                .map_err(Error::runtime(format!(
                    "container {id}: sending {}",
                    record.stop_signal
                )))?;
            crate::failpoint!("stop.signalled");
            if self.wait_exit(c, Duration::from_secs(timeout as u64)).await {
                return Ok(());
            }
        }
        runtime
            .kill(&id, "KILL", all)
            .await
            .map_err(Error::runtime(format!("container {id}: sending SIGKILL")))?;
        if self.wait_exit(c, KILL_GRACE).await {
            return Ok(());
        }
        // No exit record came: ask the runtime whether the container is gone.
        match runtime.state(&id).await {
            Ok(None) => {}
            Ok(Some(s)) if s.status == "stopped" => {}
            _ => {
                return Err(Error::Timeout {
                    what: format!("container {id}: exiting after SIGKILL"),
                    limit: KILL_GRACE,
                });
            }
        }
        c.update(|r| {
            mark_exited(
                r,
                137,
                state::now_ns(),
                false,
                "the monitor recorded no exit; the runtime reports the container stopped",
            )
        })
        .await?;
        Ok(())
    }

    /// Waits until the container's record says exited, up to `limit`.
    async fn wait_exit(&self, c: &Arc<Object<ContainerRecord>>, limit: Duration) -> bool {
        let mut changes = c.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.record_exit(c.id()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return self.record_exit(c.id());
            }
        }
    }

    /// cri:RuntimeService.RemoveContainer: kills it if running, removes everything.
    /// Idempotent: an unknown ID is not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("container_id", "must not be empty"));
        }
        match self.registry.container(id) {
            Some(c) => self.remove_object(&c).await,
            None if crate::faults::on(crate::faults::Fault::RemoveUnknownNotFound) => {
                Err(not_found(id))
            }
            None => Ok(()),
        }
    }

    async fn remove_object(&self, c: &Arc<Object<ContainerRecord>>) -> Result<()> {
        self.stop_object(c, 0).await?;
        let _op = c.lock().await;
        let id = c.id().to_owned();
        let record = c.get();
        let runtime = self.runtime_of_pod(&record.pod_id).await?;
        let pod = self.registry.pod(&record.pod_id).map(|p| p.get());
        self.remove_resources(runtime.as_ref(), &id, pod.as_ref())
            .await?;
        c.forget().await?;
        crate::failpoint!("remove.unrecorded");
        if !crate::faults::on(crate::faults::Fault::RemoveKeepsRecord) {
            self.registry.drop_container(&id);
        }
        tracing::info!(container = %id, "container removed");
        if !crate::faults::on(crate::faults::Fault::EventsNoDeleted) {
            self.registry.emit(&id, &record.pod_id, EventKind::Deleted);
        }
        Ok(())
    }

    /// A container's record (cri:RuntimeService.ContainerStatus).
    pub fn status(&self, id: &str) -> Result<ContainerRecord> {
        let c = self.live_container(id)?;
        self.record_exit(id);
        Ok(c.get())
    }

    /// Every container past creation (cri:RuntimeService.ListContainers; the edge filters).
    pub fn list(&self) -> Vec<ContainerRecord> {
        self.registry.container_records(None)
    }

    /// cri:RuntimeService.ExecSync: runs `cmd` in the running container; a timeout of 0
    /// means none. Past the timeout the process is killed and DeadlineExceeded returned.
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecOutput> {
        let (runtime, mut process) = self.exec_target(id, cmd).await?;
        process.terminal = false;
        let limit = (timeout > 0
            && !crate::faults::on(crate::faults::Fault::ExecSyncIgnoresTimeout))
        .then(|| Duration::from_secs(timeout as u64));
        let out = runtime
            .exec(id, &process, limit)
            .await
            .map_err(Error::runtime(format!("container {id}: exec")))?;
        if out.timed_out {
            return Err(Error::ExecTimeout {
                id: id.to_owned(),
                secs: timeout,
            });
        }
        Ok(out)
    }

    fn running(&self, id: &str) -> Result<Arc<Object<ContainerRecord>>> {
        let c = self.live_container(id)?;
        let state = c.read(|r| r.state);
        if state != ContainerState::Running || self.record_exit(id) {
            return Err(Error::InvalidState {
                kind: "container",
                id: id.to_owned(),
                state: state.cri_name().to_owned(),
                wanted: "it must be running",
            });
        }
        Ok(c)
    }

    /// What runs `cmd` in running container `id`: its runtime, and its process with `cmd`
    /// as arguments (cri:RuntimeService.ExecSync and Exec; Exec checks when it issues the
    /// URL and again when the client connects).
    pub async fn exec_target(
        &self,
        id: &str,
        cmd: Vec<String>,
    ) -> Result<(Arc<dyn RuntimeHandler>, oci::Process)> {
        let c = self.live_container(id)?;
        if cmd.is_empty() {
            return Err(Error::invalid("cmd", "must not be empty"));
        }
        self.running(id)?;
        let record = c.get();
        let runtime = self.runtime_of_pod(&record.pod_id).await?;
        let spec: oci::Spec = state::read_json(&self.layout.bundle(id).join("config.json"))
            .map_err(Error::host(format!("container {id}: reading config.json")))?
            .ok_or_else(|| Error::InvalidState {
                kind: "container",
                id: id.to_owned(),
                state: "without a bundle".into(),
                wanted: "it must have been created by this crid",
            })?;
        let mut process = spec.process;
        process.args = cmd;
        Ok((runtime, process))
    }

    /// The handler and bundle of running container `id`, to attach to
    /// (cri:RuntimeService.Attach).
    pub async fn attach_target(&self, id: &str) -> Result<(Arc<dyn RuntimeHandler>, PathBuf)> {
        let pod_id = self.running(id)?.read(|r| r.pod_id.clone());
        let runtime = self.runtime_of_pod(&pod_id).await?;
        Ok((runtime, self.layout.bundle(id)))
    }

    /// cri:RuntimeService.UpdateContainerResources. The runtime's `update` sets the cgroup
    /// limits; crid sets what it leaves out: the container's oom_score_adj (first, so that
    /// the kernel's refusal changes nothing) and, on cgroup v1, its hugetlb limits. The
    /// record then holds the resources as applied, which ContainerStatus reports.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let c = self.live_container(id)?;
        let _op = c.lock().await;
        let Some(resources) = resources else {
            return Ok(());
        };
        let record = c.get();
        if !is_live(record.state) {
            return Err(Error::InvalidState {
                kind: "container",
                id: id.to_owned(),
                state: record.state.cri_name().to_owned(),
                wanted: "an exited container's resources cannot change",
            });
        }
        let runtime = self.runtime_of_pod(&record.pod_id).await?;
        self.check_enforceable(id, "linux", Some(&resources))?;
        if crate::faults::on(crate::faults::Fault::UpdateResourcesNotApplied) {
            return Ok(());
        }
        let host_resources = &self.settings.host_resources;
        let mut applied = spec::host::enforceable(&resources, host_resources).0;
        let mut config = record.config.clone();
        config.linux.get_or_insert_with(Default::default).resources = Some(resources.clone());
        let (oci_resources, v1_hugetlb) = spec::update_resources(&config, host_resources);
        let cgroups_path = self
            .registry
            .pod(&record.pod_id)
            .map(|p| self.cgroups_path(&p.get(), id));
        let recorded_adj = record.resources.as_ref().map_or(0, |r| r.oom_score_adj);
        // proto3 cannot tell 0 from "not given", and the kubelet never computes 0 for a
        // container (it sends -997, 2..999 or 1000): 0 keeps the container's value, so an
        // update of other limits (`crictl update --cpu-quota`) does not reset it.
        if resources.oom_score_adj == 0 {
            applied.oom_score_adj = recorded_adj;
        }
        if record.pid > 0
            && applied.oom_score_adj != recorded_adj
            && !crate::faults::on(crate::faults::Fault::UpdateOomScoreAdjIgnored)
        {
            let (host, path, pid, value) = (
                self.host.clone(),
                cgroups_path.clone().unwrap_or_default(),
                record.pid,
                applied.oom_score_adj,
            );
            match on_host(move || host.set_oom_score_adj(&path, pid, value)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(Error::Unsupported(format!(
                        "container {id}: linux.oom_score_adj: the kernel refuses {value} (from {recorded_adj}): lowering it below the container's floor needs CAP_SYS_RESOURCE, which crid lacks"
                    )));
                }
                Err(e) => {
                    return Err(Error::host(format!(
                        "container {id}: setting linux.oom_score_adj to {value}"
                    ))(e));
                }
            }
        }
        runtime
            .update(id, &oci_resources)
            .await
            .map_err(Error::runtime(format!(
                "container {id}: updating resources"
            )))?;
        if let Some(path) = cgroups_path.filter(|_| !v1_hugetlb.is_empty()) {
            let host = self.host.clone();
            let written = on_host(move || {
                v1_hugetlb.iter().try_for_each(|h| {
                    host.write_cgroup_v1(
                        "hugetlb",
                        &path,
                        &format!("hugetlb.{}.limit_in_bytes", h.page_size),
                        &h.limit.to_string(),
                    )
                })
            })
            .await;
            written.map_err(Error::host(format!(
                "container {id}: writing linux.hugepage_limits to its hugetlb cgroup"
            )))?;
        }
        // What the host enforces is what the container has (hugepage limits it cannot
        // enforce were dropped, as at creation).
        applied.oom_score_adj = if record.pid > 0 {
            applied.oom_score_adj
        } else {
            recorded_adj
        };
        c.update(|r| r.resources = Some(applied)).await?;
        Ok(())
    }

    /// cri:RuntimeService.ReopenContainerLog: the monitor reopens the log file. Returns once
    /// the monitor writes to the file now at the log path: the kubelet's rotation renames
    /// the file, calls this, and reads the new file at once.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        if crate::faults::on(crate::faults::Fault::ReopenExitedOk)
            && self
                .live_container(id)
                .is_ok_and(|c| c.read(|r| r.state == ContainerState::Exited))
        {
            return Ok(());
        }
        let c = self.running(id)?;
        let record = c.get();
        if record.log_path.as_os_str().is_empty() {
            return Ok(());
        }
        // A handler without a monitor (a shim) writes the log itself.
        if record.monitor_pid == 0 {
            let runtime = self.runtime_of_pod(&record.pod_id).await?;
            return runtime.reopen_log(id).await.map_err(|e| match e {
                // Not a fault: this container's log cannot be reopened (FailedPrecondition).
                crate::runtime::RuntimeError::NotSupported { .. } => {
                    Error::Unsupported(format!("container {id}: {e}"))
                }
                e => Error::runtime(format!("container {id}: reopening its log"))(e),
            });
        }
        if !is_monitor_of(record.monitor_pid, id) {
            return Err(Error::InvalidState {
                kind: "container",
                id: id.to_owned(),
                state: format!("without its monitor (pid {} is gone)", record.monitor_pid),
                wanted: "its monitor reopens the log",
            });
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(record.monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| Error::host(format!("container {id}: signalling its monitor"))(e.into()))?;
        if crate::faults::on(crate::faults::Fault::ReopenLogAsync) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + REOPEN_LIMIT;
        loop {
            if holds_file(record.monitor_pid, &record.log_path) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "container {id}: its monitor opening {}",
                        record.log_path.display()
                    ),
                    limit: REOPEN_LIMIT,
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl crate::image::ImageUsers for ContainerService {
    fn containers_using(&self, image_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .registry
            .containers(None)
            .iter()
            .filter(|c| {
                c.read(|r| {
                    r.image_id == image_id || r.image_volume_ids.iter().any(|v| v == image_id)
                })
            })
            .map(|c| c.id().to_owned())
            .collect();
        // Infra containers use the pause image.
        for p in self.registry.pods() {
            if p.read(|r| r.infra.as_ref().is_some_and(|i| i.image_id == image_id)) {
                ids.push(p.id().to_owned());
            }
        }
        ids
    }
}

/// The cgroups path of container `id` under `parent`, in `driver`'s syntax.
pub fn cgroups_path(driver: CgroupDriver, parent: &str, id: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => format!("{}/crid-{id}", parent.trim_end_matches('/')),
        CgroupDriver::Systemd => format!("{parent}:crid:{id}"),
    }
}

/// Runs a blocking call on the host (cgroup files, /proc) off the async threads.
async fn on_host<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
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
    } else if exit_code == 0 || crate::faults::on(crate::faults::Fault::ExitReasonCompleted) {
        "Completed"
    } else {
        "Error"
    }
    .to_owned();
    r.message = message.to_owned();
}

/// Whether process `pid` has the file now at `path` open (same device and inode).
fn holds_file(pid: i32, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
    })
}

/// A container in the host's PID namespace needs `kill --all` to reach every process.
fn shares_host_pid(config: &cri::ContainerConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.pid == NamespaceMode::Node as i32)
}

//! The container lifecycle state machine: created -> running -> exited, and removal.
//!
//! CreateContainer mounts the rootfs, builds the OCI spec (`crate::spec`, pure) and has
//! crid-monitor run the runtime's `create`; exits come back through the exit files the
//! monitor writes (`crate::lifecycle` watches them), so nothing polls containers.

pub mod bundle;
pub mod log_path;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cri::NamespaceMode;
use crid_api::cri;

use crate::lifecycle::{
    EventKind, KILL_GRACE, Lifecycle, LifecycleError, Object, Result, io, mark_exited,
};
use crate::runtime::oci::{CreateRequest, Created, OciRuntime};
use crate::spec::{self, PidNamespace, PodFiles, SpecInput, oci};
use crate::state::{self, ContainerRecord, ContainerState, PodRecord, PodState};

/// Most bytes of stdout and of stderr ExecSync returns (the kubelet's message limit is 16 MiB).
pub const EXEC_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

fn not_found(id: &str) -> LifecycleError {
    LifecycleError::NotFound {
        kind: "container",
        id: id.to_owned(),
    }
}

impl Lifecycle {
    /// Writes the bundle's config.json and has crid-monitor create the container.
    pub(crate) async fn create_in_runtime(
        &self,
        runtime: &OciRuntime,
        id: &str,
        spec: &oci::Spec,
        log_path: &Path,
        pod: &PodRecord,
    ) -> Result<Created> {
        let bundle = self.layout.bundle(id);
        let json = serde_json::to_vec_pretty(spec).map_err(LifecycleError::internal(format!(
            "container {id}: encoding its spec"
        )))?;
        state::write_atomic(&bundle.join("config.json"), &json)
            .map_err(io(format!("container {id}: writing config.json")))?;
        // Where the monitor reads OOM kills: the same path rules as the stats reader, so
        // cgroupfs and systemd scopes both work.
        let memory_root = match crate::host::cgroup_mode() {
            crate::host::CgroupMode::Unified => Path::new("/sys/fs/cgroup"),
            _ => Path::new("/sys/fs/cgroup/memory"),
        };
        let memory_cgroup = crate::stats::relative_dir(&self.cgroups_path(pod, id))
            .map(|rel| memory_root.join(rel));
        let req = CreateRequest {
            id: id.to_owned(),
            bundle: bundle.clone(),
            log_path: log_path.to_path_buf(),
            log_max_size: self.log_size_max,
            exit_file: self.layout.exit_file(id),
            pid_file: bundle.join("pid"),
            memory_cgroup,
        };
        runtime
            .create(&self.monitor, &req)
            .await
            .map_err(LifecycleError::runtime(format!(
                "container {id}: creating it"
            )))
    }

    /// cri:RuntimeService.CreateContainer. Returns the new container's ID.
    pub async fn create_container(
        self: &Arc<Self>,
        pod_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        if pod_id.is_empty() {
            return Err(LifecycleError::invalid(
                "pod_sandbox_id",
                "must not be empty",
            ));
        }
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| LifecycleError::invalid("config.metadata", "is required"))?;
        if md.name.is_empty() {
            return Err(LifecycleError::invalid(
                "config.metadata.name",
                "must not be empty",
            ));
        }
        // Before anything is reserved or created: a log path that leaves the pod's log
        // directory is refused outright.
        if !config.log_path.is_empty() {
            log_path::check(&config.log_path)
                .map_err(|reason| LifecycleError::invalid("config.log_path", reason))?;
        }
        bundle::check_mount_sources(&config.mounts)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.as_str())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(LifecycleError::invalid(
                "config.image.image",
                "must not be empty",
            ));
        }
        spec::requests::check_container(&config).map_err(
            |spec::SpecError::Invalid { field, reason }| LifecycleError::invalid(field, reason),
        )?;
        self.check_enforceable(
            &md.name,
            config.linux.as_ref().and_then(|l| l.resources.as_ref()),
        )?;
        let pod = self.pod(pod_id).ok_or_else(|| LifecycleError::NotFound {
            kind: "pod sandbox",
            id: pod_id.to_owned(),
        })?;
        let pod_record = pod.get();
        if pod_record.state != PodState::Ready {
            return Err(LifecycleError::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let image = self
            .images
            .find(image_name, "config.image.image")?
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "image",
                id: image_name.to_owned(),
            })?;
        let (_, runtime) = self.runtime(&pod_record.runtime_handler)?;
        let id = state::new_id().map_err(io("generating a container ID"))?;
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
            config,
        };
        let container = Object::new(&id, self.layout.container_record(&id), record.clone());
        let _op = container.lock().await;
        {
            let mut all = self.containers.write().unwrap_or_else(|p| p.into_inner());
            let name = record.reserved_name();
            if let Some(other) = all
                .values()
                .find(|c| c.read(|r| r.pod_id == pod_id && r.reserved_name() == name))
            {
                return Err(LifecycleError::AlreadyExists(format!(
                    "container name {name} is reserved in pod {pod_id} by container {}",
                    other.id()
                )));
            }
            all.insert(id.clone(), container.clone());
        }
        let setup = async {
            container
                .persist()
                .map_err(io(format!("container {id}: writing its record")))?;
            self.setup_container(&container, &pod_record, &image, &runtime)
                .await
        };
        match setup.await {
            Ok(()) => Ok(id),
            Err(e) => {
                tracing::warn!(container = %id, "CreateContainer failed, rolling back: {e}");
                if let Err(c) = self
                    .remove_container_resources(&runtime, &id, Some(&pod_record))
                    .await
                {
                    tracing::error!(container = %id, "rollback incomplete: {c}");
                }
                let _ = container.forget();
                self.containers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(e)
            }
        }
    }

    async fn setup_container(
        self: &Arc<Self>,
        container: &Arc<Object<ContainerRecord>>,
        pod: &PodRecord,
        image: &crate::image::ImageRecord,
        runtime: &OciRuntime,
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
                    .container(&target)
                    .filter(|t| {
                        t.read(|r| r.pod_id == pod.id && r.state == ContainerState::Running)
                    })
                    .ok_or_else(|| {
                        LifecycleError::invalid(
                            "config.linux.security_context.namespace_options.target_id",
                            format!("`{target}` is not a running container of pod {}", pod.id),
                        )
                    })?;
                PidNamespace::Join(format!("/proc/{}/ns/pid", t.read(|r| r.pid)))
            }
            _ => PidNamespace::Private,
        };
        let rootfs = self.mount_rootfs(&id, image)?;
        let users = bundle::user_db(&rootfs);
        let paths = self.pod_paths(&pod.id);
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
        let spec = spec::build(&SpecInput {
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
            host_capabilities: &self.host_capabilities,
            devices: &devices,
            host_devices: &host_devices,
            localhost_seccomp: seccomp.as_ref(),
            host: &self.host_resources,
        })
        .map_err(|spec::SpecError::Invalid { field, reason }| {
            LifecycleError::invalid(field, reason)
        })?;

        let log_path =
            log_path::create(&pod.config.log_directory, &c.log_path)?.unwrap_or_default();
        let monitor_log = if log_path.as_os_str().is_empty() {
            PathBuf::from("/dev/null")
        } else {
            log_path.clone()
        };
        let created = self
            .create_in_runtime(runtime, &id, &spec, &monitor_log, pod)
            .await?;
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
            .map_err(io(format!("container {id}: writing its record")))?;
        tracing::info!(container = %id, pod = %pod.id, "container created");
        self.watch_monitor(&id, created.monitor_pid);
        self.emit(&id, &pod.id, EventKind::Created);
        Ok(())
    }

    fn live_container(&self, id: &str) -> Result<Arc<Object<ContainerRecord>>> {
        if id.is_empty() {
            return Err(LifecycleError::invalid("container_id", "must not be empty"));
        }
        self.container(id)
            .filter(|c| c.read(|r| r.state != ContainerState::Creating))
            .ok_or_else(|| not_found(id))
    }

    pub(crate) fn runtime_of(&self, c: &ContainerRecord) -> Result<Arc<OciRuntime>> {
        let handler = self
            .pod(&c.pod_id)
            .map(|p| p.read(|r| r.runtime_handler.clone()))
            .unwrap_or_default();
        Ok(self.runtime(&handler)?.1)
    }

    /// cri:RuntimeService.StartContainer: only a created container starts.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.live_container(id)?;
        let _op = c.lock().await;
        let record = c.get();
        if record.state != ContainerState::Created {
            return Err(LifecycleError::FailedPrecondition(format!(
                "container {id} is {:?}, only a created container can be started",
                record.state
            )));
        }
        let runtime = self.runtime_of(&record)?;
        runtime
            .start(id)
            .await
            .map_err(LifecycleError::runtime(format!(
                "container {id}: starting it"
            )))?;
        c.update(|r| {
            r.started_at_ns = state::now_ns();
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
        })
        .map_err(io(format!("container {id}: writing its record")))?;
        self.emit(id, &record.pod_id, EventKind::Started);
        // It may have exited before the record said Running.
        self.record_exit(id);
        tracing::info!(container = %id, "container started");
        Ok(())
    }

    /// cri:RuntimeService.StopContainer: the stop signal, `timeout` seconds, then SIGKILL.
    /// Idempotent, and an unknown ID is not an error: the kubelet retries stops after
    /// restarts and treats NotFound as a failure (api.proto: "must not return an error if
    /// the container has already been stopped").
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        match self.live_container(id) {
            Ok(c) => self.stop_container_obj(&c, timeout).await,
            Err(LifecycleError::NotFound { .. }) => {
                tracing::debug!(container = %id, "StopContainer of an unknown container: nothing to do");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn stop_container_obj(
        &self,
        c: &Arc<Object<ContainerRecord>>,
        timeout: i64,
    ) -> Result<()> {
        let _op = c.lock().await;
        let id = c.id().to_owned();
        let record = c.get();
        if !self.record_exit(&id)
            && c.read(|r| matches!(r.state, ContainerState::Created | ContainerState::Running))
        {
            self.signal_until_exit(c, &record, timeout).await?;
        }
        // The container is its init: once that has exited the container has, but processes
        // it left in a pod-shared or the host's PID namespace live on in its cgroup (and
        // would hold its output pipes). Nothing of a stopped container may survive.
        if record.state != ContainerState::Created
            && let Some(pod) = self.pod(&record.pod_id).map(|p| p.get())
        {
            let path = self.cgroups_path(&pod, &id);
            match tokio::task::spawn_blocking(move || {
                crate::runtime::cgroups::kill_remaining(&path, KILL_GRACE)
            })
            .await
            {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::debug!(container = %id, killed = n, "killed processes that outlived the container's init")
                }
                Ok(Err(e)) => {
                    return Err(LifecycleError::Internal {
                        what: format!("container {id}: killing what outlived its init"),
                        detail: e.to_string(),
                    });
                }
                Err(e) => {
                    return Err(LifecycleError::internal(format!(
                        "container {id}: cgroup sweep"
                    ))(e));
                }
            }
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
        let runtime = self.runtime_of(record)?;
        let all = shares_host_pid(&record.config);
        if timeout > 0 {
            runtime
                .kill(&id, &record.stop_signal, all)
                .await
                .map_err(LifecycleError::runtime(format!(
                    "container {id}: sending {}",
                    record.stop_signal
                )))?;
            if self.wait_exit(c, Duration::from_secs(timeout as u64)).await {
                return Ok(());
            }
        }
        runtime
            .kill(&id, "KILL", all)
            .await
            .map_err(LifecycleError::runtime(format!(
                "container {id}: sending SIGKILL"
            )))?;
        if self.wait_exit(c, KILL_GRACE).await {
            return Ok(());
        }
        // The monitor did not report: ask the runtime whether the container is gone.
        match runtime.state(&id).await {
            Ok(None) => {}
            Ok(Some(s)) if s.status == "stopped" => {}
            _ => {
                return Err(LifecycleError::DeadlineExceeded(format!(
                    "container {id} did not exit within {KILL_GRACE:?} of SIGKILL"
                )));
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
        .map_err(io(format!("container {id}: writing its record")))?;
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
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(LifecycleError::invalid("container_id", "must not be empty"));
        }
        match self.container(id) {
            Some(c) => self.remove_container_obj(&c).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn remove_container_obj(
        &self,
        c: &Arc<Object<ContainerRecord>>,
    ) -> Result<()> {
        self.stop_container_obj(c, 0).await?;
        let _op = c.lock().await;
        let id = c.id().to_owned();
        let record = c.get();
        let runtime = self.runtime_of(&record)?;
        let pod = self.pod(&record.pod_id).map(|p| p.get());
        self.remove_container_resources(&runtime, &id, pod.as_ref())
            .await?;
        c.forget()
            .map_err(io(format!("container {id}: removing its record")))?;
        self.containers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        tracing::info!(container = %id, "container removed");
        self.emit(&id, &record.pod_id, EventKind::Deleted);
        Ok(())
    }

    /// A container's record (cri:RuntimeService.ContainerStatus).
    pub fn container_status(&self, id: &str) -> Result<ContainerRecord> {
        let c = self.live_container(id)?;
        self.record_exit(id);
        Ok(c.get())
    }

    /// Every container past creation (cri:RuntimeService.ListContainers; the edge filters).
    pub fn list_containers(&self) -> Vec<ContainerRecord> {
        let mut v: Vec<ContainerRecord> = self
            .all_containers(None)
            .iter()
            .map(|c| c.get())
            .filter(|r| r.state != ContainerState::Creating)
            .collect();
        v.sort_by_key(|a| a.created_at_ns);
        v
    }

    /// cri:RuntimeService.ExecSync: runs `cmd` in the running container; a timeout of 0
    /// means none. Past the timeout the process is killed and DeadlineExceeded returned.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<crate::runtime::oci::ExecOutput> {
        let (runtime, mut process) = self.exec_target(id, cmd)?;
        process.terminal = false;
        let limit = (timeout > 0).then(|| Duration::from_secs(timeout as u64));
        let out = runtime
            .exec(id, &process, limit)
            .await
            .map_err(LifecycleError::runtime(format!("container {id}: exec")))?;
        if out.timed_out {
            return Err(LifecycleError::DeadlineExceeded(format!(
                "command in container {id} timed out after {timeout}s"
            )));
        }
        Ok(out)
    }

    /// What runs `cmd` in running container `id`: its runtime, and its process with `cmd`
    /// as arguments (cri:RuntimeService.ExecSync and Exec; Exec checks when it issues the
    /// URL and again when the client connects).
    pub fn exec_target(
        &self,
        id: &str,
        cmd: Vec<String>,
    ) -> Result<(Arc<OciRuntime>, oci::Process)> {
        let c = self.live_container(id)?;
        if cmd.is_empty() {
            return Err(LifecycleError::invalid("cmd", "must not be empty"));
        }
        if !c.read(|r| r.state == ContainerState::Running) || self.record_exit(id) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let record = c.get();
        let runtime = self.runtime_of(&record)?;
        let spec: oci::Spec = state::read_json(&self.layout.bundle(id).join("config.json"))
            .map_err(io(format!("container {id}: reading config.json")))?
            .ok_or_else(|| {
                LifecycleError::FailedPrecondition(format!("container {id} has no bundle"))
            })?;
        let mut process = spec.process;
        process.args = cmd;
        Ok((runtime, process))
    }

    /// The bundle of running container `id`, where its monitor's attach socket is
    /// (cri:RuntimeService.Attach).
    pub fn attach_target(&self, id: &str) -> Result<PathBuf> {
        let c = self.live_container(id)?;
        if !c.read(|r| r.state == ContainerState::Running) || self.record_exit(id) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(self.layout.bundle(id))
    }

    /// cri:RuntimeService.UpdateContainerResources.
    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        let c = self.live_container(id)?;
        let _op = c.lock().await;
        let Some(resources) = resources else {
            return Ok(());
        };
        if !c.read(|r| matches!(r.state, ContainerState::Created | ContainerState::Running)) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "container {id} has exited; its resources cannot change"
            )));
        }
        let record = c.get();
        let runtime = self.runtime_of(&record)?;
        let mut config = record.config.clone();
        config.linux.get_or_insert_with(Default::default).resources = Some(resources.clone());
        self.check_enforceable(id, Some(&resources))?;
        let oci_resources = spec::resources(&config, &self.host_resources);
        runtime
            .update(id, &oci_resources)
            .await
            .map_err(LifecycleError::runtime(format!(
                "container {id}: updating resources"
            )))?;
        c.update(|r| r.resources = Some(resources))
            .map_err(io(format!("container {id}: writing its record")))?;
        Ok(())
    }

    /// cri:RuntimeService.ReopenContainerLog: the monitor reopens the log file. Returns once
    /// the monitor writes to the file now at the log path: the kubelet's rotation renames
    /// the file, calls this, and reads the new file at once.
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.live_container(id)?;
        let record = c.get();
        if record.state != ContainerState::Running || self.record_exit(id) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        if record.log_path.as_os_str().is_empty() {
            return Ok(());
        }
        if !is_monitor_of(record.monitor_pid, id) {
            return Err(LifecycleError::FailedPrecondition(format!(
                "the monitor of container {id} (pid {}) is gone",
                record.monitor_pid
            )));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(record.monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| LifecycleError::Internal {
            what: format!("container {id}: signalling its monitor"),
            detail: e.to_string(),
        })?;
        let deadline = tokio::time::Instant::now() + REOPEN_LIMIT;
        loop {
            if holds_file(record.monitor_pid, &record.log_path) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LifecycleError::Internal {
                    what: format!("container {id}: reopening its log"),
                    detail: format!(
                        "the monitor did not open {} within {REOPEN_LIMIT:?}",
                        record.log_path.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// How long ReopenContainerLog waits for the monitor to open the new file.
const REOPEN_LIMIT: Duration = Duration::from_secs(5);

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

/// Whether `pid` is crid-monitor watching container `id` (pids get reused).
pub(crate) fn is_monitor_of(pid: i32, id: &str) -> bool {
    pid > 0
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"crid-monitor"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
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

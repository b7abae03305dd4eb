//! What the lifecycle cases share: a [`Scope`] that names everything a case creates
//! uniquely and removes it afterwards, pass or fail, and small CRI helpers.
//!
//! Isolation is the point: a case registers every pod, container and image it creates in
//! its scope; [`scoped`] removes them when the body returns, and the scope's `Drop` does
//! the same from a spawned task when the body is cancelled (time limit, panic). One
//! failing case therefore never leaves state that makes the next one fail, and a run
//! against a shared runtime leaves it as it found it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crid_api::cri;
use crid_api::{ImageServiceClient, RuntimeServiceClient};
use tonic::Code;
use tonic::transport::Channel;

use super::{CaseResult, Ctx, status_text};
use crate::fixtures::image::{BUSYBOX, HTTPD, LATEST, PAUSE, TRAPPED_MARK};

/// The label every pod and container of a scope carries, with the scope's tag as value.
const SCOPE_LABEL: &str = "crid-conformance";
/// How often state is polled while waiting for a transition.
const POLL: Duration = Duration::from_millis(100);
/// Grace period given to StopContainer in cleanup.
const CLEANUP_STOP_TIMEOUT: i64 = 2;
/// How long processes may take to appear, or to be reaped after a removal returned.
const PROCESS_WAIT: Duration = Duration::from_secs(3);
/// How long a started container's shell may take to set its traps (gVisor's ptrace
/// platform is the slow one).
const TRAP_WAIT: Duration = Duration::from_secs(10);

/// What a case created, to be removed in reverse order of kind: containers, pods, images.
#[derive(Debug, Default)]
struct Created {
    containers: Vec<String>,
    pods: Vec<String>,
    images: Vec<String>,
    dirs: Vec<std::path::PathBuf>,
}

/// A case's namespace of names and the list of what it created.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The run's context.
    pub ctx: Ctx,
    /// `<run id>-<case label>`: prefix of every name this case creates.
    pub tag: String,
    counter: AtomicU32,
    created: Arc<Mutex<Created>>,
    cleaned: std::sync::atomic::AtomicBool,
}

/// Runs `body` in a fresh scope, then removes what it created; a cleanup failure of a
/// passing case fails it (the runtime leaked or refused an idempotent removal).
pub(crate) async fn scoped<F, Fut>(ctx: Ctx, label: &str, body: F) -> CaseResult
where
    F: FnOnce(Arc<Scope>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let scope = Arc::new(Scope::new(ctx, label));
    let result = body(scope.clone()).await;
    let cleanup = scope.cleanup().await;
    match (result, cleanup) {
        (Ok(note), Ok(())) => Ok(note),
        (Ok(_), Err(e)) => Err(format!("the case passed but cleanup failed: {e}")),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(format!("{e} (cleanup also failed: {c})")),
    }
}

impl Scope {
    fn new(ctx: Ctx, label: &str) -> Scope {
        let tag = format!("{}-{label}", ctx.run_id);
        Scope {
            ctx,
            tag,
            counter: AtomicU32::new(0),
            created: Arc::default(),
            cleaned: false.into(),
        }
    }

    /// A RuntimeService client.
    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.ctx.channel.clone())
    }

    /// An ImageService client.
    pub fn is(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.ctx.channel.clone())
    }

    /// A name unique in this run: `<tag>-<what>-<n>`.
    pub fn name(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{what}-{n}", self.tag)
    }

    /// The labels `pairs` and [`SCOPE_LABEL`], which every pod and container of this scope
    /// carries: a label selector that finds only this scope's objects.
    pub fn selector(&self, pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([(SCOPE_LABEL.to_owned(), self.tag.clone())])
            .collect()
    }

    /// The reference of fixture image `name:tag`; fails when no fixture registry is up.
    pub fn image(&self, name: &str, tag: &str) -> Result<String, String> {
        self.ctx
            .images
            .as_ref()
            .map(|i| i.image(name, tag))
            .ok_or_else(|| "no fixture registry: run with --registry-state".to_owned())
    }

    /// The fixture registry's `host:port`.
    pub fn registry(&self) -> Result<String, String> {
        self.ctx
            .images
            .as_ref()
            .map(|i| i.registry.clone())
            .ok_or_else(|| "no fixture registry: run with --registry-state".to_owned())
    }

    /// Pulls `image`, with `auth` when given; returns PullImage's image_ref. An image that
    /// was absent before is removed again at cleanup.
    pub async fn pull_ref(
        &self,
        image: &str,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, String> {
        let present = self.image_status(image).await?.is_some();
        let r = self
            .is()
            .pull_image(cri::PullImageRequest {
                image: Some(spec(image)),
                auth,
                sandbox_config: None,
            })
            .await
            .map_err(|s| format!("PullImage {image}: {}", status_text(&s)))?
            .into_inner();
        if !present {
            self.lock().images.push(image.to_owned());
        }
        Ok(r.image_ref)
    }

    /// The reference of fixture image `name:tag`, pulled (see [`Scope::pull_ref`]).
    pub async fn pulled(&self, name: &str, tag: &str) -> Result<String, String> {
        let image = self.image(name, tag)?;
        self.pull_ref(&image, None).await?;
        Ok(image)
    }

    /// Records an image for removal at cleanup (for images pulled by hand).
    pub fn track_image(&self, image: &str) {
        self.lock().images.push(image.to_owned());
    }

    /// Records a container for removal at cleanup (for containers created by hand).
    pub fn track_container(&self, id: &str) {
        self.lock().containers.push(id.to_owned());
    }

    /// Records a pod for removal at cleanup (for pods run by hand).
    pub fn track_pod(&self, id: &str) {
        self.lock().pods.push(id.to_owned());
    }

    /// Records a directory under [`log_root`] for removal at cleanup, after the pods.
    pub fn track_dir(&self, dir: &std::path::Path) {
        self.lock().dirs.push(dir.to_owned());
    }

    /// ImageStatus: `None` when the endpoint says the image is absent.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>, String> {
        self.is()
            .image_status(cri::ImageStatusRequest {
                image: Some(spec(image)),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().image)
            .map_err(|s| format!("ImageStatus {image}: {}", status_text(&s)))
    }

    /// A pod config as the kubelet sends it: unique metadata, a log directory, its own
    /// network and IPC namespace shared by the pod, a PID namespace per container.
    pub fn pod_config(&self) -> cri::PodSandboxConfig {
        let name = self.name("pod");
        let log_dir = log_root().join(&name);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("{name}-uid"),
                namespace: self.ctx.run_id.clone(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: log_dir.display().to_string(),
            labels: self.selector(&[]),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces(cri::NamespaceMode::Container)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with the run's runtime handler; the pod is removed at cleanup.
    pub async fn run_pod(&self, config: &cri::PodSandboxConfig) -> Result<String, String> {
        if !config.log_directory.is_empty() {
            self.lock().dirs.push(config.log_directory.clone().into());
        }
        let id = self
            .rs()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: self.ctx.runtime_handler.clone(),
            })
            .await
            .map_err(|s| format!("RunPodSandbox: {}", status_text(&s)))?
            .into_inner()
            .pod_sandbox_id;
        self.lock().pods.push(id.clone());
        Ok(id)
    }

    /// A pod with the default config.
    pub async fn pod(&self) -> Result<(String, cri::PodSandboxConfig), String> {
        let config = self.pod_config();
        let id = self.run_pod(&config).await?;
        Ok((id, config))
    }

    /// A container config for `image` running `command`, sharing the pod's namespaces.
    pub fn container_config(
        &self,
        pod: &cri::PodSandboxConfig,
        image: &str,
        command: &[&str],
    ) -> cri::ContainerConfig {
        let name = self.name("ctr");
        let ns = pod
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(spec(image)),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            labels: self.selector(&[]),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: ns,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// CreateContainer; the container is removed at cleanup.
    pub async fn create(
        &self,
        pod_id: &str,
        pod: &cri::PodSandboxConfig,
        config: &cri::ContainerConfig,
    ) -> Result<String, String> {
        let id = self
            .rs()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.to_owned(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .map_err(|s| format!("CreateContainer: {}", status_text(&s)))?
            .into_inner()
            .container_id;
        self.lock().containers.push(id.clone());
        Ok(id)
    }

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<(), String> {
        self.rs()
            .start_container(cri::StartContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .map(drop)
            .map_err(|s| format!("StartContainer: {}", status_text(&s)))
    }

    /// Create and start.
    pub async fn run(
        &self,
        pod_id: &str,
        pod: &cri::PodSandboxConfig,
        config: &cri::ContainerConfig,
    ) -> Result<String, String> {
        let id = self.create(pod_id, pod, config).await?;
        self.start(&id).await?;
        Ok(id)
    }

    /// A pod of its own (its config adjusted by `edit_pod`) with a container of the pulled
    /// `image` running `command` (its config adjusted by `edit`), created but not started;
    /// returns (pod id, container id, pod config).
    pub async fn created_in_new_pod(
        &self,
        image: &str,
        command: &[&str],
        edit_pod: impl FnOnce(&mut cri::PodSandboxConfig),
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<(String, String, cri::PodSandboxConfig), String> {
        let mut pod = self.pod_config();
        edit_pod(&mut pod);
        let pod_id = self.run_pod(&pod).await?;
        let mut config = self.container_config(&pod, image, command);
        edit(&mut config);
        let id = self.create(&pod_id, &pod, &config).await?;
        Ok((pod_id, id, pod))
    }

    /// [`Scope::created_in_new_pod`], then started.
    pub async fn started_in_new_pod(
        &self,
        image: &str,
        command: &[&str],
        edit_pod: impl FnOnce(&mut cri::PodSandboxConfig),
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<(String, String, cri::PodSandboxConfig), String> {
        let (pod_id, id, pod) = self
            .created_in_new_pod(image, command, edit_pod, edit)
            .await?;
        self.start(&id).await?;
        Ok((pod_id, id, pod))
    }

    /// A pod with one running long-lived container (the `pause` fixture, which exits 0
    /// on SIGTERM) with `edit` applied to its config; returns (pod id, container id).
    pub async fn running(
        &self,
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<(String, String), String> {
        let image = self.pulled(PAUSE, LATEST).await?;
        let (pod_id, id, _) = self.started_in_new_pod(&image, &[], |_| {}, edit).await?;
        Ok((pod_id, id))
    }

    /// A pod with a `busybox` container created (not started) to run `sh -c script`;
    /// returns (pod id, container id, pod config).
    pub async fn busybox_created(
        &self,
        script: &str,
    ) -> Result<(String, String, cri::PodSandboxConfig), String> {
        let image = self.pulled(BUSYBOX, LATEST).await?;
        self.created_in_new_pod(&image, &["sh", "-c", script], |_| {}, |_| {})
            .await
    }

    /// A pod with a `busybox` container running `sh -c script` in a pod whose config
    /// `edit_pod` adjusted; returns (pod id, container id, pod config).
    pub async fn busybox(
        &self,
        script: &str,
        edit_pod: impl FnOnce(&mut cri::PodSandboxConfig),
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<(String, String, cri::PodSandboxConfig), String> {
        let image = self.pulled(BUSYBOX, LATEST).await?;
        self.started_in_new_pod(&image, &["sh", "-c", script], edit_pod, edit)
            .await
    }

    /// A `busybox` running `sh -c script` (its config adjusted by `edit`) in a pod of its
    /// own, waited for until it is EXITED (at most `limit`); returns its id and that status.
    pub async fn busybox_exited(
        &self,
        script: &str,
        edit: impl FnOnce(&mut cri::ContainerConfig),
        limit: Duration,
    ) -> Result<(String, cri::ContainerStatus), String> {
        let (_, id, _) = self.busybox(script, |_| {}, edit).await?;
        let st = self
            .wait_state(&id, cri::ContainerState::ContainerExited, limit)
            .await?;
        Ok((id, st))
    }

    /// A pod (its config adjusted by `edit_pod`) serving the `httpd` fixture on
    /// [`HTTPD_PORT`](crate::fixtures::image::HTTPD_PORT); returns the pod id.
    pub async fn httpd(
        &self,
        edit_pod: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> Result<String, String> {
        let image = self.pulled(HTTPD, LATEST).await?;
        let (pod_id, _, _) = self
            .started_in_new_pod(&image, &[], edit_pod, |_| {})
            .await?;
        Ok(pod_id)
    }

    /// A running busybox that sleeps, to exec into; `edit` adjusts its config.
    pub async fn sleeper(
        &self,
        edit: impl FnOnce(&mut cri::ContainerConfig),
    ) -> Result<(String, String), String> {
        let (pod, id, _) = self.busybox(SLEEP_SCRIPT, |_| {}, edit).await?;
        Ok((pod, id))
    }

    /// A busybox in a pod of its own that shares the host's PID namespace: it sees every
    /// process of the endpoint's host, so cases can check that processes are gone through
    /// CRI alone (the harness may run elsewhere). Returns its container id.
    pub async fn host_pid_watcher(&self) -> Result<String, String> {
        let host = |n: &mut cri::NamespaceOption| n.pid = cri::NamespaceMode::Node as i32;
        let (_, id, _) = self
            .busybox(SLEEP_SCRIPT, |p| host(pod_ns(p)), |c| host(ctr_ns(c)))
            .await?;
        Ok(id)
    }

    /// The PIDs whose command line contains `marker`, as `watcher` (see
    /// [`Scope::host_pid_watcher`]) sees them. The pattern brackets a character so that
    /// the search never finds itself.
    pub async fn processes_with(&self, watcher: &str, marker: &str) -> Result<Vec<String>, String> {
        Ok(self
            .sh(watcher, &process_search(marker)?)
            .await?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// Waits until processes with `marker` in their command line are there (`present`) or
    /// gone; fails after [`PROCESS_WAIT`] with the PIDs still (or never) seen.
    pub async fn wait_processes(
        &self,
        watcher: &str,
        marker: &str,
        present: bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let pids = self.processes_with(watcher, marker).await?;
            if pids.is_empty() != present {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(if present {
                    format!("no process with {marker} in its command line appeared on the host")
                } else {
                    format!(
                        "processes {pids:?} (command line with {marker}) still run {PROCESS_WAIT:?} after the removal returned"
                    )
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until container `id` has created [`TRAPPED_MARK`], which the fixtures' scripts
    /// (and cases' own) touch once their traps are set: StartContainer returns when the
    /// process runs, not when its shell has read its traps, and a signal that comes first
    /// meets the default disposition. Linux protects a namespace's init from that (the
    /// signal is dropped, so a case sees the grace period run out); gVisor does not (the
    /// container dies of it). Fails after [`TRAP_WAIT`].
    pub async fn wait_trapped(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + TRAP_WAIT;
        loop {
            let (_, _, code) = self.exec(id, &["test", "-e", TRAPPED_MARK], 10).await?;
            if code == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the container's script did not set its traps ({TRAPPED_MARK} missing) within {TRAP_WAIT:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// ContainerStatus.
    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, String> {
        self.rs()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|s| format!("ContainerStatus: {}", status_text(&s)))?
            .into_inner()
            .status
            .ok_or_else(|| "ContainerStatus answered without status".to_owned())
    }

    /// PodSandboxStatus.
    pub async fn pod_status(&self, id: &str) -> Result<cri::PodSandboxStatus, String> {
        self.rs()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|s| format!("PodSandboxStatus: {}", status_text(&s)))?
            .into_inner()
            .status
            .ok_or_else(|| "PodSandboxStatus answered without status".to_owned())
    }

    /// Polls ContainerStatus until its state is `want` or `limit` passes.
    pub async fn wait_state(
        &self,
        id: &str,
        want: cri::ContainerState,
        limit: Duration,
    ) -> Result<cri::ContainerStatus, String> {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.container_status(id).await?;
            if st.state == want as i32 {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "container stayed {} for {limit:?}, expected {}",
                    container_state_name(st.state),
                    want.as_str_name()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// StopContainer with a grace period in seconds.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), String> {
        self.rs()
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_owned(),
                timeout,
            })
            .await
            .map(drop)
            .map_err(|s| format!("StopContainer: {}", status_text(&s)))
    }

    /// RemoveContainer; a gRPC error (NotFound too) is a failure.
    pub async fn remove_container(&self, id: &str) -> Result<(), String> {
        self.rs()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .map(drop)
            .map_err(|e| format!("RemoveContainer: {}", status_text(&e)))
    }

    /// ExecSync: (stdout, stderr, exit code); a gRPC error is a failure.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<(String, String, i32), String> {
        let r = self
            .rs()
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.to_owned(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                timeout,
            })
            .await
            .map_err(|s| format!("ExecSync {cmd:?}: {}", status_text(&s)))?
            .into_inner();
        Ok((
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
        ))
    }

    /// ExecSync `sh -c script` that must exit 0; returns trimmed stdout.
    pub async fn sh(&self, id: &str, script: &str) -> Result<String, String> {
        let (out, err, code) = self.exec(id, &["sh", "-c", script], 20).await?;
        ensure_ok(code == 0, || {
            format!("`{script}` exited {code}: stdout {out:?} stderr {err:?}")
        })?;
        Ok(out.trim().to_owned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Created> {
        // A poisoned lock only means another holder panicked; the list is still valid.
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// CreateContainer of `config` in pod `pod_id`, a request a case expects to be refused:
    /// a container made anyway is tracked for clean-up. Returns the answer, and the
    /// containers of the config's name in the pod afterwards (a refusal must leave none).
    pub async fn create_refused(
        &self,
        pod_id: &str,
        pod: &cri::PodSandboxConfig,
        config: cri::ContainerConfig,
    ) -> Result<(CreateAnswer, Vec<String>), String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let r = self
            .rs()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.to_owned(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await;
        if let Ok(created) = &r {
            self.track_container(&created.get_ref().container_id);
        }
        let left = self.containers_named(pod_id, &name).await?;
        Ok((r, left))
    }

    /// The containers of pod `pod_id` named `name` (ListContainers), tracked for removal:
    /// what a refused CreateContainer must not have left.
    pub async fn containers_named(&self, pod_id: &str, name: &str) -> Result<Vec<String>, String> {
        let containers = self
            .rs()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: pod_id.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| format!("ListContainers: {}", status_text(&e)))?
            .into_inner()
            .containers;
        Ok(containers
            .into_iter()
            .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == name))
            .map(|c| {
                self.track_container(&c.id);
                c.id
            })
            .collect())
    }

    /// Removes everything created, in order; idempotent.
    pub async fn cleanup(&self) -> Result<(), String> {
        self.cleaned.store(true, Ordering::SeqCst);
        let created = std::mem::take(&mut *self.lock());
        remove_all(self.ctx.channel.clone(), created).await
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.cleaned.load(Ordering::SeqCst) {
            return;
        }
        // Cancelled body (time limit or panic): clean up in the background.
        let created = std::mem::take(&mut *self.lock());
        let channel = self.ctx.channel.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = remove_all(channel, created).await;
            });
        }
    }
}

/// NotFound on removal means someone (the case itself) already removed it.
fn gone(s: &tonic::Status) -> bool {
    s.code() == Code::NotFound
}

async fn remove_all(channel: Channel, created: Created) -> Result<(), String> {
    let mut rs = RuntimeServiceClient::new(channel.clone());
    let mut is = ImageServiceClient::new(channel);
    let mut errors = Vec::new();
    for id in created.containers.iter().rev() {
        let _ = rs
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: CLEANUP_STOP_TIMEOUT,
            })
            .await;
        if let Err(s) = rs
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            && !gone(&s)
        {
            errors.push(format!("RemoveContainer {id}: {}", status_text(&s)));
        }
    }
    for id in created.pods.iter().rev() {
        if let Err(s) = rs
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            && !gone(&s)
        {
            errors.push(format!("StopPodSandbox {id}: {}", status_text(&s)));
        }
        if let Err(s) = rs
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            && !gone(&s)
        {
            errors.push(format!("RemovePodSandbox {id}: {}", status_text(&s)));
        }
    }
    for image in created.images.iter().rev() {
        if let Err(s) = is
            .remove_image(cri::RemoveImageRequest {
                image: Some(spec(image)),
            })
            .await
            && !gone(&s)
        {
            errors.push(format!("RemoveImage {image}: {}", status_text(&s)));
        }
    }
    for dir in &created.dirs {
        // Only our own log directories (named by the run); the runtime made them for us.
        if dir.starts_with(log_root()) {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
    }
    // The shared root goes once empty (fails harmlessly while other pods' logs remain).
    if !created.dirs.is_empty() {
        let _ = tokio::fs::remove_dir(log_root()).await;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Where pods' log directories go: under the temp dir, per pod name (unique per run).
pub(crate) fn log_root() -> std::path::PathBuf {
    std::env::temp_dir().join("crid-conformance-logs")
}

/// What CreateContainer answered.
pub type CreateAnswer = Result<tonic::Response<cri::CreateContainerResponse>, tonic::Status>;

/// A script that runs until killed, reacting to SIGTERM within a fraction of a second.
pub(crate) const SLEEP_SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 0.2; done";

/// An ImageSpec for `image`.
pub(crate) fn spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// Namespace options as the kubelet sets them: pod network and IPC, `pid` as given.
pub(crate) fn namespaces(pid: cri::NamespaceMode) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// The container's security context, created when missing.
pub(crate) fn sc(config: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The pod's security context, created when missing.
pub(crate) fn pod_sc(config: &mut cri::PodSandboxConfig) -> &mut cri::LinuxSandboxSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The container's namespace options, created when missing.
pub(crate) fn ctr_ns(config: &mut cri::ContainerConfig) -> &mut cri::NamespaceOption {
    sc(config)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// The pod's namespace options, created when missing.
pub(crate) fn pod_ns(config: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    pod_sc(config)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// The name of a ContainerState value, for messages.
pub(crate) fn container_state_name(v: i32) -> String {
    cri::ContainerState::try_from(v)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("state {v}"))
}

/// `ensure` for helpers.
pub(crate) fn ensure_ok(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Accepts OK or NotFound: how the kubelet treats repeated removals of unknown objects.
pub(crate) fn ok_or_not_found<T>(
    rpc: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(format!("{rpc}: {}", status_text(&s))),
    }
}

/// Requires an error status judging the input; returns its code. Unimplemented is not
/// such a refusal: the endpoint never looked at the request.
pub(crate) fn refused<T>(
    rpc: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Code, String> {
    match r {
        Ok(_) => Err(format!("{rpc} succeeded, expected an error")),
        Err(s) if s.code() == Code::Unimplemented => Err(format!(
            "{rpc} is not served ({}), so the request was never judged",
            status_text(&s)
        )),
        Err(s) => Ok(s.code()),
    }
}

/// A shell script printing the PIDs whose command line contains `marker`. Its pattern
/// brackets the first character, so the script's own command line never matches.
pub(crate) fn process_search(marker: &str) -> Result<String, String> {
    let mut chars = marker.chars();
    let first = chars.next().ok_or("empty marker")?;
    ensure_ok(
        marker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        || format!("marker {marker:?} must be plain text"),
    )?;
    let pattern = format!("[{first}]{}", chars.as_str());
    Ok(format!(
        "for f in /proc/[0-9]*/cmdline; do \
         if tr '\\0' ' ' < \"$f\" 2>/dev/null | grep -q -e '{pattern}'; then \
         p=${{f#/proc/}}; echo ${{p%/cmdline}}; fi; done; true"
    ))
}

/// Requires the refusal of a second object whose name is taken: AlreadyExists, or a code
/// runtimes use for it (FailedPrecondition, InvalidArgument, or Unknown, which Go runtimes
/// answer for errors without a status) with a message that names the taken `name`. Any
/// other error (Unimplemented, Internal, DeadlineExceeded...) says nothing of the
/// duplicate. Returns a note with the code.
pub(crate) fn refused_duplicate<T>(
    rpc: &str,
    r: Result<tonic::Response<T>, tonic::Status>,
    name: &str,
) -> Result<String, String> {
    let s = match r {
        Ok(_) => return Err(format!("{rpc} created a second object named {name}")),
        Err(s) => s,
    };
    let names_it = s.message().contains(name);
    match s.code() {
        Code::AlreadyExists => Ok(format!("{:?}", s.code())),
        Code::FailedPrecondition | Code::InvalidArgument | Code::Unknown if names_it => {
            Ok(format!("{:?}", s.code()))
        }
        Code::FailedPrecondition | Code::InvalidArgument | Code::Unknown => Err(format!(
            "{rpc} refused the duplicate with {}, which does not name {name}: not a refusal of the name",
            status_text(&s)
        )),
        _ => Err(format!(
            "{rpc} answered {}, not a refusal of the taken name {name} (AlreadyExists)",
            status_text(&s)
        )),
    }
}

/// The effective capability set of `/proc/self/status` as a bit mask.
pub(crate) fn cap_eff(status: &str) -> Result<u64, String> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| format!("no CapEff in {status:?}"))?;
    u64::from_str_radix(hex.trim(), 16).map_err(|e| format!("CapEff {hex:?}: {e}"))
}

/// The value of a `Key:\tvalue` line of `/proc/self/status`.
pub(crate) fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Every message of a server stream (the streaming list RPCs), or the error that ended it.
pub(crate) async fn drained<M>(
    rpc: &str,
    r: Result<tonic::Response<tonic::Streaming<M>>, tonic::Status>,
) -> Result<Vec<M>, String> {
    let mut stream = r
        .map_err(|e| format!("{rpc}: {}", status_text(&e)))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream
        .message()
        .await
        .map_err(|e| format!("{rpc}: {}", status_text(&e)))?
    {
        out.push(m);
    }
    Ok(out)
}

/// Judges the `info` of a status RPC asked once without and once with `verbose`: api.proto
/// says info comes only when verbose is true, its values JSON. Returns the keys given.
pub(crate) fn check_verbose_info(
    rpc: &str,
    terse: HashMap<String, String>,
    verbose: HashMap<String, String>,
) -> Result<String, String> {
    ensure_ok(terse.is_empty(), || {
        format!(
            "{rpc} with verbose false returned info {:?}",
            terse.keys().collect::<Vec<_>>()
        )
    })?;
    ensure_ok(!verbose.is_empty(), || {
        format!("{rpc} with verbose true returned no info")
    })?;
    let mut keys: Vec<&String> = verbose.keys().collect();
    keys.sort();
    for k in &keys {
        serde_json::from_str::<serde_json::Value>(&verbose[*k])
            .map_err(|e| format!("{rpc} info[{k:?}] is not JSON: {e}"))?;
    }
    Ok(format!("info keys {keys:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_info_only_when_asked_and_json() {
        let map = |v: &[(&str, &str)]| -> HashMap<String, String> {
            v.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(check_verbose_info("X", map(&[]), map(&[("info", "{\"pid\":1}")])).is_ok());
        assert!(check_verbose_info("X", map(&[("info", "{}")]), map(&[("info", "{}")])).is_err());
        assert!(check_verbose_info("X", map(&[]), map(&[])).is_err());
        assert!(check_verbose_info("X", map(&[]), map(&[("info", "not json")])).is_err());
    }
    use crate::cases::{Area, Case, ImageRefs, Needs, Requirement, Verdict};
    use crate::fixtures::containerd::{Containerd, ContainerdOptions};
    use crate::fixtures::registry::{Registry, RegistryOptions};
    use crate::runner::{self, Environment};

    async fn pods(ctx: &Ctx) -> Vec<String> {
        RuntimeServiceClient::new(ctx.channel.clone())
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    async fn containers(ctx: &Ctx) -> usize {
        RuntimeServiceClient::new(ctx.channel.clone())
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
            .len()
    }

    /// A case that creates a pod with a running container, then fails.
    async fn fails_after_creating(s: Arc<Scope>) -> CaseResult {
        s.sleeper(|_| {}).await?;
        Err("boom".into())
    }

    /// A case that creates a pod with a running container, then hangs past its limit.
    async fn hangs_after_creating(s: Arc<Scope>) -> CaseResult {
        s.sleeper(|_| {}).await?;
        std::future::pending::<()>().await;
        Ok(String::new())
    }

    /// Isolation against the real containerd: what a failing or timed-out case created is
    /// removed (pods, containers, pulled images, log directories), so nothing cascades.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_and_cancelled_cases_clean_up_needs_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs containerd: run it as root (scripts/setup.sh installs it)"
        );
        let registry = Registry::start(RegistryOptions::plain())
            .await
            .expect("registry");
        registry.push_all_fixtures().await.expect("push fixtures");
        let ctd = Containerd::start(ContainerdOptions::new(registry.host()))
            .await
            .expect("containerd (run scripts/setup.sh)");
        let ctx = Ctx {
            channel: ctd.channel().await.expect("channel"),
            run_id: runner::new_run_id(),
            runtime_handler: String::new(),
            images: Some(Arc::new(ImageRefs {
                registry: registry.host(),
                credentials: None,
            })),
            not_ready: None,
        };
        let busybox = ctx.images.as_ref().expect("images").image(
            crate::fixtures::image::BUSYBOX,
            crate::fixtures::image::LATEST,
        );
        let image_present = |ctx: Ctx, image: String| async move {
            ImageServiceClient::new(ctx.channel)
                .image_status(cri::ImageStatusRequest {
                    image: Some(spec(&image)),
                    verbose: false,
                })
                .await
                .expect("ImageStatus")
                .into_inner()
                .image
                .is_some()
        };

        let r = scoped(ctx.clone(), "fail", fails_after_creating).await;
        assert_eq!(r, Err("boom".to_owned()));
        assert_eq!(
            pods(&ctx).await,
            Vec::<String>::new(),
            "pods left by a failed case"
        );
        assert_eq!(containers(&ctx).await, 0);
        assert!(
            !image_present(ctx.clone(), busybox.clone()).await,
            "pulled image left"
        );

        let hanging = Case {
            id: "container/test-hang",
            clause: "cri:RuntimeService.RunPodSandbox#test",
            area: Area::Container,
            requirement: Requirement::Required,
            needs: Needs::default(),
            summary: "hangs",
            timeout: Duration::from_secs(20),
            run: |ctx| Box::pin(scoped(ctx, "hang", hangs_after_creating)),
        };
        let out = runner::run(&ctx, &[hanging], &Environment::detect(), |_| {}).await;
        assert!(matches!(&out[0].verdict, Verdict::Fail(m) if m.contains("timed out")));
        // The scope's Drop cleans up from a spawned task; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pods(&ctx).await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(
            pods(&ctx).await,
            Vec::<String>::new(),
            "pods left by a cancelled case"
        );
        assert_eq!(containers(&ctx).await, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while image_present(ctx.clone(), busybox.clone()).await && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        assert!(
            !image_present(ctx.clone(), busybox.clone()).await,
            "image left by a cancelled case"
        );
        ctd.shutdown().await.expect("clean containerd teardown");
    }

    /// The search a host-PID watcher runs, run here on this host: it finds a process by
    /// the marker in its command line, never itself, and nothing once the process is gone.
    #[test]
    fn the_process_search_finds_the_marked_process_and_not_itself() {
        let marker = format!("victim-{}", std::process::id());
        let mut victim = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("while :; do sleep 1; done # {marker}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let script = process_search(&marker).expect("script");
        let search = || {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh");
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(search(), vec![victim.id().to_string()]);
        victim.kill().expect("kill");
        victim.wait().expect("reap");
        assert_eq!(search(), Vec::<String>::new());
        assert!(process_search("a'b").is_err());
    }

    #[test]
    fn duplicates_must_be_refused_for_the_name() {
        let r = |code, msg: &str| -> Result<tonic::Response<()>, tonic::Status> {
            Err(tonic::Status::new(code, msg))
        };
        let n = "run-pod-0";
        assert!(refused_duplicate("X", r(Code::AlreadyExists, "taken"), n).is_ok());
        assert!(
            refused_duplicate(
                "X",
                r(
                    Code::Unknown,
                    "failed to reserve sandbox name \"run-pod-0_ns\""
                ),
                n
            )
            .is_ok()
        );
        assert!(refused_duplicate("X", r(Code::Unknown, "disk full"), n).is_err());
        for code in [
            Code::Unimplemented,
            Code::Internal,
            Code::DeadlineExceeded,
            Code::Unavailable,
        ] {
            assert!(
                refused_duplicate("X", r(code, "run-pod-0"), n).is_err(),
                "{code:?}"
            );
        }
        assert!(refused_duplicate("X", Ok(tonic::Response::new(())), n).is_err());
    }

    #[test]
    fn capability_masks_parse() {
        let s = "Name:\tsh\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t1\n";
        assert_eq!(cap_eff(s), Ok(0xa80425fb));
        assert_eq!(status_field(s, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(s, "Seccomp"), None);
        assert!(cap_eff("Name: x").is_err());
    }
}

//! containerd shim v2 handlers: the protocol Kata Containers' `containerd-shim-kata-v2`,
//! gVisor's `containerd-shim-runsc-v1` and containerd's own `containerd-shim-runc-v2` speak.
//!
//! crid starts the shim binary as containerd does ([`launch`]), then drives the task API
//! over ttrpc ([`client`]): Create, Start, Wait, Kill, Delete, State, Exec, Update,
//! Connect and Shutdown. A shim groups the containers of one pod when their specs carry
//! the `io.kubernetes.cri.sandbox-id` annotation (crid's do): `start` then answers the
//! address of the pod's running shim, and Shutdown after the last Delete ends it.
//!
//! What reaches crid, and how:
//! - exits: a task of the daemon waits on the task API's Wait and writes the exit record
//!   to [`CreateRequest::exit_file`]; there is no monitor process (`monitor_pid` 0).
//! - output: the container's stdout and stderr are FIFOs in its bundle, copied into the
//!   CRI log by a task of the daemon ([`io`]). That copy ends when crid does: a container
//!   that outlives a crid restart keeps running, but its log stops.
//! - events: crid serves the events API at the `TTRPC_ADDRESS` it gives the shim
//!   ([`events`]); an OOM event marks the container, and its exit record says OOM-killed.
//!
//! Each container's shim address is kept in `<runroot>/shims/<handler>/<id>.json`, so a
//! restarted crid reconnects on the first call about the container (and waits for its
//! exit again); a shim that died is cleaned up with the binary's `delete`.

mod attach;
pub mod client;
mod create;
pub mod events;
mod exec;
pub mod io;
pub mod launch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::types::task::Status;
use serde::{Deserialize, Serialize};

use self::client::{CallError, TaskClient};
use self::launch::{Launcher, ShimAddress};
use super::RuntimeError;
use super::handler::{Features, RuntimeHandler};
use super::interactive::{AttachStream, Interactive, Streams};
use super::oci::{CreateRequest, Created, ExecOutput, State};
use crate::config::RuntimeKind;
use crate::monitor::exit::{self, ExitRecord};
use crate::spec::oci::{Process, Resources};

/// Default bound on each task API call and on `start`/`delete` of the shim binary.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGKILLed task or process may take to be reported exited.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long attached clients still get a container's output after it exited.
const ATTACH_DRAIN: Duration = Duration::from_secs(1);

/// The containerd namespace crid's shims run in.
pub const NAMESPACE: &str = "crid";

/// containerd's type URL of an OCI `Process` (JSON) in a protobuf Any.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// containerd's type URL of OCI `LinuxResources` (JSON) in a protobuf Any.
pub const RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// What crid keeps of each container it created through a shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TaskRecord {
    shim: ShimAddress,
    bundle: PathBuf,
    exit_file: PathBuf,
}

/// A shim v2 runtime handler.
#[derive(Debug)]
pub struct ShimHandler {
    name: String,
    launcher: Launcher,
    state_dir: PathBuf,
    timeout: Duration,
    /// One connection per shim address.
    clients: tokio::sync::Mutex<HashMap<String, TaskClient>>,
    /// Containers whose exit a task is waiting for.
    waiting: Arc<Mutex<HashSet<String>>>,
    /// Each container's attach point (this daemon's containers only, like `log_reopens`);
    /// it holds crid's end of the stdin FIFO of a container with `stdin` set.
    hubs: Mutex<HashMap<String, Arc<attach::AttachHub>>>,
    /// Where to ask each container's log copy to reopen its file (this daemon's copies only:
    /// a container that outlived a crid restart has none).
    log_reopens: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<io::Reopen>>>,
    /// The events server, started on first use (`None`: it could not be started).
    events: tokio::sync::OnceCell<Option<events::EventServer>>,
    /// Run the pod's infra container as the shim's sandbox task in every pod (Kata boots
    /// its VM with it), not only in pods that share a PID namespace.
    always_infra: bool,
}

impl ShimHandler {
    /// Handler `name` over the shim binary `binary`; its state lives below `runroot`.
    pub fn new(name: &str, binary: PathBuf, runroot: &Path) -> ShimHandler {
        let state_dir = runroot.join("shims").join(name);
        ShimHandler {
            name: name.to_owned(),
            launcher: Launcher {
                handler: name.to_owned(),
                binary,
                namespace: NAMESPACE.to_owned(),
                address: state_dir.join("containerd.sock"),
                publish_binary: super::resolve_binary(Path::new("true"))
                    .unwrap_or_else(|| PathBuf::from("/bin/true")),
                timeout: DEFAULT_TIMEOUT,
            },
            state_dir,
            timeout: DEFAULT_TIMEOUT,
            clients: tokio::sync::Mutex::default(),
            waiting: Arc::default(),
            events: tokio::sync::OnceCell::new(),
            hubs: Mutex::default(),
            log_reopens: Mutex::default(),
            always_infra: false,
        }
    }

    /// Runs the pod's infra container in every pod (`always_infra` of the handler's config).
    pub fn always_infra(mut self, on: bool) -> Self {
        self.always_infra = on;
        self
    }

    /// Bounds each call by `t`.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self.launcher.timeout = t;
        self
    }

    /// The shim binary.
    pub fn binary(&self) -> &Path {
        &self.launcher.binary
    }

    /// Where the handler keeps each container's shim address.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The ttrpc address of the shim serving container `id`, if crid created it.
    pub fn shim_address(&self, id: &str) -> Option<String> {
        self.load(id).ok().flatten().map(|r| r.shim.address)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.state_dir.join(format!("{id}.json"))
    }

    fn load(&self, id: &str) -> Result<Option<TaskRecord>, RuntimeError> {
        self.check_id(id)?;
        match std::fs::read(self.record_path(id)) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| RuntimeError::BadOutput {
                        handler: self.name.clone(),
                        command: "load",
                        id: id.to_owned(),
                        reason: format!("{}: {e}", self.record_path(id).display()),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io("load", id, source)),
        }
    }

    fn save(&self, id: &str, record: &TaskRecord) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| self.io("create", id, std::io::Error::other(e)))?;
        std::fs::create_dir_all(&self.state_dir).map_err(|e| self.io("create", id, e))?;
        crate::state::write_volatile(&self.record_path(id), &bytes)
            .map_err(|e| self.io("create", id, e))
    }

    fn forget(&self, id: &str) {
        let _ = std::fs::remove_file(self.record_path(id));
        let _ = std::fs::remove_file(events::oom_mark(&self.state_dir, id));
        if let Some(hub) = self
            .hubs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            hub.end();
        }
        self.log_reopens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Container `id`'s attach hub, if this daemon created the container.
    fn hub(&self, id: &str) -> Option<Arc<attach::AttachHub>> {
        self.hubs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Serves the events API where the shims post (their `TTRPC_ADDRESS`), once.
    async fn serve_events(&self) {
        self.events
            .get_or_init(|| async {
                let socket = self.launcher.ttrpc_address();
                match events::serve(&socket, &self.state_dir).await {
                    Ok(server) => Some(server),
                    Err(e) => {
                        tracing::warn!(handler = %self.name, "shim events will not be received: {e}");
                        None
                    }
                }
            })
            .await;
    }

    fn io(&self, command: &'static str, id: &str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            handler: self.name.clone(),
            command,
            id: id.to_owned(),
            source,
        }
    }

    /// A task API failure as the runtime error callers see.
    fn failed(&self, command: &'static str, id: &str, e: CallError) -> RuntimeError {
        match e {
            CallError::Timeout { limit, .. } => RuntimeError::Timeout {
                handler: self.name.clone(),
                binary: self.launcher.binary.clone(),
                command: command.into(),
                id: Some(id.to_owned()),
                timeout: limit,
            },
            e => RuntimeError::Command {
                handler: self.name.clone(),
                command,
                id: id.to_owned(),
                status: "task API".into(),
                stderr: e.to_string(),
            },
        }
    }

    fn unknown(&self, command: &'static str, id: &str) -> RuntimeError {
        RuntimeError::Command {
            handler: self.name.clone(),
            command,
            id: id.to_owned(),
            status: "task API".into(),
            stderr: format!("container {id} does not exist"),
        }
    }

    /// Container IDs go on the shim's command line: no empty ones, no options, no paths.
    fn check_id(&self, id: &str) -> Result<(), RuntimeError> {
        super::check_id(&self.name, id)
    }

    /// The connection to the shim at `shim`, made once. The map is not locked while
    /// connecting: a shim slow to answer holds up only the calls about its own containers.
    async fn client(&self, shim: &ShimAddress) -> Result<TaskClient, CallError> {
        self.serve_events().await;
        if let Some(c) = self.clients.lock().await.get(&shim.address) {
            return Ok(c.clone());
        }
        let c = TaskClient::connect(shim, self.timeout).await?;
        Ok(self
            .clients
            .lock()
            .await
            .entry(shim.address.clone())
            .or_insert(c)
            .clone())
    }

    async fn drop_client(&self, address: &str) {
        self.clients.lock().await.remove(address);
    }

    /// Runs `call` on the connection to `record`'s shim; a connection that broke (the shim
    /// restarted its server, or crid's cached connection is stale) is made afresh once.
    async fn retry<T, F, Fut>(&self, record: &TaskRecord, call: F) -> Result<T, CallError>
    where
        F: Fn(TaskClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let client = self.client(&record.shim).await?;
        match call(client).await {
            Err(CallError::Unreachable(_)) => {
                self.drop_client(&record.shim.address).await;
                let client = self.client(&record.shim).await?;
                call(client).await
            }
            r => r,
        }
    }

    /// Container `id`'s record and a connection to its shim, with its exit watched (after a
    /// crid restart this is where the exit is waited for again). `Ok(None)`: crid created
    /// no such container. `Err`: its shim cannot be reached.
    async fn task(&self, id: &str) -> Result<Option<(TaskRecord, TaskClient)>, RuntimeError> {
        let Some(record) = self.load(id)? else {
            return Ok(None);
        };
        let t = self.timeout;
        let reached = self
            .retry(
                &record,
                |c| async move { c.state(id, "", t).await.map(|_| c) },
            )
            .await;
        let client = match reached {
            Ok(c) => c,
            Err(e) if e.is_not_found() => match self.client(&record.shim).await {
                Ok(c) => c,
                Err(e) => return Err(self.failed("delete", id, e)),
            },
            Err(e) => {
                // A stale connection (the shim restarted, or ended): try once more afresh.
                self.drop_client(&record.shim.address).await;
                return Err(self.failed("connect", id, e));
            }
        };
        self.watch_exit(id, &client, &record.exit_file);
        Ok(Some((record, client)))
    }

    /// A container whose shim died can no longer be signalled through it: the shim
    /// binary's `delete` kills what is left, and the exit is recorded as a kill (137), so
    /// that StopContainer and RemoveContainer still complete.
    async fn kill_orphan(&self, id: &str, record: &TaskRecord) -> Result<(), RuntimeError> {
        tracing::warn!(handler = %self.name, container = %id, "the container's shim is gone; killing it with the shim binary's `delete`");
        self.drop_client(&record.shim.address).await;
        if let Err(e) = self.launcher.delete(id, &record.bundle).await {
            tracing::warn!(handler = %self.name, container = %id, "the shim's `delete` failed: {e}");
        }
        if !record.exit_file.exists() {
            let r = ExitRecord {
                exit_code: 128 + libc::SIGKILL,
                exited_at_ns: crate::state::now_ns(),
                oom_killed: false,
            };
            let path = record.exit_file.clone();
            tokio::task::spawn_blocking(move || exit::write(&path, &r))
                .await
                .map_err(|e| self.io("kill", id, std::io::Error::other(e)))?
                .map_err(|e| self.io("kill", id, e))?;
        }
        Ok(())
    }

    /// Waits (in a task) for container `id`'s exit and writes its exit record, unless a
    /// waiter is already there or the record exists.
    fn watch_exit(&self, id: &str, client: &TaskClient, exit_file: &Path) {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if !waiting.insert(id.to_owned()) {
                return;
            }
        }
        let (id, client, exit_file) = (id.to_owned(), client.clone(), exit_file.to_path_buf());
        let (waiting, record, name) = (
            self.waiting.clone(),
            self.record_path(&id),
            self.name.clone(),
        );
        let oom = events::oom_mark(&self.state_dir, &id);
        let hub = self.hub(&id);
        tokio::spawn(async move {
            let outcome = client.wait(&id, "", None).await;
            if let Some(hub) = hub {
                hub.exited(ATTACH_DRAIN);
            }
            waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            match outcome {
                // Written only while crid still has the container: a waiter that returns
                // after Delete must not leave an exit file behind.
                Ok(resp) if record.exists() && !exit_file.exists() => {
                    let exited_at_ns = resp
                        .exited_at
                        .as_ref()
                        .map_or_else(crate::state::now_ns, |t| {
                            t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos)
                        });
                    let r = ExitRecord {
                        exit_code: resp.exit_status as i32,
                        exited_at_ns,
                        oom_killed: oom.exists(),
                    };
                    let written =
                        tokio::task::spawn_blocking(move || exit::write(&exit_file, &r)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        tracing::error!(handler = %name, container = %id, "cannot write the exit record: {written:?}");
                    }
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(handler = %name, container = %id, "waiting for the container's exit: {e}");
                }
            }
        });
    }
}

/// A shim's `-v` output as one line: `containerd-shim-runc-v2 1.6.20~ds1` from
/// `/usr/bin/containerd-shim-runc-v2:` and `  Version:  1.6.20~ds1` (containerd's shims,
/// Kata's); the first line as it is when there is no `Version:` line.
pub fn shim_version(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default().trim();
    let name = first.trim_end_matches(':');
    let name = name.rsplit('/').next().unwrap_or(name);
    match text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(str::trim)
    {
        Some(v) if !v.is_empty() => format!("{name} {v}"),
        _ => first.to_owned(),
    }
}

/// Signal names as the container service sends them (`SIGTERM`, `TERM`, `KILL`, `15`) to
/// numbers.
pub fn signal_number(signal: &str) -> Option<u32> {
    if let Ok(n) = signal.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = signal.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32 as u32)
}

fn any_json<T: Serialize>(type_url: &str, value: &T) -> Result<Any, serde_json::Error> {
    Ok(Any {
        type_url: type_url.to_owned(),
        value: serde_json::to_vec(value)?,
        ..Default::default()
    })
}

#[async_trait::async_trait]
impl RuntimeHandler for ShimHandler {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Vm
    }

    fn features(&self) -> Features {
        Features::default()
    }

    fn needs_infra(&self) -> bool {
        self.always_infra
    }

    /// Starts (or joins) the shim, creates the task with its output on FIFOs copied into
    /// the CRI log, and waits for its exit in a task. On failure nothing is left.
    async fn create(&self, req: &CreateRequest) -> Result<Created, RuntimeError> {
        self.create_container(req).await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (record, _) = self
            .task(id)
            .await?
            .ok_or_else(|| self.unknown("start", id))?;
        let t = self.timeout;
        self.retry(&record, |c| async move { c.start(id, "", t).await })
            .await
            .map(drop)
            .map_err(|e| self.failed("start", id, e))
    }

    async fn state(&self, id: &str) -> Result<Option<State>, RuntimeError> {
        self.check_id(id)?;
        let record = match self.task(id).await {
            Ok(Some((record, _))) => record,
            Ok(None) => return Ok(None),
            Err(e) => {
                // The shim is gone, and the container with it as far as crid can tell.
                tracing::warn!(handler = %self.name, container = %id, "{e}");
                return Ok(None);
            }
        };
        let t = self.timeout;
        let resp = match self
            .retry(&record, |c| async move { c.state(id, "", t).await })
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(CallError::Unreachable(e)) => {
                tracing::warn!(handler = %self.name, container = %id, "shim unreachable: {e}");
                return Ok(None);
            }
            Err(e) => return Err(self.failed("state", id, e)),
        };
        let status = match resp.status.enum_value_or_default() {
            Status::CREATED => "created",
            Status::RUNNING => "running",
            Status::STOPPED => "stopped",
            Status::PAUSED | Status::PAUSING => "paused",
            Status::UNKNOWN => "unknown",
        };
        Ok(Some(State {
            status: status.to_owned(),
            pid: if status == "stopped" {
                0
            } else {
                resp.pid as i32
            },
            bundle: resp.bundle.into(),
        }))
    }

    async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        let number = signal_number(signal).ok_or_else(|| RuntimeError::InvalidArgument {
            handler: self.name.clone(),
            what: "signal",
            value: signal.to_owned(),
        })?;
        let Some(record) = self.load(id)? else {
            return Ok(());
        };
        if self.task(id).await.is_err() {
            return self.kill_orphan(id, &record).await;
        }
        let t = self.timeout;
        let kill = self
            .retry(
                &record,
                |c| async move { c.kill(id, "", number, all, t).await },
            )
            .await;
        match kill {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() || e.is_finished() => Ok(()),
            Err(CallError::Unreachable(_)) => self.kill_orphan(id, &record).await,
            Err(e) => Err(self.failed("kill", id, e)),
        }
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let Some(record) = self.load(id)? else {
            return Ok(());
        };
        let client = match self.client(&record.shim).await {
            Ok(c) => c,
            Err(e) => {
                // The shim died: its binary cleans up what it left.
                tracing::info!(handler = %self.name, container = %id, "shim unreachable ({e}); cleaning up with `delete`");
                self.drop_client(&record.shim.address).await;
                // Best effort: a container whose shim is gone must still be removable (a
                // pod stuck terminating is worse), and the container service sweeps its
                // cgroup of what is left.
                if let Err(e) = self.launcher.delete(id, &record.bundle).await {
                    tracing::warn!(handler = %self.name, container = %id, "the shim's `delete` failed: {e}");
                }
                self.forget(id);
                return Ok(());
            }
        };
        if force {
            match client
                .kill(id, "", libc::SIGKILL as u32, true, self.timeout)
                .await
            {
                Ok(()) => {
                    let _ = client.wait(id, "", Some(KILL_GRACE)).await;
                }
                Err(e) if e.is_not_found() || e.is_finished() => {}
                Err(e) => return Err(self.failed("kill", id, e)),
            }
        }
        match client.delete(id, "", self.timeout).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(self.failed("delete", id, e)),
        }
        self.forget(id);
        // The shim exits once it serves no task.
        let _ = client.shutdown(id, self.timeout).await;
        self.drop_client(&record.shim.address).await;
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec_sync(id, process, timeout).await
    }

    async fn exec_interactive(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        self.exec_session(id, process, streams).await
    }

    async fn attach(&self, id: &str, _bundle: &Path) -> Result<AttachStream, RuntimeError> {
        self.check_id(id)?;
        self.hub(id)
            .map(|h| h.attach())
            .ok_or_else(|| RuntimeError::NotSupported {
                handler: self.name.clone(),
                what: "attaching to a container created before crid's last restart (crid no longer holds its stdio)",
            })
    }

    async fn reopen_log(&self, id: &str) -> Result<(), RuntimeError> {
        let sender = self
            .log_reopens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let (reply, answer) = tokio::sync::oneshot::channel();
        // No copy (crid restarted since the create), or one that ended with the output.
        let ended = || RuntimeError::NotSupported {
            handler: self.name.clone(),
            what: "reopening the log of a container whose output crid no longer copies (it was created before crid's last restart, or its output ended)",
        };
        sender.ok_or_else(ended)?.send(reply).map_err(|_| ended())?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result.map_err(|e| self.io("reopen the log of", id, e)),
            Ok(Err(_)) => Err(ended()),
            Err(_) => Err(RuntimeError::Timeout {
                handler: self.name.clone(),
                binary: self.launcher.binary.clone(),
                command: "reopen log".to_owned(),
                id: Some(id.to_owned()),
                timeout: self.timeout,
            }),
        }
    }

    async fn update(&self, id: &str, resources: &Resources) -> Result<(), RuntimeError> {
        let (record, _) = self
            .task(id)
            .await?
            .ok_or_else(|| self.unknown("update", id))?;
        let any = any_json(RESOURCES_TYPE_URL, resources)
            .map_err(|e| self.io("update", id, std::io::Error::other(e)))?;
        let req = api::UpdateTaskRequest {
            id: id.to_owned(),
            resources: MessageField::some(any),
            ..Default::default()
        };
        let (req, t) = (&req, self.timeout);
        self.retry(&record, |c| async move { c.update(req, t).await })
            .await
            .map_err(|e| self.failed("update", id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_versions_read_as_one_line() {
        let runc_v2 = "/usr/bin/containerd-shim-runc-v2:\n  Version:  1.6.20~ds1\n  Revision: 1.6.20~ds1-1+deb12u3\n  Go version: go1.19.8\n";
        assert_eq!(shim_version(runc_v2), "containerd-shim-runc-v2 1.6.20~ds1");
        let kata = "containerd-shim-kata-v2:\n  Version: 3.2.0\n";
        assert_eq!(shim_version(kata), "containerd-shim-kata-v2 3.2.0");
        assert_eq!(shim_version("shim 0.1\n"), "shim 0.1");
        assert_eq!(shim_version(""), "");
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_number("KILL"), Some(9));
        assert_eq!(signal_number("sigkill"), Some(9));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMIN+1"), None);
        assert_eq!(signal_number("0"), None);
        assert_eq!(signal_number("NOPE"), None);
    }

    #[test]
    fn payloads_carry_containerds_type_urls() {
        let r = Resources::default();
        let any = any_json(RESOURCES_TYPE_URL, &r).expect("json");
        assert_eq!(any.type_url, RESOURCES_TYPE_URL);
        assert_eq!(any.value, serde_json::to_vec(&r).expect("json"));
        assert!(exec::exec_id() != exec::exec_id());
    }

    #[tokio::test]
    async fn unknown_containers_are_no_ops_where_the_cri_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = ShimHandler::new("shim", "/bin/false".into(), dir.path());
        assert_eq!(h.state("c1").await.expect("state"), None);
        h.kill("c1", "KILL", false).await.expect("kill of unknown");
        h.delete("c1", true).await.expect("delete of unknown");
        assert!(h.start("c1").await.is_err());
        assert!(matches!(
            h.kill("c1", "BOGUS", false).await,
            Err(RuntimeError::InvalidArgument { .. })
        ));
        assert!(matches!(
            h.state("../x").await,
            Err(RuntimeError::InvalidArgument { .. })
        ));
        assert_eq!(h.kind(), RuntimeKind::Vm);
        assert_eq!(h.state_dir(), dir.path().join("shims/shim").as_path());
    }
}

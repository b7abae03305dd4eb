//! The runtime-handler trait: what the pod and container services ask of a runtime. The
//! OCI CLI driver ([`OciHandler`]) is one implementation; a shim v2 client or a VM runtime
//! is another, behind the same calls: a handler creates a container from a bundle, reports
//! its exit by writing [`CreateRequest::exit_file`] (crid watches that directory), and
//! runs the rest of its life by ID.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RuntimeError;
use super::interactive::{AttachStream, Interactive, Streams};
use super::oci::{CreateRequest, Created, ExecOutput, OciRuntime, State};
use crate::config::RuntimeKind;
use crate::spec::oci::{Process, Resources};

/// What a handler supports, as `StatusResponse.runtime_handlers` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// Recursive read-only mounts.
    pub recursive_read_only_mounts: bool,
    /// User namespaces for pods.
    pub user_namespaces: bool,
}

/// A container runtime behind a handler name.
#[async_trait::async_trait]
pub trait RuntimeHandler: Send + Sync + fmt::Debug {
    /// The handler's name.
    fn name(&self) -> &str;
    /// What kind of runtime it is.
    fn kind(&self) -> RuntimeKind;
    /// What it supports.
    fn features(&self) -> Features;
    /// Whether every pod needs an infra container, whatever its PID namespace: a sandboxed
    /// runtime (runsc) builds the pod's sandbox around it.
    fn needs_infra(&self) -> bool {
        false
    }
    /// Creates the container of `req.bundle`; its exit will be written to `req.exit_file`.
    /// `Created::monitor_pid` is the process that writes it, 0 when the handler has none.
    async fn create(&self, req: &CreateRequest) -> Result<Created, RuntimeError>;
    /// Starts a created container's process.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// The container's state; `None` when the runtime does not know it.
    async fn state(&self, id: &str) -> Result<Option<State>, RuntimeError>;
    /// Signals the container's init (`all`: every process of the container).
    async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError>;
    /// Deletes the container (`force`: kills it first); unknown is not an error.
    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Runs `process` in the container to completion, killed after `timeout`.
    async fn exec(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Starts `process` in the container for an interactive session.
    async fn exec_interactive(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError>;
    /// Attaches to the container's own stdio (cri:RuntimeService.Attach): a stream in the
    /// attach wire format of [`crate::monitor::attach`] that ends when the container's
    /// output does. By default crid-monitor's attach socket in the container's `bundle`.
    async fn attach(&self, id: &str, bundle: &Path) -> Result<AttachStream, RuntimeError> {
        crate::monitor::attach::connect(bundle)
            .map(|s| Box::new(s) as AttachStream)
            .map_err(|source| RuntimeError::Io {
                handler: self.name().to_owned(),
                command: "attach",
                id: id.to_owned(),
                source,
            })
    }
    /// Changes the container's resources.
    async fn update(&self, id: &str, resources: &Resources) -> Result<(), RuntimeError>;
    /// Reopens the container's log file at its path, for a handler that writes the log
    /// itself (`monitor_pid` 0); returns once the file at the path is the one written.
    /// Containers under crid-monitor are reopened through their monitor instead.
    async fn reopen_log(&self, _id: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotSupported {
            handler: self.name().to_owned(),
            what: "reopening a log outside crid-monitor",
        })
    }
}

/// An OCI runtime CLI whose containers run under crid-monitor.
#[derive(Debug)]
pub struct OciHandler {
    runtime: OciRuntime,
    monitor: PathBuf,
    always_infra: bool,
}

impl OciHandler {
    /// `runtime`, with containers created under the crid-monitor binary `monitor`.
    pub fn new(runtime: OciRuntime, monitor: PathBuf) -> Self {
        OciHandler {
            runtime,
            monitor,
            always_infra: false,
        }
    }

    /// Whether every pod runs an infra container (`always_infra` of the handler's config).
    pub fn always_infra(mut self, on: bool) -> Self {
        self.always_infra = on;
        self
    }

    /// The runtime driven.
    pub fn runtime(&self) -> &OciRuntime {
        &self.runtime
    }
}

#[async_trait::async_trait]
impl RuntimeHandler for OciHandler {
    fn name(&self) -> &str {
        self.runtime.name()
    }

    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Oci
    }

    fn features(&self) -> Features {
        self.runtime.features()
    }

    fn needs_infra(&self) -> bool {
        self.always_infra
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, RuntimeError> {
        self.runtime.create(&self.monitor, req).await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        // runsc gives a container the stdio of its `start`: the monitor, which holds the
        // container's pipes, runs it (see crate::monitor::runtime_wait).
        if self.runtime.exit_via_wait() {
            self.runtime.start_via_monitor(id).await
        } else {
            self.runtime.start(id).await
        }
    }

    async fn state(&self, id: &str) -> Result<Option<State>, RuntimeError> {
        self.runtime.state(id).await
    }

    async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
        match self.runtime.kill(id, signal, all).await {
            // runsc signals no container that has not started (runc kills its waiting
            // init): a created container asked to stop is deleted instead, and its monitor
            // records it as killed.
            Err(RuntimeError::Command { stderr, .. })
                if self.runtime.exit_via_wait() && stderr.contains("in state created") =>
            {
                self.runtime.delete_unstarted(id).await
            }
            other => other,
        }
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.runtime.delete(id, force).await
    }

    async fn exec(
        &self,
        id: &str,
        process: &Process,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.runtime.exec(id, process, timeout).await
    }

    async fn exec_interactive(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        self.runtime.exec_interactive(id, process, streams)
    }

    async fn update(&self, id: &str, resources: &Resources) -> Result<(), RuntimeError> {
        self.runtime.update(id, resources).await
    }
}

//! The task API of one shim process over ttrpc. The messages are containerd-shim-protos';
//! the service name is chosen per shim ([`TaskApi`]): v2 and v3 share their messages, and
//! the crate's generated client names only v3, which shims built with containerd 1.x do
//! not serve.

use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::asynchronous::Client;

use super::launch::{ShimAddress, TaskApi};

/// Why a task API call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The shim could not be reached: it is gone, or it broke the connection.
    #[error("shim unreachable: {0}")]
    Unreachable(String),
    /// The shim answered with an error status.
    #[error("{method}: {message} (code {code:?})")]
    Status {
        /// The task API method.
        method: &'static str,
        /// The ttrpc status code.
        code: ttrpc::Code,
        /// The shim's message.
        message: String,
    },
    /// The call did not finish in time.
    #[error("{method}: no answer within {limit:?}")]
    Timeout {
        /// The task API method.
        method: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// A message could not be encoded or decoded.
    #[error("{method}: bad message: {reason}")]
    Codec {
        /// The task API method.
        method: &'static str,
        /// Why.
        reason: String,
    },
}

impl CallError {
    /// The shim does not know the task or process: it was deleted, or never created.
    pub fn is_not_found(&self) -> bool {
        match self {
            CallError::Status { code, message, .. } => {
                *code == ttrpc::Code::NOT_FOUND
                    || message.contains("not found")
                    || message.contains("does not exist")
            }
            _ => false,
        }
    }

    /// The process has already exited (a signal finds nobody).
    pub fn is_finished(&self) -> bool {
        matches!(self, CallError::Status { message, .. }
            if ["already finished", "not running", "no such process"]
                .iter()
                .any(|m| message.to_ascii_lowercase().contains(m)))
    }
}

/// A connection to one shim's task service.
#[derive(Clone)]
pub struct TaskClient {
    client: Client,
    api: TaskApi,
}

impl std::fmt::Debug for TaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClient")
            .field("api", &self.api)
            .finish()
    }
}

impl TaskClient {
    /// Connects to the shim at `address`, bounded by `limit`.
    pub async fn connect(address: &ShimAddress, limit: Duration) -> Result<Self, CallError> {
        let connect = Client::connect(&address.address);
        match tokio::time::timeout(limit, connect).await {
            Ok(Ok(client)) => Ok(TaskClient {
                client,
                api: address.api,
            }),
            Ok(Err(e)) => Err(CallError::Unreachable(format!(
                "connecting to {}: {e}",
                address.address
            ))),
            Err(_) => Err(CallError::Unreachable(format!(
                "connecting to {}: no answer within {limit:?}",
                address.address
            ))),
        }
    }

    /// Calls `method` with `req`; `limit` bounds the call (None: waits as long as it takes,
    /// for Wait).
    async fn call<Req: Message, Resp: Message>(
        &self,
        method: &'static str,
        req: &Req,
        limit: Option<Duration>,
    ) -> Result<Resp, CallError> {
        let payload = req.write_to_bytes().map_err(|e| CallError::Codec {
            method,
            reason: e.to_string(),
        })?;
        let mut creq = ttrpc::Request::new();
        creq.service = self.api.service().to_owned();
        creq.method = method.to_owned();
        creq.timeout_nano = limit.map_or(0, |l| l.as_nanos().min(i64::MAX as u128) as i64);
        creq.payload = payload;
        let call = self.client.request(creq);
        let res = match limit {
            // The shim enforces the deadline too; this bounds a shim that hangs.
            Some(l) => tokio::time::timeout(l + Duration::from_secs(1), call)
                .await
                .map_err(|_| CallError::Timeout { method, limit: l })?,
            None => call.await,
        };
        let res = res.map_err(|e| match (e, limit) {
            (ttrpc::Error::RpcStatus(s), Some(l)) if s.code() == ttrpc::Code::DEADLINE_EXCEEDED => {
                CallError::Timeout { method, limit: l }
            }
            (ttrpc::Error::RpcStatus(s), _) => CallError::Status {
                method,
                code: s.code(),
                message: s.message().to_owned(),
            },
            // The client's own deadline (`timeout_nano`): ttrpc says it only in words.
            (ttrpc::Error::Others(m), Some(l)) if m.contains("deadline elapsed") => {
                CallError::Timeout { method, limit: l }
            }
            (other, _) => CallError::Unreachable(format!("{method}: {other}")),
        })?;
        Resp::parse_from_bytes(&res.payload).map_err(|e| CallError::Codec {
            method,
            reason: e.to_string(),
        })
    }

    /// Create.
    pub async fn create(
        &self,
        req: &api::CreateTaskRequest,
        limit: Duration,
    ) -> Result<api::CreateTaskResponse, CallError> {
        self.call("Create", req, Some(limit)).await
    }

    /// Start (the task's init, or an exec'd process when `exec_id` is set).
    pub async fn start(
        &self,
        id: &str,
        exec_id: &str,
        limit: Duration,
    ) -> Result<api::StartResponse, CallError> {
        let req = api::StartRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call("Start", &req, Some(limit)).await
    }

    /// State.
    pub async fn state(
        &self,
        id: &str,
        exec_id: &str,
        limit: Duration,
    ) -> Result<api::StateResponse, CallError> {
        let req = api::StateRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call("State", &req, Some(limit)).await
    }

    /// Kill.
    pub async fn kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
        limit: Duration,
    ) -> Result<(), CallError> {
        let req = api::KillRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
            ..Default::default()
        };
        self.call::<_, api::Empty>("Kill", &req, Some(limit))
            .await
            .map(drop)
    }

    /// Wait: resolves when the process exits (`limit` None: however long that takes).
    pub async fn wait(
        &self,
        id: &str,
        exec_id: &str,
        limit: Option<Duration>,
    ) -> Result<api::WaitResponse, CallError> {
        let req = api::WaitRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call("Wait", &req, limit).await
    }

    /// Delete (the task, or an exec'd process).
    pub async fn delete(
        &self,
        id: &str,
        exec_id: &str,
        limit: Duration,
    ) -> Result<api::DeleteResponse, CallError> {
        let req = api::DeleteRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        self.call("Delete", &req, Some(limit)).await
    }

    /// Exec: adds a process to the task (started with [`TaskClient::start`]).
    pub async fn exec(
        &self,
        req: &api::ExecProcessRequest,
        limit: Duration,
    ) -> Result<(), CallError> {
        self.call::<_, api::Empty>("Exec", req, Some(limit))
            .await
            .map(drop)
    }

    /// ResizePty: the terminal of the task's init (`exec_id` empty) or of an exec'd process.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        (width, height): (u16, u16),
        limit: Duration,
    ) -> Result<(), CallError> {
        let req = api::ResizePtyRequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            width: u32::from(width),
            height: u32::from(height),
            ..Default::default()
        };
        self.call::<_, api::Empty>("ResizePty", &req, Some(limit))
            .await
            .map(drop)
    }

    /// CloseIO: the shim closes its own end of the process's stdin FIFO, so that the
    /// process sees end of file once crid's end is closed too.
    pub async fn close_stdin(
        &self,
        id: &str,
        exec_id: &str,
        limit: Duration,
    ) -> Result<(), CallError> {
        let req = api::CloseIORequest {
            id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            stdin: true,
            ..Default::default()
        };
        self.call::<_, api::Empty>("CloseIO", &req, Some(limit))
            .await
            .map(drop)
    }

    /// Update.
    pub async fn update(
        &self,
        req: &api::UpdateTaskRequest,
        limit: Duration,
    ) -> Result<(), CallError> {
        self.call::<_, api::Empty>("Update", req, Some(limit))
            .await
            .map(drop)
    }

    /// Connect: the shim's and the task's PIDs.
    pub async fn connect_task(
        &self,
        id: &str,
        limit: Duration,
    ) -> Result<api::ConnectResponse, CallError> {
        let req = api::ConnectRequest {
            id: id.to_owned(),
            ..Default::default()
        };
        self.call("Connect", &req, Some(limit)).await
    }

    /// Shutdown: the shim exits if it serves no task any more.
    pub async fn shutdown(&self, id: &str, limit: Duration) -> Result<(), CallError> {
        let req = api::ShutdownRequest {
            id: id.to_owned(),
            now: false,
            ..Default::default()
        };
        self.call::<_, api::Empty>("Shutdown", &req, Some(limit))
            .await
            .map(drop)
    }
}

/// One process of a task (its init when `exec_id` is empty), for the calls about it.
#[derive(Clone)]
pub(super) struct ProcessRef {
    pub(super) client: TaskClient,
    pub(super) id: String,
    pub(super) exec_id: String,
    /// Limit of each call.
    pub(super) timeout: Duration,
}

impl ProcessRef {
    /// CloseIO of its stdin; a failure is only logged (the process may be gone already).
    pub(super) async fn close_stdin(&self) {
        if let Err(e) = self
            .client
            .close_stdin(&self.id, &self.exec_id, self.timeout)
            .await
        {
            tracing::debug!(container = %self.id, exec_id = %self.exec_id, "closing the process's stdin: {e}");
        }
    }
}

#[async_trait::async_trait]
impl crate::runtime::interactive::Resize for ProcessRef {
    async fn resize(&self, width: u16, height: u16) -> std::io::Result<()> {
        self.client
            .resize_pty(&self.id, &self.exec_id, (width, height), self.timeout)
            .await
            .map_err(std::io::Error::other)
    }
}

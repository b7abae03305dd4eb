//! The streaming server: `kubectl exec`, `attach` and `port-forward` reach containers
//! through it. The CRI's Exec and PortForward return a URL on it that carries a single-use
//! token ([`tokens`]); the kubelet proxies the client's connection there, which upgrades
//! from HTTP/1.1 ([`server`]) to SPDY/3.1 ([`spdy`]) or WebSocket ([`websocket`]). The
//! sessions themselves ([`exec`], [`portforward`]) do not depend on the wire.

pub mod attach;
pub mod exec;
pub mod portforward;
mod server;
pub mod spdy;
pub mod status;
pub mod tokens;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::StreamingConfig;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::runtime::oci::interactive::Streams;
use crate::state::PodState;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// cri:RuntimeService.Exec.
    Exec(ExecRequest),
    /// cri:RuntimeService.PortForward.
    PortForward(PortForwardRequest),
}

/// An interactive exec, or an attach to the container's own process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Container.
    pub container_id: String,
    /// Command and arguments (empty for an attach).
    pub cmd: Vec<String>,
    /// Attach (cri:RuntimeService.Attach) rather than run `cmd`.
    pub attach: bool,
    /// stdin, stdout, stderr, tty.
    pub streams: Streams,
}

/// A port forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// Pod sandbox.
    pub pod_id: String,
    /// Ports the request named (WebSocket clients may name them in the URL instead).
    pub ports: Vec<u16>,
}

/// What the sessions need from the rest of crid; a seam for tests.
pub trait Backend: Send + Sync + 'static {
    /// Starts the request's command in its container, or connects to the container's
    /// attach socket.
    fn exec(&self, request: &ExecRequest) -> Result<exec::Source, String>;
    /// The pod's pinned network namespace; `None` for a host-network pod.
    fn netns(&self, pod_id: &str) -> Result<Option<PathBuf>, String>;
}

/// Why the streaming server cannot start or issue a URL.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The address is taken or not ours.
    #[error("streaming server: binding {addr}: {source}")]
    Bind {
        /// `[streaming]` address and port.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate or key cannot be used.
    #[error("streaming server: TLS: {0}")]
    Tls(String),
    /// No randomness for a token.
    #[error("streaming server: making a token: {0}")]
    Token(std::io::Error),
}

/// The running server: issues URLs, and serves them until the daemon exits.
pub struct StreamingServer {
    tokens: tokens::Tokens<StreamRequest>,
    base_url: String,
    local_addr: SocketAddr,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for StreamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl StreamingServer {
    /// Binds `[streaming]` address and port (0: any free one) and serves in the background.
    pub async fn start(
        config: &StreamingConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<StreamingServer>, StreamingError> {
        let addr = SocketAddr::new(config.address, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StreamingError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StreamingError::Bind { addr, source })?;
        let tls = server::tls_acceptor(config)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        // An unspecified address is not one a client can dial; loopback is (the kubelet
        // runs on this node).
        let host = if local_addr.ip().is_unspecified() {
            match local_addr {
                SocketAddr::V4(_) => "127.0.0.1".to_owned(),
                SocketAddr::V6(_) => "[::1]".to_owned(),
            }
        } else {
            match local_addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        let this = Arc::new(StreamingServer {
            tokens: tokens::Tokens::new(Duration::from_secs(config.token_ttl_secs)),
            base_url: format!("{scheme}://{host}:{}", local_addr.port()),
            local_addr,
            backend,
        });
        tracing::info!(url = %this.base_url, "streaming server listening");
        tokio::spawn(server::accept_loop(this.clone(), listener, tls));
        Ok(this)
    }

    /// The URL for `request`, valid once and for `[streaming] token_ttl_secs`.
    pub fn url(&self, request: StreamRequest) -> Result<String, StreamingError> {
        let kind = match request {
            StreamRequest::Exec(ExecRequest { attach: true, .. }) => "attach",
            StreamRequest::Exec(_) => "exec",
            StreamRequest::PortForward(_) => "portforward",
        };
        let token = self.tokens.insert(request).map_err(StreamingError::Token)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// The daemon's [`Backend`]: containers and pods as the core knows them.
pub struct LifecycleBackend(pub Arc<Lifecycle>);

impl LifecycleBackend {
    /// The network namespace of pod `pod_id`, which must be ready (cri:PortForward).
    pub fn pod_netns(
        lifecycle: &Lifecycle,
        pod_id: &str,
    ) -> Result<Option<PathBuf>, LifecycleError> {
        let pod = lifecycle.pod_status(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(LifecycleError::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        Ok(pod.netns)
    }
}

impl Backend for LifecycleBackend {
    fn exec(&self, request: &ExecRequest) -> Result<exec::Source, String> {
        if request.attach {
            let bundle = self
                .0
                .attach_target(&request.container_id)
                .map_err(|e| e.to_string())?;
            return attach::connect(&bundle)
                .map(exec::Source::Attach)
                .map_err(|e| format!("container {}: attach socket: {e}", request.container_id));
        }
        let (runtime, process) = self
            .0
            .exec_target(&request.container_id, request.cmd.clone())
            .map_err(|e| e.to_string())?;
        runtime
            .exec_interactive(&request.container_id, &process, request.streams)
            .map(exec::Source::Process)
            .map_err(|e| e.to_string())
    }

    fn netns(&self, pod_id: &str) -> Result<Option<PathBuf>, String> {
        Self::pod_netns(&self.0, pod_id).map_err(|e| e.to_string())
    }
}

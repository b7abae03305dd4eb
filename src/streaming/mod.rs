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
use crate::container::ContainerService;
use crate::pod::PodService;
use crate::runtime::interactive::Streams;

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
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts the request's command in its container, or connects to the container's
    /// attach socket.
    async fn exec(&self, request: &ExecRequest) -> Result<exec::Source, String>;
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

/// The daemon's [`Backend`]: containers and pods as their services know them.
pub struct ServiceBackend {
    /// Pods, for port forwarding.
    pub pods: Arc<PodService>,
    /// Containers, for exec and attach.
    pub containers: Arc<ContainerService>,
}

#[async_trait::async_trait]
impl Backend for ServiceBackend {
    async fn exec(&self, request: &ExecRequest) -> Result<exec::Source, String> {
        let chain = |e: crate::error::Error| crate::error::chain(&e);
        if request.attach {
            let (runtime, bundle) = self
                .containers
                .attach_target(&request.container_id)
                .await
                .map_err(chain)?;
            return runtime
                .attach(&request.container_id, &bundle)
                .await
                .map(exec::Source::Attach)
                .map_err(|e| e.to_string());
        }
        let (runtime, process) = self
            .containers
            .exec_target(&request.container_id, request.cmd.clone())
            .await
            .map_err(chain)?;
        runtime
            .exec_interactive(&request.container_id, &process, request.streams)
            .await
            .map(|p| exec::Source::Process(Box::new(p)))
            .map_err(|e| e.to_string())
    }

    fn netns(&self, pod_id: &str) -> Result<Option<PathBuf>, String> {
        self.pods.netns(pod_id).map_err(|e| crate::error::chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::runtime::interactive::Interactive;

    /// Runs commands on the host with `sh`; dials the host's loopback.
    struct HostBackend;

    #[async_trait::async_trait]
    impl Backend for HostBackend {
        async fn exec(&self, r: &ExecRequest) -> Result<exec::Source, String> {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(r.cmd.join(" "));
            Interactive::spawn(c, r.streams)
                .map(|p| exec::Source::Process(Box::new(p)))
                .map_err(|e| e.to_string())
        }

        fn netns(&self, _pod: &str) -> Result<Option<PathBuf>, String> {
            Ok(None)
        }
    }

    async fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(raw).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn bad_requests_get_errors_and_leave_the_server_serving() {
        let server = StreamingServer::start(&StreamingConfig::default(), Arc::new(HostBackend))
            .await
            .expect("start");
        let addr = server.local_addr();
        let r = request(addr, b"GET /exec/nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = request(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400") || r.is_empty(), "{r}");
        // A real token without an upgrade: refused, and spent.
        let url = server
            .url(StreamRequest::Exec(ExecRequest {
                container_id: "c".into(),
                cmd: vec!["true".into()],
                attach: false,
                streams: Streams {
                    stdout: true,
                    ..Default::default()
                },
            }))
            .expect("url");
        let path = url.split_once(&format!("{}", addr.port())).expect("port").1;
        let r = request(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        let r = request(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        // An unknown SPDY protocol is refused with ours listed.
        let url = server
            .url(StreamRequest::PortForward(PortForwardRequest {
                pod_id: "p".into(),
                ports: vec![80],
            }))
            .expect("url");
        let path = url.split_once(&format!("{}", addr.port())).expect("port").1;
        let r = request(
            addr,
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: bogus\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        assert!(
            r.to_ascii_lowercase()
                .contains("x-stream-protocol-version: portforward.k8s.io"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn tls_is_served_when_a_certificate_is_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output();
        if !made.is_ok_and(|o| o.status.success()) {
            eprintln!("openssl is not available; skipping");
            return;
        }
        let config = StreamingConfig {
            tls_cert: Some(cert.clone()),
            tls_key: Some(key),
            ..Default::default()
        };
        let server = StreamingServer::start(&config, Arc::new(HostBackend))
            .await
            .expect("start");
        let url = server
            .url(StreamRequest::PortForward(PortForwardRequest {
                pod_id: "p".into(),
                ports: vec![],
            }))
            .expect("url");
        assert!(url.starts_with("https://"), "{url}");

        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&cert).expect("pem") {
            roots.add(c.expect("cert")).expect("add");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(b"GET /exec/nope HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = tls.read(&mut buf).await.expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 404"));
    }
}

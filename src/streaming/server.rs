//! HTTP/1.1 for the streaming server: the token in the path, the upgrade to SPDY/3.1 or
//! WebSocket, and the subprotocol negotiation. A bad request gets an HTTP error and closes
//! only its own connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{ExecRequest, StreamRequest, StreamingError, StreamingServer, spdy, websocket};
use crate::config::StreamingConfig;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// SPDY remote command protocols, most preferred first; the number is the version.
pub(super) const SPDY_EXEC_PROTOCOLS: &[(&str, u8)] = &[
    ("v5.channel.k8s.io", 5),
    ("v4.channel.k8s.io", 4),
    ("v3.channel.k8s.io", 3),
    ("v2.channel.k8s.io", 2),
];
/// WebSocket remote command protocols (binary channels; v5 adds the close signal).
pub(super) const WS_EXEC_PROTOCOLS: &[(&str, u8)] =
    &[("v5.channel.k8s.io", 5), ("v4.channel.k8s.io", 4)];
/// The SPDY port-forward protocol.
pub(super) const SPDY_PORTFORWARD: &str = "portforward.k8s.io";
/// WebSocket port-forward protocols (both binary channels: data 2n, error 2n+1).
pub(super) const WS_PORTFORWARD_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "portforward.k8s.io"];

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

type Body = Full<Bytes>;

/// The TLS acceptor `[streaming]` asks for, if any.
pub(super) fn tls_acceptor(
    config: &StreamingConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, StreamingError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StreamingError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StreamingError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamingError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StreamingError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))))
}

/// Accepts connections for the daemon's lifetime, each served by a task of its own.
pub(super) async fn accept_loop(
    server: Arc<StreamingServer>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "streaming server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => serve_connection(server, s, peer).await,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "streaming: TLS handshake failed")
                    }
                    Err(_) => tracing::info!(%peer, "streaming: TLS handshake timed out"),
                },
                None => serve_connection(server, tcp, peer).await,
            }
        });
    }
}

async fn serve_connection<IO>(server: Arc<StreamingServer>, io: IO, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(handle(server, req, peer)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::info!(%peer, error = %e, "streaming: connection closed on an HTTP error");
    }
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into() + "\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Every value of `name`, comma lists split.
fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol of the client's list that crid speaks (the client's preference
/// wins, as in Kubernetes).
fn negotiate<'a>(client: &[String], ours: &[&'a str]) -> Option<&'a str> {
    client
        .iter()
        .find_map(|c| ours.iter().find(|o| **o == c.as_str()).copied())
}

enum Upgrade {
    Spdy,
    WebSocket,
}

fn upgrade_kind(headers: &HeaderMap) -> Option<Upgrade> {
    let connection_upgrade = header_values(headers, "connection")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let up = header_values(headers, "upgrade");
    if up.iter().any(|v| v.eq_ignore_ascii_case("SPDY/3.1")) {
        Some(Upgrade::Spdy)
    } else if up.iter().any(|v| v.eq_ignore_ascii_case("websocket")) {
        Some(Upgrade::WebSocket)
    } else {
        None
    }
}

fn refuse_protocol(
    client: &[String],
    ours: &[&'static str],
    header_name: &'static str,
) -> Response<Body> {
    let mut r = plain(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {ours:?}"
        ),
    );
    for p in ours {
        r.headers_mut()
            .append(header_name, HeaderValue::from_static(p));
    }
    r
}

fn handle(
    server: Arc<StreamingServer>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    // A token is spent on lookup: a URL works once, whatever happens next.
    let Some(request) = server.tokens.take(token) else {
        tracing::info!(%peer, kind, "streaming: unknown, used or expired token");
        return plain(StatusCode::NOT_FOUND, "unknown, used or expired token");
    };
    let kind_matches = matches!(
        (&request, kind),
        (
            StreamRequest::Exec(ExecRequest { attach: false, .. }),
            "exec"
        ) | (
            StreamRequest::Exec(ExecRequest { attach: true, .. }),
            "attach"
        ) | (StreamRequest::PortForward(_), "portforward")
    );
    if !kind_matches {
        return plain(StatusCode::NOT_FOUND, "unknown, used or expired token");
    }
    let Some(upgrade) = upgrade_kind(req.headers()) else {
        tracing::info!(%peer, kind, "streaming: request without an upgrade");
        return plain(
            StatusCode::BAD_REQUEST,
            "expected an upgrade to SPDY/3.1 or websocket",
        );
    };
    match upgrade {
        Upgrade::Spdy => upgrade_spdy(server, req, request, peer),
        Upgrade::WebSocket => upgrade_websocket(server, req, request, peer),
    }
}

fn switching(upgrade: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    r
}

fn upgrade_spdy(
    server: Arc<StreamingServer>,
    req: Request<Incoming>,
    request: StreamRequest,
    peer: SocketAddr,
) -> Response<Body> {
    let client = header_values(req.headers(), STREAM_PROTOCOL_HEADER);
    let (chosen, version) = match &request {
        StreamRequest::Exec(_) => {
            let ours: Vec<&'static str> = SPDY_EXEC_PROTOCOLS.iter().map(|(p, _)| *p).collect();
            let Some(p) = negotiate(&client, &ours) else {
                tracing::info!(%peer, ?client, "streaming: no common SPDY exec protocol");
                return refuse_protocol(&client, &ours, STREAM_PROTOCOL_HEADER);
            };
            let v = SPDY_EXEC_PROTOCOLS
                .iter()
                .find(|(q, _)| *q == p)
                .map_or(4, |(_, v)| *v);
            (p, v)
        }
        StreamRequest::PortForward(_) => {
            let Some(p) = negotiate(&client, &[SPDY_PORTFORWARD]) else {
                return refuse_protocol(&client, &[SPDY_PORTFORWARD], STREAM_PROTOCOL_HEADER);
            };
            (p, 0)
        }
    };
    let mut response = switching("SPDY/3.1");
    response
        .headers_mut()
        .insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(chosen));
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(%peer, error = %e, "streaming: SPDY upgrade failed");
                return;
            }
        };
        let session = spdy::conn::Session::start(TokioIo::new(upgraded), peer.to_string());
        let backend = server.backend.clone();
        match request {
            StreamRequest::Exec(r) => spdy::exec(session, version, r, backend, peer).await,
            StreamRequest::PortForward(r) => spdy::port_forward(session, r, backend, peer).await,
        }
    });
    response
}

fn upgrade_websocket(
    server: Arc<StreamingServer>,
    req: Request<Incoming>,
    request: StreamRequest,
    peer: SocketAddr,
) -> Response<Body> {
    let headers = req.headers();
    let version_ok = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = headers.get("sec-websocket-key").filter(|_| version_ok) else {
        tracing::info!(%peer, "streaming: malformed WebSocket upgrade");
        return plain(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version 13",
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let client = header_values(headers, "sec-websocket-protocol");
    let (chosen, version) = match &request {
        StreamRequest::Exec(_) => {
            let ours: Vec<&'static str> = WS_EXEC_PROTOCOLS.iter().map(|(p, _)| *p).collect();
            let Some(p) = negotiate(&client, &ours) else {
                tracing::info!(%peer, ?client, "streaming: no common WebSocket exec protocol");
                return refuse_protocol(&client, &ours, "sec-websocket-protocol");
            };
            let v = WS_EXEC_PROTOCOLS
                .iter()
                .find(|(q, _)| *q == p)
                .map_or(4, |(_, v)| *v);
            (Some(p), v)
        }
        StreamRequest::PortForward(_) => {
            // No subprotocol at all is the plain binary form, as in Kubernetes.
            if client.is_empty() {
                (None, 0)
            } else {
                let Some(p) = negotiate(&client, WS_PORTFORWARD_PROTOCOLS) else {
                    return refuse_protocol(
                        &client,
                        WS_PORTFORWARD_PROTOCOLS,
                        "sec-websocket-protocol",
                    );
                };
                (Some(p), 0)
            }
        }
    };
    let query_ports = query_ports(req.uri().query().unwrap_or(""));
    let mut response = switching("websocket");
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(p) = chosen {
        h.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(%peer, error = %e, "streaming: WebSocket upgrade failed");
                return;
            }
        };
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(16 << 20);
        config.max_frame_size = Some(16 << 20);
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let backend = server.backend.clone();
        match request {
            StreamRequest::Exec(r) => websocket::exec(ws, version, r, backend, peer).await,
            StreamRequest::PortForward(mut r) => {
                match query_ports {
                    Ok(ports) if !ports.is_empty() => r.ports = ports,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "streaming: bad port in the URL");
                        return websocket::refuse(ws, &e).await;
                    }
                }
                websocket::port_forward(ws, r, backend, peer).await
            }
        }
    });
    response
}

/// Ports named in the query (`port=80&port=443` or `ports=80,443`).
fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        if k != "port" && k != "ports" {
            continue;
        }
        for p in v.split("%2C").flat_map(|s| s.split(',')) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("invalid port {p:?}")),
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_preference_wins() {
        let client = vec![
            "v4.channel.k8s.io".to_owned(),
            "v5.channel.k8s.io".to_owned(),
        ];
        assert_eq!(
            negotiate(&client, &["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(negotiate(&["x".to_owned()], &["v4.channel.k8s.io"]), None);
    }

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(query_ports("ports=80,443"), Ok(vec![80, 443]));
        assert_eq!(query_ports("port=80&port=81"), Ok(vec![80, 81]));
        assert_eq!(query_ports(""), Ok(vec![]));
        assert!(query_ports("port=x").is_err());
    }
}

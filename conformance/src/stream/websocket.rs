//! WebSocket streaming client: Kubernetes' channel protocols (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io` for exec and attach; the same channel form for port forwarding).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{ExecOptions, ExecOutput, SESSION_TIMEOUT, split_url};

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(url: &str, protocol: &str) -> Result<(Ws, Option<String>), String> {
    let (host, target) = split_url(url)?;
    let tcp = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| format!("connecting to {host}: {e}"))?;
    let mut req = format!("ws://{host}{target}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| format!("WebSocket upgrade of {url}: {e}"))?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, chosen))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(1 + data.len());
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Runs an exec (or attach) session at `url` offering `protocol`, until the server ends it.
pub async fn exec(url: &str, protocol: &str, opts: &ExecOptions) -> Result<ExecOutput, String> {
    let (mut ws, chosen) = connect(url, protocol).await?;
    let v5 = chosen.as_deref() == Some("v5.channel.k8s.io");
    if let Some((cols, rows)) = opts.tty {
        let size = serde_json::json!({"Width": cols, "Height": rows}).to_string();
        ws.send(frame(4, size.as_bytes()))
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some(input) = &opts.stdin {
        ws.send(frame(0, input)).await.map_err(|e| e.to_string())?;
        if opts.close_stdin && v5 {
            ws.send(frame(255, &[0])).await.map_err(|e| e.to_string())?;
        }
    }
    let mut out = ExecOutput::default();
    let read = async {
        while let Some(msg) = ws.next().await {
            let data = match msg.map_err(|e| e.to_string())? {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            match ch {
                1 => out.stdout.extend_from_slice(rest),
                2 => out.stderr.extend_from_slice(rest),
                3 => out.status.push_str(&String::from_utf8_lossy(rest)),
                _ => {}
            }
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(SESSION_TIMEOUT, read)
        .await
        .map_err(|_| format!("exec at {url} did not end within {SESSION_TIMEOUT:?}"))??;
    Ok(out)
}

/// Forwards `port` at `url` (the port named in the query, as kubelet clients do), sends
/// `request`, and returns what came back until the connection was idle for a second.
/// Errors the server reports on the port's error channel are returned as `Err`.
pub async fn port_forward(url: &str, port: u16, request: &[u8]) -> Result<Vec<u8>, String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let (mut ws, _) = connect(&format!("{url}{sep}port={port}"), "v4.channel.k8s.io").await?;
    let mut data = Vec::new();
    let mut error = Vec::new();
    // Each channel starts with the port number; strip those first.
    let (mut data_seen, mut error_seen) = (false, false);
    let mut sent = false;
    let deadline = tokio::time::Instant::now() + SESSION_TIMEOUT;
    loop {
        let idle = if data.is_empty() {
            deadline - tokio::time::Instant::now()
        } else {
            Duration::from_secs(1)
        };
        let msg = match tokio::time::timeout(idle, ws.next()).await {
            Err(_) => break,
            Ok(None) => break,
            Ok(Some(m)) => m.map_err(|e| e.to_string())?,
        };
        let bytes = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&ch, rest)) = bytes.split_first() else {
            continue;
        };
        match ch {
            0 if !data_seen => {
                data_seen = true;
                if rest != port.to_le_bytes() {
                    return Err(format!(
                        "data channel opened with {rest:?}, not port {port}"
                    ));
                }
            }
            1 if !error_seen => error_seen = true,
            0 => data.extend_from_slice(rest),
            1 => error.extend_from_slice(rest),
            _ => {}
        }
        if data_seen && error_seen && !sent {
            ws.send(frame(0, request))
                .await
                .map_err(|e| e.to_string())?;
            sent = true;
        }
        if !error.is_empty() {
            return Err(String::from_utf8_lossy(&error).into_owned());
        }
    }
    let _ = ws.close(None).await;
    Ok(data)
}

/// The HTTP status a WebSocket upgrade at `url` gets (101 when it is accepted).
pub async fn upgrade_status(url: &str, protocol: &str) -> Result<u16, String> {
    match connect(url, protocol).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            Ok(101)
        }
        Err(e) => {
            // tungstenite reports a refused upgrade as "HTTP error: <status>".
            let code = e
                .split_whitespace()
                .find_map(|w| w.parse::<u16>().ok().filter(|c| (100..600).contains(c)));
            code.ok_or(e)
        }
    }
}

/// Forwards `port` over WebSocket and reads until `want` bytes came, sending nothing (for
/// throughput measurements). Returns the byte count.
pub async fn port_forward_read(url: &str, port: u16, want: usize) -> Result<usize, String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let (mut ws, _) = connect(&format!("{url}{sep}port={port}"), "v4.channel.k8s.io").await?;
    let (mut got, mut data_seen) = (0usize, false);
    while got < want {
        let msg = match tokio::time::timeout(SESSION_TIMEOUT, ws.next()).await {
            Ok(Some(m)) => m.map_err(|e| e.to_string())?,
            _ => break,
        };
        let Message::Binary(b) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        match b.first() {
            Some(0) if !data_seen => data_seen = true,
            Some(0) => got += b.len() - 1,
            Some(1) if b.len() > 3 => return Err(String::from_utf8_lossy(&b[1..]).into_owned()),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(got)
}

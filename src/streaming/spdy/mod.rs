//! SPDY/3.1, as Kubernetes clients use it: our own framing ([`frame`], [`zlib`], [`conn`];
//! no maintained Rust crate speaks it), and the exec and port-forward sessions on top.
//!
//! Exec: the client opens one stream per channel, named by its `streamType` header
//! (`error`, `stdin`, `stdout`, `stderr`, `resize`); crid starts the process once the
//! streams the request asked for are there. Port forward: the client opens an `error` and
//! a `data` stream per connection, paired by `requestID` and naming the `port`.

pub mod conn;
pub mod frame;
pub mod zlib;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use self::conn::{Incoming, Session};
use super::exec::{self, ClientIo, Size};
use super::status::{self, Outcome};
use super::{Backend, ExecRequest, PortForwardRequest, portforward};

/// How long a client may take to open the streams of an exec.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// Serves one exec over protocol `version` (2 to 5).
pub(super) async fn exec(
    mut session: Session,
    version: u8,
    request: ExecRequest,
    backend: Arc<dyn Backend>,
    peer: SocketAddr,
) {
    let s = request.streams;
    let mut streams: HashMap<String, Incoming> = HashMap::new();
    let want = |name: &str| match name {
        "error" => true,
        "stdin" => s.stdin,
        "stdout" => s.stdout,
        "stderr" => s.stderr && !s.tty,
        "resize" => s.tty && version >= 3,
        _ => false,
    };
    let needed = ["error", "stdin", "stdout", "stderr", "resize"]
        .iter()
        .filter(|n| want(n))
        .count();
    let gather = async {
        while streams.len() < needed {
            let Some(inc) = session.accept().await else {
                return false;
            };
            let kind = zlib::get(&inc.headers, "streamtype")
                .unwrap_or("")
                .to_owned();
            if want(&kind) && !streams.contains_key(&kind) {
                streams.insert(kind, inc);
            } else {
                tracing::debug!(%peer, kind, "exec: unexpected stream, resetting it");
                inc.writer.reset(frame::rst::REFUSED_STREAM);
            }
        }
        true
    };
    match tokio::time::timeout(STREAM_WAIT, gather).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(%peer, "exec: the client left before opening its streams");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "exec: timed out waiting for the client's streams");
            return session.close().await;
        }
    }
    session.stop_accepting();
    let Some(error) = streams.remove("error") else {
        return session.close().await;
    };
    let process = match backend.exec(&request).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%peer, container = %request.container_id, error = %e, "exec failed to start");
            let _ = error
                .writer
                .write(Bytes::from(status::encode(&Outcome::Failed(e), version)))
                .await;
            let _ = error.writer.close();
            return session.close().await;
        }
    };

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<Size>(4);
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let stdin = streams.remove("stdin");
    let resize = streams.remove("resize");
    let stdout = streams.remove("stdout");
    let stderr = streams.remove("stderr");
    let io = ClientIo {
        stdin: stdin.is_some().then_some(stdin_rx),
        stdout: stdout.is_some().then_some(stdout_tx),
        stderr: stderr.is_some().then_some(stderr_tx),
        resize: resize.is_some().then_some(resize_rx),
    };

    // One loop for both streams, sizes first: the session delivers each stream's frames in
    // the order they came, so a size the client sent before some input is waiting by the
    // time that input is, and reaches the process before it (`stty size` after a resize).
    let input = async {
        let (mut stdin, mut resize) = (stdin, resize);
        let mut stdin_tx = Some(stdin_tx);
        let mut buf = BytesMut::new();
        while stdin.is_some() || resize.is_some() {
            tokio::select! {
                biased;
                b = next_data(&mut resize) => match b {
                    Some(b) => {
                        buf.extend_from_slice(&b);
                        for size in take_sizes(&mut buf, peer) {
                            let _ = resize_tx.send(size).await;
                        }
                    }
                    None => resize = None,
                },
                b = next_data(&mut stdin) => match b {
                    Some(b) => {
                        if let Some(tx) = &stdin_tx
                            && tx.send(b).await.is_err()
                        {
                            stdin_tx = None;
                        }
                    }
                    // The client's FIN on stdin closes the process's stdin.
                    None => {
                        stdin = None;
                        stdin_tx = None;
                    }
                },
            }
        }
        drop(stdin_tx);
        std::future::pending::<()>().await;
    };
    let relay = |rx: mpsc::Receiver<Bytes>, to: Option<Incoming>| async move {
        let mut rx = rx;
        let Some(to) = to else { return };
        while let Some(b) = rx.recv().await {
            if to.writer.write(b).await.is_err() {
                return;
            }
        }
        let _ = to.writer.close();
    };
    let session_done = async {
        let (outcome, (), ()) = tokio::join!(
            exec::run_source(process, io),
            relay(stdout_rx, stdout),
            relay(stderr_rx, stderr)
        );
        tracing::debug!(%peer, container = %request.container_id, ?outcome, "exec ended");
        let data = status::encode(&outcome, version);
        if !data.is_empty() {
            let _ = error.writer.write(Bytes::from(data)).await;
        }
        let _ = error.writer.close();
    };
    let closed = session.closed();
    tokio::select! {
        () = session_done => {}
        () = input => {}
        () = closed => {
            tracing::info!(%peer, container = %request.container_id, "exec: client disconnected");
            return;
        }
    }
    session.close().await;
}

/// Serves port forwarding: each data/error stream pair is one connection to a port.
pub(super) async fn port_forward(
    mut session: Session,
    request: PortForwardRequest,
    backend: Arc<dyn Backend>,
    peer: SocketAddr,
) {
    let netns = match backend.netns(&request.pod_id) {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(%peer, pod = %request.pod_id, error = %e, "port forward refused");
            return session.close().await;
        }
    };
    let mut pending: HashMap<String, (Option<Incoming>, Option<Incoming>)> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(inc) = session.accept().await {
        let kind = zlib::get(&inc.headers, "streamtype")
            .unwrap_or("")
            .to_owned();
        let port = zlib::get(&inc.headers, "port").and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port.filter(|p| *p > 0) else {
            tracing::info!(%peer, "port forward: stream without a valid port");
            inc.writer.reset(frame::rst::PROTOCOL_ERROR);
            continue;
        };
        let id = match zlib::get(&inc.headers, "requestid") {
            Some(id) => id.to_owned(),
            // Old clients pair by stream ID: data is opened right after its error stream.
            None => {
                let sid = stream_id_of(&inc);
                if kind == "data" {
                    sid.saturating_sub(2).to_string()
                } else {
                    sid.to_string()
                }
            }
        };
        let entry = pending.entry(id.clone()).or_default();
        match kind.as_str() {
            "error" if entry.0.is_none() => entry.0 = Some(inc),
            "data" if entry.1.is_none() => entry.1 = Some(inc),
            _ => {
                inc.writer.reset(frame::rst::PROTOCOL_ERROR);
                continue;
            }
        }
        let complete = matches!(pending.get(&id), Some((Some(_), Some(_))));
        if let Some((Some(error), Some(data))) = complete.then(|| pending.remove(&id)).flatten() {
            let netns = netns.clone();
            let pod = request.pod_id.clone();
            tasks.spawn(forward(netns, port, pod, error, data, peer));
        }
        // Reap finished forwards as we go.
        while tasks.try_join_next().is_some() {}
    }
    // The connection is gone: the JoinSet's drop aborts what still runs.
    tracing::debug!(%peer, pod = %request.pod_id, "port forward ended");
}

fn stream_id_of(inc: &Incoming) -> u32 {
    inc.writer.id()
}

async fn forward(
    netns: Option<std::path::PathBuf>,
    port: u16,
    pod: String,
    error: Incoming,
    mut data: Incoming,
    peer: SocketAddr,
) {
    let tcp = match portforward::dial(netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}: {e}");
            tracing::info!(%peer, "{msg}");
            let _ = error.writer.write(Bytes::from(msg)).await;
            let _ = error.writer.close();
            let _ = data.writer.close();
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        while let Some(b) = data.reader.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let writer = data.writer.clone();
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer
                        .write(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = writer.close();
    };
    tokio::join!(up, down);
    let _ = error.writer.close();
}

/// The next data on `stream` while it is open; pends forever once it is not.
async fn next_data(stream: &mut Option<Incoming>) -> Option<Bytes> {
    match stream {
        Some(s) => s.reader.recv().await,
        None => std::future::pending().await,
    }
}

/// The terminal sizes at the head of `buf`, JSON objects one after the other; a partial
/// one stays for the next data, a malformed rest is dropped.
fn take_sizes(buf: &mut BytesMut, peer: SocketAddr) -> Vec<Size> {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(size)) => {
                used = it.byte_offset();
                sizes.push(size);
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "exec: bad resize message");
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    let _ = buf.split_to(used);
    sizes
}

//! The WebSocket forms of the Kubernetes streaming protocols: every message is one channel
//! byte then data. Exec (`v4.channel.k8s.io`, `v5.channel.k8s.io`): 0 stdin, 1 stdout,
//! 2 stderr, 3 error (the final Status), 4 resize (JSON); v5 adds 255, whose data names a
//! channel the client closed (stdin). Port forward: channel 2n carries port n's data, 2n+1
//! its errors, and each starts with the port number (16 bits, little endian).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::exec::{self, ClientIo, Size};
use super::status::{self, Outcome};
use super::{Backend, ExecRequest, PortForwardRequest, portforward};

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

fn message(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(1 + data.len());
    b.put_u8(channel);
    b.put_slice(data);
    Message::Binary(b.freeze())
}

/// A client message's channel and data (text messages are accepted as binary ones).
fn split(msg: Message) -> Option<Result<(u8, Bytes), ()>> {
    let data: Bytes = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Message::Close(_) => return Some(Err(())),
        _ => return None,
    };
    let (&channel, _) = data.split_first()?;
    Some(Ok((channel, data.slice(1..))))
}

/// Closes `ws` after telling the client why.
pub(super) async fn refuse(mut ws: Ws, why: &str) {
    let _ = ws.send(message(ERROR, why.as_bytes())).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: why.to_owned().into(),
        }))
        .await;
}

/// Serves one exec over WebSocket protocol `version` (4 or 5).
pub(super) async fn exec(
    ws: Ws,
    version: u8,
    request: ExecRequest,
    backend: Arc<dyn Backend>,
    peer: SocketAddr,
) {
    let (mut sink, mut stream) = ws.split();
    let process = match backend.exec(&request).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%peer, container = %request.container_id, error = %e, "exec failed to start");
            let _ = sink
                .send(message(
                    ERROR,
                    &status::encode(&Outcome::Failed(e), version),
                ))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    let s = request.streams;
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<Size>(4);
    let (stdout_tx, stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, stderr_rx) = mpsc::channel::<Bytes>(16);
    let io = ClientIo {
        stdin: s.stdin.then_some(stdin_rx),
        stdout: s.stdout.then_some(stdout_tx),
        stderr: (s.stderr && !s.tty).then_some(stderr_tx),
        resize: s.tty.then_some(resize_rx),
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);

    let session = async {
        let forward = |mut rx: mpsc::Receiver<Bytes>, ch: u8| {
            let out = out_tx.clone();
            async move {
                while let Some(b) = rx.recv().await {
                    if out.send(message(ch, &b)).await.is_err() {
                        break;
                    }
                }
            }
        };
        let (outcome, (), ()) = tokio::join!(
            exec::run_source(process, io),
            forward(stdout_rx, STDOUT),
            forward(stderr_rx, STDERR)
        );
        tracing::debug!(%peer, container = %request.container_id, ?outcome, "exec ended");
        let _ = out_tx
            .send(message(ERROR, &status::encode(&outcome, version)))
            .await;
        drop(out_tx);
    };
    let writer = async {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.flush().await;
    };
    let reader = async {
        let mut stdin = Some(stdin_tx);
        while let Some(msg) = stream.next().await {
            let Ok(msg) = msg else { break };
            let Some(frame) = split(msg) else { continue };
            let Ok((channel, data)) = frame else { break };
            match channel {
                STDIN => {
                    if let Some(tx) = &stdin
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                RESIZE => match serde_json::from_slice::<Size>(&data) {
                    Ok(size) => {
                        let _ = resize_tx.send(size).await;
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "exec: bad resize message"),
                },
                CLOSE if version >= 5 && data.first() == Some(&STDIN) => stdin = None,
                other => {
                    tracing::debug!(%peer, channel = other, "exec: message on an unknown channel")
                }
            }
        }
    };
    tokio::select! {
        ((), ()) = async { tokio::join!(session, writer) } => {}
        () = reader => {
            // The client went away: the session (and with it the process) ends here.
            tracing::info!(%peer, container = %request.container_id, "exec: client disconnected");
        }
    }
}

/// Serves a port forward over WebSocket: every port is dialled once, at the start.
pub(super) async fn port_forward(
    ws: Ws,
    request: PortForwardRequest,
    backend: Arc<dyn Backend>,
    peer: SocketAddr,
) {
    if request.ports.is_empty() {
        return refuse(ws, "no port to forward: name one with ?port=N").await;
    }
    let netns = match backend.netns(&request.pod_id) {
        Ok(n) => n,
        Err(e) => return refuse(ws, &e).await,
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let mut inputs: Vec<mpsc::Sender<Bytes>> = Vec::new();
    let mut conns = Vec::new();
    for (i, port) in request.ports.iter().copied().enumerate() {
        let data_ch = (2 * i) as u8;
        let err_ch = data_ch + 1;
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(16);
        inputs.push(in_tx);
        let out = out_tx.clone();
        let netns = netns.clone();
        let pod = request.pod_id.clone();
        conns.push(async move {
            let prefix = port.to_le_bytes();
            let _ = out.send(message(data_ch, &prefix)).await;
            let _ = out.send(message(err_ch, &prefix)).await;
            match portforward::dial(netns, port).await {
                Ok(tcp) => relay_tcp(tcp, in_rx, out, data_ch).await,
                Err(e) => {
                    let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                    tracing::info!(%peer, "{msg}");
                    let _ = out.send(message(err_ch, msg.as_bytes())).await;
                }
            }
        });
    }
    drop(out_tx);
    let writer = async {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        while let Some(Ok(msg)) = stream.next().await {
            let Some(frame) = split(msg) else { continue };
            let Ok((channel, data)) = frame else { break };
            // Clients send only on data channels; port numbers are not repeated upstream.
            let Some(tx) = inputs
                .get(usize::from(channel / 2))
                .filter(|_| channel % 2 == 0)
            else {
                continue;
            };
            if !data.is_empty() {
                let _ = tx.send(data).await;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(futures_util::future::join_all(conns), writer) } => {}
        () = reader => {}
    }
    tracing::debug!(%peer, pod = %request.pod_id, "port forward ended");
}

/// Copies between one forwarded connection and its channel until both directions end.
async fn relay_tcp(
    tcp: tokio::net::TcpStream,
    mut input: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Message>,
    channel: u8,
) {
    let (mut rd, mut wr) = tcp.into_split();
    let up = async {
        while let Some(b) = input.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(message(channel, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(up, down);
}

//! One SPDY/3.1 session on an upgraded connection, server side: the peer opens streams
//! (exec's stdin/stdout/..., port-forward's data/error pairs), crid accepts, reads and
//! writes them, and answers pings. A reader task parses frames, a writer task owns the
//! socket's write half and the header compressor, so frames go out whole and in order.
//!
//! Flow control: crid sends WINDOW_UPDATE for what its consumers took, so a peer that
//! honours windows keeps going. It honours the peer's windows once the peer shows it keeps
//! them (a SETTINGS with an initial window, or a WINDOW_UPDATE): spdystream, the library
//! behind kubectl and the kubelet, does neither and never grants more than the first
//! 64 KiB, so enforcing windows on it would stall every stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::frame::{self, FLAG_FIN, Frame, goaway, rst};
use super::zlib::{Compressor, Decompressor, HeaderBlock};

/// The window every stream and the session start with (SPDY/3.1 section 2.6.8).
const INITIAL_WINDOW: i64 = 64 * 1024;
/// Largest data frame crid sends.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// Largest frame crid accepts (data frames from real peers are at most tens of KiB).
const MAX_FRAME: usize = 1 << 20;
/// Chunks buffered per stream before the reader waits for the stream's consumer.
const STREAM_BUFFER: usize = 64;
/// Streams a peer may have open at once.
const MAX_STREAMS: usize = 128;

/// A stream the peer opened, already accepted (SYN_REPLY sent).
pub struct Incoming {
    /// Its headers (`streamtype`, `port`, `requestid`, ...).
    pub headers: HeaderBlock,
    /// What the peer sends on it; `None` after its FIN or a reset.
    pub reader: StreamReader,
    /// What crid sends on it.
    pub writer: StreamWriter,
}

/// The receiving half of a stream.
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    out: mpsc::UnboundedSender<Out>,
}

impl StreamReader {
    /// The next chunk, `None` once the peer half-closed or reset the stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let data = self.rx.recv().await?;
        if !data.is_empty() {
            // What the consumer took is room the peer may use again.
            let delta = data.len() as u32;
            let _ = self.out.send(Out::Frame(Frame::WindowUpdate {
                stream_id: self.id,
                delta,
            }));
            let _ = self.out.send(Out::Frame(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            }));
        }
        Some(data)
    }
}

/// The sending half of a stream; clones share it.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Out>,
}

/// Why a write did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is gone.
    #[error("the SPDY connection is closed")]
    Closed,
    /// The peer reset the stream.
    #[error("the peer reset SPDY stream {0}")]
    Reset(u32),
}

impl StreamWriter {
    /// The stream's ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` in frames, within the peer's windows when it keeps them.
    pub async fn write(&self, mut data: Bytes) -> Result<(), SendError> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_DATA_FRAME)).await?;
            let chunk = data.split_to(n);
            self.send(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk,
            })?;
        }
        Ok(())
    }

    /// Half-closes the stream (FIN): crid sends nothing more on it.
    pub fn close(&self) -> Result<(), SendError> {
        self.send(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
    }

    /// Resets the stream with `status` (one of [`frame::rst`]).
    pub fn reset(&self, status: u32) {
        let _ = self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        });
    }

    fn send(&self, f: Frame) -> Result<(), SendError> {
        self.out.send(Out::Frame(f)).map_err(|_| SendError::Closed)
    }

    /// Waits until the peer's windows allow some of `want` bytes; returns how many.
    async fn reserve(&self, want: usize) -> Result<usize, SendError> {
        loop {
            let notified = self.shared.notify.notified();
            {
                let mut s = lock(&self.shared);
                if s.closed {
                    return Err(SendError::Closed);
                }
                let enforce = s.peer_flow_control;
                let session = s.session_window;
                let Some(st) = s.streams.get_mut(&self.id) else {
                    return Err(SendError::Reset(self.id));
                };
                if st.reset {
                    return Err(SendError::Reset(self.id));
                }
                if !enforce {
                    return Ok(want);
                }
                let room = st.send_window.min(session);
                if room > 0 {
                    let n = (room as usize).min(want);
                    st.send_window -= n as i64;
                    s.session_window -= n as i64;
                    return Ok(n);
                }
            }
            notified.await;
        }
    }
}

/// What the writer task sends.
enum Out {
    Frame(Frame),
    Reply(u32),
    GoAway(u32),
}

struct StreamState {
    /// Where the reader puts the peer's data; dropped at its FIN or a reset.
    tx: Option<mpsc::Sender<Bytes>>,
    send_window: i64,
    reset: bool,
    /// We sent our FIN.
    local_closed: bool,
}

struct State {
    streams: HashMap<u32, StreamState>,
    peer_flow_control: bool,
    initial_window: i64,
    session_window: i64,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    notify: Notify,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding this lock is a bug elsewhere; the data stays usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server-side SPDY session.
pub struct Session {
    incoming: mpsc::Receiver<Incoming>,
    closed: tokio::sync::watch::Receiver<bool>,
    out: mpsc::UnboundedSender<Out>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts the session's reader and writer tasks on `io`, an upgraded connection.
    /// `peer` names the connection in log lines.
    pub fn start<IO>(io: IO, peer: String) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                peer_flow_control: false,
                initial_window: INITIAL_WINDOW,
                session_window: INITIAL_WINDOW,
                closed: false,
            }),
            notify: Notify::new(),
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let out_tx_reader = out_tx.clone();
        let (in_tx, in_rx) = mpsc::channel(16);
        let (closed_tx, closed_rx) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_loop(wr, out_rx, shared.clone(), peer.clone()));
        let reader = tokio::spawn(async move {
            read_loop(rd, in_tx, out_tx_reader, shared, peer).await;
            let _ = closed_tx.send(true);
        });
        Session {
            incoming: in_rx,
            closed: closed_rx,
            out: out_tx,
            writer,
            reader,
        }
    }

    /// The next stream the peer opens; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Refuses streams the peer opens from now on (the session has what it needs).
    pub fn stop_accepting(&mut self) {
        self.incoming.close();
    }

    /// Resolves when the peer's side of the connection is gone (EOF, error, or a
    /// protocol violation).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.clone();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Ends the session: GOAWAY, then the connection closes once what is queued went out.
    pub async fn close(self) {
        let _ = self.out.send(Out::GoAway(goaway::OK));
        drop(self.out);
        drop(self.incoming);
        self.reader.abort();
        let _ = self.writer.await;
    }
}

async fn write_loop<W: AsyncWrite>(
    wr: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<Shared>,
    peer: String,
) {
    tokio::pin!(wr);
    let mut compressor = match Compressor::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "spdy: cannot start header compression");
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_stream = 0u32;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut goaway = false;
        // Batch what is queued into one write.
        while let Some(item) = next.take() {
            let f = match item {
                Out::Frame(f) => {
                    if let Frame::Data {
                        stream_id, flags, ..
                    } = &f
                        && flags & FLAG_FIN != 0
                    {
                        let mut s = lock(&shared);
                        let done = s.streams.get_mut(stream_id).map(|st| {
                            st.local_closed = true;
                            st.tx.is_none()
                        });
                        if done == Some(true) {
                            s.streams.remove(stream_id);
                        }
                    }
                    if let Frame::RstStream { stream_id, .. } = &f {
                        lock(&shared).streams.remove(stream_id);
                    }
                    f
                }
                Out::Reply(id) => {
                    last_stream = last_stream.max(id);
                    match compressor.compress(&[]) {
                        Ok(headers) => Frame::SynReply {
                            stream_id: id,
                            flags: 0,
                            headers,
                        },
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "spdy: header compression failed");
                            return;
                        }
                    }
                }
                Out::GoAway(status) => {
                    goaway = true;
                    Frame::GoAway {
                        last_good_stream_id: last_stream,
                        status,
                    }
                }
            };
            f.encode(&mut buf);
            if goaway || buf.len() > 256 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        buf.clear();
        if goaway {
            break;
        }
    }
    let _ = wr.shutdown().await;
    lock(&shared).closed = true;
    shared.notify.notify_waiters();
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    incoming: mpsc::Sender<Incoming>,
    out: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    peer: String,
) {
    tokio::pin!(rd);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut decompressor = Decompressor::new();
    let mut last_peer_stream = 0u32;
    let mut going_away = false;
    let result: Result<(), String> = 'conn: loop {
        let f = loop {
            match Frame::decode(&mut buf, MAX_FRAME) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                // Unknown control frames are to be ignored (section 2.2.1); decode consumed
                // nothing, so skip the frame by its length.
                Err(frame::FrameError::UnknownType(_)) => {
                    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
                    let _ = buf.split_to(frame::HEADER_LEN + len);
                    continue;
                }
                Err(e) => break 'conn Err(e.to_string()),
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => break 'conn Ok(()),
                Ok(_) => {}
                Err(e) => break 'conn Err(format!("read: {e}")),
            }
        };
        match f {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let headers = match decompressor.decompress(&headers) {
                    Ok(h) => h,
                    Err(e) => break 'conn Err(e.to_string()),
                };
                // Client streams are odd and increasing (section 2.3.2).
                if stream_id % 2 == 0 || stream_id <= last_peer_stream {
                    break 'conn Err(format!("invalid new stream id {stream_id}"));
                }
                last_peer_stream = stream_id;
                let refuse = going_away || lock(&shared).streams.len() >= MAX_STREAMS;
                if refuse {
                    let _ = out.send(Out::Frame(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    }));
                    continue;
                }
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                {
                    let mut s = lock(&shared);
                    let send_window = s.initial_window;
                    s.streams.insert(
                        stream_id,
                        StreamState {
                            tx: (flags & FLAG_FIN == 0).then_some(tx),
                            send_window,
                            reset: false,
                            local_closed: false,
                        },
                    );
                }
                let _ = out.send(Out::Reply(stream_id));
                let item = Incoming {
                    headers,
                    reader: StreamReader {
                        id: stream_id,
                        rx,
                        out: out.clone(),
                    },
                    writer: StreamWriter {
                        id: stream_id,
                        shared: shared.clone(),
                        out: out.clone(),
                    },
                };
                if incoming.send(item).await.is_err() {
                    // Nobody accepts streams any more: refuse the rest.
                    going_away = true;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let tx = {
                    let mut s = lock(&shared);
                    match s.streams.get_mut(&stream_id) {
                        Some(st) if st.tx.is_some() => {
                            if flags & FLAG_FIN != 0 {
                                let tx = st.tx.take();
                                if st.local_closed {
                                    s.streams.remove(&stream_id);
                                }
                                tx.map(|t| (t, true))
                            } else {
                                st.tx.clone().map(|t| (t, false))
                            }
                        }
                        _ => None,
                    }
                };
                match tx {
                    Some((tx, _fin)) => {
                        // A consumer that went away just drops what arrives.
                        if !data.is_empty() {
                            let _ = tx.send(data).await;
                        }
                    }
                    None => {
                        let _ = out.send(Out::Frame(Frame::RstStream {
                            stream_id,
                            status: rst::INVALID_STREAM,
                        }));
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                let mut s = lock(&shared);
                if let Some(st) = s.streams.get_mut(&stream_id) {
                    st.tx = None;
                    st.reset = true;
                }
                s.streams.remove(&stream_id);
                drop(s);
                shared.notify.notify_waiters();
            }
            Frame::Settings { entries, .. } => {
                let mut s = lock(&shared);
                for (_, id, value) in entries {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let value = i64::from(value & 0x7fff_ffff);
                        let delta = value - s.initial_window;
                        s.initial_window = value;
                        s.peer_flow_control = true;
                        for st in s.streams.values_mut() {
                            st.send_window += delta;
                        }
                    }
                }
                drop(s);
                shared.notify.notify_waiters();
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut s = lock(&shared);
                s.peer_flow_control = true;
                if stream_id == 0 {
                    s.session_window += i64::from(delta);
                } else if let Some(st) = s.streams.get_mut(&stream_id) {
                    st.send_window += i64::from(delta);
                }
                drop(s);
                shared.notify.notify_waiters();
            }
            Frame::Ping { id } => {
                // Our pings would be even; the peer's (odd) are echoed.
                if id % 2 == 1 {
                    let _ = out.send(Out::Frame(Frame::Ping { id }));
                }
            }
            Frame::GoAway { .. } => going_away = true,
            Frame::Headers { headers, .. } => {
                // Keep the compression context in step; crid needs no late headers.
                if let Err(e) = decompressor.decompress(&headers) {
                    break 'conn Err(e.to_string());
                }
            }
            Frame::SynReply { stream_id, .. } => {
                let _ = out.send(Out::Frame(Frame::RstStream {
                    stream_id,
                    status: rst::PROTOCOL_ERROR,
                }));
            }
        }
    };
    if let Err(e) = &result {
        tracing::warn!(%peer, error = %e, "spdy: closing the connection on a protocol error");
        let _ = out.send(Out::GoAway(goaway::PROTOCOL_ERROR));
    }
    // The peer is gone or broke the protocol: every stream ends for its readers and writers.
    let mut s = lock(&shared);
    for st in s.streams.values_mut() {
        st.tx = None;
        st.reset = true;
    }
    s.closed = true;
    drop(s);
    shared.notify.notify_waiters();
}

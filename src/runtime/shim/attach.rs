//! Attach on a shim container (cri:RuntimeService.Attach): what crid-monitor's attach
//! socket does for an OCI container, done by the daemon for a container whose stdio is the
//! shim's FIFOs. The log copy hands every chunk of output to the container's
//! [`AttachHub`], which sends it to each attached client; what clients send goes to the
//! stdin FIFO, and their terminal sizes to the task API's ResizePty.
//!
//! A session is an in-memory connection speaking the attach socket's wire format
//! ([`crate::monitor::attach`]), so the streaming server relays it like a monitor's. The
//! hub lives in the daemon: a container created before crid's last restart has none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::client::ProcessRef;
use crate::monitor::attach::{self as wire, StdinMode};
use crate::monitor::log::Stream;
use crate::runtime::interactive::{AttachStream, Resize};

/// Output frames queued for one client before it is dropped as too slow (about 1 MiB of
/// 32 KiB chunks), so that no client can stall the container's log.
const CLIENT_FRAMES: usize = 32;

/// Buffer of a session's in-memory connection.
const SESSION_BUFFER: usize = 64 * 1024;

/// One shim container's attach point.
pub struct AttachHub {
    /// The task's init process.
    init: ProcessRef,
    stdin_mode: StdinMode,
    terminal: bool,
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// Each attached client's output queue (frames in the wire format).
    clients: Vec<mpsc::Sender<Bytes>>,
    /// crid's end of the container's stdin FIFO, while stdin is open.
    stdin: Option<Arc<tokio::sync::Mutex<pipe::Sender>>>,
    /// The container's output ended: nothing more will come.
    ended: bool,
}

impl std::fmt::Debug for AttachHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachHub")
            .field("id", &self.init.id)
            .field("stdin_mode", &self.stdin_mode)
            .field("terminal", &self.terminal)
            .finish()
    }
}

impl AttachHub {
    /// The hub of a task whose init is `init`. `stdin` is crid's end of its stdin FIFO
    /// (None: the container's stdin is closed); `terminal`: the shim holds a terminal.
    pub(super) fn new(
        init: ProcessRef,
        stdin: Option<pipe::Sender>,
        stdin_mode: StdinMode,
        terminal: bool,
    ) -> Arc<AttachHub> {
        Arc::new(AttachHub {
            init,
            stdin_mode,
            terminal,
            state: Mutex::new(HubState {
                stdin: stdin.map(|s| Arc::new(tokio::sync::Mutex::new(s))),
                ..HubState::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a chunk of the container's output to every client; a client whose queue is
    /// full is dropped (its session ends).
    pub fn broadcast(&self, stream: Stream, data: &[u8]) {
        let mut st = self.state();
        if st.clients.is_empty() {
            return;
        }
        let kind = match stream {
            Stream::Stdout => wire::STDOUT,
            Stream::Stderr => wire::STDERR,
        };
        let frame = Bytes::from(wire::frame(kind, data));
        st.clients.retain(|c| c.try_send(frame.clone()).is_ok());
    }

    /// The container exited: its sessions end once its output did, at the latest after
    /// `drain`. (A shim may keep a terminal's output open until the task is deleted, so
    /// its end of file alone does not end a session.)
    pub fn exited(self: &Arc<Self>, drain: Duration) {
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            hub.end();
        });
    }

    /// The container's output ended: every session ends, and later ones end at once.
    pub fn end(&self) {
        let mut st = self.state();
        st.ended = true;
        st.clients.clear();
    }

    /// A new session.
    pub fn attach(self: &Arc<Self>) -> AttachStream {
        let (ours, theirs) = tokio::io::duplex(SESSION_BUFFER);
        let (tx, rx) = mpsc::channel(CLIENT_FRAMES);
        {
            let mut st = self.state();
            if !st.ended {
                st.clients.push(tx);
            }
        }
        tokio::spawn(self.clone().serve(ours, rx));
        Box::new(theirs)
    }

    /// Serves one session until the container's output or the client ends.
    async fn serve(self: Arc<Self>, conn: DuplexStream, mut output: mpsc::Receiver<Bytes>) {
        let (mut rd, mut wr) = tokio::io::split(conn);
        let mut wrote_stdin = false;
        {
            let out = async {
                while let Some(frame) = output.recv().await {
                    if wr.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                // The output ended: the client reads end of file.
                let _ = wr.shutdown().await;
            };
            let input = async {
                while let Ok((kind, payload)) = wire::read_frame(&mut rd).await {
                    match kind {
                        wire::STDIN => {
                            wrote_stdin = true;
                            self.write_stdin(&payload).await;
                        }
                        wire::RESIZE => {
                            if let Some((cols, rows)) = wire::parse_resize(&payload) {
                                self.resize(cols, rows).await;
                            }
                        }
                        // cri:ContainerConfig#stdin_once: a client's end of input ends the
                        // container's only with `once` (as under crid-monitor).
                        wire::CLOSE_STDIN if self.stdin_mode == StdinMode::Once => {
                            self.close_stdin().await;
                        }
                        _ => {}
                    }
                }
            };
            tokio::select! {
                () = out => {}
                () = input => {}
            }
        }
        // stdin_once: the first client that wrote to stdin leaving closes it.
        if wrote_stdin && self.stdin_mode == StdinMode::Once {
            self.close_stdin().await;
        }
    }

    async fn write_stdin(&self, data: &[u8]) {
        let Some(stdin) = self.state().stdin.clone() else {
            return;
        };
        // The shim reads the FIFO as long as the container lives; a write that cannot
        // complete (the shim is gone) closes stdin rather than stalling the session.
        let written = tokio::time::timeout(self.init.timeout, async {
            stdin.lock().await.write_all(data).await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!(container = %self.init.id, "attach: the container's stdin is gone");
            self.state().stdin = None;
        }
    }

    async fn resize(&self, cols: u16, rows: u16) {
        if !self.terminal {
            return;
        }
        if let Err(e) = self.init.resize(cols, rows).await {
            tracing::debug!(container = %self.init.id, "attach: resizing the terminal: {e}");
        }
    }

    /// Closes the container's stdin: crid's end of the FIFO, then the shim's (CloseIO), so
    /// that the process reads end of file.
    async fn close_stdin(&self) {
        let Some(stdin) = self.state().stdin.take() else {
            return;
        };
        drop(stdin);
        self.init.close_stdin().await;
    }
}

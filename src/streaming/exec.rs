//! An exec session, whatever the wire: the client's stdin and resize events go in, the
//! process's output comes out, and the end is an [`Outcome`]. The wire adapters
//! (`websocket`, `spdy`) only move bytes between these channels and their frames.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::status::Outcome;
use crate::runtime::interactive::{AttachStream, Interactive, Output};

/// How long output is still relayed after the process exited, for what it left behind
/// holding the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// A terminal size, as clients send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Size {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client's side of a session, as channels.
#[derive(Default)]
pub struct ClientIo {
    /// Its stdin; the channel's end is stdin's close.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Where stdout goes.
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Where stderr goes.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal sizes.
    pub resize: Option<mpsc::Receiver<Size>>,
}

/// What a session relays: an exec'd process, or the container's own stdio through its
/// handler's attach connection.
pub enum Source {
    /// An exec'd process.
    Process(Box<Interactive>),
    /// An attach connection.
    Attach(AttachStream),
}

/// Runs the session for `source`.
pub async fn run_source(source: Source, io: ClientIo) -> Outcome {
    match source {
        Source::Process(p) => run(*p, io).await,
        Source::Attach(s) => super::attach::run(s, io).await,
    }
}

/// Relays between `process` and the client until the process exits and its output is
/// out; returns its exit code. Dropping the future kills the process (the client left).
pub async fn run(mut process: Interactive, io: ClientIo) -> Outcome {
    let stdin = process.io.stdin.take();
    let stdout = process.io.stdout.take();
    let stderr = process.io.stderr.take();
    let terminal = process.io.terminal.clone();
    let (exited_tx, mut exited_rx) = watch::channel(false);

    let input = async {
        let (mut writer, mut stdin_rx) = match (stdin, io.stdin) {
            (Some(w), Some(rx)) => (Some(w), Some(rx)),
            _ => (None, None),
        };
        let mut resize_rx = if terminal.is_some() { io.resize } else { None };
        while stdin_rx.is_some() || resize_rx.is_some() {
            // Sizes first: one the client sent before some input applies before it.
            tokio::select! {
                biased;
                size = recv(&mut resize_rx) => match (size, &terminal) {
                    (Some(size), Some(t)) => {
                        if let Err(e) = t.resize(size.width, size.height).await {
                            tracing::debug!(error = %e, "exec: resizing the terminal");
                        }
                    }
                    _ => resize_rx = None,
                },
                data = recv(&mut stdin_rx) => {
                    let written = match (data, writer.as_mut()) {
                        (Some(data), Some(w)) => w.write_all(&data).await.is_ok(),
                        _ => false,
                    };
                    if !written {
                        // The input ended (or the process stopped taking it): shutting the
                        // writer down closes the process's stdin (no-op with a terminal).
                        if let Some(mut w) = writer.take() {
                            let _ = w.shutdown().await;
                        }
                        stdin_rx = None;
                    }
                }
            }
        }
        // Input ending is not the session ending.
        std::future::pending::<()>().await;
    };

    let output = async {
        let drain = async {
            let _ = exited_rx.wait_for(|e| *e).await;
            tokio::time::sleep(DRAIN_AFTER_EXIT).await;
        };
        tokio::select! {
            _ = async { tokio::join!(relay(stdout, io.stdout), relay(stderr, io.stderr)) } => {}
            () = drain => tracing::debug!("exec: output still open after the process exited; leaving it"),
        }
    };

    let wait = async {
        let r = process.wait().await;
        let _ = exited_tx.send(true);
        r
    };

    let session = async { tokio::join!(wait, output).0 };
    tokio::select! {
        r = session => match r {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(format!("waiting for the process: {e}")),
        },
        () = input => unreachable!("input never completes"),
    }
}

/// The next item on `rx` while it is open; pends forever once it is not.
pub(super) async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Copies one output to the client; without a client side, reads and discards (a
/// terminal must be read for the process to go on).
async fn relay(from: Option<Output>, to: Option<mpsc::Sender<Bytes>>) {
    let Some(mut from) = from else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Some(tx) = &to
                    && tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tokio::process::Command;

    use super::*;
    use crate::runtime::interactive::Streams;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    async fn collect(mut rx: mpsc::Receiver<Bytes>) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = rx.recv().await {
            v.extend_from_slice(&b);
        }
        v
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
        let p = Interactive::spawn(
            sh("cat; echo err >&2; exit 3"),
            Streams {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            },
        )
        .expect("spawn");
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (err_tx, err_rx) = mpsc::channel(4);
        in_tx
            .send(Bytes::from_static(b"hello"))
            .await
            .expect("send");
        drop(in_tx);
        let io = ClientIo {
            stdin: Some(in_rx),
            stdout: Some(out_tx),
            stderr: Some(err_tx),
            resize: None,
        };
        let (outcome, out, err) = tokio::join!(run(p, io), collect(out_rx), collect(err_rx));
        assert_eq!(outcome, Outcome::Exited(3));
        assert_eq!(out, b"hello");
        assert_eq!(err, b"err\n");
    }

    #[tokio::test]
    async fn a_terminal_is_a_tty_and_resizes() {
        let p = Interactive::spawn(
            sh("test -t 0 && read line && stty size && echo got $line"),
            Streams {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            },
        )
        .expect("spawn");
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(4);
        let (size_tx, size_rx) = mpsc::channel(4);
        size_tx
            .send(Size {
                width: 91,
                height: 17,
            })
            .await
            .expect("send");
        let io = ClientIo {
            stdin: Some(in_rx),
            stdout: Some(out_tx),
            stderr: None,
            resize: Some(size_rx),
        };
        let feed = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            in_tx.send(Bytes::from_static(b"x\n")).await.expect("send");
        };
        let (outcome, out, ()) = tokio::join!(run(p, io), collect(out_rx), feed);
        assert_eq!(outcome, Outcome::Exited(0));
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("17 91"), "{out}");
        assert!(out.contains("got x"), "{out}");
    }

    #[tokio::test]
    async fn dropping_the_session_kills_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pid");
        let p = Interactive::spawn(
            sh(&format!("echo $$ > {}; exec sleep 60", marker.display())),
            Streams::default(),
        )
        .expect("spawn");
        let session = run(p, ClientIo::default());
        let _ = tokio::time::timeout(Duration::from_millis(300), session).await;
        let pid: i32 = std::fs::read_to_string(&marker)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        for _ in 0..50 {
            // Gone, or a zombie waiting for tokio's reaper.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z'))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("process {pid} survived its session");
    }
}

//! An attach session: the daemon's side of crid-monitor's attach socket (framing in
//! [`crate::monitor::attach`]), relaying between it and the client's channels.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::exec::ClientIo;
use super::status::Outcome;
use crate::monitor::attach::{self as wire, frame};

/// Connects to the attach socket in `bundle`. The path goes through the bundle's open
/// descriptor: `<bundle>/attach.sock` can be longer than sun_path's 108 bytes.
pub fn connect(bundle: &Path) -> io::Result<UnixStream> {
    let dir = std::fs::File::open(bundle)?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), wire::SOCKET);
    let s = std::os::unix::net::UnixStream::connect(path)?;
    drop(dir);
    s.set_nonblocking(true)?;
    UnixStream::from_std(s)
}

/// Relays until the monitor closes the socket (the container ended); dropping the future
/// detaches.
pub async fn run(sock: UnixStream, io: ClientIo) -> Outcome {
    let (mut rd, mut wr) = sock.into_split();
    let ClientIo {
        mut stdin,
        stdout,
        stderr,
        mut resize,
    } = io;
    let input = async move {
        while stdin.is_some() || resize.is_some() {
            let ok = tokio::select! {
                d = recv(&mut stdin) => match d {
                    Some(data) => wr.write_all(&frame(wire::STDIN, &data)).await.is_ok(),
                    None => {
                        stdin = None;
                        wr.write_all(&frame(wire::CLOSE_STDIN, &[])).await.is_ok()
                    }
                },
                s = recv(&mut resize) => match s {
                    Some(size) => {
                        let mut p = size.width.to_be_bytes().to_vec();
                        p.extend_from_slice(&size.height.to_be_bytes());
                        wr.write_all(&frame(wire::RESIZE, &p)).await.is_ok()
                    }
                    None => {
                        resize = None;
                        true
                    }
                },
            };
            if !ok {
                break;
            }
        }
        // The write half stays open: dropping it would shut the socket down, and the
        // monitor would take that for a detach.
        std::future::pending::<()>().await;
        drop(wr);
    };
    let output = async move {
        let mut header = [0u8; 5];
        loop {
            if rd.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                return;
            }
            let to = match header[0] {
                wire::STDOUT => &stdout,
                wire::STDERR => &stderr,
                _ => continue,
            };
            if let Some(tx) = to {
                // A client that stopped reading one stream still gets the other.
                let _ = tx.send(Bytes::from(data)).await;
            }
        }
    };
    tokio::select! {
        () = input => unreachable!("input never completes"),
        () = output => Outcome::Exited(0),
    }
}

async fn recv<T>(rx: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

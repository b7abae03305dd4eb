//! An attach session: the daemon's side of an attach connection (crid-monitor's attach
//! socket, or a shim handler's attach hub; framing in [`crate::monitor::attach`]),
//! relaying between it and the client's channels.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::exec::{ClientIo, recv};
use super::status::Outcome;
use crate::monitor::attach::{self as wire, frame};
use crate::runtime::interactive::AttachStream;

/// Relays until the other side closes the connection (the container's output ended);
/// dropping the future detaches.
pub async fn run(conn: AttachStream, io: ClientIo) -> Outcome {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let ClientIo {
        mut stdin,
        stdout,
        stderr,
        mut resize,
    } = io;
    let input = async move {
        while stdin.is_some() || resize.is_some() {
            // Sizes first: one the client sent before some input goes out before it.
            let ok = tokio::select! {
                biased;
                s = recv(&mut resize) => match s {
                    Some(size) => {
                        let p = wire::resize_payload(size.width, size.height);
                        wr.write_all(&frame(wire::RESIZE, &p)).await.is_ok()
                    }
                    None => {
                        resize = None;
                        true
                    }
                },
                d = recv(&mut stdin) => match d {
                    Some(data) => wr.write_all(&frame(wire::STDIN, &data)).await.is_ok(),
                    None => {
                        stdin = None;
                        wr.write_all(&frame(wire::CLOSE_STDIN, &[])).await.is_ok()
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
        while let Ok((kind, data)) = wire::read_frame(&mut rd).await {
            let to = match kind {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::exec::Size;

    // cri:RuntimeService.Attach#tty: a terminal size the client sent before some input
    // reaches the container before that input (`stty size` right after a resize), whatever
    // the order in which the session's channels happen to be ready.
    #[tokio::test]
    async fn a_size_sent_before_input_goes_out_before_it() {
        for _ in 0..20 {
            let (ours, mut theirs) = tokio::io::duplex(4096);
            let (stdin_tx, stdin_rx) = tokio::sync::mpsc::channel(4);
            let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
            resize_tx
                .send(Size {
                    width: 123,
                    height: 45,
                })
                .await
                .expect("size");
            stdin_tx
                .send(Bytes::from_static(b"hi\n"))
                .await
                .expect("stdin");
            let io = ClientIo {
                stdin: Some(stdin_rx),
                resize: Some(resize_rx),
                ..Default::default()
            };
            let session = tokio::spawn(run(Box::new(ours), io));
            let (first, _) = wire::read_frame(&mut theirs).await.expect("a frame");
            let (second, data) = wire::read_frame(&mut theirs).await.expect("a frame");
            assert_eq!((first, second), (wire::RESIZE, wire::STDIN));
            assert_eq!(data, b"hi\n");
            drop(theirs);
            assert_eq!(session.await.expect("session"), Outcome::Exited(0));
        }
    }
}

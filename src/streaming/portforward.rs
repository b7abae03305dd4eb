//! Port forwarding's one system-level step: a TCP connection to a port on the pod's
//! loopback, made inside the pod's network namespace.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpStream;

/// How long a dial may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on localhost in the network namespace pinned at `netns` (`None`:
/// the host's, for host-network pods). The socket is created by a thread of its own that
/// enters the namespace and then ends, so no thread of the runtime ever changes namespace;
/// a socket stays in the namespace it was created in.
pub async fn dial(netns: Option<PathBuf>, port: u16) -> io::Result<TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crid-portfwd".into())
        .spawn(move || {
            let _ = tx.send(dial_blocking(netns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the dialing thread died"))??;
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

fn dial_blocking(netns: Option<PathBuf>, port: u16) -> io::Result<std::net::TcpStream> {
    if let Some(ns) = netns {
        let f = std::fs::File::open(&ns)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", ns.display())))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    }
    // localhost: IPv4 first, then IPv6 (a server may listen on either).
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|_| e4)
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn dials_the_host_loopback_without_a_namespace() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            s.write_all(b"hi").await.expect("write");
        });
        let mut c = dial(None, port).await.expect("dial");
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"hi");
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        assert!(dial(None, port).await.is_err());
    }
}

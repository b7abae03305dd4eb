//! A loopback TCP proxy in front of the real registry: it records request lines, counts
//! simultaneous connections, and can throttle or stall responses. The registry behind it is
//! real; the proxy only shapes the wire, to make "slow", "stuck" and "how many downloads"
//! observable. Dropping it closes every connection and joins its threads.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How responses are shaped.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Forward as fast as possible.
    Open,
    /// At most this many bytes per second per connection.
    Throttle(u64),
    /// Forward this many response bytes per connection, then nothing more (the connection
    /// stays open): a registry that stopped sending.
    StallAfter(u64),
    /// Forward this many response bytes per connection, then close it: a registry (or a
    /// network) that cut a blob short.
    CutAfter(u64),
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    active: AtomicUsize,
    max_active: AtomicUsize,
    requests: Mutex<Vec<String>>,
    streams: Mutex<Vec<TcpStream>>,
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Proxies 127.0.0.1:<free port> to `upstream`.
    pub fn start(upstream: SocketAddr, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (s, t) = (shared.clone(), threads.clone());
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).expect("blocking");
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        for st in [&client, &server] {
                            if let Ok(c) = st.try_clone() {
                                s.streams.lock().expect("lock").push(c);
                            }
                        }
                        let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
                        s.max_active.fetch_max(now, Ordering::SeqCst);
                        let up = spawn_copy(
                            s.clone(),
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                            Mode::Open,
                            true,
                        );
                        let down = spawn_copy(s.clone(), server, client, mode, false);
                        t.lock().expect("lock").extend([up, down]);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            addr,
            shared,
            threads,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Request lines seen (`GET /v2/... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// The most connections open at once.
    pub fn max_active(&self) -> usize {
        self.shared.max_active.load(Ordering::SeqCst)
    }
}

fn spawn_copy(
    shared: Arc<Shared>,
    mut from: TcpStream,
    mut to: TcpStream,
    mode: Mode,
    record: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent: u64 = 0;
        loop {
            let want = match mode {
                Mode::Throttle(rate) => buf.len().min((rate / 20).max(1) as usize),
                _ => buf.len(),
            };
            let n = match from.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if record {
                let text = String::from_utf8_lossy(&buf[..n]);
                let mut reqs = shared.requests.lock().expect("lock");
                reqs.extend(
                    text.lines()
                        .filter(|l| l.starts_with("GET ") || l.starts_with("HEAD "))
                        .map(str::to_owned),
                );
            }
            let mut chunk = &buf[..n];
            if let Mode::StallAfter(limit) | Mode::CutAfter(limit) = mode {
                let room = limit.saturating_sub(sent) as usize;
                if room < chunk.len() {
                    chunk = &chunk[..room];
                }
            }
            if to.write_all(chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
            if let Mode::StallAfter(limit) = mode
                && sent >= limit
            {
                // Hold the connection open and silent until the proxy stops.
                while !shared.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            if let Mode::CutAfter(limit) = mode
                && sent >= limit
            {
                break;
            }
            if let Mode::Throttle(_) = mode {
                std::thread::sleep(Duration::from_millis(50));
            }
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        if !record {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    })
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self
            .shared
            .streams
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = self
            .threads
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}

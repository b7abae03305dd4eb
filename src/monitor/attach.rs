//! The attach socket (cri:RuntimeService.Attach): crid-monitor listens on `attach.sock` in
//! the bundle, sends the container's output to every client attached, and writes what
//! clients send to the container's stdin (when its config keeps stdin open) or resizes
//! its terminal. The monitor owns the socket, so attaching works across daemon restarts.
//!
//! Wire format, both directions: `kind(u8) | length(u32, big endian) | payload`. Monitor to
//! client: [`STDOUT`], [`STDERR`]. Client to monitor: [`STDIN`], [`RESIZE`] (columns and
//! rows, u16 each), [`CLOSE_STDIN`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Data for the container's stdin.
pub const STDIN: u8 = 0;
/// Container stdout (or its terminal's output).
pub const STDOUT: u8 = 1;
/// Container stderr.
pub const STDERR: u8 = 2;
/// A terminal size: columns, rows.
pub const RESIZE: u8 = 4;
/// The client closed its stdin.
pub const CLOSE_STDIN: u8 = 5;

/// The socket's name in the bundle (bound relative to it: see `supervise`).
pub const SOCKET: &str = "attach.sock";

/// The OCI annotation with which the daemon asks the monitor to keep the container's stdin
/// open: `open`, or `once` (closed when the first attached client that wrote to it leaves).
pub const STDIN_ANNOTATION: &str = "io.crid.stdin";

/// Connects to the attach socket in `bundle` (the daemon's side). The path goes through
/// the bundle's open descriptor: `<bundle>/attach.sock` can be longer than sun_path's 108
/// bytes.
pub fn connect(bundle: &Path) -> io::Result<tokio::net::UnixStream> {
    let dir = File::open(bundle)?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), SOCKET);
    let s = UnixStream::connect(path)?;
    drop(dir);
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// Output queued for one slow client before it is dropped.
const CLIENT_BACKLOG: usize = 1 << 20;

/// How the container's stdin is kept, from its bundle's config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// /dev/null.
    Closed,
    /// Open for attached clients.
    Open,
    /// Open until the first client that wrote to it leaves.
    Once,
}

impl StdinMode {
    /// Reads [`STDIN_ANNOTATION`] from `<bundle>/config.json`.
    pub fn of_bundle(bundle: &Path) -> StdinMode {
        std::fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(StdinMode::Closed, |v| StdinMode::of_config(&v))
    }

    /// Reads [`STDIN_ANNOTATION`] from a parsed config.json.
    pub fn of_config(config: &serde_json::Value) -> StdinMode {
        match config["annotations"][STDIN_ANNOTATION].as_str() {
            Some("open") => StdinMode::Open,
            Some("once") => StdinMode::Once,
            _ => StdinMode::Closed,
        }
    }
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    backlog: Vec<u8>,
    wrote_stdin: bool,
}

/// The listener, its clients, and the container's stdin and terminal.
pub struct Attach {
    listener: UnixListener,
    clients: Vec<Client>,
    stdin: Option<File>,
    once: bool,
    terminal: Option<OwnedFd>,
}

impl Attach {
    /// Listens on `path` (relative to the current directory, the bundle). `stdin` is the
    /// write end of the container's stdin, if kept open.
    pub fn bind(path: &Path, stdin: Option<OwnedFd>, once: bool) -> io::Result<Attach> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        if let Some(s) = &stdin {
            set_nonblocking(s)?;
        }
        Ok(Attach {
            listener,
            clients: Vec::new(),
            stdin: stdin.map(File::from),
            once,
            terminal: None,
        })
    }

    /// The container's terminal: stdin goes to it, and resizes apply to it.
    pub fn set_terminal(&mut self, terminal: &OwnedFd) -> io::Result<()> {
        self.terminal = Some(terminal.try_clone()?);
        Ok(())
    }

    /// Descriptors to poll: the listener (readable), then each client (readable, and
    /// writable while it has a backlog).
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut v = vec![(self.listener.as_fd(), false)];
        v.extend(
            self.clients
                .iter()
                .map(|c| (c.stream.as_fd(), !c.backlog.is_empty())),
        );
        v
    }

    /// Handles what poll reported: `ready[0]` the listener, then one per client, in the
    /// order of [`Attach::poll_fds`].
    pub fn handle(&mut self, ready: &[bool]) {
        if ready.first() == Some(&true) {
            while let Ok((s, _)) = self.listener.accept() {
                if s.set_nonblocking(true).is_ok() {
                    self.clients.push(Client {
                        stream: s,
                        input: Vec::new(),
                        backlog: Vec::new(),
                        wrote_stdin: false,
                    });
                }
            }
        }
        let mut gone = Vec::new();
        let n = self.clients.len();
        for i in 0..n {
            if !ready.get(i + 1).copied().unwrap_or(false) {
                continue;
            }
            if !self.service(i) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let c = self.clients.remove(i);
            if self.once && c.wrote_stdin {
                self.stdin = None;
            }
        }
    }

    /// Reads and acts on client `i`'s input, flushes its backlog; false when it left.
    fn service(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.clients[i].stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.clients[i].input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        while let Some((kind, payload)) = take_frame(&mut self.clients[i].input) {
            match kind {
                STDIN => {
                    self.clients[i].wrote_stdin = true;
                    self.write_stdin(&payload);
                }
                RESIZE => {
                    if let Some((cols, rows)) = parse_resize(&payload) {
                        self.resize(cols, rows);
                    }
                }
                // cri:ContainerConfig#stdin_once: a client's end of input ends the
                // container's only with `once`; otherwise stdin stays open for the next
                // session (Kubernetes: without stdinOnce a reader never sees EOF). A
                // terminal has no end of input either way.
                CLOSE_STDIN if self.once => self.stdin = None,
                _ => {}
            }
        }
        // An oversized frame header is a broken client.
        if self.clients[i].input.len() > 4 * CLIENT_BACKLOG {
            return false;
        }
        flush(&mut self.clients[i])
    }

    fn write_stdin(&mut self, data: &[u8]) {
        if let Some(t) = &self.terminal {
            // Best effort: a full terminal input queue drops keystrokes rather than
            // stalling the monitor's loop.
            let _ = write_fd(t.as_fd(), data);
        } else if let Some(f) = &mut self.stdin
            && f.write_all(data).is_err()
        {
            self.stdin = None;
        }
    }

    fn resize(&self, cols: u16, rows: u16) {
        if let Some(t) = &self.terminal {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads one winsize, which outlives the call.
            unsafe { libc::ioctl(t.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }

    /// Sends container output to every client; a client too slow to keep its backlog
    /// under [`CLIENT_BACKLOG`] is dropped, so no client can stall the container.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let frame = frame(kind, data);
        self.clients.retain_mut(|c| {
            c.backlog.extend_from_slice(&frame);
            flush(c) && c.backlog.len() <= CLIENT_BACKLOG
        });
    }
}

/// Writes what it can of the client's backlog; false when the client is gone.
fn flush(c: &mut Client) -> bool {
    while !c.backlog.is_empty() {
        match c.stream.write(&c.backlog) {
            Ok(0) => return false,
            Ok(n) => {
                c.backlog.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn take_frame(input: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if input.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([input[1], input[2], input[3], input[4]]) as usize;
    if input.len() < 5 + len {
        return None;
    }
    let kind = input[0];
    let payload = input[5..5 + len].to_vec();
    input.drain(..5 + len);
    Some((kind, payload))
}

fn write_fd(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: writes at most `data.len()` bytes from `data` to an open descriptor.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// A [`RESIZE`] frame's payload: columns, then rows.
pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let (c, r) = (cols.to_be_bytes(), rows.to_be_bytes());
    [c[0], c[1], r[0], r[1]]
}

/// Decodes a [`RESIZE`] frame's payload: (columns, rows); None if it is not 4 bytes.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match *payload {
        [c0, c1, r0, r1] => Some((u16::from_be_bytes([c0, c1]), u16::from_be_bytes([r0, r1]))),
        _ => None,
    }
}

/// Encodes one frame, either way.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame from an async connection (the daemon's side): `(kind, payload)`. A
/// frame longer than a client's whole backlog is a broken peer (InvalidData).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 5];
    r.read_exact(&mut header).await?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > 4 * CLIENT_BACKLOG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok((header[0], payload))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn poll_once(a: &mut Attach) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let ready: Vec<bool> = {
            let fds = a.poll_fds();
            let mut pfds: Vec<PollFd<'_>> = fds
                .iter()
                .map(|(fd, w)| {
                    let mut f = PollFlags::POLLIN;
                    if *w {
                        f |= PollFlags::POLLOUT;
                    }
                    PollFd::new(*fd, f)
                })
                .collect();
            let _ = poll(&mut pfds, PollTimeout::from(200u16));
            pfds.iter().map(|f| f.any().unwrap_or(false)).collect()
        };
        a.handle(&ready);
    }

    #[test]
    fn clients_get_output_and_feed_stdin_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SOCKET);
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut a = Attach::bind(&path, Some(w), true).expect("bind");
        let mut c1 = UnixStream::connect(&path).expect("connect");
        let mut c2 = UnixStream::connect(&path).expect("connect");
        c1.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        c2.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        poll_once(&mut a);
        a.broadcast(STDOUT, b"hello");
        for c in [&mut c1, &mut c2] {
            let mut got = [0u8; 10];
            c.read_exact(&mut got).expect("read");
            assert_eq!(&got, b"\x01\x00\x00\x00\x05hello");
        }
        c1.write_all(&frame(STDIN, b"in")).expect("write");
        poll_once(&mut a);
        let mut stdin = File::from(r);
        let mut got = [0u8; 2];
        stdin.read_exact(&mut got).expect("stdin");
        assert_eq!(&got, b"in");
        // stdin_once: the writer leaving closes the container's stdin.
        drop(c1);
        poll_once(&mut a);
        let mut rest = Vec::new();
        stdin.read_to_end(&mut rest).expect("eof");
        assert!(rest.is_empty());
        // The other client still gets output.
        a.broadcast(STDERR, b"x");
        let mut got = [0u8; 6];
        c2.read_exact(&mut got).expect("read");
        assert_eq!(got[0], STDERR);
    }

    #[test]
    fn closing_stdin_ends_the_containers_only_when_once() {
        for once in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(SOCKET);
            let (r, w) = nix::unistd::pipe().expect("pipe");
            let mut a = Attach::bind(&path, Some(w), once).expect("bind");
            let mut c = UnixStream::connect(&path).expect("connect");
            poll_once(&mut a);
            c.write_all(&frame(STDIN, b"in")).expect("write");
            c.write_all(&frame(CLOSE_STDIN, &[])).expect("write");
            poll_once(&mut a);
            let stdin = File::from(r);
            nix::fcntl::fcntl(
                &stdin,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .expect("nonblocking");
            let mut stdin = stdin;
            let mut got = [0u8; 2];
            stdin.read_exact(&mut got).expect("stdin");
            assert_eq!(&got, b"in");
            let mut rest = [0u8; 1];
            match stdin.read(&mut rest) {
                // End of file: the container's stdin was closed.
                Ok(0) => assert!(once, "stdin closed without stdin_once"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(!once, "stdin_once, but stdin is still open")
                }
                other => panic!("unexpected read {other:?}"),
            }
        }
    }

    #[test]
    fn the_stdin_mode_comes_from_the_annotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(StdinMode::of_bundle(dir.path()), StdinMode::Closed);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.crid.stdin":"once"}}"#,
        )
        .expect("write");
        assert_eq!(StdinMode::of_bundle(dir.path()), StdinMode::Once);
    }

    #[test]
    fn a_resize_payload_is_columns_then_rows_big_endian() {
        assert_eq!(resize_payload(0x0102, 0x0304), [1, 2, 3, 4]);
        assert_eq!(parse_resize(&[1, 2, 3, 4]), Some((0x0102, 0x0304)));
        assert_eq!(parse_resize(&[1, 2, 3]), None);
        assert_eq!(parse_resize(&[1, 2, 3, 4, 5]), None);
    }
}

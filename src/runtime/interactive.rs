//! Interactive processes, whatever the handler: a process whose stdio stays connected to a
//! client (kubectl exec), through pipes or a terminal. The streaming server relays an
//! [`Interactive`]; each handler makes one its own way: the OCI driver runs the runtime's
//! `exec` as a child of crid ([`ChildProcess`], see `oci::interactive`), the shim v2
//! handler adds a process to the task and talks to it through FIFOs (see `shim::exec`).
//!
//! Dropping an [`Interactive`] before its process ended kills the process: the client left.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::Command;

/// A boxed reader of the process's output.
pub type Output = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed writer to the process's input; shutting it down closes the process's stdin.
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// A connection in the attach wire format of [`crate::monitor::attach`].
pub trait AttachIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AttachIo for T {}
/// An attach session's connection, from [`crate::runtime::RuntimeHandler::attach`].
pub type AttachStream = Box<dyn AttachIo>;

/// Which of the process's streams the client wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    /// stdin.
    pub stdin: bool,
    /// stdout (with a terminal: the terminal's output).
    pub stdout: bool,
    /// stderr (never with a terminal: it is the terminal's output too).
    pub stderr: bool,
    /// A terminal.
    pub tty: bool,
}

/// The process behind an [`Interactive`]. Dropped before [`Running::wait`] returned, it
/// kills the process.
#[async_trait::async_trait]
pub trait Running: Send {
    /// Waits for the process and returns its exit code (128+signal when killed).
    async fn wait(&mut self) -> io::Result<i32>;
}

/// Sets the size of a terminal that is not crid's (a shim holds it).
#[async_trait::async_trait]
pub trait Resize: Send + Sync {
    /// Sets the window size; the process on the terminal gets SIGWINCH.
    async fn resize(&self, width: u16, height: u16) -> io::Result<()>;
}

/// A process's stdio as crid holds it.
#[derive(Default)]
pub struct ProcessIo {
    /// Its input, if asked for.
    pub stdin: Option<Input>,
    /// Its output, if asked for; with a terminal always (read it, even to discard it).
    pub stdout: Option<Output>,
    /// Its error output, if asked for and there is no terminal.
    pub stderr: Option<Output>,
    /// The terminal, for resizing.
    pub terminal: Option<Terminal>,
}

/// A running interactive process.
pub struct Interactive {
    /// Its stdio (take the streams to relay them).
    pub io: ProcessIo,
    process: Box<dyn Running>,
}

impl Interactive {
    /// `process`, with its stdio.
    pub fn new(process: Box<dyn Running>, io: ProcessIo) -> Interactive {
        Interactive { io, process }
    }

    /// Starts `cmd` as a child of crid with the stdio `streams` asks for (in tests, any
    /// program; the OCI driver wraps [`ChildProcess`] itself).
    pub fn spawn(cmd: Command, streams: Streams) -> io::Result<Interactive> {
        let (child, stdio) = ChildProcess::spawn(cmd, streams)?;
        Ok(Interactive::new(Box::new(child), stdio))
    }

    /// Waits for the process and returns its exit code (128+signal when killed).
    pub async fn wait(&mut self) -> io::Result<i32> {
        self.process.wait().await
    }
}

/// A child process of crid with its stdio on pipes or on a pseudo-terminal crid opened.
/// With a terminal it leads a session on it, so a window size set on crid's side reaches
/// it as SIGWINCH. Dropped before it was reaped, it is killed with its process group.
pub struct ChildProcess {
    child: tokio::process::Child,
    done: bool,
}

impl ChildProcess {
    /// Starts `cmd` with the stdio `streams` asks for.
    pub fn spawn(mut cmd: Command, streams: Streams) -> io::Result<(ChildProcess, ProcessIo)> {
        let mut pty = None;
        cmd.kill_on_drop(true);
        if streams.tty {
            let pair = nix::pty::openpty(None, None).map_err(io::Error::from)?;
            // Raw from the start: what the client types before the process sets the mode
            // itself must not be echoed or cooked by this outer terminal.
            let mut t = nix::sys::termios::tcgetattr(&pair.slave).map_err(io::Error::from)?;
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(&pair.slave, nix::sys::termios::SetArg::TCSANOW, &t)
                .map_err(io::Error::from)?;
            let slave: OwnedFd = pair.slave;
            cmd.stdin(Stdio::from(slave.try_clone()?));
            cmd.stdout(Stdio::from(slave.try_clone()?));
            cmd.stderr(Stdio::from(slave));
            // SAFETY: setsid and ioctl are async-signal-safe raw system calls.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            pty = Some(Pty::new(pair.master)?);
        } else {
            let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
            cmd.stdin(pipe(streams.stdin));
            cmd.stdout(pipe(streams.stdout));
            cmd.stderr(pipe(streams.stderr));
            // Its own group, so that killing it never reaches crid.
            cmd.process_group(0);
        }
        let mut child = cmd.spawn()?;
        let stdio = match pty {
            Some(p) => ProcessIo {
                stdin: streams.stdin.then(|| Box::pin(p.io()) as Input),
                // Always read, so that the process never blocks on a full terminal.
                stdout: Some(Box::pin(p.io()) as Output),
                stderr: None,
                terminal: Some(Terminal(Kind::Pty(p))),
            },
            None => ProcessIo {
                stdin: child.stdin.take().map(|s| Box::pin(s) as Input),
                stdout: child.stdout.take().map(|s| Box::pin(s) as Output),
                stderr: child.stderr.take().map(|s| Box::pin(s) as Output),
                terminal: None,
            },
        };
        Ok((ChildProcess { child, done: false }, stdio))
    }

    /// Whether it was reaped.
    pub fn done(&self) -> bool {
        self.done
    }
}

#[async_trait::async_trait]
impl Running for ChildProcess {
    async fn wait(&mut self) -> io::Result<i32> {
        let status = self.child.wait().await?;
        self.done = true;
        Ok(exit_code(status))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // It leads its own group (or session): the group goes; tokio reaps the child.
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

/// An exit status as an exit code: the code, or 128+signal.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// A process's terminal, for resizing: crid's own pseudo-terminal, or one a shim holds.
#[derive(Clone)]
pub struct Terminal(Kind);

#[derive(Clone)]
enum Kind {
    Pty(Pty),
    Remote(Arc<dyn Resize>),
}

impl Terminal {
    /// A terminal another process holds, resized through `r`.
    pub fn remote(r: Arc<dyn Resize>) -> Terminal {
        Terminal(Kind::Remote(r))
    }

    /// Sets the window size; the session on the terminal gets SIGWINCH.
    pub async fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        match &self.0 {
            Kind::Pty(p) => p.resize(width, height),
            Kind::Remote(r) => r.resize(width, height).await,
        }
    }
}

/// The crid side (master) of a pseudo-terminal.
#[derive(Clone)]
struct Pty {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Pty {
    fn new(master: OwnedFd) -> io::Result<Self> {
        let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: `master` is an open descriptor the AsyncFd owns from here on, so it stays
        // open and the same while registered.
        let fd = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok(Self { fd: Arc::new(fd) })
    }

    fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let r = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn io(&self) -> PtyIo {
        PtyIo(self.fd.clone())
    }
}

/// Reads and writes a terminal master. Reading ends (EOF) when the other side is closed,
/// which Linux reports as EIO.
struct PtyIo(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for PtyIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let r = guard.try_io(|fd| {
                // SAFETY: reads at most `unfilled.len()` bytes into `unfilled`.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for PtyIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let r = guard.try_io(|fd| {
                // SAFETY: writes at most `data.len()` bytes from `data`.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            if let Ok(r) = r {
                return Poll::Ready(r);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A terminal has no half-close; the process sees EOF only by its own rules.
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cri_convention() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}

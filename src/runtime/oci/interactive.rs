//! Interactive `exec`: a process in a running container whose stdio stays connected to a
//! client (kubectl exec), through pipes or a terminal.
//!
//! With a terminal, the runtime runs without `--detach` and relays between the
//! container's terminal and its own stdio, which is a pseudo-terminal crid opened: the
//! runtime leads a session on it, so a window size set on crid's side reaches it as
//! SIGWINCH and it resizes the container's terminal. Without one, the runtime's pipes are
//! the process's. Either way the runtime exits with the process's status, and dropping an
//! [`Interactive`] kills the process (with its process group) and the runtime.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::Command;

use super::OciRuntime;
use super::exec::{exit_code, kill_exec_process, read_pid};
use crate::runtime::RuntimeError;
use crate::spec::oci::Process;

/// A boxed reader of the process's output.
pub type Output = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed writer to the process's input.
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

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

/// A running interactive process.
pub struct Interactive {
    /// The runtime (or, in tests, the process itself); reaped by [`Interactive::wait`].
    child: tokio::process::Child,
    /// Its input, if asked for.
    pub stdin: Option<Input>,
    /// Its output, if asked for; with a terminal always (read it, even to discard it).
    pub stdout: Option<Output>,
    /// Its error output, if asked for and there is no terminal.
    pub stderr: Option<Output>,
    /// The terminal, for resizing.
    pub terminal: Option<Terminal>,
    /// Where the runtime writes the exec'd process's host PID, for killing it.
    pid_file: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
    done: bool,
}

impl Interactive {
    /// Starts `cmd` with the stdio `streams` asks for. `cmd` is a runtime's `exec` (or, in
    /// tests, any program); with a terminal it leads a new session on it.
    pub fn spawn(mut cmd: Command, streams: Streams) -> io::Result<Interactive> {
        let mut terminal = None;
        cmd.kill_on_drop(true);
        if streams.tty {
            let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
            // Raw from the start: what the client types before the runtime sets the mode
            // itself must not be echoed or cooked by this outer terminal.
            let mut t = nix::sys::termios::tcgetattr(&pty.slave).map_err(io::Error::from)?;
            nix::sys::termios::cfmakeraw(&mut t);
            nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t)
                .map_err(io::Error::from)?;
            let slave: OwnedFd = pty.slave;
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
            terminal = Some(Terminal::new(pty.master)?);
        } else {
            let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
            cmd.stdin(pipe(streams.stdin));
            cmd.stdout(pipe(streams.stdout));
            cmd.stderr(pipe(streams.stderr));
            // Its own group, so that killing it never reaches crid.
            cmd.process_group(0);
        }
        let mut child = cmd.spawn()?;
        let (stdin, stdout, stderr): (Option<Input>, Option<Output>, Option<Output>) =
            match &terminal {
                Some(t) => (
                    streams.stdin.then(|| Box::pin(t.io()) as Input),
                    // Always read, so that the runtime never blocks on a full terminal.
                    Some(Box::pin(t.io()) as Output),
                    None,
                ),
                None => (
                    child.stdin.take().map(|s| Box::pin(s) as Input),
                    child.stdout.take().map(|s| Box::pin(s) as Output),
                    child.stderr.take().map(|s| Box::pin(s) as Output),
                ),
            };
        Ok(Interactive {
            child,
            stdin,
            stdout,
            stderr,
            terminal,
            pid_file: None,
            _dir: None,
            done: false,
        })
    }

    /// Waits for the process and returns its exit code (128+signal when killed).
    pub async fn wait(&mut self) -> io::Result<i32> {
        let status = self.child.wait().await?;
        self.done = true;
        Ok(exit_code(status))
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The client left before the process ended: it goes, with its group; the runtime
        // goes with `kill_on_drop`, and tokio reaps it.
        if let Some(pid) = self.pid_file.as_deref().and_then(read_pid) {
            kill_exec_process(pid, None);
        } else if let Some(pid) = self.child.id() {
            // No runtime in between (tests): the child leads its own group.
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

/// The crid side (master) of a pseudo-terminal.
#[derive(Clone)]
pub struct Terminal {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Terminal {
    fn new(master: OwnedFd) -> io::Result<Self> {
        let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: `master` is an open descriptor the AsyncFd owns from here on, so it stays
        // open and the same while registered.
        let fd = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok(Self { fd: Arc::new(fd) })
    }

    /// Sets the window size; the session on the terminal gets SIGWINCH.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
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

    fn io(&self) -> TerminalIo {
        TerminalIo(self.fd.clone())
    }
}

/// Reads and writes a terminal master. Reading ends (EOF) when the other side is closed,
/// which Linux reports as EIO.
struct TerminalIo(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for TerminalIo {
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

impl AsyncWrite for TerminalIo {
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

impl OciRuntime {
    /// Starts `process` in container `id` for an interactive session (`exec` without
    /// `--detach`). `process.terminal` is set from `streams.tty`.
    pub fn exec_interactive(
        &self,
        id: &str,
        process: &Process,
        streams: Streams,
    ) -> Result<Interactive, RuntimeError> {
        let files = self.exec_files(id, process, streams.tty)?;
        tracing::debug!(handler = %self.name, id, tty = streams.tty, "interactive exec");
        let mut running = Interactive::spawn(self.command(&files.op(id)), streams)
            .map_err(|e| self.exec_error(id, e))?;
        running.pid_file = Some(files.pid_file.clone());
        running._dir = Some(files.into_dir());
        Ok(running)
    }
}

//! The monitor process itself: create the container, pump its output into the log, record
//! its exit. Synchronous on purpose (no async runtime): one small process per container.
//!
//! Protocol with the daemon: the monitor's stdout is a status pipe. After the runtime's
//! `create` returns, the monitor writes one JSON line, `{"pid":N}` or `{"error":"..."}`,
//! and closes it. The container then exists in the created state; the daemon starts it
//! with the runtime's `start`. When the container's init exits, the monitor writes the
//! exit file and ends.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use std::path::Path;

use super::attach::{Attach, SOCKET as ATTACH_SOCKET, StdinMode};
use super::exit::{self, ExitRecord};
use super::log::{LogWriter, Stream};
use super::oom::{OomWatch, oom_killed};
use super::runtime_wait::{ContainerStdio, RuntimeWait, Waited};

/// How long output is still collected after the container's init exits (and its exit is
/// recorded), for processes that survived it and still hold the pipes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long the runtime may take to send the terminal of a container that has one.
const CONSOLE_WAIT: Duration = Duration::from_secs(60);

/// The monitor's command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonitorArgs {
    /// OCI runtime binary.
    pub runtime: PathBuf,
    /// Its `--root`.
    pub runtime_root: PathBuf,
    /// Extra global arguments for the runtime, before the command.
    pub runtime_args: Vec<String>,
    /// The bundle directory (config.json).
    pub bundle: PathBuf,
    /// Container ID.
    pub id: String,
    /// CRI log path.
    pub log_path: PathBuf,
    /// Log size cap in bytes.
    pub log_max_size: Option<u64>,
    /// Where the exit record goes.
    pub exit_file: PathBuf,
    /// Where the runtime writes the container's PID.
    pub pid_file: PathBuf,
    /// The container's memory cgroup directory, for OOM detection.
    pub memory_cgroup: Option<PathBuf>,
    /// Start the container when the daemon asks and learn its exit from the runtime's
    /// `wait` (see [`super::runtime_wait`]), as well as by reaping the PID `create`
    /// reports.
    pub exit_via_wait: bool,
}

/// Parses `--key value` pairs (`--runtime-arg` may repeat).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<MonitorArgs, String> {
    let mut a = MonitorArgs::default();
    let mut it = args.into_iter();
    while let Some(key) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{key} needs a value"));
        match key.as_str() {
            "--runtime" => a.runtime = value()?.into(),
            "--runtime-root" => a.runtime_root = value()?.into(),
            "--runtime-arg" => a.runtime_args.push(value()?),
            "--bundle" => a.bundle = value()?.into(),
            "--id" => a.id = value()?,
            "--log-path" => a.log_path = value()?.into(),
            "--log-max-size" => {
                let v = value()?;
                a.log_max_size = Some(
                    v.parse()
                        .map_err(|_| format!("--log-max-size: `{v}` is not a byte count"))?,
                );
            }
            "--exit-file" => a.exit_file = value()?.into(),
            "--pid-file" => a.pid_file = value()?.into(),
            "--memory-cgroup" => a.memory_cgroup = Some(value()?.into()),
            "--exit-via-wait" => a.exit_via_wait = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    for (name, empty) in [
        ("--runtime", a.runtime.as_os_str().is_empty()),
        ("--bundle", a.bundle.as_os_str().is_empty()),
        ("--id", a.id.is_empty()),
        ("--log-path", a.log_path.as_os_str().is_empty()),
        ("--exit-file", a.exit_file.as_os_str().is_empty()),
        ("--pid-file", a.pid_file.as_os_str().is_empty()),
    ] {
        if empty {
            return Err(format!("{name} is required"));
        }
    }
    Ok(a)
}

/// Why the monitor could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The runtime's create failed.
    #[error("{runtime} create failed ({status}): {stderr}")]
    Create {
        /// Runtime binary.
        runtime: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
}

fn sys<E: Into<io::Error>>(what: &'static str) -> impl FnOnce(E) -> MonitorError {
    move |e| MonitorError::Sys {
        what,
        source: e.into(),
    }
}

/// Runs the monitor to completion; `status` is the pipe to the daemon.
pub fn run(args: &MonitorArgs, mut status: impl Write) -> Result<ExitRecord, MonitorError> {
    // A session of our own, so signals to the daemon's process group do not reach us and we
    // outlive a daemon restart; a subreaper, so the container's init becomes our child.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("set child subreaper"))?;

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGUSR1);
    // "Start it", from the daemon (`--exit-via-wait`); ignored otherwise.
    mask.add(Signal::SIGUSR2);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(sys("block signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(sys("signalfd"))?;

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut log = LogWriter::open(&args.log_path, args.log_max_size).map_err(sys("open log"))?;

    // The socket is named relative to the bundle (the monitor's and the runtime's working
    // directory): `<bundle>/console.sock` would overflow sun_path's 108 bytes.
    let wants_terminal = super::console::wants_terminal(&args.bundle);
    let (stdin_r, mut attach) = attach_socket(args, wants_terminal);
    let console = if wants_terminal {
        std::env::set_current_dir(&args.bundle).map_err(sys("enter the bundle"))?;
        Some(
            super::console::ConsoleSocket::bind(std::path::Path::new("console.sock"))
                .map_err(sys("listen on the console socket"))?,
        )
    } else {
        None
    };
    // The runtime's `start` takes the container's stdio too (`--exit-via-wait`): keep ours.
    let kept = if args.exit_via_wait {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(sys("duplicate the container's stdio"))
        };
        Some(ContainerStdio {
            stdin: stdin_r.as_ref().map(dup).transpose()?,
            stdout: dup(&out_w)?,
            stderr: dup(&err_w)?,
        })
    } else {
        None
    };
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root")
        .arg(&args.runtime_root)
        .args(&args.runtime_args)
        .arg("create")
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--pid-file")
        .arg(&args.pid_file);
    if let Some(c) = &console {
        // An absolute path that fits sun_path whatever the bundle's length: through our
        // own working directory (the bundle). A relative path would do for runc and crun,
        // but youki resolves it from its state directory.
        let path = Path::new("/proc")
            .join(std::process::id().to_string())
            .join("cwd")
            .join(c.path());
        cmd.arg("--console-socket")
            .arg(path)
            .current_dir(&args.bundle);
    }
    cmd.arg(&args.id)
        .stdin(stdin_r.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    // The container must not inherit our blocked signals.
    unsafe {
        cmd.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(io::Error::from)
        });
    }
    let mut master = None;
    let created = cmd
        .spawn()
        .map_err(sys("run the runtime's create"))
        .and_then(|mut child| {
            if let Some(c) = &console {
                master = c
                    .receive(&mut child, CONSOLE_WAIT)
                    .map_err(sys("receive the container's terminal"))?;
            }
            wait_draining(&mut child, [&out_r, &err_r])
                .map_err(sys("wait for the runtime's create"))
        });
    // Our copies of the write ends went with `cmd`; only the container holds them now.
    drop(cmd);
    drop(console);
    let (created, printed) = created?;
    if !created.success() {
        let said = if printed[1].is_empty() {
            &printed[0]
        } else {
            &printed[1]
        };
        let err = MonitorError::Create {
            runtime: args.runtime.display().to_string(),
            status: created,
            stderr: quote_bounded(said),
        };
        let _ = writeln!(
            status,
            "{}",
            serde_json::json!({ "error": err.to_string() })
        );
        return Err(err);
    }
    let pid: i32 = std::fs::read_to_string(&args.pid_file)
        .map_err(sys("read the pid file"))?
        .trim()
        .parse()
        .map_err(|_| MonitorError::Sys {
            what: "parse the pid file",
            source: io::Error::other("not a number"),
        })?;
    let _ = writeln!(status, "{}", serde_json::json!({ "pid": pid }));
    let _ = status.flush();
    drop(status);

    if let (Some(a), Some(m)) = (attach.as_mut(), master.as_ref()) {
        let _ = a.set_terminal(m);
    }
    // What came through the pipes during `create` is the runtime's own (the container's
    // process runs only from `start`): runc's warnings, such as the systemd driver's
    // "skipping device", are not the container's output. They go to the monitor's log.
    for bytes in &printed {
        if !bytes.is_empty() {
            eprintln!(
                "crid-monitor: container {}: the runtime said during create: {}",
                args.id,
                String::from_utf8_lossy(bytes).trim_end()
            );
        }
    }
    let mut output = Output::new(out_r, err_r, master, attach)?;
    // The runtime's create made the cgroup; watch it before the container starts.
    let mut oom = args.memory_cgroup.as_deref().and_then(OomWatch::start);
    let mut waiter = kept.map(|stdio| {
        RuntimeWait::new(
            args.runtime.clone(),
            args.runtime_root.clone(),
            args.runtime_args.clone(),
            args.id.clone(),
            args.bundle.clone(),
            Pid::from_raw(pid),
            stdio,
        )
    });
    let exit_code = copy(
        &mut log,
        &mut output,
        &signals,
        oom.as_mut(),
        Some(Init {
            pid: Pid::from_raw(pid),
            waiter: waiter.as_mut(),
        }),
        None,
    )?
    .ok_or_else(|| MonitorError::Sys {
        what: "wait for the container's init",
        source: io::Error::other("the output loop ended before init exited"),
    })?;
    let record = ExitRecord {
        exit_code,
        exited_at_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default(),
        oom_killed: match oom.as_mut() {
            Some(watch) => watch.oom_killed(exit_code == 128 + Signal::SIGKILL as i32),
            None => args.memory_cgroup.as_deref().is_some_and(oom_killed),
        },
    };
    // The container's exit is its init's exit: record it now, even if a process that
    // survived init (one in a pod-shared PID namespace) still holds the pipes open.
    if crate::faults::on(crate::faults::Fault::ExitWaitsForPipes) {
        let _ = copy(
            &mut log,
            &mut output,
            &signals,
            None,
            None,
            Some(Instant::now() + std::time::Duration::from_secs(2)),
        );
    }
    exit::write(&args.exit_file, &record).map_err(sys("write the exit file"))?;
    // Then keep logging what such survivors write, until they close the pipes (the daemon
    // kills the rest of the container's cgroup when it stops the container) or the window
    // ends. Nothing here can change the record any more.
    if let Err(e) = copy(
        &mut log,
        &mut output,
        &signals,
        None,
        None,
        Some(Instant::now() + DRAIN_AFTER_EXIT),
    ) {
        eprintln!("crid-monitor: container {}: after exit: {e}", args.id);
    }
    Ok(record)
}

/// The container's output: its stdout and stderr pipes, or its terminal, and the clients
/// attached to it.
struct Output {
    pipes: Vec<(Stream, Option<File>)>,
    buf: Vec<u8>,
    attach: Option<Attach>,
    /// Bytes of output the log could not take (a full disk): dropped, never blocking the
    /// container on a full pipe nor ending the monitor.
    dropped: u64,
}

impl Output {
    fn new(
        out: OwnedFd,
        err: OwnedFd,
        terminal: Option<OwnedFd>,
        attach: Option<Attach>,
    ) -> Result<Self, MonitorError> {
        set_nonblocking(&out)?;
        set_nonblocking(&err)?;
        let mut pipes: Vec<(Stream, Option<File>)> = vec![
            (Stream::Stdout, Some(out.into())),
            (Stream::Stderr, Some(err.into())),
        ];
        // A terminal merges both streams; the CRI logs it as stdout.
        if let Some(t) = terminal {
            set_nonblocking(&t)?;
            pipes.push((Stream::Stdout, Some(t.into())));
        }
        Ok(Self {
            pipes,
            buf: vec![0u8; 64 * 1024],
            attach,
            dropped: 0,
        })
    }

    fn is_open(&self) -> bool {
        self.pipes.iter().any(|(_, f)| f.is_some())
    }

    /// Copies one read of pipe `i` into the log; `Ok(false)` when nothing more is there now.
    fn read_once(&mut self, i: usize, log: &mut LogWriter) -> Result<bool, MonitorError> {
        let (stream, file) = &mut self.pipes[i];
        let Some(f) = file.as_mut() else {
            return Ok(false);
        };
        match f.read(&mut self.buf) {
            // EIO: a pty master whose every slave is closed.
            Ok(0) => *file = None,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => *file = None,
            Ok(n) => {
                match log.write_chunk(*stream, &self.buf[..n], SystemTime::now()) {
                    Ok(()) if self.dropped > 0 => {
                        eprintln!(
                            "crid-monitor: the log is written again; {} bytes of output were dropped",
                            self.dropped
                        );
                        self.dropped = 0;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        if self.dropped == 0 {
                            eprintln!(
                                "crid-monitor: the log cannot be written ({e}); output is dropped until it can"
                            );
                        }
                        self.dropped += n as u64;
                    }
                }
                if let Some(a) = self.attach.as_mut() {
                    a.broadcast(attach_kind(*stream), &self.buf[..n]);
                }
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(sys("read container output")(e)),
        }
        Ok(false)
    }

    /// Copies everything the pipes hold now, without waiting: what init wrote before it
    /// exited is in the pipe buffers by the time its exit is reaped.
    fn drain_available(&mut self, log: &mut LogWriter) -> Result<(), MonitorError> {
        for i in 0..self.pipes.len() {
            while self.read_once(i, log)? {}
        }
        Ok(())
    }
}

/// The container's init as the monitor learns its exit: by reaping `pid`, and through the
/// runtime's `wait` when there is a `waiter`.
struct Init<'a> {
    pid: Pid,
    waiter: Option<&'a mut RuntimeWait>,
}

/// The runtime's `wait` of `init`, when the exit is learnt through it.
fn waiter_of<'a>(init: &'a mut Option<Init<'_>>) -> Option<&'a mut RuntimeWait> {
    init.as_mut().and_then(|i| i.waiter.as_deref_mut())
}

/// Copies output into the log and handles signals. With `init`, returns its exit code once
/// it is reaped or the runtime's `wait` tells it (after copying what its output pipes
/// already hold); without, returns `None` when every pipe is closed or at `deadline`.
fn copy(
    log: &mut LogWriter,
    output: &mut Output,
    signals: &SignalFd,
    mut oom: Option<&mut OomWatch>,
    mut init: Option<Init<'_>>,
    deadline: Option<Instant>,
) -> Result<Option<i32>, MonitorError> {
    loop {
        if init.is_none() && !output.is_open() {
            return Ok(None);
        }
        let retry_at = init
            .as_ref()
            .and_then(|i| i.waiter.as_ref())
            .and_then(|w| w.retry_at());
        let wake = match (deadline, retry_at) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        };
        let timeout = match wake {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() && deadline == Some(d) {
                    return Ok(None);
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, (_, f)) in output.pipes.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let attach_from = fds.len();
        if let Some(a) = output.attach.as_ref() {
            for (fd, writable) in a.poll_fds() {
                let flags = if writable {
                    PollFlags::POLLIN | PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(fd, flags));
            }
        }
        let oom_at = fds.len();
        if let Some(w) = oom.as_ref() {
            fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(sys("poll")(e)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if let Some(w) = waiter_of(&mut init) {
            w.tick(Instant::now());
        }
        // First: the counter must be read while the cgroup exists (see super::oom).
        if let Some(w) = oom.as_mut()
            && ready.get(oom_at).copied().unwrap_or(false)
        {
            w.update();
        }

        for (slot, i) in which.iter().enumerate() {
            if ready[slot + 1] {
                output.read_once(*i, log)?;
            }
        }

        if let Some(a) = output.attach.as_mut() {
            a.handle(&ready[attach_from..oom_at]);
        }

        if ready[0] {
            let mut gone = false;
            while let Ok(Some(info)) = signals.read_signal() {
                if info.ssi_signo == Signal::SIGUSR2 as u32 {
                    if let Some(w) = waiter_of(&mut init) {
                        gone |= w.on_start_requested() == Some(Waited::Gone);
                    }
                } else if info.ssi_signo == Signal::SIGUSR1 as u32 {
                    // A failed reopen keeps the old file: losing the log is better than
                    // losing the monitor (and with it the container's exit code).
                    if let Err(e) = log.reopen() {
                        eprintln!("crid-monitor: reopening the log: {e}");
                    }
                }
            }
            // Reap every child; only the container's init (or the runtime's word on it)
            // decides the exit code.
            let init_pid = init.as_ref().map(|i| i.pid);
            // Deleted before it ever started: as if killed.
            let mut exit_code = gone.then_some(128 + Signal::SIGKILL as i32);
            loop {
                let reaped = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if Some(pid) == init_pid => {
                        exit_code = Some(code);
                        continue;
                    }
                    Ok(WaitStatus::Signaled(pid, sig, _)) if Some(pid) == init_pid => {
                        exit_code =
                            Some(if crate::faults::on(crate::faults::Fault::WrongExitCode) {
                                sig as i32
                            } else {
                                128 + sig as i32
                            });
                        continue;
                    }
                    Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => pid,
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                };
                let Some(w) = waiter_of(&mut init) else {
                    continue;
                };
                match w.reaped(reaped) {
                    Waited::Exited(code) => exit_code = exit_code.or(Some(code)),
                    Waited::Gone => {
                        eprintln!(
                            "crid-monitor: the container is gone (its sandbox ended, or it was deleted unstarted) before the runtime told its exit; recorded as killed"
                        );
                        exit_code = exit_code.or(Some(128 + Signal::SIGKILL as i32));
                    }
                    Waited::Retry | Waited::Other => {}
                }
            }
            if let Some(code) = exit_code {
                output.drain_available(log)?;
                return Ok(Some(code));
            }
        }
    }
}

/// The attach socket (see [`super::attach`]), bound in the bundle, and the read end of the
/// container's stdin when its config keeps stdin open (a terminal is its own stdin). An
/// attach socket that cannot be bound is reported and the container runs without one.
fn attach_socket(args: &MonitorArgs, terminal: bool) -> (Option<OwnedFd>, Option<Attach>) {
    let mode = StdinMode::of_bundle(&args.bundle);
    let (stdin_r, stdin_w) = match (mode, terminal) {
        (StdinMode::Closed, _) | (_, true) => (None, None),
        _ => match pipe() {
            Ok((r, w)) => (Some(r), Some(w)),
            Err(e) => {
                eprintln!("crid-monitor: no stdin for the container: {e}");
                (None, None)
            }
        },
    };
    // Relative to the bundle, as the console socket, for sun_path's 108 bytes.
    let bound = std::env::set_current_dir(&args.bundle)
        .and_then(|()| Attach::bind(Path::new(ATTACH_SOCKET), stdin_w, mode == StdinMode::Once));
    match bound {
        Ok(a) => (stdin_r, Some(a)),
        Err(e) => {
            eprintln!("crid-monitor: no attach socket: {e}");
            (stdin_r, None)
        }
    }
}

fn attach_kind(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => super::attach::STDOUT,
        Stream::Stderr => super::attach::STDERR,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), MonitorError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))
}

/// Most bytes of each stream kept from the runtime's `create`.
const CREATE_OUTPUT_MAX: usize = 1 << 20;
/// Most bytes of the runtime's output quoted in an error.
const CREATE_QUOTE_MAX: usize = 4 << 10;

/// Waits for the runtime's `create` while reading what it prints into the container's
/// stdout and stderr pipes: a runtime that prints more than a pipe holds would otherwise
/// block on a monitor that only reads after it exits. Keeps up to [`CREATE_OUTPUT_MAX`]
/// bytes of each stream.
fn wait_draining(
    child: &mut std::process::Child,
    pipes: [&OwnedFd; 2],
) -> io::Result<(std::process::ExitStatus, [Vec<u8>; 2])> {
    let mut files = Vec::with_capacity(2);
    for fd in pipes {
        set_nonblocking(fd).map_err(|e| io::Error::other(e.to_string()))?;
        files.push(Some(File::from(fd.try_clone()?)));
    }
    let mut kept = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // The status first, then a full drain: all it wrote before exiting is read.
        let status = child.try_wait()?;
        for (i, slot) in files.iter_mut().enumerate() {
            while let Some(f) = slot.as_mut() {
                match f.read(&mut buf) {
                    Ok(0) => *slot = None,
                    Ok(n) => {
                        let room = CREATE_OUTPUT_MAX.saturating_sub(kept[i].len());
                        kept[i].extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if let Some(status) = status {
            return Ok((status, kept));
        }
        let mut fds: Vec<PollFd<'_>> = files
            .iter()
            .flatten()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        } else {
            let _ = poll(&mut fds, PollTimeout::from(50u8));
        }
    }
}

/// The runtime's output for an error message: lossy UTF-8, trimmed, at most
/// [`CREATE_QUOTE_MAX`] bytes, with how much was left out.
fn quote_bounded(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(CREATE_QUOTE_MAX)]);
    let text = text.trim();
    if bytes.len() > CREATE_QUOTE_MAX {
        format!("{text} [{} more bytes]", bytes.len() - CREATE_QUOTE_MAX)
    } else {
        text.to_owned()
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), MonitorError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(sys("fcntl"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(sys("fcntl"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_and_require_the_essentials() {
        let args = |v: &[&str]| parse_args(v.iter().map(|s| (*s).to_owned()));
        let ok = args(&[
            "--runtime",
            "/usr/sbin/runc",
            "--runtime-root",
            "/run/r",
            "--bundle",
            "/b",
            "--id",
            "c1",
            "--log-path",
            "/l",
            "--exit-file",
            "/e",
            "--pid-file",
            "/p",
            "--log-max-size",
            "1024",
            "--runtime-arg",
            "--systemd-cgroup",
        ])
        .expect("valid");
        assert_eq!(ok.log_max_size, Some(1024));
        assert_eq!(ok.runtime_args, ["--systemd-cgroup"]);
        assert!(
            args(&["--runtime", "/r"])
                .expect_err("missing")
                .contains("required")
        );
        assert!(
            args(&["--bogus", "x"])
                .expect_err("unknown")
                .contains("--bogus")
        );
        assert!(
            args(&["--id"])
                .expect_err("no value")
                .contains("needs a value")
        );
    }
}

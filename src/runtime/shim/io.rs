//! The FIFOs between a shim and crid: a container's stdout and stderr, copied into its CRI
//! log (and to attached clients) by a task of the daemon; an exec'd process's, collected
//! or relayed; stdin; the shim's own log.
//!
//! Readers open `O_RDONLY | O_NONBLOCK` before the shim opens the other end: such a reader
//! sees EOF only after a writer came and went (Linux reports no hang-up to a FIFO reader
//! that never had a writer), which is exactly "the process and the shim's copy are done".

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::attach::AttachHub;
use crate::monitor::log::{LogWriter, Stream};

/// Read size of one chunk.
const CHUNK: usize = 32 * 1024;

/// A stdout/stderr FIFO pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoPair {
    /// The stdout FIFO.
    pub stdout: PathBuf,
    /// The stderr FIFO.
    pub stderr: PathBuf,
}

impl FifoPair {
    /// Makes `<dir>/<prefix>-stdout` and `-stderr` (replacing stale ones).
    pub fn make(dir: &Path, prefix: &str) -> io::Result<FifoPair> {
        let pair = FifoPair {
            stdout: dir.join(format!("{prefix}-stdout")),
            stderr: dir.join(format!("{prefix}-stderr")),
        };
        make_fifo(&pair.stdout)?;
        make_fifo(&pair.stderr)?;
        Ok(pair)
    }

    /// Opens both for reading (see the module docs).
    pub fn open(&self) -> io::Result<(pipe::Receiver, pipe::Receiver)> {
        Ok((reader(&self.stdout)?, reader(&self.stderr)?))
    }

    /// Removes both.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// mkfifo 0600 at `path`, replacing whatever is there.
pub fn make_fifo(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(io::Error::from)
}

/// A reader of FIFO `path` that sees EOF once its writers came and left.
pub fn reader(path: &Path) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new().open_receiver(path)
}

/// A reader of FIFO `path` that never sees EOF (it is a writer itself): for the shim's own
/// log, which the shim opens once and may reopen.
pub fn lasting_reader(path: &Path) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
}

/// Makes FIFO `path` for a process's stdin and opens it for writing without waiting for a
/// reader (read-write): the reader (the shim) sees EOF only once this is closed, and what
/// is written before it opens waits in the pipe.
pub fn stdin_fifo(path: &Path) -> io::Result<pipe::Sender> {
    make_fifo(path)?;
    pipe::OpenOptions::new().read_write(true).open_sender(path)
}

/// A request to reopen the log file at its path; answered once the file is open.
pub type Reopen = tokio::sync::oneshot::Sender<io::Result<()>>;

/// Copies a container's stdout and stderr into its CRI log, and to the clients attached
/// to `hub`, until both reach EOF (the container and the shim's copy are done). A request
/// on `reopen` (ReopenContainerLog, after the kubelet renamed the file away) reopens the
/// file between two chunks.
pub fn copy_to_log(
    id: String,
    (stdout, stderr): (pipe::Receiver, pipe::Receiver),
    mut log: LogWriter,
    mut reopen: tokio::sync::mpsc::UnboundedReceiver<Reopen>,
    hub: Option<Arc<AttachHub>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (mut out, mut err) = (Some(stdout), Some(stderr));
        let (mut obuf, mut ebuf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        while out.is_some() || err.is_some() {
            let (stream, n) = tokio::select! {
                r = read_some(&mut out, &mut obuf) => (Stream::Stdout, r),
                r = read_some(&mut err, &mut ebuf) => (Stream::Stderr, r),
                Some(reply) = reopen.recv() => {
                    let _ = reply.send(log.reopen());
                    continue;
                }
            };
            let (buf, slot) = match stream {
                Stream::Stdout => (&obuf, &mut out),
                Stream::Stderr => (&ebuf, &mut err),
            };
            match n {
                Ok(0) => *slot = None,
                Ok(n) => {
                    if let Err(e) = log.write_chunk(stream, &buf[..n], SystemTime::now()) {
                        tracing::warn!(container = %id, "writing the container log: {e}");
                    }
                    if let Some(hub) = &hub {
                        hub.broadcast(stream, &buf[..n]);
                    }
                }
                Err(e) => {
                    tracing::warn!(container = %id, "reading the container's output: {e}");
                    *slot = None;
                }
            }
        }
        if let Some(hub) = &hub {
            hub.end();
        }
        tracing::debug!(container = %id, "container output ended");
    })
}

/// Reads from `r` if it is still open; pends forever once it is not.
async fn read_some(r: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Appends what the shim logs to `file` until process `shim_pid` (the shim) has ended.
pub fn copy_shim_log(reader: pipe::Receiver, file: PathBuf, shim_pid: u32) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut out) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .await
        else {
            return;
        };
        let ended = async {
            if let Ok(fd) = crate::monitor::liveness::Pidfd::open(shim_pid as i32) {
                let _ = fd.exited().await;
            }
        };
        tokio::pin!(ended);
        let mut reader = reader;
        let mut buf = vec![0u8; CHUNK];
        loop {
            tokio::select! {
                n = reader.read(&mut buf) => match n {
                    Ok(n) if n > 0 => {
                        let _ = tokio::io::AsyncWriteExt::write_all(&mut out, &buf[..n]).await;
                    }
                    _ => return,
                },
                () = &mut ended => return,
            }
        }
    })
}

/// Output of an exec'd process being collected, each stream capped.
pub struct Collected {
    stdout: Collector,
    stderr: Collector,
}

struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Collector {
    fn spawn(mut r: pipe::Receiver, cap: usize) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            let mut chunk = vec![0u8; CHUNK];
            // Reads past the cap too, discarding, so the writer never blocks on us.
            while let Ok(n) = r.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut b = sink.lock().unwrap_or_else(|p| p.into_inner());
                let room = cap.saturating_sub(b.len());
                b.extend_from_slice(&chunk[..n.min(room)]);
            }
        });
        Collector { buf, task }
    }

    async fn finish(self, limit: Duration) -> Vec<u8> {
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Collected {
    /// Starts reading both streams, keeping at most `cap` bytes of each.
    pub fn start(stdout: pipe::Receiver, stderr: pipe::Receiver, cap: usize) -> Collected {
        Collected {
            stdout: Collector::spawn(stdout, cap),
            stderr: Collector::spawn(stderr, cap),
        }
    }

    /// What was read, once both streams ended or `limit` passed (what the process left
    /// behind may hold them open).
    pub async fn finish(self, limit: Duration) -> (Vec<u8>, Vec<u8>) {
        tokio::join!(self.stdout.finish(limit), self.stderr.finish(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_reader_sees_eof_only_after_a_writer_came_and_went() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = FifoPair::make(dir.path(), "t").expect("fifos");
        let (out, err) = pair.open().expect("open");
        let collected = Collected::start(out, err, 5);
        // No writer yet: nothing ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let path = pair.stdout.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("writer");
            w.write_all(b"hello world").expect("write");
        })
        .await
        .expect("writer task");
        let epath = pair.stderr.clone();
        tokio::task::spawn_blocking(move || {
            drop(std::fs::OpenOptions::new().write(true).open(epath));
        })
        .await
        .expect("writer task");
        let (o, e) = collected.finish(Duration::from_secs(5)).await;
        assert_eq!(o, b"hello");
        assert!(e.is_empty());
        pair.remove();
        assert!(!pair.stdout.exists());
    }

    #[tokio::test]
    async fn container_output_becomes_cri_log_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = FifoPair::make(dir.path(), "c").expect("fifos");
        let (out, err) = pair.open().expect("open");
        let log_path = dir.path().join("c.log");
        let log = LogWriter::open(&log_path, None).expect("log");
        let (_reopen, requests) = tokio::sync::mpsc::unbounded_channel();
        let task = copy_to_log("c".into(), (out, err), log, requests, None);
        let (o, e) = (pair.stdout.clone(), pair.stderr.clone());
        tokio::task::spawn_blocking(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(o).expect("w");
            w.write_all(b"out\n").expect("write");
            drop(w);
            let mut w = std::fs::OpenOptions::new().write(true).open(e).expect("w");
            w.write_all(b"err\n").expect("write");
        })
        .await
        .expect("writers");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends at EOF")
            .expect("task");
        let text = std::fs::read_to_string(&log_path).expect("log");
        assert!(text.contains(" stdout F out\n"), "{text}");
        assert!(text.contains(" stderr F err\n"), "{text}");
    }
}

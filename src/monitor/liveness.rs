//! The daemon's watch on its monitors' lives: a pidfd per monitor, which becomes readable
//! when the process ends, whoever its parent is (the daemon, or init after a daemon
//! restart). A monitor that ends without writing an exit file was killed (SIGKILL, the OOM
//! killer): the daemon learns it here, without polling.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A handle on one process, open before the caller checks the PID is still the process it
/// means (so a reused PID cannot be watched by mistake).
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// `pidfd_open(pid)`. Fails with ESRCH when no such process exists (a zombie still
    /// counts: its pidfd is readable at once).
    pub fn open(pid: i32) -> io::Result<Pidfd> {
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: the descriptor was just returned to us and nothing else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Resolves when the process has ended. Needs a tokio runtime.
    pub async fn exited(self) -> io::Result<()> {
        // SAFETY: the AsyncFd owns the descriptor, open until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(self.0, Interest::READABLE) }?;
        let _ready = fd.readable().await?;
        Ok(())
    }
}

/// The file in a container's bundle that holds its crid-monitor's PID, written as soon as
/// the monitor is spawned.
pub const PID_FILE: &str = "monitor.pid";

/// The PID recorded in `bundle`'s [`PID_FILE`], if that process is still container `id`'s
/// crid-monitor.
pub fn recorded_monitor(bundle: &std::path::Path, id: &str) -> Option<i32> {
    std::fs::read_to_string(bundle.join(PID_FILE))
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| is_monitor_of(*pid, id))
}

/// Whether `pid` is crid-monitor watching container `id` (pids get reused).
pub fn is_monitor_of(pid: i32, id: &str) -> bool {
    pid > 0
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"crid-monitor"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_pidfd_is_readable_once_its_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .expect("sleep");
        let fd = Pidfd::open(child.id() as i32).expect("pidfd_open");
        let waited = tokio::time::timeout(Duration::from_secs(10), fd.exited()).await;
        assert!(matches!(waited, Ok(Ok(()))), "{waited:?}");
        let _ = child.wait();
        assert!(Pidfd::open(0).is_err());
    }

    #[test]
    fn a_recorded_monitor_counts_only_while_it_is_that_containers() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(recorded_monitor(dir.path(), "c1"), None, "nothing recorded");
        // A stand-in monitor: its command line is crid-monitor's (`--id c1`).
        let mut child = std::process::Command::new("/bin/sh")
            .arg0("crid-monitor")
            .args(["-c", "sleep 30; :", "sh", "--id", "c1"])
            .spawn()
            .expect("sh");
        let pid = child.id() as i32;
        std::fs::write(dir.path().join(PID_FILE), format!("{pid}\n")).expect("write");
        assert_eq!(recorded_monitor(dir.path(), "c1"), Some(pid));
        assert_eq!(
            recorded_monitor(dir.path(), "c2"),
            None,
            "another container's"
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(recorded_monitor(dir.path(), "c1"), None, "gone");
        std::fs::write(dir.path().join(PID_FILE), "garbage").expect("write");
        assert_eq!(recorded_monitor(dir.path(), "c1"), None);
    }
}

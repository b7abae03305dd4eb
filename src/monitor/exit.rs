//! The exit file: how crid-monitor tells the daemon that a container ended, durably.
//!
//! Written once, atomically (temp file, fsync, rename, directory fsync), so the daemon
//! never reads half a record, even after a crash or a restart of either process.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status; 128 + N when killed by signal N (the CRI's convention).
    pub exit_code: i32,
    /// Nanoseconds since the Unix epoch when the monitor saw the exit.
    pub exited_at_ns: i64,
    /// The container's memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
}

/// Writes `record` to `path` atomically (a reader sees all of it or none), not durably:
/// exit files live on the runroot, a tmpfs in production, and a power cut that would lose
/// one ends the container too (recovery then records the exit as unknown).
pub fn write(path: &Path, record: &ExitRecord) -> io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    crate::state::write_volatile(path, &bytes)
}

/// Reads an exit file; `Ok(None)` when the container has not exited (no file yet).
pub fn read(path: &Path) -> io::Result<Option<ExitRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exit");
        assert_eq!(read(&path).expect("read"), None);
        let r = ExitRecord {
            exit_code: 137,
            exited_at_ns: 1_795_852_800_000_000_001,
            oom_killed: true,
        };
        write(&path, &r).expect("write");
        assert_eq!(read(&path).expect("read"), Some(r));
        let leftovers = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(leftovers, 1, "no temp file left behind");
    }
}

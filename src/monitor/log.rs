//! The CRI container log format, written by crid-monitor.
//!
//! One line per chunk of output: `<timestamp> <stream> <tag> <content>\n`, where the
//! timestamp is RFC 3339 with nanoseconds in UTC, stream is `stdout` or `stderr`, and tag is
//! `F` for a full line or `P` for a partial one (output that did not end in a newline yet).
//! The kubelet parses exactly this (cri:ContainerConfig#log_path).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats a time as RFC 3339 with nine fractional digits in UTC: `2026-11-28T08:00:00.000000001Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Splits a chunk of output into CRI log records: each complete line is `F`; a trailing
/// fragment without a newline is `P`.
pub fn records(chunk: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                Some((line, true))
            }
            None => {
                let line = rest;
                rest = &[];
                Some((line, false))
            }
        }
    })
}

/// A CRI log file with a size cap; reopened by path after the kubelet rotates it.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    max_size: Option<u64>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`; `max_size` bounds the file in bytes.
    /// A symlink at `path` is refused, not followed: whoever can write the log directory
    /// must not be able to point crid's root-owned appends at another file.
    pub fn open(path: &Path, max_size: Option<u64>) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            written,
            max_size,
        })
    }

    /// Reopens the path: after a rotation the old file was renamed and a new one is created
    /// (cri:RuntimeService.ReopenContainerLog).
    pub fn reopen(&mut self) -> io::Result<()> {
        let _ = self.file.sync_data();
        *self = Self::open(&self.path, self.max_size)?;
        Ok(())
    }

    /// Writes one chunk of a stream's output as CRI records, stamped `now`.
    pub fn write_chunk(&mut self, stream: Stream, chunk: &[u8], now: SystemTime) -> io::Result<()> {
        let ts = rfc3339_nano(now);
        let mut buf = Vec::with_capacity(chunk.len() + 64);
        for (content, full) in records(chunk) {
            buf.extend_from_slice(ts.as_bytes());
            buf.push(b' ');
            buf.extend_from_slice(
                if crate::faults::on(crate::faults::Fault::LogStreamAlwaysStdout) {
                    b"stdout"
                } else {
                    stream.as_str().as_bytes()
                },
            );
            buf.extend_from_slice(
                if full || crate::faults::on(crate::faults::Fault::LogNoPartialTag) {
                    b" F "
                } else {
                    b" P "
                },
            );
            buf.extend_from_slice(content);
            buf.push(b'\n');
        }
        if let Some(max) = self.max_size
            && self.written + buf.len() as u64 > max
        {
            // Over the cap: start the file afresh, as conmon does, rather than grow unbounded.
            self.file.set_len(0)?;
            self.written = 0;
        }
        self.file.write_all(&buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_795_852_800, 5); // 2026-11-28T08:00:00Z
        assert_eq!(rfc3339_nano(t), "2026-11-28T08:00:00.000000005Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_nano(leap)[..10], "2000-02-29");
    }

    #[test]
    fn chunks_split_into_full_and_partial_records() {
        let r: Vec<_> = records(b"a\nbc\npartial").collect();
        assert_eq!(
            r,
            [
                (&b"a"[..], true),
                (&b"bc"[..], true),
                (&b"partial"[..], false)
            ]
        );
        let r: Vec<_> = records(b"\n").collect();
        assert_eq!(r, [(&b""[..], true)]);
        assert_eq!(records(b"").count(), 0);
    }

    #[test]
    fn writer_formats_caps_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let mut w = LogWriter::open(&path, Some(200)).expect("open");
        w.write_chunk(Stream::Stdout, b"hello\nwor", UNIX_EPOCH)
            .expect("write");
        w.write_chunk(Stream::Stderr, b"ld\n", UNIX_EPOCH)
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000000Z stdout F hello\n\
             1970-01-01T00:00:00.000000000Z stdout P wor\n\
             1970-01-01T00:00:00.000000000Z stderr F ld\n"
        );

        // The cap: the next chunk would pass 200 bytes, so the file starts afresh.
        w.write_chunk(Stream::Stdout, b"x\ny\n", UNIX_EPOCH)
            .expect("write");
        let len = std::fs::metadata(&path).expect("stat").len();
        assert!(len <= 200, "{len}");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .starts_with("1970-01-01T00:00:00.000000000Z stdout F x\n")
        );

        // Rotation: the kubelet renames the file, then asks for a reopen.
        std::fs::rename(&path, dir.path().join("c.log.1")).expect("rename");
        w.reopen().expect("reopen");
        w.write_chunk(Stream::Stdout, b"after\n", UNIX_EPOCH)
            .expect("write");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .ends_with("stdout F after\n")
        );

        // A symlink planted where the rotated log will be reopened is not followed.
        let target = dir.path().join("elsewhere");
        std::fs::rename(&path, dir.path().join("c.log.2")).expect("rename");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert!(w.reopen().is_err());
        assert!(!target.exists());
    }
}

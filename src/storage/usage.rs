//! Disk usage of a directory tree (bytes and inodes) and the mount point it lives on, as
//! `ImageFsInfo` reports them (cri:ImageService.ImageFsInfo#FilesystemUsage).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes and inodes used below a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of disk blocks allocated (`st_blocks * 512`), each inode counted once.
    pub bytes: u64,
    /// Inodes, each hard-linked inode counted once, the directory itself included.
    pub inodes: u64,
}

/// Walks `dir` without following symlinks; a missing `dir` uses nothing.
pub fn usage(dir: &Path) -> io::Result<Usage> {
    let mut seen = HashSet::new();
    let mut total = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Entries vanish while we walk (a layer removed, a pull finishing): not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if first {
                    return Ok(total);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        first = false;
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total.bytes += meta.blocks() * 512;
        total.inodes += 1;
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(rd) => {
                    for entry in rd {
                        stack.push(entry?.path());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// The mount point of the filesystem holding `path`: the longest mount point in
/// /proc/self/mountinfo that is a prefix of its canonical path.
pub fn mount_point(path: &Path) -> io::Result<PathBuf> {
    let canonical = std::fs::canonicalize(path)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let best = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|m| canonical.starts_with(m))
        .max_by_key(|m| m.as_os_str().len());
    Ok(best.unwrap_or_else(|| PathBuf::from("/")))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> PathBuf {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_once_per_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).expect("write");
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("link");
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("d/l")).expect("symlink");
        let u = usage(dir.path()).expect("usage");
        assert_eq!(u.inodes, 4, "root, a(=b), d, d/l");
        assert!(u.bytes >= 10_000, "{u:?}");
        assert_eq!(
            usage(&dir.path().join("missing")).expect("missing"),
            Usage::default()
        );
    }

    #[test]
    fn mount_point_is_a_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = mount_point(dir.path()).expect("mount point");
        assert!(
            std::fs::canonicalize(dir.path())
                .expect("canon")
                .starts_with(&m)
        );
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
    }
}

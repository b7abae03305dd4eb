//! Storage: the layer store (unpacked, overlayfs-ready image layers), container root
//! filesystems, and disk usage.
//!
//! Container writable layers live in `<root>/storage/containers`, under overlay mounts of
//! the image layers (`overlay`).

pub mod access;
pub mod layers;
pub mod overlay;
mod sys;
pub mod usage;

use std::path::{Path, PathBuf};

/// `<root>/storage/layers`: unpacked layers by diff ID.
pub fn layers_dir(root: &Path) -> PathBuf {
    root.join("storage").join("layers")
}

/// `<root>/storage/containers`: container writable layers.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("storage").join("containers")
}

/// Reads at most `max` bytes of the file `rel` inside the directory tree `root`, resolving
/// every path component (symlinks included) as if `root` were `/`: a container image's
/// `/etc/passwd -> /host/file` stays inside the image.
pub fn read_in_root(root: &Path, rel: &str, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let dir = sys::open_path(libc::AT_FDCWD, root.as_os_str(), 0)?;
    let fd = sys::openat2(
        dir.as_raw_fd(),
        std::ffi::OsStr::new(rel),
        libc::O_RDONLY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    let mut s = String::new();
    std::fs::File::from(fd).take(max).read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_root_follow_symlinks_inside_the_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("w");
        // An absolute symlink is resolved against the root, not the host.
        std::os::unix::fs::symlink("/etc/group", root.join("etc/passwd")).expect("symlink");
        std::os::unix::fs::symlink("../../../../../../etc/hostname", root.join("etc/escape"))
            .expect("symlink");
        assert_eq!(
            read_in_root(root, "etc/passwd", 1024).expect("read"),
            "root:x:0:\n"
        );
        assert!(
            read_in_root(root, "etc/escape", 1024).is_err(),
            "no host file reached"
        );
        assert_eq!(
            read_in_root(root, "etc/group", 4).expect("read"),
            "root",
            "capped"
        );
    }
}

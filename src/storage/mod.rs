//! Storage: the layer store (unpacked, overlayfs-ready image layers), container root
//! filesystems, and disk usage.
//!
//! Container writable layers live in `<root>/storage/containers`, under overlay mounts of
//! the image layers (`overlay`); image volumes are read-only overlays of an image's layers
//! (`image_volume`).

pub mod image_volume;
pub mod layers;
pub mod overlay;
mod sys;
pub mod usage;

use std::path::Path;

pub use crate::state::{containers_dir, layers_dir};

/// Lazily unmounts `path` (MNT_DETACH); not mounted or absent is fine.
pub fn unmount(path: &Path) -> std::io::Result<()> {
    use nix::mount::{MntFlags, umount2};
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// Creates (or opens for appending) the regular file `rel` inside the directory `root`,
/// creating missing directories (0755) on the way. Nothing below `root` is followed if it
/// is a symlink, and `rel` must be relative without `..`: a file that should land in
/// `root` cannot be made to land anywhere else. ELOOP or ENOTDIR: a symlink was in the way.
pub fn create_beneath(root: &Path, rel: &Path) -> std::io::Result<std::fs::File> {
    use std::io::{Error, ErrorKind};
    use std::path::Component;
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("{} is not a path below {}", rel.display(), root.display()),
                ));
            }
        }
    }
    let Some((file, parents)) = names.split_last() else {
        return Err(Error::new(ErrorKind::InvalidInput, "no file name"));
    };
    let mut dir = sys::open_path(libc::AT_FDCWD, root.as_os_str(), 0)?;
    for name in parents {
        let next = match sys::open_beneath(&dir, name) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match sys::mkdir(&dir, name, 0o755) {
                    Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                    _ => sys::open_beneath(&dir, name)?,
                }
            }
            other => other?,
        };
        dir = next;
    }
    let f = sys::open_append(&dir, file, 0o640)?;
    if !f.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    Ok(f)
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

    #[test]
    fn creates_beneath_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("logs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        create_beneath(&root, Path::new("c/0.log")).expect("create");
        assert!(root.join("c/0.log").is_file());
        // Appending to an existing log is fine.
        create_beneath(&root, Path::new("c/0.log")).expect("reopen");

        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("f"), root.join("c/1.log")).expect("symlink");
        for rel in [
            "link/0.log",
            "link/x/0.log",
            "c/1.log",
            "../outside/f",
            "/etc/x",
        ] {
            assert!(create_beneath(&root, Path::new(rel)).is_err(), "{rel}");
        }
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    }
}

//! Image volumes (KEP-4639, `Mount.image`): an image's root filesystem mounted read-only
//! for a container, outside its rootfs, so that the runtime bind-mounts it in.
//!
//! Each volume is a read-only overlay of the image's layers (lower directories only, no
//! upper: nothing can be written, and the layers are the ones containers of the image use,
//! so nothing is copied). A container's volumes live under one directory of its bundle,
//! `image-volumes/<mount index>`, which [`remove_all`] unmounts and removes.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

use super::sys;

/// The empty directories at the bottom of every volume's overlay: overlayfs without an
/// upper directory wants at least two lower ones, and an image may have one layer, or none.
const EMPTY: &str = ".empty";

/// Mounts the layers `lower` (bottom first) read-only at `target`, creating it. `nosuid`
/// and `nodev` as for any volume; files stay executable (the ImageVolumeSource API says
/// read-only only; runtimes dropped the early `noexec`).
pub fn mount_volume(target: &Path, lower: &[PathBuf]) -> io::Result<()> {
    let parent = target.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", target.display()),
        )
    })?;
    let empty = parent.join(EMPTY);
    std::fs::create_dir_all(empty.join("a"))?;
    std::fs::create_dir_all(empty.join("b"))?;
    std::fs::create_dir_all(target)?;
    let data = options(lower, &empty);
    super::overlay::mount_overlay(
        target,
        &data,
        lower.len(),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "the image volume",
    )
}

/// `lowerdir=` of a volume: the image's layers topmost first, then one empty directory
/// below `empty` (two for an image without layers).
pub fn options(lower: &[PathBuf], empty: &Path) -> String {
    let mut dirs: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    dirs.push(empty.join("a").display().to_string());
    if lower.is_empty() {
        dirs.push(empty.join("b").display().to_string());
    }
    format!("lowerdir={}", dirs.join(":"))
}

/// Why an `image_sub_path` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// Absolute, empty after cleaning, or with a `..` component.
    #[error("`{0}` must be a relative path inside the image without `..`")]
    NotRelative(String),
    /// The image has nothing at the path.
    #[error("`{0}` does not exist in the image")]
    Missing(String),
    /// Resolving it leaves the image (a symlink to an absolute path or above the root).
    #[error("`{0}` leads out of the image (through a symlink)")]
    Escapes(String),
    /// Another error of the filesystem.
    #[error("`{path}`: {source}")]
    Io {
        /// The sub path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks the form of a sub path (no I/O): relative, without `..`.
pub fn check_sub_path(sub: &str) -> Result<(), SubPathError> {
    let p = Path::new(sub);
    let ok = !p.is_absolute()
        && p.components().any(|c| matches!(c, Component::Normal(_)))
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(SubPathError::NotRelative(sub.to_owned()))
    }
}

/// Resolves `sub` inside the mounted volume `root` and returns the real path it names,
/// for the runtime to bind-mount: every component must exist, and symlinks are followed
/// only while they stay beneath `root` (the volume is read-only, so what was resolved
/// cannot change before the runtime mounts it).
pub fn resolve_sub_path(root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    check_sub_path(sub)?;
    let io_err = |source: io::Error| SubPathError::Io {
        path: sub.to_owned(),
        source,
    };
    let dir = sys::open_path(libc::AT_FDCWD, root.as_os_str(), 0).map_err(io_err)?;
    let fd = sys::openat2(
        dir.as_raw_fd(),
        OsStr::new(sub),
        libc::O_PATH,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => SubPathError::Missing(sub.to_owned()),
        Some(libc::EXDEV) | Some(libc::ELOOP) => SubPathError::Escapes(sub.to_owned()),
        _ => io_err(e),
    })?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io_err)?;
    let canonical_root = std::fs::canonicalize(root).map_err(io_err)?;
    if !real.starts_with(&canonical_root) {
        return Err(SubPathError::Escapes(sub.to_owned()));
    }
    Ok(real)
}

/// Unmounts every volume under `dir` and removes it; absent is fine.
pub fn remove_all(dir: &Path, unmount: &dyn Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut first_error = None;
    for e in entries.flatten() {
        if e.file_name() == EMPTY {
            continue;
        }
        if let Err(err) = unmount(&e.path()) {
            first_error.get_or_insert(err);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    crate::state::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_are_topmost_first_over_the_empty_one() {
        assert_eq!(
            options(
                &["/l/bottom".into(), "/l/top".into()],
                Path::new("/v/.empty")
            ),
            "lowerdir=/l/top:/l/bottom:/v/.empty/a"
        );
        assert_eq!(
            options(&[], Path::new("/v/.empty")),
            "lowerdir=/v/.empty/a:/v/.empty/b"
        );
    }

    #[test]
    fn sub_paths_must_be_relative_without_dot_dot() {
        for ok in ["etc", "etc/fixture", "./www", "a/./b/"] {
            assert!(check_sub_path(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "/etc", "../x", "a/../../b", "a/.."] {
            assert!(
                matches!(check_sub_path(bad), Err(SubPathError::NotRelative(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sub_paths_resolve_inside_the_volume_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("etc/fixture")).expect("mkdir");
        std::fs::write(root.join("etc/fixture/image"), "x").expect("w");
        std::os::unix::fs::symlink("etc", root.join("rel")).expect("symlink");
        std::os::unix::fs::symlink("/etc", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../..", root.join("etc/up")).expect("symlink");
        let real = std::fs::canonicalize(&root).expect("canonical");
        assert_eq!(
            resolve_sub_path(&root, "etc/fixture").expect("resolved"),
            real.join("etc/fixture")
        );
        // A symlink that stays inside resolves to its target, which is what gets mounted.
        assert_eq!(
            resolve_sub_path(&root, "rel/fixture/image").expect("resolved"),
            real.join("etc/fixture/image")
        );
        assert!(matches!(
            resolve_sub_path(&root, "abs"),
            Err(SubPathError::Escapes(_))
        ));
        assert!(matches!(
            resolve_sub_path(&root, "etc/up"),
            Err(SubPathError::Escapes(_))
        ));
        assert!(matches!(
            resolve_sub_path(&root, "etc/nothing"),
            Err(SubPathError::Missing(_))
        ));
        assert!(matches!(
            resolve_sub_path(&root, "etc/fixture/image/below"),
            Err(SubPathError::Missing(_))
        ));
    }

    #[test]
    fn a_volume_is_read_only_and_merges_layers_needs_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bottom, top) = (dir.path().join("bottom"), dir.path().join("top"));
        std::fs::create_dir_all(&bottom).expect("mkdir");
        std::fs::create_dir_all(&top).expect("mkdir");
        std::fs::write(bottom.join("a"), "bottom").expect("w");
        std::fs::write(top.join("a"), "top").expect("w");
        let vols = dir.path().join("image-volumes");
        let target = vols.join("0");
        mount_volume(&target, &[]).expect("no layer");
        assert_eq!(std::fs::read_dir(&target).expect("ls").count(), 0);
        super::super::unmount(&target).expect("unmount");
        mount_volume(&target, std::slice::from_ref(&bottom)).expect("one layer");
        assert_eq!(
            std::fs::read_to_string(target.join("a")).expect("a"),
            "bottom"
        );
        super::super::unmount(&target).expect("unmount");
        mount_volume(&target, &[bottom, top]).expect("mount");
        assert_eq!(std::fs::read_to_string(target.join("a")).expect("a"), "top");
        assert!(std::fs::write(target.join("b"), "x").is_err(), "read-only");
        remove_all(&vols, &|p| super::super::unmount(p)).expect("remove");
        assert!(!vols.exists());
        remove_all(&vols, &|p| super::super::unmount(p)).expect("remove twice");
    }
}

//! Container root filesystems: an overlay mount of the image's layers (read-only, shared by
//! every container of the image) under the container's own writable upper directory.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

/// The directories of one container's root filesystem.
#[derive(Debug, Clone)]
pub struct RootfsLayout {
    /// The container's storage directory; holds `upper/`, `work/` and `empty/`.
    pub storage: PathBuf,
    /// The mount point.
    pub target: PathBuf,
}

/// The mount options (`lowerdir=...,upperdir=...,workdir=...`). `lower` is bottom first, as
/// the image lists its layers; overlayfs wants the topmost first.
pub fn options(lower: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lowers: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    )
}

/// Mounts the root filesystem over `lower` (bottom first). An image without layers gets
/// an empty lower directory (overlayfs needs one).
pub fn mount_rootfs(layout: &RootfsLayout, lower: &[PathBuf]) -> io::Result<()> {
    let upper = layout.storage.join("upper");
    let work = layout.storage.join("work");
    for d in [&upper, &work, &layout.target] {
        std::fs::create_dir_all(d)?;
    }
    let mut lower = lower.to_vec();
    if lower.is_empty() {
        let empty = layout.storage.join("empty");
        std::fs::create_dir_all(&empty)?;
        lower.push(empty);
    }
    let data = options(&lower, &upper, &work);
    mount_overlay(
        &layout.target,
        &data,
        lower.len(),
        MsFlags::empty(),
        "overlay",
    )
}

/// Mounts an overlay with the options `data` (over `layers` layers, for the error) at
/// `target`; `what` names the mount in errors. The options must fit in the one page the
/// kernel takes.
pub(super) fn mount_overlay(
    target: &Path,
    data: &str,
    layers: usize,
    flags: MsFlags,
    what: &str,
) -> io::Result<()> {
    if data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "overlay options for {layers} layers are {} bytes, over the kernel's 4095",
                data.len()
            ),
        ));
    }
    mount(Some("overlay"), target, Some("overlay"), flags, Some(data)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("mounting {what} at {}: {e}", target.display()),
        )
    })
}

/// Whether something is mounted at `path` (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(path), path.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// Unmounts the root filesystem and removes the container's storage; idempotent.
pub fn remove_rootfs(layout: &RootfsLayout) -> io::Result<()> {
    super::unmount(&layout.target)?;
    let _ = std::fs::remove_dir(&layout.target);
    crate::state::remove_dir_all(&layout.storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_layers_are_listed_topmost_first() {
        let o = options(
            &["/l/bottom".into(), "/l/top".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        );
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/bottom,upperdir=/c/upper,workdir=/c/work"
        );
    }

    // oci-image:layer.md#whiteouts (the unpacked 0:0 devices hide lower files in overlayfs)
    #[test]
    fn overlay_stacks_layers_and_writes_go_up_needs_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bottom = dir.path().join("bottom");
        let top = dir.path().join("top");
        std::fs::create_dir_all(&bottom).expect("mkdir");
        std::fs::create_dir_all(&top).expect("mkdir");
        std::fs::write(bottom.join("a"), "bottom").expect("w");
        std::fs::write(bottom.join("b"), "bottom").expect("w");
        std::fs::write(top.join("a"), "top").expect("w");
        let layout = RootfsLayout {
            storage: dir.path().join("c"),
            target: dir.path().join("rootfs"),
        };
        mount_rootfs(&layout, &[bottom.clone(), top]).expect("mount");
        assert!(is_mounted(&layout.target));
        assert_eq!(
            std::fs::read_to_string(layout.target.join("a")).expect("a"),
            "top"
        );
        assert_eq!(
            std::fs::read_to_string(layout.target.join("b")).expect("b"),
            "bottom"
        );
        std::fs::write(layout.target.join("b"), "written").expect("write");
        assert_eq!(
            std::fs::read_to_string(bottom.join("b")).expect("b"),
            "bottom"
        );
        assert_eq!(
            std::fs::read_to_string(layout.storage.join("upper/b")).expect("upper"),
            "written"
        );
        remove_rootfs(&layout).expect("remove");
        assert!(!is_mounted(&layout.target));
        assert!(!layout.storage.exists());
        remove_rootfs(&layout).expect("remove twice");
    }
}

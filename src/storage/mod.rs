//! Storage: the layer store (unpacked, overlayfs-ready image layers), container root
//! filesystems, and disk usage.
//!
//! Container writable layers live in `<root>/storage/containers`, under overlay mounts of
//! the image layers (`overlay`).

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

//! Storage: the layer store (unpacked, overlayfs-ready image layers) and disk usage.
//!
//! Container writable layers will live in `<root>/storage/containers` (the container work
//! fills it); `ImageFsInfo` already reports its usage.

pub mod layers;
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

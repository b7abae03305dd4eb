//! The content store and image records under `<root>/image`.
//!
//! - `blobs/sha256/<hex>`: manifests, indexes and configs, verified against their digest and
//!   written to `ingest/` first, then fsynced and renamed into place.
//! - `images/<config-hex>.json`: one record per image, written atomically
//!   (tmp + fsync + rename + directory fsync).
//! - `ingest/`: in-progress writes; emptied at every start.
//!
//! Layer blobs are not kept: they are verified and unpacked while streamed (see `pull`),
//! and the unpacked layer, checked against its diff ID, is what containers use. That halves
//! the disk an image takes, as in CRI-O's storage.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::reference::Digest;
use crate::storage::layers::sync_dir;

/// One layer of an image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the (compressed) blob in the manifest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
    /// sha256 of the uncompressed tar: the layer store's key.
    pub diff_id: String,
}

/// An image as stored: everything ListImages and ImageStatus report, and what GC needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest, `Image.id`.
    pub id: String,
    /// `registry/repo:tag` references that point at it.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` of the manifest (or index) pulled.
    pub repo_digests: Vec<String>,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// Every document blob the record holds on to (index, manifest, config).
    pub blobs: Vec<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// Bytes of config plus layer blobs, as the registry serves them.
    pub size: u64,
    /// The config's `User`, for `Image.uid` / `Image.username`.
    #[serde(default)]
    pub user: String,
}

impl ImageRecord {
    /// The layers' diff IDs, bottom first.
    pub fn diff_ids(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|l| l.diff_id.as_str())
    }
}

/// The content store and records on disk.
#[derive(Debug)]
pub struct Store {
    blobs: PathBuf,
    ingest: PathBuf,
    images: PathBuf,
}

impl Store {
    /// Opens `<dir>` (creating it) and empties `ingest/` and stray record temp files.
    pub fn open(dir: &Path) -> Result<Store, ImageError> {
        let store = Store {
            blobs: dir.join("blobs").join("sha256"),
            ingest: dir.join("ingest"),
            images: dir.join("images"),
        };
        crate::state::access::secure_dir(dir, crate::state::access::Access::Private)
            .map_err(ImageError::store("creating", dir))?;
        for d in [&store.blobs, &store.ingest, &store.images] {
            std::fs::create_dir_all(d).map_err(ImageError::store("creating", d))?;
        }
        let read = std::fs::read_dir(&store.ingest)
            .map_err(ImageError::store("reading", &store.ingest))?;
        for entry in read.flatten() {
            tracing::info!(path = %entry.path().display(), "removing a partial download left by an interrupted pull");
            let _ = std::fs::remove_file(entry.path())
                .or_else(|_| std::fs::remove_dir_all(entry.path()));
        }
        Ok(store)
    }

    /// Path of a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Stores `data` as `digest` after checking it; a mismatch writes nothing.
    pub fn put_blob(&self, digest: &Digest, data: &[u8]) -> Result<(), ImageError> {
        let actual = Digest::of(data);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                reference: String::new(),
                what: "blob",
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let target = self.blob_path(digest);
        if target.exists() {
            return Ok(());
        }
        atomic_write(&self.ingest, &target, data)
    }

    /// Reads a stored blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest);
        std::fs::read(&p).map_err(ImageError::store("reading", p))
    }

    /// Digests of every stored blob.
    pub fn list_blobs(&self) -> Result<Vec<Digest>, ImageError> {
        let read =
            std::fs::read_dir(&self.blobs).map_err(ImageError::store("reading", &self.blobs))?;
        Ok(read
            .flatten()
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect())
    }

    /// Removes a blob (absent is fine).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), ImageError> {
        remove_if_present(&self.blob_path(digest))
    }

    /// Writes a record atomically.
    pub fn write_record(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let id = Digest::parse(&record.id).map_err(|reason| ImageError::Internal {
            reference: record.id.clone(),
            detail: reason,
        })?;
        let data = serde_json::to_vec_pretty(record).map_err(|e| ImageError::Internal {
            reference: record.id.clone(),
            detail: format!("cannot encode the image record: {e}"),
        })?;
        atomic_write(
            &self.ingest,
            &self.images.join(format!("{}.json", id.hex())),
            &data,
        )
    }

    /// Removes a record durably (absent is fine).
    pub fn remove_record(&self, id: &Digest) -> Result<(), ImageError> {
        remove_if_present(&self.images.join(format!("{}.json", id.hex())))?;
        sync_dir(&self.images).map_err(ImageError::store("syncing", &self.images))
    }

    /// Every record on disk; an unreadable one is logged and skipped, not fatal, so one bad
    /// file cannot take every image away.
    pub fn load_records(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let mut out = Vec::new();
        let read =
            std::fs::read_dir(&self.images).map_err(ImageError::store("reading", &self.images))?;
        for entry in read.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<ImageRecord>(&b)) {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => {
                    tracing::error!(path = %path.display(), error = %e, "skipping a corrupt image record")
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "skipping an unreadable image record")
                }
            }
        }
        Ok(out)
    }
}

fn remove_if_present(p: &Path) -> Result<(), ImageError> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ImageError::store("removing", p)(e))
        }
        _ => Ok(()),
    }
}

/// tmp file in `ingest` + write + fsync + rename to `target` + fsync of target's directory.
fn atomic_write(ingest: &Path, target: &Path, data: &[u8]) -> Result<(), ImageError> {
    let mut tmp = tempfile::NamedTempFile::new_in(ingest)
        .map_err(ImageError::store("creating a file in", ingest))?;
    tmp.write_all(data)
        .map_err(ImageError::store("writing", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(ImageError::store("syncing", tmp.path()))?;
    tmp.persist(target)
        .map_err(|e| ImageError::store("renaming into", target)(e.error))?;
    if let Some(dir) = target.parent() {
        sync_dir(dir).map_err(ImageError::store("syncing", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // oci-image:descriptor.md#digests — content is verified before it is stored.
    #[test]
    fn blob_digest_is_verified_and_a_mismatch_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let good = Digest::of(b"hello");
        store.put_blob(&good, b"hello").expect("put");
        assert_eq!(store.read_blob(&good).expect("read"), b"hello");
        let err = store.put_blob(&good, b"tampered").expect_err("mismatch");
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        let other = Digest::of(b"x");
        assert!(store.put_blob(&other, b"y").is_err());
        assert!(!store.blob_path(&other).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn ingest_leftovers_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        std::fs::write(dir.path().join("ingest/partial"), b"half").expect("write");
        drop(Store::open(dir.path()).expect("reopen"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("ingest"))
                .expect("ingest")
                .count(),
            0
        );
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let rec = ImageRecord {
            id: Digest::of(b"config").to_string(),
            repo_tags: vec!["r/x:1".into()],
            repo_digests: vec![],
            manifest_digest: Digest::of(b"m").to_string(),
            blobs: vec![],
            layers: vec![],
            size: 3,
            user: String::new(),
        };
        store.write_record(&rec).expect("write");
        std::fs::write(dir.path().join("images/bad.json"), b"{").expect("write bad");
        assert_eq!(store.load_records().expect("load"), vec![rec.clone()]);
        store
            .remove_record(&Digest::parse(&rec.id).expect("id"))
            .expect("remove");
        assert!(store.load_records().expect("load").is_empty());
    }
}

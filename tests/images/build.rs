//! Images the fixture catalogue does not have: zstd and uncompressed layers, hostile tars,
//! large random layers. Built here, pushed to the real registry with the fixture client.

use std::io::Write;

use crid_conformance::fixtures::image::Blob;
use crid_conformance::fixtures::registry::Registry;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// One tar entry; names are written raw, so hostile ones (`..`, `/`) get through.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A plain tar of `entries`, headers written byte for byte.
pub fn tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, data, link): (&str, tar::EntryType, &[u8], &str) = match e {
            Entry::File(n, d) => (n, tar::EntryType::Regular, d, ""),
            Entry::Dir(n) => (n, tar::EntryType::Directory, b"", ""),
            Entry::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", t),
            Entry::Hardlink(n, t) => (n, tar::EntryType::Link, b"", t),
        };
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd")
}

/// A built image: what to push and what crid must report.
pub struct Custom {
    pub config: Blob,
    pub manifest: Blob,
    pub layers: Vec<Blob>,
    pub diff_ids: Vec<String>,
}

impl Custom {
    /// `layers`: (media type, uncompressed tar, blob as served).
    pub fn new(layers: Vec<(&str, Vec<u8>, Vec<u8>)>) -> Custom {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(_, tar, _)| crid::image::reference::Digest::of(tar).to_string())
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "1000:1000", "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("json"));
        let blobs: Vec<Blob> = layers
            .into_iter()
            .map(|(mt, _, blob)| Blob::new(mt, blob))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest().as_str(), "size": config.size()},
            "layers": blobs.iter().map(|b| serde_json::json!({
                "mediaType": b.media_type(), "digest": b.digest().as_str(), "size": b.size()
            })).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
        Custom {
            config,
            manifest,
            layers: blobs,
            diff_ids,
        }
    }

    /// The image ID crid must report: the config digest.
    pub fn id(&self) -> String {
        self.config.digest().to_string()
    }

    pub async fn push(&self, reg: &Registry, name: &str, tag: &str) {
        let c = reg.client();
        for b in self.layers.iter().chain([&self.config]) {
            c.push_blob(name, b).await.expect("push blob");
        }
        c.push_manifest(name, tag, &self.manifest)
            .await
            .expect("push manifest");
    }
}

/// Deterministic, incompressible bytes (xorshift), so gzip cannot shrink a big layer.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

//! The layer store: one overlayfs-ready directory per diff ID, unpacked safely.
//!
//! Layout: `<root>/storage/layers/<diffid-hex>/diff`. A container's root filesystem is an
//! overlay with `lowerdir=` the image's `diff` directories, topmost layer first. A layer is
//! unpacked into `.tmp-<random>/diff`, checked against its diff ID, flushed (`syncfs`) and
//! renamed into place, so a kill at any point leaves either nothing or the whole layer;
//! [`LayerStore::open`] removes `.tmp-*` leftovers.
//!
//! oci-image:layer.md#whiteouts: `.wh.NAME` becomes the overlayfs whiteout (a character
//! device 0:0 named NAME) and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
//! directory. Every path is resolved beneath the layer root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, one directory at a time: `..`, absolute paths, a path through a
//! symlink, and a hard link to outside the layer fail with [`LayerError::Unsafe`] before
//! anything is written for that entry, and the partial layer is removed.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest as _;

use super::sys::*;
use crate::digest::{Digest, hex};

/// Prefix of in-progress unpacks (and of layers being deleted).
pub const TEMP_PREFIX: &str = ".tmp-";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The archive tries to write outside the layer root, or through a symlink.
    #[error("unsafe entry `{path}`: {reason}; nothing was written outside the layer")]
    Unsafe {
        /// The entry path as the archive names it.
        path: String,
        /// What it tried.
        reason: String,
    },
    /// The archive is malformed or not decompressible.
    #[error("malformed layer archive: {0}")]
    Archive(io::Error),
    /// A filesystem operation failed.
    #[error("{op} `{path}`: {source}")]
    Io {
        /// What crid was doing.
        op: &'static str,
        /// The entry path (or store path).
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The compressed stream does not match the manifest's digest or size.
    #[error("blob digest mismatch: the manifest says {expected}, the download is {actual}")]
    BlobDigestMismatch {
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The layer expands to more than a configured limit (a decompression bomb, or an
    /// image far larger than any this node should run).
    #[error(
        "the {scope} expands to more than {limit} bytes (image.max_{scope}_unpacked_bytes); the partial layer was removed"
    )]
    TooLarge {
        /// `layer` or `image`: which limit was hit.
        scope: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// The uncompressed content does not hash to the diff ID the config names.
    #[error("diff ID mismatch: the image config says {expected}, the layer is {actual}")]
    DiffIdMismatch {
        /// From the image config.
        expected: String,
        /// Computed.
        actual: String,
    },
}

fn io_err(op: &'static str, path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> LayerError {
    let path = path.to_string();
    move |source| LayerError::Io { op, path, source }
}

/// How far a layer may expand: its own limit, and what is left of its image's limit
/// (shared by the layers of one pull, which unpack in parallel). Counted on the
/// uncompressed tar stream, and on file content written (a sparse entry writes more than
/// it reads).
#[derive(Debug, Clone)]
pub struct Budget {
    layer_max: u64,
    image_max: u64,
    image_left: Arc<AtomicU64>,
}

impl Budget {
    /// A fresh budget for one image: `layer_max` bytes per layer, `image_max` in all.
    pub fn new(layer_max: u64, image_max: u64) -> Budget {
        Budget {
            layer_max,
            image_max,
            image_left: Arc::new(AtomicU64::new(image_max)),
        }
    }

    /// No limit.
    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX, u64::MAX)
    }
}

/// The decompressed stream, cut off (with an error) where the budget ends; `hit` says
/// which limit it was.
struct Capped<R> {
    inner: R,
    layer_left: u64,
    budget: Budget,
    hit: Option<LayerError>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let len = n as u64;
        let over = if len > self.layer_left {
            Some(("layer", self.budget.layer_max))
        } else if self
            .budget
            .image_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(len)
            })
            .is_err()
        {
            Some(("image", self.budget.image_max))
        } else {
            None
        };
        if let Some((scope, limit)) = over {
            self.hit = Some(LayerError::TooLarge { scope, limit });
            return Err(io::Error::other(format!(
                "the {scope} expands to more than {limit} bytes"
            )));
        }
        self.layer_left -= len;
        Ok(n)
    }
}

/// What an unpack produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of uncompressed tar read.
    pub tar_bytes: u64,
    /// Entries written.
    pub entries: u64,
}

/// The on-disk layer store.
#[derive(Debug)]
pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    /// Opens (creating) `dir` and removes leftovers of interrupted unpacks and deletions.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<LayerStore> {
        let dir = dir.into();
        // Layers keep their setuid files and device nodes: nobody else may reach them.
        crate::state::access::secure_dir(&dir, crate::state::access::Access::Private)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .as_bytes()
                .starts_with(TEMP_PREFIX.as_bytes())
            {
                tracing::info!(path = %entry.path().display(), "removing a partial layer left by an interrupted unpack");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(LayerStore { dir })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The overlay lower directory of a layer.
    pub fn diff_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex()).join("diff")
    }

    /// Whether the layer is unpacked.
    pub fn exists(&self, diff_id: &Digest) -> bool {
        self.diff_dir(diff_id).is_dir()
    }

    /// Diff IDs of every unpacked layer.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(name) = name.to_str()
                && let Ok(d) = Digest::parse(&format!("sha256:{name}"))
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Unpacks a (gzip, zstd or plain) tar stream as layer `diff_id`, verifying the diff ID;
    /// `verify` then checks the compressed stream (its digest) before the layer is renamed
    /// into place. Returns early (without reading) when the layer already exists.
    pub fn unpack<R: Read>(
        &self,
        reader: R,
        diff_id: &Digest,
        verify: impl FnOnce(&mut R) -> Result<(), LayerError>,
    ) -> Result<Unpacked, LayerError> {
        self.unpack_within(reader, diff_id, &Budget::unlimited(), verify)
    }

    /// [`LayerStore::unpack`] within `budget`: a layer that expands beyond it fails with
    /// [`LayerError::TooLarge`] as soon as it does, and its partial directory is removed.
    pub fn unpack_within<R: Read>(
        &self,
        mut reader: R,
        diff_id: &Digest,
        budget: &Budget,
        verify: impl FnOnce(&mut R) -> Result<(), LayerError>,
    ) -> Result<Unpacked, LayerError> {
        if self.exists(diff_id) {
            return Ok(Unpacked::default());
        }
        let tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(io_err(
                "creating a temporary layer directory in",
                self.dir.display(),
            ))?;
        let diff = tmp.path().join("diff");
        std::fs::create_dir(&diff).map_err(io_err("creating", diff.display()))?;
        let mut hashing = HashingReader::new(Capped {
            inner: decompress(&mut reader).map_err(LayerError::Archive)?,
            layer_left: budget.layer_max,
            budget: budget.clone(),
            hit: None,
        });
        let unpacked = unpack_capped(&diff, &mut hashing, budget.layer_max).and_then(|stats| {
            // Trailing padding after the end-of-archive blocks is part of the diff ID.
            io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Archive)?;
            Ok(stats)
        });
        let mut stats = match (unpacked, hashing.inner.hit.take()) {
            (Err(_), Some(limit)) => return Err(limit),
            (result, _) => result?,
        };
        stats.tar_bytes = hashing.bytes_read();
        let actual = hashing.digest();
        drop(hashing);
        verify(&mut reader)?;
        if actual != *diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        // Flush the layer before it becomes visible: a crash after the rename must not
        // leave a complete-looking layer with empty files.
        let dirfd = File::open(tmp.path()).map_err(io_err("opening", tmp.path().display()))?;
        // SAFETY: syncfs on a valid open descriptor.
        if unsafe { libc::syncfs(dirfd.as_raw_fd()) } != 0 {
            return Err(io_err("syncfs", tmp.path().display())(
                io::Error::last_os_error(),
            ));
        }
        crate::failpoint!("pull.layer-staged");
        let target = self.dir.join(diff_id.hex());
        let kept = tmp.keep();
        match std::fs::rename(&kept, &target) {
            Ok(()) => {}
            // Another unpack of the same layer won the race: keep its copy.
            Err(e) if target.is_dir() => {
                tracing::debug!(error = %e, "layer appeared concurrently");
                let _ = std::fs::remove_dir_all(&kept);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&kept);
                return Err(io_err("renaming into", target.display())(e));
            }
        }
        sync_dir(&self.dir).map_err(io_err("syncing", self.dir.display()))?;
        crate::failpoint!("pull.layer-unpacked");
        Ok(stats)
    }

    /// Removes a layer: renamed to a temporary name first, so a crash mid-delete leaves a
    /// leftover [`LayerStore::open`] cleans, never a half layer under its real name.
    pub fn remove(&self, diff_id: &Digest) -> io::Result<()> {
        let path = self.dir.join(diff_id.hex());
        let trash = self.dir.join(format!("{TEMP_PREFIX}rm-{}", diff_id.hex()));
        match std::fs::rename(&path, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        sync_dir(&self.dir)?;
        crate::failpoint!("remove-image.layer-renamed");
        std::fs::remove_dir_all(&trash)
    }
}

/// fsyncs a directory, so renames in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A reader that hashes what passes through it (sha256).
pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest of everything read so far.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256_hex(&hex(&self.hasher.clone().finalize()))
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Layer compression, told by magic bytes (media types lie often enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `1f 8b`.
    Gzip,
    /// `28 b5 2f fd`.
    Zstd,
    /// A plain tar.
    None,
}

impl Compression {
    /// Detects the compression from the first bytes.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = io::BufReader::with_capacity(256 * 1024, reader);
    let head = io::BufRead::fill_buf(&mut buf)?;
    Ok(match Compression::sniff(head) {
        // MultiGzDecoder: some tools write a layer as concatenated gzip members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
        Compression::None => Box::new(buf),
    })
}

/// Unpacks a plain tar stream into the existing directory `root`.
pub fn unpack_into(root: &Path, reader: impl Read) -> Result<Unpacked, LayerError> {
    unpack_capped(root, reader, u64::MAX)
}

/// [`unpack_into`], writing at most `max_written` bytes of file content.
fn unpack_capped(root: &Path, reader: impl Read, max_written: u64) -> Result<Unpacked, LayerError> {
    let mut written: u64 = 0;
    let root_fd = open_path(libc::AT_FDCWD, root.as_os_str(), 0)
        .map_err(io_err("opening the layer root", root.display()))?;
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(LayerError::Archive)?;
    let mut stats = Unpacked::default();
    let mut dir_times: Vec<(Vec<OsString>, i64)> = Vec::new();
    let mut cache = ParentCache::default();
    for entry in &mut entries {
        let mut entry = entry.map_err(LayerError::Archive)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry.path().map_err(LayerError::Archive)?.into_owned();
        let comps = beneath(&path, &raw)?;
        let Some((name, parents)) = comps.split_last() else {
            // `./` itself: the layer root's own attributes.
            if kind.is_dir() {
                let meta = Meta::of(&mut entry)?;
                meta.apply_dir(&root_fd, &raw)?;
                dir_times.push((Vec::new(), meta.mtime));
            }
            continue;
        };
        let parent = cache.get(&root_fd, parents, &raw)?;
        let name_str = name.to_string_lossy();

        if name == OPAQUE_MARKER {
            set_xattr_on_fd_path(parent, None, OPAQUE_XATTR, b"y")
                .map_err(io_err("marking opaque", &raw))?;
            stats.entries += 1;
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // aufs bookkeeping (.wh..wh.plnk and friends): not content.
                continue;
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(LayerError::Unsafe {
                    path: raw,
                    reason: "whiteout of an invalid name".to_owned(),
                });
            }
            let hidden = OsStr::new(hidden);
            remove_existing(parent, hidden, &raw)?;
            mknod(parent, hidden, libc::S_IFCHR, 0).map_err(io_err("creating whiteout", &raw))?;
            stats.entries += 1;
            continue;
        }

        let meta = Meta::of(&mut entry)?;
        if kind.is_dir() {
            match mkdir(parent, name, 0o700) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    if !is_dir_at(parent, name) {
                        remove_existing(parent, name, &raw)?;
                        mkdir(parent, name, 0o700).map_err(io_err("creating directory", &raw))?;
                    }
                }
                Err(e) => return Err(io_err("creating directory", &raw)(e)),
            }
            let fd = open_beneath(parent, name.as_os_str()).map_err(|e| unsafe_or_io(e, &raw))?;
            meta.apply_dir(&fd, &raw)?;
            dir_times.push((comps.clone(), meta.mtime));
            cache.invalidate(&comps);
        } else if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            remove_existing(parent, name, &raw)?;
            let mut file = create_file(parent, name).map_err(io_err("creating file", &raw))?;
            // One byte over the limit tells a file that reaches it from one that passes it.
            let allowed = (max_written - written).saturating_add(1);
            let n = io::copy(&mut (&mut entry).take(allowed), &mut file).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof
                    || e.kind() == io::ErrorKind::InvalidData
                {
                    LayerError::Archive(e)
                } else {
                    io_err("writing", &raw)(e)
                }
            })?;
            written += n;
            if written > max_written {
                return Err(LayerError::TooLarge {
                    scope: "layer",
                    limit: max_written,
                });
            }
            meta.apply_file(&file, &raw)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| {
                    LayerError::Archive(io::Error::other(format!("symlink `{raw}` has no target")))
                })?
                .into_owned();
            remove_existing(parent, name, &raw)?;
            symlink(parent, name, &target).map_err(io_err("creating symlink", &raw))?;
            meta.apply_nofollow(parent, name, &raw)?;
        } else if kind.is_hard_link() {
            let target_raw = entry
                .link_name_bytes()
                .ok_or_else(|| {
                    LayerError::Archive(io::Error::other(format!(
                        "hard link `{raw}` has no target"
                    )))
                })?
                .into_owned();
            let target_path = PathBuf::from(OsStr::from_bytes(&target_raw));
            let tcomps = beneath(&target_path, &raw).map_err(|_| LayerError::Unsafe {
                path: raw.clone(),
                reason: format!(
                    "hard link target `{}` is outside the layer",
                    String::from_utf8_lossy(&target_raw)
                ),
            })?;
            let Some((tname, tparents)) = tcomps.split_last() else {
                return Err(LayerError::Unsafe {
                    path: raw,
                    reason: "hard link to the layer root".to_owned(),
                });
            };
            let tparent =
                open_dirs(&root_fd, tparents, false).map_err(|e| unsafe_or_io(e, &raw))?;
            remove_existing(parent, name, &raw)?;
            link(&tparent, tname, parent, name).map_err(io_err("creating hard link", &raw))?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let (fmt, dev) = if kind.is_fifo() {
                (libc::S_IFIFO, 0)
            } else {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let fmt = if kind.is_character_special() {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                (fmt, libc::makedev(major, minor))
            };
            remove_existing(parent, name, &raw)?;
            mknod(parent, name, fmt, dev).map_err(io_err("creating device node", &raw))?;
            meta.apply_nofollow(parent, name, &raw)?;
            // mknod's mode is masked by the umask; set the archive's exactly.
            chmod_at(parent, name, meta.mode).map_err(io_err("chmod", &raw))?;
        } else {
            tracing::debug!(path = %raw, kind = ?kind, "skipping unsupported tar entry type");
            continue;
        }
        stats.entries += 1;
    }
    // Directory mtimes last: creating their children changed them.
    for (comps, mtime) in dir_times.iter().rev() {
        let fd = if comps.is_empty() {
            None
        } else {
            Some(open_dirs(&root_fd, comps, false).map_err(|e| unsafe_or_io(e, "directory"))?)
        };
        set_times_fd(fd.as_ref().unwrap_or(&root_fd), *mtime)
            .map_err(io_err("setting mtime", "directory"))?;
    }
    Ok(stats)
}

/// The normal components of an entry path, or `Unsafe` for `..` and absolute paths.
fn beneath(path: &Path, raw: &str) -> Result<Vec<OsString>, LayerError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(LayerError::Unsafe {
                    path: raw.to_owned(),
                    reason: "`..` would leave the layer".to_owned(),
                });
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(LayerError::Unsafe {
                    path: raw.to_owned(),
                    reason: "absolute paths are not allowed in a layer".to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// ELOOP/EXDEV from openat2's resolve flags mean the path went through a symlink or out.
fn unsafe_or_io(e: io::Error, raw: &str) -> LayerError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => LayerError::Unsafe {
            path: raw.to_owned(),
            reason: "the path goes through a symlink; it could point outside the layer".to_owned(),
        },
        Some(libc::ENOTDIR) => LayerError::Unsafe {
            path: raw.to_owned(),
            reason: "a parent of the path is not a directory".to_owned(),
        },
        _ => io_err("resolving", raw)(e),
    }
}

/// The parent directory of the previous entry, kept open: tar entries come grouped by
/// directory, so this saves most of the per-entry path walks.
#[derive(Default)]
struct ParentCache {
    comps: Vec<OsString>,
    fd: Option<OwnedFd>,
}

impl ParentCache {
    fn get<'a>(
        &'a mut self,
        root: &'a OwnedFd,
        parents: &[OsString],
        raw: &str,
    ) -> Result<&'a OwnedFd, LayerError> {
        if parents.is_empty() {
            return Ok(root);
        }
        if self.fd.is_none() || self.comps != parents {
            let fd = open_dirs(root, parents, true).map_err(|e| unsafe_or_io(e, raw))?;
            self.comps = parents.to_vec();
            self.fd = Some(fd);
        }
        match &self.fd {
            Some(fd) => Ok(fd),
            None => Ok(root),
        }
    }

    /// A directory entry may have replaced a cached directory.
    fn invalidate(&mut self, comps: &[OsString]) {
        if self.comps.starts_with(comps) {
            self.fd = None;
        }
    }
}

/// Walks `comps` from `root` one directory at a time, never following a symlink, creating
/// missing directories (0755, as tar does for implied parents) when `create`.
fn open_dirs(root: &OwnedFd, comps: &[OsString], create: bool) -> io::Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for c in comps {
        let at = cur.as_ref().unwrap_or(root);
        let next = match open_beneath(at, c) {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                match mkdir(at, c, 0o755) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                open_beneath(at, c)?
            }
            other => other?,
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => dup(root),
    }
}

/// Makes room for an entry: a later entry of the same path replaces the earlier one.
fn remove_existing(dir: &OwnedFd, name: &OsStr, raw: &str) -> Result<(), LayerError> {
    let p = cstr(name).map_err(io_err("removing", raw))?;
    // SAFETY: valid descriptor and C string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), p.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) => {
            // SAFETY: as above.
            cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), p.as_ptr(), libc::AT_REMOVEDIR) })
                .map(drop)
                .map_err(io_err("replacing directory", raw))
        }
        _ => Err(io_err("replacing", raw)(e)),
    }
}

/// Attributes of an entry: ownership, mode, mtime, xattrs.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, LayerError> {
        let h = entry.header();
        let bad = |e: io::Error| LayerError::Archive(e);
        // An all-NUL numeric field reads as 0, as Go's archive/tar (containerd's) reads it;
        // some image builders leave uid, gid or mtime empty.
        let uid = h.uid().map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX));
        let gid = h.gid().map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX));
        let mode = h.mode().map_err(bad)? & 0o7777;
        let mtime = h.mtime().map_or(0, |v| i64::try_from(v).unwrap_or(0));
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(bad)? {
            for ext in exts {
                let ext = ext.map_err(bad)?;
                if let Ok(key) = ext.key()
                    && let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
                {
                    xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
        })
    }

    fn apply_file(&self, file: &File, raw: &str) -> Result<(), LayerError> {
        let fd = file.as_raw_fd();
        // SAFETY: fd is a valid open file; chown before chmod, since chown clears set-id bits.
        cvt(unsafe { libc::fchown(fd, self.uid, self.gid) }).map_err(io_err("chown", raw))?;
        // SAFETY: as above.
        cvt(unsafe { libc::fchmod(fd, self.mode) }).map_err(io_err("chmod", raw))?;
        for (k, v) in &self.xattrs {
            let key = CString::new(k.as_str())
                .map_err(|_| LayerError::Archive(io::Error::other("NUL in xattr name")))?;
            // SAFETY: valid descriptor, C string and buffer.
            cvt(unsafe { libc::fsetxattr(fd, key.as_ptr(), v.as_ptr().cast(), v.len(), 0) })
                .map_err(io_err("setting xattr", format!("{raw} ({k})")))?;
        }
        let ts = self.times();
        // SAFETY: valid descriptor and timespec array.
        cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map_err(io_err("setting mtime", raw))?;
        Ok(())
    }

    /// Access and modification times for `futimens`/`utimensat`: both the entry's mtime.
    fn times(&self) -> [libc::timespec; 2] {
        let t = libc::timespec {
            tv_sec: self.mtime,
            tv_nsec: 0,
        };
        [t, t]
    }

    fn apply_dir(&self, dir: &OwnedFd, raw: &str) -> Result<(), LayerError> {
        let p = fd_path(dir, None).map_err(io_err("chown", raw))?;
        // SAFETY: valid C string; the magic link is followed to the directory itself.
        cvt(unsafe { libc::chown(p.as_ptr(), self.uid, self.gid) })
            .map_err(io_err("chown", raw))?;
        // SAFETY: as above.
        cvt(unsafe { libc::chmod(p.as_ptr(), self.mode) }).map_err(io_err("chmod", raw))?;
        for (k, v) in &self.xattrs {
            set_xattr_on_fd_path(dir, None, k, v)
                .map_err(io_err("setting xattr", format!("{raw} ({k})")))?;
        }
        Ok(())
    }

    /// For symlinks and device nodes, which cannot be opened for writing.
    fn apply_nofollow(&self, dir: &OwnedFd, name: &OsStr, raw: &str) -> Result<(), LayerError> {
        let p = cstr(name).map_err(io_err("chown", raw))?;
        // SAFETY: valid descriptor and C string; never follows a symlink.
        cvt(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                p.as_ptr(),
                self.uid,
                self.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(io_err("chown", raw))?;
        for (k, v) in &self.xattrs {
            set_xattr_on_fd_path(dir, Some(name), k, v)
                .map_err(io_err("setting xattr", format!("{raw} ({k})")))?;
        }
        let ts = self.times();
        // SAFETY: valid descriptor, C string and timespec array.
        cvt(unsafe {
            libc::utimensat(
                dir.as_raw_fd(),
                p.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(io_err("setting mtime", raw))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// A ustar header with any name, including ones `tar::Builder` refuses (`..`, `/`).
    fn raw_header(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let h = raw_header(name, *kind, data.len() as u64, link);
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    fn diff_id(tar: &[u8]) -> Digest {
        Digest::of(tar)
    }

    fn no_verify(_: &mut &[u8]) -> Result<(), LayerError> {
        Ok(())
    }

    fn store() -> (tempfile::TempDir, LayerStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = LayerStore::open(dir.path().join("layers")).expect("open");
        (dir, s)
    }

    fn leftovers(s: &LayerStore) -> Vec<String> {
        std::fs::read_dir(s.dir())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    // oci-image:layer.md#whiteouts, #opaque-whiteout; oci-image:layer.md#changeset-over-existing-files
    #[test]
    fn whiteouts_links_devices_modes_owners_xattrs_times_needs_root() {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o750);
        dir.set_uid(1000);
        dir.set_gid(1001);
        dir.set_mtime(1_600_000_000);
        dir.set_size(0);
        b.append_data(&mut dir, "etc/", io::empty()).expect("dir");
        let mut f = tar::Header::new_gnu();
        f.set_entry_type(tar::EntryType::Regular);
        f.set_mode(0o4755);
        f.set_uid(1000);
        f.set_gid(1000);
        f.set_mtime(1_500_000_000);
        f.set_size(5);
        b.append_pax_extensions([("SCHILY.xattr.user.crid", b"yes".as_slice())])
            .expect("pax");
        b.append_data(&mut f, "etc/tool", &b"hello"[..])
            .expect("file");
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Link);
        link.set_size(0);
        link.set_uid(0);
        link.set_gid(0);
        link.set_mode(0o666);
        b.append_link(&mut link, "etc/tool-link", "etc/tool")
            .expect("hardlink");
        let mut sym = tar::Header::new_gnu();
        sym.set_entry_type(tar::EntryType::Symlink);
        sym.set_size(0);
        sym.set_uid(0);
        sym.set_gid(0);
        sym.set_mode(0o666);
        sym.set_mtime(1_400_000_000);
        b.append_link(&mut sym, "bin/sh", "/bin/busybox")
            .expect("symlink");
        let mut chr = tar::Header::new_gnu();
        chr.set_entry_type(tar::EntryType::Char);
        chr.set_device_major(1).expect("major");
        chr.set_device_minor(3).expect("minor");
        chr.set_mode(0o666);
        chr.set_size(0);
        chr.set_uid(0);
        chr.set_gid(0);
        b.append_data(&mut chr, "dev/null", io::empty())
            .expect("char");
        let mut fifo = tar::Header::new_gnu();
        fifo.set_entry_type(tar::EntryType::Fifo);
        fifo.set_mode(0o600);
        fifo.set_size(0);
        fifo.set_uid(0);
        fifo.set_gid(0);
        b.append_data(&mut fifo, "run/fifo", io::empty())
            .expect("fifo");
        let mut wh = tar::Header::new_gnu();
        wh.set_entry_type(tar::EntryType::Regular);
        wh.set_size(0);
        wh.set_uid(0);
        wh.set_gid(0);
        wh.set_mode(0o666);
        b.append_data(&mut wh.clone(), "etc/.wh.removed", io::empty())
            .expect("whiteout");
        b.append_data(&mut wh, "opaque/.wh..wh..opq", io::empty())
            .expect("opaque");
        let tar = b.into_inner().expect("tar");

        let (_d, s) = store();
        let id = diff_id(&tar);
        let stats = s.unpack(&tar[..], &id, no_verify).expect("unpack");
        assert_eq!(stats.tar_bytes, tar.len() as u64);
        let root = s.diff_dir(&id);
        let etc = std::fs::symlink_metadata(root.join("etc")).expect("etc");
        assert_eq!(
            (etc.mode() & 0o7777, etc.uid(), etc.gid()),
            (0o750, 1000, 1001)
        );
        assert_eq!(
            etc.mtime(),
            1_600_000_000,
            "directory mtime survives its children"
        );
        let tool = std::fs::symlink_metadata(root.join("etc/tool")).expect("tool");
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept after chown");
        assert_eq!(
            (tool.uid(), tool.mtime(), tool.nlink()),
            (1000, 1_500_000_000, 2)
        );
        let linked = std::fs::symlink_metadata(root.join("etc/tool-link")).expect("link");
        assert_eq!(linked.ino(), tool.ino(), "hard link shares the inode");
        let mut v = [0u8; 8];
        let p = CString::new(root.join("etc/tool").as_os_str().as_bytes()).expect("c");
        let k = CString::new("user.crid").expect("c");
        // SAFETY: valid C strings and buffer.
        let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!(&v[..usize::try_from(n).expect("xattr present")], b"yes");
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).expect("symlink"),
            Path::new("/bin/busybox")
        );
        assert_eq!(
            std::fs::symlink_metadata(root.join("bin/sh"))
                .expect("sym")
                .mtime(),
            1_400_000_000
        );
        let null = std::fs::symlink_metadata(root.join("dev/null")).expect("null");
        assert!(null.file_type().is_char_device());
        assert_eq!(
            (null.rdev(), null.mode() & 0o7777),
            (libc::makedev(1, 3), 0o666)
        );
        assert!(
            std::fs::symlink_metadata(root.join("run/fifo"))
                .expect("fifo")
                .file_type()
                .is_fifo()
        );
        let wh = std::fs::symlink_metadata(root.join("etc/removed")).expect("whiteout");
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "whiteout is a 0:0 char device"
        );
        assert!(!root.join("etc/.wh.removed").exists());
        let p = CString::new(root.join("opaque").as_os_str().as_bytes()).expect("c");
        let k = CString::new(OPAQUE_XATTR).expect("c");
        // SAFETY: as above.
        let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!(&v[..usize::try_from(n).expect("opaque xattr")], b"y");
        assert!(!root.join("opaque/.wh..wh..opq").exists());
        assert_eq!(leftovers(&s), [id.hex()], "only the committed layer");
        let implied = std::fs::metadata(root.join("bin")).expect("bin");
        assert_eq!(
            implied.permissions().mode() & 0o777,
            0o755,
            "implied parents are 0755"
        );
    }

    // Hostile layers: every escape is refused and nothing is written outside the layer.
    #[test]
    fn hostile_archives_write_nothing_outside_needs_root() {
        let marker = format!("crid-escape-{}", std::process::id());
        let abs = format!("/tmp/{marker}");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dot-dot",
                tar_of(&[(
                    &format!("../../../{marker}"),
                    tar::EntryType::Regular,
                    b"x",
                    "",
                )]),
            ),
            (
                "absolute",
                tar_of(&[(&abs, tar::EntryType::Regular, b"x", "")]),
            ),
            (
                "through a symlink",
                tar_of(&[
                    ("a", tar::EntryType::Symlink, b"", "/"),
                    (
                        &format!("a/tmp/{marker}"),
                        tar::EntryType::Regular,
                        b"x",
                        "",
                    ),
                ]),
            ),
            (
                "symlink to a relative escape",
                tar_of(&[
                    ("up", tar::EntryType::Symlink, b"", "../../.."),
                    (&format!("up/{marker}"), tar::EntryType::Regular, b"x", ""),
                ]),
            ),
            (
                "hard link outside",
                tar_of(&[("h", tar::EntryType::Link, b"", "../../../etc/passwd")]),
            ),
            (
                "hard link absolute",
                tar_of(&[("h", tar::EntryType::Link, b"", "/etc/shadow")]),
            ),
        ];
        for (what, tar) in cases {
            let (d, s) = store();
            let err = s
                .unpack(&tar[..], &diff_id(&tar), no_verify)
                .expect_err(what);
            assert!(matches!(err, LayerError::Unsafe { .. }), "{what}: {err}");
            assert!(err.to_string().contains("unsafe entry"), "{what}: {err}");
            assert!(!Path::new(&abs).exists(), "{what}: wrote {abs}");
            assert!(
                !d.path().join(&marker).exists(),
                "{what}: wrote beside the store"
            );
            assert!(leftovers(&s).is_empty(), "{what}: left {:?}", leftovers(&s));
        }
        let _ = std::fs::remove_file(&abs);
    }

    // oci-image:config.md#layer-diffid — the uncompressed tar must hash to the diff ID.
    #[test]
    fn diff_id_mismatch_leaves_nothing_needs_root() {
        let tar = tar_of(&[("f", tar::EntryType::Regular, b"data", "")]);
        let (_d, s) = store();
        let wrong = Digest::of(b"other");
        let err = s.unpack(&tar[..], &wrong, no_verify).expect_err("mismatch");
        assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
        assert!(leftovers(&s).is_empty());
        let err = s
            .unpack(&tar[..], &diff_id(&tar), |_| {
                Err(LayerError::BlobDigestMismatch {
                    expected: "e".into(),
                    actual: "a".into(),
                })
            })
            .expect_err("blob check");
        assert!(matches!(err, LayerError::BlobDigestMismatch { .. }));
        assert!(
            leftovers(&s).is_empty(),
            "a failed blob check leaves nothing"
        );
    }

    // oci-image:layer.md#distributable-format — gzip, zstd and plain tar give the same layer.
    #[test]
    fn gzip_zstd_and_plain_layers_needs_root() {
        let tar = tar_of(&[("dir/f", tar::EntryType::Regular, b"content", "")]);
        let id = diff_id(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::stream::encode_all(&tar[..], 3).expect("zstd");
        assert_eq!(Compression::sniff(&gz), Compression::Gzip);
        assert_eq!(Compression::sniff(&zst), Compression::Zstd);
        assert_eq!(Compression::sniff(&tar), Compression::None);
        for (what, blob) in [("gzip", gz), ("zstd", zst), ("plain", tar.clone())] {
            let (_d, s) = store();
            s.unpack(&blob[..], &id, no_verify).expect(what);
            assert_eq!(
                std::fs::read(s.diff_dir(&id).join("dir/f")).expect(what),
                b"content"
            );
        }
    }

    // Issue 16: a small gzip layer expanding a thousandfold is stopped at the limit, and a
    // limit shared by an image's layers counts them all.
    #[test]
    fn expansion_beyond_the_budget_is_refused_and_leaves_nothing_needs_root() {
        let zeros = vec![0u8; 8 << 20];
        let tar = tar_of(&[("big", tar::EntryType::Regular, &zeros, "")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert!(gz.len() < 64 << 10, "a bomb: {} bytes", gz.len());
        let (_d, s) = store();
        let err = s
            .unpack_within(
                &gz[..],
                &diff_id(&tar),
                &Budget::new(1 << 20, u64::MAX),
                |_| Ok(()),
            )
            .expect_err("over the layer limit");
        assert!(
            matches!(
                err,
                LayerError::TooLarge {
                    scope: "layer",
                    limit: 1048576
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("image.max_layer_unpacked_bytes"));
        assert!(leftovers(&s).is_empty());

        // Two layers of 600 KiB each fit a 1 MiB layer limit, not a 1 MiB image limit.
        let budget = Budget::new(1 << 20, 1 << 20);
        let small =
            |seed: u8| tar_of(&[("f", tar::EntryType::Regular, &vec![seed; 600 << 10], "")]);
        let (a, b) = (small(1), small(2));
        s.unpack_within(&a[..], &diff_id(&a), &budget, no_verify)
            .expect("first layer");
        let err = s
            .unpack_within(&b[..], &diff_id(&b), &budget, no_verify)
            .expect_err("over the image limit");
        assert!(
            matches!(err, LayerError::TooLarge { scope: "image", .. }),
            "{err}"
        );
        assert_eq!(leftovers(&s), [diff_id(&a).hex()]);
        // Within the budget nothing changes.
        s.unpack_within(
            &tar[..],
            &diff_id(&tar),
            &Budget::new(9 << 20, 9 << 20),
            no_verify,
        )
        .expect("within");
    }

    #[test]
    fn interrupted_unpacks_are_removed_at_open() {
        let (d, s) = store();
        std::fs::create_dir_all(s.dir().join(".tmp-abc/diff/x")).expect("mkdir");
        drop(s);
        let s = LayerStore::open(d.path().join("layers")).expect("reopen");
        assert!(leftovers(&s).is_empty());
    }
}

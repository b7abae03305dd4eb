//! Images: references, the registry client, pulls with single flight, the content store,
//! image records, lookup, removal with layer GC, and filesystem usage.
//!
//! The image ID is the config digest (`sha256:<hex>`): PullImage returns it, and it is
//! `Image.id` in ListImages and ImageStatus. Lookups accept the ID, a unique ID prefix, a
//! tag reference (normalized, short names completed) or a digest reference.
//!
//! Locking: every download runs without a lock, de-duplicated by single flight per image
//! reference and per layer. One short mutex (`commit`) orders record changes (a tag moves
//! between images, GC decides what is unreferenced); it is never held across network I/O.

pub mod error;
pub mod flight;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use error::ImageError;
use flight::Flights;
use reference::Digest;
use registry::Hosts;
pub use store::ImageRecord;
use store::Store;

use crate::config::Config;
use crate::storage::layers::LayerStore;
use crate::storage::usage::{self, Usage};

/// Who uses an image: the container module implements it. RemoveImage refuses an image
/// that any container uses (cri:ImageService.RemoveImage#in-use).
pub trait ImageUsers: Send + Sync {
    /// IDs of containers created from `image_id`.
    fn containers_using(&self, image_id: &str) -> Vec<String>;
}

/// What the container and pod services need of images: find one, read its process
/// config, know its layers' directories, and pull (the pause image). [`LocalImages`] is the
/// real one.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// The stored image `image` names (see [`ImageService::find`]).
    fn find(&self, image: &str, field: &'static str) -> Result<Option<ImageRecord>, ImageError>;
    /// The image's process config and stop signal (see [`ImageService::process_config`]).
    fn process_config(
        &self,
        record: &ImageRecord,
    ) -> Result<(crate::spec::ImageProcess, String), ImageError>;
    /// The directories of the image's unpacked layers, bottom first.
    fn layer_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, ImageError>;
    /// Pulls `image` without credentials; returns its ID.
    async fn pull(&self, image: &str) -> Result<String, ImageError>;
}

/// The daemon's image store as an [`ImageSource`].
#[derive(Debug, Clone)]
pub struct LocalImages(pub Arc<ImageService>);

#[async_trait::async_trait]
impl ImageSource for LocalImages {
    fn find(&self, image: &str, field: &'static str) -> Result<Option<ImageRecord>, ImageError> {
        self.0.find(image, field)
    }

    fn process_config(
        &self,
        record: &ImageRecord,
    ) -> Result<(crate::spec::ImageProcess, String), ImageError> {
        self.0.process_config(record)
    }

    fn layer_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        record
            .diff_ids()
            .map(|d| {
                Digest::parse(d)
                    .map(|d| self.0.layers().diff_dir(&d))
                    .map_err(|e| ImageError::Internal {
                        reference: record.id.clone(),
                        detail: format!("bad diff ID {d}: {e}"),
                    })
            })
            .collect()
    }

    async fn pull(&self, image: &str) -> Result<String, ImageError> {
        self.0
            .pull(image, Default::default())
            .await
            .map_err(|e| ImageError::Internal {
                reference: image.to_owned(),
                detail: e.to_string(),
            })
    }
}

/// No containers yet, so no image is in use.
#[derive(Debug, Default)]
pub struct NoUsers;

impl ImageUsers for NoUsers {
    fn containers_using(&self, _image_id: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The `[image]` settings the core uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registries that complete short names.
    pub short_name_search: Vec<String>,
    /// Insecure registries and mirrors.
    pub hosts: Hosts,
    /// Layers of one image downloaded at once.
    pub max_concurrent_downloads: usize,
    /// A pull with no progress for this long is cancelled.
    pub stall_timeout: Duration,
    /// Most uncompressed bytes of one layer (`u64::MAX`: no limit).
    pub max_layer_bytes: u64,
    /// Most uncompressed bytes of one image's layers (`u64::MAX`: no limit).
    pub max_image_bytes: u64,
}

impl Settings {
    /// From the daemon configuration.
    pub fn from_config(config: &Config) -> Settings {
        let i = &config.image;
        Settings {
            short_name_search: i.short_name_search.clone(),
            hosts: Hosts {
                insecure: i.insecure_registries.clone(),
                mirrors: i.mirrors.clone(),
            },
            max_concurrent_downloads: i.max_concurrent_downloads.max(1),
            stall_timeout: Duration::from_secs(i.pull_progress_timeout_secs.max(1)),
            max_layer_bytes: no_limit_if_zero(i.max_layer_unpacked_bytes),
            max_image_bytes: no_limit_if_zero(i.max_image_unpacked_bytes),
        }
    }
}

fn no_limit_if_zero(bytes: u64) -> u64 {
    if bytes == 0 { u64::MAX } else { bytes }
}

/// Bytes and inodes for ImageFsInfo, with the mount point.
#[derive(Debug, Clone)]
pub struct FsInfo {
    /// Mount point of the storage root's filesystem.
    pub mount_point: PathBuf,
    /// Image store: documents, records and unpacked layers.
    pub images: Usage,
    /// Container writable layers.
    pub containers: Usage,
}

/// The image core: one per daemon.
pub struct ImageService {
    settings: Settings,
    http: reqwest::Client,
    root: PathBuf,
    store: Arc<Store>,
    layers: Arc<LayerStore>,
    records: RwLock<BTreeMap<String, ImageRecord>>,
    commit: tokio::sync::Mutex<()>,
    image_flights: Flights<String, String>,
    layer_flights: Arc<Flights<Digest, ()>>,
    /// Diff IDs held by pulls that have not committed yet: GC keeps them.
    leases: Mutex<HashMap<Digest, usize>>,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ImageService {
    /// Opens the store under `storage.root`, removing what interrupted pulls left, and
    /// loads the image records.
    pub fn open(config: &Config) -> Result<ImageService, ImageError> {
        Self::open_at(&config.storage.root, Settings::from_config(config))
    }

    /// Opens the store under `root` with `settings`.
    pub fn open_at(root: &Path, settings: Settings) -> Result<ImageService, ImageError> {
        let store = Store::open(&root.join("image"))?;
        let layers_dir = crate::storage::layers_dir(root);
        let layers =
            LayerStore::open(&layers_dir).map_err(ImageError::store("opening", &layers_dir))?;
        let containers = crate::storage::containers_dir(root);
        crate::state::access::secure_dir(&containers, crate::state::access::Access::Private)
            .map_err(ImageError::store("creating", &containers))?;
        let http = registry::http_client(settings.stall_timeout).map_err(|detail| {
            ImageError::Internal {
                reference: String::new(),
                detail,
            }
        })?;
        let mut records = BTreeMap::new();
        for r in store.load_records()? {
            // A record whose layers are gone (a crash between GC steps) is not an image.
            let missing: Vec<_> = r
                .diff_ids()
                .filter(|d| Digest::parse(d).map_or(true, |d| !layers.exists(&d)))
                .map(str::to_owned)
                .collect();
            if missing.is_empty() {
                records.insert(r.id.clone(), r);
            } else {
                tracing::warn!(image = %r.id, ?missing, "dropping an image record whose layers are missing");
                if let Ok(id) = Digest::parse(&r.id) {
                    store.remove_record(&id)?;
                }
            }
        }
        // Layers and blobs no record references: a pull killed after unpacking some layers
        // but before its record was written. Nothing else can be using them yet.
        let used_layers: std::collections::HashSet<&str> =
            records.values().flat_map(|r| r.diff_ids()).collect();
        for d in layers
            .list()
            .map_err(ImageError::store("listing", &layers_dir))?
        {
            if !used_layers.contains(d.as_str()) {
                tracing::info!(layer = %d, "removing a layer no image references (interrupted pull)");
                layers
                    .remove(&d)
                    .map_err(ImageError::store("removing layer", layers.diff_dir(&d)))?;
            }
        }
        let used_blobs: std::collections::HashSet<&str> = records
            .values()
            .flat_map(|r| r.blobs.iter().map(String::as_str))
            .collect();
        for d in store.list_blobs()? {
            if !used_blobs.contains(d.as_str()) {
                store.remove_blob(&d)?;
            }
        }
        tracing::info!(images = records.len(), root = %root.display(), "image store opened");
        Ok(ImageService {
            settings,
            http,
            root: root.to_path_buf(),
            store: Arc::new(store),
            layers: Arc::new(layers),
            records: RwLock::new(records),
            commit: tokio::sync::Mutex::new(()),
            image_flights: Flights::default(),
            layer_flights: Arc::default(),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// What the image's config says about the process (oci-image:config.md#properties),
    /// and its stop signal (SIGTERM when it names none).
    pub fn process_config(
        &self,
        record: &ImageRecord,
    ) -> Result<(crate::spec::ImageProcess, String), ImageError> {
        let id = Digest::parse(&record.id).map_err(|e| ImageError::Internal {
            reference: record.id.clone(),
            detail: format!("image ID is not a digest: {e}"),
        })?;
        let bytes = self.store.read_blob(&id)?;
        let config: manifest::ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Internal {
                reference: record.id.clone(),
                detail: format!("stored image config does not parse: {e}"),
            })?;
        let c = config.config.unwrap_or_default();
        let process = crate::spec::ImageProcess {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
        };
        let stop = c
            .stop_signal
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "SIGTERM".to_owned());
        Ok((process, stop))
    }

    /// The layer store (containers stack its `diff` directories).
    pub fn layers(&self) -> &LayerStore {
        &self.layers
    }

    /// Every image, sorted by ID.
    pub fn list(&self) -> Vec<ImageRecord> {
        self.records
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Resolves `image` (ID, unique ID prefix, tag or digest reference) to a stored image.
    /// `Ok(None)` when no image matches; `Err` only for a malformed reference.
    pub fn find(
        &self,
        image: &str,
        field: &'static str,
    ) -> Result<Option<ImageRecord>, ImageError> {
        let records = match self.records.read() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        if let Some(r) = records.get(image) {
            return Ok(Some(r.clone()));
        }
        let hexish =
            |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let as_prefix = image.strip_prefix("sha256:").unwrap_or(image);
        match reference::resolve(image, &self.settings.short_name_search) {
            Ok(candidates) => {
                for c in &candidates {
                    let hit = records.values().find(|r| match (&c.digest, c.tagged()) {
                        (Some(d), _) => r.repo_digests.iter().any(|x| *x == c.with_digest(d)),
                        (None, Some(t)) => r.repo_tags.contains(&t),
                        (None, None) => false,
                    });
                    if let Some(r) = hit {
                        return Ok(Some(r.clone()));
                    }
                }
            }
            // `sha256:<prefix>` is no reference but can be an ID prefix.
            Err(e) if !hexish(as_prefix) => {
                return Err(ImageError::InvalidReference { field, source: e });
            }
            Err(_) => {}
        }
        if hexish(as_prefix) {
            let mut hits = records
                .values()
                .filter(|r| r.id["sha256:".len()..].starts_with(as_prefix));
            if let (Some(r), None) = (hits.next(), hits.next()) {
                return Ok(Some(r.clone()));
            }
        }
        Ok(None)
    }

    /// Removes the image `image` names, with all its tags (CRI-O's semantics: removing by
    /// one tag removes the image), then the layers and blobs no other image uses. Absent is
    /// not an error (cri:ImageService.RemoveImage#idempotent). An image a container uses is
    /// refused.
    pub async fn remove(&self, image: &str, users: &dyn ImageUsers) -> Result<(), ImageError> {
        let Some(record) = self.find(image, "image.image")? else {
            return Ok(());
        };
        let containers = users.containers_using(&record.id);
        if !containers.is_empty() {
            return Err(ImageError::InUse {
                image: record.id,
                containers,
            });
        }
        let _guard = self.commit.lock().await;
        let id = Digest::parse(&record.id).map_err(|detail| ImageError::Internal {
            reference: record.id.clone(),
            detail,
        })?;
        // The record goes first: from then on the image is gone even if GC is interrupted,
        // and the next start's consistency check drops nothing that is still referenced.
        let rid = id.clone();
        self.on_store(move |s| s.remove_record(&rid)).await?;
        crate::failpoint!("remove-image.unrecorded");
        let remaining: Vec<ImageRecord> = {
            let mut records = match self.records.write() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            records.remove(&record.id);
            records.values().cloned().collect()
        };
        self.collect_garbage(&record, &remaining).await;
        tracing::info!(image = %record.id, tags = ?record.repo_tags, "image removed");
        Ok(())
    }

    /// Drops the layers and blobs of `gone` that no remaining image and no running pull uses.
    async fn collect_garbage(&self, gone: &ImageRecord, remaining: &[ImageRecord]) {
        let used_layers: std::collections::HashSet<&str> =
            remaining.iter().flat_map(|r| r.diff_ids()).collect();
        let used_blobs: std::collections::HashSet<&str> = remaining
            .iter()
            .flat_map(|r| r.blobs.iter().map(String::as_str))
            .collect();
        let leased: std::collections::HashSet<Digest> = self
            .leases
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        let mut drop_layers = Vec::new();
        for d in gone.diff_ids() {
            if let Ok(d) = Digest::parse(d)
                && !used_layers.contains(d.as_str())
                && !leased.contains(&d)
            {
                drop_layers.push(d);
            }
        }
        let layers = self.layers.clone();
        let result = tokio::task::spawn_blocking(move || {
            for d in drop_layers {
                if let Err(e) = layers.remove(&d) {
                    tracing::error!(layer = %d, error = %e, "cannot remove an unused layer; it is retried at the next start");
                }
                crate::failpoint!("remove-image.layer-removed");
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "layer removal task failed");
        }
        let unused: Vec<Digest> = gone
            .blobs
            .iter()
            .filter(|b| !used_blobs.contains(b.as_str()))
            .filter_map(|b| Digest::parse(b).ok())
            .collect();
        let removed = self
            .on_store(move |s| {
                for d in unused {
                    if let Err(e) = s.remove_blob(&d) {
                        tracing::error!(blob = %d, error = %e, "cannot remove an unused blob");
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = removed {
            tracing::error!(error = %e, "blob removal task failed");
        }
    }

    /// Runs `f` on the content store on a blocking thread: its writes fsync, which must
    /// never stall an async worker.
    pub(crate) async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, ImageError> + Send + 'static,
    ) -> Result<T, ImageError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ImageError::Internal {
                reference: String::new(),
                detail: format!("content store task: {e}"),
            })?
    }

    /// Verbose ImageStatus info: the config and manifest digest, as JSON.
    pub fn verbose_info(&self, record: &ImageRecord) -> Result<String, ImageError> {
        let id = Digest::parse(&record.id).map_err(|detail| ImageError::Internal {
            reference: record.id.clone(),
            detail,
        })?;
        let config: serde_json::Value =
            serde_json::from_slice(&self.store.read_blob(&id)?).unwrap_or_default();
        Ok(serde_json::json!({
            "id": record.id,
            "manifestDigest": record.manifest_digest,
            "imageSpec": config,
            "layers": record.layers,
            "diffDirs": record
                .diff_ids()
                .filter_map(|d| Digest::parse(d).ok())
                .map(|d| self.layers.diff_dir(&d))
                .collect::<Vec<_>>(),
        })
        .to_string())
    }

    /// Bytes and inodes used by images and by container writable layers.
    pub async fn fs_info(&self) -> Result<FsInfo, ImageError> {
        let root = self.root.clone();
        let task = tokio::task::spawn_blocking(move || -> Result<FsInfo, ImageError> {
            let image_dir = root.join("image");
            let layers = crate::storage::layers_dir(&root);
            let containers = crate::storage::containers_dir(&root);
            let a = usage::usage(&image_dir).map_err(ImageError::store("measuring", &image_dir))?;
            let b = usage::usage(&layers).map_err(ImageError::store("measuring", &layers))?;
            let c =
                usage::usage(&containers).map_err(ImageError::store("measuring", &containers))?;
            let mount_point = usage::mount_point(&root)
                .map_err(ImageError::store("finding the mount of", &root))?;
            Ok(FsInfo {
                mount_point,
                images: Usage {
                    bytes: a.bytes + b.bytes,
                    inodes: a.inodes + b.inodes,
                },
                containers: c,
            })
        });
        task.await.map_err(|e| ImageError::Internal {
            reference: String::new(),
            detail: e.to_string(),
        })?
    }

    fn lease(&self, ids: &[Digest]) -> Lease<'_> {
        if let Ok(mut l) = self.leases.lock() {
            for d in ids {
                *l.entry(d.clone()).or_default() += 1;
            }
        }
        Lease {
            svc: self,
            ids: ids.to_vec(),
        }
    }
}

/// Keeps layers of an uncommitted pull out of GC until dropped.
struct Lease<'a> {
    svc: &'a ImageService,
    ids: Vec<Digest>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.svc.leases.lock() {
            for d in &self.ids {
                if let Some(n) = l.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        l.remove(d);
                    }
                }
            }
        }
    }
}

/// `Image.uid` / `Image.username` from the config's `User` (cri:ImageService.ImageStatus#uid):
/// a numeric user (alone or before `:group`) is a uid, anything else a name.
pub fn user_of(user: &str) -> (Option<i64>, String) {
    let u = user.split(':').next().unwrap_or_default();
    if u.is_empty() {
        return (None, String::new());
    }
    match u.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, u.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Using(Vec<String>);
    impl ImageUsers for Using {
        fn containers_using(&self, _image_id: &str) -> Vec<String> {
            self.0.clone()
        }
    }

    fn settings() -> Settings {
        Settings {
            short_name_search: vec!["docker.io".into()],
            hosts: Hosts::default(),
            max_concurrent_downloads: 2,
            stall_timeout: Duration::from_secs(5),
            max_layer_bytes: u64::MAX,
            max_image_bytes: u64::MAX,
        }
    }

    fn record(config: &[u8], tags: &[&str]) -> ImageRecord {
        ImageRecord {
            id: Digest::of(config).to_string(),
            repo_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            repo_digests: vec![format!(
                "docker.io/library/busybox@{}",
                Digest::of(b"manifest")
            )],
            manifest_digest: Digest::of(b"manifest").to_string(),
            blobs: vec![],
            layers: vec![],
            size: 1,
            user: String::new(),
        }
    }

    fn service_with(dir: &Path, records: &[ImageRecord]) -> ImageService {
        let svc = ImageService::open_at(dir, settings()).expect("open");
        for r in records {
            svc.store.write_record(r).expect("write");
        }
        drop(svc);
        ImageService::open_at(dir, settings()).expect("reopen")
    }

    #[test]
    fn lookups_by_id_prefix_tag_and_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = record(b"a", &["docker.io/library/busybox:latest"]);
        let mut b = record(b"b", &["quay.io/x/y:1"]);
        b.repo_digests = vec![format!("quay.io/x/y@{}", Digest::of(b"other"))];
        let svc = service_with(dir.path(), &[a.clone(), b.clone()]);
        let found = |s: &str| svc.find(s, "image.image").expect(s).map(|r| r.id);
        assert_eq!(found(&a.id), Some(a.id.clone()));
        assert_eq!(found(&a.id[..15]), Some(a.id.clone()), "sha256: + prefix");
        assert_eq!(found(&a.id[7..20]), Some(a.id.clone()), "bare hex prefix");
        assert_eq!(
            found("busybox"),
            Some(a.id.clone()),
            "short name, :latest implied"
        );
        assert_eq!(
            found("docker.io/library/busybox:latest"),
            Some(a.id.clone())
        );
        assert_eq!(found("quay.io/x/y:1"), Some(b.id.clone()));
        assert_eq!(
            found(&format!("busybox@{}", Digest::of(b"manifest"))),
            Some(a.id.clone())
        );
        assert_eq!(found("busybox:2"), None);
        assert!(
            svc.find("sha256:", "image.image").is_err(),
            "an empty ID is malformed"
        );
        assert!(matches!(
            svc.find("Bad Ref", "image.image"),
            Err(ImageError::InvalidReference {
                field: "image.image",
                ..
            })
        ));
    }

    // cri:ImageService.RemoveImage#in-use — refused with the container named; idempotent.
    #[tokio::test]
    async fn remove_refuses_an_image_in_use_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = record(
            b"a",
            &[
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1",
            ],
        );
        let svc = service_with(dir.path(), std::slice::from_ref(&a));
        let err = svc
            .remove("busybox:1", &Using(vec!["c0ffee".into()]))
            .await
            .expect_err("in use");
        assert!(matches!(err, ImageError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("c0ffee"), "{err}");
        assert_eq!(svc.list().len(), 1);
        svc.remove("busybox:1", &NoUsers)
            .await
            .expect("remove by one tag");
        assert!(svc.list().is_empty(), "the image goes with all its tags");
        assert_eq!(
            svc.find("busybox:latest", "image.image").expect("find"),
            None
        );
        svc.remove("busybox:1", &NoUsers)
            .await
            .expect("absent is fine");
        svc.remove(&a.id, &NoUsers)
            .await
            .expect("absent by ID is fine");
        let reopened = ImageService::open_at(dir.path(), settings()).expect("reopen");
        assert!(reopened.list().is_empty(), "the removal is durable");
    }

    // A pull killed after unpacking a layer but before writing its record leaves a
    // complete, unreferenced layer and blobs: the next start removes them.
    #[test]
    fn unreferenced_layers_and_blobs_are_removed_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = Digest::of(b"kept layer");
        let orphan = Digest::of(b"orphan layer");
        let mut a = record(b"a", &["docker.io/library/busybox:latest"]);
        a.layers.push(store::LayerRecord {
            digest: Digest::of(b"blob").to_string(),
            size: 1,
            media_type: String::new(),
            diff_id: kept.to_string(),
        });
        let svc = ImageService::open_at(dir.path(), settings()).expect("open");
        for d in [&kept, &orphan] {
            std::fs::create_dir_all(svc.layers.diff_dir(d)).expect("layer dir");
        }
        svc.store
            .put_blob(&Digest::of(b"orphan blob"), b"orphan blob")
            .expect("blob");
        svc.store.write_record(&a).expect("record");
        drop(svc);
        let svc = ImageService::open_at(dir.path(), settings()).expect("reopen");
        assert_eq!(svc.list().len(), 1);
        assert!(svc.layers.exists(&kept));
        assert!(!svc.layers.exists(&orphan));
        assert!(svc.store.list_blobs().expect("blobs").is_empty());
    }

    #[test]
    fn users_from_config() {
        assert_eq!(user_of(""), (None, String::new()));
        assert_eq!(user_of("1000"), (Some(1000), String::new()));
        assert_eq!(user_of("1000:1000"), (Some(1000), String::new()));
        assert_eq!(user_of("crid"), (None, "crid".to_owned()));
        assert_eq!(user_of("crid:grp"), (None, "crid".to_owned()));
    }
}

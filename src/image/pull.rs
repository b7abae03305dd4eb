//! PullImage: resolve the reference, fetch the manifest (through an index or manifest list
//! to the host platform), the config, and the layers in parallel; each layer is verified
//! and unpacked while it streams in, once per diff ID however many pulls want it.
//!
//! The image becomes visible only when its record is committed, after every layer is in
//! place. Everything before that is invisible and cleaned: temporary layer directories by
//! their guards (or at the next start after a kill), ingest files likewise.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;

use super::ImageService;
use super::error::ImageError;
use super::manifest::{self, Descriptor, Document, ImageConfig, Kind};
use super::reference::{self, Digest, Reference};
use super::registry::{Credentials, Session};
use super::store::{ImageRecord, LayerRecord};
use crate::storage::layers::{Budget, HashingReader, LayerError, LayerStore};

/// Largest config blob accepted (configs are a few KiB; history can make them bigger).
const CONFIG_LIMIT: usize = 16 << 20;
/// How often a running layer download logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Chunks buffered between the download and the unpacking thread.
const PIPE_DEPTH: usize = 64;

impl ImageService {
    /// Pulls `image` (cri:ImageService.PullImage) and returns its ID, the config digest.
    /// A short name tries each search registry in order while the registry says NotFound.
    pub async fn pull(
        self: &Arc<Self>,
        image: &str,
        credentials: Credentials,
    ) -> Result<String, Arc<ImageError>> {
        let candidates =
            reference::resolve(image, &self.settings.short_name_search).map_err(|source| {
                Arc::new(ImageError::InvalidReference {
                    field: "image.image",
                    source,
                })
            })?;
        let n = candidates.len();
        let mut last = None;
        for (i, r) in candidates.into_iter().enumerate() {
            let key = format!("{r}\u{0}{:?}", credentials_key(&credentials));
            let svc = self.clone();
            let creds = credentials.clone();
            let what = r.to_string();
            let started = Instant::now();
            let (out, joined) = self
                .image_flights
                .run(key, &what, move || async move {
                    svc.pull_reference(r, creds).await
                })
                .await;
            match out {
                Ok(id) => {
                    tracing::info!(image = %what, %id, joined, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
                    return Ok(id);
                }
                Err(e) if i + 1 < n && matches!(*e, ImageError::NotFound { .. }) => {
                    tracing::info!(image = %what, error = %e, "not found; trying the next search registry");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Arc::new(ImageError::Internal {
                reference: image.to_owned(),
                detail: "no candidate references".to_owned(),
            })
        }))
    }

    async fn pull_reference(
        self: Arc<Self>,
        r: Reference,
        creds: Credentials,
    ) -> Result<String, ImageError> {
        let reference = r.to_string();
        let session = Arc::new(Session::new(
            self.http.clone(),
            &self.settings.hosts,
            &r,
            creds,
            self.settings.stall_timeout,
        ));
        let bad = |what: &str, reason: String| ImageError::BadContent {
            reference: reference.clone(),
            what: what.to_owned(),
            reason,
        };

        // The top-level document: a manifest, or an index to resolve.
        let (bytes, ctype) = session.manifest(&r.manifest_ref()).await?;
        let top_digest = Digest::of(&bytes);
        if let Some(want) = &r.digest
            && *want != top_digest
        {
            return Err(ImageError::DigestMismatch {
                reference,
                what: "manifest",
                expected: want.to_string(),
                actual: top_digest.to_string(),
            });
        }
        let mut documents = vec![(top_digest.clone(), bytes.clone())];
        let (mut doc, kind) =
            Document::parse(&bytes, ctype.as_deref()).map_err(|e| bad("manifest", e))?;
        let mut manifest_digest = top_digest.clone();
        if kind == Kind::Index {
            let host = manifest::host_platform();
            let entry = manifest::select_platform(&doc.manifests, &host).ok_or_else(|| {
                let available: Vec<String> = doc
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| {
                        format!(
                            "{}/{}{}",
                            p.os,
                            p.architecture,
                            p.variant
                                .as_ref()
                                .map(|v| format!("/{v}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                ImageError::NotFound {
                    reference: reference.clone(),
                    detail: format!(
                        "the index has no manifest for {}/{} (it has: {})",
                        host.os,
                        host.architecture,
                        available.join(", ")
                    ),
                }
            })?;
            let want = Digest::parse(&entry.digest).map_err(|e| bad("index entry", e))?;
            let (bytes, ctype) = session.manifest(want.as_str()).await?;
            let got = Digest::of(&bytes);
            if got != want {
                return Err(ImageError::DigestMismatch {
                    reference,
                    what: "manifest",
                    expected: want.to_string(),
                    actual: got.to_string(),
                });
            }
            let (inner, inner_kind) = Document::parse(&bytes, ctype.as_deref())
                .map_err(|e| bad("platform manifest", e))?;
            if inner_kind != Kind::Manifest {
                return Err(bad(
                    "platform manifest",
                    "an index entry points at another index".to_owned(),
                ));
            }
            documents.push((got.clone(), bytes));
            doc = inner;
            manifest_digest = got;
        }

        // The config: the image ID, and the diff IDs the layers must hash to.
        let config_desc = doc
            .config
            .clone()
            .ok_or_else(|| bad("manifest", "no config".to_owned()))?;
        let id = Digest::parse(&config_desc.digest).map_err(|e| bad("config descriptor", e))?;
        let config_bytes = session.small_blob(id.as_str(), CONFIG_LIMIT).await?;
        let got = Digest::of(&config_bytes);
        if got != id {
            return Err(ImageError::DigestMismatch {
                reference,
                what: "config",
                expected: id.to_string(),
                actual: got.to_string(),
            });
        }
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad("image config", e.to_string()))?;
        if config.rootfs.diff_ids.len() != doc.layers.len() {
            return Err(bad(
                "image config",
                format!(
                    "{} diff IDs for {} layers",
                    config.rootfs.diff_ids.len(),
                    doc.layers.len()
                ),
            ));
        }
        documents.push((id.clone(), config_bytes));
        let mut layers = Vec::with_capacity(doc.layers.len());
        for (desc, diff) in doc.layers.iter().zip(&config.rootfs.diff_ids) {
            let diff_id =
                Digest::parse(diff).map_err(|e| bad("image config rootfs.diff_ids", e))?;
            Digest::parse(&desc.digest).map_err(|e| bad("layer descriptor", e))?;
            layers.push((desc.clone(), diff_id));
        }

        // Layers, in parallel up to the limit; leased so a concurrent RemoveImage keeps them.
        let diff_ids: Vec<Digest> = layers.iter().map(|(_, d)| d.clone()).collect();
        let _lease = self.lease(&diff_ids);
        let total: u64 = layers.iter().map(|(d, _)| d.size).sum();
        tracing::info!(image = %reference, id = %id, layers = layers.len(), bytes = total, "pulling");
        // Every layer task runs to its end, even after one fails, so that what the others
        // unpacked can be discarded below rather than left behind.
        let budget = Budget::new(self.settings.max_layer_bytes, self.settings.max_image_bytes);
        let results: Vec<Result<(), ImageError>> =
            futures_util::stream::iter(layers.iter().cloned().map(|(desc, diff_id)| {
                let svc = self.clone();
                let session = session.clone();
                let budget = budget.clone();
                async move { svc.ensure_layer(session, desc, diff_id, budget).await }
            }))
            .buffer_unordered(self.settings.max_concurrent_downloads)
            .collect()
            .await;
        if let Some(first) = results.into_iter().find_map(Result::err) {
            self.discard_unreferenced(&diff_ids).await;
            return Err(first);
        }

        // Documents, then the record: the image is visible from the record's rename on.
        let docs = documents.clone();
        self.on_store(move |s| {
            for (d, b) in &docs {
                s.put_blob(d, b)?;
                crate::failpoint!("pull.blob-written");
            }
            Ok(())
        })
        .await
        .map_err(|e| with_reference(e, &reference))?;
        let record = ImageRecord {
            id: id.to_string(),
            repo_tags: r
                .digest
                .is_none()
                .then(|| r.tagged())
                .flatten()
                .into_iter()
                .collect(),
            repo_digests: vec![r.with_digest(&top_digest)],
            manifest_digest: manifest_digest.to_string(),
            blobs: documents.iter().map(|(d, _)| d.to_string()).collect(),
            layers: layers
                .iter()
                .map(|(d, diff)| LayerRecord {
                    digest: d.digest.clone(),
                    size: d.size,
                    media_type: d.media_type.clone(),
                    diff_id: diff.to_string(),
                })
                .collect(),
            size: config_desc.size + total,
            user: config.config.and_then(|c| c.user).unwrap_or_default(),
        };
        self.commit_record(record).await?;
        crate::failpoint!("pull.image-recorded");
        Ok(id.to_string())
    }

    /// After a failed pull: removes the layers it unpacked that no image and no other
    /// running pull uses, so a failure leaves nothing behind.
    async fn discard_unreferenced(&self, ids: &[Digest]) {
        let _guard = self.commit.lock().await;
        let used: std::collections::HashSet<String> = self
            .list()
            .iter()
            .flat_map(|r| r.diff_ids().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let leases = self.leases.lock().map(|l| l.clone()).unwrap_or_default();
        // Our own lease counts 1; more means another pull is using the layer.
        let discard: Vec<Digest> = ids
            .iter()
            .filter(|d| !used.contains(d.as_str()) && leases.get(*d).copied().unwrap_or(0) <= 1)
            .cloned()
            .collect();
        let layers = self.layers.clone();
        // Removal fsyncs the layer directory: off the async workers.
        let done = tokio::task::spawn_blocking(move || {
            for d in discard {
                if let Err(e) = layers.remove(&d) {
                    tracing::error!(layer = %d, error = %e, "cannot discard the layer of a failed pull");
                } else {
                    tracing::debug!(layer = %d, "discarded a layer of a failed pull");
                }
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "layer discard task failed");
        }
    }

    /// Merges `new` into the records: tags and digests join an existing record of the same
    /// ID, and a tag now naming this image is taken off whichever image had it.
    async fn commit_record(&self, new: ImageRecord) -> Result<(), ImageError> {
        let _guard = self.commit.lock().await;
        let snapshot: Vec<ImageRecord> = self.list();
        let mut changed = Vec::new();
        for mut other in snapshot.into_iter().filter(|o| o.id != new.id) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !new.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                changed.push(other);
            }
        }
        let mut merged = match self
            .records
            .read()
            .ok()
            .and_then(|r| r.get(&new.id).cloned())
        {
            Some(mut old) => {
                for t in new.repo_tags {
                    if !old.repo_tags.contains(&t) {
                        old.repo_tags.push(t);
                    }
                }
                for d in new.repo_digests {
                    if !old.repo_digests.contains(&d) {
                        old.repo_digests.push(d);
                    }
                }
                for b in new.blobs {
                    if !old.blobs.contains(&b) {
                        old.blobs.push(b);
                    }
                }
                old
            }
            None => new,
        };
        merged.repo_tags.sort();
        merged.repo_digests.sort();
        for o in &changed {
            tracing::info!(image = %o.id, tags = ?o.repo_tags, "a tag moved to another image");
        }
        let (m, c) = (merged.clone(), changed.clone());
        self.on_store(move |s| {
            s.write_record(&m)?;
            for o in &c {
                s.write_record(o)?;
            }
            Ok(())
        })
        .await?;
        let mut records = match self.records.write() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        for o in changed {
            records.insert(o.id.clone(), o);
        }
        records.insert(merged.id.clone(), merged);
        Ok(())
    }

    /// Makes sure layer `diff_id` is unpacked: present, or downloaded once however many
    /// pulls ask for it at the same time.
    async fn ensure_layer(
        self: Arc<Self>,
        session: Arc<Session>,
        desc: Descriptor,
        diff_id: Digest,
        budget: Budget,
    ) -> Result<(), ImageError> {
        if self.layers.exists(&diff_id) {
            tracing::debug!(layer = %desc.digest, "layer already present");
            return Ok(());
        }
        let layers = self.layers.clone();
        let what = format!("{} layer {}", session.reference(), desc.digest);
        let (out, joined) = self
            .layer_flights
            .run(diff_id.clone(), &what, move || {
                fetch_layer(session, layers, desc, diff_id, budget)
            })
            .await;
        if joined {
            tracing::debug!(layer = %what, "joined a download already in flight");
        }
        out.map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(shared) => ImageError::Internal {
                reference: String::new(),
                detail: shared.to_string(),
            }
            .with_message_of(&shared),
        })
    }
}

impl ImageError {
    /// A copy of a shared error's class and message, for the second waiter of a flight.
    fn with_message_of(self, shared: &ImageError) -> ImageError {
        let reference = String::new();
        let detail = shared.to_string();
        match shared {
            ImageError::NotFound { .. } => ImageError::NotFound { reference, detail },
            ImageError::Unauthenticated { .. } => ImageError::Unauthenticated { reference, detail },
            ImageError::PermissionDenied { .. } => {
                ImageError::PermissionDenied { reference, detail }
            }
            ImageError::Unavailable { .. } | ImageError::Stalled { .. } => {
                ImageError::Unavailable { reference, detail }
            }
            _ => self,
        }
    }
}

/// Puts the reference into an error raised below the session (the store).
fn with_reference(e: ImageError, reference: &str) -> ImageError {
    match e {
        ImageError::DigestMismatch {
            what,
            expected,
            actual,
            ..
        } => ImageError::DigestMismatch {
            reference: reference.to_owned(),
            what,
            expected,
            actual,
        },
        other => other,
    }
}

/// Identifies credentials in a flight key without keeping the secret in memory twice.
fn credentials_key(c: &Credentials) -> String {
    match c {
        Credentials::None => String::new(),
        other => Digest::of(format!("{other:?}{}", secret_of(other)).as_bytes()).to_string(),
    }
}

fn secret_of(c: &Credentials) -> String {
    match c {
        Credentials::None => String::new(),
        Credentials::Basic { username, password } => format!("{username}:{password}"),
        Credentials::IdentityToken(t) | Credentials::RegistryToken(t) => t.clone(),
    }
}

/// Streams one layer blob from the registry into the unpacker on a blocking thread; the
/// blob digest and size are checked before the unpacked layer is renamed into place.
async fn fetch_layer(
    session: Arc<Session>,
    layers: Arc<LayerStore>,
    desc: Descriptor,
    diff_id: Digest,
    budget: Budget,
) -> Result<(), ImageError> {
    let reference = session.reference().to_owned();
    let blob = Digest::parse(&desc.digest).map_err(|reason| ImageError::BadContent {
        reference: reference.clone(),
        what: "layer descriptor".to_owned(),
        reason,
    })?;
    let started = Instant::now();
    let mut resp = session.blob(blob.as_str()).await?;
    let url = resp.url().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(PIPE_DEPTH);
    let expected = (blob.clone(), desc.size);
    let worker = tokio::task::spawn_blocking(move || {
        let mut hashing = HashingReader::new(ChannelReader {
            rx,
            cur: Bytes::new(),
        });
        let verify = |r: &mut &mut HashingReader<ChannelReader>| -> Result<(), LayerError> {
            io::copy(r, &mut io::sink()).map_err(LayerError::Archive)?;
            check_blob(&**r, &expected)
        };
        let result = layers.unpack_within(&mut hashing, &diff_id, &budget, verify);
        if matches!(result, Err(LayerError::TooLarge { .. })) {
            // The blob is fine as far as anyone knows; reading the rest would only waste
            // the time of a bomb's whole expansion.
            return result;
        }
        if result.is_err() {
            // Read to the end, so a corrupted blob is reported as such rather than as
            // whatever the decompressor tripped over first.
            let _ = io::copy(&mut hashing, &mut io::sink());
            check_blob(&hashing, &expected)?;
        }
        result
    });

    let mut received: u64 = 0;
    let mut last_log = Instant::now();
    let mut failure = None;
    loop {
        match session.next_chunk(&mut resp, &url).await {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > desc.size {
                    failure = Some(ImageError::DigestMismatch {
                        reference: reference.clone(),
                        what: "blob",
                        expected: format!("{} ({} bytes)", desc.digest, desc.size),
                        actual: format!("unknown: the download is longer than {} bytes", desc.size),
                    });
                    let _ = tx
                        .send(Err(io::Error::other("blob larger than its descriptor")))
                        .await;
                    break;
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // The unpacker stopped; its error says why.
                }
                if last_log.elapsed() >= PROGRESS_EVERY {
                    last_log = Instant::now();
                    tracing::info!(image = %reference, layer = %desc.digest, received, total = desc.size, "pull progress");
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let result = worker.await.map_err(|e| ImageError::Internal {
        reference: reference.clone(),
        detail: format!("unpack task: {e}"),
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    match result {
        Ok(stats) => {
            let secs = started.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(
                image = %reference,
                layer = %desc.digest,
                bytes = received,
                tar_bytes = stats.tar_bytes,
                entries = stats.entries,
                mib_per_s = format!("{:.1}", received as f64 / secs / 1048576.0),
                "layer unpacked"
            );
            Ok(())
        }
        Err(LayerError::BlobDigestMismatch { expected, actual }) => {
            Err(ImageError::DigestMismatch {
                reference,
                what: "blob",
                expected,
                actual,
            })
        }
        Err(source) => Err(ImageError::Unpack {
            reference,
            digest: desc.digest,
            source,
        }),
    }
}

fn check_blob<R: Read>(
    r: &HashingReader<R>,
    (digest, size): &(Digest, u64),
) -> Result<(), LayerError> {
    let actual = r.digest();
    if actual != *digest || r.bytes_read() != *size {
        return Err(LayerError::BlobDigestMismatch {
            expected: format!("{digest} ({size} bytes)"),
            actual: format!("{actual} ({} bytes)", r.bytes_read()),
        });
    }
    Ok(())
}

/// The blocking side of the download pipe.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

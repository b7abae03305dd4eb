//! The record store: where pod and container records persist. Async, so that an fsync
//! never runs on an async worker: the disk store writes on a blocking thread, and a stalled
//! disk stalls only the object whose record is being written (its services wait for that
//! write; nobody else does).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::Layout;

/// Which records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Pod sandboxes.
    Pod,
    /// Containers.
    Container,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Pod => "pod sandbox",
            RecordKind::Container => "container",
        })
    }
}

/// One stored record as read back at start: its ID and bytes, or why they cannot be read.
pub type Loaded = (String, io::Result<Vec<u8>>);

/// Durable storage of records. `put` returns once the record would survive a power cut.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync + fmt::Debug {
    /// Replaces the record `id` with `bytes`, atomically and durably.
    async fn put(&self, kind: RecordKind, id: &str, bytes: Vec<u8>) -> io::Result<()>;
    /// Removes the record `id`; absent is fine.
    async fn remove(&self, kind: RecordKind, id: &str) -> io::Result<()>;
    /// Every record of `kind` (at start, before anything is served).
    fn load(&self, kind: RecordKind) -> io::Result<Vec<Loaded>>;
    /// Moves an unreadable record out of the way, keeping it for a human to look at.
    fn set_aside(&self, kind: RecordKind, id: &str);
}

/// Records as JSON files under `<root>/state`, written with [`super::write_atomic`] (two
/// fsyncs) on a blocking thread.
#[derive(Debug, Clone)]
pub struct DiskRecords {
    layout: Layout,
}

impl DiskRecords {
    /// The store of `layout`.
    pub fn new(layout: Layout) -> Self {
        DiskRecords { layout }
    }

    fn path(&self, kind: RecordKind, id: &str) -> PathBuf {
        match kind {
            RecordKind::Pod => self.layout.pod_record(id),
            RecordKind::Container => self.layout.container_record(id),
        }
    }

    fn dir(&self, kind: RecordKind) -> PathBuf {
        match kind {
            RecordKind::Pod => self.layout.pod_records(),
            RecordKind::Container => self.layout.container_records(),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("record store thread: {e}")))?
}

#[async_trait::async_trait]
impl RecordStore for DiskRecords {
    async fn put(&self, kind: RecordKind, id: &str, bytes: Vec<u8>) -> io::Result<()> {
        let path = self.path(kind, id);
        blocking(move || super::write_atomic(&path, &bytes)).await
    }

    async fn remove(&self, kind: RecordKind, id: &str) -> io::Result<()> {
        let path = self.path(kind, id);
        blocking(move || super::remove_file(&path)).await
    }

    fn load(&self, kind: RecordKind) -> io::Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir(kind))? {
            let path = entry?.path();
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            // Temp files of a write a crash interrupted start with `.tmp`: the record they
            // were to replace is intact, so they are only litter. Loading happens at start,
            // before any write, so none is in use.
            if name.starts_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue;
            };
            out.push((id.to_owned(), std::fs::read(&path)));
        }
        Ok(out)
    }

    fn set_aside(&self, kind: RecordKind, id: &str) {
        let path = self.path(kind, id);
        let _ = std::fs::rename(&path, path.with_extension("corrupt"));
    }
}

/// An in-memory store for unit tests: writes can be held (a stalled disk) or made to fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryRecords {
    records: std::sync::Mutex<std::collections::BTreeMap<(RecordKind, String), Vec<u8>>>,
    gate: std::sync::Arc<tokio::sync::RwLock<()>>,
    failing: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl MemoryRecords {
    /// Holds every write until the guard is dropped.
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }

    /// Makes writes fail (a full or broken disk) or succeed again.
    pub fn fail_writes(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The IDs of the stored records of `kind`.
    pub fn ids(&self, kind: RecordKind) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// A stored record, decoded.
    pub fn get<T: serde::de::DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Option<T> {
        self.lock()
            .get(&(kind, id.to_owned()))
            .and_then(|b| serde_json::from_slice(b).ok())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(RecordKind, String), Vec<u8>>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[async_trait::async_trait]
impl RecordStore for MemoryRecords {
    async fn put(&self, kind: RecordKind, id: &str, bytes: Vec<u8>) -> io::Result<()> {
        let _pass = self.gate.read().await;
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure (disk full)"));
        }
        self.lock().insert((kind, id.to_owned()), bytes);
        Ok(())
    }

    async fn remove(&self, kind: RecordKind, id: &str) -> io::Result<()> {
        let _pass = self.gate.read().await;
        self.lock().remove(&(kind, id.to_owned()));
        Ok(())
    }

    fn load(&self, kind: RecordKind) -> io::Result<Vec<Loaded>> {
        Ok(self
            .lock()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, id), b)| (id.clone(), Ok(b.clone())))
            .collect())
    }

    fn set_aside(&self, kind: RecordKind, id: &str) {
        self.lock().remove(&(kind, id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn disk_records_round_trip_and_remove_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(&dir.path().join("root"), &dir.path().join("run"));
        layout.create().expect("create");
        let store = DiskRecords::new(layout.clone());
        store
            .put(RecordKind::Pod, "p1", b"{}".to_vec())
            .await
            .expect("put");
        std::fs::write(layout.pod_records().join(".tmp123"), b"x").expect("temp");
        let loaded = store.load(RecordKind::Pod).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, "p1");
        assert!(
            !layout.pod_records().join(".tmp123").exists(),
            "an interrupted write's temp file is removed at load"
        );
        store.set_aside(RecordKind::Pod, "p1");
        assert!(store.load(RecordKind::Pod).expect("load").is_empty());
        assert!(layout.pod_records().join("p1.corrupt").exists());
        store
            .remove(RecordKind::Pod, "p1")
            .await
            .expect("absent is fine");
    }
}

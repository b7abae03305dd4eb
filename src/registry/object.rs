//! One pod or container in memory: its record, its operation lock, and change notification.
//!
//! Two locks, on purpose. `op` serializes lifecycle operations on this object only and may
//! be held across a runtime call that takes long; `record` is held for microseconds, so
//! List and Status never wait behind a stuck operation, and the exit watcher can record an
//! exit while StopContainer holds `op` waiting for it. Persistence has a third, async lock
//! of its own: a write waiting on a slow disk holds up only this object's writers.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::{OwnedMutexGuard, watch};

use crate::state::store::{RecordKind, RecordStore};

/// A record could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {id}: writing its record: {source}")]
pub struct PersistError {
    /// Pod or container.
    pub kind: RecordKind,
    /// The object.
    pub id: String,
    /// The store's error.
    pub source: io::Error,
}

/// A persisted record with its locks.
#[derive(Debug)]
pub struct Object<R> {
    id: String,
    kind: RecordKind,
    store: Arc<dyn RecordStore>,
    op: Arc<tokio::sync::Mutex<()>>,
    record: RwLock<R>,
    /// Orders record writes; each writes the latest state, so the file ends with it.
    persist: tokio::sync::Mutex<()>,
    /// Set once the record is removed: a late background write must not bring it back.
    forgotten: AtomicBool,
    changed: watch::Sender<u64>,
}

impl<R: Clone + Serialize + Send + Sync + 'static> Object<R> {
    /// An object for `record`, persisted in `store`.
    pub fn new(id: &str, kind: RecordKind, store: Arc<dyn RecordStore>, record: R) -> Arc<Self> {
        Arc::new(Object {
            id: id.to_owned(),
            kind,
            store,
            op: Arc::default(),
            record: RwLock::new(record),
            persist: tokio::sync::Mutex::new(()),
            forgotten: AtomicBool::new(false),
            changed: watch::channel(0).0,
        })
    }

    /// The object's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A copy of the record.
    pub fn get(&self) -> R {
        self.read(R::clone)
    }

    /// Reads the record under its short lock.
    pub fn read<T>(&self, f: impl FnOnce(&R) -> T) -> T {
        let r = self.record.read().unwrap_or_else(|p| p.into_inner());
        f(&r)
    }

    fn apply<T>(&self, f: impl FnOnce(&mut R) -> T) -> T {
        let mut r = self.record.write().unwrap_or_else(|p| p.into_inner());
        f(&mut r)
    }

    /// Changes the record and persists it; returns once the store has it. Waiters are
    /// woken after the write.
    pub async fn update<T>(&self, f: impl FnOnce(&mut R) -> T) -> Result<T, PersistError> {
        let _order = self.persist.lock().await;
        let out = self.apply(f);
        self.write_latest().await?;
        self.changed.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Changes the record now and persists it in the background: for facts that are
    /// recovered anyway should the write be lost (a container's exit, whose exit file stays
    /// until the container is removed). Waiters are woken at once.
    pub fn update_soon<T>(self: &Arc<Self>, f: impl FnOnce(&mut R) -> T) -> T {
        let out = self.apply(f);
        self.changed.send_modify(|n| *n += 1);
        let this = self.clone();
        let persist = async move {
            let _order = this.persist.lock().await;
            if let Err(e) = this.write_latest().await {
                tracing::error!(id = %this.id, "cannot persist the record: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(persist);
            }
            Err(_) => tracing::error!(id = %self.id, "no runtime to persist the record on"),
        }
        out
    }

    async fn write_latest(&self) -> Result<(), PersistError> {
        if self.forgotten.load(Ordering::SeqCst) {
            return Ok(());
        }
        let bytes = self
            .read(serde_json::to_vec)
            .map_err(|e| self.err(e.into()))?;
        self.store
            .put(self.kind, &self.id, bytes)
            .await
            .map_err(|e| self.err(e))
    }

    fn err(&self, source: io::Error) -> PersistError {
        PersistError {
            kind: self.kind,
            id: self.id.clone(),
            source,
        }
    }

    /// Writes the record as it is.
    pub async fn persist(&self) -> Result<(), PersistError> {
        self.update(|_| ()).await
    }

    /// Removes the record from the store; no write after this brings it back.
    pub async fn forget(&self) -> Result<(), PersistError> {
        let _order = self.persist.lock().await;
        self.forgotten.store(true, Ordering::SeqCst);
        self.store
            .remove(self.kind, &self.id)
            .await
            .map_err(|e| self.err(e))
    }

    /// Takes the operation lock.
    pub async fn lock(&self) -> OwnedMutexGuard<()> {
        self.op.clone().lock_owned().await
    }

    /// Notified on every update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

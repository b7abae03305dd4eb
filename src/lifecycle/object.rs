//! One pod or container in memory: its record, its operation lock, and change notification.
//!
//! Two locks, on purpose. `op` serializes lifecycle operations on this object only and may
//! be held across a runtime call that takes long; `record` is held for microseconds, so
//! List and Status never wait behind a stuck operation, and the exit watcher can record an
//! exit while StopContainer holds `op` waiting for it.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::{OwnedMutexGuard, watch};

/// A persisted record with its locks.
#[derive(Debug)]
pub struct Object<R> {
    id: String,
    path: PathBuf,
    op: Arc<tokio::sync::Mutex<()>>,
    record: RwLock<R>,
    /// Orders record writes so the file always holds the latest state.
    persist: Mutex<()>,
    changed: watch::Sender<u64>,
}

impl<R: Clone + Serialize> Object<R> {
    /// An object for `record`, persisted at `path`.
    pub fn new(id: &str, path: PathBuf, record: R) -> Arc<Self> {
        Arc::new(Object {
            id: id.to_owned(),
            path,
            op: Arc::default(),
            record: RwLock::new(record),
            persist: Mutex::new(()),
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

    /// Changes the record and persists it atomically; waiters are woken.
    pub fn update<T>(&self, f: impl FnOnce(&mut R) -> T) -> io::Result<T> {
        let _order = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        let (out, snapshot) = {
            let mut r = self.record.write().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut r);
            (out, r.clone())
        };
        crate::state::write_json(&self.path, &snapshot)?;
        self.changed.send_modify(|n| *n += 1);
        Ok(out)
    }

    /// Writes the record as it is.
    pub fn persist(&self) -> io::Result<()> {
        self.update(|_| ())
    }

    /// Removes the record's file.
    pub fn forget(&self) -> io::Result<()> {
        let _order = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        crate::state::remove_file(&self.path)
    }

    /// Takes the operation lock.
    pub async fn lock(&self) -> OwnedMutexGuard<()> {
        self.op.clone().lock_owned().await
    }

    /// The operation lock, if it is free now.
    pub fn try_lock(&self) -> Option<OwnedMutexGuard<()>> {
        self.op.clone().try_lock_owned().ok()
    }

    /// Notified on every update.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

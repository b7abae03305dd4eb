//! Ordering and completion of CNI operations: one lock per container id, and a task per
//! operation so that a caller going away never leaves a plugin chain half-run.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, Weak};

use super::error::CniError;

/// One async lock per container id, dropped when nobody holds or waits for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locks(Arc<std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

impl Locks {
    /// The lock of `container_id`, shared with everyone who holds or awaits it.
    pub(crate) fn get(&self, container_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = map.get(container_id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(container_id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

/// Runs `f` in a task of its own and waits for it: a CNI operation is never left half-done
/// because its caller went away. A panic in it is propagated.
pub(crate) async fn to_completion<T: Send + 'static>(
    f: impl Future<Output = Result<T, CniError>> + Send + 'static,
) -> Result<T, CniError> {
    match tokio::spawn(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(CniError::Aborted),
    }
}

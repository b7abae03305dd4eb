//! Single flight: concurrent requests for the same key share one run of the work.
//!
//! The work is spawned as its own task, so it finishes (and cleans up after itself) even
//! when every caller has gone away: a cancelled PullImage never leaves half a download.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

use super::error::ImageError;

/// The shared outcome of one flight.
pub type Outcome<V> = Result<V, Arc<ImageError>>;
type Flight<V> = Shared<BoxFuture<'static, Outcome<V>>>;

/// In-flight work by key. The lock guards only the map, never the work.
pub struct Flights<K, V: Clone> {
    map: Mutex<HashMap<K, Flight<V>>>,
}

impl<K, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static, V: Clone + Send + Sync + 'static> Flights<K, V> {
    /// Joins the flight of `key`, or starts `work` as one. `joined` is true for a follower.
    pub async fn run<F>(&self, key: K, what: &str, work: impl FnOnce() -> F) -> (Outcome<V>, bool)
    where
        F: Future<Output = Result<V, ImageError>> + Send + 'static,
    {
        let (flight, joined) = {
            let mut map = match self.map.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            match map.get(&key) {
                // A finished flight whose callers all went away is stale: start afresh.
                Some(f) if f.peek().is_none() => (f.clone(), true),
                _ => {
                    let handle = tokio::spawn(work());
                    let what = what.to_owned();
                    let f = async move {
                        match handle.await {
                            Ok(r) => r.map_err(Arc::new),
                            Err(e) => Err(Arc::new(ImageError::Internal {
                                reference: what,
                                detail: e.to_string(),
                            })),
                        }
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), f.clone());
                    (f, false)
                }
            }
        };
        let out = flight.clone().await;
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Only the flight we joined: a new one may have started under the same key since.
        if map.get(&key).is_some_and(|f| f.ptr_eq(&flight)) {
            map.remove(&key);
        }
        (out, joined)
    }

    /// Keys in flight now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<String, u32>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (flights, runs) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k".to_owned(), "k", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        let mut joined = 0;
        for t in tasks {
            let (out, j) = t.await.expect("join");
            assert_eq!(out.expect("ok"), 7);
            joined += usize::from(j);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 7);
        assert!(flights.is_empty(), "finished flights are forgotten");
    }

    #[tokio::test]
    async fn work_finishes_when_the_caller_goes_away() {
        let flights: Arc<Flights<String, ()>> = Arc::default();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let f = flights.clone();
        let caller = tokio::spawn(async move {
            f.run("k".to_owned(), "k", || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}

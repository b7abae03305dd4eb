//! The shared registry of pods and containers, and their events. It sits below both
//! services: the pod service and the container service find objects here, reserve names
//! here, and publish events here; neither reaches into the other's internals.
//!
//! There is no global lock: the maps are held only to look up, insert or remove, and each
//! object has its own operation lock (see [`Object`]).

pub mod object;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use object::{Object, PersistError};

use crate::state::store::{RecordKind, RecordStore};
use crate::state::{ContainerRecord, ContainerState, PodRecord, PodState};

/// A container lifecycle event (cri:RuntimeService.GetContainerEvents), with the pod's and
/// its containers' state as they were when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The container.
    pub container_id: String,
    /// Its pod.
    pub pod_id: String,
    /// What happened.
    pub kind: EventKind,
    /// When, ns since the epoch.
    pub at_ns: i64,
    /// The pod then (absent once removed, or while it is being created).
    pub pod: Option<PodRecord>,
    /// The pod's containers then.
    pub containers: Vec<ContainerRecord>,
}

/// The CRI's container event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// CreateContainer finished.
    Created,
    /// StartContainer finished.
    Started,
    /// The container exited.
    Stopped,
    /// RemoveContainer finished.
    Deleted,
}

/// Events buffered per subscriber before a slow one starts missing some.
const EVENT_BUFFER: usize = 1024;

/// Pods and containers in memory.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn RecordStore>,
    pods: RwLock<HashMap<String, Arc<Object<PodRecord>>>>,
    containers: RwLock<HashMap<String, Arc<Object<ContainerRecord>>>>,
    events: tokio::sync::broadcast::Sender<Event>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// An empty registry whose objects persist in `store`.
    pub fn new(store: Arc<dyn RecordStore>) -> Arc<Registry> {
        Arc::new(Registry {
            store,
            pods: RwLock::default(),
            containers: RwLock::default(),
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
        })
    }

    /// The record store.
    pub fn store(&self) -> &Arc<dyn RecordStore> {
        &self.store
    }

    /// A pod by ID.
    pub fn pod(&self, id: &str) -> Option<Arc<Object<PodRecord>>> {
        read(&self.pods).get(id).cloned()
    }

    /// A container by ID.
    pub fn container(&self, id: &str) -> Option<Arc<Object<ContainerRecord>>> {
        read(&self.containers).get(id).cloned()
    }

    /// Every pod.
    pub fn pods(&self) -> Vec<Arc<Object<PodRecord>>> {
        read(&self.pods).values().cloned().collect()
    }

    /// Every container, or those of one pod.
    pub fn containers(&self, pod: Option<&str>) -> Vec<Arc<Object<ContainerRecord>>> {
        read(&self.containers)
            .values()
            .filter(|c| pod.is_none_or(|p| c.read(|r| r.pod_id == p)))
            .cloned()
            .collect()
    }

    /// Adds `record` unless another pod reserves its name; the other's ID otherwise.
    pub fn reserve_pod(&self, record: PodRecord) -> Result<Arc<Object<PodRecord>>, String> {
        let mut pods = write(&self.pods);
        let name = record.reserved_name();
        if let Some(other) = pods
            .values()
            .find(|p| p.read(|r| r.reserved_name() == name))
        {
            return Err(other.id().to_owned());
        }
        let pod = Object::new(
            &record.id.clone(),
            RecordKind::Pod,
            self.store.clone(),
            record,
        );
        pods.insert(pod.id().to_owned(), pod.clone());
        Ok(pod)
    }

    /// Adds `record` unless another container of its pod reserves its name; the other's ID
    /// otherwise.
    pub fn reserve_container(
        &self,
        record: ContainerRecord,
    ) -> Result<Arc<Object<ContainerRecord>>, String> {
        let mut all = write(&self.containers);
        let name = record.reserved_name();
        if let Some(other) = all
            .values()
            .find(|c| c.read(|r| r.pod_id == record.pod_id && r.reserved_name() == name))
        {
            return Err(other.id().to_owned());
        }
        let c = Object::new(
            &record.id.clone(),
            RecordKind::Container,
            self.store.clone(),
            record,
        );
        all.insert(c.id().to_owned(), c.clone());
        Ok(c)
    }

    /// Adds a recovered pod as it is.
    pub fn adopt_pod(&self, record: PodRecord) -> Arc<Object<PodRecord>> {
        let pod = Object::new(
            &record.id.clone(),
            RecordKind::Pod,
            self.store.clone(),
            record,
        );
        write(&self.pods).insert(pod.id().to_owned(), pod.clone());
        pod
    }

    /// Adds a recovered container as it is.
    pub fn adopt_container(&self, record: ContainerRecord) -> Arc<Object<ContainerRecord>> {
        let c = Object::new(
            &record.id.clone(),
            RecordKind::Container,
            self.store.clone(),
            record,
        );
        write(&self.containers).insert(c.id().to_owned(), c.clone());
        c
    }

    /// Drops a pod from memory (its record is the caller's business).
    pub fn drop_pod(&self, id: &str) {
        write(&self.pods).remove(id);
    }

    /// Drops a container from memory.
    pub fn drop_container(&self, id: &str) {
        write(&self.containers).remove(id);
    }

    /// Every pod past creation, oldest first.
    pub fn pod_records(&self) -> Vec<PodRecord> {
        let mut v: Vec<PodRecord> = self
            .pods()
            .iter()
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating)
            .collect();
        v.sort_by_key(|a| a.created_at_ns);
        v
    }

    /// Every container past creation (of one pod, or all), oldest first.
    pub fn container_records(&self, pod: Option<&str>) -> Vec<ContainerRecord> {
        let mut v: Vec<ContainerRecord> = self
            .containers(pod)
            .iter()
            .map(|c| c.get())
            .filter(|r| r.state != ContainerState::Creating)
            .collect();
        v.sort_by_key(|a| a.created_at_ns);
        v
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes an event with the pod's state now (nobody listening is fine).
    pub fn emit(&self, container_id: &str, pod_id: &str, kind: EventKind) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let pod = self
            .pod(pod_id)
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating);
        let _ = self.events.send(Event {
            container_id: container_id.to_owned(),
            pod_id: pod_id.to_owned(),
            kind,
            at_ns: crate::state::now_ns(),
            pod,
            containers: self.container_records(Some(pod_id)),
        });
    }
}

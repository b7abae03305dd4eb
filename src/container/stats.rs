//! ContainerStats and PodSandboxStats: cgroup usage of live containers, the writable
//! layer's disk usage, and CPU rates from the previous sample.

use super::ContainerService;
use crate::error::{Error, Result};
use crate::state::{ContainerRecord, ContainerState, PodRecord, PodState};
use crate::stats::Usage;

/// One container's usage at one moment.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// The container.
    pub record: ContainerRecord,
    /// When it was read, ns since the epoch.
    pub at_ns: i64,
    /// cgroup usage; `None` once the container has exited (its cgroup is gone).
    pub usage: Option<Usage>,
    /// CPU rate since the previous sample, in nanocores.
    pub nano_cores: Option<u64>,
    /// The writable layer's usage.
    pub writable: Option<crate::storage::usage::Usage>,
    /// Mount point of the filesystem holding the writable layer.
    pub mountpoint: String,
}

/// One pod's usage: the sum of its live containers', and each of them.
#[derive(Debug, Clone)]
pub struct PodUsage {
    /// The pod.
    pub record: PodRecord,
    /// When it was read.
    pub at_ns: i64,
    /// The sum over its containers (and its infra container).
    pub usage: Usage,
    /// CPU rate since the previous sample, in nanocores.
    pub nano_cores: Option<u64>,
    /// Its containers.
    pub containers: Vec<ContainerUsage>,
}

impl ContainerService {
    fn usage_of(&self, record: ContainerRecord) -> ContainerUsage {
        let at_ns = crate::state::now_ns();
        let live = matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        );
        let usage = live
            .then(|| self.registry.pod(&record.pod_id).map(|p| p.get()))
            .flatten()
            .and_then(|pod| crate::stats::read(&self.cgroups_path(&pod, &record.id)).ok());
        let nano_cores = usage
            .and_then(|u| u.cpu_ns)
            .and_then(|cpu| self.cpu_rates.rate(&record.id, at_ns, cpu));
        let upper = self.layout.container_storage(&record.id).join("upper");
        let writable = crate::storage::usage::usage(&upper).ok();
        let mountpoint = crate::storage::usage::mount_point(&upper)
            .map(|m| m.display().to_string())
            .unwrap_or_default();
        ContainerUsage {
            record,
            at_ns,
            usage,
            nano_cores,
            writable,
            mountpoint,
        }
    }

    /// cri:RuntimeService.ContainerStats.
    pub fn stats(&self, id: &str) -> Result<ContainerUsage> {
        let record = self.status(id)?;
        Ok(self.usage_of(record))
    }

    /// cri:RuntimeService.ListContainerStats: every created or running container (the
    /// edge filters).
    pub fn list_stats(&self) -> Vec<ContainerUsage> {
        let live: Vec<ContainerRecord> = self
            .list()
            .into_iter()
            .filter(|r| matches!(r.state, ContainerState::Created | ContainerState::Running))
            .collect();
        self.cpu_rates.retain(&|id| {
            let id = id.strip_prefix("pod:").unwrap_or(id);
            self.registry.container(id).is_some() || self.registry.pod(id).is_some()
        });
        live.into_iter().map(|r| self.usage_of(r)).collect()
    }

    /// cri:RuntimeService.PodSandboxStats.
    pub fn pod_stats(&self, id: &str) -> Result<PodUsage> {
        let record = self
            .registry
            .pod(id)
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating)
            .ok_or_else(|| Error::NotFound {
                kind: "pod sandbox",
                id: id.to_owned(),
            })?;
        Ok(self.pod_usage(record))
    }

    /// cri:RuntimeService.ListPodSandboxStats: every ready pod (the edge filters).
    pub fn list_pod_stats(&self) -> Vec<PodUsage> {
        self.registry
            .pod_records()
            .into_iter()
            .filter(|p| p.state == PodState::Ready)
            .map(|p| self.pod_usage(p))
            .collect()
    }

    fn pod_usage(&self, record: PodRecord) -> PodUsage {
        let at_ns = crate::state::now_ns();
        let containers: Vec<ContainerUsage> = self
            .registry
            .container_records(Some(&record.id))
            .into_iter()
            .map(|c| self.usage_of(c))
            .collect();
        let infra = record
            .infra
            .as_ref()
            .and_then(|i| crate::stats::read(&self.cgroups_path(&record, &i.id)).ok());
        let usage = Usage::sum(
            containers
                .iter()
                .filter_map(|c| c.usage.as_ref())
                .chain(infra.as_ref()),
        );
        // The pod's own key: its ID never collides with a container's.
        let nano_cores = usage.cpu_ns.and_then(|cpu| {
            self.cpu_rates
                .rate(&format!("pod:{}", record.id), at_ns, cpu)
        });
        PodUsage {
            record,
            at_ns,
            usage,
            nano_cores,
            containers,
        }
    }
}

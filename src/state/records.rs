//! The records of pods and containers as they are persisted.
//!
//! The CRI configs are kept as their protobuf encoding (base64 in the JSON), so a record
//! holds exactly what the kubelet sent, whatever fields a later CRI version adds.

use std::path::PathBuf;

use base64::Engine as _;
use crid_api::cri;
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A pod's lifecycle state, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodState {
    /// RunPodSandbox is in progress; recovery removes what it left.
    Creating,
    /// `SANDBOX_READY`.
    Ready,
    /// `SANDBOX_NOTREADY`: stopped, or its namespaces are gone.
    NotReady,
}

impl PodState {
    /// The CRI's name of the state, for messages.
    pub fn cri_name(self) -> &'static str {
        match self {
            PodState::Creating => "being created",
            PodState::Ready => "SANDBOX_READY",
            PodState::NotReady => "SANDBOX_NOTREADY",
        }
    }
}

/// The pod's infra container, when its PID namespace needs a PID 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfraRecord {
    /// Its ID in the runtime.
    pub id: String,
    /// Its init's PID on the host.
    pub pid: i32,
    /// The pause image's ID.
    pub image_id: String,
}

/// A pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    /// Sandbox ID.
    pub id: String,
    /// The RunPodSandbox config.
    #[serde(with = "proto")]
    pub config: cri::PodSandboxConfig,
    /// The runtime handler's name (resolved: never empty).
    pub runtime_handler: String,
    /// Lifecycle state.
    pub state: PodState,
    /// Creation time, ns since the epoch.
    pub created_at_ns: i64,
    /// Pinned network namespace; `None` for host network.
    pub netns: Option<PathBuf>,
    /// Pinned IPC namespace; `None` for host IPC.
    pub ipcns: Option<PathBuf>,
    /// Pinned UTS namespace; `None` for host network.
    pub utsns: Option<PathBuf>,
    /// The infra container, for a pod-shared PID namespace.
    pub infra: Option<InfraRecord>,
    /// Pod IPs, primary first.
    #[serde(default)]
    pub ips: Vec<String>,
    /// The pod may be attached to the CNI network: set before ADD, cleared after DEL, so
    /// teardown runs exactly once, also after a crash in the middle of ADD.
    #[serde(default)]
    pub network_attached: bool,
    /// The pod's cgroup parent (from `linux.cgroup_parent`, or crid's default).
    pub cgroup_parent: String,
}

impl PodRecord {
    /// The pod's metadata (always present: RunPodSandbox requires it).
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The name the pod reserves: `name_namespace_uid_attempt`, as containerd does.
    pub fn reserved_name(&self) -> String {
        let m = self.metadata();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }
}

/// A container's lifecycle state, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// CreateContainer is in progress; recovery removes what it left.
    Creating,
    /// `CONTAINER_CREATED`.
    Created,
    /// `CONTAINER_RUNNING`.
    Running,
    /// `CONTAINER_EXITED`.
    Exited,
}

impl ContainerState {
    /// The CRI's name of the state, for messages.
    pub fn cri_name(self) -> &'static str {
        match self {
            ContainerState::Creating => "being created",
            ContainerState::Created => "CONTAINER_CREATED",
            ContainerState::Running => "CONTAINER_RUNNING",
            ContainerState::Exited => "CONTAINER_EXITED",
        }
    }
}

/// A container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container ID.
    pub id: String,
    /// Its pod.
    pub pod_id: String,
    /// The CreateContainer config.
    #[serde(with = "proto")]
    pub config: cri::ContainerConfig,
    /// The image's ID (config digest).
    pub image_id: String,
    /// A digested reference of the image when one is known, else its ID.
    pub image_ref: String,
    /// Lifecycle state.
    pub state: ContainerState,
    /// Creation time, ns since the epoch.
    pub created_at_ns: i64,
    /// Start time, 0 until started.
    pub started_at_ns: i64,
    /// Exit time, 0 until exited.
    pub finished_at_ns: i64,
    /// Exit code once exited.
    pub exit_code: i32,
    /// `Completed`, `Error` or `OOMKilled` once exited.
    pub reason: String,
    /// A human-readable message about the exit.
    pub message: String,
    /// The init's host PID once created.
    pub pid: i32,
    /// crid-monitor's PID once created.
    pub monitor_pid: i32,
    /// The CRI log file (empty when the pod has no log directory).
    pub log_path: PathBuf,
    /// The signal StopContainer sends first (the image's StopSignal or SIGTERM).
    pub stop_signal: String,
    /// The resources in force (CreateContainer's, then UpdateContainerResources').
    #[serde(with = "proto_opt")]
    pub resources: Option<cri::LinuxContainerResources>,
    /// The user the process runs as: uid, gid, supplementary groups.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub additional_gids: Vec<u32>,
    /// The IDs of the images mounted as image volumes (`config.mounts.image`), which
    /// RemoveImage must not remove while the container exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_volume_ids: Vec<String>,
}

impl ContainerRecord {
    /// The container's metadata.
    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The name the container reserves in its pod: `name_attempt`.
    pub fn reserved_name(&self) -> String {
        let m = self.metadata();
        format!("{}_{}", m.name, m.attempt)
    }
}

fn encode<M: Message>(m: &M) -> String {
    base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec())
}

fn decode<M: Message + Default, E: serde::de::Error>(s: &str) -> Result<M, E> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(E::custom)?;
    M::decode(bytes.as_slice()).map_err(E::custom)
}

mod proto {
    use super::*;

    pub fn serialize<M: Message, S: Serializer>(m: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(m))
    }

    pub fn deserialize<'de, M: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<M, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s)
    }
}

mod proto_opt {
    use super::*;

    pub fn serialize<M: Message, S: Serializer>(m: &Option<M>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_some(&encode(m)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, M: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<M>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => decode(&s).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_survive_the_json_round_trip() {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "ns".into(),
                attempt: 2,
            }),
            hostname: "h".into(),
            ..Default::default()
        };
        let r = PodRecord {
            id: "a".repeat(64),
            config,
            runtime_handler: "runc".into(),
            state: PodState::Ready,
            created_at_ns: 1,
            netns: Some("/run/crid/pods/a/ns/net".into()),
            ipcns: None,
            utsns: None,
            infra: None,
            ips: vec!["10.88.0.2".into()],
            network_attached: true,
            cgroup_parent: "/crid".into(),
        };
        let json = serde_json::to_string(&r).expect("ser");
        let back: PodRecord = serde_json::from_str(&json).expect("de");
        assert_eq!(back, r);
        assert_eq!(back.reserved_name(), "p_ns_u_2");
    }
}

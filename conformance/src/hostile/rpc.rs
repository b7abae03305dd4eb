//! Every RPC of the CRI, and what kind of object each names.

use std::fmt;

/// One RPC of `runtime.v1.RuntimeService` or `runtime.v1.ImageService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Rpc {
    Version,
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    PodSandboxStatus,
    ListPodSandbox,
    StreamPodSandboxes,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    ListContainers,
    StreamContainers,
    ContainerStatus,
    UpdateContainerResources,
    ReopenContainerLog,
    ExecSync,
    Exec,
    Attach,
    PortForward,
    ContainerStats,
    ListContainerStats,
    StreamContainerStats,
    PodSandboxStats,
    ListPodSandboxStats,
    StreamPodSandboxStats,
    UpdateRuntimeConfig,
    Status,
    CheckpointContainer,
    GetContainerEvents,
    ListMetricDescriptors,
    ListPodSandboxMetrics,
    StreamPodSandboxMetrics,
    RuntimeConfig,
    UpdatePodSandboxResources,
    ListImages,
    StreamImages,
    ImageStatus,
    PullImage,
    RemoveImage,
    ImageFsInfo,
}

/// What the request's ID field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// A pod sandbox ID.
    Pod,
    /// A container ID.
    Container,
    /// An image (ImageSpec.image).
    Image,
    /// Nothing: the request has no ID field.
    Nothing,
}

impl Rpc {
    /// Every RPC, in proto order (runtime service, then image service).
    pub const ALL: &'static [Rpc] = &[
        Rpc::Version,
        Rpc::RunPodSandbox,
        Rpc::StopPodSandbox,
        Rpc::RemovePodSandbox,
        Rpc::PodSandboxStatus,
        Rpc::ListPodSandbox,
        Rpc::StreamPodSandboxes,
        Rpc::CreateContainer,
        Rpc::StartContainer,
        Rpc::StopContainer,
        Rpc::RemoveContainer,
        Rpc::ListContainers,
        Rpc::StreamContainers,
        Rpc::ContainerStatus,
        Rpc::UpdateContainerResources,
        Rpc::ReopenContainerLog,
        Rpc::ExecSync,
        Rpc::Exec,
        Rpc::Attach,
        Rpc::PortForward,
        Rpc::ContainerStats,
        Rpc::ListContainerStats,
        Rpc::StreamContainerStats,
        Rpc::PodSandboxStats,
        Rpc::ListPodSandboxStats,
        Rpc::StreamPodSandboxStats,
        Rpc::UpdateRuntimeConfig,
        Rpc::Status,
        Rpc::CheckpointContainer,
        Rpc::GetContainerEvents,
        Rpc::ListMetricDescriptors,
        Rpc::ListPodSandboxMetrics,
        Rpc::StreamPodSandboxMetrics,
        Rpc::RuntimeConfig,
        Rpc::UpdatePodSandboxResources,
        Rpc::ListImages,
        Rpc::StreamImages,
        Rpc::ImageStatus,
        Rpc::PullImage,
        Rpc::RemoveImage,
        Rpc::ImageFsInfo,
    ];

    /// The method name, as in the proto.
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The gRPC path: `/runtime.v1.RuntimeService/Version`.
    pub fn path(self) -> String {
        let service = if self >= Rpc::ListImages {
            crid_api::IMAGE_SERVICE
        } else {
            crid_api::RUNTIME_SERVICE
        };
        crid_api::rpc_path(service, &self.name())
    }

    /// Whether the response is a server stream.
    pub fn streaming(self) -> bool {
        crid_api::SERVER_STREAMING_RPCS.contains(&self.name().as_str())
    }

    /// What its ID field names.
    pub fn names(self) -> Names {
        use Rpc::*;
        match self {
            StopPodSandbox
            | RemovePodSandbox
            | PodSandboxStatus
            | PodSandboxStats
            | PortForward
            | CreateContainer
            | UpdatePodSandboxResources => Names::Pod,
            StartContainer
            | StopContainer
            | RemoveContainer
            | ContainerStatus
            | UpdateContainerResources
            | ReopenContainerLog
            | ExecSync
            | Exec
            | Attach
            | ContainerStats
            | CheckpointContainer => Names::Container,
            ImageStatus | PullImage | RemoveImage => Names::Image,
            _ => Names::Nothing,
        }
    }

    /// Whether the RPC is idempotent on a missing object (Stop*, Remove*: OK when it is
    /// already gone), so a request naming no existing object succeeds.
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Rpc::StopPodSandbox
                | Rpc::RemovePodSandbox
                | Rpc::StopContainer
                | Rpc::RemoveContainer
                | Rpc::RemoveImage
        )
    }

    /// Whether the RPC changes or ends the object it names (the generator never aims a
    /// well-formed one at the run's own objects).
    pub fn destructive(self) -> bool {
        self.idempotent() || matches!(self, Rpc::StartContainer | Rpc::CheckpointContainer)
    }

    /// RPCs crid does not serve (Unimplemented is their right answer).
    pub fn unimplemented(self) -> bool {
        matches!(
            self,
            Rpc::CheckpointContainer
                | Rpc::ListMetricDescriptors
                | Rpc::ListPodSandboxMetrics
                | Rpc::StreamPodSandboxMetrics
        )
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_proto_is_generated() {
        let ours: Vec<String> = Rpc::ALL.iter().map(|r| r.name()).collect();
        let proto: Vec<String> = crid_api::RUNTIME_SERVICE_RPCS
            .iter()
            .chain(crid_api::IMAGE_SERVICE_RPCS)
            .map(|s| (*s).to_owned())
            .collect();
        let mut a = ours.clone();
        let mut b = proto.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(Rpc::PullImage.path(), "/runtime.v1.ImageService/PullImage");
        assert_eq!(Rpc::Version.path(), "/runtime.v1.RuntimeService/Version");
        assert!(Rpc::GetContainerEvents.streaming());
        assert!(!Rpc::ExecSync.streaming());
    }
}

//! RuntimeService: thin handlers over [`Daemon`].

use std::sync::Arc;

use crid_api::runtime::v1 as cri;
use tonic::{Request, Response, Status};

use super::macros::cri_service;
use crate::config::CgroupDriver;
use crate::daemon::{self, Daemon};

/// The RuntimeService endpoint.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    daemon: Arc<Daemon>,
}

impl RuntimeApi {
    /// Serves RuntimeService from `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

cri_service! {
    impl cri::runtime_service_server::RuntimeService => RuntimeApi, service "RuntimeService" {
        // cri:RuntimeService.Version: runtime name, version and the CRI API version.
        async fn version(&self, _request: Request<cri::VersionRequest>) -> Result<Response<cri::VersionResponse>, Status> {
            Ok(Response::new(cri::VersionResponse {
                version: daemon::KUBELET_API_VERSION.to_owned(),
                runtime_name: daemon::RUNTIME_NAME.to_owned(),
                runtime_version: daemon::RUNTIME_VERSION.to_owned(),
                runtime_api_version: daemon::RUNTIME_API_VERSION.to_owned(),
            }))
        }

        // cri:RuntimeService.Status: RuntimeReady and NetworkReady, handlers, verbose info.
        async fn status(&self, request: Request<cri::StatusRequest>) -> Result<Response<cri::StatusResponse>, Status> {
            let status = self.daemon.status().await;
            let conditions = status
                .conditions
                .into_iter()
                .map(|c| cri::RuntimeCondition {
                    r#type: c.kind.to_owned(),
                    status: c.ready,
                    reason: c.reason,
                    message: c.message,
                })
                .collect();
            let runtime_handlers = status
                .handlers
                .into_iter()
                .map(|h| cri::RuntimeHandler {
                    name: h.name,
                    features: Some(cri::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: h.recursive_read_only_mounts,
                        user_namespaces: h.user_namespaces,
                    }),
                })
                .collect();
            let info = if request.get_ref().verbose {
                self.daemon.status_info().into_iter().collect()
            } else {
                Default::default()
            };
            Ok(Response::new(cri::StatusResponse {
                status: Some(cri::RuntimeStatus { conditions }),
                info,
                runtime_handlers,
                features: Some(cri::RuntimeFeatures {
                    supplemental_groups_policy: false,
                    user_namespaces_host_network: false,
                }),
            }))
        }

        // cri:RuntimeService.RuntimeConfig: the cgroup driver the kubelet must match.
        async fn runtime_config(&self, _request: Request<cri::RuntimeConfigRequest>) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
            let cgroup_driver = match self.daemon.cgroup_driver() {
                CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
                CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
            };
            Ok(Response::new(cri::RuntimeConfigResponse {
                linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: cgroup_driver.into() }),
            }))
        }

        // cri:RuntimeService.UpdateRuntimeConfig: records runtime_config.network_config.pod_cidr.
        async fn update_runtime_config(&self, request: Request<cri::UpdateRuntimeConfigRequest>) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
            let cidr = request
                .get_ref()
                .runtime_config
                .as_ref()
                .and_then(|c| c.network_config.as_ref())
                .map(|n| n.pod_cidr.as_str());
            // A request without network_config changes nothing, as in CRI-O and containerd.
            if let Some(cidr) = cidr {
                self.daemon.update_pod_cidr(cidr)?;
            }
            Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
        }
    }
    unimplemented {
        run_pod_sandbox(cri::RunPodSandboxRequest) -> cri::RunPodSandboxResponse = "RunPodSandbox";
        stop_pod_sandbox(cri::StopPodSandboxRequest) -> cri::StopPodSandboxResponse = "StopPodSandbox";
        remove_pod_sandbox(cri::RemovePodSandboxRequest) -> cri::RemovePodSandboxResponse = "RemovePodSandbox";
        pod_sandbox_status(cri::PodSandboxStatusRequest) -> cri::PodSandboxStatusResponse = "PodSandboxStatus";
        list_pod_sandbox(cri::ListPodSandboxRequest) -> cri::ListPodSandboxResponse = "ListPodSandbox";
        create_container(cri::CreateContainerRequest) -> cri::CreateContainerResponse = "CreateContainer";
        start_container(cri::StartContainerRequest) -> cri::StartContainerResponse = "StartContainer";
        stop_container(cri::StopContainerRequest) -> cri::StopContainerResponse = "StopContainer";
        remove_container(cri::RemoveContainerRequest) -> cri::RemoveContainerResponse = "RemoveContainer";
        list_containers(cri::ListContainersRequest) -> cri::ListContainersResponse = "ListContainers";
        container_status(cri::ContainerStatusRequest) -> cri::ContainerStatusResponse = "ContainerStatus";
        update_container_resources(cri::UpdateContainerResourcesRequest) -> cri::UpdateContainerResourcesResponse = "UpdateContainerResources";
        reopen_container_log(cri::ReopenContainerLogRequest) -> cri::ReopenContainerLogResponse = "ReopenContainerLog";
        exec_sync(cri::ExecSyncRequest) -> cri::ExecSyncResponse = "ExecSync";
        exec(cri::ExecRequest) -> cri::ExecResponse = "Exec";
        attach(cri::AttachRequest) -> cri::AttachResponse = "Attach";
        port_forward(cri::PortForwardRequest) -> cri::PortForwardResponse = "PortForward";
        container_stats(cri::ContainerStatsRequest) -> cri::ContainerStatsResponse = "ContainerStats";
        list_container_stats(cri::ListContainerStatsRequest) -> cri::ListContainerStatsResponse = "ListContainerStats";
        pod_sandbox_stats(cri::PodSandboxStatsRequest) -> cri::PodSandboxStatsResponse = "PodSandboxStats";
        list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest) -> cri::ListPodSandboxStatsResponse = "ListPodSandboxStats";
        checkpoint_container(cri::CheckpointContainerRequest) -> cri::CheckpointContainerResponse = "CheckpointContainer";
        list_metric_descriptors(cri::ListMetricDescriptorsRequest) -> cri::ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest) -> cri::ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
        update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest) -> cri::UpdatePodSandboxResourcesResponse = "UpdatePodSandboxResources";
    }
    unimplemented streams {
        stream_pod_sandboxes(cri::StreamPodSandboxesRequest) -> StreamPodSandboxesStream of cri::StreamPodSandboxesResponse = "StreamPodSandboxes";
        stream_containers(cri::StreamContainersRequest) -> StreamContainersStream of cri::StreamContainersResponse = "StreamContainers";
        stream_container_stats(cri::StreamContainerStatsRequest) -> StreamContainerStatsStream of cri::StreamContainerStatsResponse = "StreamContainerStats";
        stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsStream of cri::StreamPodSandboxStatsResponse = "StreamPodSandboxStats";
        get_container_events(cri::GetEventsRequest) -> GetContainerEventsStream of cri::ContainerEventResponse = "GetContainerEvents";
        stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsStream of cri::StreamPodSandboxMetricsResponse = "StreamPodSandboxMetrics";
    }
}

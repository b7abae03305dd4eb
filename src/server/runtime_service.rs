//! RuntimeService: thin handlers over [`Daemon`].

use std::sync::Arc;

use crid_api::runtime::v1 as cri;
use tonic::{Request, Response, Status};

use super::convert;
use super::macros::{BoxStream, batched, cri_service};
use crate::config::CgroupDriver;
use crate::container::ContainerService;
use crate::daemon::{self, Daemon, Services};
use crate::error::Error;
use crate::pod::PodService;
use crate::registry::Registry;
use crate::runtime::Streams;
use crate::streaming::{ExecRequest, PortForwardRequest, StreamRequest, StreamingServer};

/// The RuntimeService endpoint.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    daemon: Arc<Daemon>,
    registry: Arc<Registry>,
    pods: Arc<PodService>,
    containers: Arc<ContainerService>,
    streaming: Arc<StreamingServer>,
}

impl RuntimeApi {
    /// Serves RuntimeService from the daemon's services (runtime information, pods and
    /// containers) and `streaming` (the URLs of Exec, Attach and PortForward).
    pub fn new(services: &Services, streaming: Arc<StreamingServer>) -> Self {
        Self {
            daemon: services.daemon.clone(),
            registry: services.registry.clone(),
            pods: services.pods.clone(),
            containers: services.containers.clone(),
            streaming,
        }
    }
}

/// Verbose info of a status: one JSON document under `info`, as containerd and CRI-O do.
fn verbose_info(
    verbose: bool,
    value: impl FnOnce() -> serde_json::Value,
) -> std::collections::HashMap<String, String> {
    if verbose {
        std::collections::HashMap::from([("info".to_owned(), value().to_string())])
    } else {
        Default::default()
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
                runtime_api_version: if crate::faults::on(crate::faults::Fault::VersionWrongApi) { "v1alpha2" } else { daemon::RUNTIME_API_VERSION }.to_owned(),
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
                    status: c.ready && !(crate::faults::on(crate::faults::Fault::StatusRuntimeNotReady) && c.kind == "RuntimeReady"),
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
                // The fault answers plain text, as containerd's `lastCNILoadStatus` = "OK".
                self.daemon.status_info().await.into_iter().map(|(k, v)| if crate::faults::on(crate::faults::Fault::StatusInfoNotJson) { (k, "OK".to_owned()) } else { (k, v) }).collect()
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
                CgroupDriver::Systemd if crate::faults::on(crate::faults::Fault::RuntimeConfigWrongDriver) => cri::CgroupDriver::Cgroupfs,
                CgroupDriver::Cgroupfs if crate::faults::on(crate::faults::Fault::RuntimeConfigWrongDriver) => cri::CgroupDriver::Systemd,
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
            } else if crate::faults::on(crate::faults::Fault::UpdateRuntimeConfigHangs) {
                std::future::pending::<()>().await;
            }
            Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
        }

        // cri:RuntimeService.RunPodSandbox: namespaces, shared files, infra when needed.
        async fn run_pod_sandbox(&self, request: Request<cri::RunPodSandboxRequest>) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
            let r = request.into_inner();
            if r.config.is_none() && crate::faults::on(crate::faults::Fault::RunPodWithoutConfig) {
                return Ok(Response::new(cri::RunPodSandboxResponse::default()));
            }
            let config = r.config.ok_or_else(|| Status::invalid_argument("config: is required"))?;
            let pod_sandbox_id = self.pods.run(config, &r.runtime_handler).await?;
            Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
        }

        // cri:RuntimeService.StopPodSandbox: idempotent.
        async fn stop_pod_sandbox(&self, request: Request<cri::StopPodSandboxRequest>) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
            let id = request.into_inner().pod_sandbox_id;
            if id.is_empty() {
                return Err(Status::invalid_argument("pod_sandbox_id: must not be empty"));
            }
            self.pods.stop(&id).await?;
            Ok(Response::new(cri::StopPodSandboxResponse {}))
        }

        // cri:RuntimeService.RemovePodSandbox: idempotent.
        async fn remove_pod_sandbox(&self, request: Request<cri::RemovePodSandboxRequest>) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
            let id = request.into_inner().pod_sandbox_id;
            if id.is_empty() {
                return Err(Status::invalid_argument("pod_sandbox_id: must not be empty"));
            }
            self.pods.remove(&id).await?;
            Ok(Response::new(cri::RemovePodSandboxResponse {}))
        }

        // cri:RuntimeService.PodSandboxStatus: NotFound when absent.
        async fn pod_sandbox_status(&self, request: Request<cri::PodSandboxStatusRequest>) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
            let r = request.into_inner();
            if r.pod_sandbox_id.is_empty() {
                return Err(Status::invalid_argument("pod_sandbox_id: must not be empty"));
            }
            let record = self.pods.status(&r.pod_sandbox_id)?;
            // `config`: the recorded PodSandboxConfig (with the resources of the last
            // UpdatePodSandboxResources), as containerd reports it.
            let info = verbose_info(r.verbose, || serde_json::json!({
                "runtimeHandler": record.runtime_handler,
                "netns": record.netns,
                "cgroupParent": record.cgroup_parent,
                "infraPid": record.infra.as_ref().map(|i| i.pid),
                "config": super::proto_json::to_json("PodSandboxConfig", &record.config),
            }));
            Ok(Response::new(cri::PodSandboxStatusResponse {
                status: Some(convert::pod_status(&record)),
                info,
                containers_statuses: Vec::new(),
                timestamp: crate::state::now_ns(),
            }))
        }

        // cri:RuntimeService.UpdatePodSandboxResources: the pod's config records the
        // pod-level resources the kubelet applied; answered once they are on disk.
        async fn update_pod_sandbox_resources(&self, request: Request<cri::UpdatePodSandboxResourcesRequest>) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
            let r = request.into_inner();
            self.pods.update_resources(&r.pod_sandbox_id, r.overhead, r.resources).await?;
            Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
        }

        // cri:RuntimeService.ListPodSandbox: id, state and label filters.
        async fn list_pod_sandbox(&self, request: Request<cri::ListPodSandboxRequest>) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
            let items = pods_listed(&self.pods, request.into_inner().filter);
            Ok(Response::new(cri::ListPodSandboxResponse { items }))
        }

        // cri:RuntimeService.CreateContainer: rootfs, spec, the runtime's create under crid-monitor.
        async fn create_container(&self, request: Request<cri::CreateContainerRequest>) -> Result<Response<cri::CreateContainerResponse>, Status> {
            let r = request.into_inner();
            let config = r.config.ok_or_else(|| Status::invalid_argument("config: is required"))?;
            let container_id = self.containers.create(&r.pod_sandbox_id, config).await?;
            Ok(Response::new(cri::CreateContainerResponse { container_id }))
        }

        // cri:RuntimeService.StartContainer: created -> running.
        async fn start_container(&self, request: Request<cri::StartContainerRequest>) -> Result<Response<cri::StartContainerResponse>, Status> {
            self.containers.start(&request.into_inner().container_id).await?;
            Ok(Response::new(cri::StartContainerResponse {}))
        }

        // cri:RuntimeService.StopContainer: stop signal, timeout, SIGKILL; idempotent.
        async fn stop_container(&self, request: Request<cri::StopContainerRequest>) -> Result<Response<cri::StopContainerResponse>, Status> {
            let r = request.into_inner();
            self.containers.stop(&r.container_id, r.timeout).await?;
            Ok(Response::new(cri::StopContainerResponse {}))
        }

        // cri:RuntimeService.RemoveContainer: idempotent, forcible.
        async fn remove_container(&self, request: Request<cri::RemoveContainerRequest>) -> Result<Response<cri::RemoveContainerResponse>, Status> {
            self.containers.remove(&request.into_inner().container_id).await?;
            Ok(Response::new(cri::RemoveContainerResponse {}))
        }

        // cri:RuntimeService.ListContainers: id, state, pod and label filters.
        async fn list_containers(&self, request: Request<cri::ListContainersRequest>) -> Result<Response<cri::ListContainersResponse>, Status> {
            let containers = containers_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(cri::ListContainersResponse { containers }))
        }

        // cri:RuntimeService.ContainerStatus: NotFound when absent.
        async fn container_status(&self, request: Request<cri::ContainerStatusRequest>) -> Result<Response<cri::ContainerStatusResponse>, Status> {
            let r = request.into_inner();
            let record = self.containers.status(&r.container_id)?;
            let info = verbose_info(r.verbose, || serde_json::json!({
                "sandboxID": record.pod_id,
                "pid": record.pid,
                "monitorPid": record.monitor_pid,
            }));
            Ok(Response::new(cri::ContainerStatusResponse {
                status: Some(convert::container_status(&record)),
                info,
            }))
        }

        // cri:RuntimeService.UpdateContainerResources: the runtime's update.
        async fn update_container_resources(&self, request: Request<cri::UpdateContainerResourcesRequest>) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
            let r = request.into_inner();
            self.containers.update_resources(&r.container_id, r.linux).await?;
            Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
        }

        // cri:RuntimeService.ReopenContainerLog: the monitor reopens the file.
        async fn reopen_container_log(&self, request: Request<cri::ReopenContainerLogRequest>) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
            self.containers.reopen_log(&request.into_inner().container_id).await?;
            Ok(Response::new(cri::ReopenContainerLogResponse {}))
        }

        // cri:RuntimeService.Exec: a single-use URL on the streaming server; the container
        // must run, and the streams make sense (one at least; no stderr with a tty).
        async fn exec(&self, request: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
            let r = request.into_inner();
            if !(r.stdin || r.stdout || r.stderr) {
                return Err(Error::invalid("stdin, stdout, stderr", "one of them must be set").into());
            }
            if r.tty && r.stderr {
                return Err(Error::invalid("stderr", "cannot be set with tty (the terminal carries both outputs)").into());
            }
            self.containers.exec_target(&r.container_id, r.cmd.clone()).await?;
            let url = self.streaming.url(StreamRequest::Exec(ExecRequest {
                container_id: r.container_id,
                cmd: r.cmd,
                attach: false,
                streams: Streams { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty },
            }))?;
            Ok(Response::new(cri::ExecResponse { url }))
        }

        // cri:RuntimeService.Attach: a single-use URL to the container's own stdio, through
        // its handler's attach connection; the container must run.
        async fn attach(&self, request: Request<cri::AttachRequest>) -> Result<Response<cri::AttachResponse>, Status> {
            let r = request.into_inner();
            if !(r.stdin || r.stdout || r.stderr) {
                return Err(Error::invalid("stdin, stdout, stderr", "one of them must be set").into());
            }
            if r.tty && r.stderr {
                return Err(Error::invalid("stderr", "cannot be set with tty (the terminal carries both outputs)").into());
            }
            self.containers.attach_target(&r.container_id).await?;
            let url = self.streaming.url(StreamRequest::Exec(ExecRequest {
                container_id: r.container_id,
                cmd: Vec::new(),
                attach: true,
                streams: Streams { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty },
            }))?;
            Ok(Response::new(cri::AttachResponse { url }))
        }

        // cri:RuntimeService.PortForward: a single-use URL; the pod must be ready.
        async fn port_forward(&self, request: Request<cri::PortForwardRequest>) -> Result<Response<cri::PortForwardResponse>, Status> {
            let r = request.into_inner();
            if r.pod_sandbox_id.is_empty() {
                return Err(Error::invalid("pod_sandbox_id", "must not be empty").into());
            }
            let mut ports = Vec::with_capacity(r.port.len());
            for p in r.port {
                match u16::try_from(p) {
                    Ok(p) if p > 0 => ports.push(p),
                    _ => return Err(Error::invalid("port", format!("{p} is not a TCP port")).into()),
                }
            }
            self.pods.netns(&r.pod_sandbox_id)?;
            let url = self.streaming.url(StreamRequest::PortForward(PortForwardRequest {
                pod_id: r.pod_sandbox_id,
                ports,
            }))?;
            Ok(Response::new(cri::PortForwardResponse { url }))
        }

        // cri:RuntimeService.ExecSync: output, exit code, timeout honoured.
        async fn exec_sync(&self, request: Request<cri::ExecSyncRequest>) -> Result<Response<cri::ExecSyncResponse>, Status> {
            let r = request.into_inner();
            let mut out = self.containers.exec_sync(&r.container_id, r.cmd, r.timeout).await?;
            if crate::faults::on(crate::faults::Fault::ExecSyncMergesStderr) {
                let stderr = std::mem::take(&mut out.stderr);
                out.stdout.extend(stderr);
            }
            Ok(Response::new(cri::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: if crate::faults::on(crate::faults::Fault::ExecSyncExitZero) { 0 } else { out.exit_code },
            }))
        }

        // cri:RuntimeService.ContainerStats: cgroup usage and the writable layer.
        async fn container_stats(&self, request: Request<cri::ContainerStatsRequest>) -> Result<Response<cri::ContainerStatsResponse>, Status> {
            let usage = self.containers.stats(&request.into_inner().container_id)?;
            Ok(Response::new(cri::ContainerStatsResponse { stats: Some(convert::container_stats(&usage)) }))
        }

        // cri:RuntimeService.ListContainerStats: live containers, id, pod and label filters.
        async fn list_container_stats(&self, request: Request<cri::ListContainerStatsRequest>) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
            let stats = container_stats_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(cri::ListContainerStatsResponse { stats }))
        }

        // cri:RuntimeService.PodSandboxStats: the sum of the pod's containers, and each.
        async fn pod_sandbox_stats(&self, request: Request<cri::PodSandboxStatsRequest>) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
            let id = request.into_inner().pod_sandbox_id;
            if id.is_empty() {
                return Err(Status::invalid_argument("pod_sandbox_id: must not be empty"));
            }
            let usage = self.containers.pod_stats(&id)?;
            Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(convert::pod_stats(&usage)).filter(|_| !crate::faults::on(crate::faults::Fault::PodStatsMissing)) }))
        }

        // cri:RuntimeService.ListPodSandboxStats: ready pods, id and label filters.
        async fn list_pod_sandbox_stats(&self, request: Request<cri::ListPodSandboxStatsRequest>) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
            let stats = pod_stats_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
        }

        type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;

        // cri:RuntimeService.StreamPodSandboxes: ListPodSandbox's answer in batches.
        async fn stream_pod_sandboxes(&self, request: Request<cri::StreamPodSandboxesRequest>) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
            let items = pods_listed(&self.pods, request.into_inner().filter);
            Ok(Response::new(batched(&items, |pod_sandboxes| cri::StreamPodSandboxesResponse { pod_sandboxes })))
        }

        type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;

        // cri:RuntimeService.StreamContainers: ListContainers' answer in batches.
        async fn stream_containers(&self, request: Request<cri::StreamContainersRequest>) -> Result<Response<Self::StreamContainersStream>, Status> {
            let items = containers_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(batched(&items, |containers| cri::StreamContainersResponse { containers })))
        }

        type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;

        // cri:RuntimeService.StreamContainerStats: ListContainerStats' answer in batches.
        async fn stream_container_stats(&self, request: Request<cri::StreamContainerStatsRequest>) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
            let items = container_stats_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(batched(&items, |container_stats| cri::StreamContainerStatsResponse { container_stats })))
        }

        type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;

        // cri:RuntimeService.StreamPodSandboxStats: ListPodSandboxStats' answer in batches.
        async fn stream_pod_sandbox_stats(&self, request: Request<cri::StreamPodSandboxStatsRequest>) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
            let items = pod_stats_listed(&self.containers, request.into_inner().filter);
            Ok(Response::new(batched(&items, |pod_sandbox_stats| cri::StreamPodSandboxStatsResponse { pod_sandbox_stats })))
        }

        type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;

        // cri:RuntimeService.GetContainerEvents: created, started, stopped, deleted, as they happen.
        async fn get_container_events(&self, _request: Request<cri::GetEventsRequest>) -> Result<Response<Self::GetContainerEventsStream>, Status> {
            let events = tokio_stream::wrappers::BroadcastStream::new(self.registry.subscribe());
            let stream = tokio_stream::StreamExt::filter_map(events, move |e| match e {
                Ok(e) => Some(Ok(convert::event(&e))),
                // A subscriber that fell behind misses events; the kubelet relists.
                Err(lagged) => {
                    tracing::warn!("a GetContainerEvents subscriber fell behind: {lagged}");
                    None
                }
            });
            Ok(Response::new(Box::pin(stream)))
        }
    }
    unimplemented {
        checkpoint_container(cri::CheckpointContainerRequest) -> cri::CheckpointContainerResponse = "CheckpointContainer";
        list_metric_descriptors(cri::ListMetricDescriptorsRequest) -> cri::ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest) -> cri::ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
    }
    unimplemented streams {
        stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsStream of cri::StreamPodSandboxMetricsResponse = "StreamPodSandboxMetrics";
    }
}

/// ListPodSandbox's items (and StreamPodSandboxes').
fn pods_listed(pods: &PodService, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
    pods.list()
        .iter()
        .filter(|r| convert::pod_matches(filter.as_ref(), r))
        .map(convert::pod)
        .collect()
}

/// ListContainers' items (and StreamContainers').
fn containers_listed(
    containers: &ContainerService,
    filter: Option<cri::ContainerFilter>,
) -> Vec<cri::Container> {
    containers
        .list()
        .iter()
        .filter(|r| convert::container_matches(filter.as_ref(), r))
        .map(convert::container)
        .collect()
}

/// ListContainerStats' items (and StreamContainerStats').
fn container_stats_listed(
    containers: &ContainerService,
    filter: Option<cri::ContainerStatsFilter>,
) -> Vec<cri::ContainerStats> {
    containers
        .list_stats()
        .iter()
        .filter(|c| convert::container_stats_match(filter.as_ref(), &c.record))
        .map(convert::container_stats)
        .collect()
}

/// ListPodSandboxStats' items (and StreamPodSandboxStats').
fn pod_stats_listed(
    containers: &ContainerService,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Vec<cri::PodSandboxStats> {
    containers
        .list_pod_stats()
        .iter()
        .filter(|p| convert::pod_stats_match(filter.as_ref(), &p.record))
        .map(convert::pod_stats)
        .collect()
}

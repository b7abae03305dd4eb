//! cri:api.proto#rpc-set — the services and RPCs compiled into crid-api are exactly
//! the hand-written contract in `crid_api::{RUNTIME_SERVICE_RPCS, IMAGE_SERVICE_RPCS}`,
//! and match the latest cri-api release (41 RPCs: 35 runtime, 6 image).

use std::collections::BTreeSet;

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet, ServiceDescriptorProto};

/// RPC count of kubernetes/cri-api v0.37 (Kubernetes 1.37): RuntimeService 35 + ImageService 6.
const EXPECTED_RPC_COUNT: usize = 41;

fn api_file() -> FileDescriptorProto {
    let set = FileDescriptorSet::decode(crid_api::FILE_DESCRIPTOR_SET)
        .expect("FILE_DESCRIPTOR_SET decodes as a FileDescriptorSet");
    set.file
        .into_iter()
        .find(|f| f.package() == crid_api::PACKAGE)
        .expect("FILE_DESCRIPTOR_SET holds a file of package runtime.v1")
}

fn service<'a>(file: &'a FileDescriptorProto, name: &str) -> &'a ServiceDescriptorProto {
    file.service
        .iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("service runtime.v1.{name} is missing from the descriptor"))
}

fn method_names(svc: &ServiceDescriptorProto) -> BTreeSet<String> {
    svc.method.iter().map(|m| m.name().to_owned()).collect()
}

fn contract(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn assert_same_set(service: &str, compiled: &BTreeSet<String>, contract: &BTreeSet<String>) {
    let missing: Vec<_> = contract.difference(compiled).collect();
    let extra: Vec<_> = compiled.difference(contract).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "cri:api.proto#rpc-set: runtime.v1.{service}: in the contract but not in the proto: \
         {missing:?}; in the proto but not in the contract: {extra:?}"
    );
}

#[test]
fn cri_api_proto_rpc_set_package_and_services() {
    let file = api_file();
    assert_eq!(
        file.syntax(),
        "proto3",
        "cri:api.proto#rpc-set: runtime/v1/api.proto is proto3"
    );
    let services: BTreeSet<_> = file.service.iter().map(|s| s.name().to_owned()).collect();
    assert_eq!(
        services,
        contract(&["RuntimeService", "ImageService"]),
        "cri:api.proto#rpc-set: runtime.v1 defines exactly RuntimeService and ImageService"
    );
}

#[test]
fn cri_api_proto_rpc_set_runtime_service_matches_contract() {
    let file = api_file();
    let compiled = method_names(service(&file, "RuntimeService"));
    assert_same_set(
        "RuntimeService",
        &compiled,
        &contract(crid_api::RUNTIME_SERVICE_RPCS),
    );
    assert_eq!(
        crid_api::RUNTIME_SERVICE_RPCS.len(),
        compiled.len(),
        "cri:api.proto#rpc-set: RUNTIME_SERVICE_RPCS lists a name twice"
    );
}

#[test]
fn cri_api_proto_rpc_set_image_service_matches_contract() {
    let file = api_file();
    let compiled = method_names(service(&file, "ImageService"));
    assert_same_set(
        "ImageService",
        &compiled,
        &contract(crid_api::IMAGE_SERVICE_RPCS),
    );
    assert_eq!(
        crid_api::IMAGE_SERVICE_RPCS.len(),
        compiled.len(),
        "cri:api.proto#rpc-set: IMAGE_SERVICE_RPCS lists a name twice"
    );
}

#[test]
fn cri_api_proto_rpc_set_total_is_upstream_count() {
    let file = api_file();
    let total: usize = file.service.iter().map(|s| s.method.len()).sum();
    assert_eq!(
        total, EXPECTED_RPC_COUNT,
        "cri:api.proto#rpc-set: the proto has {total} RPCs, cri-api v0.37 has {EXPECTED_RPC_COUNT}"
    );
    assert_eq!(
        crid_api::RUNTIME_SERVICE_RPCS.len() + crid_api::IMAGE_SERVICE_RPCS.len(),
        EXPECTED_RPC_COUNT,
        "cri:api.proto#rpc-set: the hand-written contract lists a different number of RPCs"
    );
}

#[test]
fn cri_api_proto_rpc_set_streaming_flags_match_contract() {
    let file = api_file();
    let messages: BTreeSet<_> = file
        .message_type
        .iter()
        .map(|m| format!(".runtime.v1.{}", m.name()))
        .collect();
    for svc in &file.service {
        for m in &svc.method {
            let name = m.name();
            assert!(
                !m.client_streaming(),
                "cri:api.proto#rpc-set: {}.{name} must not be client streaming",
                svc.name()
            );
            let expected = crid_api::SERVER_STREAMING_RPCS.contains(&name);
            assert_eq!(
                m.server_streaming(),
                expected,
                "cri:api.proto#rpc-set: {}.{name} server streaming is {}, SERVER_STREAMING_RPCS says {expected}",
                svc.name(),
                m.server_streaming()
            );
            for ty in [m.input_type(), m.output_type()] {
                assert!(
                    messages.contains(ty),
                    "cri:api.proto#rpc-set: {}.{name} refers to {ty}, which is not a top-level message",
                    svc.name()
                );
            }
        }
    }
}

#[test]
fn cri_api_proto_rpc_paths() {
    assert_eq!(
        crid_api::rpc_path("RuntimeService", "Version"),
        "/runtime.v1.RuntimeService/Version"
    );
    assert_eq!(
        crid_api::rpc_path("runtime.v1.ImageService", "ImageFsInfo"),
        "/runtime.v1.ImageService/ImageFsInfo"
    );
}

/// Compile-time check that tonic generated both servers and clients, including the
/// server-streaming associated types; this test only has to build.
#[test]
fn cri_api_proto_rpc_set_generated_code_exists() {
    use crid_api::runtime::v1::{image_service_server, runtime_service_server};

    fn runtime_server<T: crid_api::RuntimeService>(svc: T) -> crid_api::RuntimeServiceServer<T> {
        runtime_service_server::RuntimeServiceServer::new(svc)
    }
    fn image_server<T: crid_api::ImageService>(svc: T) -> crid_api::ImageServiceServer<T> {
        image_service_server::ImageServiceServer::new(svc)
    }
    fn streams<T: crid_api::RuntimeService + crid_api::ImageService>() -> [&'static str; 3] {
        [
            std::any::type_name::<T::GetContainerEventsStream>(),
            std::any::type_name::<T::StreamContainersStream>(),
            std::any::type_name::<T::StreamImagesStream>(),
        ]
    }
    type Client = crid_api::RuntimeServiceClient<tonic::transport::Channel>;
    type ImageClient = crid_api::ImageServiceClient<tonic::transport::Channel>;

    let _ = (
        runtime_server::<NeverService>,
        image_server::<NeverService>,
        streams::<NeverService>,
        std::mem::size_of::<Client>(),
        std::mem::size_of::<ImageClient>(),
    );
}

/// A type no test instantiates; it only has to satisfy the trait bounds above.
enum NeverService {}

/// Implements a generated service trait for [`NeverService`]. The whole impl is
/// produced by one macro so that `async_trait` sees every method.
macro_rules! never_impl {
    (
        $service:path;
        streams { $($assoc:ident = $item:ident;)* }
        unary { $($name:ident($req:ident) -> $resp:ident;)* }
        streaming { $($sname:ident($sreq:ident) -> $stream:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl $service for NeverService {
            $(type $assoc = Never<crid_api::cri::$item>;)*
            $(
                async fn $name(
                    &self,
                    _request: tonic::Request<crid_api::cri::$req>,
                ) -> Result<tonic::Response<crid_api::cri::$resp>, tonic::Status> {
                    match *self {}
                }
            )*
            $(
                async fn $sname(
                    &self,
                    _request: tonic::Request<crid_api::cri::$sreq>,
                ) -> Result<tonic::Response<Self::$stream>, tonic::Status> {
                    match *self {}
                }
            )*
        }
    };
}

/// Stream type for the server-streaming RPCs of [`NeverService`].
type Never<T> = std::pin::Pin<
    Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>,
>;

never_impl! {
    crid_api::RuntimeService;
    streams {
        StreamPodSandboxesStream = StreamPodSandboxesResponse;
        StreamContainersStream = StreamContainersResponse;
        StreamContainerStatsStream = StreamContainerStatsResponse;
        StreamPodSandboxStatsStream = StreamPodSandboxStatsResponse;
        GetContainerEventsStream = ContainerEventResponse;
        StreamPodSandboxMetricsStream = StreamPodSandboxMetricsResponse;
    }
    unary {
        version(VersionRequest) -> VersionResponse;
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container(CreateContainerRequest) -> CreateContainerResponse;
        start_container(StartContainerRequest) -> StartContainerResponse;
        stop_container(StopContainerRequest) -> StopContainerResponse;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers(ListContainersRequest) -> ListContainersResponse;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
        exec(ExecRequest) -> ExecResponse;
        attach(AttachRequest) -> AttachResponse;
        port_forward(PortForwardRequest) -> PortForwardResponse;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        status(StatusRequest) -> StatusResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse;
    }
    streaming {
        stream_pod_sandboxes(StreamPodSandboxesRequest) -> StreamPodSandboxesStream;
        stream_containers(StreamContainersRequest) -> StreamContainersStream;
        stream_container_stats(StreamContainerStatsRequest) -> StreamContainerStatsStream;
        stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsStream;
        get_container_events(GetEventsRequest) -> GetContainerEventsStream;
        stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsStream;
    }
}

never_impl! {
    crid_api::ImageService;
    streams {
        StreamImagesStream = StreamImagesResponse;
    }
    unary {
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        remove_image(RemoveImageRequest) -> RemoveImageResponse;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
    }
    streaming {
        stream_images(StreamImagesRequest) -> StreamImagesStream;
    }
}

//! The Kubernetes Container Runtime Interface, package `runtime.v1`, for crid.
//!
//! `proto/runtime/v1/api.proto` is our transcription of the wire facts of
//! kubernetes/cri-api (services, RPCs, messages, field numbers and types; the
//! comments are our own). The build script compiles it with the pure-Rust `protox`
//! compiler and generates prost messages plus tonic clients and servers, so no
//! `protoc` is needed.
//!
//! What this crate owns:
//! - the generated code, under [`runtime::v1`] and re-exported at the crate root
//!   for the services ([`RuntimeService`], [`ImageService`], their servers and
//!   clients);
//! - [`FILE_DESCRIPTOR_SET`], the encoded descriptor set, for gRPC reflection and
//!   for tests that check the wire format;
//! - the hand-written RPC contract [`RUNTIME_SERVICE_RPCS`] and
//!   [`IMAGE_SERVICE_RPCS`], which the tests hold the proto to, and [`rpc_path`].

pub mod client;

/// Generated code, laid out by proto package.
pub mod runtime {
    /// The `runtime.v1` package: messages, enums, and the `runtime_service_*` /
    /// `image_service_*` client and server modules.
    pub mod v1 {
        // Generated code we do not edit: keep workspace-wide lints (and lints new
        // clippy releases add) from failing `-D warnings` builds on it.
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        tonic::include_proto!("runtime.v1");
    }
}

pub use runtime::v1 as cri;
pub use runtime::v1::image_service_client::ImageServiceClient;
pub use runtime::v1::image_service_server::{ImageService, ImageServiceServer};
pub use runtime::v1::runtime_service_client::RuntimeServiceClient;
pub use runtime::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};

/// The encoded `google.protobuf.FileDescriptorSet` of `runtime/v1/api.proto`
/// (without source info), for gRPC reflection and wire-format tests.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/runtime.v1.fds.bin"));

/// The proto package of the CRI.
pub const PACKAGE: &str = "runtime.v1";

/// Fully qualified name of the runtime service.
pub const RUNTIME_SERVICE: &str = "runtime.v1.RuntimeService";

/// Fully qualified name of the image service.
pub const IMAGE_SERVICE: &str = "runtime.v1.ImageService";

/// Every RPC of `runtime.v1.RuntimeService`, in proto order.
///
/// Hand-written on purpose: it is the contract the proto is tested against
/// (`tests/rpc_set.rs`), and what the server and the conformance harness enumerate.
pub const RUNTIME_SERVICE_RPCS: &[&str] = &[
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
];

/// Every RPC of `runtime.v1.ImageService`, in proto order.
pub const IMAGE_SERVICE_RPCS: &[&str] = &[
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

/// RPCs whose response is a server stream; all others are unary.
pub const SERVER_STREAMING_RPCS: &[&str] = &[
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "GetContainerEvents",
    "StreamPodSandboxMetrics",
    "StreamImages",
];

/// The gRPC path of a method: `rpc_path("RuntimeService", "Version")` is
/// `"/runtime.v1.RuntimeService/Version"`.
///
/// `service` may be the short name or already qualified with the package.
pub fn rpc_path(service: &str, method: &str) -> String {
    if service.starts_with("runtime.v1.") {
        format!("/{service}/{method}")
    } else {
        format!("/{PACKAGE}.{service}/{method}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_path_qualifies_short_service_names() {
        assert_eq!(
            rpc_path("RuntimeService", "Version"),
            "/runtime.v1.RuntimeService/Version"
        );
        assert_eq!(
            rpc_path(IMAGE_SERVICE, "PullImage"),
            "/runtime.v1.ImageService/PullImage"
        );
    }

    #[test]
    fn streaming_rpcs_belong_to_a_service() {
        for rpc in SERVER_STREAMING_RPCS {
            assert!(
                RUNTIME_SERVICE_RPCS.contains(rpc) || IMAGE_SERVICE_RPCS.contains(rpc),
                "{rpc} is listed as streaming but is in no service"
            );
        }
    }
}

//! The gRPC edge: serves the CRI RuntimeService and ImageService on the unix socket.
//!
//! Handlers validate and translate, call a service, and map errors once (in `error`). The
//! socket's ownership and cleanup live in `socket`; everything behind the socket is opened
//! by the composition root, [`Daemon::open`].

mod convert;
mod decode;
mod error;
mod image_service;
mod macros;
mod proto_json;
mod runtime_service;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crid_api::runtime::v1::image_service_server::ImageServiceServer;
use crid_api::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::daemon::{Daemon, OpenError};
pub use image_service::ImageApi;
pub use runtime_service::RuntimeApi;

/// The kubelet sends and accepts messages up to 16 MiB; tonic's default is 4 MiB.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket could not be taken.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// The daemon could not open its state.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The streaming server could not start.
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
    /// The gRPC server failed.
    #[error("gRPC server on {socket} failed: {source}")]
    Transport {
        /// The socket.
        socket: std::path::PathBuf,
        /// tonic's error.
        source: tonic::transport::Error,
    },
}

/// Serves both CRI services until `shutdown` resolves, then stops accepting, lets in-flight
/// calls finish for up to `server.shutdown_timeout_secs`, and removes the socket.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
    // The socket first: its lock refuses a second crid before it can touch any state.
    let mut owned = socket::bind(&config.server.listen)?;
    let streaming_config = config.streaming.clone();
    // Clients wait in the listen backlog while the daemon opens and recovers.
    let services = Daemon::open(config).await?;
    let socket_path = owned.path().to_path_buf();
    let Some(listener) = owned.take_listener() else {
        unreachable!("a freshly bound socket has its listener");
    };

    let streaming = crate::streaming::StreamingServer::start(
        &streaming_config,
        Arc::new(crate::streaming::ServiceBackend {
            pods: services.pods.clone(),
            containers: services.containers.clone(),
        }),
    )
    .await?;
    let runtime = RuntimeServiceServer::new(RuntimeApi::new(&services, streaming))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let image = ImageServiceServer::new(ImageApi::new(
        services.daemon.clone(),
        services.images.clone(),
        services.containers.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .layer(tower::util::MapResponseLayer::new(
            decode::decode_errors_are_invalid_argument,
        ))
        .add_service(runtime)
        .add_service(image)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tracing::info!(socket = %socket_path.display(), version = crate::daemon::RUNTIME_VERSION, "crid serving");

    let transport_err = |source| ServeError::Transport {
        socket: socket_path.clone(),
        source,
    };
    tokio::select! {
        result = &mut server => return result.map_err(transport_err),
        () = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.map_err(transport_err)?,
        Err(_) => tracing::warn!(
            ?grace,
            "in-flight calls did not finish in time; exiting anyway"
        ),
    }
    drop(owned);
    tracing::info!(socket = %socket_path.display(), "crid stopped");
    Ok(())
}

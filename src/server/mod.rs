//! The gRPC edge: serves the CRI RuntimeService and ImageService on the unix socket.
//!
//! Handlers validate and translate, call the core, and map errors once (in `error`). The
//! socket's ownership and cleanup live in `socket`.

mod convert;
mod decode;
mod error;
mod image_service;
mod macros;
mod runtime_service;
pub mod socket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crid_api::runtime::v1::image_service_server::ImageServiceServer;
use crid_api::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::daemon::Daemon;
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
    /// The image store could not be opened.
    #[error("cannot open the image store: {0}")]
    Images(#[from] crate::image::ImageError),
    /// The storage root could not be locked (another crid uses it) or its directories
    /// could not be created or secured.
    #[error("{0}")]
    Root(std::io::Error),
    /// Pods and containers could not be recovered.
    #[error("cannot recover pods and containers: {0}")]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
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
pub async fn serve(
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let config = &daemon.config().server;
    let grace = Duration::from_secs(config.shutdown_timeout_secs);
    // The socket first: its lock refuses a second crid before it can touch any state.
    let mut owned = socket::bind(&config.listen)?;
    // Then the storage root, for the daemon's lifetime: a second crid on another socket but
    // the same root would otherwise "recover" this one's pods and pulls.
    let storage = &daemon.config().storage;
    let layout = crate::state::Layout::new(&storage.root, &storage.runroot);
    let _root_lock = layout.lock().map_err(ServeError::Root)?;
    // Before any content is read or written: an existing root from an older crid may have
    // directories other users can walk into; they are repaired here.
    layout.create().map_err(ServeError::Root)?;
    // Opening the store also removes what an interrupted pull left behind.
    let images = Arc::new(crate::image::ImageService::open(daemon.config())?);
    // Recovery runs before anything is served (clients wait in the listen backlog), so a
    // client never sees half-recovered state.
    let lifecycle = crate::lifecycle::Lifecycle::open(daemon.config(), images.clone()).await?;
    let socket_path = owned.path().to_path_buf();
    let Some(listener) = owned.take_listener() else {
        unreachable!("a freshly bound socket has its listener");
    };

    let runtime = RuntimeServiceServer::new(RuntimeApi::new(daemon.clone(), lifecycle.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let image = ImageServiceServer::new(ImageApi::new(daemon.clone(), images, lifecycle))
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

//! Connecting to a CRI endpoint over a unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why an endpoint could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint string is not `unix:///path` or an absolute path.
    #[error("endpoint `{0}`: expected unix:///absolute/path or /absolute/path")]
    BadEndpoint(String),
    /// The channel could not be set up or the socket refused the connection.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// tonic's error.
        source: tonic::transport::Error,
    },
}

/// The socket path of an endpoint written as `unix:///path` (as crictl takes it) or `/path`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ConnectError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConnectError::BadEndpoint(endpoint.to_owned()))
    }
}

/// Opens a gRPC channel to the CRI endpoint (`unix:///path` or `/path`).
pub async fn connect(endpoint: &str) -> Result<Channel, ConnectError> {
    let path = socket_path(endpoint)?;
    connect_path(&path).await
}

/// Opens a gRPC channel to the unix socket at `path`.
pub async fn connect_path(path: &Path) -> Result<Channel, ConnectError> {
    let socket = path.to_path_buf();
    // The URI is required by tonic but unused: every connection goes to the socket.
    Endpoint::from_static("http://crid.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|source| ConnectError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

/// Calls any RPC by path (`/runtime.v1.RuntimeService/Version`) with its default (empty)
/// request, discarding the answer's content. A proto3 message with no fields set encodes
/// as zero bytes, so this reaches every RPC without knowing its types; it is how callers
/// check which RPCs an endpoint implements. For a server-streaming RPC, the first message
/// (or the end of the stream) counts as success.
pub async fn call_with_default_request(
    channel: Channel,
    path: &str,
    server_streaming: bool,
) -> Result<(), tonic::Status> {
    let path: tonic::codegen::http::uri::PathAndQuery = path
        .parse()
        .map_err(|_| tonic::Status::invalid_argument(format!("`{path}` is not an RPC path")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("endpoint not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if server_streaming {
        let mut stream = grpc
            .server_streaming(tonic::Request::new(()), path, codec)
            .await?
            .into_inner();
        stream.message().await?;
    } else {
        grpc.unary(tonic::Request::new(()), path, codec).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/crid/crid.sock").ok(),
            Some("/run/crid/crid.sock".into())
        );
        assert_eq!(socket_path("/run/x.sock").ok(), Some("/run/x.sock".into()));
        assert_eq!(
            socket_path("unix:/run/x.sock").ok(),
            Some("/run/x.sock".into())
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("relative.sock").is_err());
    }
}

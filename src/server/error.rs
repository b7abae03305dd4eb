//! The one place where domain errors become gRPC statuses.

use tonic::Status;

use crate::daemon::DaemonError;
use crate::image::ImageError;
use crate::lifecycle::LifecycleError;
use crate::storage::layers::LayerError;

impl From<DaemonError> for Status {
    fn from(err: DaemonError) -> Self {
        match err {
            DaemonError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
        }
    }
}

/// ImageService errors: the message always names the image and the cause.
pub(super) fn image_status(err: &ImageError) -> Status {
    let msg = err.to_string();
    match err {
        ImageError::InvalidReference { .. } | ImageError::InvalidArgument { .. } => {
            Status::invalid_argument(msg)
        }
        ImageError::NotFound { .. } => Status::not_found(msg),
        ImageError::Unauthenticated { .. } => Status::unauthenticated(msg),
        ImageError::PermissionDenied { .. } => Status::permission_denied(msg),
        ImageError::Unavailable { .. } | ImageError::Stalled { .. } => Status::unavailable(msg),
        ImageError::InUse { .. } => Status::failed_precondition(msg),
        ImageError::DigestMismatch { .. } => Status::data_loss(msg),
        // A hostile or malformed layer is the image's fault, not the daemon's.
        ImageError::Unpack {
            source: LayerError::DiffIdMismatch { .. } | LayerError::BlobDigestMismatch { .. },
            ..
        } => Status::data_loss(msg),
        // A hostile or malformed image is the image's fault, not the daemon's.
        ImageError::BadContent { .. } | ImageError::Unpack { .. } | ImageError::Registry { .. } => {
            Status::unknown(msg)
        }
        ImageError::Store { .. } | ImageError::Internal { .. } => Status::internal(msg),
    }
}

impl From<ImageError> for Status {
    fn from(err: ImageError) -> Self {
        image_status(&err)
    }
}

/// Pod and container errors: the message names the object and the cause.
impl From<LifecycleError> for Status {
    fn from(err: LifecycleError) -> Self {
        let msg = err.to_string();
        match err {
            LifecycleError::InvalidArgument { .. } => Status::invalid_argument(msg),
            LifecycleError::NotFound { .. } => Status::not_found(msg),
            LifecycleError::AlreadyExists(_) => Status::already_exists(msg),
            LifecycleError::FailedPrecondition(_) => Status::failed_precondition(msg),
            LifecycleError::DeadlineExceeded(_) => Status::deadline_exceeded(msg),
            LifecycleError::Image(e) => image_status(&e),
            LifecycleError::Network(e)
                if matches!(*e, crate::network::CniError::Timeout { .. }) =>
            {
                Status::deadline_exceeded(msg)
            }
            LifecycleError::Runtime { .. }
            | LifecycleError::Network(_)
            | LifecycleError::Internal { .. } => Status::internal(msg),
        }
    }
}

/// The streaming server could not issue a URL: crid's own fault.
impl From<crate::streaming::StreamingError> for Status {
    fn from(err: crate::streaming::StreamingError) -> Self {
        Status::internal(err.to_string())
    }
}

/// The answer of an RPC whose capability has not landed yet: never a stub that pretends.
#[allow(dead_code)] // Every ImageService RPC is implemented; RuntimeService still uses it.
pub(super) fn unimplemented(service: &str, rpc: &str) -> Status {
    Status::unimplemented(format!("{service}.{rpc} is not implemented by crid yet"))
}

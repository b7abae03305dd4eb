//! The one place where domain errors become gRPC statuses.
//!
//! Messages echo what the client sent (IDs, names, references, paths), and a status
//! message travels in an HTTP/2 header: a 1 MiB ID echoed back made the answer too big for
//! the client to read at all. [`bounded`] caps every message built here.

use tonic::Status;

use crate::daemon::DaemonError;
use crate::error::Error;
use crate::image::ImageError;
use crate::runtime::HandlerError;
use crate::storage::layers::LayerError;

impl From<DaemonError> for Status {
    fn from(err: DaemonError) -> Self {
        match err {
            DaemonError::InvalidArgument { .. } => Status::invalid_argument(bounded(&err)),
        }
    }
}

/// ImageService errors: the message always names the image and the cause.
pub(super) fn image_status(err: &ImageError) -> Status {
    let msg = bounded(err);
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
        ImageError::Unpack {
            source: LayerError::TooLarge { .. },
            ..
        } => Status::resource_exhausted(msg),
        ImageError::Unpack {
            source: LayerError::Io { source, .. },
            ..
        } if is_full(source) => Status::resource_exhausted(msg),
        // A hostile or malformed image is the image's fault, not the daemon's.
        ImageError::BadContent { .. } | ImageError::Unpack { .. } | ImageError::Registry { .. } => {
            Status::unknown(msg)
        }
        ImageError::Store { source, .. } if is_full(source) => Status::resource_exhausted(msg),
        ImageError::Store { .. } | ImageError::Internal { .. } => Status::internal(msg),
    }
}

impl From<ImageError> for Status {
    fn from(err: ImageError) -> Self {
        image_status(&err)
    }
}

/// Pod and container errors: the message names the object and every cause.
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let msg = bounded(&crate::error::chain(&err));
        // A failed rollback answers as what failed first.
        match err.root() {
            Error::InvalidArgument { .. } => Status::invalid_argument(msg),
            Error::NotFound { .. } => Status::not_found(msg),
            Error::NameReserved { .. } => Status::already_exists(msg),
            Error::InvalidState { .. } | Error::Unsupported(_) => Status::failed_precondition(msg),
            Error::Handler(h) if matches!(**h, HandlerError::Unknown { .. }) => {
                Status::invalid_argument(msg)
            }
            Error::Handler(_) => Status::failed_precondition(msg),
            Error::Timeout { .. } | Error::ExecTimeout { .. } => Status::deadline_exceeded(msg),
            Error::Image(e) => Status::new(image_status(e).code(), msg),
            Error::Network(e) if matches!(**e, crate::network::CniError::Timeout { .. }) => {
                Status::deadline_exceeded(msg)
            }
            Error::Runtime { source, .. }
                if matches!(**source, crate::runtime::RuntimeError::Timeout { .. }) =>
            {
                Status::deadline_exceeded(msg)
            }
            // A full disk is the node's state, not a bug: the kubelet backs off and
            // retries, and the operator frees space (ENOSPC, EDQUOT).
            Error::Persist(p) if is_full(&p.source) => Status::resource_exhausted(msg),
            Error::Host { source, .. } if is_full(source) => Status::resource_exhausted(msg),
            Error::Runtime { .. }
            | Error::Network(_)
            | Error::Persist(_)
            | Error::Host { .. }
            | Error::Rollback { .. } => Status::internal(msg),
        }
    }
}

/// The filesystem is full, or the quota is spent.
fn is_full(e: &std::io::Error) -> bool {
    // By kind too: a wrapped error (tempfile names the path) keeps the kind, not the errno.
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}

/// Longest run of non-blank characters a message keeps whole: a 64-hex ID, an image
/// reference or a path fit; a megabyte of client input does not.
const MAX_WORD: usize = 256;
/// How much of a longer run is kept.
const KEPT_WORD: usize = 128;
/// Longest message in bytes. Clients cap all metadata of an answer (gRPC C-core at
/// 8 KiB by default) and the message may be percent-encoded, growing up to threefold.
const MAX_MESSAGE: usize = 2048;

/// A status message for `err`: over-long words (echoed input) are cut to their first
/// [`KEPT_WORD`] characters with a note of their size, and the whole to [`MAX_MESSAGE`].
pub(crate) fn bounded(err: &dyn std::fmt::Display) -> String {
    let full = err.to_string();
    let mut out = String::with_capacity(full.len().min(MAX_MESSAGE + 64));
    for piece in full.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let blank = &piece[word.len()..];
        if word.chars().count() > MAX_WORD {
            out.extend(word.chars().take(KEPT_WORD));
            out.push_str(&format!("…({} bytes)", word.len()));
        } else {
            out.push_str(word);
        }
        out.push_str(blank);
        if out.len() > MAX_MESSAGE {
            break;
        }
    }
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("…(truncated)");
    }
    out
}

/// The streaming server could not issue a URL: crid's own fault.
impl From<crate::streaming::StreamingError> for Status {
    fn from(err: crate::streaming::StreamingError) -> Self {
        Status::internal(bounded(&err))
    }
}

/// The answer of an RPC whose capability has not landed yet: never a stub that pretends.
#[allow(dead_code)] // Every ImageService RPC is implemented; RuntimeService still uses it.
pub(super) fn unimplemented(service: &str, rpc: &str) -> Status {
    Status::unimplemented(format!("{service}.{rpc} is not implemented by crid yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_resource_exhausted() {
        let full = Error::Persist(crate::registry::PersistError {
            kind: crate::state::store::RecordKind::Container,
            id: "c".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
        let status = Status::from(full);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("No space left on device"),
            "{}",
            status.message()
        );
        let other = Error::host("container c: writing config.json")(
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        assert_eq!(Status::from(other).code(), tonic::Code::Internal);
        let rollback = Error::host("mounting")(std::io::Error::from_raw_os_error(libc::EDQUOT))
            .with_cleanup(Err(Error::invalid("x", "y")));
        assert_eq!(
            Status::from(rollback).code(),
            tonic::Code::ResourceExhausted
        );
    }

    #[test]
    fn echoed_input_is_capped_and_the_cause_kept() {
        let huge = "a".repeat(1 << 20);
        let status = Status::from(Error::NotFound {
            kind: "container",
            id: huge.clone(),
        });
        assert_eq!(status.code(), tonic::Code::NotFound);
        let msg = status.message();
        assert!(msg.len() < 300, "{}", msg.len());
        assert!(msg.starts_with(&format!("container {}…(1048576 bytes)", &huge[..128])));
        assert!(msg.ends_with(" not found"), "{msg}");

        // Normal messages pass untouched, IDs and all.
        let id = "f".repeat(64);
        let status = Status::from(Error::NotFound {
            kind: "container",
            id: id.clone(),
        });
        assert_eq!(status.message(), format!("container {id} not found"));

        // Many short words (spaces in a name) are capped as a whole, on a char boundary.
        let many = "é ".repeat(1 << 20);
        let status = Status::from(Error::invalid("config.metadata.name", many));
        assert!(status.message().len() <= MAX_MESSAGE + 20);
        assert!(status.message().ends_with("…(truncated)"));
        assert!(status.message().starts_with("config.metadata.name: é é"));
    }
}

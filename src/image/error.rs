//! `ImageError`: everything the image core can fail with, each variant carrying what a
//! person needs to act (which image, which registry URL, what the registry said).

use std::path::PathBuf;

use super::reference::ReferenceError;
use crate::storage::layers::LayerError;

/// Errors of the image core. `server::error` maps each variant to one gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("{field}: {source}")]
    InvalidReference {
        /// The request field that carried it.
        field: &'static str,
        /// Why.
        source: ReferenceError,
    },
    /// Another request field is malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The registry does not know the repository, tag, digest or blob; or no index entry
    /// fits the host platform.
    #[error("{reference}: not found: {detail}")]
    NotFound {
        /// The image reference.
        reference: String,
        /// URL and the registry's answer.
        detail: String,
    },
    /// The registry wants credentials that were not given or were rejected.
    #[error("{reference}: authentication failed: {detail}")]
    Unauthenticated {
        /// The image reference.
        reference: String,
        /// URL and the registry's answer.
        detail: String,
    },
    /// The credentials are valid but do not allow pulling.
    #[error("{reference}: permission denied: {detail}")]
    PermissionDenied {
        /// The image reference.
        reference: String,
        /// URL and the registry's answer.
        detail: String,
    },
    /// The registry cannot be reached, answered 5xx/429, or stopped sending.
    #[error("{reference}: registry unavailable: {detail}")]
    Unavailable {
        /// The image reference.
        reference: String,
        /// URL and what went wrong.
        detail: String,
    },
    /// The pull made no progress for the configured time.
    #[error("{reference}: pull cancelled: no progress for {secs}s while fetching {what}")]
    Stalled {
        /// The image reference.
        reference: String,
        /// The URL being fetched.
        what: String,
        /// `image.pull_progress_timeout_secs`.
        secs: u64,
    },
    /// The registry answered something crid cannot use.
    #[error("{reference}: registry error: {detail}")]
    Registry {
        /// The image reference.
        reference: String,
        /// URL, status and body snippet.
        detail: String,
    },
    /// Downloaded content does not match its digest (or its diff ID).
    #[error(
        "{reference}: {what} {expected}: content digest is {actual}; the download was discarded"
    )]
    DigestMismatch {
        /// The image reference.
        reference: String,
        /// `blob`, `manifest`, `layer diff ID` ...
        what: &'static str,
        /// What the manifest or config promised.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A manifest, index or config is malformed or unsupported.
    #[error("{reference}: invalid {what}: {reason}")]
    BadContent {
        /// The image reference.
        reference: String,
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// A layer could not be unpacked (including hostile archives).
    #[error("{reference}: layer {digest}: {source}")]
    Unpack {
        /// The image reference.
        reference: String,
        /// The layer's blob digest.
        digest: String,
        /// What the unpacker found.
        source: LayerError,
    },
    /// The image is used by containers and cannot be removed.
    #[error("image {image} is in use by container(s) {}", containers.join(", "))]
    InUse {
        /// The image ID.
        image: String,
        /// IDs of the containers using it.
        containers: Vec<String>,
    },
    /// The store on disk failed.
    #[error("image store: {op} {}: {source}", path.display())]
    Store {
        /// What crid was doing.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A background pull task died.
    #[error("{reference}: pull task failed: {detail}")]
    Internal {
        /// The image reference.
        reference: String,
        /// What happened.
        detail: String,
    },
}

impl ImageError {
    /// A `Store` error builder for `map_err`.
    pub(crate) fn store(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Store { op, path, source }
    }
}

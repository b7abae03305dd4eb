//! The errors of the pod and container services. Typed, with their causes kept as sources;
//! the gRPC edge (`server::error`) maps each variant to a status code in one place and puts
//! the whole source chain in the message.

use std::io;
use std::time::Duration;

use crate::image::ImageError;
use crate::network::CniError;
use crate::registry::PersistError;
use crate::runtime::RuntimeError;
use crate::runtime::registry::HandlerError;

/// Why a pod or container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field, as named in api.proto.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// No such object.
    #[error("{kind} {id} not found")]
    NotFound {
        /// `pod sandbox`, `container` or `image`.
        kind: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// A name is already taken.
    #[error("{kind} name {name} is reserved by {by}")]
    NameReserved {
        /// `pod` or `container`.
        kind: &'static str,
        /// The reserved name.
        name: String,
        /// Who holds it, e.g. `sandbox <id>`.
        by: String,
    },
    /// The object is in the wrong state for the operation.
    #[error("{kind} {id} is {state}; {wanted}")]
    InvalidState {
        /// `pod sandbox` or `container`.
        kind: &'static str,
        /// The object.
        id: String,
        /// Its state, as the CRI names it.
        state: String,
        /// What the operation needs.
        wanted: &'static str,
    },
    /// The host or the configuration rules the request out.
    #[error("{0}")]
    Unsupported(String),
    /// The pod's runtime handler cannot be used.
    #[error(transparent)]
    Handler(Box<HandlerError>),
    /// The operation did not finish in time.
    #[error("{what} did not finish within {limit:?}")]
    Timeout {
        /// What, naming the object.
        what: String,
        /// The limit.
        limit: Duration,
    },
    /// An exec'd command ran out of its time (cri:ExecSync#timeout).
    #[error("command in container {id} timed out after {secs}s")]
    ExecTimeout {
        /// The container.
        id: String,
        /// The request's timeout.
        secs: i64,
    },
    /// The runtime handler failed.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done, naming the object.
        what: String,
        /// The runtime's error.
        source: Box<RuntimeError>,
    },
    /// A CNI plugin failed; the message carries the plugin's own.
    #[error("pod network: {0}")]
    Network(#[source] Box<CniError>),
    /// The image is missing or broken.
    #[error(transparent)]
    Image(Box<ImageError>),
    /// A record could not be written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The host failed us (a mount, a file, a namespace, a cgroup).
    #[error("{what}: {source}")]
    Host {
        /// What was being done, naming the object.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// An operation failed and undoing what it had done failed too.
    #[error("{cause} (and its rollback failed: {cleanup})")]
    Rollback {
        /// Why the operation failed: this decides the status code.
        #[source]
        cause: Box<Error>,
        /// Why the rollback failed.
        cleanup: Box<Error>,
    },
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An InvalidArgument naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Wraps an OS error with what was being done.
    pub fn host(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Error::Host { what, source }
    }

    /// Wraps a runtime error with what was being done.
    pub fn runtime(what: impl Into<String>) -> impl FnOnce(RuntimeError) -> Self {
        let what = what.into();
        move |source| Error::Runtime {
            what,
            source: Box::new(source),
        }
    }

    /// `self`, or a [`Error::Rollback`] when the rollback failed too.
    pub fn with_cleanup(self, cleanup: Result<()>) -> Self {
        match cleanup {
            Ok(()) => self,
            Err(c) => Error::Rollback {
                cause: Box::new(self),
                cleanup: Box::new(c),
            },
        }
    }

    /// The error that decides the status code: the cause of a failed rollback.
    pub fn root(&self) -> &Error {
        match self {
            Error::Rollback { cause, .. } => cause.root(),
            e => e,
        }
    }
}

impl From<HandlerError> for Error {
    fn from(e: HandlerError) -> Self {
        Error::Handler(Box::new(e))
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Self {
        Error::Image(Box::new(e))
    }
}

impl From<CniError> for Error {
    fn from(e: CniError) -> Self {
        Error::Network(Box::new(e))
    }
}

impl From<crate::spec::SpecError> for Error {
    fn from(e: crate::spec::SpecError) -> Self {
        let crate::spec::SpecError::Invalid { field, reason } = e;
        Error::InvalidArgument {
            field: field.to_string(),
            reason,
        }
    }
}

/// `err`'s message followed by each cause that the message does not already carry.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rollback_keeps_the_cause_first() {
        let cause = Error::invalid("config.image.image", "must not be empty");
        let cleanup = Error::host("container c: removing its bundle")(io::Error::other("busy"));
        let e = cause.with_cleanup(Err(cleanup));
        assert!(matches!(e.root(), Error::InvalidArgument { .. }));
        let text = chain(&e);
        assert!(
            text.starts_with("config.image.image: must not be empty"),
            "{text}"
        );
        assert!(text.contains("removing its bundle: busy"), "{text}");
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Error::Persist(PersistError {
            kind: crate::state::store::RecordKind::Pod,
            id: "p".into(),
            source: io::Error::other("No space left on device"),
        });
        assert_eq!(
            chain(&e),
            "pod sandbox p: writing its record: No space left on device"
        );
    }
}

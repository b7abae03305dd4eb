//! The one place where domain errors become gRPC statuses.

use tonic::Status;

use crate::daemon::DaemonError;

impl From<DaemonError> for Status {
    fn from(err: DaemonError) -> Self {
        match err {
            DaemonError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
        }
    }
}

/// The answer of an RPC whose capability has not landed yet: never a stub that pretends.
pub(super) fn unimplemented(service: &str, rpc: &str) -> Status {
    Status::unimplemented(format!("{service}.{rpc} is not implemented by crid yet"))
}

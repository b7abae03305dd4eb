//! Requests that do not decode are the caller's fault.
//!
//! tonic answers a request it cannot decode (a `string` field that is not UTF-8, a
//! truncated or malformed message) with Internal, as gRPC's status code guide has it for
//! parse errors. To a CRI client Internal means "the runtime failed": this layer answers
//! InvalidArgument instead, keeping tonic's message, which names the message and field.
//! Only tonic's own decode failures are touched: they are the Internal statuses tonic puts
//! in the response's extensions with prost's message prefix before any handler ran.
//! A request over the size limit, which tonic answers OutOfRange, answers
//! ResourceExhausted, the code gRPC's status code guide gives a message larger than the
//! configured limit.

use tonic::Status;
use tonic::codegen::http;

/// The prefix of tonic's decode errors (`prost::DecodeError`'s Display, behind tonic's).
const DECODE_PREFIX: &str = "failed to decode Protobuf message";

/// The prefix of tonic's answer to a message over the decoding limit.
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// Rewrites a decode failure's status to InvalidArgument; any other response is returned
/// as it is.
pub(super) fn decode_errors_are_invalid_argument<B>(
    mut response: http::Response<B>,
) -> http::Response<B> {
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    let message = status.message();
    let invalid = if status.code() == tonic::Code::Internal && message.starts_with(DECODE_PREFIX) {
        Status::invalid_argument(message.to_owned())
    } else if status.code() == tonic::Code::OutOfRange && message.starts_with(TOO_LARGE_PREFIX) {
        Status::resource_exhausted(message.to_owned())
    } else {
        return response;
    };
    let headers = response.headers_mut();
    headers.remove(Status::GRPC_MESSAGE);
    if invalid.add_header(headers).is_ok() {
        response.extensions_mut().insert(invalid);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decode_failures_become_invalid_argument() {
        let decode = Status::internal(format!(
            "{DECODE_PREFIX}: ContainerStatusRequest.container_id: invalid string value: data is not UTF-8 encoded"
        ));
        let r = decode_errors_are_invalid_argument(decode.into_http::<()>());
        assert_eq!(r.headers()["grpc-status"], "3");
        assert!(
            r.headers()["grpc-message"]
                .to_str()
                .expect("ascii")
                .contains("container_id")
        );
        assert_eq!(
            r.extensions().get::<Status>().map(Status::code),
            Some(tonic::Code::InvalidArgument)
        );

        // tonic 0.14's words, as a 17 MiB request gets them.
        let big = Status::out_of_range(
            "Error, decoded message length too large: found 17825797 bytes, the limit is: 16777216 bytes",
        );
        let r = decode_errors_are_invalid_argument(big.into_http::<()>());
        assert_eq!(r.headers()["grpc-status"], "8", "ResourceExhausted");

        let ours = Status::internal("pod abc: mounting shm: EPERM");
        let r = decode_errors_are_invalid_argument(ours.into_http::<()>());
        assert_eq!(r.headers()["grpc-status"], "13");
        let ok = http::Response::new(());
        assert!(
            decode_errors_are_invalid_argument(ok)
                .headers()
                .get("grpc-status")
                .is_none()
        );
    }
}

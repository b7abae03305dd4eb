//! Requests as bytes on the wire: a codec that sends what it is given, so a request can
//! carry what no generated type can express (a `string` that is not UTF-8, a field that
//! runs past the end of the message), and the splices that make such requests out of
//! well-formed ones.

use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;

/// A codec that sends and receives raw message bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

/// What one call came back with.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code (OK for a response).
    pub code: Code,
    /// The status message (empty for a response).
    pub message: String,
    /// The response message's bytes (the first message of a stream); empty on error.
    pub body: Vec<u8>,
}

impl Answer {
    fn error(status: &tonic::Status) -> Answer {
        Answer {
            code: status.code(),
            message: status.message().to_owned(),
            body: Vec::new(),
        }
    }
}

/// How long a server stream may stay silent before the call counts as accepted
/// (GetContainerEvents sends nothing until something happens).
const STREAM_QUIET: Duration = Duration::from_millis(300);

/// Sends `body` to the RPC at `path` (`/runtime.v1.RuntimeService/Version`). A server
/// stream is judged by its first message or its end. `None`: no answer within `limit`.
pub async fn call(
    channel: Channel,
    path: &str,
    streaming: bool,
    body: Vec<u8>,
    limit: Duration,
) -> Option<Answer> {
    let call = async {
        let path: tonic::codegen::http::uri::PathAndQuery = match path.parse() {
            Ok(p) => p,
            Err(_) => return Answer::error(&tonic::Status::internal("bad path")),
        };
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX);
        if let Err(e) = grpc.ready().await {
            return Answer::error(&tonic::Status::unavailable(format!(
                "channel not ready: {e}"
            )));
        }
        let request = tonic::Request::new(body);
        if !streaming {
            return match grpc.unary(request, path, RawCodec).await {
                Ok(r) => Answer {
                    code: Code::Ok,
                    message: String::new(),
                    body: r.into_inner(),
                },
                Err(s) => Answer::error(&s),
            };
        }
        let mut stream = match grpc.server_streaming(request, path, RawCodec).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Answer::error(&s),
        };
        match tokio::time::timeout(STREAM_QUIET, stream.message()).await {
            Ok(Err(s)) => Answer::error(&s),
            Ok(Ok(m)) => Answer {
                code: Code::Ok,
                message: String::new(),
                body: m.unwrap_or_default(),
            },
            Err(_) => Answer {
                code: Code::Ok,
                message: String::new(),
                body: Vec::new(),
            },
        }
    };
    tokio::time::timeout(limit, call).await.ok()
}

/// Bytes that are not UTF-8 in any position: a lone continuation byte, an overlong NUL,
/// a surrogate, bytes that never occur (0xfe, 0xff).
const NOT_UTF8: &[u8] = &[0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0x80];

/// Replaces every occurrence of `marker` in an encoded message with as many bytes that are
/// not UTF-8, so the length prefixes stay right. `None` when the marker is absent.
pub fn splice_not_utf8(encoded: &[u8], marker: &[u8]) -> Option<Vec<u8>> {
    if marker.is_empty() || encoded.len() < marker.len() {
        return None;
    }
    let mut out = encoded.to_vec();
    let mut found = false;
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if &out[i..i + marker.len()] == marker {
            for (j, b) in out[i..i + marker.len()].iter_mut().enumerate() {
                *b = NOT_UTF8[j % NOT_UTF8.len()];
            }
            found = true;
            i += marker.len();
        } else {
            i += 1;
        }
    }
    found.then_some(out)
}

/// Appends a length-delimited field (number 1) that says it holds more bytes than follow:
/// no decoder can read the message, whatever type field 1 has.
pub fn truncated(encoded: &[u8]) -> Vec<u8> {
    let mut out = encoded.to_vec();
    out.extend_from_slice(&[0x0a, 0x40, b'x']);
    out
}

/// Appends a varint field (number 2) whose varint never ends within ten bytes.
pub fn varint_overflow(encoded: &[u8]) -> Vec<u8> {
    let mut out = encoded.to_vec();
    out.push(0x10);
    out.extend_from_slice(&[0xff; 11]);
    out
}

/// Appends a field the message does not define (number 4095, length-delimited) holding
/// bytes that are not UTF-8: a decoder skips it, the request means what it meant.
pub fn unknown_field(encoded: &[u8]) -> Vec<u8> {
    let mut out = encoded.to_vec();
    // Tag (4095 << 3) | 2 as a varint.
    put_varint(&mut out, (4095 << 3) | 2);
    put_varint(&mut out, NOT_UTF8.len() as u64);
    out.extend_from_slice(NOT_UTF8);
    out
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crid_api::cri;
    use prost::Message;

    fn status_request(id: &str) -> Vec<u8> {
        cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_spliced_string_no_longer_decodes_but_keeps_its_length() {
        let enc = status_request("a-MARK-b");
        let bad = splice_not_utf8(&enc, b"MARK").expect("marker present");
        assert_eq!(bad.len(), enc.len());
        let err = cri::ContainerStatusRequest::decode(bad.as_slice()).expect_err("not UTF-8");
        assert!(err.to_string().contains("UTF-8"), "{err}");
        assert!(splice_not_utf8(&enc, b"ABSENT").is_none());
    }

    #[test]
    fn truncated_and_overflowing_messages_do_not_decode() {
        for enc in [status_request("x"), Vec::new()] {
            assert!(cri::ContainerStatusRequest::decode(truncated(&enc).as_slice()).is_err());
            assert!(cri::ContainerStatusRequest::decode(varint_overflow(&enc).as_slice()).is_err());
            assert!(cri::ImageFsInfoRequest::decode(truncated(&enc).as_slice()).is_err());
        }
    }

    #[test]
    fn an_unknown_field_is_skipped() {
        let enc = unknown_field(&status_request("abc"));
        let back = cri::ContainerStatusRequest::decode(enc.as_slice()).expect("decodes");
        assert_eq!(back.container_id, "abc");
        assert!(cri::ImageFsInfoRequest::decode(enc.as_slice()).is_ok());
    }
}

//! SPDY/3.1 frames: their wire layout, and nothing else (no I/O, no compression state).
//!
//! A control frame is `1 | version(15) | type(16) | flags(8) | length(24) | payload`; a data
//! frame is `0 | stream-id(31) | flags(8) | length(24) | data`. Header blocks travel
//! compressed; this module hands their compressed bytes over as they are, and
//! [`super::zlib`] turns them into name/value pairs.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol version crid speaks (SPDY/3.1 keeps version 3 in its frames).
pub const VERSION: u16 = 3;
/// Length field: 24 bits.
pub const MAX_LENGTH: usize = (1 << 24) - 1;
/// The frame header's size, for both kinds.
pub const HEADER_LEN: usize = 8;

/// Last frame of the stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the receiver must not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// SETTINGS id of the initial stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes (SPDY/3.1 section 2.6.2).
pub mod rst {
    /// The stream is malformed or used wrongly.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// Not an active stream.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The endpoint stopped using the stream.
    pub const CANCEL: u32 = 5;
    /// Something went wrong inside the endpoint.
    pub const INTERNAL_ERROR: u32 = 6;
    /// The peer sent more than its window allowed.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    /// SYN_STREAM for an ID already in use.
    pub const STREAM_IN_USE: u32 = 8;
}

/// GOAWAY status codes.
pub mod goaway {
    /// Normal shutdown.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// We broke down.
    pub const INTERNAL_ERROR: u32 = 2;
}

/// One frame, its header blocks still compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data {
        /// Stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// SYN_STREAM: the peer opens a stream.
    SynStream {
        /// New stream.
        stream_id: u32,
        /// Stream it is associated with, 0 for none.
        associated_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused by SPDY/3.1 peers, kept for round trips).
        slot: u8,
        /// `FLAG_FIN`, `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// SYN_REPLY: the receiver accepts a stream.
    SynReply {
        /// Stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// RST_STREAM: abnormal end of a stream.
    RstStream {
        /// Stream.
        stream_id: u32,
        /// One of [`rst`].
        status: u32,
    },
    /// SETTINGS: (flags, id, value) triples.
    Settings {
        /// Frame flags (CLEAR_SETTINGS).
        flags: u8,
        /// Entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// PING: echoed by the receiver.
    Ping {
        /// Opaque ID.
        id: u32,
    },
    /// GOAWAY: no new streams after `last_good_stream_id`.
    GoAway {
        /// Last stream the sender processed.
        last_good_stream_id: u32,
        /// One of [`goaway`].
        status: u32,
    },
    /// HEADERS: more headers for a stream.
    Headers {
        /// Stream.
        stream_id: u32,
        /// `FLAG_FIN` or 0.
        flags: u8,
        /// Compressed header block.
        headers: Bytes,
    },
    /// WINDOW_UPDATE: the receiver may send `delta` more bytes (stream 0: the session).
    WindowUpdate {
        /// Stream, or 0 for the session window.
        stream_id: u32,
        /// 1 to 2^31-1.
        delta: u32,
    },
}

/// Why bytes are not a frame crid accepts; the connection ends (with GOAWAY) on any.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A control frame of another SPDY version.
    #[error("SPDY version {0} is not supported (crid speaks 3)")]
    Version(u16),
    /// A frame longer than crid accepts.
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLong(usize, usize),
    /// A control frame's payload does not fit its type.
    #[error("malformed {kind} frame: {reason}")]
    Malformed {
        /// Frame type.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A control frame type SPDY/3.1 does not define (they must be ignored, so the caller
    /// skips it).
    #[error("unknown control frame type {0}")]
    UnknownType(u16),
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const ID_MASK: u32 = 0x7fff_ffff;

impl Frame {
    /// Appends the frame's wire form to `out`. Lengths over 24 bits are the caller's bug
    /// (data is split before it gets here), so they are cut rather than trusted.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.put_u32(stream_id & ID_MASK);
                put_flags_len(out, *flags, data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                slot,
                flags,
                headers,
            } => {
                control(out, SYN_STREAM, *flags, 10 + headers.len());
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(associated_id & ID_MASK);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(*slot);
                out.put_slice(headers);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                control(out, SYN_REPLY, *flags, 4 + headers.len());
                out.put_u32(stream_id & ID_MASK);
                out.put_slice(headers);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, 8);
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                control(out, SETTINGS, *flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (f, id, value) in entries {
                    out.put_u8(*f);
                    out.put_uint(u64::from(id & 0x00ff_ffff), 3);
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & ID_MASK);
                out.put_u32(*status);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                control(out, HEADERS, *flags, 4 + headers.len());
                out.put_u32(stream_id & ID_MASK);
                out.put_slice(headers);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(delta & ID_MASK);
            }
        }
    }

    /// Takes one frame off the front of `buf` when it holds a whole one (`Ok(None)`: read
    /// more). Frames longer than `max_len` are refused before they are buffered.
    pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if len > max_len {
            return Err(FrameError::TooLong(len, max_len));
        }
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let mut frame = buf.split_to(HEADER_LEN + len).freeze();
        let first = frame.get_u32();
        let flags = frame.get_u8();
        frame.advance(3);
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & ID_MASK,
                flags,
                data: frame,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let mut p = frame;
        let need = |p: &Bytes, n: usize, kind: &'static str| {
            if p.len() < n {
                Err(FrameError::Malformed {
                    kind,
                    reason: "payload too short",
                })
            } else {
                Ok(())
            }
        };
        let f = match kind {
            SYN_STREAM => {
                need(&p, 10, "SYN_STREAM")?;
                let stream_id = p.get_u32() & ID_MASK;
                let associated_id = p.get_u32() & ID_MASK;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_id,
                    priority,
                    slot,
                    flags,
                    headers: p,
                }
            }
            SYN_REPLY => {
                need(&p, 4, "SYN_REPLY")?;
                Frame::SynReply {
                    stream_id: p.get_u32() & ID_MASK,
                    flags,
                    headers: p,
                }
            }
            RST_STREAM => {
                exact(&p, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: p.get_u32() & ID_MASK,
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need(&p, 4, "SETTINGS")?;
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(FrameError::Malformed {
                        kind: "SETTINGS",
                        reason: "entry count does not match the length",
                    });
                }
                let entries = (0..n)
                    .map(|_| {
                        let f = p.get_u8();
                        let id = p.get_uint(3) as u32;
                        (f, id, p.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                exact(&p, 4, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                exact(&p, 8, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: p.get_u32() & ID_MASK,
                    status: p.get_u32(),
                }
            }
            HEADERS => {
                need(&p, 4, "HEADERS")?;
                Frame::Headers {
                    stream_id: p.get_u32() & ID_MASK,
                    flags,
                    headers: p,
                }
            }
            WINDOW_UPDATE => {
                exact(&p, 8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & ID_MASK,
                    delta: p.get_u32() & ID_MASK,
                }
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(Some(f))
    }
}

fn exact(p: &Bytes, n: usize, kind: &'static str) -> Result<(), FrameError> {
    if p.len() == n {
        Ok(())
    } else {
        Err(FrameError::Malformed {
            kind,
            reason: "wrong payload length",
        })
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    put_flags_len(out, flags, len);
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    out.put_u8(flags);
    out.put_uint(len.min(MAX_LENGTH) as u64, 3);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id() -> impl Strategy<Value = u32> {
        0..=ID_MASK
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (id(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, data)| Frame::Data {
                stream_id,
                flags,
                data
            }),
            (id(), id(), 0u8..8, any::<u8>(), any::<u8>(), bytes()).prop_map(
                |(stream_id, associated_id, priority, slot, flags, headers)| Frame::SynStream {
                    stream_id,
                    associated_id,
                    priority,
                    slot,
                    flags,
                    headers
                }
            ),
            (id(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, headers)| {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            }),
            (id(), any::<u32>())
                .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
            (
                any::<u8>(),
                proptest::collection::vec((any::<u8>(), 0u32..(1 << 24), any::<u32>()), 0..10)
            )
                .prop_map(|(flags, entries)| Frame::Settings { flags, entries }),
            any::<u32>().prop_map(|id| Frame::Ping { id }),
            (id(), any::<u32>()).prop_map(|(last_good_stream_id, status)| Frame::GoAway {
                last_good_stream_id,
                status
            }),
            (id(), any::<u8>(), bytes()).prop_map(|(stream_id, flags, headers)| {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }),
            (id(), id()).prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        ]
    }

    proptest! {
        /// Every frame type survives encode then decode, also when it arrives in pieces.
        #[test]
        fn every_frame_type_round_trips(frames in proptest::collection::vec(frame(), 1..6), cut in 0usize..64) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let wire = wire.freeze();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let cut = cut.min(wire.len());
            for piece in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(piece);
                while let Some(f) = Frame::decode(&mut buf, MAX_LENGTH).expect("valid frame") {
                    got.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_is_an_error_not_a_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&raw[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf, 1 << 16) {}
        }
    }

    #[test]
    fn other_versions_and_oversized_frames_are_refused() {
        let mut buf = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(Frame::decode(&mut buf, 100), Err(FrameError::Version(2)));
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0, 1, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut buf, 100),
            Err(FrameError::TooLong(65536, 100))
        );
    }
}

//! SPDY/3 header blocks: name/value pairs, compressed with one zlib stream per direction
//! and connection, primed with the dictionary the SPDY/3 draft defines (section 2.6.10.1).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Header names and values, names lowercase; a value may hold several, NUL-separated.
pub type HeaderBlock = Vec<(String, String)>;

/// Decompressed header blocks larger than this end the connection (a zlib bomb costs the
/// sender nothing).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why a header block cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// zlib failed.
    #[error("header block: zlib: {0}")]
    Zlib(String),
    /// The decompressed block is larger than [`MAX_HEADER_BLOCK`].
    #[error("header block larger than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    /// The pairs do not parse.
    #[error("header block: {0}")]
    Malformed(&'static str),
}

/// The SPDY/3 compression dictionary: the draft's list of words, each behind its 32-bit
/// length, then a run of common strings. Built rather than pasted so that it can be read;
/// its Adler-32 (which zlib puts on the wire) is checked by a test.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &[&str] = &[
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
        "application/xhtml+xml,text/plain,text/javascript,public",
        "privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    for t in TAIL {
        d.extend_from_slice(t.as_bytes());
    }
    d
}

/// Our direction's zlib stream.
pub struct Compressor {
    z: Compress,
}

impl Compressor {
    /// A fresh stream, primed with the dictionary.
    pub fn new() -> Result<Self, HeaderError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary())
            .map_err(|e| HeaderError::Zlib(e.to_string()))?;
        Ok(Self { z })
    }

    /// Serializes and compresses one header block (sync flush: the peer can read it now).
    pub fn compress(&mut self, headers: &[(&str, &str)]) -> Result<Bytes, HeaderError> {
        let mut raw = BytesMut::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.to_ascii_lowercase().as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let before = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            input = &input[(self.z.total_in() - before) as usize..];
            // A sync flush is complete when zlib left room in the output.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(256);
        }
        Ok(Bytes::from(out))
    }
}

/// The peer's zlib stream.
pub struct Decompressor {
    z: Decompress,
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decompressor {
    /// A fresh stream; the dictionary goes in when zlib asks for it.
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Decompresses and parses one header block.
    pub fn decompress(&mut self, block: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before = self.z.total_in();
            let status = match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(s) => s,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&dictionary())
                        .map_err(|e| HeaderError::Zlib(e.to_string()))?;
                    Status::Ok
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            };
            input = &input[(self.z.total_in() - before) as usize..];
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if status == Status::StreamEnd {
                return Err(HeaderError::Zlib("the peer ended its zlib stream".into()));
            }
            if out.len() == out.capacity() {
                out.reserve(1024);
            }
        }
        parse(Bytes::from(out))
    }
}

fn parse(mut raw: Bytes) -> Result<HeaderBlock, HeaderError> {
    let take = |raw: &mut Bytes| -> Result<String, HeaderError> {
        if raw.len() < 4 {
            return Err(HeaderError::Malformed("truncated length"));
        }
        let n = raw.get_u32() as usize;
        if raw.len() < n {
            return Err(HeaderError::Malformed("truncated string"));
        }
        String::from_utf8(raw.split_to(n).to_vec())
            .map_err(|_| HeaderError::Malformed("a name or value is not UTF-8"))
    };
    if raw.len() < 4 {
        return Err(HeaderError::Malformed("no pair count"));
    }
    let count = raw.get_u32() as usize;
    // Each pair takes at least 8 bytes: a count beyond that is a lie.
    if count > raw.len() / 8 {
        return Err(HeaderError::Malformed("pair count exceeds the block"));
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take(&mut raw)?.to_ascii_lowercase();
        let value = take(&mut raw)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// The value of header `name` in `block`, if present.
pub fn get<'a>(block: &'a HeaderBlock, name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_drafts() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // zlib names a preset dictionary by its Adler-32; peers check it.
        let (mut a, mut b) = (1u32, 0u32);
        for x in &d {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 3_821_447_106);
    }

    #[test]
    fn header_blocks_round_trip_across_one_stream() {
        let mut c = Compressor::new().expect("compressor");
        let mut d = Decompressor::new();
        for i in 0..5 {
            let port = i.to_string();
            let block = c
                .compress(&[("streamType", "data"), ("port", &port), ("requestID", "0")])
                .expect("compress");
            let got = d.decompress(&block).expect("decompress");
            assert_eq!(get(&got, "streamtype"), Some("data"));
            assert_eq!(get(&got, "port"), Some(port.as_str()));
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = Decompressor::new();
        assert!(d.decompress(b"\x78\x9c\xff\xff\xff\xff").is_err());
    }
}

//! SPDY/3.1 streaming client, the harness's own (it shares no code with any runtime): the
//! HTTP/1.1 upgrade, SYN_STREAM/SYN_REPLY/DATA frames with zlib header blocks, and the
//! Kubernetes stream types (`error`, `stdin`, `stdout`, `stderr`, `resize`; port
//! forwarding's `error`/`data` pairs).

use std::collections::HashMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ExecOptions, ExecOutput, SESSION_TIMEOUT, split_url};

const FIN: u8 = 1;

/// The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed words, then
/// a run of common strings.
fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding \
        accept-language accept-ranges age allow authorization cache-control connection \
        content-base content-encoding content-language content-length content-location \
        content-md5 content-range content-type date etag expect expires from host if-match \
        if-modified-since if-none-match if-range if-unmodified-since last-modified location \
        max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after \
        server te trailer transfer-encoding upgrade user-agent vary via warning \
        www-authenticate method get status 200_OK version HTTP/1.1 url public set-cookie \
        keep-alive origin";
    let mut d = Vec::new();
    for w in words.split_whitespace() {
        let w = w.replace('_', " ");
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417\
502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad \
Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not \
Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 \
Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,\
deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    d
}

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    deflate: Compress,
    inflate: Decompress,
    next_id: u32,
}

enum Frame {
    Data { id: u32, fin: bool, data: Vec<u8> },
    Control { kind: u16, payload: Vec<u8> },
}

impl Conn {
    async fn open(url: &str, protocol: &str) -> Result<Conn, String> {
        let (host, target) = split_url(url)?;
        let mut tcp = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
        );
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed during the upgrade".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code != 101 {
            return Err(format!(
                "HTTP {code}: {}",
                head.lines().next().unwrap_or("")
            ));
        }
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            tcp,
            buf: buf[end..].to_vec(),
            deflate,
            inflate: Decompress::new(true),
            next_id: 1,
        })
    }

    fn headers(&mut self, pairs: &[(&str, &str)]) -> Result<Vec<u8>, String> {
        let mut raw = (pairs.len() as u32).to_be_bytes().to_vec();
        for (k, v) in pairs {
            // SPDY header names are lowercase on the wire (spdystream refuses others).
            for s in [k.to_ascii_lowercase(), (*v).to_owned()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 128);
        self.deflate
            .compress_vec(&raw, &mut out, FlushCompress::Sync)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Opens a stream with `pairs` as headers; returns its id (the reply is read later).
    async fn syn(&mut self, pairs: &[(&str, &str)]) -> Result<u32, String> {
        let id = self.next_id;
        self.next_id += 2;
        let block = self.headers(pairs)?;
        let mut f = vec![0x80, 3, 0, 1, 0];
        f.extend_from_slice(&((10 + block.len()) as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&block);
        self.tcp.write_all(&f).await.map_err(|e| e.to_string())?;
        Ok(id)
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) -> Result<(), String> {
        let mut f = id.to_be_bytes().to_vec();
        f.push(if fin { FIN } else { 0 });
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        self.tcp.write_all(&f).await.map_err(|e| e.to_string())
    }

    /// The next frame; `None` at EOF.
    async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if self.buf.len() >= 8 {
                let len = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
                if self.buf.len() >= 8 + len {
                    let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
                    let first = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                    let payload = frame[8..].to_vec();
                    return Ok(Some(if first & 0x8000_0000 == 0 {
                        Frame::Data {
                            id: first,
                            fin: frame[4] & FIN != 0,
                            data: payload,
                        }
                    } else {
                        Frame::Control {
                            kind: (first & 0xffff) as u16,
                            payload,
                        }
                    }));
                }
            }
            let mut chunk = [0u8; 16384];
            let n = self.tcp.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Keeps the inflate stream in step with a header block the server sent.
    fn inflate_block(&mut self, block: &[u8]) -> Result<(), String> {
        let mut out = Vec::with_capacity(4096);
        match self
            .inflate
            .decompress_vec(block, &mut out, FlushDecompress::Sync)
        {
            Ok(_) => Ok(()),
            Err(e) if e.needs_dictionary().is_some() => {
                self.inflate
                    .set_dictionary(&dictionary())
                    .map_err(|e| e.to_string())?;
                let done = self.inflate.total_in() as usize;
                let rest = block.get(done..).unwrap_or_default().to_vec();
                self.inflate
                    .decompress_vec(&rest, &mut out, FlushDecompress::Sync)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads until every stream in `until` has ended (FIN or reset) or the server closed;
    /// returns the data per stream, and how many SYN_REPLYs came.
    async fn collect(&mut self, until: &[u32]) -> Result<HashMap<u32, Vec<u8>>, String> {
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut ended: Vec<u32> = Vec::new();
        while !until.iter().all(|id| ended.contains(id)) {
            match self.next().await? {
                None => break,
                Some(Frame::Data { id, fin, data }) => {
                    got.entry(id).or_default().extend_from_slice(&data);
                    if fin {
                        ended.push(id);
                    }
                }
                Some(Frame::Control { kind, payload }) => match kind {
                    // SYN_REPLY: keep the header decompressor in step.
                    2 if payload.len() >= 4 => self.inflate_block(&payload[4..])?,
                    3 if payload.len() >= 4 => {
                        ended.push(
                            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                                & 0x7fff_ffff,
                        );
                    }
                    7 => break,
                    _ => {}
                },
            }
        }
        Ok(got)
    }
}

/// Runs an exec session at `url` with SPDY protocol `protocol` (e.g. `v4.channel.k8s.io`).
pub async fn exec(url: &str, protocol: &str, opts: &ExecOptions) -> Result<ExecOutput, String> {
    let run = async {
        let mut c = Conn::open(url, protocol).await?;
        let error = c.syn(&[("streamType", "error")]).await?;
        let stdin = match &opts.stdin {
            Some(_) => Some(c.syn(&[("streamType", "stdin")]).await?),
            None => None,
        };
        let stdout = c.syn(&[("streamType", "stdout")]).await?;
        let stderr = match (opts.stderr, opts.tty) {
            (true, None) => Some(c.syn(&[("streamType", "stderr")]).await?),
            _ => None,
        };
        if let Some((cols, rows)) = opts.tty {
            let resize = c.syn(&[("streamType", "resize")]).await?;
            let size = serde_json::json!({"Width": cols, "Height": rows}).to_string();
            c.data(resize, size.as_bytes(), false).await?;
        }
        if let (Some(id), Some(input)) = (stdin, &opts.stdin) {
            c.data(id, input, opts.close_stdin).await?;
        }
        let mut until = vec![error, stdout];
        until.extend(stderr);
        let mut got = c.collect(&until).await?;
        Ok(ExecOutput {
            stdout: got.remove(&stdout).unwrap_or_default(),
            stderr: stderr.and_then(|id| got.remove(&id)).unwrap_or_default(),
            status: String::from_utf8_lossy(&got.remove(&error).unwrap_or_default()).into_owned(),
        })
    };
    tokio::time::timeout(SESSION_TIMEOUT, run)
        .await
        .map_err(|_| format!("SPDY exec at {url} did not end within {SESSION_TIMEOUT:?}"))?
}

/// Forwards `port` over SPDY (`portforward.k8s.io`): sends `request` on a data stream,
/// half-closes it, and returns what came back. A message on the error stream is `Err`.
pub async fn port_forward(url: &str, port: u16, request: &[u8]) -> Result<Vec<u8>, String> {
    let run = async {
        let mut c = Conn::open(url, "portforward.k8s.io").await?;
        let p = port.to_string();
        let error = c
            .syn(&[("streamType", "error"), ("port", &p), ("requestID", "0")])
            .await?;
        let data = c
            .syn(&[("streamType", "data"), ("port", &p), ("requestID", "0")])
            .await?;
        c.data(data, request, true).await?;
        let mut got = c.collect(&[data, error]).await?;
        let err = got.remove(&error).unwrap_or_default();
        if !err.is_empty() {
            return Err(String::from_utf8_lossy(&err).into_owned());
        }
        Ok(got.remove(&data).unwrap_or_default())
    };
    tokio::time::timeout(SESSION_TIMEOUT, run)
        .await
        .map_err(|_| format!("SPDY port forward at {url} did not end within {SESSION_TIMEOUT:?}"))?
}

/// Forwards `port` over SPDY and reads until `want` bytes came or the pod closed the
/// connection, sending nothing (for throughput measurements). Returns the byte count.
pub async fn port_forward_read(url: &str, port: u16, want: usize) -> Result<usize, String> {
    let mut c = Conn::open(url, "portforward.k8s.io").await?;
    let p = port.to_string();
    let error = c
        .syn(&[("streamType", "error"), ("port", &p), ("requestID", "0")])
        .await?;
    let data = c
        .syn(&[("streamType", "data"), ("port", &p), ("requestID", "0")])
        .await?;
    let mut got = 0usize;
    while got < want {
        match c.next().await? {
            None => break,
            Some(Frame::Data { id, fin, data: d }) => {
                if id == data {
                    got += d.len();
                } else if id == error && !d.is_empty() {
                    return Err(String::from_utf8_lossy(&d).into_owned());
                }
                if fin && id == data {
                    break;
                }
            }
            Some(Frame::Control { kind: 2, payload }) if payload.len() >= 4 => {
                c.inflate_block(&payload[4..])?
            }
            Some(Frame::Control { kind: 7, .. }) => break,
            Some(_) => {}
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dictionary_is_the_drafts() {
        let d = super::dictionary();
        assert_eq!(d.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for x in &d {
            a = (a + u32::from(*x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 3_821_447_106);
    }
}

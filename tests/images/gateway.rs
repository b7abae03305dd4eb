//! A Bearer-token front for the real registry, as Docker Hub and most cloud registries are:
//! `/v2/...` answers 401 with a `WWW-Authenticate: Bearer realm=...` challenge unless the
//! request carries the token; the realm issues the token for basic credentials (GET) or for
//! an OAuth2 refresh token (POST form). Authorized requests are relayed to the registry.
//! The registry behind it is real; this is the token service a real registry delegates to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;

pub const TOKEN: &str = "crid-test-access-token";
pub const REFRESH: &str = "crid-test-refresh-token";
pub const USER: &str = "bearer-user";
pub const PASS: &str = "bearer-pass";

pub struct Gateway {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    /// Token requests seen: `GET basic` or `POST refresh`.
    pub token_requests: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    pub fn start(upstream: SocketAddr) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let (s, t) = (stop.clone(), token_requests.clone());
        let acceptor = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let t = t.clone();
                        std::thread::spawn(move || {
                            let _ = serve(c, upstream, addr, &t);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Gateway {
            addr,
            stop,
            acceptor: Some(acceptor),
            token_requests,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn respond(
    c: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes())?;
    c.write_all(body)
}

/// One request per connection (`Connection: close`), so relaying is a byte copy.
fn serve(
    mut c: TcpStream,
    upstream: SocketAddr,
    me: SocketAddr,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request_line = line.trim_end().to_owned();
    let mut headers = Vec::new();
    let mut auth = String::new();
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
            match k.as_str() {
                "authorization" => auth = v,
                "content-length" => length = v.parse().unwrap_or(0),
                "connection" => {}
                _ => headers.push(format!("{k}: {v}")),
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    if target.starts_with("/token") {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
        );
        let body_text = String::from_utf8_lossy(&body);
        let granted = match method {
            "GET" if auth == basic && target.contains("scope=repository%3A") => {
                seen.lock().expect("lock").push("GET basic".into());
                Some(format!("{{\"token\":\"{TOKEN}\"}}"))
            }
            "POST"
                if body_text.contains("grant_type=refresh_token")
                    && body_text.contains(&format!("refresh_token={REFRESH}")) =>
            {
                seen.lock().expect("lock").push("POST refresh".into());
                Some(format!("{{\"access_token\":\"{TOKEN}\"}}"))
            }
            _ => None,
        };
        return match granted {
            Some(json) => respond(
                &mut c,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                json.as_bytes(),
            ),
            None => respond(
                &mut c,
                "401 Unauthorized",
                &[],
                b"{\"details\":\"bad credentials\"}",
            ),
        };
    }
    if auth != format!("Bearer {TOKEN}") {
        let challenge = format!("Bearer realm=\"http://{me}/token\",service=\"crid-test\"");
        return respond(
            &mut c,
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", challenge),
                ("Content-Type", "application/json".into()),
            ],
            b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
        );
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut head = format!("{request_line}\r\nHost: {upstream}\r\nConnection: close\r\n");
    for h in headers.iter().filter(|h| !h.starts_with("host:")) {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut c)?;
    let _ = c.shutdown(Shutdown::Both);
    Ok(())
}

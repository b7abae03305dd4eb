//! Single-use, expiring tokens: what a streaming URL carries instead of the request itself,
//! so that only the kubelet, which got the URL over the CRI socket, can start the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// Tokens outstanding at once; past it the oldest go first (the kubelet uses a URL within
/// seconds, so only an abusive client could fill it).
pub const MAX_TOKENS: usize = 4096;

/// Pending requests, each behind a random token.
pub struct Tokens<T> {
    ttl: Duration,
    pending: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T> Tokens<T> {
    /// An empty cache whose tokens live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `request` and returns its token: 32 random bytes, URL-safe base64.
    pub fn insert(&self, request: T) -> std::io::Result<String> {
        let mut raw = [0u8; 32];
        getrandom(&mut raw)?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, (expires, _)| *expires > now);
        if pending.len() >= MAX_TOKENS
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Takes the request behind `token`: once, and only before it expires.
    pub fn take(&self, token: &str) -> Option<T> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, request) = pending.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_once() {
        let t = Tokens::new(Duration::from_secs(60));
        let a = t.insert(1).expect("token");
        let b = t.insert(2).expect("token");
        assert_ne!(a, b);
        assert_eq!(t.take(&a), Some(1));
        assert_eq!(t.take(&a), None);
        assert_eq!(t.take("unknown"), None);
        assert_eq!(t.take(&b), Some(2));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let t = Tokens::new(Duration::from_millis(1));
        let a = t.insert(1).expect("token");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.take(&a), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let t = Tokens::new(Duration::from_secs(60));
        let first = t.insert(0).expect("token");
        for i in 1..=MAX_TOKENS {
            t.insert(i).expect("token");
        }
        assert_eq!(t.take(&first), None);
        assert!(t.pending.lock().expect("lock").len() <= MAX_TOKENS);
    }
}

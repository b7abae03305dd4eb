//! Distribution API client: endpoints (mirrors in order, then the origin), plain HTTP only
//! for listed registries, and the Basic and Bearer token flows driven by `WWW-Authenticate`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};

use super::error::ImageError;
use super::reference::{DOCKER_HUB, DOCKER_HUB_API, Reference};

/// Most of an error body quoted in messages.
const BODY_SNIPPET: usize = 300;

/// Credentials from `PullImageRequest.auth` (cri:ImageService.PullImage#auth).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Anonymous.
    #[default]
    None,
    /// `username`/`password`, or `auth` (base64 `user:pass`).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token exchanged at the token realm (`identity_token`).
    IdentityToken(String),
    /// A bearer token sent as is (`registry_token`).
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Basic { .. } => "Basic(..)",
            Credentials::IdentityToken(_) => "IdentityToken(..)",
            Credentials::RegistryToken(_) => "RegistryToken(..)",
        })
    }
}

impl Credentials {
    /// Reads CRI's AuthConfig; `auth` is decoded here so a malformed one is reported
    /// against its field.
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Credentials, ImageError> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(registry_token.to_owned()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_owned()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        if !auth.is_empty() {
            let bad = |reason: &str| ImageError::InvalidArgument {
                field: "auth.auth",
                reason: reason.to_owned(),
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("is not base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("is not UTF-8 after decoding"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("must decode to `username:password`"))?;
            return Ok(Credentials::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        }
        Ok(Credentials::None)
    }

    fn basic_header(&self) -> Option<String> {
        match self {
            Credentials::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

/// How registries are reached: from `[image]` in the configuration.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// `host[:port]` reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Mirrors per registry host, tried in order before it.
    pub mirrors: BTreeMap<String, Vec<String>>,
}

/// One place to send Distribution API requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port][/path]`, without a trailing slash; `/v2/` is appended.
    pub base: String,
    /// A mirror rather than the registry itself.
    pub mirror: bool,
}

impl Hosts {
    /// The endpoints for `registry`, mirrors first, then the origin.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .mirrors
            .get(registry)
            .into_iter()
            .flatten()
            .map(|m| {
                let base = if m.starts_with("http://") || m.starts_with("https://") {
                    m.trim_end_matches('/').to_owned()
                } else {
                    let host = m.split('/').next().unwrap_or(m);
                    format!("{}://{}", self.scheme(host), m.trim_end_matches('/'))
                };
                Endpoint { base, mirror: true }
            })
            .collect();
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        out.push(Endpoint {
            base: format!("{}://{host}", self.scheme(registry)),
            mirror: false,
        });
        out
    }

    fn scheme(&self, host: &str) -> &'static str {
        if self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        }
    }
}

/// Builds the shared HTTP client; `stall` bounds connecting and every read.
pub fn http_client(stall: Duration) -> Result<reqwest::Client, String> {
    // rustls needs a process-wide provider when built without a default; installing twice
    // is harmless (the second attempt reports the first is there).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("crid/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(stall.min(Duration::from_secs(30)))
        .read_timeout(stall)
        .pool_max_idle_per_host(8)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
        /// `scope` parameter.
        scope: Option<String>,
    },
}

/// Parses the first challenge of a `WWW-Authenticate` value.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let mut map = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        map.insert(key, val.to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: map.remove("realm")?,
            service: map.remove("service"),
            scope: map.remove("scope"),
        })
    } else {
        None
    }
}

/// One pull's view of one repository: endpoints, credentials and cached authorization.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
    repository: String,
    reference: String,
    credentials: Credentials,
    stall: Duration,
    /// The `Authorization` value that worked per endpoint (a token or basic).
    authorization: Mutex<HashMap<usize, String>>,
    /// The first endpoint that answered, so blobs skip mirrors that already failed.
    preferred: AtomicUsize,
}

impl Session {
    /// A session for `reference` with `credentials`.
    pub fn new(
        http: reqwest::Client,
        hosts: &Hosts,
        reference: &Reference,
        credentials: Credentials,
        stall: Duration,
    ) -> Session {
        Session {
            http,
            endpoints: hosts.endpoints(&reference.registry),
            repository: reference.repository.clone(),
            reference: reference.to_string(),
            credentials,
            stall,
            authorization: Mutex::new(HashMap::new()),
            preferred: AtomicUsize::new(0),
        }
    }

    /// The reference this session pulls, for messages.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The stall timeout.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// `GET /v2/<repo>/manifests/<ref>`: the body and its content type.
    pub async fn manifest(
        &self,
        reference: &str,
    ) -> Result<(bytes::Bytes, Option<String>), ImageError> {
        let path = format!("manifests/{reference}");
        let resp = self.get(&path, Some(super::manifest::ACCEPT)).await?;
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let url = resp.url().to_string();
        let body = self.read_small(resp, &url, 8 << 20).await?;
        Ok((body, ctype))
    }

    /// `GET /v2/<repo>/blobs/<digest>` read fully (configs), at most `limit` bytes.
    pub async fn small_blob(&self, digest: &str, limit: usize) -> Result<bytes::Bytes, ImageError> {
        let resp = self.blob(digest).await?;
        let url = resp.url().to_string();
        self.read_small(resp, &url, limit).await
    }

    /// `GET /v2/<repo>/blobs/<digest>`, for streaming.
    pub async fn blob(&self, digest: &str) -> Result<Response, ImageError> {
        self.get(&format!("blobs/{digest}"), None).await
    }

    async fn read_small(
        &self,
        mut resp: Response,
        url: &str,
        limit: usize,
    ) -> Result<bytes::Bytes, ImageError> {
        let mut buf = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut resp, url).await? {
            buf.extend_from_slice(&chunk);
            if buf.len() > limit {
                return Err(ImageError::BadContent {
                    reference: self.reference.clone(),
                    what: url.to_owned(),
                    reason: format!("larger than {limit} bytes"),
                });
            }
        }
        Ok(buf.into())
    }

    /// The next body chunk, failing with `Stalled` when none comes within the stall time.
    pub async fn next_chunk(
        &self,
        resp: &mut Response,
        url: &str,
    ) -> Result<Option<bytes::Bytes>, ImageError> {
        match tokio::time::timeout(self.stall, resp.chunk()).await {
            Err(_) => Err(self.stalled(url)),
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) if e.is_timeout() => Err(self.stalled(url)),
            Ok(Err(e)) => Err(ImageError::Unavailable {
                reference: self.reference.clone(),
                detail: format!("reading {url}: {}", error_chain(&e)),
            }),
        }
    }

    fn stalled(&self, url: &str) -> ImageError {
        ImageError::Stalled {
            reference: self.reference.clone(),
            what: url.to_owned(),
            secs: self.stall.as_secs(),
        }
    }

    /// GET `path` below `/v2/<repo>/`, trying endpoints from the preferred one on; a mirror
    /// that fails in any way is skipped, and the origin's error is the one reported.
    async fn get(&self, path: &str, accept: Option<&str>) -> Result<Response, ImageError> {
        let start = self
            .preferred
            .load(Ordering::Relaxed)
            .min(self.endpoints.len() - 1);
        let mut last = None;
        for idx in start..self.endpoints.len() {
            let ep = &self.endpoints[idx];
            let url = format!("{}/v2/{}/{path}", ep.base, self.repository);
            match self.get_at(idx, &url, accept).await {
                Ok(resp) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => {
                    if ep.mirror {
                        tracing::warn!(mirror = %ep.base, error = %e, "mirror failed; trying the next endpoint");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ImageError::Internal {
            reference: self.reference.clone(),
            detail: "no endpoints".to_owned(),
        }))
    }

    async fn get_at(
        &self,
        idx: usize,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, ImageError> {
        let cached = self.cached_auth(idx);
        let resp = self.send(url, accept, cached.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return self.check(resp, url).await;
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let authorization = match challenge {
            Some(Challenge::Basic) => {
                self.credentials
                    .basic_header()
                    .ok_or_else(|| ImageError::Unauthenticated {
                        reference: self.reference.clone(),
                        detail: format!("{url} requires basic credentials and none were given"),
                    })?
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                format!(
                    "Bearer {}",
                    self.token(&realm, service.as_deref(), &scope).await?
                )
            }
            None => {
                return Err(ImageError::Unauthenticated {
                    reference: self.reference.clone(),
                    detail: format!(
                        "{url} answered 401 without a usable WWW-Authenticate challenge"
                    ),
                });
            }
        };
        let resp = self.send(url, accept, Some(&authorization)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let body = snippet(resp).await;
            return Err(ImageError::Unauthenticated {
                reference: self.reference.clone(),
                detail: format!("{url} rejected the credentials: {body}"),
            });
        }
        if let Ok(mut map) = self.authorization.lock() {
            map.insert(idx, authorization);
        }
        self.check(resp, url).await
    }

    fn cached_auth(&self, idx: usize) -> Option<String> {
        if let Credentials::RegistryToken(t) = &self.credentials {
            return Some(format!("Bearer {t}"));
        }
        self.authorization.lock().ok()?.get(&idx).cloned()
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response, ImageError> {
        let mut req = self.http.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        if let Some(a) = auth
            && let Ok(mut v) = HeaderValue::from_str(a)
        {
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        match tokio::time::timeout(self.stall, req.send()).await {
            Err(_) => Err(self.stalled(url)),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_timeout() && !e.is_connect() => Err(self.stalled(url)),
            Ok(Err(e)) => Err(ImageError::Unavailable {
                reference: self.reference.clone(),
                detail: format!("GET {url}: {}", error_chain(&e)),
            }),
        }
    }

    /// Maps a non-success status to the error class the CRI caller needs.
    async fn check(&self, resp: Response, url: &str) -> Result<Response, ImageError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let reference = self.reference.clone();
        let detail = format!("GET {url}: {status}: {}", snippet(resp).await);
        Err(match status {
            StatusCode::NOT_FOUND => ImageError::NotFound { reference, detail },
            StatusCode::UNAUTHORIZED => ImageError::Unauthenticated { reference, detail },
            StatusCode::FORBIDDEN => ImageError::PermissionDenied { reference, detail },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                ImageError::Unavailable { reference, detail }
            }
            _ => ImageError::Registry { reference, detail },
        })
    }

    /// The Bearer token flow: GET the realm (basic credentials if any), or POST an OAuth2
    /// refresh-token grant when an identity token was given.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImageError> {
        let bad_realm = |why: String| ImageError::Registry {
            reference: self.reference.clone(),
            detail: format!("token realm `{realm}`: {why}"),
        };
        let mut url = Url::parse(realm).map_err(|e| bad_realm(e.to_string()))?;
        let req = match &self.credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form =
                    Url::parse("http://form.invalid/").map_err(|e| bad_realm(e.to_string()))?;
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "crid");
                    q.append_pair("scope", scope);
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                }
                self.http
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or_default().to_owned())
            }
            creds => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                }
                let mut req = self.http.get(url.clone());
                if let Some(b) = creds.basic_header() {
                    req = req.header(AUTHORIZATION, b);
                }
                req
            }
        };
        let resp = match tokio::time::timeout(self.stall, req.send()).await {
            Err(_) => return Err(self.stalled(realm)),
            Ok(Err(e)) => {
                return Err(ImageError::Unavailable {
                    reference: self.reference.clone(),
                    detail: format!("token service {realm}: {}", error_chain(&e)),
                });
            }
            Ok(Ok(r)) => r,
        };
        let resp = match resp.status() {
            StatusCode::UNAUTHORIZED => {
                return Err(ImageError::Unauthenticated {
                    reference: self.reference.clone(),
                    detail: format!(
                        "token service {realm} rejected the credentials: {}",
                        snippet(resp).await
                    ),
                });
            }
            _ => self.check(resp, realm).await?,
        };
        let body = self.read_small(resp, realm, 1 << 20).await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| bad_realm(format!("token response is not JSON: {e}")))?;
        parsed
            .access_token
            .or(parsed.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad_realm("token response has no token".to_owned()))
    }
}

/// The first bytes of an error body, for messages.
async fn snippet(resp: Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let mut s: String = text.chars().take(BODY_SNIPPET).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s.trim().to_owned()
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="crid-conformance""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn endpoints_mirrors_first_then_origin() {
        let hosts = Hosts {
            insecure: vec!["127.0.0.1:5000".into(), "127.0.0.1:1".into()],
            mirrors: BTreeMap::from([(
                "docker.io".into(),
                vec![
                    "http://127.0.0.1:1".into(),
                    "127.0.0.1:5000/".into(),
                    "m.example".into(),
                ],
            )]),
        };
        let eps: Vec<_> = hosts
            .endpoints("docker.io")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(
            eps,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:5000",
                "https://m.example",
                "https://registry-1.docker.io"
            ]
        );
        let eps = hosts.endpoints("127.0.0.1:5000");
        assert_eq!(
            eps,
            [Endpoint {
                base: "http://127.0.0.1:5000".into(),
                mirror: false
            }]
        );
        assert_eq!(
            hosts.endpoints("quay.io")[0].base,
            "https://quay.io",
            "TLS unless listed"
        );
    }

    #[test]
    fn auth_config_precedence_and_decoding() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:x");
        assert_eq!(
            Credentials::from_auth_config("", "", &b64, "", "").expect("auth"),
            Credentials::Basic {
                username: "u".into(),
                password: "p:x".into()
            }
        );
        assert_eq!(
            Credentials::from_auth_config("u", "p", &b64, "id", "reg").expect("all"),
            Credentials::RegistryToken("reg".into())
        );
        assert_eq!(
            Credentials::from_auth_config("u", "p", "", "id", "").expect("id"),
            Credentials::IdentityToken("id".into())
        );
        let err = Credentials::from_auth_config("", "", "!!!", "", "").expect_err("bad base64");
        assert!(err.to_string().starts_with("auth.auth: "), "{err}");
        assert_eq!(
            format!("{:?}", Credentials::RegistryToken("secret".into())),
            "RegistryToken(..)"
        );
    }
}

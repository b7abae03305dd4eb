//! Image references: parsing, validation and normalization.
//!
//! The grammar is the distribution reference grammar (`[domain/]path[:tag][@digest]`).
//! A name without a domain is a short name: it is completed by each registry of
//! `image.short_name_search` in turn, and on `docker.io` a single-component path gains the
//! `library/` prefix, as Docker and containerd do.

use std::fmt;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's Distribution API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// Why a reference is malformed; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{reference}`: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

pub use crate::digest::{Digest, hex};

/// A fully qualified reference: registry, repository, and a tag or a digest (or both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path within the registry (`library/busybox`).
    pub repository: String,
    /// The tag, unless pulled by digest alone.
    pub tag: Option<String>,
    /// The manifest digest, when given.
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/repository@digest` for `digest`.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What to ask the registry's manifest endpoint for: the digest if any, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Parses `input` and completes it: a fully qualified name gives one candidate, a short
/// name one per registry of `search`, in order. A reference with neither tag nor digest gets
/// `:latest`.
pub fn resolve(input: &str, search: &[String]) -> Result<Vec<Reference>, ReferenceError> {
    let bad = |reason: String| ReferenceError {
        reference: input.to_owned(),
        reason,
    };
    let parsed = parse(input).map_err(bad)?;
    let complete = |registry: &str| {
        let registry = canonical_registry(registry);
        let mut repository = parsed.path.clone();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let tag = match (&parsed.tag, &parsed.digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (t, _) => t.clone(),
        };
        Reference {
            registry,
            repository,
            tag,
            digest: parsed.digest.clone(),
        }
    };
    match &parsed.domain {
        Some(domain) => Ok(vec![complete(domain)]),
        None if search.is_empty() => Err(bad(
            "a short name needs a registry, and image.short_name_search is empty".to_owned(),
        )),
        None => Ok(search.iter().map(|r| complete(r)).collect()),
    }
}

/// `index.docker.io` and `registry-1.docker.io` are Docker Hub's `docker.io`.
fn canonical_registry(r: &str) -> String {
    match r {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

/// The pieces of a reference before completion.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Longest name the distribution grammar allows.
const NAME_MAX: usize = 255;

fn parse(input: &str) -> Result<Parsed, String> {
    if input.is_empty() {
        return Err("empty reference".to_owned());
    }
    if input.len() > 4096 || input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(Digest::parse(d)?)),
        None => (input, None),
    };
    // A tag is after the last ':' that follows the last '/', so `host:5000/x` is no tag.
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        valid_tag(tag)?;
    }
    if name.is_empty() {
        return Err("no repository name".to_owned());
    }
    if name.len() > NAME_MAX {
        return Err(format!("name is longer than {NAME_MAX} characters"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if let Some(d) = domain {
        crate::config::registry_host(d)?;
    }
    for component in path.split('/') {
        valid_component(component)?;
    }
    Ok(Parsed {
        domain: domain.map(str::to_owned),
        path: path.to_owned(),
        tag: tag.map(str::to_owned),
        digest,
    })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> Result<(), String> {
    let err = || {
        format!(
            "repository component `{c}` must be lowercase letters and digits, separated by \
             '.', '_', '__' or dashes"
        )
    };
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(err());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(err());
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(t: &str) -> Result<(), String> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    if b.is_empty()
        || b.len() > 128
        || !word(b[0])
        || !b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    {
        return Err(format!(
            "tag `{t}` must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn one(s: &str) -> Reference {
        let mut v = resolve(s, &["docker.io".to_owned()]).expect(s);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn short_names_complete_to_docker_library() {
        let r = one("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(one("user/app:1").to_string(), "docker.io/user/app:1");
        assert_eq!(
            one("index.docker.io/busybox").to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn short_names_try_each_search_registry_in_order() {
        let search = ["quay.io".to_owned(), "docker.io".to_owned()];
        let v = resolve("busybox:1", &search).expect("resolve");
        let names: Vec<_> = v.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["quay.io/busybox:1", "docker.io/library/busybox:1"]);
        assert!(resolve("busybox", &[]).is_err());
    }

    #[test]
    fn domains_ports_tags_and_digests() {
        let r = one("127.0.0.1:5000/a/b:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r = one("localhost:5000/x");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = one(&format!("localhost/x@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(r.manifest_ref(), D);
        let r = one(&format!("quay.io/x:t@{D}"));
        assert_eq!(r.manifest_ref(), D, "the digest wins over the tag");
    }

    #[test]
    fn malformed_references_are_rejected_with_a_reason() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "busybox@sha256:xyz",
            "busybox@md5:0123",
            "in valid",
            "-x",
            "x-",
            "docker.io/",
            "host:0/x",
        ] {
            let err = resolve(bad, &["docker.io".to_owned()]).expect_err(bad);
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn component_separators() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a1"] {
            assert!(valid_component(ok).is_ok(), "{ok}");
        }
        for bad in ["a___b", "a.-b", "_a", "a..b"] {
            assert!(valid_component(bad).is_err(), "{bad}");
        }
    }
}

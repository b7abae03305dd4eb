//! Manifest, index and config documents (OCI and Docker schema 2), and platform selection.
//!
//! Only the fields crid acts on are modelled; the raw bytes are kept in the content store,
//! so nothing is lost by ignoring the rest.

use serde::{Deserialize, Serialize};

/// oci-image:manifest.md — an image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// oci-image:image-index.md — an index of manifests.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the Docker flavour of an index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest type crid understands. docker-registry 2.8 answers MANIFEST_UNKNOWN for an
/// index and rewrites Docker manifests to schema 1 unless the type is accepted, so all four
/// are always sent.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// oci-image:descriptor.md — what a manifest or index points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>` of the target's bytes.
    pub digest: String,
    /// The target's size in bytes.
    pub size: u64,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// oci-image:image-index.md#platform-variants — os/architecture/variant of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, ...
    #[serde(default)]
    pub os: String,
    /// GOARCH values: `amd64`, `arm64`, `arm`, ...
    #[serde(default)]
    pub architecture: String,
    /// CPU variant: `v7` for arm, `v8` for arm64, `v2`.. for amd64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index, told apart by media type (header or `mediaType` field) and shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// `schemaVersion` (2 for everything crid accepts).
    #[serde(default)]
    pub schema_version: u32,
    /// Media type the document declares, if it does.
    #[serde(default)]
    pub media_type: Option<String>,
    /// An image manifest's config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// An image manifest's layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// An index's entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a fetched document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OCI or Docker image manifest.
    Manifest,
    /// An OCI index or Docker manifest list.
    Index,
}

impl Document {
    /// Parses and classifies a manifest document; `content_type` is the response header.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<(Document, Kind), String> {
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest document: {e}"))?;
        let declared = doc
            .media_type
            .as_deref()
            .or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
        let kind = match declared {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => Kind::Index,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => Kind::Manifest,
            // A document with no usable type is judged by its shape (OCI allows omitting it).
            _ if doc.config.is_some() => Kind::Manifest,
            _ if !doc.manifests.is_empty() => Kind::Index,
            Some(other) => return Err(format!("unsupported manifest media type `{other}`")),
            None => return Err("document is neither a manifest nor an index".to_owned()),
        };
        if doc.schema_version != 2 {
            return Err(format!(
                "schemaVersion {} is not supported (only 2; schema 1 is deprecated)",
                doc.schema_version
            ));
        }
        if kind == Kind::Manifest && doc.config.is_none() {
            return Err("image manifest has no config".to_owned());
        }
        Ok((doc, kind))
    }
}

/// oci-image:config.md — the parts of an image config crid reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// Architecture the image is built for.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Execution parameters.
    #[serde(default)]
    pub config: Option<ExecConfig>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// oci-image:config.md#properties — `config`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExecConfig {
    /// `User`: uid, name, uid:gid or name:group.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `Env`, `KEY=value`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `StopSignal`, e.g. `SIGQUIT` or `3`.
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
}

/// oci-image:config.md#properties — `rootfs`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Diff IDs, in layer order.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The platform crid runs images for: linux and the host's architecture and variant.
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        os: "linux".to_owned(),
        architecture: architecture.to_owned(),
        variant: variant.map(str::to_owned),
    }
}

/// How well `candidate` fits `host`: `None` when it cannot run, lower is better.
///
/// Variant rules (containerd's): arm64 treats no variant as v8; arm runs its own variant
/// and older ones (v7 runs v6 and v5), preferring the newest; amd64 runs no variant or v1
/// (a v2+ build needs CPU features crid does not probe, so it is never chosen).
pub fn platform_rank(host: &Platform, candidate: &Platform) -> Option<u32> {
    if candidate.os != host.os || candidate.architecture != host.architecture {
        return None;
    }
    let level = |v: Option<&str>| -> Option<u32> { v?.strip_prefix('v')?.parse().ok() };
    let cand = candidate.variant.as_deref().filter(|v| !v.is_empty());
    match host.architecture.as_str() {
        "amd64" => match cand {
            None => Some(0),
            Some("v1") => Some(1),
            Some(_) => None,
        },
        "arm64" => match cand {
            None | Some("v8") => Some(0),
            Some(_) => None,
        },
        "arm" => {
            let host_level = level(host.variant.as_deref()).unwrap_or(7);
            match cand {
                // No variant on arm conventionally means v7 in practice: accept, rank last.
                None => Some(100),
                Some(v) => {
                    let l = level(Some(v))?;
                    (l <= host_level).then(|| host_level - l)
                }
            }
        }
        _ => match (cand, host.variant.as_deref()) {
            (None, _) => Some(0),
            (Some(c), Some(h)) if c == h => Some(0),
            _ => None,
        },
    }
}

/// The index entry to pull for `host`, the best-ranked one, first in the index on a tie.
pub fn select_platform<'a>(entries: &'a [Descriptor], host: &Platform) -> Option<&'a Descriptor> {
    entries
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            platform_rank(host, p).map(|r| (r, d))
        })
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: format!(
                "sha256:{}",
                format!("{n:x}").repeat(64).get(..64).unwrap_or("")
            ),
            size: 1,
            platform: Some(Platform {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: variant.map(str::to_owned),
            }),
        }
    }

    fn p(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    // oci-image:image-index.md#platform-variants
    #[test]
    fn index_resolves_to_the_host_platform() {
        let entries = [
            entry("linux", "arm64", Some("v8"), 1),
            entry("windows", "amd64", None, 2),
            entry("linux", "amd64", Some("v3"), 3),
            entry("linux", "amd64", None, 4),
            entry("unknown", "unknown", None, 5),
        ];
        let amd = select_platform(&entries, &p("amd64", None)).expect("amd64");
        assert_eq!(amd.digest, entries[3].digest);
        let arm = select_platform(&entries, &p("arm64", Some("v8"))).expect("arm64");
        assert_eq!(arm.digest, entries[0].digest);
        assert!(select_platform(&entries, &p("s390x", None)).is_none());
    }

    #[test]
    fn arm_variant_rules() {
        let host = p("arm", Some("v7"));
        assert_eq!(platform_rank(&host, &p("arm", Some("v7"))), Some(0));
        assert_eq!(platform_rank(&host, &p("arm", Some("v6"))), Some(1));
        assert_eq!(platform_rank(&host, &p("arm", Some("v8"))), None);
        let entries = [
            entry("linux", "arm", Some("v5"), 1),
            entry("linux", "arm", Some("v6"), 2),
        ];
        let got = select_platform(&entries, &host).expect("arm");
        assert_eq!(
            got.digest, entries[1].digest,
            "newest runnable variant wins"
        );
        assert_eq!(
            platform_rank(&p("arm64", Some("v8")), &p("arm64", None)),
            Some(0)
        );
        assert_eq!(
            platform_rank(&p("amd64", None), &p("amd64", Some("v1"))),
            Some(1)
        );
    }

    #[test]
    fn documents_are_classified_by_type_then_shape() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:a","size":1},"layers":[]}"#;
        assert_eq!(
            Document::parse(m, None).expect("manifest").1,
            Kind::Manifest
        );
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(Document::parse(i, None).expect("list").1, Kind::Index);
        let s1 = br#"{"schemaVersion":1,"config":{"digest":"sha256:a","size":1}}"#;
        assert!(Document::parse(s1, None).is_err());
        assert!(Document::parse(b"{}", Some("text/plain")).is_err());
    }
}

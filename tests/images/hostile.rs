//! Hostile images (issue 16, part 3), one systematic pass: each trick a layer, a blob or a
//! manifest can play is pushed to the real registry fixture and pulled through the real
//! daemon. Each must be refused with an error that names the problem, and a recursive
//! listing of the daemon's directory and of a canary directory outside it must be the same
//! before and after: nothing written outside, no partial layer or blob left behind.
//!
//! Setuid files and device nodes are content real images carry (ping, sudo, the nodes of a
//! base image's /dev): they are unpacked, and the test checks they land only inside the
//! layer's own directory, under the 0700 store (tests/images/security.rs shows that store
//! keeps them out of other users' reach).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crid_conformance::fixtures::image::{Blob, LATEST};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use tonic::{Code, Status};

use super::build::{self, Custom, Entry};
use super::proxy::{Mode, Proxy};
use super::{Client, client, corrupt_blob, daemon, layers_dir, list, pull, registry};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The limits the daemon of this test runs with: small, so bombs stay cheap.
const LAYER_LIMIT: u64 = 16 << 20;
const IMAGE_LIMIT: u64 = 24 << 20;

/// Every path under `dir` (not following symlinks), with its kind, sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let kind = if m.is_dir() {
                'd'
            } else if m.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            out.insert(format!("{kind} {rel}"));
            if m.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// One entry of [`raw_tar`]: name, type, mode, link name, device (major, minor).
type RawEntry<'a> = (&'a str, tar::EntryType, u32, &'a str, (u32, u32));

/// A tar with entries of any type: mode, device numbers and link names as given.
fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, link, (major, minor)) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("path");
        h.set_entry_type(*kind);
        h.set_size(0);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if !link.is_empty() {
            h.set_link_name(link).expect("link");
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(*major).expect("major");
            h.set_device_minor(*minor).expect("minor");
        }
        h.set_cksum();
        b.append(&h, &b""[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

/// How a case reaches the registry.
enum Push {
    /// Gzip layers, each an uncompressed tar.
    Layers(Vec<Vec<u8>>),
    /// (diff ID source tar, blob as served): lets the config and the blob disagree.
    Served(Vec<(Vec<u8>, Vec<u8>)>),
    /// One layer whose blob is overwritten in the registry's storage after the push.
    CorruptedInRegistry(Vec<u8>),
    /// The manifest's layer descriptor gives the wrong size.
    WrongSize(Vec<u8>, i64),
    /// An index whose amd64/linux entry is itself an index.
    NestedIndex(Vec<u8>),
    /// One layer, served through a proxy that closes the connection mid-blob.
    CutMidBlob(Vec<u8>),
}

/// What the pull must answer.
enum Want {
    /// Refused with this code and a message containing this.
    Refused(Code, &'static str),
    /// Refused with one of these codes (a transport failure may surface either way).
    RefusedAny(&'static [Code]),
    /// Accepted: the new paths are only inside the layer store and image records.
    Confined,
}

struct Case {
    what: &'static str,
    push: Push,
    want: Want,
}

fn cases(canary: &Path) -> Vec<Case> {
    let c = canary.display().to_string();
    let rel_c = c.trim_start_matches('/');
    let up = "../".repeat(12);
    let file = |name: &str| build::tar(&[Entry::File(name, b"escaped")]);
    let zeros = |name: &str, len: usize| build::tar(&[Entry::File(name, &vec![0u8; len])]);
    // A distinct 1 MiB layer per case: the registry stores blobs once for all repositories,
    // and one case corrupts its blob there.
    let payload = |seed: u64| build::tar(&[Entry::File("data", &build::noise(1 << 20, seed))]);
    let truncated = {
        let gz = build::gzip(&payload(11));
        gz[..gz.len() / 2].to_vec()
    };
    use Code as K;
    use tar::EntryType as T;
    vec![
        Case {
            what: "`..` entry",
            push: Push::Layers(vec![file(&format!("{up}{rel_c}/dotdot"))]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "absolute path",
            push: Push::Layers(vec![file(&format!("{c}/absolute"))]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "absolute symlink, then a file through it",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("a", &c),
                Entry::File("a/through-abs-link", b"x"),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "relative symlink climbing out, then a file through it",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("a", &up),
                Entry::File(&format!("a/{rel_c}/through-rel-link"), b"x"),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "chain of symlinks to /, then a file through it",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("b", "/"),
                Entry::Symlink("a", "b"),
                Entry::File(&format!("a/{rel_c}/through-chain"), b"x"),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "hard link to ../../etc/passwd",
            push: Push::Layers(vec![build::tar(&[Entry::Hardlink(
                "h",
                &format!("{up}etc/passwd"),
            )])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "hard link to the canary through a symlink",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("s", &c),
                Entry::Hardlink("h", "s/victim"),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "whiteout of a path outside (`..`)",
            push: Push::Layers(vec![file(&format!("{up}{rel_c}/.wh.victim"))]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "whiteout through a symlink to the canary",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("w", &c),
                Entry::File("w/.wh.victim", b""),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "opaque whiteout through a symlink to the canary",
            push: Push::Layers(vec![build::tar(&[
                Entry::Symlink("w", &c),
                Entry::File("w/.wh..wh..opq", b""),
            ])]),
            want: Want::Refused(K::Unknown, "unsafe entry"),
        },
        Case {
            what: "gzip bomb (64 MiB of zeros, layer limit 16 MiB)",
            push: Push::Layers(vec![zeros("bomb", 64 << 20)]),
            want: Want::Refused(K::ResourceExhausted, "max_layer_unpacked_bytes"),
        },
        Case {
            what: "two 14 MiB layers (image limit 24 MiB)",
            push: Push::Layers(vec![zeros("one", 14 << 20), zeros("two", 14 << 20)]),
            want: Want::Refused(K::ResourceExhausted, "max_image_unpacked_bytes"),
        },
        Case {
            what: "truncated gzip blob (its own digest is right)",
            push: Push::Served(vec![(payload(11), truncated)]),
            want: Want::Refused(K::Unknown, "malformed layer archive"),
        },
        Case {
            what: "blob cut short by the connection",
            push: Push::CutMidBlob(payload(13)),
            want: Want::RefusedAny(&[K::Unavailable, K::DataLoss, K::Unknown]),
        },
        Case {
            what: "config diff ID lies about the layer",
            push: Push::Served(vec![(file("other"), build::gzip(&payload(15)))]),
            want: Want::Refused(K::DataLoss, "diff ID mismatch"),
        },
        Case {
            what: "registry serves other bytes than the manifest's digest",
            push: Push::CorruptedInRegistry(payload(17)),
            want: Want::Refused(K::DataLoss, "digest"),
        },
        Case {
            what: "manifest gives a layer size too small",
            push: Push::WrongSize(payload(19), -100),
            want: Want::RefusedAny(&[K::DataLoss, K::Unknown]),
        },
        Case {
            what: "manifest gives a layer size too large",
            push: Push::WrongSize(payload(21), 100),
            want: Want::RefusedAny(&[K::DataLoss, K::Unknown, K::Unavailable]),
        },
        Case {
            what: "index whose entry is another index (the only loop content addressing allows)",
            push: Push::NestedIndex(payload(23)),
            want: Want::Refused(K::Unknown, "another index"),
        },
        Case {
            what: "setuid-root file, char and block device nodes",
            push: Push::Layers(vec![raw_tar(&[
                ("bin", T::Directory, 0o755, "", (0, 0)),
                ("bin/suid", T::Regular, 0o4755, "", (0, 0)),
                ("bin/sgid", T::Regular, 0o2755, "", (0, 0)),
                ("dev", T::Directory, 0o755, "", (0, 0)),
                ("dev/mem", T::Char, 0o666, "", (1, 1)),
                ("dev/disk", T::Block, 0o666, "", (7, 0)),
            ])]),
            want: Want::Confined,
        },
    ]
}

fn gz_layers(tars: &[Vec<u8>]) -> Custom {
    Custom::new(
        tars.iter()
            .map(|t| (build::LAYER_GZIP, t.clone(), build::gzip(t)))
            .collect(),
    )
}

/// A manifest for `img` with the first layer's size moved by `delta`.
fn resized_manifest(img: &Custom, delta: i64) -> Blob {
    let mut m: serde_json::Value = serde_json::from_slice(img.manifest.data()).expect("json");
    let size = m["layers"][0]["size"].as_i64().expect("size");
    m["layers"][0]["size"] = serde_json::json!(size + delta);
    Blob::new(build::OCI_MANIFEST, serde_json::to_vec(&m).expect("json"))
}

/// Pushes `case` as `name:latest`; the reference to pull.
async fn push(reg: &Registry, cut: &Proxy, name: &str, push: &Push) -> String {
    let tag = |host: String| format!("{host}/{name}:{LATEST}");
    match push {
        Push::Layers(tars) => gz_layers(tars).push(reg, name, LATEST).await,
        Push::Served(pairs) => {
            Custom::new(
                pairs
                    .iter()
                    .map(|(tar, blob)| (build::LAYER_GZIP, tar.clone(), blob.clone()))
                    .collect(),
            )
            .push(reg, name, LATEST)
            .await
        }
        Push::CorruptedInRegistry(tar) => {
            let img = gz_layers(std::slice::from_ref(tar));
            img.push(reg, name, LATEST).await;
            corrupt_blob(reg, img.layers[0].digest().as_str());
        }
        Push::WrongSize(tar, delta) => {
            let img = gz_layers(std::slice::from_ref(tar));
            img.push(reg, name, "honest").await;
            reg.client()
                .push_manifest(name, LATEST, &resized_manifest(&img, *delta))
                .await
                .expect("push the lying manifest");
        }
        Push::NestedIndex(tar) => {
            let img = gz_layers(std::slice::from_ref(tar));
            img.push(reg, name, "inner").await;
            let platform = serde_json::json!({"architecture": "amd64", "os": "linux"});
            let inner = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{
                    "mediaType": build::OCI_MANIFEST,
                    "digest": img.manifest.digest().as_str(),
                    "size": img.manifest.size(),
                    "platform": platform,
                }],
            });
            let inner = Blob::new(OCI_INDEX, serde_json::to_vec(&inner).expect("json"));
            let outer = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{
                    "mediaType": OCI_INDEX,
                    "digest": inner.digest().as_str(),
                    "size": inner.size(),
                    "platform": platform,
                }],
            });
            let outer = Blob::new(OCI_INDEX, serde_json::to_vec(&outer).expect("json"));
            let c = reg.client();
            c.push_manifest(name, inner.digest().as_str(), &inner)
                .await
                .expect("push the inner index");
            c.push_manifest(name, LATEST, &outer)
                .await
                .expect("push the outer index");
        }
        Push::CutMidBlob(tar) => {
            gz_layers(std::slice::from_ref(tar))
                .push(reg, name, LATEST)
                .await;
            return tag(cut.host());
        }
    }
    tag(reg.host())
}

async fn pull_bounded(c: &mut Client, image: &str) -> Result<String, Status> {
    tokio::time::timeout(Duration::from_secs(120), pull(c, image))
        .await
        .unwrap_or_else(|_| panic!("{image}: the pull did not end within 120 s"))
}

fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        after.difference(before).cloned().collect(),
        before.difference(after).cloned().collect(),
    )
}

// oci-image:layer.md#filesystem-changeset, #whiteouts; oci-image:descriptor.md#digests;
// cri:ImageService.PullImage#errors
#[tokio::test(flavor = "multi_thread")]
async fn hostile_images_are_refused_and_write_nothing_outside_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    // Enough for the manifest and config (under 4 KiB); the 1 MiB layer is cut short.
    let cut = Proxy::start(reg.addr(), Mode::CutAfter(64 << 10));
    let canary = tempfile::Builder::new()
        .prefix("crid-hostile-canary-")
        .tempdir()
        .expect("canary dir");
    std::fs::write(canary.path().join("victim"), b"untouched").expect("victim");
    let passwd_links = std::fs::metadata("/etc/passwd").expect("passwd").nlink();
    let d = daemon(
        &[&reg.host(), &cut.host()],
        &format!(
            "max_layer_unpacked_bytes = {LAYER_LIMIT}\nmax_image_unpacked_bytes = {IMAGE_LIMIT}\n"
        ),
    );
    let mut c = client(&d).await;

    // A benign image first, so the store's lazily made directories exist in `before`.
    let benign = gz_layers(&[build::tar(&[Entry::File("hello", b"hello")])]);
    benign.push(&reg, "benign", LATEST).await;
    pull_bounded(&mut c, &reg.image_ref("benign", LATEST))
        .await
        .expect("benign pull");

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, case) in cases(canary.path()).into_iter().enumerate() {
        let name = format!("hostile{i}");
        let image = push(&reg, &cut, &name, &case.push).await;
        let images_before = list(&mut c).await.len();
        let root_before = listing(d.path());
        let canary_before = listing(canary.path());
        let got = pull_bounded(&mut c, &image).await;
        let (added, removed) = diff(&root_before, &listing(d.path()));
        let canary_after = listing(canary.path());
        let mut problems = Vec::new();
        if canary_after != canary_before {
            problems.push(format!(
                "canary changed: {:?}",
                diff(&canary_before, &canary_after)
            ));
        }
        if std::fs::read(canary.path().join("victim")).ok().as_deref() != Some(&b"untouched"[..]) {
            problems.push("the canary's victim file was changed or hidden".to_owned());
        }
        if std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok() != Some(passwd_links) {
            problems.push("/etc/passwd gained a link".to_owned());
        }
        if !removed.is_empty() {
            problems.push(format!("removed from the daemon's directory: {removed:?}"));
        }
        let outcome = match (&case.want, &got) {
            (Want::Refused(code, says), Err(e)) => {
                if e.code() != *code || !e.message().contains(says) {
                    problems.push(format!("want {code:?} saying `{says}`"));
                }
                format!("{:?}: {}", e.code(), e.message())
            }
            (Want::RefusedAny(codes), Err(e)) => {
                if !codes.contains(&e.code()) {
                    problems.push(format!("want one of {codes:?}"));
                }
                format!("{:?}: {}", e.code(), e.message())
            }
            (Want::Confined, Ok(id)) => {
                let layers = "root/storage/layers/";
                let stray: Vec<&String> = added
                    .iter()
                    .filter(|p| {
                        let rel = &p[2..];
                        !(rel.starts_with(layers)
                            || rel.starts_with("root/image/")
                            || rel.starts_with("root/state/"))
                    })
                    .collect();
                if !stray.is_empty() {
                    problems.push(format!("wrote outside the store: {stray:?}"));
                }
                let diffs: Vec<&String> = added
                    .iter()
                    .filter(|p| p.ends_with("/diff/dev/mem") || p.ends_with("/diff/bin/suid"))
                    .collect();
                if diffs.len() != 2 {
                    problems.push(format!("the nodes are not in a layer's diff: {added:?}"));
                }
                format!("accepted as {id}, confined to {}", layers_dir(&d).display())
            }
            (_, Ok(id)) => {
                problems.push(format!("accepted as {id}"));
                "accepted".to_owned()
            }
            (Want::Confined, Err(e)) => {
                problems.push("refused".to_owned());
                format!("{:?}: {}", e.code(), e.message())
            }
        };
        if !matches!(case.want, Want::Confined) {
            if !added.is_empty() {
                problems.push(format!("left in the daemon's directory: {added:?}"));
            }
            if list(&mut c).await.len() != images_before {
                problems.push("an image record was kept".to_owned());
            }
        }
        eprintln!("hostile image: {} -> {outcome}", case.what);
        report.push(format!("{}: {outcome}", case.what));
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {outcome}\n    {}",
                case.what,
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\n\nall results:\n{}\n\ndaemon log:\n{}",
        failures.len(),
        failures.join("\n"),
        report.join("\n"),
        d.log()
    );
}

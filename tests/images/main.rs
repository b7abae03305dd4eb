//! ImageService against the real registry fixture (Debian's docker-registry on loopback),
//! driven over gRPC against the real crid binary. Every test needs root (the unpacker sets
//! ownership, device nodes and trusted.* xattrs) and says so in its name.
//!
//! Each test starts its own registry and daemon; guards stop both (by PID) and remove their
//! directories even when an assertion fails.

#[path = "../support/mod.rs"]
mod support;

mod build;
mod gateway;
mod hostile;
mod proxy;
mod security;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crid_api::runtime::v1 as cri;
use crid_api::runtime::v1::image_service_client::ImageServiceClient;
use crid_conformance::fixtures::image::{
    BUSYBOX, BUSYBOX_DOCKER, BUSYBOX_MULTIARCH, BUSYBOX_MULTIARCH_DOCKER, BuiltImage, FixtureSet,
    LATEST,
};
use crid_conformance::fixtures::registry::{
    Registry, RegistryOptions, TEST_PASSWORD, TEST_USERNAME,
};
use nix::sys::signal::Signal;
use support::TestDaemon;
use tonic::transport::Channel;
use tonic::{Code, Status};

use build::{Custom, Entry};
use proxy::{Mode, Proxy};

type Client = ImageServiceClient<Channel>;

fn setup_hint() -> &'static str {
    "run scripts/setup.sh (docker-registry, apache2-utils, busybox-static) as root"
}

async fn registry(opts: RegistryOptions) -> Registry {
    Registry::start(opts)
        .await
        .unwrap_or_else(|e| panic!("cannot start the registry fixture: {e}; {}", setup_hint()))
}

async fn registry_with_fixtures() -> (Registry, Arc<FixtureSet>) {
    let reg = registry(RegistryOptions::plain()).await;
    let set = reg.push_all_fixtures().await.expect("push fixtures");
    (reg, set)
}

fn toml_list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A daemon for which `insecure` are plain-HTTP registries.
fn daemon(insecure: &[&str], extra: &str) -> TestDaemon {
    TestDaemon::start(&format!(
        "[image]\ninsecure_registries = {}\n{extra}",
        toml_list(insecure)
    ))
}

async fn client(d: &TestDaemon) -> Client {
    ImageServiceClient::new(d.channel().await)
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

async fn pull(c: &mut Client, image: &str) -> Result<String, Status> {
    pull_auth(c, image, None).await
}

async fn pull_auth(
    c: &mut Client,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, Status> {
    c.pull_image(cri::PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

async fn status(c: &mut Client, image: &str, verbose: bool) -> cri::ImageStatusResponse {
    c.image_status(cri::ImageStatusRequest {
        image: spec(image),
        verbose,
    })
    .await
    .expect("ImageStatus")
    .into_inner()
}

async fn list(c: &mut Client) -> Vec<cri::Image> {
    c.list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images
}

async fn remove(c: &mut Client, image: &str) -> Result<(), Status> {
    c.remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .map(drop)
}

/// The config digest of the manifest crid must choose (the amd64/linux one of an index).
fn expected_id(img: &BuiltImage) -> String {
    let root: serde_json::Value = serde_json::from_slice(img.root().data()).expect("root json");
    let manifest = match root["manifests"].as_array() {
        None => root,
        Some(entries) => {
            let host = entries
                .iter()
                .find(|e| {
                    e["platform"]["architecture"] == "amd64" && e["platform"]["os"] == "linux"
                })
                .expect("amd64 entry");
            let blob = img
                .manifests()
                .iter()
                .find(|m| m.digest().as_str() == host["digest"].as_str().unwrap_or_default())
                .expect("child manifest");
            serde_json::from_slice(blob.data()).expect("child json")
        }
    };
    manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned()
}

fn layers_dir(d: &TestDaemon) -> PathBuf {
    d.path().join("root/storage/layers")
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Partial state an interrupted or failed pull could leave: temporary layer directories,
/// ingest files.
fn leftovers(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = names_in(&layers_dir(d))
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    v.extend(names_in(&d.path().join("root/image/ingest")));
    v
}

fn fixture<'a>(set: &'a FixtureSet, name: &str) -> &'a BuiltImage {
    set.get(name, LATEST).expect("fixture image")
}

fn diff_ids(d: &TestDaemon, id: &str) -> Vec<String> {
    let hex = id.trim_start_matches("sha256:");
    let blob =
        std::fs::read(d.path().join("root/image/blobs/sha256").join(hex)).expect("config blob");
    let config: serde_json::Value = serde_json::from_slice(&blob).expect("config json");
    config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|v| {
            v.as_str()
                .expect("str")
                .trim_start_matches("sha256:")
                .to_owned()
        })
        .collect()
}

// cri:ImageService.PullImage#image_ref, cri:ImageService.ListImages, cri:ImageService.ImageStatus,
// cri:ImageService.RemoveImage, cri:ImageService.ImageFsInfo, oci-image:layer.md#whiteouts
#[tokio::test(flavor = "multi_thread")]
async fn pull_list_status_remove_and_fs_info_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    let busybox = set.get(BUSYBOX, LATEST).expect("busybox");
    let want = expected_id(busybox);

    // cri:ImageService.PullImage#image_ref — the config digest, the same ID everywhere.
    let tag_ref = reg.image_ref(BUSYBOX, LATEST);
    let id = pull(&mut c, &tag_ref).await.expect("pull busybox");
    assert_eq!(id, want);
    let again = pull(&mut c, &reg.image_ref(BUSYBOX, "1.0"))
        .await
        .expect("pull second tag");
    assert_eq!(
        again, id,
        "another tag of the same manifest is the same image"
    );

    let images = list(&mut c).await;
    assert_eq!(images.len(), 1, "{images:?}");
    let img = &images[0];
    assert_eq!(img.id, id);
    assert_eq!(
        img.spec.as_ref().map(|s| s.image.as_str()),
        Some(id.as_str())
    );
    let mut tags = vec![tag_ref.clone(), reg.image_ref(BUSYBOX, "1.0")];
    tags.sort();
    assert_eq!(img.repo_tags, tags);
    let digest_ref = reg.image_ref_by_digest(BUSYBOX, busybox.digest());
    assert_eq!(img.repo_digests, vec![digest_ref.clone()]);
    let blob_total: u64 = busybox.blobs().iter().map(|b| b.size()).sum();
    assert_eq!(img.size, blob_total, "config + layers as served");

    // cri:ImageService.ImageStatus — by tag, ID, ID prefix and digest reference.
    for name in [
        tag_ref.as_str(),
        id.as_str(),
        &id[..19],
        digest_ref.as_str(),
    ] {
        let st = status(&mut c, name, false).await;
        assert_eq!(
            st.image.as_ref().map(|i| i.id.as_str()),
            Some(id.as_str()),
            "{name}"
        );
        assert!(st.info.is_empty());
    }
    // cri:ImageService.ImageStatus#verbose — info["info"] carries the image config.
    let st = status(&mut c, &tag_ref, true).await;
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("info is JSON");
    assert_eq!(info["imageSpec"]["rootfs"]["type"], "layers");
    assert_eq!(info["manifestDigest"], busybox.digest().as_str());
    // cri:ImageService.ImageStatus#absent — a nil image, not an error.
    let st = status(&mut c, &reg.image_ref(BUSYBOX, "no-such-tag"), false).await;
    assert!(st.image.is_none());

    // cri:ImageService.ListImages#filter
    let filtered = c
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec(&reg.image_ref(BUSYBOX, "1.0")),
            }),
        })
        .await
        .expect("filtered")
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let none = c
        .list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: spec(&reg.image_ref("nothing", LATEST)),
            }),
        })
        .await
        .expect("filtered")
        .into_inner()
        .images;
    assert!(none.is_empty());
    // cri:ImageService.StreamImages — the same images, streamed.
    let mut stream = c
        .stream_images(cri::StreamImagesRequest { filter: None })
        .await
        .expect("StreamImages")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(batch) = stream.message().await.expect("stream") {
        streamed.extend(batch.images);
    }
    assert_eq!(streamed, images);

    // The layers are unpacked overlay-ready: whiteouts as 0:0 character devices.
    let diffs = diff_ids(&d, &id);
    assert_eq!(names_in(&layers_dir(&d)), {
        let mut v = diffs.clone();
        v.sort();
        v
    });
    let base = layers_dir(&d).join(&diffs[0]).join("diff");
    assert!(base.join("bin/busybox").is_file(), "base layer unpacked");
    let top = layers_dir(&d).join(&diffs[1]).join("diff");
    let wh = std::fs::symlink_metadata(top.join("etc/fixture/removed-by-upper")).expect("whiteout");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    // cri:ImageService.ImageFsInfo — real usage of the store, with the mount point.
    let fs = c
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let image_fs = &fs.image_filesystems[0];
    let used = image_fs.used_bytes.as_ref().expect("bytes").value;
    assert!(
        used >= 1_000_000,
        "busybox is over 1 MB unpacked, got {used}"
    );
    assert!(image_fs.inodes_used.as_ref().expect("inodes").value > 10);
    let mount = &image_fs.fs_id.as_ref().expect("fs id").mountpoint;
    assert!(
        d.path().canonicalize().expect("canon").starts_with(mount),
        "{mount}"
    );
    assert_eq!(fs.container_filesystems.len(), 1);

    // cri:ImageService.RemoveImage — by one tag removes the image with every tag, its
    // layers and blobs; idempotent.
    remove(&mut c, &reg.image_ref(BUSYBOX, "1.0"))
        .await
        .expect("remove");
    assert!(list(&mut c).await.is_empty());
    assert!(status(&mut c, &tag_ref, false).await.image.is_none());
    assert!(names_in(&layers_dir(&d)).is_empty(), "layers collected");
    assert!(
        names_in(&d.path().join("root/image/blobs/sha256")).is_empty(),
        "blobs collected"
    );
    remove(&mut c, &tag_ref)
        .await
        .expect("removing again is OK");
    remove(&mut c, &id)
        .await
        .expect("removing an absent ID is OK");
    let fs2 = c
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    assert!(
        fs2.image_filesystems[0]
            .used_bytes
            .as_ref()
            .expect("bytes")
            .value
            < used
    );
}

// oci-image:image-index.md, Docker schema 2 manifest and manifest list; cri:ImageService.PullImage#digest
#[tokio::test(flavor = "multi_thread")]
async fn index_docker_types_and_digest_pulls_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    for name in [BUSYBOX_MULTIARCH, BUSYBOX_DOCKER, BUSYBOX_MULTIARCH_DOCKER] {
        let img = fixture(&set, name);
        let id = pull(&mut c, &reg.image_ref(name, LATEST))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(id, expected_id(img), "{name}: the host platform's config");
        let st = status(&mut c, &reg.image_ref(name, LATEST), false).await;
        let image = st.image.expect("status");
        // The repo digest names what the tag resolved to: the index for a multi-arch image.
        assert_eq!(
            image.repo_digests,
            vec![reg.image_ref_by_digest(name, img.digest())],
            "{name}"
        );
    }
    // Shared base layer: unpacked once for all the images that have it.
    let busy_layers = diff_ids(&d, &expected_id(fixture(&set, BUSYBOX_DOCKER)));
    assert!(layers_dir(&d).join(&busy_layers[0]).is_dir());

    // By digest: recorded under its digest, with no tag.
    let busybox = fixture(&set, BUSYBOX);
    let by_digest = reg.image_ref_by_digest(BUSYBOX, busybox.digest());
    let id = pull(&mut c, &by_digest).await.expect("pull by digest");
    assert_eq!(id, expected_id(busybox));
    let image = status(&mut c, &by_digest, false)
        .await
        .image
        .expect("status by digest");
    assert!(image.repo_tags.is_empty(), "{:?}", image.repo_tags);
    assert_eq!(image.repo_digests, vec![by_digest.clone()]);
    // A digest that does not exist is NotFound.
    let missing = format!("{}/{BUSYBOX}@sha256:{}", reg.host(), "0".repeat(64));
    let err = pull(&mut c, &missing).await.expect_err("unknown digest");
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

// oci-image:layer.md#zstd-media-types, oci-image:layer.md (uncompressed tar); config User → Image.uid
#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_layers_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let l1 = build::tar(&[Entry::Dir("etc/"), Entry::File("etc/zstd", b"from zstd")]);
    let l2 = build::tar(&[
        Entry::File("etc/plain", b"from a plain tar"),
        Entry::Symlink("etc/link", "zstd"),
    ]);
    let l3 = build::tar(&[
        Entry::File("etc/gzip", b"from gzip"),
        Entry::File("etc/.wh.zstd", b""),
    ]);
    let img = Custom::new(vec![
        (build::LAYER_ZSTD, l1.clone(), build::zstd(&l1)),
        (build::LAYER_TAR, l2.clone(), l2.clone()),
        (build::LAYER_GZIP, l3.clone(), build::gzip(&l3)),
    ]);
    img.push(&reg, "mixed", "v1").await;
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    let id = pull(&mut c, &reg.image_ref("mixed", "v1"))
        .await
        .expect("pull");
    assert_eq!(id, img.id());
    let root = layers_dir(&d);
    let hex = |i: usize| img.diff_ids[i].trim_start_matches("sha256:").to_owned();
    assert_eq!(
        std::fs::read(root.join(hex(0)).join("diff/etc/zstd")).expect("zstd"),
        b"from zstd"
    );
    assert_eq!(
        std::fs::read(root.join(hex(1)).join("diff/etc/plain")).expect("tar"),
        b"from a plain tar"
    );
    assert_eq!(
        std::fs::read(root.join(hex(2)).join("diff/etc/gzip")).expect("gzip"),
        b"from gzip"
    );
    let image = status(&mut c, &id, false).await.image.expect("status");
    assert_eq!(
        image.uid,
        Some(cri::Int64Value { value: 1000 }),
        "User 1000:1000"
    );
    assert_eq!(image.username, "");
}

// Error classes, each naming the image: cri:ImageService.PullImage#errors
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_the_right_status_and_leaves_nothing_needs_root() {
    let (reg, _set) = registry_with_fixtures().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let dead_host = dead.to_string(); // the listener is dropped: nothing listens there
    let d = daemon(&[&reg.host(), &dead_host], "");
    let mut c = client(&d).await;

    for bad in ["", "UPPER/case", "busybox:", "busybox@sha256:abc", "a b"] {
        let err = pull(&mut c, bad).await.expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
        assert!(
            err.message().contains("image.image"),
            "names the field: {err}"
        );
    }
    let bad_status = c
        .image_status(cri::ImageStatusRequest {
            image: spec("UPPER/case"),
            verbose: false,
        })
        .await
        .expect_err("malformed");
    assert_eq!(bad_status.code(), Code::InvalidArgument);

    let unknown_repo = reg.image_ref("no-such-repo", LATEST);
    let err = pull(&mut c, &unknown_repo).await.expect_err("unknown repo");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("no-such-repo"), "{err}");
    let err = pull(&mut c, &reg.image_ref(BUSYBOX, "no-such-tag"))
        .await
        .expect_err("unknown tag");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("MANIFEST_UNKNOWN"),
        "quotes the registry: {err}"
    );

    let err = pull(&mut c, &format!("{dead_host}/{BUSYBOX}:{LATEST}"))
        .await
        .expect_err("unreachable");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains(&dead_host), "{err}");

    assert!(list(&mut c).await.is_empty());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    assert!(names_in(&layers_dir(&d)).is_empty());
}

fn basic(user: &str, pass: &str) -> Option<cri::AuthConfig> {
    Some(cri::AuthConfig {
        username: user.to_owned(),
        password: pass.to_owned(),
        ..Default::default()
    })
}

// Basic auth against docker-registry's htpasswd: cri:ImageService.PullImage#auth
#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry_needs_root() {
    let reg = registry(RegistryOptions::basic_auth()).await;
    let set = reg.push_all_fixtures().await.expect("push");
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    let image = reg.image_ref(BUSYBOX, LATEST);

    let err = pull(&mut c, &image).await.expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = pull_auth(&mut c, &image, basic(TEST_USERNAME, "wrong"))
        .await
        .expect_err("bad password");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("rejected"), "{err}");
    assert!(
        !err.message().contains("wrong"),
        "never echoes the password: {err}"
    );

    let id = pull_auth(&mut c, &image, basic(TEST_USERNAME, TEST_PASSWORD))
        .await
        .expect("username/password");
    assert_eq!(id, expected_id(fixture(&set, BUSYBOX)));
    // `auth` = base64(user:pass), as a kubelet pull secret sends it.
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{TEST_USERNAME}:{TEST_PASSWORD}"));
    let id2 = pull_auth(
        &mut c,
        &reg.image_ref(BUSYBOX_DOCKER, LATEST),
        Some(cri::AuthConfig {
            auth,
            ..Default::default()
        }),
    )
    .await
    .expect("auth field");
    assert_eq!(id2, expected_id(fixture(&set, BUSYBOX_DOCKER)));
    let err = pull_auth(
        &mut c,
        &image,
        Some(cri::AuthConfig {
            auth: "not base64!".into(),
            ..Default::default()
        }),
    )
    .await
    .expect_err("malformed auth");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("auth.auth"), "{err}");
}

// Mirrors tried in order, a dead one skipped, and the origin as the last resort; short
// names completed through the search list, falling through registries that lack the image.
#[tokio::test(flavor = "multi_thread")]
async fn mirrors_fail_over_and_short_names_resolve_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let empty = registry(RegistryOptions::plain()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let host = reg.host();
    let extra = format!(
        "short_name_search = {}\n[image.mirrors]\n\"mirrored.example\" = [\"http://{dead}\", \"http://{host}\"]\n\"{host}\" = [\"http://{dead}\"]\n",
        toml_list(&[&empty.host(), &host]),
    );
    let d = daemon(&[&host, &empty.host(), &dead], &extra);
    let mut c = client(&d).await;
    let want = expected_id(fixture(&set, BUSYBOX));

    // mirrored.example itself does not exist: only the second mirror can serve this.
    let id = pull(&mut c, &format!("mirrored.example/{BUSYBOX}:{LATEST}"))
        .await
        .expect("via the live mirror");
    assert_eq!(id, want);
    let image = status(
        &mut c,
        &format!("mirrored.example/{BUSYBOX}:{LATEST}"),
        false,
    )
    .await
    .image
    .expect("status");
    assert_eq!(
        image.repo_tags,
        vec![format!("mirrored.example/{BUSYBOX}:{LATEST}")],
        "recorded under the name asked for"
    );
    assert!(
        d.log().contains("mirror failed"),
        "the dead mirror was tried first"
    );

    // The only mirror is dead: the origin serves.
    let id = pull(&mut c, &reg.image_ref(BUSYBOX_DOCKER, LATEST))
        .await
        .expect("via the origin");
    assert_eq!(id, expected_id(fixture(&set, BUSYBOX_DOCKER)));

    // Short name: the empty registry says NotFound, the next one has it.
    let id = pull(&mut c, BUSYBOX_MULTIARCH).await.expect("short name");
    assert_eq!(id, expected_id(fixture(&set, BUSYBOX_MULTIARCH)));
    let image = status(&mut c, BUSYBOX_MULTIARCH, false)
        .await
        .image
        .expect("status by short name");
    assert_eq!(
        image.repo_tags,
        vec![reg.image_ref(BUSYBOX_MULTIARCH, LATEST)]
    );
    let err = pull(&mut c, "nowhere-to-be-found")
        .await
        .expect_err("in no registry");
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

/// Overwrites a blob's data in the registry's storage: the registry serves it unchecked.
fn corrupt_blob(reg: &Registry, digest: &str) {
    let hex = digest.trim_start_matches("sha256:");
    let path = reg
        .dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let path = if path.exists() {
        path
    } else {
        // The storage root's name is the fixture's business; find the blob under its dir.
        find_file(reg.dir(), &format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
            .expect("blob data in the registry")
    };
    let len = std::fs::metadata(&path).expect("blob").len() as usize;
    std::fs::write(&path, build::noise(len, 7)).expect("corrupt");
}

fn find_file(dir: &Path, suffix: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, suffix) {
                return Some(f);
            }
        } else if p.to_string_lossy().ends_with(suffix) {
            return Some(p);
        }
    }
    None
}

// oci-image:descriptor.md#digests — a corrupted blob aborts the pull and leaves nothing.
#[tokio::test(flavor = "multi_thread")]
async fn corrupted_blob_aborts_and_leaves_nothing_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let l1 = build::tar(&[Entry::File("a", &build::noise(300_000, 1))]);
    let l2 = build::tar(&[Entry::File("b", &build::noise(300_000, 2))]);
    let img = Custom::new(vec![
        (build::LAYER_GZIP, l1.clone(), build::gzip(&l1)),
        (build::LAYER_GZIP, l2.clone(), build::gzip(&l2)),
    ]);
    img.push(&reg, "corrupt", LATEST).await;
    corrupt_blob(&reg, img.layers[1].digest().as_str());
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    let err = pull(&mut c, &reg.image_ref("corrupt", LATEST))
        .await
        .expect_err("corrupted");
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    assert!(
        err.message().contains(img.layers[1].digest().as_str()),
        "names the blob: {err}"
    );
    assert!(list(&mut c).await.is_empty(), "no half image");
    let left: Vec<String> = names_in(&layers_dir(&d));
    assert!(
        !left.contains(&img.diff_ids[1].trim_start_matches("sha256:").to_owned()),
        "the corrupted layer is not kept: {left:?}"
    );
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

// Hostile layers served by a real registry: refused with a clear error, nothing outside.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let marker = format!("crid-it-escape-{}", std::process::id());
    let outside = std::env::temp_dir().join(&marker);
    let dotdot = format!("../../../../../../../../../../tmp/{marker}");
    let abs = format!("/tmp/{marker}");
    let through_link = format!("a/tmp/{marker}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", build::tar(&[Entry::File(&dotdot, b"x")])),
        ("absolute", build::tar(&[Entry::File(&abs, b"x")])),
        (
            "symlink escape",
            build::tar(&[Entry::Symlink("a", "/"), Entry::File(&through_link, b"x")]),
        ),
        (
            "hard link outside",
            build::tar(&[Entry::Hardlink("h", "../../../../etc/passwd")]),
        ),
    ];
    let d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    for (i, (what, tar)) in cases.into_iter().enumerate() {
        let img = Custom::new(vec![(build::LAYER_GZIP, tar.clone(), build::gzip(&tar))]);
        let name = format!("hostile{i}");
        img.push(&reg, &name, LATEST).await;
        let err = pull(&mut c, &reg.image_ref(&name, LATEST))
            .await
            .expect_err(what);
        assert!(err.message().contains("unsafe entry"), "{what}: {err}");
        assert!(!outside.exists(), "{what}: wrote {}", outside.display());
        assert!(
            names_in(&layers_dir(&d)).is_empty(),
            "{what}: a layer was kept"
        );
        assert!(leftovers(&d).is_empty(), "{what}: {:?}", leftovers(&d));
    }
    assert!(list(&mut c).await.is_empty());
}

// Image records and layers survive a daemon restart.
#[tokio::test(flavor = "multi_thread")]
async fn images_survive_a_restart_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let mut d = daemon(&[&reg.host()], "");
    let mut c = client(&d).await;
    let id = pull(&mut c, &reg.image_ref(BUSYBOX, LATEST))
        .await
        .expect("pull");
    let before = list(&mut c).await;
    drop(c);
    let status_code = d.signal_and_wait(Signal::SIGTERM, Duration::from_secs(20));
    assert!(status_code.success(), "{status_code}");
    d.spawn();
    d.wait_ready();
    let mut c = client(&d).await;
    assert_eq!(list(&mut c).await, before);
    assert_eq!(
        status(&mut c, &reg.image_ref(BUSYBOX, LATEST), false)
            .await
            .image
            .map(|i| i.id),
        Some(id.clone())
    );
    assert_eq!(id, expected_id(fixture(&set, BUSYBOX)));
    for diff in diff_ids(&d, &id) {
        assert!(layers_dir(&d).join(diff).join("diff").is_dir());
    }
}

fn big_image(layers: usize, mib_each: usize) -> Custom {
    Custom::new(
        (0..layers)
            .map(|i| {
                let tar = build::tar(&[Entry::File(
                    &format!("layer{i}/data"),
                    &build::noise(mib_each << 20, i as u64 + 11),
                )]);
                let gz = build::gzip(&tar);
                (build::LAYER_GZIP, tar, gz)
            })
            .collect(),
    )
}

// kill -9 mid-pull: no half image after restart, partial files cleaned at the next start.
#[tokio::test(flavor = "multi_thread")]
async fn kill_mid_pull_leaves_no_half_image_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let img = big_image(2, 8);
    img.push(&reg, "big", LATEST).await;
    let slow = Proxy::start(reg.addr(), Mode::Throttle(2 << 20));
    let mut d = daemon(&[&slow.host()], "");
    let c = client(&d).await;
    let image = format!("{}/big:{LATEST}", slow.host());
    let puller = tokio::spawn(async move {
        let mut c = c;
        pull(&mut c, &image).await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftovers(&d).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pull never started writing:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    let _ = puller.await;
    assert!(
        !leftovers(&d).is_empty(),
        "the kill interrupted a pull in progress"
    );
    d.spawn();
    d.wait_ready();
    // The socket accepts before the store is opened (callers wait in the backlog): the
    // first answer, not the connect, says the start-up cleanup is done.
    let mut c = client(&d).await;
    assert!(list(&mut c).await.is_empty(), "no half image is listed");
    assert!(
        leftovers(&d).is_empty(),
        "cleaned at start: {:?}",
        leftovers(&d)
    );
    assert!(
        names_in(&layers_dir(&d)).is_empty(),
        "layers of the unfinished image are gone"
    );
    assert!(
        names_in(&d.path().join("root/image/blobs/sha256")).is_empty(),
        "and its blobs"
    );
    assert!(d.log().contains("interrupted"), "the cleanup is logged");
}

// Single flight: concurrent pulls of one image, and of images sharing a layer, download each
// blob once; layers of one image download in parallel up to the limit.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_downloads_and_layers_run_in_parallel_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let tars: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            build::tar(&[Entry::File(
                &format!("layer{i}/data"),
                &build::noise(2 << 20, i as u64 + 11),
            )])
        })
        .collect();
    let layer = |i: usize| (build::LAYER_GZIP, tars[i].clone(), build::gzip(&tars[i]));
    let a = Custom::new(vec![layer(0), layer(1), layer(2)]);
    // Shares its first two layers with `a`: those must not be fetched twice.
    let b = Custom::new(vec![layer(0), layer(1), layer(3)]);
    a.push(&reg, "par", LATEST).await;
    b.push(&reg, "par2", LATEST).await;
    let slow = Proxy::start(reg.addr(), Mode::Throttle(4 << 20));
    let d = daemon(&[&slow.host()], "");
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut c = client(&d).await;
        let (image, want) = if i % 2 == 0 {
            (format!("{}/par:{LATEST}", slow.host()), a.id())
        } else {
            (format!("{}/par2:{LATEST}", slow.host()), b.id())
        };
        tasks.push(tokio::spawn(
            async move { (pull(&mut c, &image).await, want) },
        ));
    }
    for t in tasks {
        let (got, want) = t.await.expect("join");
        assert_eq!(got.expect("pull"), want);
    }
    let reqs = slow.requests();
    for blob in a.layers.iter().chain(&b.layers[2..]) {
        let n = reqs
            .iter()
            .filter(|r| r.contains(blob.digest().as_str()))
            .count();
        assert_eq!(n, 1, "layer {} fetched {n} times: {reqs:#?}", blob.digest());
    }
    assert!(
        slow.max_active() >= 3,
        "layers download at once (limit 3), saw {}",
        slow.max_active()
    );
    let log = d.log();
    assert!(
        log.contains("joined=true") || log.contains("joined a download already in flight"),
        "a pull joined another's download:\n{log}"
    );

    // Limit 1: one connection at a time.
    let reg2 = registry(RegistryOptions::plain()).await;
    a.push(&reg2, "par", LATEST).await;
    let slow2 = Proxy::start(reg2.addr(), Mode::Throttle(8 << 20));
    let d2 = daemon(&[&slow2.host()], "max_concurrent_downloads = 1\n");
    let mut c2 = client(&d2).await;
    assert_eq!(
        pull(&mut c2, &format!("{}/par:{LATEST}", slow2.host()))
            .await
            .expect("pull"),
        a.id()
    );
    assert_eq!(
        slow2.max_active(),
        1,
        "max_concurrent_downloads = 1 is honoured"
    );
}

// A pull that makes no progress for image.pull_progress_timeout_secs is cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_pull_is_cancelled_with_a_clear_error_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let img = big_image(1, 4);
    img.push(&reg, "stall", LATEST).await;
    // Enough for the manifest and config to arrive; the layer stops after 1 MiB.
    let stuck = Proxy::start(reg.addr(), Mode::StallAfter(1 << 20));
    let d = daemon(
        &[&stuck.host()],
        "pull_progress_timeout_secs = 2\nmax_concurrent_downloads = 1\n",
    );
    let mut c = client(&d).await;
    let started = Instant::now();
    let err = pull(&mut c, &format!("{}/stall:{LATEST}", stuck.host()))
        .await
        .expect_err("stalled");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("no progress for 2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(list(&mut c).await.is_empty());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    assert!(names_in(&layers_dir(&d)).is_empty());
}

fn python() -> PathBuf {
    std::env::var_os("CRID_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

// An independent CRI client (upstream-generated Python stubs) pulls, lists, inspects and
// removes an image through crid's socket: cri:ImageService over the upstream wire format.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_client_pulls_lists_inspects_and_removes_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let d = daemon(&[&reg.host()], "");
    let image = reg.image_ref(BUSYBOX, LATEST);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/upstream/cri_images.py");
    let (py, sock) = (python(), d.socket());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&py)
            .arg(&script)
            .arg(&sock)
            .arg(&image)
            .output()
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| {
        panic!("cannot run the upstream client ({e}); run scripts/setup.sh to create .venv")
    });
    assert!(
        out.status.success(),
        "upstream client failed (run scripts/setup.sh if the package is missing):\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    let want = expected_id(fixture(&set, BUSYBOX));
    assert_eq!(v["image_ref"], want.as_str());
    assert_eq!(v["list"][0]["id"], want.as_str());
    assert_eq!(
        v["list"][0]["repo_tags"][0],
        reg.image_ref(BUSYBOX, LATEST).as_str()
    );
    assert_eq!(v["status"]["id"], want.as_str());
    assert_eq!(v["status"]["info"]["imageSpec"]["rootfs"]["type"], "layers");
    assert!(v["fs"]["used_bytes"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["after_remove_has_image"], false);
    assert_eq!(v["bad_pull"], "INVALID_ARGUMENT");
}

// The Bearer token flow: the challenge's realm issues a token for basic credentials (GET)
// or an identity token (OAuth2 refresh grant, POST); a registry_token is sent as is.
// cri:ImageService.PullImage#auth (username/password, identity_token, registry_token)
#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_flows_needs_root() {
    let (reg, set) = registry_with_fixtures().await;
    let gw = gateway::Gateway::start(reg.addr());
    let d = daemon(&[&gw.host()], "");
    let mut c = client(&d).await;
    let image = format!("{}/{BUSYBOX}:{LATEST}", gw.host());
    let want = expected_id(fixture(&set, BUSYBOX));

    let err = pull(&mut c, &image).await.expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = pull_auth(&mut c, &image, basic(gateway::USER, "wrong"))
        .await
        .expect_err("bad password");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("token service"), "{err}");

    let id = pull_auth(&mut c, &image, basic(gateway::USER, gateway::PASS))
        .await
        .expect("basic -> token");
    assert_eq!(id, want);
    remove(&mut c, &id).await.expect("remove");
    let id = pull_auth(
        &mut c,
        &image,
        Some(cri::AuthConfig {
            identity_token: gateway::REFRESH.into(),
            ..Default::default()
        }),
    )
    .await
    .expect("identity token -> token");
    assert_eq!(id, want);
    remove(&mut c, &id).await.expect("remove");
    let id = pull_auth(
        &mut c,
        &image,
        Some(cri::AuthConfig {
            registry_token: gateway::TOKEN.into(),
            ..Default::default()
        }),
    )
    .await
    .expect("registry token");
    assert_eq!(id, want);
    let seen = gw.token_requests.lock().expect("lock").clone();
    assert!(
        seen.contains(&"GET basic".to_owned()) && seen.contains(&"POST refresh".to_owned()),
        "{seen:?}"
    );
}

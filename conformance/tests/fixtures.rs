//! The fixtures against the real docker-registry (/usr/bin/docker-registry) and the
//! host's /bin/busybox: build, push, read back over HTTP, check every digest.
//!
//! Needs Debian's docker-registry, busybox-static and apache2-utils; no root.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use crid_conformance::fixtures::FixtureError;
use crid_conformance::fixtures::image::layer::gunzip;
use crid_conformance::fixtures::image::oci::{ImageConfig, Index, Manifest};
use crid_conformance::fixtures::image::rootfs::{
    APPLETS, GROUP, HARDLINKED_APPLET, IMAGE_MARKER, PASSWD, TEST_GID, TEST_HOME, TEST_UID,
    WHITED_OUT,
};
use crid_conformance::fixtures::image::{
    self, BUSYBOX, BUSYBOX_DOCKER, BUSYBOX_MULTIARCH, BUSYBOX_MULTIARCH_DOCKER, BUSYBOX_STOPSIGNAL,
    BUSYBOX_USER, CATALOGUE, Digest, Format, HTTPD, ImageBuilder, LATEST, PAUSE,
    PLACEHOLDER_ANNOTATION, USER_NAME, USER_UID, USER_UID_GID, fixture_set, verify_oci_layout,
};
use crid_conformance::fixtures::registry::state::{self, DownOutcome, STATE_FILE};
use crid_conformance::fixtures::registry::{
    Registry, RegistryClient, RegistryOptions, TEST_PASSWORD, TEST_USERNAME,
};

type TestResult = Result<(), FixtureError>;

fn config_of(client_manifest: &[u8]) -> Manifest {
    serde_json::from_slice(client_manifest).expect("manifest JSON")
}

/// Reads a layer's tar entries: path -> (entry type byte, link name, content).
fn tar_entries(gz: &[u8]) -> BTreeMap<String, (u8, String, Vec<u8>)> {
    let tar = gunzip(gz, "layer").expect("gunzip");
    let mut archive = tar::Archive::new(&tar[..]);
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").display().to_string();
        let kind = entry.header().entry_type().as_byte();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        out.insert(path, (kind, link, data));
    }
    out
}

#[test]
fn builder_is_deterministic() -> TestResult {
    let a = ImageBuilder::new().build_all(CATALOGUE)?;
    let b = ImageBuilder::new().build_all(CATALOGUE)?;
    assert_eq!(a.images().len(), b.images().len());
    for (x, y) in a.images().iter().zip(b.images()) {
        assert_eq!(x.digest(), y.digest(), "{}", x.name());
        assert_eq!(x.root().data(), y.root().data(), "{}", x.name());
        let digests = |i: &image::BuiltImage| {
            i.blobs()
                .iter()
                .map(|b| b.digest().clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(x), digests(y), "{}", x.name());
    }
    // The process-wide cache builds the same bytes too.
    let cached = fixture_set()?;
    assert_eq!(
        cached.get(BUSYBOX, LATEST).map(|i| i.digest()),
        a.get(BUSYBOX, LATEST).map(|i| i.digest())
    );
    Ok(())
}

#[test]
fn docker_format_changes_media_types_not_layers() -> TestResult {
    let spec = CATALOGUE
        .iter()
        .find(|s| s.name == BUSYBOX)
        .expect("busybox row");
    let oci = ImageBuilder::new().build(spec)?;
    let docker = ImageBuilder::new()
        .with_format(Format::Docker)
        .build(spec)?;
    oci.verify()?;
    docker.verify()?;
    assert_ne!(oci.digest(), docker.digest());
    let m_oci = config_of(oci.root().data());
    let m_docker = config_of(docker.root().data());
    assert_eq!(
        m_docker.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m_docker.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        m_oci.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer_digests = |m: &Manifest| {
        m.layers
            .iter()
            .map(|l| l.digest.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(layer_digests(&m_oci), layer_digests(&m_docker));
    Ok(())
}

#[test]
fn catalogue_images_have_the_promised_content() -> TestResult {
    let set = fixture_set()?;
    let config = |name: &str, tag: &str| -> ImageConfig {
        let img = set.get(name, tag).unwrap_or_else(|| panic!("{name}:{tag}"));
        let m = config_of(img.root().data());
        serde_json::from_slice(img.find(&m.config.digest).expect("config blob").data())
            .expect("config JSON")
    };

    let busybox = config(BUSYBOX, LATEST);
    assert_eq!(busybox.rootfs.diff_ids.len(), 2, "base + top layer");
    assert_eq!(busybox.config.cmd.as_deref(), Some(&["sh".to_owned()][..]));
    assert!(busybox.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(busybox.history.iter().any(|h| h.empty_layer));
    assert_eq!(
        set.get(BUSYBOX, "1.0").map(|i| i.digest()),
        set.get(BUSYBOX, LATEST).map(|i| i.digest())
    );
    assert_eq!(
        set.get(BUSYBOX, "1.1").map(|i| i.digest()),
        set.get(BUSYBOX, LATEST).map(|i| i.digest())
    );

    for (tag, user) in [
        (USER_UID, "1000"),
        (USER_NAME, "crid"),
        (USER_UID_GID, "1000:1000"),
    ] {
        let c = config(BUSYBOX_USER, tag);
        assert_eq!(c.config.user.as_deref(), Some(user));
        assert_eq!(c.config.working_dir.as_deref(), Some(TEST_HOME));
    }
    let httpd = config(HTTPD, LATEST);
    assert!(httpd.config.exposed_ports.contains_key("80/tcp"));
    assert_eq!(
        httpd.config.entrypoint.as_deref(),
        Some(&["/bin/httpd".to_owned()][..])
    );
    assert_eq!(
        config(PAUSE, LATEST).config.stop_signal.as_deref(),
        Some("SIGTERM")
    );
    assert_eq!(
        config(BUSYBOX_STOPSIGNAL, LATEST)
            .config
            .stop_signal
            .as_deref(),
        Some("SIGUSR1")
    );

    // Layer contents: busybox and applets, users, modes, the whiteout.
    let img = set.get(HTTPD, LATEST).expect("httpd");
    let m = config_of(img.root().data());
    let base = tar_entries(img.find(&m.layers[0].digest).expect("base layer").data());
    let top = tar_entries(img.find(&m.layers[1].digest).expect("top layer").data());
    assert_eq!(base["bin/busybox"].0, b'0');
    for applet in APPLETS {
        assert_eq!(
            base[&format!("bin/{applet}")],
            (b'2', "busybox".to_owned(), Vec::new()),
            "{applet}"
        );
    }
    assert_eq!(base[HARDLINKED_APPLET.trim_start_matches('/')].0, b'1');
    assert_eq!(base["etc/passwd"].2, PASSWD.as_bytes());
    assert_eq!(base["etc/group"].2, GROUP.as_bytes());
    assert!(base.contains_key(WHITED_OUT.trim_start_matches('/')));
    let (dir, file) = WHITED_OUT
        .trim_start_matches('/')
        .rsplit_once('/')
        .expect("path");
    assert!(top.contains_key(&format!("{dir}/.wh.{file}")));
    assert_eq!(top[IMAGE_MARKER.trim_start_matches('/')].2, b"httpd\n");
    assert!(top.contains_key("www/index.html"));

    let tar = gunzip(img.find(&m.layers[0].digest).expect("base").data(), "base")?;
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().expect("tar") {
        let entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let h = entry.header();
        let mode = h.mode().expect("mode");
        match path.as_str() {
            "tmp/" => assert_eq!(mode, 0o1777),
            "root/" => assert_eq!(mode, 0o700),
            "bin/busybox" => assert_eq!(mode, 0o755),
            p if p == format!("{}/", TEST_HOME.trim_start_matches('/')) => {
                assert_eq!(
                    (h.uid().expect("uid"), h.gid().expect("gid")),
                    (TEST_UID.into(), TEST_GID.into())
                );
            }
            _ => assert_eq!(h.uid().expect("uid"), 0, "{path}"),
        }
    }
    Ok(())
}

#[test]
fn multiarch_index_lists_placeholders_first_and_the_host_last() -> TestResult {
    let set = fixture_set()?;
    let host = ImageBuilder::new().host_platform()?;
    for (name, format) in [
        (BUSYBOX_MULTIARCH, Format::Oci),
        (BUSYBOX_MULTIARCH_DOCKER, Format::Docker),
    ] {
        let img = set.get(name, LATEST).expect("multiarch image");
        assert!(img.is_index());
        let index: Index = serde_json::from_slice(img.root().data()).expect("index JSON");
        assert_eq!(index.media_type, format.index());
        assert_eq!(index.manifests.len(), 3);
        let platforms: Vec<_> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .collect();
        assert_eq!(platforms.last(), Some(&host));
        assert!(
            platforms[..2]
                .iter()
                .all(|p| p.architecture != host.architecture)
        );
        let marked = index
            .manifests
            .iter()
            .filter(|d| d.annotations.contains_key(PLACEHOLDER_ANNOTATION))
            .count();
        assert_eq!(marked, if format == Format::Oci { 2 } else { 0 });
    }
    Ok(())
}

#[test]
fn oci_layout_round_trips() -> TestResult {
    let set = fixture_set()?;
    let dir = tempfile::tempdir().expect("tempdir");
    set.write_oci_layout(dir.path())?;
    let refs = verify_oci_layout(dir.path())?;
    assert_eq!(refs.len(), set.tagged().count());
    assert_eq!(
        refs.get("busybox:1.0"),
        set.get(BUSYBOX, LATEST).map(|i| i.digest())
    );
    // skopeo (Debian's, installed by scripts/setup.sh) is an independent reader of the layout.
    let target = format!("oci:{}:busybox:latest", dir.path().display());
    skopeo_inspect(&[&target]);
    Ok(())
}

/// Every tag resolves to what was built; every blob comes back intact; diff_ids match.
async fn check_pushed(registry: &Registry, client: &RegistryClient) -> TestResult {
    let set = fixture_set()?;
    for (name, tag) in set.tagged() {
        let built = set.get(name, tag).expect("built image");
        let fetched = client.manifest(name, tag).await?;
        assert_eq!(&fetched.digest, built.digest(), "{name}:{tag}");
        assert_eq!(
            fetched.media_type,
            built.root().media_type(),
            "{name}:{tag}"
        );
        let by_digest = client.manifest(name, built.digest().as_str()).await?;
        assert_eq!(by_digest.body, fetched.body);
        let manifests: Vec<(String, Vec<u8>)> = if built.is_index() {
            let index: Index = serde_json::from_slice(&fetched.body).expect("index JSON");
            let mut v = Vec::new();
            for d in &index.manifests {
                let child = client.manifest(name, d.digest.as_str()).await?;
                assert_eq!(child.media_type, d.media_type);
                v.push((
                    format!("{name}:{tag} {}", d.platform.as_ref().expect("platform")),
                    child.body.to_vec(),
                ));
            }
            v
        } else {
            vec![(format!("{name}:{tag}"), fetched.body.to_vec())]
        };
        for (what, body) in manifests {
            let m = config_of(&body);
            let config_bytes = client.blob(name, &m.config.digest).await?;
            let config: ImageConfig = serde_json::from_slice(&config_bytes).expect("config JSON");
            assert_eq!(config.rootfs.diff_ids.len(), m.layers.len(), "{what}");
            for (layer, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
                let gz = client.blob(name, &layer.digest).await?;
                assert_eq!(gz.len() as u64, layer.size, "{what}");
                assert_eq!(
                    &Digest::of(&gunzip(&gz, &what)?),
                    diff_id,
                    "{what}: diff_id"
                );
            }
        }
    }
    // Multi-tag: one manifest behind latest, 1.0 and 1.1.
    let latest = client.manifest(BUSYBOX, LATEST).await?.digest;
    assert_eq!(client.manifest(BUSYBOX, "1.0").await?.digest, latest);
    assert_eq!(client.manifest(BUSYBOX, "1.1").await?.digest, latest);
    assert!(
        registry
            .image_ref(BUSYBOX, LATEST)
            .ends_with("/busybox:latest")
    );
    Ok(())
}

#[tokio::test]
async fn push_all_fixtures_and_read_them_back() -> TestResult {
    let registry = Registry::start(RegistryOptions::plain()).await?;
    assert!(registry.host().starts_with("127.0.0.1:"));
    assert_eq!(registry.client().ping().await?, 200);
    registry.push_all_fixtures().await?;
    // Pushing again only re-PUTs manifests: blobs are found by HEAD.
    registry.push_all_fixtures().await?;
    check_pushed(&registry, registry.client()).await?;

    // An independent client (skopeo) resolves every image, indexes to the host entry.
    for name in [
        BUSYBOX,
        BUSYBOX_DOCKER,
        BUSYBOX_MULTIARCH,
        BUSYBOX_MULTIARCH_DOCKER,
    ] {
        let target = format!("docker://{}", registry.image_ref(name, LATEST));
        skopeo_inspect(&["--tls-verify=false", &target]);
    }
    Ok(())
}

/// Runs Debian's skopeo (scripts/setup.sh installs it); a missing skopeo fails the test.
fn skopeo_inspect(args: &[&str]) {
    let out = std::process::Command::new("/usr/bin/skopeo")
        .arg("inspect")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/skopeo ({e}); run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "skopeo inspect {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn basic_auth_registry_rejects_anonymous_requests() -> TestResult {
    let registry = Registry::start(RegistryOptions::basic_auth()).await?;
    let creds = registry.credentials().expect("credentials");
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        (TEST_USERNAME, TEST_PASSWORD)
    );

    let anonymous = registry.client().anonymous().get("/v2/", None).await?;
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic realm="), "{challenge}");
    assert_eq!(registry.client().ping().await?, 200);
    let wrong = RegistryClient::new(
        &registry.host(),
        Some(&crid_conformance::fixtures::registry::Credentials {
            username: TEST_USERNAME.to_owned(),
            password: "wrong".to_owned(),
        }),
    );
    assert_eq!(wrong.ping().await?, 401);

    registry.push_all_fixtures().await?;
    check_pushed(&registry, registry.client()).await?;
    let err = registry
        .client()
        .anonymous()
        .manifest(BUSYBOX, LATEST)
        .await
        .expect_err("anonymous pull");
    assert!(
        matches!(err, FixtureError::HttpStatus { status: 401, .. }),
        "{err}"
    );
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    // A zombie has an empty command line; the registry guard reaps, so it should be gone.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test]
async fn dropping_the_registry_kills_it_and_removes_its_dir() -> TestResult {
    let registry = Registry::start(RegistryOptions::plain()).await?;
    let pid = registry.pid().expect("pid");
    let dir = registry.dir().to_owned();
    assert!(process_alive(pid));
    assert!(dir.join("config.yml").exists());
    drop(registry);
    assert!(!process_alive(pid), "registry pid {pid} still alive");
    assert!(!dir.exists(), "{} not removed", dir.display());
    Ok(())
}

/// Runs `fixtures down` if a test fails between `up` and its own `down`.
struct DownGuard(PathBuf);

impl Drop for DownGuard {
    fn drop(&mut self) {
        if self.0.join(STATE_FILE).exists() {
            let _ = state::down(&self.0);
        }
    }
}

#[tokio::test]
async fn fixtures_up_then_down() -> TestResult {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("fixtures");
    let _guard = DownGuard(dir.clone());

    let up = state::up(&dir, RegistryOptions::plain()).await?;
    assert_eq!(state::read_state(&dir)?, up);
    assert!(process_alive(up.pid));
    assert!(up.images.contains(&format!("{}/busybox:latest", up.host)));
    let client = RegistryClient::new(&up.host, None);
    assert_eq!(
        client.manifest(BUSYBOX, LATEST).await?.digest,
        *fixture_set()?
            .get(BUSYBOX, LATEST)
            .expect("busybox")
            .digest()
    );

    let again = state::up(&dir, RegistryOptions::plain())
        .await
        .expect_err("second up");
    assert!(matches!(again, FixtureError::State { .. }), "{again}");

    assert_eq!(state::down(&dir)?, DownOutcome::Stopped { pid: up.pid });
    assert!(!process_alive(up.pid));
    assert!(!dir.exists());
    assert!(state::down(&dir).is_err(), "down without state must refuse");
    Ok(())
}

#[tokio::test]
async fn a_registry_that_cannot_start_is_reported_with_its_log() {
    let missing = RegistryOptions {
        binary: PathBuf::from("/nonexistent/docker-registry"),
        ..RegistryOptions::plain()
    };
    let err = Registry::start(missing).await.expect_err("missing binary");
    assert!(matches!(err, FixtureError::Command { .. }), "{err}");

    // /bin/false exits at once: the error must say so instead of waiting for the timeout.
    let dir = tempfile::tempdir().expect("tempdir");
    let exits = RegistryOptions {
        binary: PathBuf::from("/bin/false"),
        dir: Some(dir.path().to_owned()),
        ..RegistryOptions::plain()
    };
    let err = Registry::start(exits).await.expect_err("exiting binary");
    assert!(
        matches!(&err, FixtureError::RegistryStart { reason, .. } if reason.contains("exited")),
        "{err}"
    );
}

//! Attacks on the image store from issue 16, reproduced against the real daemon (root):
//! a local user running a setuid binary or writing a device node of a pulled image, and a
//! small layer that expands without bound.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crid_conformance::fixtures::image::LATEST;
use crid_conformance::fixtures::registry::RegistryOptions;
use nix::sys::signal::Signal;

use super::build::{self, Custom};
use super::support::TestDaemon;
use super::{client, layers_dir, leftovers, list, names_in, pull, registry};

/// One tar entry with an explicit type, mode and device numbers.
fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).expect("path");
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    if kind == tar::EntryType::Char {
        // 1:3 is /dev/null: harmless should the test ever find it writable.
        h.set_device_major(1).expect("major");
        h.set_device_minor(3).expect("minor");
    }
    h.set_cksum();
    b.append(&h, data).expect("append");
}

/// A layer with a setuid-root copy of the host's `id` and a world-writable device node.
fn setuid_layer() -> Vec<u8> {
    let id = std::fs::read("/usr/bin/id").expect("read /usr/bin/id");
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "bin", tar::EntryType::Directory, 0o755, b"");
    entry(&mut b, "bin/suid-id", tar::EntryType::Regular, 0o4755, &id);
    entry(&mut b, "dev", tar::EntryType::Directory, 0o755, b"");
    entry(&mut b, "dev/open", tar::EntryType::Char, 0o666, b"");
    b.into_inner().expect("tar")
}

/// Runs `script` in a shell as `nobody` (uid and gid 65534, no supplementary groups). A
/// shell, because setpriv keeps root's capabilities until its own execve: a path it execs
/// directly is resolved with CAP_DAC_OVERRIDE.
fn as_nobody(script: &str) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--reset-env",
            "/bin/sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv")
}

/// What `nobody` gets from the image's setuid `id -u` and from writing its device node.
fn attack(diff: &Path) -> (Output, Output) {
    let run = as_nobody(&format!("exec {} -u", diff.join("bin/suid-id").display()));
    let write = as_nobody(&format!("echo x > {}", diff.join("dev/open").display()));
    (run, write)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Loosens what an older crid left loose: the roots and the storage directories 0755.
fn loosen(d: &TestDaemon) {
    for rel in [
        "root",
        "root/storage",
        "root/storage/layers",
        "root/image",
        "run",
        "run/containers",
    ] {
        std::fs::set_permissions(d.path().join(rel), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
}

// Issue 16: a user `nobody` ran a setuid-root binary of a pulled image straight out of
// `<root>/storage/layers/<id>/diff` and got euid 0. The layer keeps its modes (the
// container needs them); the store around it must be out of other users' reach, on a fresh
// root and on one an older crid left open, which the daemon repairs at start.
#[tokio::test(flavor = "multi_thread")]
async fn other_users_cannot_reach_setuid_files_or_device_nodes_of_images_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let tar = setuid_layer();
    let img = Custom::new(vec![(build::LAYER_GZIP, tar.clone(), build::gzip(&tar))]);
    img.push(&reg, "suid", LATEST).await;

    let mut d = TestDaemon::prepare(&format!(
        "[image]\ninsecure_registries = [\"{}\"]\n",
        reg.host()
    ));
    // The test directory stands for /var/lib: others may traverse it.
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d.spawn();
    d.wait_ready();
    let mut c = client(&d).await;
    pull(&mut c, &reg.image_ref("suid", LATEST))
        .await
        .expect("pull");
    let layers = names_in(&layers_dir(&d));
    assert_eq!(layers.len(), 1, "{layers:?}");
    let diff = layers_dir(&d).join(&layers[0]).join("diff");
    // The image is unpacked as it is: the container must see its setuid bit and its node.
    assert_eq!(mode(&diff.join("bin/suid-id")), 0o4755);
    assert_eq!(mode(&diff.join("dev/open")), 0o666);

    let fresh_modes = |d: &TestDaemon| {
        assert_eq!(mode(&d.path().join("root")), 0o711);
        assert_eq!(mode(&d.path().join("run")), 0o711);
        for rel in [
            "root/storage",
            "root/storage/layers",
            "root/storage/containers",
            "root/image",
            "root/state",
            "run/containers",
            "run/pods",
            "run/exits",
        ] {
            assert_eq!(mode(&d.path().join(rel)), 0o700, "{rel}");
        }
    };
    fresh_modes(&d);
    let (run, write) = attack(&diff);
    assert!(
        !run.status.success() && String::from_utf8_lossy(&run.stdout).trim() != "0",
        "nobody ran the image's setuid binary: {run:?}"
    );
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("Permission denied"),
        "{run:?}"
    );
    assert!(
        !write.status.success(),
        "nobody wrote the image's device node: {write:?}"
    );

    // A root an older crid left open: the attack works there (the test reproduces it) ...
    drop(c);
    let stopped = d.signal_and_wait(Signal::SIGTERM, Duration::from_secs(20));
    assert!(stopped.success(), "{stopped}");
    loosen(&d);
    let (run, write) = attack(&diff);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "0",
        "the open store lets nobody become root: {run:?}"
    );
    assert!(write.status.success(), "{write:?}");
    // ... `crid check` says so ...
    let check = d.run(&["check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("[FAIL] storage modes") && report.contains("storage/layers is 0755"),
        "{report}"
    );
    // ... and the next start repairs it before serving: the socket accepts at once (clients
    // wait in its backlog), so the first answer is what says the daemon serves.
    d.spawn();
    d.wait_ready();
    let mut c = client(&d).await;
    assert_eq!(list(&mut c).await.len(), 1, "the image is still there");
    fresh_modes(&d);
    assert!(
        d.log().contains("repaired the mode"),
        "repairs are logged:\n{}",
        d.log()
    );
    let (run, write) = attack(&diff);
    assert!(!run.status.success(), "{run:?}");
    assert!(!write.status.success(), "{write:?}");
    assert!(leftovers(&d).is_empty());
}

/// A gzip layer of one file of `mib` MiB of zeros: a few KiB that expand a thousandfold.
fn bomb(mib: usize) -> (Vec<u8>, Vec<u8>) {
    let tar = build::tar(&[build::Entry::File("zeros", &vec![0u8; mib << 20])]);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut e, &tar).expect("gzip");
    let gz = e.finish().expect("gzip");
    (tar, gz)
}

// Issue 16: a 1 MiB gzip layer expanding to 1 GiB was accepted. The expansion is bounded per
// layer and per image (`image.max_layer_unpacked_bytes`, `max_image_unpacked_bytes`, here
// lowered): the pull fails with ResourceExhausted naming the key, nothing of it remains,
// and an image within the limits still pulls.
#[tokio::test(flavor = "multi_thread")]
async fn layers_that_expand_beyond_the_limits_are_refused_needs_root() {
    let reg = registry(RegistryOptions::plain()).await;
    let (tar, gz) = bomb(64);
    assert!(gz.len() < 256 << 10, "{} bytes", gz.len());
    Custom::new(vec![(build::LAYER_GZIP, tar, gz)])
        .push(&reg, "bomb", LATEST)
        .await;
    let (a, b) = (bomb(3), bomb(4));
    Custom::new(vec![
        (build::LAYER_GZIP, a.0.clone(), a.1.clone()),
        (build::LAYER_GZIP, b.0.clone(), b.1.clone()),
    ])
    .push(&reg, "two", LATEST)
    .await;
    Custom::new(vec![(build::LAYER_GZIP, a.0, a.1)])
        .push(&reg, "fits", LATEST)
        .await;

    let d = super::daemon(
        &[&reg.host()],
        "max_layer_unpacked_bytes = 5242880\nmax_image_unpacked_bytes = 6291456\n",
    );
    let mut c = client(&d).await;
    for (name, key) in [
        ("bomb", "image.max_layer_unpacked_bytes"),
        ("two", "image.max_image_unpacked_bytes"),
    ] {
        let e = pull(&mut c, &reg.image_ref(name, LATEST))
            .await
            .expect_err(name);
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{name}: {e:?}");
        assert!(e.message().contains(key), "{name}: {e:?}");
        assert!(
            names_in(&layers_dir(&d)).is_empty(),
            "{name}: {:?}",
            names_in(&layers_dir(&d))
        );
        assert!(leftovers(&d).is_empty(), "{name}: {:?}", leftovers(&d));
    }
    assert!(list(&mut c).await.is_empty());
    pull(&mut c, &reg.image_ref("fits", LATEST))
        .await
        .expect("within the limits");
}

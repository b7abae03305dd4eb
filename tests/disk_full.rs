//! A full disk (issue 16, part 4) through the real daemon on real runc (root): the storage
//! root and the pods' log directory on small tmpfs mounts of the test's own.
//! - a pull that does not fit answers ResourceExhausted and leaves nothing half-visible;
//!   once there is room the same pull succeeds;
//! - RunPodSandbox on a full root answers ResourceExhausted, leaves nothing, and succeeds
//!   once space is freed;
//! - a container whose log cannot be written runs and exits as it would have: its output
//!   is dropped, it is neither blocked on a full pipe nor killed.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crid_api::runtime::v1 as cri;
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use support::TestDaemon;
use support::cri::{container_config, pod_config, run_container, run_pod, wait_state};
use tonic::Code;

/// A tmpfs of `size` at `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .expect("mount tmpfs");
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            MsFlags::MS_REMOUNT,
            Some(format!("size={size}").as_str()),
        )
        .expect("remount tmpfs");
    }

    /// Fills the filesystem to the last byte with one file; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Every entry below `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

fn pull_request(image: &str) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_resource_exhausted_and_leaves_nothing_needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mounts tmpfs: run as root"
    );
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("start docker-registry (run scripts/setup.sh)");
    registry.push_all_fixtures().await.expect("push fixtures");
    let host = registry.host();
    let mut daemon = TestDaemon::prepare(&format!(
        "[image]\ninsecure_registries = [\"{host}\"]\npause_image = \"{host}/pause:latest\"\n"
    ));
    // The mounts are dropped explicitly after the daemon at the end; should the test fail
    // first, they are detached lazily and the daemon's sweep removes what is under them.
    let root = Tmpfs::mount(&daemon.path().join("root"), "256k");
    let logs = Tmpfs::mount(&daemon.path().join("logs"), "64k");
    daemon.spawn();
    daemon.wait_ready();
    let channel = daemon.channel().await;
    let mut is = cri::image_service_client::ImageServiceClient::new(channel.clone());
    let mut rs = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    let image = format!("{host}/busybox:latest");

    // cri:ImageService.PullImage on a full disk.
    let before = tree(&daemon.path().join("root"));
    let err = is
        .pull_image(pull_request(&image))
        .await
        .expect_err("does not fit in 256 KiB");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(
        err.message().contains("No space left on device"),
        "{}",
        err.message()
    );
    let listed = is
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    assert!(listed.is_empty(), "nothing half-visible: {listed:?}");
    assert_eq!(
        tree(&daemon.path().join("root")),
        before,
        "the failed pull left files behind"
    );
    root.resize("64m");
    is.pull_image(pull_request(&image))
        .await
        .expect("the same pull once there is room");

    // cri:RuntimeService.RunPodSandbox on a full root.
    let filler = root.fill();
    let config = pod_config("full", &daemon.path().join("logs"));
    let err = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("no room for its record");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .expect("list")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(support::object_ids(daemon.path()).is_empty());
    assert!(support::mounts_under(&daemon.path().join("run")).is_empty());
    std::fs::remove_file(&filler).expect("free the space");
    let pod = run_pod(&mut rs, &config, "").await;

    // A container whose log cannot be written: 2 MB of output into a 64 KiB filesystem.
    let script = "yes crid-disk-full | head -c 2000000; echo done; exit 0";
    let c = run_container(
        &mut rs,
        &pod,
        &config,
        container_config("loud", &image, &["sh", "-c", script]),
    )
    .await;
    let status = wait_state(
        &mut rs,
        &c,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    let log = std::fs::metadata(daemon.path().join("logs/full/loud.log")).expect("log");
    assert!(log.len() <= 64 * 1024, "{}", log.len());

    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove");
    drop(daemon);
    drop(logs);
    drop(root);
}

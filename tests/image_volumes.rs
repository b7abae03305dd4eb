//! Image volumes (cri:Mount#image) through the real daemon on runc (root): a running
//! container's volume outlives a `kill -9` of the daemon and goes with the container; a
//! kill in the middle of creating a container with a volume leaves no mount after the
//! restart.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use crid_api::runtime::v1 as cri;
use nix::sys::signal::Signal;
use support::TestDaemon;
use support::cri::{
    Cluster, assert_nothing_left, container_config, exec, pod_config, remove_all, run_container,
    run_pod, stall_wrapper, wait_for_file, wait_state,
};

/// `c` with the image `image` mounted at /vol.
fn with_volume(mut c: cri::ContainerConfig, image: &str) -> cri::ContainerConfig {
    c.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    c
}

/// The image volumes mounted under the daemon's directory.
fn volume_mounts(d: &TestDaemon) -> Vec<PathBuf> {
    support::mounts_under(d.path())
        .into_iter()
        .filter(|m| m.to_string_lossy().contains("image-volumes"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_outlive_a_restart_and_go_with_their_container_needs_root() {
    let stall = tempfile::Builder::new()
        .prefix("crid-stall-")
        .tempdir()
        .expect("tempdir");
    let dir = stall.path().to_path_buf();
    let wrapper = stall_wrapper(&dir, "runc");
    let mut c = Cluster::start(&format!(
        "[runtime.runtimes.stall]\npath = \"{}\"\n",
        wrapper.display()
    ))
    .await;
    let image = c.pull("busybox").await;
    let volume = c.pull("httpd").await;
    let mut rs = c.rs().await;
    let pc = pod_config("imgvol", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "stall").await;
    let long = run_container(
        &mut rs,
        &pod,
        &pc,
        with_volume(
            container_config("long", &image, &["sleep", "1000"]),
            &volume,
        ),
    )
    .await;
    wait_state(
        &mut rs,
        &long,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(volume_mounts(&c.daemon).len(), 1);

    // A second container with a volume, its creation cut short by kill -9 while the
    // runtime's create stalls (the volume is mounted by then).
    std::fs::write(dir.join("stall-create"), "").expect("stall");
    let mut rs2 = rs.clone();
    let cfg = with_volume(
        container_config("half", &image, &["sleep", "1000"]),
        &volume,
    );
    let (pc2, pod2) = (pc.clone(), pod.clone());
    let pending = tokio::spawn(async move {
        rs2.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod2,
            config: Some(cfg),
            sandbox_config: Some(pc2),
        })
        .await
    });
    wait_for_file(&dir.join("stalled-create"), Duration::from_secs(20)).await;
    assert_eq!(volume_mounts(&c.daemon).len(), 2, "both volumes mounted");
    let ids_during = support::object_ids(c.daemon.path());
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    let _ = std::fs::remove_file(dir.join("stall-create"));
    c.daemon.spawn();
    c.daemon.wait_ready();
    assert!(
        pending.await.expect("join").is_err(),
        "the interrupted call failed"
    );

    // The running container keeps its volume; the half-made one's is gone.
    let mut rs = c.rs().await;
    // The socket accepts before recovery is done; an answer comes after it.
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1, "only the running container: {listed:?}");
    let left = volume_mounts(&c.daemon);
    assert_eq!(
        left.len(),
        1,
        "only the running container's volume: {left:?}"
    );
    assert!(left[0].to_string_lossy().contains(&long), "{left:?}");
    let r = exec(&mut rs, &long, &["cat", "/vol/etc/fixture/image"], 10)
        .await
        .expect("exec after restart");
    assert_eq!(r.stdout, b"httpd\n");

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert!(volume_mounts(&c.daemon).is_empty());
    assert_nothing_left(&c.daemon, &[ids, ids_during].concat());
}

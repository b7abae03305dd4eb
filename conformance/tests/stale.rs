//! Fixture hygiene: a test killed by a timeout never runs its teardown. A helper process
//! (this test binary, re-run with `CRID_STALE_HELPER`) starts the fixtures and is killed
//! with SIGKILL; the next fixture of each kind to start must sweep what it left.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::containerd::{
    Containerd, ContainerdOptions, Instance, link_exists, mounts_under, shims_of,
};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use crid_conformance::fixtures::stale;

const HELPER_ENV: &str = "CRID_STALE_HELPER";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Left {
    registry_pid: u32,
    registry_dir: PathBuf,
    containerd: Option<Instance>,
    /// The running pod's sandbox ID (containerd's pause container has that ID).
    pod: Option<String>,
}

/// Not a test: the process the real tests kill. Starts the fixtures `CRID_STALE_HELPER`
/// names (`registry`, or `containerd` with a running pod), prints what it started, waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the stale-fixture tests as their victim"]
async fn stale_helper() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("registry");
    let mut containerd = None;
    let mut pod_id = None;
    if mode == "containerd" {
        registry.push_all_fixtures().await.expect("push");
        let ctd = Containerd::start(ContainerdOptions::new(registry.host()))
            .await
            .expect("containerd");
        let mut rs = RuntimeServiceClient::new(ctd.channel().await.expect("channel"));
        let pod = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cri::PodSandboxConfig {
                    metadata: Some(cri::PodSandboxMetadata {
                        name: "stale-pod".into(),
                        uid: "stale-pod-uid".into(),
                        namespace: "fixture".into(),
                        attempt: 0,
                    }),
                    ..Default::default()
                }),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        pod_id = Some(pod);
        containerd = Some(ctd);
    }
    let left = Left {
        registry_pid: registry.pid().expect("pid"),
        registry_dir: registry.dir().to_owned(),
        containerd: containerd.as_ref().map(|c| c.instance().clone()),
        pod: pod_id,
    };
    println!("LEFT {}", serde_json::to_string(&left).expect("json"));
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// Runs the helper in `mode`, reads what it started, and kills it with SIGKILL.
fn killed_run(mode: &str) -> Left {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "stale_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the helper");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut left = None;
    for line in out.lines() {
        let line = line.expect("read");
        if let Some(json) = line.strip_prefix("LEFT ") {
            left = Some(serde_json::from_str::<Left>(json).expect("helper JSON"));
            break;
        }
    }
    let _ = child.kill(); // SIGKILL: no teardown runs.
    let _ = child.wait();
    left.expect("the helper started its fixtures")
}

fn is_process(pid: u32) -> bool {
    stale::start_time(pid).is_some()
}

fn registry_swept(left: &Left) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while is_process(left.registry_pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !is_process(left.registry_pid),
        "the killed run's registry still runs"
    );
    assert!(
        !left.registry_dir.exists(),
        "{} was not removed",
        left.registry_dir.display()
    );
}

// A killed run's registry (process and directory) is swept by the next registry's start.
#[tokio::test]
async fn a_killed_runs_registry_is_swept_at_the_next_start() {
    let left = killed_run("registry");
    assert!(is_process(left.registry_pid), "orphaned, still running");
    assert!(left.registry_dir.exists());
    let next = Registry::start(RegistryOptions::plain())
        .await
        .expect("registry");
    registry_swept(&left);
    drop(next);
}

// A killed run's containerd with a running pod: the next containerd's start stops it (by
// its recorded PID), its shim, unmounts its namespaces, deletes its bridge and directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_containerd_is_swept_at_the_next_start_needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (containerd)"
    );
    let left = killed_run("containerd");
    let old = left.containerd.clone().expect("instance");
    assert!(is_process(old.pid), "orphaned containerd still runs");
    assert!(!shims_of(&old).is_empty(), "and its pod's shim");
    assert!(link_exists(&old.bridge), "and its bridge");

    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("registry");
    registry_swept(&left);
    let next = Containerd::start(ContainerdOptions::new(registry.host()))
        .await
        .expect("containerd");
    assert!(!is_process(old.pid), "the old containerd was stopped");
    assert!(shims_of(&old).is_empty(), "its shims were stopped");
    assert!(!link_exists(&old.bridge), "its bridge was deleted");
    assert!(mounts_under(&old.dir).is_empty(), "its mounts were removed");
    assert!(!old.dir.exists(), "{} was removed", old.dir.display());
    // The pod's own processes: once its shim is gone, nothing but runc reaches them.
    let pod = left.pod.as_deref().expect("the helper ran a pod");
    let left_behind: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| c.contains(pod)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left_behind.is_empty(),
        "processes of the killed run's pod survive: {left_behind:?}"
    );
    next.shutdown().await.expect("teardown");
}

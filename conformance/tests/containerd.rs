//! The containerd fixture against Debian's real containerd 1.6, runc and CNI plugins:
//! start it, use it through CRI (a pod that really runs), tear it down, and check that
//! nothing of it is left on the host. Needs root (containerd, mounts, network namespaces).

use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::containerd::{
    Containerd, ContainerdOptions, link_exists, mounts_under, shims_of,
};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_a_pod_and_leaves_nothing_behind_needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: run it as root (scripts/setup.sh installs containerd)"
    );
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("start docker-registry (run scripts/setup.sh)");
    registry.push_all_fixtures().await.expect("push fixtures");
    let ctd = Containerd::start(ContainerdOptions::new(registry.host()))
        .await
        .expect("start containerd (run scripts/setup.sh)");
    let instance = ctd.instance().clone();
    let mut rs = RuntimeServiceClient::new(ctd.channel().await.expect("channel"));

    let v = rs
        .version(cri::VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");

    // The sandbox image comes from the fixture registry through the plain-HTTP mirror.
    let pod = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "fixture-pod".into(),
                    uid: "fixture-pod-uid".into(),
                    namespace: "fixture".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|s| panic!("RunPodSandbox: {s:?}\n{}", ctd.log_tail()))
        .into_inner()
        .pod_sandbox_id;
    let status = rs
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(!ip.is_empty(), "the pod got no IP from the bridge network");
    assert!(
        link_exists(&instance.bridge),
        "bridge {} missing",
        instance.bridge
    );
    assert!(!shims_of(&instance).is_empty(), "a shim serves the pod");
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("RemovePodSandbox");

    // A second pod stays running: teardown must remove it too.
    rs.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "left-running".into(),
                uid: "left-running-uid".into(),
                namespace: "fixture".into(),
                attempt: 0,
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    })
    .await
    .expect("RunPodSandbox");
    drop(rs);

    ctd.shutdown().await.expect("clean teardown");
    assert!(shims_of(&instance).is_empty(), "shims left");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", instance.pid)).exists(),
        "containerd still runs"
    );
    assert_eq!(
        mounts_under(&instance.dir),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!link_exists(&instance.bridge), "bridge left");
    assert!(!instance.dir.exists(), "directory left");
}

//! A fixture registry plus a crid that trusts it, and short CRI helpers for pod and
//! container tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use crid_api::runtime::v1 as cri;
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use tonic::transport::Channel;

use super::TestDaemon;

/// A registry serving the fixture images and a crid configured for it.
pub struct Cluster {
    /// The daemon (dropped first: containers go before the registry).
    pub daemon: TestDaemon,
    /// The registry.
    pub registry: Registry,
}

impl Cluster {
    /// Starts the registry, pushes the fixtures, starts crid with `extra_toml` added.
    pub async fn start(extra_toml: &str) -> Cluster {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs pods and containers: run it as root (CI does)"
        );
        let registry = Registry::start(RegistryOptions::plain())
            .await
            .expect("start docker-registry (run scripts/setup.sh)");
        registry.push_all_fixtures().await.expect("push fixtures");
        let host = registry.host();
        let daemon = TestDaemon::start(&format!(
            "[image]\ninsecure_registries = [\"{host}\"]\npause_image = \"{host}/pause:latest\"\n{extra_toml}"
        ));
        Cluster { daemon, registry }
    }

    /// `<registry>/<name>:latest`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}:latest", self.registry.host())
    }

    /// RuntimeService client.
    pub async fn rs(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.daemon.channel().await)
    }

    /// ImageService client.
    pub async fn is(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.daemon.channel().await)
    }

    /// Pulls `<registry>/<name>:latest`, returning the reference.
    pub async fn pull(&self, name: &str) -> String {
        let image = self.image(name);
        self.is()
            .await
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("pull");
        image
    }

    /// A log directory for pods, inside the test dir.
    pub fn log_dir(&self) -> PathBuf {
        self.daemon.path().join("logs")
    }
}

/// A pod config with unique metadata and a log directory.
pub fn pod_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "crid-test".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.join(name).display().to_string(),
        labels: HashMap::from([("app".to_owned(), name.to_owned())]),
        ..Default::default()
    }
}

/// A container config running `cmd` from `image`, logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Runs a pod on `handler`, returning its ID.
pub async fn run_pod(
    rs: &mut RuntimeServiceClient<Channel>,
    config: &cri::PodSandboxConfig,
    handler: &str,
) -> String {
    rs.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

/// Creates and starts a container, returning its ID.
pub async fn run_container(
    rs: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rs.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

/// ContainerStatus.
pub async fn status(rs: &mut RuntimeServiceClient<Channel>, id: &str) -> cri::ContainerStatus {
    rs.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("status")
}

/// Waits until the container reaches `state` (a `cri::ContainerState`), up to `limit`.
pub async fn wait_state(
    rs: &mut RuntimeServiceClient<Channel>,
    id: &str,
    state: cri::ContainerState,
    limit: Duration,
) -> cri::ContainerStatus {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(rs, id).await;
        if s.state == state as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not reach {state:?} within {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// ExecSync.
pub async fn exec(
    rs: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    rs.exec_sync(cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// Stops and removes every pod (and so every container) the daemon knows.
pub async fn remove_all(rs: &mut RuntimeServiceClient<Channel>) {
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    for p in pods {
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .expect("StopPodSandbox");
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id,
        })
        .await
        .expect("RemovePodSandbox");
    }
}

/// Asserts the daemon left nothing of the objects it made: no mount under its directory,
/// no process or cgroup of its pods and containers.
pub fn assert_nothing_left(d: &TestDaemon, ids: &[String]) {
    let mounts = super::mounts_under(d.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let procs = super::processes_of(ids);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let cgroups = super::cgroups_of(ids);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    for sub in [
        "run/containers",
        "run/pods",
        "root/state/pods",
        "root/state/containers",
        "root/storage/containers",
    ] {
        let left: Vec<_> = std::fs::read_dir(d.path().join(sub))
            .map(|e| e.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{sub} still holds {left:?}");
    }
}

/// A runtime wrapper around `runtime` that stalls a command (`create`, `start`, `kill`, ...)
/// while `<dir>/stall-<command>` exists, after touching `<dir>/stalled-<command>`.
pub fn stall_wrapper(dir: &Path, runtime: &str) -> PathBuf {
    let script = dir.join("stall-runtime");
    let d = dir.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in create|start|kill|delete|exec|state|update) cmd=$a; break;; esac; done\nif [ -n \"$cmd\" ] && [ -e \"{d}/stall-$cmd\" ]; then\n  touch \"{d}/stalled-$cmd\"\n  while [ -e \"{d}/stall-$cmd\" ]; do sleep 0.1; done\nfi\nexec {runtime} \"$@\"\n"
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {limit:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CNI network private to one test: its own bridge, /24 subnet and IPAM data directory,
/// written into the daemon's CNI config directory. Dropping it deletes the bridge.
pub struct TestNetwork {
    /// The bridge device.
    pub bridge: String,
    /// The subnet, `10.<a>.<b>.0/24`.
    pub subnet: String,
    /// host-local's lease directory.
    pub data_dir: PathBuf,
}

impl TestNetwork {
    /// Writes a bridge + host-local + portmap conflist named `<tag>` into `d`'s net.d;
    /// `third_octet` picks the subnet `10.215.<third_octet>.0/24` (unique per test).
    pub fn install(d: &TestDaemon, tag: &str, third_octet: u8) -> TestNetwork {
        let bridge = format!("cr{tag}{}", std::process::id() % 10000);
        assert!(bridge.len() <= 15, "bridge name {bridge} too long");
        let subnet = format!("10.215.{third_octet}.0/24");
        let data_dir = d.path().join("ipam");
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("crid-test-{tag}"),
            "plugins": [
                {
                    "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data_dir, "routes": [{"dst": "0.0.0.0/0"}]}
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(
            d.path().join("net.d/10-test.conflist"),
            conflist.to_string(),
        )
        .expect("write conflist");
        TestNetwork {
            bridge,
            subnet,
            data_dir,
        }
    }

    /// IP leases host-local holds now (its files named by address).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_dir(&self.data_dir)
            .map(|e| {
                e.flatten()
                    .flat_map(|n| std::fs::read_dir(n.path()).into_iter().flatten().flatten())
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Interfaces enslaved to the bridge (one veth per attached pod).
    pub fn ports(&self) -> Vec<String> {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
            .map(|e| {
                e.flatten()
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
    }
}

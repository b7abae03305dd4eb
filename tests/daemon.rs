//! The real `crid` binary on a temp socket, driven through the generated CRI client.
//!
//! Tests whose names end in `_needs_runc` need Debian's runc installed (CI installs it).

mod support;

// Requests no generated type can express go through the harness's raw codec.
use crid_conformance::hostile::wire::RawCodec;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crid_api::RuntimeServiceClient;
use crid_api::cri;
use nix::sys::signal::Signal;
use support::{BRIDGE_CONFLIST, TestDaemon};
use tonic::Code;

/// RPCs that the foundation implements; every other one must answer Unimplemented.
const IMPLEMENTED: &[&str] = &[
    "Version",
    "Status",
    "RuntimeConfig",
    "UpdateRuntimeConfig",
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "GetContainerEvents",
    "ContainerStats",
    "ListContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "UpdatePodSandboxResources",
];

fn condition<'a>(s: &'a cri::StatusResponse, kind: &str) -> &'a cri::RuntimeCondition {
    s.status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.r#type == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {s:?}"))
}

async fn status(d: &TestDaemon, verbose: bool) -> cri::StatusResponse {
    RuntimeServiceClient::new(d.channel().await)
        .status(cri::StatusRequest { verbose })
        .await
        .expect("Status")
        .into_inner()
}

// cri:RuntimeService.Version: runtime_name, runtime_version, runtime_api_version.
#[tokio::test]
async fn version_names_crid_and_the_v1_api() {
    let d = TestDaemon::start("");
    let v = RuntimeServiceClient::new(d.channel().await)
        .version(cri::VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "crid");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.version, "0.1.0");
}

// cri:RuntimeService.Status#RuntimeReady with a runtime that works.
#[tokio::test]
async fn runtime_ready_with_real_runc_needs_runc() {
    let d = TestDaemon::start("");
    let s = status(&d, false).await;
    let c = condition(&s, "RuntimeReady");
    assert!(
        c.status,
        "runc is installed, RuntimeReady must be true: {c:?}"
    );
    let names: Vec<_> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["", "crun", "runc"],
        "default handler first under the empty name"
    );
}

// cri:RuntimeService.Status#RuntimeReady false, with reason and message, when the binary is missing.
#[tokio::test]
async fn runtime_not_ready_when_binary_missing() {
    let d = TestDaemon::start("[runtime.runtimes.runc]\npath = \"/nonexistent/runc\"\n");
    let s = status(&d, false).await;
    let c = condition(&s, "RuntimeReady");
    assert!(!c.status);
    assert_eq!(c.reason, "RuntimeNotReady");
    assert!(c.message.contains("/nonexistent/runc"), "{}", c.message);
}

// cri:RuntimeService.Status#NetworkReady follows the CNI config directory without a restart.
#[tokio::test]
async fn network_ready_follows_cni_config_dir() {
    let d = TestDaemon::start("");
    let c = condition(&status(&d, false).await, "NetworkReady").clone();
    assert!(!c.status);
    assert_eq!(c.reason, "NetworkPluginNotReady");
    assert!(
        c.message.contains("net.d"),
        "message names the directory: {}",
        c.message
    );

    d.write("net.d/10-broken.conflist", "{");
    let c = condition(&status(&d, false).await, "NetworkReady").clone();
    assert!(!c.status);
    assert!(
        c.message.contains("10-broken.conflist"),
        "rejected file is named: {}",
        c.message
    );

    d.write("net.d/20-bridge.conflist", BRIDGE_CONFLIST);
    let c = condition(&status(&d, false).await, "NetworkReady").clone();
    assert!(c.status, "valid config picked up without restart: {c:?}");
}

// cri:RuntimeService.Status#verbose: info holds JSON documents.
#[tokio::test]
async fn verbose_status_carries_the_effective_config() {
    let d = TestDaemon::start("[image]\npause_image = \"127.0.0.1:5000/pause:test\"\n");
    assert!(
        status(&d, false).await.info.is_empty(),
        "info only when verbose"
    );
    let s = status(&d, true).await;
    let config: serde_json::Value =
        serde_json::from_str(s.info.get("config").expect("config key")).expect("JSON");
    assert_eq!(config["image"]["pause_image"], "127.0.0.1:5000/pause:test");
}

// cri:RuntimeService.Status#runtime_handlers: each handler's features come from its runtime
// (`runc features` lists `rro`; crun 1.8 has no `features`), and verbose info says each
// handler's kind, version and features, or why it is unusable.
#[tokio::test]
async fn handler_features_and_versions_come_from_the_runtimes() {
    let d = TestDaemon::start("[runtime.runtimes.missing]\npath = \"/nonexistent/runtime\"\n");
    let s = status(&d, true).await;
    let rro = |name: &str| {
        s.runtime_handlers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.features)
            .map(|f| f.recursive_read_only_mounts)
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let runc_has_rro = std::process::Command::new("runc")
        .arg("features")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"rro\""));
    let new_kernel = kernel
        .split('.')
        .take(2)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        >= vec![5, 12];
    assert_eq!(rro("runc"), Some(runc_has_rro && new_kernel));
    assert_eq!(rro(""), rro("runc"), "the default handler is runc");
    assert_eq!(rro("crun"), Some(false), "crun 1.8 answers no features");
    assert_eq!(rro("missing"), Some(false));
    let info: serde_json::Value =
        serde_json::from_str(s.info.get("runtimeHandlers").expect("runtimeHandlers key"))
            .expect("JSON");
    assert_eq!(info["runc"]["kind"], "oci");
    assert!(
        info["runc"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("runc version")),
        "{info}"
    );
    assert_eq!(
        info["runc"]["features"]["recursiveReadOnlyMounts"],
        runc_has_rro && new_kernel
    );
    assert!(
        info["missing"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/runtime")),
        "{info}"
    );
}

// cri:RuntimeService.RuntimeConfig: linux.cgroup_driver from the configuration.
#[tokio::test]
async fn runtime_config_reports_the_cgroup_driver() {
    for (toml, want) in [
        ("", cri::CgroupDriver::Cgroupfs),
        (
            "[runtime]\ncgroup_driver = \"systemd\"\n",
            cri::CgroupDriver::Systemd,
        ),
    ] {
        let d = TestDaemon::start(toml);
        let r = RuntimeServiceClient::new(d.channel().await)
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .expect("RuntimeConfig")
            .into_inner();
        assert_eq!(
            r.linux.expect("linux").cgroup_driver(),
            want,
            "config {toml:?}"
        );
    }
}

// cri:RuntimeService.UpdateRuntimeConfig: runtime_config.network_config.pod_cidr.
#[tokio::test]
async fn update_runtime_config_records_pod_cidr_and_rejects_garbage() {
    let d = TestDaemon::start("");
    let mut client = RuntimeServiceClient::new(d.channel().await);
    let req = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    client
        .update_runtime_config(req("10.88.0.0/16"))
        .await
        .expect("valid CIDR");
    let s = status(&d, true).await;
    assert_eq!(
        s.info.get("podCIDR").map(String::as_str),
        Some("\"10.88.0.0/16\"")
    );

    let err = client
        .update_runtime_config(req("10.88.0.0/99"))
        .await
        .expect_err("bad CIDR");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("runtime_config.network_config.pod_cidr"),
        "{}",
        err.message()
    );
}

// Every RPC not implemented yet says so, naming itself: never a stub that pretends.
#[tokio::test]
async fn every_other_rpc_answers_unimplemented_naming_itself() {
    let d = TestDaemon::start("");
    let channel = d.channel().await;
    let rpcs = crid_api::RUNTIME_SERVICE_RPCS
        .iter()
        .map(|m| ("RuntimeService", *m))
        .chain(
            crid_api::IMAGE_SERVICE_RPCS
                .iter()
                .map(|m| ("ImageService", *m)),
        )
        .filter(|(_, m)| !IMPLEMENTED.contains(m));
    let mut checked = 0;
    for (service, method) in rpcs {
        let streaming = crid_api::SERVER_STREAMING_RPCS.contains(&method);
        let path = crid_api::rpc_path(service, method);
        let err = crid_api::client::call_with_default_request(channel.clone(), &path, streaming)
            .await
            .expect_err(&path);
        assert_eq!(err.code(), Code::Unimplemented, "{path}: {err:?}");
        assert!(
            err.message().contains(method),
            "{path}: message must name the RPC: {}",
            err.message()
        );
        checked += 1;
    }
    assert_eq!(checked, 41 - IMPLEMENTED.len());
    // And through a typed client, so a generated client's view is checked too.
    let err = RuntimeServiceClient::new(channel)
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .expect_err("CheckpointContainer");
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_removes_socket_and_lock() {
    let mut d = TestDaemon::start("[server]\nshutdown_timeout_secs = 1\n");
    let sock = d.socket();
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    // A connection whose client never answers GOAWAY (this test's runtime is blocked below)
    // must not hold the shutdown up beyond the grace period.
    let _idle = d.channel().await;
    let status = d.signal_and_wait(Signal::SIGTERM, Duration::from_secs(15));
    assert!(status.success(), "exit status {status}:\n{}", d.log());
    assert!(!sock.exists(), "socket removed");
    assert!(
        !sock.with_file_name("crid.sock.lock").exists(),
        "lock file removed"
    );
    assert!(d.log().contains("crid stopped"), "{}", d.log());
}

#[tokio::test]
async fn sigint_stops_cleanly() {
    let mut d = TestDaemon::start("");
    let status = d.signal_and_wait(Signal::SIGINT, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    assert!(!d.socket().exists());
}

#[test]
fn second_daemon_on_the_same_socket_is_refused() {
    let first = TestDaemon::start("");
    let out = first.command().output().expect("run second crid");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another crid is already serving"),
        "{stderr}"
    );
    assert!(
        first.socket().exists(),
        "the first daemon's socket is untouched"
    );
    assert!(std::os::unix::net::UnixStream::connect(first.socket()).is_ok());
}

// Two daemons must never share a storage root: the second would "recover" (remove) the
// first one's half-made pods and pulls. Refused before it touches anything.
#[test]
fn second_daemon_on_the_same_storage_root_is_refused() {
    let first = TestDaemon::start("");
    let other_socket = first.path().join("sock/other.sock");
    let d = first.path();
    let out = std::process::Command::new(support::crid())
        .arg("--config")
        .arg(d.join("crid.toml"))
        .arg("--config-dir")
        .arg(d.join("crid.d"))
        .arg("--listen")
        .arg(&other_socket)
        .output()
        .expect("run second crid");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("storage root") && stderr.contains("in use by another crid"),
        "{stderr}"
    );
    assert!(
        !other_socket.exists(),
        "the refused daemon removed its socket"
    );
    assert!(std::os::unix::net::UnixStream::connect(first.socket()).is_ok());
}

#[test]
fn stale_socket_after_kill_9_is_replaced() {
    let mut d = TestDaemon::start("");
    d.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    assert!(d.socket().exists(), "kill -9 leaves the socket behind");
    d.spawn();
    d.wait_ready();
}

#[test]
fn bad_config_names_file_key_and_reason() {
    let d = TestDaemon::prepare("[runtime]\ndefault_runtime = \"runc\"\n");
    let dropin = d.write("crid.d/50-bad.toml", "[streaming]\nport = \"eighty\"\n");
    let out = d.command().output().expect("run crid");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dropin.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("streaming.port"), "names the key: {stderr}");
    assert!(stderr.contains("eighty"), "says why: {stderr}");
    assert!(!d.socket().exists(), "nothing served");

    let d = TestDaemon::prepare("[runtime.runtimes.runc]\npth = \"/usr/bin/runc\"\n");
    let out = d.command().arg("config").output().expect("run crid config");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runtime.runtimes.runc.pth") && stderr.contains("unknown key"),
        "{stderr}"
    );
}

#[test]
fn config_command_prints_effective_config_with_flags_applied() {
    let d = TestDaemon::prepare("[image]\nshort_name_search = [\"quay.io\"]\n");
    d.write(
        "crid.d/10.toml",
        "[image]\ninsecure_registries = [\"127.0.0.1:5000\"]\n",
    );
    let out = d.run(&["--root", "/srv/crid-test-root", "config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).expect("TOML");
    assert_eq!(
        printed["storage"]["root"].as_str(),
        Some("/srv/crid-test-root")
    );
    assert_eq!(printed["server"]["listen"].as_str(), d.socket().to_str());
    assert_eq!(
        printed["image"]["short_name_search"][0].as_str(),
        Some("quay.io")
    );
    assert_eq!(
        printed["image"]["insecure_registries"][0].as_str(),
        Some("127.0.0.1:5000")
    );
}

#[test]
fn check_command_reports_runtime_and_cni_needs_runc() {
    let d = TestDaemon::prepare("");
    // Debian's containernetworking-plugins install into /usr/lib/cni.
    d.write(
        "crid.d/10.toml",
        "[network]\ncni_plugin_dirs = [\"/usr/lib/cni\"]\n",
    );
    d.write("net.d/10.conflist", BRIDGE_CONFLIST);
    let out = d.run(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[ ok ] runtime runc (default)"), "{stdout}");
    assert!(stdout.contains("network crid-test"), "{stdout}");
    assert!(stdout.contains("cni plugin bridge"), "{stdout}");

    let d = TestDaemon::prepare("[runtime.runtimes.runc]\npath = \"/nonexistent/runc\"\n");
    let out = d.run(&["check"]);
    assert!(
        !out.status.success(),
        "a missing default runtime fails the check"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] runtime runc (default)"));
}

#[test]
fn version_command() {
    let out = std::process::Command::new(support::crid())
        .arg("version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("crid {}", env!("CARGO_PKG_VERSION")))
    );
}

/// Sends the encoded request `body` to RuntimeService method `method`.
async fn raw_call(d: &TestDaemon, method: &str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(d.channel().await)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.expect("ready");
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/runtime.v1.RuntimeService/{method}")
            .parse()
            .expect("path");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A length-delimited protobuf field `tag` holding `value`.
fn field(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    let mut n = value.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(value);
    out
}

fn rss_kib(pid: nix::unistd::Pid) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// Issue 16, smaller findings: an error that echoed a 1 MiB ID made the answer too big for
// the client; a string that is not UTF-8 answered Internal; big requests kept the daemon's
// memory. Now: a short message naming the cause, InvalidArgument, a refusal.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_short_answers_invalid_argument_and_cost_no_memory() {
    let d = TestDaemon::start("");
    let mut rs = RuntimeServiceClient::new(d.channel().await);
    let huge = "a".repeat(1 << 20);
    let e = rs
        .container_status(cri::ContainerStatusRequest {
            container_id: huge,
            verbose: false,
        })
        .await
        .expect_err("absent");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().len() < 300, "{}", e.message().len());
    assert!(e.message().ends_with("not found"), "{}", e.message());

    // ContainerStatusRequest.container_id (field 1) as bytes that are not UTF-8.
    let e = raw_call(&d, "ContainerStatus", field(1, &[0xff, 0xfe, b'a']))
        .await
        .expect_err("not UTF-8");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("container_id"), "{e:?}");
    // RunPodSandboxRequest.config.metadata.name (fields 1.1.1).
    let e = raw_call(
        &d,
        "RunPodSandbox",
        field(1, &field(1, &field(1, &[b'p', 0xc3]))),
    )
    .await
    .expect_err("not UTF-8");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Requests over the cap are refused whole; the daemon's memory comes back after
    // requests near it.
    let before = rss_kib(d.pid());
    for mib in [15, 15, 15, 17, 33, 33] {
        let body = field(1, &vec![b'a'; mib << 20]);
        let e = raw_call(&d, "ContainerStatus", body)
            .await
            .expect_err("big");
        let refused = mib > 16;
        assert_eq!(
            e.code() == Code::ResourceExhausted || e.code() == Code::OutOfRange,
            refused,
            "{mib} MiB: {e:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib(d.pid());
    eprintln!("RSS before {before} KiB, after {after} KiB");
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    // Still serving.
    status(&d, false).await;
}

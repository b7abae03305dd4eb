//! Pod networking through real CNI plugins (Debian's containernetworking-plugins), as root:
//! pod IPs, pod-to-pod traffic over the bridge, hostPort, DNS, lease release over many
//! cycles, a broken configuration, and DEL after a daemon restart. Each test has its own
//! bridge and subnet (`TestNetwork`).

mod support;

use std::time::Duration;

use crid_api::runtime::v1 as cri;
use nix::sys::signal::Signal;
use support::cri::{
    Cluster, TestNetwork, assert_nothing_left, container_config, exec, pod_config, remove_all,
    run_container, run_pod, wait_state,
};

async fn pod_ip(
    rs: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    pod: &str,
) -> String {
    rs.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
    .status
    .and_then(|s| s.network)
    .map(|n| n.ip)
    .unwrap_or_default()
}

// cri:PodSandboxStatus#network.ip; cri:RunPodSandbox#config.port_mappings (hostPort through
// portmap); the Kubernetes network model (pod to pod by IP over the bridge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_and_a_host_port_reaches_a_pod_needs_root() {
    let c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "pp", 1);
    let httpd = c.pull("httpd").await;
    let busybox = c.pull("busybox").await;
    let mut rs = c.rs().await;

    let host_port = 20_000 + (std::process::id() % 20_000) as i32;
    let mut server_pc = pod_config("server", &c.log_dir());
    server_pc.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port,
        host_ip: String::new(),
    }];
    let server = run_pod(&mut rs, &server_pc, "").await;
    let mut httpd_config = container_config("httpd", &httpd, &[]);
    httpd_config.command.clear();
    let web = run_container(&mut rs, &server, &server_pc, httpd_config).await;
    wait_state(
        &mut rs,
        &web,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;
    let server_ip = pod_ip(&mut rs, &server).await;
    let prefix = net.subnet.trim_end_matches("0/24");
    assert!(
        server_ip.starts_with(prefix),
        "pod IP {server_ip} is in {}",
        net.subnet
    );
    let hosts = exec(&mut rs, &web, &["cat", "/etc/hosts"], 10)
        .await
        .expect("hosts")
        .stdout;
    assert!(
        String::from_utf8_lossy(&hosts).contains(&format!("{server_ip}\tserver")),
        "{}",
        String::from_utf8_lossy(&hosts)
    );

    let client_pc = pod_config("client", &c.log_dir());
    let client = run_pod(&mut rs, &client_pc, "").await;
    let sh = run_container(
        &mut rs,
        &client,
        &client_pc,
        container_config("sh", &busybox, &["sleep", "1000"]),
    )
    .await;
    let client_ip = pod_ip(&mut rs, &client).await;
    assert_ne!(client_ip, server_ip);
    // nc, not wget: Debian's static busybox wget crashes in glibc's name resolution.
    let script = format!(
        "for i in $(seq 20); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {server_ip} 80 && exit 0; sleep 0.25; done; exit 1"
    );
    let r = exec(&mut rs, &sh, &["sh", "-c", &script], 30)
        .await
        .expect("nc");
    assert_eq!(
        r.exit_code,
        0,
        "pod-to-pod: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let got = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        got.starts_with("HTTP/1.") && got.contains("200"),
        "pod-to-pod answer: {got}"
    );
    let page = got.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    assert!(!page.is_empty(), "a page: {got}");

    // hostPort on the host's loopback.
    let from_host = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        for _ in 0..20 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", host_port as u16)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut body = Vec::new();
                let _ = s.read_to_end(&mut body);
                if !body.is_empty() {
                    return body;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Vec::new()
    })
    .await
    .expect("join");
    let from_host = String::from_utf8_lossy(&from_host).into_owned();
    assert!(
        from_host.starts_with("HTTP/1.") && from_host.contains("200"),
        "hostPort answer: {from_host}"
    );
    assert!(
        from_host.contains(&page),
        "the same page through both paths"
    );

    assert_eq!(net.leases().len(), 2, "{:?}", net.leases());
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert!(
        net.leases().is_empty(),
        "leases released: {:?}",
        net.leases()
    );
    assert!(net.ports().is_empty(), "veths gone: {:?}", net.ports());
    let rules = String::from_utf8_lossy(
        &std::process::Command::new("iptables-save")
            .output()
            .expect("iptables-save")
            .stdout,
    )
    .into_owned();
    for id in &ids {
        assert!(
            !rules.contains(id.as_str()),
            "no iptables rule names pod {id}"
        );
    }
    assert_nothing_left(&c.daemon, &ids);
}

// cri:RunPodSandbox / StopPodSandbox: 50 pod create/stop cycles leak no IPAM lease or veth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pod_cycles_leak_no_lease_needs_root() {
    let c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "cy", 2);
    let mut rs = c.rs().await;
    for i in 0..50 {
        let pc = pod_config(&format!("cycle{i}"), &c.log_dir());
        let pod = run_pod(&mut rs, &pc, "").await;
        assert!(
            !pod_ip(&mut rs, &pod).await.is_empty(),
            "cycle {i} got an IP"
        );
        assert_eq!(net.leases().len(), 1, "cycle {i}: {:?}", net.leases());
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("stop");
        assert!(net.leases().is_empty(), "cycle {i}: lease released at stop");
        assert_eq!(
            pod_ip(&mut rs, &pod).await,
            "",
            "a stopped pod reports no IP"
        );
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("stop twice");
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .expect("remove");
    }
    assert!(net.leases().is_empty());
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    assert_nothing_left(&c.daemon, &[]);
}

// A broken network configuration: RunPodSandbox fails with the plugin's own message and
// leaves nothing behind (no namespace pin, no lease, no record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_plugin_config_fails_cleanly_needs_root() {
    let c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "bk", 3);
    // bridge succeeds, then portmap refuses its configuration: the ADD must be rolled back.
    let path = c.daemon.path().join("net.d/10-test.conflist");
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    list["plugins"][1]["snat"] = serde_json::json!("not a boolean");
    std::fs::write(&path, list.to_string()).expect("write");
    let mut rs = c.rs().await;
    let mut pc = pod_config("broken", &c.log_dir());
    pc.port_mappings = vec![cri::PortMapping {
        protocol: 0,
        container_port: 80,
        host_port: 20_999,
        host_ip: String::new(),
    }];
    let err = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("portmap fails");
    assert!(
        err.message().contains("portmap"),
        "the error names the plugin: {err:?}"
    );
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    assert_nothing_left(&c.daemon, &[]);
}

// DEL after a daemon restart, even with the configuration gone meanwhile (the result cache):
// the lease is released and the veth removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_after_a_restart_uses_the_cache_needs_root() {
    let mut c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "rs", 4);
    let mut rs = c.rs().await;
    let pc = pod_config("survivor", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let ip = pod_ip(&mut rs, &pod).await;
    assert_eq!(net.leases(), vec![ip.clone()]);
    drop(rs);
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    std::fs::remove_file(c.daemon.path().join("net.d/10-test.conflist")).expect("config gone");
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;
    assert_eq!(
        pod_ip(&mut rs, &pod).await,
        ip,
        "the IP survives the restart"
    );
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop");
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove");
    assert_nothing_left(&c.daemon, &[]);
}

// cri:RunPodSandbox#config.dns_config lands in resolv.conf; a host-network pod skips CNI
// and sees the host's hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_config_and_host_network_pods_needs_root() {
    let c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "dn", 5);
    let busybox = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let mut pc = pod_config("dns", &c.log_dir());
    pc.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.215.5.53".into()],
        searches: vec!["svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("c", &busybox, &["sleep", "1000"]),
    )
    .await;
    let resolv = exec(&mut rs, &ctr, &["cat", "/etc/resolv.conf"], 10)
        .await
        .expect("cat")
        .stdout;
    assert_eq!(
        String::from_utf8_lossy(&resolv),
        "search svc.cluster.local\nnameserver 10.215.5.53\noptions ndots:5\n"
    );

    let mut host_pc = pod_config("hostnet", &c.log_dir());
    host_pc.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let leases_before = net.leases().len();
    let host_pod = run_pod(&mut rs, &host_pc, "").await;
    assert_eq!(
        net.leases().len(),
        leases_before,
        "a host-network pod runs no CNI plugin"
    );
    let hctr = run_container(
        &mut rs,
        &host_pod,
        &host_pc,
        container_config("h", &busybox, &["sleep", "1000"]),
    )
    .await;
    let name = exec(&mut rs, &hctr, &["hostname"], 10)
        .await
        .expect("hostname")
        .stdout;
    let host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(
        String::from_utf8_lossy(&name).trim(),
        host.to_string_lossy()
    );
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// The networking issue's definition of done: an independent CRI client (upstream-generated
// stubs over grpcio) runs two pods that talk to each other over the pod network, and reaches
// a hostPort from the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_client_runs_two_pods_that_talk_and_reaches_a_host_port_needs_root() {
    let c = Cluster::start("").await;
    let net = TestNetwork::install(&c.daemon, "up", 7);
    let sock = c.daemon.socket().display().to_string();
    let (httpd, busybox) = (c.image("httpd"), c.image("busybox"));
    let port = (21_000 + std::process::id() % 20_000).to_string();
    let out = tokio::task::spawn_blocking(move || {
        support::upstream_client("cri_pods.py", &[&sock, "network", &httpd, &busybox, &port])
    })
    .await
    .expect("join");
    let ip = out["server_ip"].as_str().expect("ip");
    assert!(ip.starts_with("10.215.7."), "{out}");
    assert_eq!(out["pod_to_pod_exit"], 0, "{out}");
    let page = out["pod_to_pod"].as_str().expect("page");
    assert!(
        page.starts_with("HTTP/1.") && page.contains(" 200 "),
        "{out}"
    );
    let from_host = out["from_host"].as_str().expect("from host");
    assert!(
        from_host.starts_with("HTTP/1.") && from_host.contains(" 200 "),
        "{out}"
    );
    let body = |r: &str| r.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    assert_eq!(body(page), body(from_host), "the same page both ways");
    assert!(
        net.leases().is_empty(),
        "both pods removed, leases released: {:?}",
        net.leases()
    );
    assert_nothing_left(&c.daemon, &[]);
}

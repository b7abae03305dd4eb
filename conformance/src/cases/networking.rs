//! Networking: pod IP, DNS config, hostname, host port mappings, pod-to-pod traffic.
//! Traffic stays on loopback and on the endpoint's own pod network.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::container::CONTAINER_NEEDS;
use super::support::{SLEEP_SCRIPT, Scope, scoped};
use super::{Area, Case, CaseResult, Needs, ensure};
use crate::fixtures::image::rootfs::INDEX_HTML;
use crate::fixtures::image::{HTTPD, HTTPD_PORT};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
const HTTPD_NEEDS: Needs = Needs {
    image: Some(HTTPD),
    ..CONTAINER_NEEDS
};

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Networking
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    let httpd = cases.needs(HTTPD_NEEDS);
    vec![
        cases.required(
            "networking/pod-ip",
            "cri:RuntimeService.PodSandboxStatus#status.network.ip",
            "a pod in its own network namespace reports an IP address, and its container has that address",
            |ctx| Box::pin(scoped(ctx, "np", pod_ip)),
        ),
        cases.required(
            "networking/dns-config",
            "cri:RuntimeService.RunPodSandbox#config.dns_config",
            "dns_config servers, searches and options are the container's /etc/resolv.conf",
            |ctx| Box::pin(scoped(ctx, "nd", dns_config)),
        ),
        cases.required(
            "networking/hostname",
            "cri:RuntimeService.RunPodSandbox#config.hostname",
            "the pod's hostname is the container's hostname",
            |ctx| Box::pin(scoped(ctx, "nh", hostname)),
        ),
        httpd.optional(
            "networking/port-mapping-host-port",
            "cri:RuntimeService.RunPodSandbox#config.port_mappings",
            "a port mapping to 127.0.0.1:host_port reaches the pod's httpd (hostPort; needs CNI portmap)",
            |ctx| Box::pin(scoped(ctx, "nm", port_mapping)),
        ),
        httpd.required(
            "networking/pod-to-pod",
            "cri:RuntimeService.PodSandboxStatus#status.network.ip",
            "a pod reaches another pod's httpd at the IP PodSandboxStatus reports (Kubernetes network model)",
            |ctx| Box::pin(scoped(ctx, "nn", pod_to_pod)),
        ),
    ]
}

async fn ip_of(s: &Scope, pod: &str) -> Result<IpAddr, String> {
    let st = s.pod_status(pod).await?;
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    ip.parse()
        .map_err(|_| format!("status.network.ip {ip:?} is not an IP address"))
}

async fn pod_ip(s: Arc<Scope>) -> CaseResult {
    let (pod, id) = s.sleeper(|_| {}).await?;
    let ip = ip_of(&s, &pod).await?;
    let addrs = s.sh(&id, "ip -o addr").await?;
    ensure(addrs.contains(&format!(" {ip}/")), || {
        format!("the container's addresses lack {ip}: {addrs}")
    })?;
    Ok(ip.to_string())
}

async fn dns_config(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s
        .busybox(
            SLEEP_SCRIPT,
            |p| {
                p.dns_config = Some(cri::DnsConfig {
                    servers: vec!["192.0.2.53".into()],
                    searches: vec!["conformance.example".into()],
                    options: vec!["ndots:3".into()],
                })
            },
            |_| {},
        )
        .await?;
    let conf = s.sh(&id, "cat /etc/resolv.conf").await?;
    let lines: Vec<Vec<&str>> = conf
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for want in [
        ["nameserver", "192.0.2.53"],
        ["search", "conformance.example"],
        ["options", "ndots:3"],
    ] {
        ensure(lines.iter().any(|l| l[..] == want[..]), || {
            format!("no `{}` in /etc/resolv.conf:\n{conf}", want.join(" "))
        })?;
    }
    Ok(String::new())
}

async fn hostname(s: Arc<Scope>) -> CaseResult {
    let (_, id, pod) = s.busybox(SLEEP_SCRIPT, |_| {}, |_| {}).await?;
    let got = s.sh(&id, "hostname").await?;
    ensure(got == pod.hostname, || {
        format!("hostname {got:?}, expected {:?}", pod.hostname)
    })?;
    Ok(String::new())
}

/// A plain HTTP/1.0 GET on loopback, retried while the server starts.
async fn http_get(port: u16) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(mut conn) => {
                let req = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                let mut body = Vec::new();
                let io = async {
                    conn.write_all(req.as_bytes()).await?;
                    conn.read_to_end(&mut body).await
                };
                match tokio::time::timeout(Duration::from_secs(5), io).await {
                    Ok(Ok(_)) if !body.is_empty() => {
                        return Ok(String::from_utf8_lossy(&body).into_owned());
                    }
                    other => last = format!("{other:?}"),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("GET http://127.0.0.1:{port}/ failed: {last}"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

async fn port_mapping(s: Arc<Scope>) -> CaseResult {
    let port = free_port()?;
    s.httpd(|p| {
        p.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: i32::from(HTTPD_PORT),
            host_port: i32::from(port),
            host_ip: "127.0.0.1".into(),
        }]
    })
    .await?;
    let resp = http_get(port).await?;
    ensure(resp.contains(INDEX_HTML.trim()), || {
        format!("127.0.0.1:{port} answered {resp:.200}")
    })?;
    Ok(format!("host port {port}"))
}

async fn pod_to_pod(s: Arc<Scope>) -> CaseResult {
    let server = s.httpd(|_| {}).await?;
    let ip = ip_of(&s, &server).await?;
    let (_, client) = s.sleeper(|_| {}).await?;
    // nc, not wget: the static busybox's wget crashes in name resolution (glibc NSS).
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {HTTPD_PORT} && exit 0; sleep 0.5; done; exit 1"
    );
    let body = s.sh(&client, &script).await?;
    ensure(body.contains(INDEX_HTML.trim()), || {
        format!("http://{ip}/ answered {body:.200}")
    })?;
    Ok(format!("reached {ip}"))
}

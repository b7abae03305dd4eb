//! Pod network benchmark (issue 5; not a test): RunPodSandbox on a CNI bridge network, for
//!
//! - crid (the release binaries of `cargo build --release --bins`, which the bench runs
//!   first: see `common::Binaries`), and
//! - Debian's containerd 1.6 with its CRI plugin (the conformance fixture),
//!
//! each with the conflist of the fixture's shape (bridge with host-local IPAM, portmap,
//! loopback) on a bridge and /24 of its own, in the same run, alternating per pod. Each pod
//! is stopped and removed right after its RunPodSandbox (timed apart), so IPAM never runs out.
//!
//! The floor, interleaved in the same loop: the plugin chain of the same conflist run
//! directly (bridge ADD, portmap ADD, loopback ADD with the CNI environment, each fed the
//! previous result) against a network namespace this bench pins itself, then DEL in reverse.
//!
//! Run as root: `cargo bench -p crid --bench pod_network` (env `POD_NETWORK_BENCH_PODS`,
//! default 30).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{CNI_BIN_DIR, Crid, Network, median_p90, ms, timed};
use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::containerd::{Containerd, ContainerdOptions};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use serde_json::Value;
use tonic::transport::Channel;

/// Untimed rounds before measuring (first bridge, caches).
const WARMUP: usize = 2;

/// One CRI runtime under test.
struct Target {
    name: &'static str,
    rs: RuntimeServiceClient<Channel>,
    logs: PathBuf,
    run: Vec<Duration>,
    teardown: Vec<Duration>,
}

impl Target {
    /// RunPodSandbox (timed), then StopPodSandbox + RemovePodSandbox (timed together).
    async fn round(&mut self, name: &str) -> Result<(Duration, Duration)> {
        let who = self.name;
        let pc = common::pod_config(name, &self.logs)?;
        let (r, run) = timed(self.rs.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc),
            runtime_handler: String::new(),
        }))
        .await;
        let pod = r
            .with_context(|| format!("{who}: RunPodSandbox {name}"))?
            .into_inner()
            .pod_sandbox_id;
        let ip = self
            .rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .with_context(|| format!("{who}: PodSandboxStatus {name}"))?
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        let t = Instant::now();
        self.rs
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .with_context(|| format!("{who}: StopPodSandbox {name}"))?;
        self.rs
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .with_context(|| format!("{who}: RemovePodSandbox {name}"))?;
        let teardown = t.elapsed();
        if ip.is_empty() {
            bail!("{who}: pod {name} got no IP: is its CNI network in use?");
        }
        Ok((run, teardown))
    }
}

/// Runs one plugin of `net`'s chain; returns its stdout (the result, for ADD).
fn plugin(
    net: &Value,
    conf: &Value,
    command: &str,
    id: &str,
    netns: &Path,
    prev: Option<&Value>,
) -> Result<Vec<u8>> {
    let kind = conf["type"].as_str().context("plugin without type")?;
    let mut stdin = conf.clone();
    stdin["name"] = net["name"].clone();
    stdin["cniVersion"] = net["cniVersion"].clone();
    if let Some(p) = prev {
        stdin["prevResult"] = p.clone();
    }
    let mut child = Command::new(Path::new(CNI_BIN_DIR).join(kind))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_BIN_DIR)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=crid-bench;K8S_POD_NAME={id};K8S_POD_INFRA_CONTAINER_ID={id}"
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start CNI plugin {kind}"))?;
    child
        .stdin
        .take()
        .context("plugin stdin")?
        .write_all(&serde_json::to_vec(&stdin)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "CNI {command} {kind} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// The plugin chain's own time: ADD of each plugin (per plugin and in total) into a freshly
/// pinned namespace, then DEL in reverse order (timed in total).
struct Floor {
    net: Network,
    conflist: Value,
    dir: tempfile::TempDir,
    add: Vec<Duration>,
    per_plugin: Vec<Vec<Duration>>,
    del: Vec<Duration>,
}

impl Floor {
    fn new(avoid: &[&str]) -> Result<Floor> {
        let dir = tempfile::Builder::new()
            .prefix("crid-bench-cni-")
            .tempdir()?;
        let net = Network::new("crf", dir.path(), avoid);
        let conflist = net.conflist();
        let plugins = conflist["plugins"].as_array().map_or(0, Vec::len);
        Ok(Floor {
            net,
            conflist,
            dir,
            add: Vec::new(),
            per_plugin: vec![Vec::new(); plugins],
            del: Vec::new(),
        })
    }

    fn plugin_names(&self) -> Vec<String> {
        self.conflist["plugins"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|p| p["type"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One ADD + DEL round; records the times unless `warmup`.
    fn round(&mut self, i: usize, warmup: bool) -> Result<()> {
        let id = format!("crid-bench-cni-{}-{i}", common::unique_tag());
        let ns = common::NetNs::new(self.dir.path().join(format!("netns-{i}")))?;
        let plugins = self.conflist["plugins"]
            .as_array()
            .context("conflist without plugins")?
            .clone();
        let mut prev: Option<Value> = None;
        let mut times = Vec::new();
        let started = Instant::now();
        let mut added = Ok(());
        for p in &plugins {
            let t = Instant::now();
            match plugin(&self.conflist, p, "ADD", &id, ns.path(), prev.as_ref()) {
                Ok(out) => {
                    times.push(t.elapsed());
                    prev = Some(serde_json::from_slice(&out).context("plugin result")?);
                }
                Err(e) => {
                    added = Err(e);
                    break;
                }
            }
        }
        let add = started.elapsed();
        // DEL always, in reverse, also after a failed ADD (CNI: DEL must tolerate that).
        let t = Instant::now();
        let mut deleted = Ok(());
        for p in plugins.iter().rev() {
            if let Err(e) = plugin(&self.conflist, p, "DEL", &id, ns.path(), prev.as_ref()) {
                deleted = deleted.and(Err(e));
            }
        }
        let del = t.elapsed();
        added?;
        deleted?;
        if !warmup {
            self.add.push(add);
            self.del.push(del);
            for (k, d) in times.into_iter().enumerate() {
                self.per_plugin[k].push(d);
            }
        }
        Ok(())
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        common::umount_under(self.dir.path());
        self.net.remove_bridge();
    }
}

fn print_report(pods: usize, bins: &str, crid: &Target, ctrd: &Target, floor: &Floor) {
    println!(
        "pod network benchmark: RunPodSandbox on a CNI bridge network, {pods} pods per runtime (after {WARMUP} warm-up rounds), alternating, each pod stopped and removed before the next"
    );
    println!(
        "CNI chain for all three: {} (Debian containernetworking-plugins, {CNI_BIN_DIR}), a bridge and /24 each",
        floor.plugin_names().join(" + ")
    );
    println!("machine: {}", common::machine_facts());
    println!("crid: {bins}");
    println!();
    println!("| measure | median ms | p90 ms |");
    println!("|---|---|---|");
    let row = |name: &str, v: &[Duration]| {
        let (m, p) = median_p90(v);
        println!("| {name} | {} | {} |", ms(m), ms(p));
    };
    row("crid RunPodSandbox", &crid.run);
    row("containerd RunPodSandbox", &ctrd.run);
    row("floor: CNI chain ADD, run directly", &floor.add);
    for (name, v) in floor.plugin_names().iter().zip(&floor.per_plugin) {
        row(&format!("floor: {name} ADD"), v);
    }
    row("crid StopPodSandbox + RemovePodSandbox", &crid.teardown);
    row(
        "containerd StopPodSandbox + RemovePodSandbox",
        &ctrd.teardown,
    );
    row("floor: CNI chain DEL, run directly", &floor.del);
    let (cm, _) = median_p90(&crid.run);
    let (km, _) = median_p90(&ctrd.run);
    let (fm, _) = median_p90(&floor.add);
    println!();
    println!(
        "crid / containerd RunPodSandbox (median): {:.2}x (target <= 0.50x)",
        cm.as_secs_f64() / km.as_secs_f64()
    );
    println!(
        "crid overhead on top of the CNI chain (median): {:+.2} ms ({:.2}x the floor); containerd's: {:+.2} ms",
        (cm.as_secs_f64() - fm.as_secs_f64()) * 1e3,
        cm.as_secs_f64() / fm.as_secs_f64(),
        (km.as_secs_f64() - fm.as_secs_f64()) * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if common::listing() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the pod network benchmark makes bridges and namespaces: run it as root");
    }
    let pods = common::env_count("POD_NETWORK_BENCH_PODS", 30)?;
    let bin = common::Binaries::release()?;
    let reg = Registry::start(RegistryOptions::plain())
        .await
        .context("start docker-registry (run scripts/setup.sh)")?;
    reg.push_all_fixtures().await.context("push fixtures")?;
    let host = reg.host();
    let ctrd = Containerd::start(ContainerdOptions::new(host.clone()))
        .await
        .context("start containerd (run scripts/setup.sh)")?;
    let ctrd_subnet = ctrd.instance().subnet.clone();
    let crid = Crid::start(&bin, &host, &[&ctrd_subnet])?;
    let crid_subnet = crid.network().subnet.clone();
    let mut floor = Floor::new(&[&ctrd_subnet, &crid_subnet])?;

    let result = async {
        let ctrd_logs = tempfile::Builder::new()
            .prefix("crid-bench-ctrd-logs-")
            .tempdir()?;
        // containerd's sandboxes run the pause image: have it cached, as a node would.
        common::pull(ctrd.channel().await?, &format!("{host}/pause:latest")).await?;
        let mut crid_t = Target {
            name: "crid",
            rs: RuntimeServiceClient::new(crid.channel().await?),
            logs: crid.logs(),
            run: Vec::new(),
            teardown: Vec::new(),
        };
        let mut ctrd_t = Target {
            name: "containerd",
            rs: RuntimeServiceClient::new(ctrd.channel().await?),
            logs: ctrd_logs.path().to_owned(),
            run: Vec::new(),
            teardown: Vec::new(),
        };
        for i in 0..WARMUP + pods {
            let warmup = i < WARMUP;
            // Rotate who goes first among the three.
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => {
                        let (r, t) = crid_t.round(&format!("crid-{i}")).await?;
                        if !warmup {
                            crid_t.run.push(r);
                            crid_t.teardown.push(t);
                        }
                    }
                    1 => {
                        let (r, t) = ctrd_t.round(&format!("containerd-{i}")).await?;
                        if !warmup {
                            ctrd_t.run.push(r);
                            ctrd_t.teardown.push(t);
                        }
                    }
                    _ => {
                        tokio::task::block_in_place(|| floor.round(i, warmup))?;
                    }
                }
            }
            if i >= WARMUP && (i + 1 - WARMUP).is_multiple_of(10) {
                eprintln!("{} rounds done", i + 1 - WARMUP);
            }
        }
        print_report(pods, &bin.describe(), &crid_t, &ctrd_t, &floor);
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("crid log tail:\n{}", crid.log_tail());
        eprintln!("containerd log tail:\n{}", ctrd.log_tail());
        eprintln!("error: {e:#}");
    }
    drop(floor);
    drop(crid);
    if let Err(e) = ctrd.shutdown().await {
        eprintln!("containerd teardown: {e}");
    }
    result
}

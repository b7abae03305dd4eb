//! Streaming benchmark (issue 11; not a test): exec round-trip latency and port-forward
//! throughput through crid's streaming server and through containerd 1.6's, in the same run
//! on the same machine, alternating, with the harness's own clients (crid_conformance::stream).
//!
//! - exec: the Exec RPC, then a WebSocket (`v4.channel.k8s.io`) session running `echo hi`
//!   without a TTY, until the exit status arrives: what `kubectl exec` costs past the
//!   API server. The runtime's own floor is `runc exec <container> echo hi` on the command
//!   line, on crid's container.
//! - port forward: 64 MiB from `nc` in the pod (busybox `dd if=/dev/zero | nc -l -p 9000`)
//!   over SPDY and over WebSocket, in MiB/s.
//!
//! Target (issue 11): crid's exec latency at most 0.5x containerd's plus the runc floor;
//! port-forward throughput at least containerd's.
//!
//! Run as root: `cargo bench -p crid --bench streaming` (env `STREAMING_BENCH_ROUNDS`,
//! default 30 execs and 5 transfers per protocol; needs runc, containerd, docker-registry).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Crid, RUNC, median_p90, ms};
use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::containerd::{Containerd, ContainerdOptions};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use crid_conformance::stream::{self, ExecOptions};
use tonic::transport::Channel;

const PORT: u16 = 9000;
const TRANSFER: usize = 64 << 20;
const WARMUP: usize = 3;

struct Target {
    name: &'static str,
    rs: RuntimeServiceClient<Channel>,
    pod: String,
    ctr: String,
    exec: Vec<Duration>,
    spdy: Vec<f64>,
    ws: Vec<f64>,
}

impl Target {
    async fn start(
        name: &'static str,
        channel: Channel,
        logs: PathBuf,
        image: &str,
    ) -> Result<Target> {
        let mut rs = RuntimeServiceClient::new(channel);
        let pc = common::pod_config(&format!("{name}-stream"), &logs)?;
        let pod = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc.clone()),
                runtime_handler: String::new(),
            })
            .await
            .with_context(|| format!("{name}: RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        let script = format!(
            "while :; do dd if=/dev/zero bs=1048576 count={} 2>/dev/null | nc -l -p {PORT}; done",
            TRANSFER >> 20
        );
        let ctr = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(common::container_config(
                    "main",
                    image,
                    &["sh", "-c", &script],
                )),
                sandbox_config: Some(pc),
            })
            .await
            .with_context(|| format!("{name}: CreateContainer"))?
            .into_inner()
            .container_id;
        rs.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .with_context(|| format!("{name}: StartContainer"))?;
        Ok(Target {
            name,
            rs,
            pod,
            ctr,
            exec: Vec::new(),
            spdy: Vec::new(),
            ws: Vec::new(),
        })
    }

    async fn exec_once(&mut self) -> Result<Duration> {
        let t = Instant::now();
        let url = self
            .rs
            .exec(cri::ExecRequest {
                container_id: self.ctr.clone(),
                cmd: vec!["echo".into(), "hi".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .with_context(|| format!("{}: Exec", self.name))?
            .into_inner()
            .url;
        let out = stream::websocket::exec(&url, "v4.channel.k8s.io", &ExecOptions::default())
            .await
            .map_err(anyhow::Error::msg)?;
        let took = t.elapsed();
        if out.stdout != b"hi\n" || out.exit_code() != Some(0) {
            bail!("{}: exec echo gave {out:?}", self.name);
        }
        Ok(took)
    }

    /// One 64 MiB transfer; MiB/s. Retries while nc is between connections.
    async fn transfer(&mut self, spdy: bool) -> Result<f64> {
        let mut last = String::new();
        for _ in 0..50 {
            let url = self
                .rs
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: self.pod.clone(),
                    port: vec![i32::from(PORT)],
                })
                .await
                .with_context(|| format!("{}: PortForward", self.name))?
                .into_inner()
                .url;
            let t = Instant::now();
            let got = if spdy {
                stream::spdy::port_forward_read(&url, PORT, TRANSFER).await
            } else {
                stream::websocket::port_forward_read(&url, PORT, TRANSFER).await
            };
            let took = t.elapsed();
            match got {
                Ok(n) if n >= TRANSFER => {
                    // Let nc start listening again.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return Ok(n as f64 / (1 << 20) as f64 / took.as_secs_f64());
                }
                Ok(n) => last = format!("only {n} bytes"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{}: port forward failed: {last}", self.name)
    }
}

fn runc_exec_floor(crid: &Crid, ctr: &str, rounds: usize) -> Result<Vec<Duration>> {
    let root = crid.path().join("run/runtimes/runc");
    let mut v = Vec::new();
    for i in 0..rounds + WARMUP {
        let t = Instant::now();
        let status = Command::new(RUNC)
            .arg("--root")
            .arg(&root)
            .args(["exec", ctr, "echo", "hi"])
            .stdout(Stdio::null())
            .status()?;
        let took = t.elapsed();
        if !status.success() {
            bail!("runc exec failed: {status}");
        }
        if i >= WARMUP {
            v.push(took);
        }
    }
    Ok(v)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if common::listing() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the streaming benchmark runs pods: run it as root");
    }
    let rounds = common::env_count("STREAMING_BENCH_ROUNDS", 30)?;
    let transfers = 5;
    let bin = common::Binaries::release()?;
    let reg = Registry::start(RegistryOptions::plain())
        .await
        .context("start docker-registry (run scripts/setup.sh)")?;
    reg.push_all_fixtures().await.context("push fixtures")?;
    let host = reg.host();
    let image = format!("{host}/busybox:latest");
    let ctrd = Containerd::start(ContainerdOptions::new(host.clone()))
        .await
        .context("start containerd (run scripts/setup.sh)")?;
    let ctrd_subnet = ctrd.instance().subnet.clone();
    let crid = Crid::start(&bin, &host, &[&ctrd_subnet])?;

    let result = async {
        let ctrd_logs = tempfile::Builder::new()
            .prefix("crid-bench-ctrd-logs-")
            .tempdir()?;
        for channel in [crid.channel().await?, ctrd.channel().await?] {
            common::pull(channel.clone(), &image).await?;
            common::pull(channel, &format!("{host}/pause:latest")).await?;
        }
        let mut targets = [
            Target::start("crid", crid.channel().await?, crid.logs(), &image).await?,
            Target::start("containerd", ctrd.channel().await?, ctrd_logs.path().to_owned(), &image)
                .await?,
        ];
        for t in targets.iter_mut() {
            for _ in 0..WARMUP {
                t.exec_once().await?;
            }
        }
        for i in 0..rounds {
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for w in order {
                let d = targets[w].exec_once().await?;
                targets[w].exec.push(d);
            }
        }
        let floor = runc_exec_floor(&crid, &targets[0].ctr.clone(), rounds)?;
        for i in 0..transfers + 1 {
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for w in order {
                let s = targets[w].transfer(true).await?;
                let ws = targets[w].transfer(false).await?;
                // The first transfer of each warms up.
                if i > 0 {
                    targets[w].spdy.push(s);
                    targets[w].ws.push(ws);
                }
            }
        }
        let (fm, fp) = median_p90(&floor);
        println!("## Streaming (issue 11)\n");
        println!(
            "{rounds} execs and {transfers} transfers of {} MiB per protocol and runtime, alternating.\n",
            TRANSFER >> 20
        );
        println!("| runtime | exec `echo` median ms | exec p90 ms | port-forward SPDY MiB/s (median) | port-forward WebSocket MiB/s (median) |");
        println!("|---|---|---|---|---|");
        for t in &targets {
            let (m, p) = median_p90(&t.exec);
            println!(
                "| {} | {} | {} | {:.1} | {:.1} |",
                t.name,
                ms(m),
                ms(p),
                median(&t.spdy),
                median(&t.ws)
            );
        }
        println!("| `runc exec echo` floor | {} | {} | | |", ms(fm), ms(fp));
        let (cm, _) = median_p90(&targets[0].exec);
        let (dm, _) = median_p90(&targets[1].exec);
        let budget = dm.mul_f64(0.5) + fm;
        println!(
            "\nexec target: crid {} ms <= 0.5 x containerd {} ms + floor {} ms = {} ms: {}",
            ms(cm),
            ms(dm),
            ms(fm),
            ms(budget),
            if cm <= budget { "met" } else { "NOT met" }
        );
        for (label, c, d) in [
            ("SPDY", median(&targets[0].spdy), median(&targets[1].spdy)),
            ("WebSocket", median(&targets[0].ws), median(&targets[1].ws)),
        ] {
            println!(
                "port-forward {label}: crid {c:.1} MiB/s vs containerd {d:.1} MiB/s: {}",
                if c >= d { "met" } else { "NOT met" }
            );
        }
        println!("\n{}", bin.describe());
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("crid log tail:\n{}", crid.log_tail());
        eprintln!("containerd log tail:\n{}", ctrd.log_tail());
        eprintln!("error: {e:#}");
    }
    drop(crid);
    if let Err(e) = ctrd.shutdown().await {
        eprintln!("containerd teardown: {e}");
    }
    result
}

//! Pod lifecycle benchmark (issue 4; not a test): each step of a pod's life timed on its own,
//! with the image already pulled, for
//!
//! - crid (the release `crid` and `crid-monitor` of `cargo build --release --bins`, which
//!   the bench runs first: see `common::Binaries`), and
//! - Debian's containerd 1.6 with its CRI plugin (the conformance fixture: its own socket,
//!   root, runc root),
//!
//! in the same run, alternating per pod, on the same runc, the same fixture registry images
//! and the same CNI situation: each has a bridge + host-local + portmap + loopback conflist
//! of the fixture's shape on a bridge and /24 of its own. Pods share no PID namespace.
//!
//! Steps: RunPodSandbox, CreateContainer (busybox `sleep 3600`), StartContainer, ExecSync
//! (`true`), StopContainer (timeout 0: SIGKILL for both), StopPodSandbox, RemovePodSandbox.
//!
//! Then graceful stops (issue 10): StopContainer with a 10 s grace period of a container
//! that exits on SIGTERM while a child it started lives on (`trap 'exit 0' TERM; sleep &
//! wait`), in pods whose PID namespace is shared and pods where it is not, and the whole
//! teardown (StopContainer, StopPodSandbox, RemovePodSandbox) of those pods
//! (`LIFECYCLE_BENCH_STOP_PODS` per variant, default 10).
//!
//! Then the floor: `runc create`, `runc start`, `runc exec true` timed on the command line
//! with crid's own bundle (its config.json, a fresh cgroup), and memory: crid's RSS and PSS
//! idle and with 10 running pods, one crid-monitor's, and one conmon's monitoring the same
//! container spec (plus containerd and one shim for context).
//!
//! Last, the runtime handlers (issue 13): the same pod lifecycle on crid's runc, crun and
//! shim v2 (Debian's containerd-shim-runc-v2) handlers and on containerd (runc), in one
//! rotation (`LIFECYCLE_BENCH_HANDLER_PODS` per handler, default 10).
//!
//! Run as root: `cargo bench -p crid --bench lifecycle` (env `LIFECYCLE_BENCH_PODS`, default
//! 30; needs runc, crun, containerd, docker-registry, CNI plugins, and conmon for its
//! column).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::{Crid, Memory, RUNC, median_p90, ms, timed};
use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::containerd::{Containerd, ContainerdOptions};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use tonic::transport::Channel;

/// The timed steps, in order.
const STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "ExecSync `true`",
    "StopContainer (timeout 0)",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// Untimed pods per runtime before measuring (first bridge, caches, page cache).
const WARMUP: usize = 2;

/// Running pods for the memory readings.
const MEMORY_PODS: usize = 10;

/// One runtime under test.
struct Target {
    name: &'static str,
    /// The runtime handler its pods ask for (empty: the endpoint's default).
    handler: String,
    rs: RuntimeServiceClient<Channel>,
    logs: PathBuf,
    image: String,
    samples: Vec<Vec<Duration>>,
}

impl Target {
    fn new(name: &'static str, channel: Channel, logs: PathBuf, image: String) -> Target {
        Target {
            name,
            handler: String::new(),
            rs: RuntimeServiceClient::new(channel),
            logs,
            image,
            samples: vec![Vec::new(); STEPS.len()],
        }
    }

    /// The same, its pods on runtime handler `handler`.
    fn on(mut self, handler: &str) -> Target {
        self.handler = handler.to_owned();
        self
    }

    /// Runs one pod through its whole life, returning the time of each step.
    async fn one_pod(&mut self, name: &str) -> Result<[Duration; 7]> {
        let who = self.name;
        let pc = common::pod_config(name, &self.logs)?;
        let rs = &mut self.rs;
        let (r, run) = timed(rs.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: self.handler.clone(),
        }))
        .await;
        let pod = r
            .with_context(|| format!("{who}: RunPodSandbox {name}"))?
            .into_inner()
            .pod_sandbox_id;
        let (r, create) = timed(rs.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(common::container_config(
                "main",
                &self.image,
                &["sleep", "3600"],
            )),
            sandbox_config: Some(pc),
        }))
        .await;
        let ctr = r
            .with_context(|| format!("{who}: CreateContainer in {name}"))?
            .into_inner()
            .container_id;
        let (r, start) = timed(rs.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        }))
        .await;
        r.with_context(|| format!("{who}: StartContainer in {name}"))?;
        let (r, exec) = timed(rs.exec_sync(cri::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        }))
        .await;
        let code = r
            .with_context(|| format!("{who}: ExecSync in {name}"))?
            .into_inner()
            .exit_code;
        if code != 0 {
            bail!("{who}: ExecSync `true` in {name} exited {code}");
        }
        let (r, stop) = timed(rs.stop_container(cri::StopContainerRequest {
            container_id: ctr,
            timeout: 0,
        }))
        .await;
        r.with_context(|| format!("{who}: StopContainer in {name}"))?;
        let (r, stop_pod) = timed(rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }))
        .await;
        r.with_context(|| format!("{who}: StopPodSandbox {name}"))?;
        let (r, remove) = timed(rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        }))
        .await;
        r.with_context(|| format!("{who}: RemovePodSandbox {name}"))?;
        Ok([run, create, start, exec, stop, stop_pod, remove])
    }

    /// Starts `n` pods with one `sleep` container each; returns (pod, container) IDs.
    async fn running_pods(&mut self, n: usize) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for i in 0..n {
            let name = format!("{}-mem-{i}", self.name);
            let pc = common::pod_config(&name, &self.logs)?;
            let pod = self
                .rs
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(pc.clone()),
                    runtime_handler: self.handler.clone(),
                })
                .await
                .with_context(|| format!("{}: RunPodSandbox {name}", self.name))?
                .into_inner()
                .pod_sandbox_id;
            let ctr = self
                .rs
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(common::container_config(
                        "main",
                        &self.image,
                        &["sleep", "3600"],
                    )),
                    sandbox_config: Some(pc),
                })
                .await
                .with_context(|| format!("{}: CreateContainer in {name}", self.name))?
                .into_inner()
                .container_id;
            self.rs
                .start_container(cri::StartContainerRequest {
                    container_id: ctr.clone(),
                })
                .await
                .with_context(|| format!("{}: StartContainer in {name}", self.name))?;
            out.push((pod, ctr));
        }
        Ok(out)
    }

    /// One pod whose container exits on SIGTERM and leaves a child running; times its
    /// StopContainer (grace 10 s) and its whole teardown.
    async fn graceful_stop(
        &mut self,
        name: &str,
        shared_pid: bool,
    ) -> Result<(Duration, Duration)> {
        let who = self.name;
        let mut pc = common::pod_config(name, &self.logs)?;
        let mut ns = common::namespaces();
        if shared_pid {
            ns.pid = cri::NamespaceMode::Pod as i32;
        }
        if let Some(sc) = pc.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
            sc.namespace_options = Some(ns.clone());
        }
        let mut config = common::container_config(
            "main",
            &self.image,
            &["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        );
        if let Some(sc) = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.namespace_options = Some(ns);
        }
        let rs = &mut self.rs;
        let pod = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc.clone()),
                runtime_handler: self.handler.clone(),
            })
            .await
            .with_context(|| format!("{who}: RunPodSandbox {name}"))?
            .into_inner()
            .pod_sandbox_id;
        let ctr = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(config),
                sandbox_config: Some(pc),
            })
            .await
            .with_context(|| format!("{who}: CreateContainer in {name}"))?
            .into_inner()
            .container_id;
        rs.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .with_context(|| format!("{who}: StartContainer in {name}"))?;
        // Let the shell set its trap and start the child.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        rs.stop_container(cri::StopContainerRequest {
            container_id: ctr,
            timeout: 10,
        })
        .await
        .with_context(|| format!("{who}: StopContainer in {name}"))?;
        let stop = t.elapsed();
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .with_context(|| format!("{who}: StopPodSandbox {name}"))?;
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .with_context(|| format!("{who}: RemovePodSandbox {name}"))?;
        Ok((stop, t.elapsed()))
    }

    async fn remove_pods(&mut self, pods: &[(String, String)]) -> Result<()> {
        for (pod, _) in pods {
            self.rs
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await?;
            self.rs
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await?;
        }
        Ok(())
    }
}

/// The OCI runtime's own time for create, start and exec, on a copy of one of crid's
/// bundles: the same config.json (namespaces, mounts, the pod's pinned namespaces, the
/// mounted rootfs), with a cgroup of its own.
struct Floor {
    create: Vec<Duration>,
    start: Vec<Duration>,
    exec: Vec<Duration>,
}

/// A copy of crid's bundle for `container`, runnable by another runc root as `id`.
fn copy_bundle(crid: &Crid, container: &str, into: &Path, cgroup: &str) -> Result<PathBuf> {
    let bundle = crid.path().join("run/containers").join(container);
    let raw = std::fs::read(bundle.join("config.json"))
        .with_context(|| format!("read crid's bundle {}", bundle.display()))?;
    let mut spec: serde_json::Value = serde_json::from_slice(&raw)?;
    let root = spec["root"]["path"]
        .as_str()
        .context("config.json has no root.path")?
        .to_owned();
    spec["root"]["path"] = serde_json::Value::from(bundle.join(root).display().to_string());
    spec["linux"]["cgroupsPath"] = serde_json::Value::from(cgroup);
    std::fs::create_dir_all(into)?;
    std::fs::write(into.join("config.json"), serde_json::to_vec(&spec)?)?;
    Ok(into.to_owned())
}

/// Runs runc with `args` (stdio to /dev/null: a created container keeps inherited pipes).
fn runc(root: &Path, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let status = Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run runc")?;
    let elapsed = t.elapsed();
    if !status.success() {
        bail!("runc {args:?} failed: {status}");
    }
    Ok(elapsed)
}

fn floor(crid: &Crid, container: &str, rounds: usize) -> Result<Floor> {
    let work = tempfile::Builder::new()
        .prefix("crid-bench-floor-")
        .tempdir()?;
    let root = work.path().join("runc");
    let tag = common::unique_tag();
    let mut f = Floor {
        create: Vec::new(),
        start: Vec::new(),
        exec: Vec::new(),
    };
    for i in 0..rounds + WARMUP {
        let id = format!("crid-bench-floor-{tag}-{i}");
        let bundle = copy_bundle(crid, container, &work.path().join(&id), &format!("/{id}"))?;
        let pid_file = bundle.join("pid");
        let b = bundle.display().to_string();
        let p = pid_file.display().to_string();
        let result = (|| -> Result<(Duration, Duration, Duration)> {
            let c = runc(&root, &["create", "--bundle", &b, "--pid-file", &p, &id])?;
            let s = runc(&root, &["start", &id])?;
            let e = runc(&root, &["exec", &id, "true"])?;
            Ok((c, s, e))
        })();
        let _ = runc(&root, &["kill", &id, "KILL"]);
        let _ = runc(&root, &["delete", "--force", &id]);
        let (c, s, e) = result?;
        if i >= WARMUP {
            f.create.push(c);
            f.start.push(s);
            f.exec.push(e);
        }
    }
    Ok(f)
}

/// conmon 2.x monitoring a container of the same spec (a copy of crid's bundle), measured
/// while the container runs; everything it made is removed before returning.
fn conmon_memory(crid: &Crid, container: &str) -> Result<(Memory, String)> {
    let conmon = Path::new("/usr/bin/conmon");
    if !conmon.exists() {
        bail!("conmon is not installed (apt-get install conmon)");
    }
    let version = Command::new(conmon)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let work = tempfile::Builder::new()
        .prefix("crid-bench-conmon-")
        .tempdir()?;
    let w = work.path();
    let id = format!("crid-bench-conmon-{}", common::unique_tag());
    let bundle = copy_bundle(crid, container, &w.join("bundle"), &format!("/{id}"))?;
    let root = w.join("runc");
    for d in ["exits", "sockets"] {
        std::fs::create_dir_all(w.join(d))?;
    }
    let pid_file = w.join("container.pid");
    let conmon_pid_file = w.join("conmon.pid");
    let status = Command::new(conmon)
        .args(["--api-version", "1", "-c", &id, "-u", &id, "-n", "bench"])
        .args(["-r", RUNC, "-b"])
        .arg(&bundle)
        .arg("-p")
        .arg(&pid_file)
        .arg("-P")
        .arg(&conmon_pid_file)
        .arg("-l")
        .arg(format!("k8s-file:{}", w.join("ctr.log").display()))
        .arg("--exit-dir")
        .arg(w.join("exits"))
        .arg("--socket-dir-path")
        .arg(w.join("sockets"))
        .arg("--runtime-arg=--root")
        .arg(format!("--runtime-arg={}", root.display()))
        .args(["--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run conmon")?;
    // conmon daemonizes: the process we started returns once its child took over.
    let result = (|| -> Result<Memory> {
        if !status.success() {
            bail!("conmon exited {status}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(pid_file.exists() && conmon_pid_file.exists()) {
            if Instant::now() > deadline {
                bail!("conmon wrote no pid files within 10s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        runc(&root, &["start", &id])?;
        let pid: i32 = std::fs::read_to_string(&conmon_pid_file)?
            .trim()
            .parse()
            .context("conmon's pid file")?;
        std::thread::sleep(Duration::from_millis(500));
        Memory::of(pid)
    })();
    let _ = runc(&root, &["kill", &id, "KILL"]);
    // conmon writes the exit file and ends; then the container can go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.join("exits").join(&id).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = runc(&root, &["delete", "--force", &id]);
    Ok((result?, version))
}

/// Memory of crid, its monitors, conmon, containerd and its shims with running pods.
struct MemoryReport {
    crid_idle: Memory,
    crid_idle_top: Vec<(u64, u64, String)>,
    crid_busy: Memory,
    monitor: Memory,
    monitor_top: Vec<(u64, u64, String)>,
    conmon: Result<(Memory, String)>,
    containerd_busy: Memory,
    shim: Memory,
}

fn median_memory(v: &[Memory]) -> Memory {
    let median = |f: fn(&Memory) -> u64| {
        let mut x: Vec<u64> = v.iter().map(f).collect();
        x.sort_unstable();
        x.get(x.len() / 2).copied().unwrap_or(0)
    };
    Memory {
        rss_kib: median(|m| m.rss_kib),
        pss_kib: median(|m| m.pss_kib),
        anon_kib: median(|m| m.anon_kib),
    }
}

/// The graceful-stop table: StopContainer (grace 10 s) of a container that exits on
/// SIGTERM, and the whole teardown of its pod, per PID-namespace variant.
fn print_graceful(pods: usize, samples: &[[Vec<(Duration, Duration)>; 2]; 2]) {
    println!();
    println!(
        "graceful stop: {pods} pods per variant; `trap 'exit 0' TERM; sleep 3600 & wait`, StopContainer timeout 10 s; teardown = StopContainer + StopPodSandbox + RemovePodSandbox"
    );
    println!(
        "| pod PID namespace | step | crid median ms | crid p90 ms | containerd median ms | containerd p90 ms | crid/containerd (median) | crid total s | containerd total s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (v, variant) in ["per container", "shared by the pod"].iter().enumerate() {
        for (k, step) in ["StopContainer", "teardown"].iter().enumerate() {
            let pick = |t: usize| -> Vec<Duration> {
                samples[t][v]
                    .iter()
                    .map(|p| if k == 0 { p.0 } else { p.1 })
                    .collect()
            };
            let (crid, ctrd) = (pick(0), pick(1));
            let (cm, cp) = median_p90(&crid);
            let (km, kp) = median_p90(&ctrd);
            let total = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
            println!(
                "| {variant} | {step} | {} | {} | {} | {} | {:.2}x | {:.2} | {:.2} |",
                ms(cm),
                ms(cp),
                ms(km),
                ms(kp),
                cm.as_secs_f64() / km.as_secs_f64(),
                total(&crid),
                total(&ctrd)
            );
        }
    }
}

/// This build against the previous one, step by step (same run, alternating pods).
/// `pods` pods through their whole life on each target, one warm-up pod each first, the
/// order rotating per round so that no handler always follows the same one.
async fn handler_phase(targets: &mut [Target], pods: usize) -> Result<()> {
    for t in targets.iter_mut() {
        t.one_pod(&format!("{}-warm", t.name)).await?;
    }
    let n = targets.len();
    for i in 0..pods {
        for k in 0..n {
            let t = &mut targets[(i + k) % n];
            let steps = t.one_pod(&format!("{}-{i}", t.name)).await?;
            for (s, d) in steps.iter().enumerate() {
                t.samples[s].push(*d);
            }
        }
    }
    Ok(())
}

/// The handler table: each step's median (p90) per handler, and the sum of the medians.
fn print_handlers(targets: &[Target]) {
    let label = |t: &Target| match t.name {
        "h-containerd" => "containerd 1.6 · runc".to_owned(),
        _ => format!("crid · {}", t.handler),
    };
    println!();
    println!(
        "runtime handlers ({} pods each after one warm-up, rotating per pod; median ms (p90 ms)):",
        targets.first().map_or(0, |t| t.samples[0].len())
    );
    let heads: Vec<String> = targets.iter().map(label).collect();
    println!("| step | {} |", heads.join(" | "));
    println!("|---|{}", "---|".repeat(targets.len()));
    let mut sums = vec![0.0; targets.len()];
    for (i, step) in STEPS.iter().enumerate() {
        let cells: Vec<String> = targets
            .iter()
            .zip(sums.iter_mut())
            .map(|(t, sum)| {
                let (m, p) = common::median_p90(&t.samples[i]);
                *sum += m.as_secs_f64() * 1e3;
                format!("{} ({})", ms(m), ms(p))
            })
            .collect();
        println!("| {step} | {} |", cells.join(" | "));
    }
    let sums: Vec<String> = sums.iter().map(|s| format!("{s:.2}")).collect();
    println!("| sum of step medians | {} |", sums.join(" | "));
}

fn print_previous(now: &Target, previous: &Target) {
    println!();
    println!(
        "this build against the previous one ({} and {} pods, alternating):",
        now.samples[0].len(),
        previous.samples[0].len()
    );
    println!(
        "| step | this median ms | this p90 ms | previous median ms | previous p90 ms | this/previous (median) |"
    );
    println!("|---|---|---|---|---|---|");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mut sum_now, mut sum_prev) = (0.0, 0.0);
    for (i, step) in STEPS.iter().enumerate() {
        let (nm, np) = common::median_p90(&now.samples[i]);
        let (pm, pp) = common::median_p90(&previous.samples[i]);
        sum_now += ms(nm);
        sum_prev += ms(pm);
        println!(
            "| {step} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x |",
            ms(nm),
            ms(np),
            ms(pm),
            ms(pp),
            ms(nm) / ms(pm).max(1e-9)
        );
    }
    println!(
        "| sum of step medians | {sum_now:.2} | | {sum_prev:.2} | | {:.2}x |",
        sum_now / sum_prev.max(1e-9)
    );
}

fn print_report(
    pods: usize,
    bins: &str,
    crid: &Target,
    ctrd: &Target,
    floor: &Result<Floor>,
    mem: &MemoryReport,
) {
    println!(
        "pod lifecycle benchmark: {pods} pods per runtime (after {WARMUP} warm-up pods), alternating per pod, image cached, runc {RUNC}, same CNI chain (bridge+host-local+portmap+loopback) on separate bridges"
    );
    println!("machine: {}", common::machine_facts());
    println!("crid: {bins}");
    println!();
    println!(
        "| step | crid median ms | crid p90 ms | containerd median ms | containerd p90 ms | crid/containerd (median) | runc floor median ms | crid - floor ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let floor_of = |step: usize| -> Option<Duration> {
        let f = floor.as_ref().ok()?;
        let v = match step {
            1 => &f.create,
            2 => &f.start,
            3 => &f.exec,
            _ => return None,
        };
        Some(median_p90(v).0)
    };
    let (mut crid_total, mut ctrd_total) = (Duration::ZERO, Duration::ZERO);
    for (i, step) in STEPS.iter().enumerate() {
        let (cm, cp) = median_p90(&crid.samples[i]);
        let (km, kp) = median_p90(&ctrd.samples[i]);
        crid_total += cm;
        ctrd_total += km;
        let (fl, over) = match floor_of(i) {
            Some(f) => (
                ms(f),
                format!(
                    "{:+.2} ({:.2}x)",
                    (cm.as_secs_f64() - f.as_secs_f64()) * 1e3,
                    cm.as_secs_f64() / f.as_secs_f64()
                ),
            ),
            None => ("".into(), "".into()),
        };
        println!(
            "| {step} | {} | {} | {} | {} | {:.2}x | {fl} | {over} |",
            ms(cm),
            ms(cp),
            ms(km),
            ms(kp),
            cm.as_secs_f64() / km.as_secs_f64()
        );
    }
    // containerd's CreateContainer only records the container; its shim runs `runc create`
    // in StartContainer. Their sum is the comparable figure.
    let sum = |t: &Target| -> Vec<Duration> {
        t.samples[1]
            .iter()
            .zip(&t.samples[2])
            .map(|(a, b)| *a + *b)
            .collect()
    };
    let (cm, cp) = median_p90(&sum(crid));
    let (km, kp) = median_p90(&sum(ctrd));
    let (fl, over) = match floor {
        Ok(f) => {
            let v: Vec<Duration> = f
                .create
                .iter()
                .zip(&f.start)
                .map(|(a, b)| *a + *b)
                .collect();
            let fm = median_p90(&v).0;
            (
                ms(fm),
                format!(
                    "{:+.2} ({:.2}x)",
                    (cm.as_secs_f64() - fm.as_secs_f64()) * 1e3,
                    cm.as_secs_f64() / fm.as_secs_f64()
                ),
            )
        }
        Err(_) => (String::new(), String::new()),
    };
    println!(
        "| CreateContainer + StartContainer (per pod) | {} | {} | {} | {} | {:.2}x | {fl} | {over} |",
        ms(cm),
        ms(cp),
        ms(km),
        ms(kp),
        cm.as_secs_f64() / km.as_secs_f64()
    );
    println!(
        "| sum of step medians | {} | | {} | | {:.2}x | | |",
        ms(crid_total),
        ms(ctrd_total),
        crid_total.as_secs_f64() / ctrd_total.as_secs_f64()
    );
    match floor {
        Ok(f) => {
            println!();
            println!(
                "floor: the runc CLI timed directly on a copy of crid's bundle ({} rounds): median / p90 ms",
                f.create.len()
            );
            println!("| runc command | median ms | p90 ms |");
            println!("|---|---|---|");
            for (name, v) in [
                ("runc create", &f.create),
                ("runc start", &f.start),
                ("runc exec true", &f.exec),
            ] {
                let (m, p) = median_p90(v);
                println!("| {name} | {} | {} |", ms(m), ms(p));
            }
        }
        Err(e) => println!("\nfloor: not measured: {e:#}"),
    }
    println!();
    println!("memory (MiB):");
    println!("| process | RSS | PSS | anonymous |");
    println!("|---|---|---|---|");
    println!(
        "| crid idle (started, no pod yet) | {} |",
        mem.crid_idle.show()
    );
    println!(
        "| crid with {MEMORY_PODS} running pods | {} |",
        mem.crid_busy.show()
    );
    println!(
        "| one crid-monitor (median of {MEMORY_PODS}) | {} |",
        mem.monitor.show()
    );
    match &mem.conmon {
        Ok((m, version)) => println!(
            "| one conmon ({version}), same container spec | {} |",
            m.show()
        ),
        Err(e) => println!("| conmon | not measured: {e:#} | | |"),
    }
    println!(
        "| containerd with {MEMORY_PODS} running pods (context) | {} |",
        mem.containerd_busy.show()
    );
    println!(
        "| one containerd-shim-runc-v2, per pod (median of {MEMORY_PODS}, context) | {} |",
        mem.shim.show()
    );
    for (what, top) in [
        ("crid idle", &mem.crid_idle_top),
        ("one crid-monitor", &mem.monitor_top),
    ] {
        println!();
        println!("{what}: largest mappings (smaps, KiB)");
        println!("| mapping | RSS KiB | PSS KiB |");
        println!("|---|---|---|");
        for (rss, pss, name) in top {
            println!("| {name} | {rss} | {pss} |");
        }
    }
}

async fn memory_phase(
    crid: &Crid,
    crid_t: &mut Target,
    ctrd: &Containerd,
    ctrd_t: &mut Target,
    (crid_idle, crid_idle_top): (Memory, Vec<(u64, u64, String)>),
    rounds: usize,
) -> Result<(MemoryReport, Result<Floor>)> {
    let crid_pid = crid.pid().context("crid is not running")? as i32;
    let pods = crid_t.running_pods(MEMORY_PODS).await?;
    let kpods = ctrd_t.running_pods(MEMORY_PODS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let crid_busy = Memory::of(crid_pid)?;
    let mut monitors = Vec::new();
    let mut first_monitor = None;
    for (_, ctr) in &pods {
        for pid in common::pids_with_arg("crid-monitor", "--id", ctr) {
            monitors.push(Memory::of(pid)?);
            first_monitor.get_or_insert(pid);
        }
    }
    // One monitor per container and none more: an infra container would mean the pods
    // share a PID namespace, which this benchmark does not measure.
    let all_monitors = common::pids_whose_cmdline_contains(&crid.path().to_string_lossy())
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .is_some_and(|a| a.ends_with(b"crid-monitor"))
            })
        })
        .count();
    if monitors.len() != pods.len() || all_monitors != pods.len() {
        bail!(
            "found {} crid-monitors of {} containers ({all_monitors} in all)",
            monitors.len(),
            pods.len()
        );
    }
    let monitor_top = first_monitor.map_or_else(Vec::new, |p| common::top_mappings(p, 8));
    let containerd_busy = Memory::of(ctrd.pid() as i32)?;
    let socket = ctrd.socket().display().to_string();
    let shims: Vec<Memory> = common::pids_with_arg("containerd-shim-runc-v2", "-address", &socket)
        .into_iter()
        .filter_map(|p| Memory::of(p).ok())
        .collect();
    let first = pods[0].1.clone();
    let conmon = conmon_memory(crid, &first);
    eprintln!("floor: runc create/start/exec x {rounds} ...");
    let floor = floor(crid, &first, rounds);
    crid_t.remove_pods(&pods).await?;
    ctrd_t.remove_pods(&kpods).await?;
    Ok((
        MemoryReport {
            crid_idle,
            crid_idle_top,
            crid_busy,
            monitor: median_memory(&monitors),
            monitor_top,
            conmon,
            containerd_busy,
            shim: median_memory(&shims),
        },
        floor,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if common::listing() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the lifecycle benchmark runs pods: run it as root");
    }
    let pods = common::env_count("LIFECYCLE_BENCH_PODS", 30)?;
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    let crid_pid = crid.pid().context("crid is not running")? as i32;
    let crid_idle = (Memory::of(crid_pid)?, common::top_mappings(crid_pid, 6));
    // The same run against a previous build, when asked: a third runtime in the rotation.
    let previous = match std::env::var_os("BENCH_CRID_PREVIOUS_BIN_DIR") {
        Some(d) => {
            let b = common::Binaries::from_dir(std::path::Path::new(&d))?;
            let c = Crid::start(&b, &host, &[&ctrd_subnet, crid.subnet()])?;
            Some((b, c))
        }
        None => None,
    };

    let result = async {
        let ctrd_logs = tempfile::Builder::new()
            .prefix("crid-bench-ctrd-logs-")
            .tempdir()?;
        let mut crid_t = Target::new("crid", crid.channel().await?, crid.logs(), image.clone());
        let mut ctrd_t = Target::new(
            "containerd",
            ctrd.channel().await?,
            ctrd_logs.path().to_owned(),
            image.clone(),
        );
        for (t, channel) in [
            (&crid_t, crid.channel().await?),
            (&ctrd_t, ctrd.channel().await?),
        ] {
            eprintln!("{}: pulling busybox and pause ...", t.name);
            common::pull(channel.clone(), &image).await?;
            common::pull(channel, &format!("{host}/pause:latest")).await?;
        }
        let mut prev_t = match &previous {
            Some((_, c)) => {
                let channel = c.channel().await?;
                eprintln!("previous crid: pulling busybox and pause ...");
                common::pull(channel.clone(), &image).await?;
                common::pull(channel.clone(), &format!("{host}/pause:latest")).await?;
                Some(Target::new("previous", channel, c.logs(), image.clone()))
            }
            None => None,
        };
        for i in 0..WARMUP {
            crid_t.one_pod(&format!("crid-warm-{i}")).await?;
            ctrd_t.one_pod(&format!("containerd-warm-{i}")).await?;
            if let Some(p) = prev_t.as_mut() {
                p.one_pod(&format!("previous-warm-{i}")).await?;
            }
        }
        for i in 0..pods {
            // Alternate who goes first, so neither always runs right after the other; with a
            // previous build, the three take turns at each position.
            let order: &[usize] = match (prev_t.is_some(), i % 3, i % 2) {
                (false, _, 0) => &[0, 1],
                (false, _, _) => &[1, 0],
                (true, 0, _) => &[0, 1, 2],
                (true, 1, _) => &[2, 0, 1],
                (true, _, _) => &[1, 2, 0],
            };
            for &which in order {
                let t = match which {
                    0 => &mut crid_t,
                    1 => &mut ctrd_t,
                    _ => match prev_t.as_mut() {
                        Some(p) => p,
                        None => continue,
                    },
                };
                let name = format!("{}-{i}", t.name);
                let steps = t.one_pod(&name).await?;
                for (s, d) in steps.iter().enumerate() {
                    t.samples[s].push(*d);
                }
            }
            if (i + 1).is_multiple_of(10) {
                eprintln!("{} pods each done", i + 1);
            }
        }
        let stop_pods = common::env_count("LIFECYCLE_BENCH_STOP_PODS", 10)?;
        eprintln!("graceful stops: {stop_pods} pods per variant each ...");
        // [target][variant] samples of (StopContainer, whole teardown).
        let mut graceful: [[Vec<(Duration, Duration)>; 2]; 2] = Default::default();
        for i in 0..stop_pods {
            for (v, shared) in [false, true].into_iter().enumerate() {
                let order = if (i + v) % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let t = if which == 0 { &mut crid_t } else { &mut ctrd_t };
                    let name = format!("{}-stop-{v}-{i}", t.name);
                    graceful[which][v].push(t.graceful_stop(&name, shared).await?);
                }
            }
        }
        eprintln!("memory: {MEMORY_PODS} running pods each ...");
        let (mem, floor) =
            memory_phase(&crid, &mut crid_t, &ctrd, &mut ctrd_t, crid_idle, pods).await?;
        let handler_pods = common::env_count("LIFECYCLE_BENCH_HANDLER_PODS", 10)?;
        eprintln!("runtime handlers: {handler_pods} pods each ...");
        let mut handlers = vec![
            Target::new("h-runc", crid.channel().await?, crid.logs(), image.clone()).on("runc"),
            Target::new("h-crun", crid.channel().await?, crid.logs(), image.clone()).on("crun"),
        ];
        for (name, handler, binary) in [
            ("h-youki", "youki", common::YOUKI),
            ("h-runsc", "runsc", common::RUNSC),
            ("h-shim", "shim-runc-v2", common::SHIM_RUNC_V2),
        ] {
            if Path::new(binary).is_file() {
                handlers.push(
                    Target::new(name, crid.channel().await?, crid.logs(), image.clone())
                        .on(handler),
                );
            }
        }
        handlers.push(Target::new(
            "h-containerd",
            ctrd.channel().await?,
            ctrd_logs.path().to_owned(),
            image.clone(),
        ));
        handler_phase(&mut handlers, handler_pods).await?;
        print_report(pods, &bin.describe(), &crid_t, &ctrd_t, &floor, &mem);
        print_graceful(stop_pods, &graceful);
        print_handlers(&handlers);
        if let Some(p) = &prev_t {
            print_previous(&crid_t, p);
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("crid log tail:\n{}", crid.log_tail());
        eprintln!("containerd log tail:\n{}", ctrd.log_tail());
        eprintln!("error: {e:#}");
    }
    drop(crid);
    drop(previous);
    if let Err(e) = ctrd.shutdown().await {
        eprintln!("containerd teardown: {e}");
    }
    result
}

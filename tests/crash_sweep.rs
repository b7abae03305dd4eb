//! The crash sweep: crid killed with SIGKILL at every crash point (src/failpoint.rs) of
//! PullImage, RemoveImage, RunPodSandbox, CreateContainer, StartContainer, StopContainer,
//! StopPodSandbox, RemovePodSandbox and recovery itself, restarted, and held to the
//! invariants after each crash:
//! - every object the restarted daemon lists is whole and usable (a ready pod runs a
//!   container, a running container execs, a created one starts, an image is listed with its
//!   size), and whatever it does not list is gone;
//! - after the objects are removed through the CRI, nothing is left: no mount, namespace
//!   pin, process, monitor, cgroup, IPAM lease, bridge port, iptables rule, record, bundle,
//!   layer, blob or partial download;
//! - the whole workload, the same requests with the same names, then succeeds from the start.
//!
//! Needs root and a failpoint build: `cargo nextest run --features failpoints --test
//! crash_sweep` (CI runs it so: one crash per point). `CRID_CRASH_SWEEP_PASSES=N` crashes at
//! every arrival at every point, N times over; `CRID_CRASH_SWEEP_REPORT=PATH` writes the
//! figures as JSON. docs/reliability.md has a run's figures.

#![cfg(feature = "failpoints")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crid_api::runtime::v1 as cri;
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use support::TestDaemon;
use support::cri::TestNetwork;
use tonic::transport::Channel;

type Rs = cri::runtime_service_client::RuntimeServiceClient<Channel>;
type Is = cri::image_service_client::ImageServiceClient<Channel>;

/// Points that only recovery reaches, each with the crash that leaves recovery work for it.
const RECOVERY: &[(&str, &str)] = &[
    ("recover.pod-released", "run-pod.cni-added"),
    ("recover.container-removed", "create.runtime-created"),
    ("recover.stray-removed", "create.runtime-created"),
];

/// The host port the workload's pod maps (portmap writes iptables rules for it).
const HOST_PORT: i32 = 30917;

/// The registry every round's daemon pulls from, and the daemon's config for it.
struct Env {
    registry: Registry,
    toml: String,
}

impl Env {
    fn image(&self, name: &str) -> String {
        format!("{}/{name}:latest", self.registry.host())
    }
}

/// One round's daemon and network.
struct Round {
    daemon: TestDaemon,
    net: TestNetwork,
}

impl Round {
    fn new(env: &Env) -> Round {
        let daemon = TestDaemon::prepare(&env.toml);
        let net = TestNetwork::install(&daemon, "sw", 61);
        Round { daemon, net }
    }

    async fn clients(&self) -> (Rs, Is) {
        let ch = self.daemon.channel().await;
        (Rs::new(ch.clone()), Is::new(ch))
    }

    fn log(&self) -> String {
        self.daemon.log()
    }
}

fn pod_config(log_dir: &Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "sweep".into(),
            uid: "uid-sweep".into(),
            namespace: "crid-crash-sweep".into(),
            attempt: 0,
        }),
        hostname: "sweep".into(),
        log_directory: log_dir.display().to_string(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: HOST_PORT,
            host_ip: String::new(),
        }],
        ..Default::default()
    }
}

/// A container that ends on SIGTERM (a shell as PID 1 ignores it unless it traps it) and
/// leaves a child behind for the stop's cgroup sweep.
fn container(name: &str, image: &str) -> cri::ContainerConfig {
    support::cri::container_config(
        name,
        image,
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    )
}

/// The workload: every RPC with a crash point, in the order a kubelet would send them, ending
/// with nothing left. The first failure is returned (a crash shows as a transport error).
async fn workload(env: &Env, r: &Round) -> Result<(), String> {
    let (mut rs, mut is) = r.clients().await;
    let busybox = env.image("busybox");
    let pull = |image: String| cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image,
            ..Default::default()
        }),
        ..Default::default()
    };
    let step = |what: &'static str| move |e: tonic::Status| format!("{what}: {e}");
    is.pull_image(pull(busybox.clone()))
        .await
        .map_err(step("PullImage"))?;
    let pc = pod_config(&r.daemon.path().join("logs"));
    let pod = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(step("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    for (name, stop_it) in [("a", true), ("b", false)] {
        let id = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container(name, &busybox)),
                sandbox_config: Some(pc.clone()),
            })
            .await
            .map_err(step("CreateContainer"))?
            .into_inner()
            .container_id;
        rs.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(step("StartContainer"))?;
        if stop_it {
            rs.stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 5,
            })
            .await
            .map_err(step("StopContainer"))?;
            rs.remove_container(cri::RemoveContainerRequest { container_id: id })
                .await
                .map_err(step("RemoveContainer"))?;
        }
    }
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .map_err(step("StopPodSandbox"))?;
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .map_err(step("RemovePodSandbox"))?;
    for image in [busybox, env.image("pause")] {
        is.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image,
                ..Default::default()
            }),
        })
        .await
        .map_err(step("RemoveImage"))?;
    }
    Ok(())
}

/// What the restarted daemon lists must be whole and usable; then everything is removed
/// through the CRI. Returns what it checked, for the figures.
async fn check_survivors(env: &Env, r: &Round) -> Result<Survivors, String> {
    let (mut rs, mut is) = r.clients().await;
    let mut seen = Survivors::default();
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(|e| format!("ListPodSandbox: {e}"))?
        .into_inner()
        .items;
    let containers = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map_err(|e| format!("ListContainers: {e}"))?
        .into_inner()
        .containers;
    for c in &containers {
        if !pods.iter().any(|p| p.id == c.pod_sandbox_id) {
            return Err(format!("container {} lists a pod that is gone", c.id));
        }
        let state = cri::ContainerState::try_from(c.state).unwrap_or_default();
        match state {
            cri::ContainerState::ContainerRunning => {
                let out = support::cri::exec(&mut rs, &c.id, &["echo", "alive"], 10)
                    .await
                    .map_err(|e| format!("exec in surviving running container {}: {e}", c.id))?;
                if out.stdout != b"alive\n" {
                    return Err(format!("exec in {} answered {out:?}", c.id));
                }
            }
            cri::ContainerState::ContainerCreated => {
                rs.start_container(cri::StartContainerRequest {
                    container_id: c.id.clone(),
                })
                .await
                .map_err(|e| format!("starting surviving created container {}: {e}", c.id))?;
            }
            cri::ContainerState::ContainerExited => {}
            other => return Err(format!("container {} survives as {other:?}", c.id)),
        }
        seen.containers += 1;
    }
    let busybox = env.image("busybox");
    for p in &pods {
        let status = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: p.id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| format!("PodSandboxStatus of surviving pod {}: {e}", p.id))?
            .into_inner()
            .status
            .ok_or("PodSandboxStatus without a status")?;
        if status.state == cri::PodSandboxState::SandboxReady as i32 {
            // A ready pod must take a new container, whose network and namespaces work.
            let pc = pod_config(&r.daemon.path().join("logs"));
            let has_image = is
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: busybox.clone(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .map_err(|e| format!("ImageStatus: {e}"))?
                .into_inner()
                .image
                .is_some();
            if !has_image {
                is.pull_image(cri::PullImageRequest {
                    image: Some(cri::ImageSpec {
                        image: busybox.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("PullImage: {e}"))?;
            }
            let id = rs
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: p.id.clone(),
                    config: Some(container("probe", &busybox)),
                    sandbox_config: Some(pc),
                })
                .await
                .map_err(|e| format!("CreateContainer in surviving ready pod {}: {e}", p.id))?
                .into_inner()
                .container_id;
            rs.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(|e| format!("StartContainer in surviving ready pod {}: {e}", p.id))?;
            let out = support::cri::exec(&mut rs, &id, &["ip", "addr", "show", "eth0"], 10)
                .await
                .map_err(|e| format!("exec in surviving ready pod {}: {e}", p.id))?;
            let ip_of_pod = status
                .network
                .as_ref()
                .map(|n| n.ip.clone())
                .unwrap_or_default();
            if ip_of_pod.is_empty() || !String::from_utf8_lossy(&out.stdout).contains(&ip_of_pod) {
                return Err(format!(
                    "surviving ready pod {}: eth0 {:?} lacks the pod's IP {ip_of_pod:?}",
                    p.id,
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
        }
        seen.pods += 1;
    }
    let images = is
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .map_err(|e| format!("ListImages: {e}"))?
        .into_inner()
        .images;
    for i in &images {
        if i.size == 0 || i.repo_digests.is_empty() {
            return Err(format!("surviving image is not whole: {i:?}"));
        }
        seen.images += 1;
    }

    // Everything goes, through the CRI: each removal must work on a survivor.
    for p in &pods {
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .map_err(|e| format!("StopPodSandbox of survivor {}: {e}", p.id))?;
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .map_err(|e| format!("RemovePodSandbox of survivor {}: {e}", p.id))?;
    }
    for i in &images {
        is.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: i.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("RemoveImage of survivor {}: {e}", i.id))?;
    }
    Ok(seen)
}

#[derive(Default, Debug, Clone, Copy)]
struct Survivors {
    pods: usize,
    containers: usize,
    images: usize,
}

/// Nothing of `ids` (every object the round made, half-made ones included) may remain, and
/// the image store holds no layer, blob, record or partial download.
fn check_nothing_left(r: &Round, ids: &[String]) -> Result<(), String> {
    let d = r.daemon.path();
    let mounts = support::mounts_under(d);
    if !mounts.is_empty() {
        return Err(format!("mounts left: {mounts:?}"));
    }
    let procs = support::processes_of(ids);
    if !procs.is_empty() {
        return Err(format!("processes left: {procs:?}"));
    }
    let cgroups = support::cgroups_of(ids);
    if !cgroups.is_empty() {
        return Err(format!("cgroups left: {cgroups:?}"));
    }
    let leases = r.net.leases();
    if !leases.is_empty() {
        return Err(format!("IPAM leases left: {leases:?}"));
    }
    let ports = r.net.ports();
    if !ports.is_empty() {
        return Err(format!("bridge ports left: {ports:?}"));
    }
    let rules = iptables_save();
    if let Some(line) = rules
        .lines()
        .find(|l| ids.iter().any(|id| l.contains(id.as_str())))
    {
        return Err(format!("iptables rule left: {line}"));
    }
    for sub in [
        "run/containers",
        "run/pods",
        "run/exits",
        "root/state/pods",
        "root/state/containers",
        "root/storage/containers",
        "root/storage/layers",
        "root/image/blobs/sha256",
        "root/image/ingest",
        "root/image/images",
    ] {
        // Each of these exists once the daemon has started (a missing one would pass
        // vacuously), but for container storage, made at the first container.
        let entries = match std::fs::read_dir(d.join(sub)) {
            Ok(e) => e,
            Err(_) if sub == "root/storage/containers" => continue,
            Err(e) => return Err(format!("{sub}: {e}")),
        };
        let left: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !left.is_empty() {
            return Err(format!("{sub} still holds {left:?}"));
        }
    }
    Ok(())
}

fn iptables_save() -> String {
    let out = std::process::Command::new("iptables-save")
        .output()
        .expect("iptables-save (iptables is installed by scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How one crash round ended.
enum Outcome {
    /// crid died by SIGKILL at the point; recovery and the invariants held.
    Crashed(Survivors),
    /// The workload finished without reaching the point that many times.
    NotReached,
}

/// Starts a daemon armed at `point@n`, runs the workload until it dies, restarts it (armed at
/// `then`, a recovery point, first, when given), and checks the invariants.
async fn crash_round(
    env: &Env,
    point: &str,
    n: usize,
    then: Option<&str>,
) -> Result<Outcome, String> {
    let mut r = Round::new(env);
    let armed = format!("{point}@{n}");
    r.daemon
        .spawn_with_env(&[("CRID_FAILPOINT", armed.as_str())]);
    r.daemon.wait_ready();
    let result = workload(env, &r).await;
    let Some(status) = r
        .daemon
        .wait_exit(Duration::from_secs(if result.is_ok() { 0 } else { 10 }))
    else {
        // Still running: the point was not reached n times (or the failure was crid's own).
        return match result {
            Ok(()) => Ok(Outcome::NotReached),
            Err(e) => Err(format!(
                "{armed}: the workload failed without a crash: {e}\n{}",
                r.log()
            )),
        };
    };
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!(
            "{armed}: crid ended with {status}, not by the failpoint\n{}",
            r.log()
        ));
    }
    let crash_log = r.log();
    // Every object the crash may have half-made, named by its directories and records.
    let mut ids = support::object_ids(r.daemon.path());

    if let Some(recovery) = then {
        if recovery == "recover.stray-removed" {
            // A bundle no record owns, as a crash between the two would leave it.
            let stray = r
                .daemon
                .path()
                .join(format!("run/containers/{}", "f".repeat(64)));
            std::fs::create_dir_all(&stray).map_err(|e| e.to_string())?;
            std::fs::write(stray.join("config.json"), "{}").map_err(|e| e.to_string())?;
        }
        let armed = format!("{recovery}@1");
        r.daemon
            .spawn_with_env(&[("CRID_FAILPOINT", armed.as_str())]);
        let status = r.daemon.wait_exit(Duration::from_secs(20));
        if status.is_none_or(|s| s.signal() != Some(libc::SIGKILL)) {
            return Err(format!(
                "{recovery}: recovery after a crash at {point} did not reach the point (exit {status:?})\n{}",
                r.log()
            ));
        }
    }

    r.daemon.spawn();
    r.daemon.wait_ready();
    let survivors = check_survivors(env, &r).await.map_err(|e| {
        format!(
            "after a crash at {armed}: {e}\ncrash log:\n{crash_log}\nrestart log:\n{}",
            r.log()
        )
    })?;
    ids.extend(support::object_ids(r.daemon.path()));
    check_nothing_left(&r, &ids).map_err(|e| {
        format!(
            "after a crash at {armed} and removal of the survivors: {e}\nrestart log:\n{}",
            r.log()
        )
    })?;
    // The same requests, from the start, on the recovered daemon.
    workload(env, &r).await.map_err(|e| {
        format!(
            "after a crash at {armed}, the workload again: {e}\n{}",
            r.log()
        )
    })?;
    ids.extend(support::object_ids(r.daemon.path()));
    check_nothing_left(&r, &ids)
        .map_err(|e| format!("after a crash at {armed}, the workload again left: {e}"))?;
    Ok(Outcome::Crashed(survivors))
}

/// How often the workload reaches each point, from one run with the log armed.
async fn arrivals(env: &Env) -> BTreeMap<String, usize> {
    let mut r = Round::new(env);
    let log = r.daemon.path().join("failpoints.log");
    r.daemon
        .spawn_with_env(&[("CRID_FAILPOINT_LOG", log.to_str().expect("utf-8 path"))]);
    r.daemon.wait_ready();
    workload(env, &r)
        .await
        .unwrap_or_else(|e| panic!("the workload without a crash: {e}\n{}", r.log()));
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_crash_point_loses_and_leaks_nothing_needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the crash sweep runs pods: run it as root (CI does)"
    );
    let passes: usize = std::env::var("CRID_CRASH_SWEEP_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("start docker-registry (run scripts/setup.sh)");
    registry.push_all_fixtures().await.expect("push fixtures");
    let host = registry.host();
    let env = Env {
        toml: format!(
            "[image]\ninsecure_registries = [\"{host}\"]\npause_image = \"{host}/pause:latest\"\n"
        ),
        registry,
    };

    let counts = arrivals(&env).await;
    let recovery: BTreeSet<&str> = RECOVERY.iter().map(|(p, _)| *p).collect();
    let unreached: Vec<&&str> = crid::failpoint::POINTS
        .iter()
        .filter(|p| !recovery.contains(**p) && !counts.contains_key(**p))
        .collect();
    assert!(
        unreached.is_empty(),
        "the workload never reaches {unreached:?}: a dead crash point, or a workload gap"
    );

    // (point, arrival) pairs: the first arrival only (CI), or every arrival `passes` times.
    let mut plan: Vec<(String, usize, Option<&str>)> = Vec::new();
    for pass in 0..passes.max(1) {
        for (point, &count) in &counts {
            let arrivals = if passes == 0 { 1 } else { count };
            for n in 1..=arrivals {
                plan.push((point.clone(), n, None));
            }
        }
        for (point, setup) in RECOVERY {
            // Recovery points take the setup crash's every arrival in turn across passes.
            let n = 1 + pass % counts.get(*setup).copied().unwrap_or(1);
            plan.push(((*setup).to_owned(), n, Some(*point)));
        }
    }

    let started = Instant::now();
    let mut crashed: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_reached = 0usize;
    let mut survivors = Survivors::default();
    for (point, n, then) in &plan {
        match crash_round(&env, point, *n, *then).await {
            Ok(Outcome::Crashed(s)) => {
                *crashed.entry(point.clone()).or_insert(0) += 1;
                if let Some(r) = then {
                    *crashed.entry((*r).to_owned()).or_insert(0) += 1;
                }
                survivors.pods += s.pods;
                survivors.containers += s.containers;
                survivors.images += s.images;
            }
            Ok(Outcome::NotReached) => not_reached += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let total: usize = crashed.values().sum();
    let missing: Vec<&&str> = crid::failpoint::POINTS
        .iter()
        .filter(|p| !crashed.contains_key(**p))
        .collect();
    eprintln!(
        "crash sweep: {total} crashes at {} points in {:.0?} ({not_reached} planned arrivals not reached); survivors checked: {survivors:?}",
        crashed.len(),
        started.elapsed()
    );
    if let Ok(path) = std::env::var("CRID_CRASH_SWEEP_REPORT") {
        let report = serde_json::json!({
            "crashes": total,
            "points": crashed.len(),
            "per_point": crashed,
            "not_reached": not_reached,
            "seconds": started.elapsed().as_secs(),
            "survivors": {"pods": survivors.pods, "containers": survivors.containers, "images": survivors.images},
        });
        std::fs::write(&path, report.to_string()).expect("write the sweep report");
    }
    assert!(
        missing.is_empty(),
        "never crashed at {missing:?}: each point must be tested"
    );
}

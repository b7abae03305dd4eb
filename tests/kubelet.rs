//! What a real kubelet sends, on this host as it is (root): hugepage limits for page sizes
//! without a hugetlb controller, swap limits, an `oom_score_adj` below what crid may set,
//! `cgroup_parent` in the kubelet's cgroupfs and systemd forms, and a container that exits
//! on SIGTERM while a child it started lives on in the pod's PID namespace. The values are
//! those of the kubelet 1.36 corpus in shared/fixtures/kubelet-1.36.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crid_api::runtime::v1 as cri;
use support::cri::{
    Cluster, assert_nothing_left, container_config, pod_config, remove_all, run_container, run_pod,
    status, wait_state,
};

/// The resources the kubelet sent for the Burstable `rich-static/web` container.
fn kubelet_resources(oom_score_adj: i64) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 20_000,
        cpu_shares: 102,
        memory_limit_in_bytes: 67_108_864,
        oom_score_adj,
        hugepage_limits: vec![
            cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            },
            cri::HugepageLimit {
                page_size: "1GB".into(),
                limit: 0,
            },
        ],
        memory_swap_limit_in_bytes: 67_108_864,
        ..Default::default()
    }
}

fn with_resources(
    mut c: cri::ContainerConfig,
    r: cri::LinuxContainerResources,
) -> cri::ContainerConfig {
    c.linux.get_or_insert_with(Default::default).resources = Some(r);
    c
}

fn with_parent(mut p: cri::PodSandboxConfig, parent: &str) -> cri::PodSandboxConfig {
    p.linux.get_or_insert_with(Default::default).cgroup_parent = parent.to_owned();
    p
}

/// The v1 memory hierarchy (hybrid and v1 hosts) or the v2 root.
fn memory_root() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// Removes the kubelet-owned parent cgroups a test made the runtime create (in every
/// hierarchy), deepest first; crid removes only its containers' own cgroups.
fn remove_parents(chain: &[&str]) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let roots: Vec<PathBuf> = roots
        .flatten()
        .map(|e| e.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
        .collect();
    for depth in (1..=chain.len()).rev() {
        let rel: PathBuf = chain[..depth].iter().collect();
        for root in &roots {
            let _ = std::fs::remove_dir(root.join(&rel));
        }
    }
}

fn host_has_hugetlb() -> bool {
    Path::new("/sys/fs/cgroup/hugetlb").is_dir()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "hugetlb"))
}

fn spec_of(c: &Cluster, id: &str) -> serde_json::Value {
    let path = c
        .daemon
        .path()
        .join("run/containers")
        .join(id)
        .join("config.json");
    serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json")
}

// cri:ContainerConfig#linux.resources.hugepage_limits (the kubelet's entry per page size),
// memory_swap_limit_in_bytes, oom_score_adj; cri:LinuxPodSandboxConfig#cgroup_parent in the
// kubelet's cgroupfs form: the container runs with the limits this host can enforce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_resources_run_on_this_host_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let uid = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let parent = format!("/kubepods/burstable/pod{uid}");
    let pc = with_parent(pod_config("kres", &c.log_dir()), &parent);
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        with_resources(
            container_config("web", &image, &["sleep", "1000"]),
            kubelet_resources(999),
        ),
    )
    .await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;

    let spec = spec_of(&c, &ctr);
    let resources = &spec["linux"]["resources"];
    let hugepages = resources["hugepageLimits"].as_array().map_or(0, Vec::len);
    if host_has_hugetlb() {
        assert!(
            hugepages > 0,
            "a host with hugetlb keeps the limits: {resources}"
        );
    } else {
        assert_eq!(
            hugepages, 0,
            "no hugetlb controller, yet limits went to the runtime: {resources}"
        );
    }
    assert_eq!(resources["memory"]["limit"], 67_108_864);
    assert_eq!(spec["process"]["oomScoreAdj"], 999);
    // The kubelet's cgroupfs parent is where the container's cgroup is.
    let cg = memory_root().join(format!("kubepods/burstable/pod{uid}/crid-{ctr}"));
    let limit = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.join("memory.max")))
        .unwrap_or_else(|e| panic!("{}: {e}", cg.display()));
    assert_eq!(limit.trim(), "67108864");
    let pid = status(&mut rs, &ctr).await;
    assert_eq!(pid.state, cri::ContainerState::ContainerRunning as i32);

    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &[pod, ctr]);
    remove_parents(&["kubepods", "burstable", &format!("pod{uid}")]);
}

// cri:LinuxPodSandboxConfig#cgroup_parent in the kubelet's systemd form under crid's cgroupfs
// driver, and cri:ContainerConfig#linux.resources.oom_score_adj below what crid may set (a
// Guaranteed pod's -997): the slice's cgroupfs path is used, the score is raised to the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_parents_and_guaranteed_scores_work_under_cgroupfs_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let uid = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let slice = format!("kubepods-besteffort-pod{uid}.slice");
    let pc = with_parent(pod_config("ksys", &c.log_dir()), &slice);
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        with_resources(
            container_config("g", &image, &["sleep", "1000"]),
            kubelet_resources(-997),
        ),
    )
    .await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;
    let cg = memory_root().join(format!(
        "kubepods.slice/kubepods-besteffort.slice/{slice}/crid-{ctr}"
    ));
    assert!(cg.is_dir(), "{} is missing", cg.display());
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).expect("procs");
    let init = procs.lines().next().expect("a process").trim().to_owned();
    let adj: i64 = std::fs::read_to_string(format!("/proc/{init}/oom_score_adj"))
        .expect("oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    let floor: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own")
        .trim()
        .parse()
        .expect("number");
    assert!(
        adj == -997 || adj == floor,
        "oom_score_adj {adj}: neither -997 nor this host's floor {floor}"
    );

    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &[pod, ctr]);
    remove_parents(&["kubepods.slice", "kubepods-besteffort.slice", &slice]);
}

// [runtime] tolerate_missing_hugetlb_controller = false: on a host without the controller a
// kubelet's container is refused with FailedPrecondition naming the field, and nothing of it
// is left. On a host with hugetlb the same request runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_unenforceable_hugepages_leaves_nothing_needs_root() {
    let c = Cluster::start("[runtime]\ntolerate_missing_hugetlb_controller = false\n").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("khuge", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let r = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(with_resources(
                container_config("h", &image, &["sleep", "1000"]),
                kubelet_resources(999),
            )),
            sandbox_config: Some(pc.clone()),
        })
        .await;
    if host_has_hugetlb() {
        r.expect("a host with hugetlb runs it");
    } else {
        let e = r.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("hugepage_limits"), "{}", e.message());
        let listed = rs
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .expect("list")
            .into_inner()
            .containers;
        assert!(listed.is_empty(), "{listed:?}");
    }
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &[pod]);
}

// cri:RuntimeService.StopContainer: a container's exit is its init's exit. In a pod-shared
// PID namespace `trap 'exit 0' TERM; sleep & wait` exits at once on SIGTERM while `sleep`
// lives on holding the output pipe; the stop must not wait for it, and must not leave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_returns_at_init_exit_and_kills_survivors_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let mut pc = pod_config("kstop", &c.log_dir());
    pc.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run_pod(&mut rs, &pc, "").await;
    let mut cfg = container_config(
        "t",
        &image,
        &["sh", "-c", "trap 'exit 0' TERM; sleep 2999 & wait"],
    );
    cfg.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxContainerSecurityContext {
        namespace_options: pc
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone()),
        ..Default::default()
    });
    let ctr = run_container(&mut rs, &pod, &pc, cfg).await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;
    // Give the shell time to start its child and set the trap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The container's own processes (its cgroup), not its monitor.
    let in_container = || -> Vec<i32> {
        support::processes_of(std::slice::from_ref(&ctr))
            .into_iter()
            .filter(|pid| {
                !std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .next()
                    .is_some_and(|a| a.ends_with(b"crid-monitor"))
            })
            .collect()
    };
    assert_eq!(in_container().len(), 2, "sh and its sleep run");

    let start = Instant::now();
    rs.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 10,
    })
    .await
    .expect("StopContainer");
    let took = start.elapsed();
    let st = status(&mut rs, &ctr).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 0, "init exited 0 on SIGTERM");
    assert!(took < Duration::from_secs(1), "StopContainer took {took:?}");
    let left = in_container();
    assert!(
        left.is_empty(),
        "processes of the stopped container survive: {left:?}"
    );

    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &[pod, ctr]);
}

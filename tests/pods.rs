//! Pods and containers through the real daemon on real runtimes (root): the lifecycle,
//! CRI logs, ExecSync, restart recovery with `kill -9` at the worst moments, one lock per
//! object, and cleanup after every failure.

mod support;

use std::time::{Duration, Instant};

use crid_api::runtime::v1 as cri;
use nix::sys::signal::Signal;
use support::cri::{
    Cluster, assert_nothing_left, container_config, exec, pod_config, remove_all, run_container,
    run_pod, stall_wrapper, status, wait_for_file, wait_state,
};

/// One CRI log line: RFC3339Nano timestamp, stream, P/F tag, content (cri:ContainerConfig#log_path).
fn parse_log_line(line: &str) -> (String, String, String) {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().unwrap_or_default().to_owned();
    let stream = parts.next().unwrap_or_default().to_owned();
    let tag = parts.next().unwrap_or_default().to_owned();
    let content = parts.next().unwrap_or_default().to_owned();
    assert!(
        ts.len() >= 20 && ts.contains('T') && (ts.ends_with('Z') || ts.contains('+')),
        "timestamp `{ts}` is RFC3339Nano"
    );
    assert!(
        stream == "stdout" || stream == "stderr",
        "stream `{stream}`"
    );
    assert!(tag == "F" || tag == "P", "tag `{tag}`");
    (stream, tag, content)
}

// cri:RuntimeService.RunPodSandbox, CreateContainer, StartContainer, ExecSync, StopContainer,
// RemovePodSandbox; cri:ContainerConfig#log_path (CRI log format); nothing leaked afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_logs_and_exec_leave_nothing_behind_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("life", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config(
            "main",
            &image,
            &["sh", "-c", "trap '' TERM; echo out-line; echo err-line >&2; printf partial; while :; do sleep 1; done"],
        ),
    )
    .await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;

    // The log: each line in CRI format, streams told apart.
    let log_path = status(&mut rs, &ctr).await.log_path;
    assert_eq!(
        log_path,
        c.log_dir().join("life/main.log").display().to_string()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<_> = text.lines().map(parse_log_line).collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        lines.contains(&("stdout".into(), "F".into(), "out-line".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "F".into(), "err-line".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stdout".into(), "P".into(), "partial".into())),
        "{lines:?}"
    );

    // ExecSync: output and exit code; then a timeout that kills the command.
    let r = exec(
        &mut rs,
        &ctr,
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
        10,
    )
    .await
    .expect("exec");
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"hi\n"[..], &b"oops\n"[..], 3)
    );
    let t = Instant::now();
    let err = exec(&mut rs, &ctr, &["sleep", "60"], 1)
        .await
        .expect_err("timeout");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "returned after {:?}",
        t.elapsed()
    );
    let ps = exec(&mut rs, &ctr, &["ps", "-o", "pid,stat,args"], 10)
        .await
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
    assert!(
        !ps.contains("sleep 60"),
        "the timed-out command was killed:\n{ps}"
    );
    assert!(
        !ps.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('Z'))),
        "no zombie:\n{ps}"
    );

    // Stop: the shell ignores SIGTERM, so SIGKILL follows after the 1 s grace.
    rs.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 1,
    })
    .await
    .expect("stop");
    let s = status(&mut rs, &ctr).await;
    assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
    assert!(s.finished_at >= s.started_at && s.started_at >= s.created_at && s.created_at > 0);

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// cri:RuntimeService.ContainerStatus after a daemon restart: running containers keep running,
// exits during the downtime are reported with their real exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_running_containers_and_learns_missed_exits_needs_root() {
    let mut c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("restart", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let long = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("long", &image, &["sleep", "1000"]),
    )
    .await;
    let short = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("short", &image, &["sh", "-c", "sleep 2; exit 3"]),
    )
    .await;
    wait_state(
        &mut rs,
        &long,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;
    let pid_before = c.daemon.pid();
    drop(rs);

    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.daemon.spawn();
    c.daemon.wait_ready();
    assert_ne!(c.daemon.pid(), pid_before);
    let mut rs = c.rs().await;

    let s = status(&mut rs, &long).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let s = status(&mut rs, &short).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerExited as i32,
        "{s:?}"
    );
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
    let r = exec(&mut rs, &long, &["echo", "still here"], 10)
        .await
        .expect("exec after restart");
    assert_eq!(r.stdout, b"still here\n");

    // An exit after the restart reaches the new daemon too.
    rs.stop_container(cri::StopContainerRequest {
        container_id: long.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    assert_eq!(status(&mut rs, &long).await.exit_code, 137);

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// cri:RuntimeService.UpdatePodSandboxResources: the recorded pod resources survive a
// `kill -9` of the daemon (the answer came once they were on disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_resources_update_survives_a_restart_needs_root() {
    let mut c = Cluster::start("").await;
    let mut rs = c.rs().await;
    let pc = pod_config("resized", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let resized = cri::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 150_000,
        cpu_shares: 1536,
        memory_limit_in_bytes: 300 << 20,
        cpuset_cpus: "0-1".into(),
        ..Default::default()
    };
    rs.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.clone(),
        overhead: None,
        resources: Some(resized.clone()),
    })
    .await
    .expect("UpdatePodSandboxResources");
    drop(rs);
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;
    let info = rs
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .expect("status")
        .into_inner()
        .info;
    let info: serde_json::Value =
        serde_json::from_str(info.get("info").expect("info")).expect("JSON");
    let r = &info["config"]["linux"]["resources"];
    assert_eq!(r["cpu_quota"], 150_000, "{info}");
    assert_eq!(r["cpu_shares"], 1536, "{info}");
    assert_eq!(r["memory_limit_in_bytes"], 300 << 20, "{info}");
    assert_eq!(r["cpuset_cpus"], "0-1", "{info}");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

/// A cluster whose `stall` handler wraps runc and stalls the commands the test asks for.
/// The stall directory is removed when the returned guard drops, even if the test fails.
async fn stall_cluster() -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("crid-stall-")
        .tempdir()
        .expect("tempdir");
    let wrapper = stall_wrapper(dir.path(), "runc");
    let c = Cluster::start(&format!(
        "[runtime.runtimes.stall]\npath = \"{}\"\n",
        wrapper.display()
    ))
    .await;
    (c, dir)
}

/// Kills the daemon with SIGKILL once `<dir>/stalled-<cmd>` appears and restarts it; the
/// stalled runtime command is let go before the restart (racing recovery) or after it.
async fn kill_when_stalled(c: &mut Cluster, dir: &std::path::Path, cmd: &str, unstall_first: bool) {
    let stall = dir.join(format!("stall-{cmd}"));
    wait_for_file(&dir.join(format!("stalled-{cmd}")), Duration::from_secs(20)).await;
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    if unstall_first {
        let _ = std::fs::remove_file(&stall);
    }
    c.daemon.spawn();
    c.daemon.wait_ready();
    let _ = std::fs::remove_file(&stall);
}

// Restart recovery: kill -9 in the middle of CreateContainer (the runtime's create stalled)
// leaves no container, mount, monitor or cgroup after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_create_container_is_cleaned_up_on_restart_needs_root() {
    let (mut c, guard) = stall_cluster().await;
    let dir = guard.path().to_path_buf();
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("halfctr", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "stall").await;
    std::fs::write(dir.join("stall-create"), "").expect("stall");
    let mut rs2 = rs.clone();
    let cfg = container_config("half", &image, &["sleep", "1000"]);
    let pc2 = pc.clone();
    let pod2 = pod.clone();
    let pending = tokio::spawn(async move {
        rs2.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod2,
            config: Some(cfg),
            sandbox_config: Some(pc2),
        })
        .await
    });
    let ids_during = {
        wait_for_file(&dir.join("stalled-create"), Duration::from_secs(20)).await;
        support::object_ids(c.daemon.path())
    };
    assert_eq!(
        ids_during.len(),
        2,
        "the pod and the half-made container: {ids_during:?}"
    );
    kill_when_stalled(&mut c, &dir, "create", true).await;
    assert!(
        pending.await.expect("join").is_err(),
        "the interrupted call failed"
    );

    let mut rs = c.rs().await;
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(
        listed.is_empty(),
        "the half-created container is gone: {listed:?}"
    );
    let half: Vec<String> = ids_during.into_iter().filter(|i| *i != pod).collect();
    let left: Vec<String> = support::processes_of(&half)
        .iter()
        .map(|p| {
            format!(
                "{p}: {}",
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
            )
        })
        .collect();
    assert!(
        left.is_empty(),
        "no monitor or runtime left: {left:?}\n{}",
        c.daemon.log()
    );
    assert!(
        !support::mounts_under(c.daemon.path())
            .iter()
            .any(|m| m.to_string_lossy().contains(&half[0])),
        "rootfs unmounted"
    );
    // The pod is intact and usable.
    let ok = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("whole", &image, &["sleep", "1000"]),
    )
    .await;
    wait_state(
        &mut rs,
        &ok,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &[ids, half].concat());
}

// Restart recovery: kill -9 in the middle of RunPodSandbox (the infra container's create
// stalled) leaves no pod, namespace pin, shm mount or process after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_run_pod_sandbox_is_cleaned_up_on_restart_needs_root() {
    let (mut c, guard) = stall_cluster().await;
    let dir = guard.path().to_path_buf();
    let rs = c.rs().await;
    let mut pc = pod_config("halfpod", &c.log_dir());
    // A shared PID namespace needs the infra container, whose create stalls.
    pc.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    std::fs::write(dir.join("stall-create"), "").expect("stall");
    let mut rs2 = rs.clone();
    let pc2 = pc.clone();
    let pending = tokio::spawn(async move {
        rs2.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc2),
            runtime_handler: "stall".into(),
        })
        .await
    });
    wait_for_file(&dir.join("stalled-create"), Duration::from_secs(60)).await;
    let ids_during = support::object_ids(c.daemon.path());
    assert_eq!(ids_during.len(), 1, "{ids_during:?}");
    assert!(
        !support::mounts_under(c.daemon.path()).is_empty(),
        "namespaces were pinned before the stall"
    );
    kill_when_stalled(&mut c, &dir, "create", false).await;
    assert!(pending.await.expect("join").is_err());

    let mut rs = c.rs().await;
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert_nothing_left(&c.daemon, &ids_during);
    // The same pod can be run again, now that nothing stalls.
    let pod = run_pod(&mut rs, &pc, "stall").await;
    let st = rs
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod,
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        st.status.expect("status").state,
        cri::PodSandboxState::SandboxReady as i32
    );
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// Restart recovery: kill -9 while StopContainer waits on the runtime's kill; after the
// restart the container is still running and listed so, and stops normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_stop_container_keeps_the_container_needs_root() {
    let (mut c, guard) = stall_cluster().await;
    let dir = guard.path().to_path_buf();
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("halfstop", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "stall").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("victim", &image, &["sleep", "1000"]),
    )
    .await;
    std::fs::write(dir.join("stall-kill"), "").expect("stall");
    let mut rs2 = rs.clone();
    let id2 = ctr.clone();
    let pending = tokio::spawn(async move {
        rs2.stop_container(cri::StopContainerRequest {
            container_id: id2,
            timeout: 30,
        })
        .await
    });
    // The restarted daemon sees the container still running (the signal is still stalled)...
    let stall = dir.join("stall-kill");
    wait_for_file(&dir.join("stalled-kill"), Duration::from_secs(20)).await;
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    assert!(pending.await.expect("join").is_err());
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;
    let s = status(&mut rs, &ctr).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    // ...and when the orphaned SIGTERM finally lands, it learns the real exit code.
    std::fs::remove_file(&stall).expect("unstall");
    let s = wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((s.exit_code, s.reason.as_str()), (143, "Error"));
    rs.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .expect("stop is idempotent");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// One lock per object (DESIGN.md): a container whose runtime hangs in `kill` blocks neither
// another pod's whole lifecycle nor List/Status calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_runtime_blocks_only_its_own_container_needs_root() {
    let (c, guard) = stall_cluster().await;
    let dir = guard.path().to_path_buf();
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc_stuck = pod_config("stuck", &c.log_dir());
    let stuck_pod = run_pod(&mut rs, &pc_stuck, "stall").await;
    let stuck = run_container(
        &mut rs,
        &stuck_pod,
        &pc_stuck,
        container_config("stuck", &image, &["sleep", "1000"]),
    )
    .await;
    std::fs::write(dir.join("stall-kill"), "").expect("stall");
    let mut rs2 = rs.clone();
    let id2 = stuck.clone();
    let pending = tokio::spawn(async move {
        rs2.stop_container(cri::StopContainerRequest {
            container_id: id2,
            timeout: 30,
        })
        .await
    });
    wait_for_file(&dir.join("stalled-kill"), Duration::from_secs(20)).await;

    let t = Instant::now();
    let pc = pod_config("free", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("free", &image, &["sleep", "1000"]),
    )
    .await;
    let r = exec(&mut rs, &ctr, &["echo", "free"], 10)
        .await
        .expect("exec");
    assert_eq!(r.stdout, b"free\n");
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 2);
    assert_eq!(
        status(&mut rs, &stuck).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop free pod");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove free pod");
    let took = t.elapsed();
    assert!(!pending.is_finished(), "the stuck stop is still stuck");
    assert!(
        took < Duration::from_secs(20),
        "the other pod's lifecycle took {took:?}"
    );

    std::fs::remove_file(dir.join("stall-kill")).expect("unstall");
    pending
        .await
        .expect("join")
        .expect("the stuck stop completes once the runtime answers");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// Runtime handlers: crun runs the same lifecycle (on hybrid cgroups, in the private mount
// namespace DESIGN.md describes); an unknown handler is InvalidArgument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crun_runs_pods_and_unknown_handlers_are_rejected_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let err = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("nohandler", &c.log_dir())),
            runtime_handler: "nonesuch".into(),
        })
        .await
        .expect_err("unknown handler");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("runtime_handler") && err.message().contains("nonesuch"),
        "{err:?}"
    );

    let pc = pod_config("crun", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "crun").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("c", &image, &["sleep", "1000"]),
    )
    .await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;
    let r = exec(&mut rs, &ctr, &["cat", "/etc/hostname"], 10)
        .await
        .expect("exec");
    assert_eq!(r.stdout, b"crun\n");
    rs.stop_container(cri::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    assert_eq!(status(&mut rs, &ctr).await.exit_code, 137);
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// Bad input and wrong states: InvalidArgument naming the field, NotFound, FailedPrecondition;
// a create that fails in the runtime leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_leaks_nothing_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let mut no_meta = pod_config("bad", &c.log_dir());
    no_meta.metadata = None;
    let e = rs
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(no_meta),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("no metadata");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("config.metadata"), "{e:?}");
    let e = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "0".repeat(64),
            config: Some(container_config("x", &image, &["true"])),
            sandbox_config: None,
        })
        .await
        .expect_err("no pod");
    assert_eq!(e.code(), tonic::Code::NotFound);

    let pc = pod_config("bad", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let e = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("nobin", &image, &["/no/such/binary"])),
            sandbox_config: Some(pc.clone()),
        })
        .await;
    // runc reports a missing binary at create or at start; either way nothing may leak.
    if let Ok(r) = e {
        let id = r.into_inner().container_id;
        let started = rs
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await;
        assert!(started.is_err(), "starting a missing binary fails");
        rs.remove_container(cri::RemoveContainerRequest { container_id: id })
            .await
            .expect("remove");
    }
    let done = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("done", &image, &["true"]),
    )
    .await;
    let s = wait_state(
        &mut rs,
        &done,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let e = rs
        .start_container(cri::StartContainerRequest {
            container_id: done.clone(),
        })
        .await
        .expect_err("start exited");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let e = exec(&mut rs, &done, &["true"], 5)
        .await
        .expect_err("exec in exited");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let e = rs
        .container_status(cri::ContainerStatusRequest {
            container_id: "f".repeat(64),
            verbose: false,
        })
        .await
        .expect_err("absent");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("done", &image, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("name taken");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    // Idempotent stop and remove of what is gone.
    rs.remove_container(cri::RemoveContainerRequest {
        container_id: done.clone(),
    })
    .await
    .expect("remove");
    rs.remove_container(cri::RemoveContainerRequest { container_id: done })
        .await
        .expect("remove again");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop again");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove again");
    assert_nothing_left(&c.daemon, &ids);
}

// The definition of done: an independent CRI client (upstream-generated stubs over
// grpcio) runs a pod with a busybox container, reads its CRI log, execs into it; the daemon is
// killed and restarted; the client finds everything as it was, then stops and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_client_runs_a_pod_across_a_daemon_restart_needs_root() {
    let mut c = Cluster::start("").await;
    let sock = c.daemon.socket().display().to_string();
    let logdir = c.log_dir().join("upstream").display().to_string();
    let image = c.image("busybox");
    let (s2, i2, l2) = (sock.clone(), image.clone(), logdir.clone());
    let ran = tokio::task::spawn_blocking(move || {
        support::upstream_client("cri_pods.py", &[&s2, "run", &i2, &l2])
    })
    .await
    .expect("join");
    assert_eq!(ran["state"], "CONTAINER_RUNNING", "{ran}");
    let log = ran["log"].as_str().expect("log");
    let line = log.lines().next().expect("a log line");
    assert_eq!(
        parse_log_line(line),
        ("stdout".into(), "F".into(), "hello from busybox".into())
    );
    assert_eq!(ran["exec"]["stdout"], "upstream\n");
    assert_eq!(ran["exec"]["exit_code"], 0);

    let ids = support::object_ids(c.daemon.path());
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    c.daemon.spawn();
    c.daemon.wait_ready();
    let (pod, ctr) = (
        ran["pod"].as_str().expect("pod").to_owned(),
        ran["ctr"].as_str().expect("ctr").to_owned(),
    );
    let checked = tokio::task::spawn_blocking(move || {
        support::upstream_client("cri_pods.py", &[&sock, "check", &pod, &ctr])
    })
    .await
    .expect("join");
    assert_eq!(checked["state"], "CONTAINER_RUNNING", "{checked}");
    assert_eq!(checked["pod_state"], "SANDBOX_READY");
    assert_eq!(checked["exec"], "after restart\n");
    assert_eq!(checked["listed"], serde_json::json!([ran["ctr"]]));
    assert_eq!(checked["stopped"], "CONTAINER_EXITED");
    assert_eq!(checked["pods_after_remove"], 0);
    assert_nothing_left(&c.daemon, &ids);
}

// cri:ContainerConfig#tty (oci-runtime:config.md#process `terminal`): the container's output
// comes through a pty (the monitor receives its master over --console-socket) and is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_container_sees_a_terminal_and_is_logged_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("tty", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let mut config = container_config(
        "t",
        &image,
        &[
            "sh",
            "-c",
            "if [ -t 1 ]; then echo is-a-tty; else echo not-a-tty; fi",
        ],
    );
    config.tty = true;
    let created = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: Some(pc.clone()),
        })
        .await;
    let ctr = match created {
        Ok(r) => r.into_inner().container_id,
        Err(e) => panic!("{e:?}\n{}", c.daemon.log()),
    };
    rs.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("start");
    let s = wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(s.exit_code, 0);
    let log = std::fs::read_to_string(&s.log_path).expect("log");
    assert!(log.contains(" stdout F is-a-tty"), "{log:?}");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// Issue 16: `log_directory` and `log_path` steered crid's root-owned log writes anywhere
// (`../../etc/cron.d/x`, an absolute `log_path`, a symlink in the log directory). Each is
// refused with InvalidArgument naming the field; nothing is written outside, no container
// record or name reservation is left. cri:ContainerConfig#log_path,
// cri:PodSandboxConfig#log_directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_path_traversal_is_refused_and_writes_nothing_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    // Stands for /etc: everything that lands here is an escape.
    let etc = c.daemon.path().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");

    for (dir, why) in [
        ("etc".to_owned(), "relative"),
        (
            format!("{}/logs/../etc", c.daemon.path().display()),
            "dot-dot",
        ),
    ] {
        let mut pc = pod_config("trav", &c.log_dir());
        pc.log_directory = dir;
        let e = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(why);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{why}: {e:?}");
        assert!(e.message().contains("config.log_directory"), "{why}: {e:?}");
    }
    let listed = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list pods")
        .into_inner()
        .items;
    assert!(listed.is_empty(), "{listed:?}");

    let pc = pod_config("trav", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let log_dir = std::path::PathBuf::from(&pc.log_directory);
    std::fs::create_dir_all(&log_dir).expect("mkdir");
    std::os::unix::fs::symlink(&etc, log_dir.join("evil")).expect("symlink");
    std::os::unix::fs::symlink(etc.join("planted"), log_dir.join("planted.log")).expect("symlink");
    let absolute = etc.join("cron.d/abs").display().to_string();
    for (log_path, why) in [
        ("../../etc/cron.d/x", "dot-dot"),
        (absolute.as_str(), "absolute"),
        ("evil/cron.d/x", "symlinked directory"),
        ("planted.log", "symlinked file"),
    ] {
        let mut cc = container_config("x", &image, &["true"]);
        cc.log_path = log_path.to_owned();
        let e = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cc),
                sandbox_config: Some(pc.clone()),
            })
            .await
            .expect_err(why);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{why}: {e:?}");
        assert!(e.message().contains("config.log_path"), "{why}: {e:?}");
        let escaped: Vec<_> = std::fs::read_dir(&etc)
            .expect("ls")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(escaped.is_empty(), "{why}: wrote {escaped:?}");
        let listed = rs
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .expect("list")
            .into_inner()
            .containers;
        assert!(listed.is_empty(), "{why}: {listed:?}");
    }
    assert_eq!(
        std::fs::read_dir(c.daemon.path().join("root/state/containers"))
            .expect("ls")
            .count(),
        0,
        "no container record is left"
    );
    // The name was never reserved, and a kubelet-shaped path still works.
    let mut cc = container_config("x", &image, &["true"]);
    cc.log_path = "x/0.log".into();
    let id = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cc),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect("a path inside the log directory")
        .into_inner()
        .container_id;
    assert_eq!(
        status(&mut rs, &id).await.log_path,
        log_dir.join("x/0.log").display().to_string()
    );
    assert!(log_dir.join("x/0.log").is_file());
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

// Issue 16: a mount whose host_path does not exist answered Internal (the runtime failed);
// it is the caller's mistake: InvalidArgument naming the mount, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_host_path_is_invalid_argument_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("mnt", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let mut cc = container_config("m", &image, &["true"]);
    let gone = c.daemon.path().join("no-such-volume");
    cc.mounts = vec![
        cri::Mount {
            container_path: "/a".into(),
            host_path: c.daemon.path().display().to_string(),
            ..Default::default()
        },
        cri::Mount {
            container_path: "/b".into(),
            host_path: gone.display().to_string(),
            ..Default::default()
        },
    ];
    let e = rs
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cc),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("missing host path");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("config.mounts[1].host_path"), "{e:?}");
    assert!(!gone.exists(), "crid does not create it");
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

//! Misbehaving neighbours (issue 16, part 5) through the real daemon on real runc (root):
//! a crid-monitor killed with SIGKILL, and a runtime binary that crashes printing garbage.
//! Each fails only its own container, within its deadline, with a clear status, and
//! leaves nothing behind; so does a shim v2 that fails, hangs or answers nothing (issue 13).
//! (A registry that stalls mid-blob is
//! tests/images `stalled_pull_is_cancelled_with_a_clear_error_needs_root`.)

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crid_api::runtime::v1 as cri;
use support::cri::{
    Cluster, assert_nothing_left, container_config, exec, pod_config, remove_all, run_container,
    run_pod, status, wait_state,
};

/// PIDs whose `/proc/<pid>/stat` names `parent` as their parent.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// The crid-monitor of container `id`.
fn monitor_of(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"crid-monitor"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
            })
        })
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

// A monitor killed with SIGKILL writes no exit file: crid learns of its death (pidfd), kills
// the container, and reports it EXITED with reason MonitorDied; other containers go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_monitor_is_reported_as_exited_with_a_reason_needs_root() {
    let mut c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("orphan", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let victim = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("victim", &image, &["sleep", "1000"]),
    )
    .await;
    let other = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("other", &image, &["sleep", "1000"]),
    )
    .await;
    for id in [&victim, &other] {
        wait_state(
            &mut rs,
            id,
            cri::ContainerState::ContainerRunning,
            Duration::from_secs(10),
        )
        .await;
    }
    let monitor = monitor_of(&victim).expect("the victim's monitor");
    // The monitor's child is the container's init (runc's create leaves it there).
    let init: Vec<i32> = children_of(monitor);
    assert!(!init.is_empty(), "the monitor has the container as child");

    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");
    let s = wait_state(
        &mut rs,
        &victim,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    let took = t.elapsed();
    assert_eq!(s.reason, "MonitorDied", "{s:?}");
    assert_eq!(s.exit_code, 255, "{s:?}");
    assert!(
        s.message.contains("crid-monitor") && s.message.contains("died"),
        "{s:?}"
    );
    assert!(s.finished_at > 0, "{s:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while init.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "the container's processes outlived its monitor: {init:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    let state_of = |id: &str| listed.iter().find(|c| c.id == id).map(|c| c.state);
    assert_eq!(
        state_of(&victim),
        Some(cri::ContainerState::ContainerExited as i32)
    );
    assert_eq!(
        state_of(&other),
        Some(cri::ContainerState::ContainerRunning as i32)
    );
    let r = exec(&mut rs, &other, &["echo", "fine"], 10)
        .await
        .expect("exec in the neighbour");
    assert_eq!(r.stdout, b"fine\n");
    eprintln!(
        "monitor SIGKILL -> EXITED {} after {took:?}: {}",
        s.reason, s.message
    );

    // After a daemon restart (kill -9), the adopted monitors are watched too.
    drop(rs);
    c.daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;
    let monitor = monitor_of(&other).expect("the neighbour's monitor survived the restart");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the adopted monitor");
    let s = wait_state(
        &mut rs,
        &other,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(s.reason, "MonitorDied", "{s:?}");

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

/// A wrapper around runc that, while `<dir>/crash-<command>` exists, prints binary garbage
/// on stdout and stderr and exits 1 instead of running `<command>`.
fn crash_wrapper(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("crash-runtime");
    let d = dir.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in create|start) cmd=$a; break;; esac; done\n\
             if [ -n \"$cmd\" ] && [ -e \"{d}/crash-$cmd\" ]; then\n  \
             head -c 65536 /dev/urandom\n  printf 'garbage\\377\\376{{{{\\n' >&2\n  \
             head -c 65536 /dev/urandom >&2\n  exit 1\nfi\nexec runc \"$@\"\n"
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

// A runtime that crashes with garbage in create or start fails that container only, at
// once, with a bounded message; a pod on another handler runs meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_runtime_fails_only_its_own_container_needs_root() {
    let dir = tempfile::Builder::new()
        .prefix("crid-crash-")
        .tempdir()
        .expect("tempdir");
    let wrapper = crash_wrapper(dir.path());
    let c = Cluster::start(&format!(
        "[runtime.runtimes.crash]\npath = \"{}\"\n",
        wrapper.display()
    ))
    .await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("crashy", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "crash").await;
    let create = |name: &str| cri::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config(name, &image, &["sleep", "1000"])),
        sandbox_config: Some(pc.clone()),
    };

    // create crashes.
    std::fs::write(dir.path().join("crash-create"), "").expect("arm");
    let t = Instant::now();
    let err = rs
        .create_container(create("c1"))
        .await
        .expect_err("the runtime's create crashed");
    let took = t.elapsed();
    eprintln!(
        "runtime create crash -> {:?} after {took:?}: {}",
        err.code(),
        err.message()
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(
        err.message().contains("garbage"),
        "quotes the runtime: {err}"
    );
    assert!(
        err.message().len() < 16 << 10,
        "bounded: {} bytes",
        err.message().len()
    );
    std::fs::remove_file(dir.path().join("crash-create")).expect("disarm");
    let listed = rs
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "no half container: {listed:?}");

    // start crashes.
    let id = rs
        .create_container(create("c2"))
        .await
        .expect("create")
        .into_inner()
        .container_id;
    std::fs::write(dir.path().join("crash-start"), "").expect("arm");
    let t = Instant::now();
    let err = rs
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("the runtime's start crashed");
    let took = t.elapsed();
    eprintln!(
        "runtime start crash -> {:?} after {took:?}: {}",
        err.code(),
        err.message()
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(
        err.message().contains("garbage"),
        "quotes the runtime: {err}"
    );
    assert!(
        err.message().len() < 16 << 10,
        "bounded: {} bytes",
        err.message().len()
    );
    std::fs::remove_file(dir.path().join("crash-start")).expect("disarm");
    let s = status(&mut rs, &id).await;
    assert_ne!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );

    // A neighbour on runc is unaffected.
    a_neighbour_on_runc_runs(&mut rs, &c, &image).await;

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
}

/// A CNI plugin that, on ADD, does what `<dir>/mode` says: `hang` (sleeps past any
/// timeout), `crash` (binary garbage, exit 1) or `garbage` (exit 0 with broken JSON).
/// VERSION answers; DEL succeeds.
fn misbehaving_plugin(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("misbehave");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n\
             VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}'; exit 0;;\n\
             ADD) ;;\n*) cat >/dev/null; exit 0;;\nesac\n\
             case \"$(cat {d}/mode)\" in\n\
             hang) exec sleep 4321;;\n\
             crash) head -c 20000 /dev/urandom; echo 'misbehave: plugin garbage' >&2; exit 1;;\n\
             garbage) echo '{{\"cniVersion\": \"1.0.0\", \"ips\": [garb'; exit 0;;\n\
             esac\n",
            d = dir.display()
        ),
    )
    .expect("write plugin");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A fixture registry and a crid that finds CNI plugins in `plugins` before
/// /usr/lib/cni, with a 2 s timeout per plugin call.
async fn plugin_cluster(plugins: &Path) -> Cluster {
    use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("start docker-registry (run scripts/setup.sh)");
    registry.push_all_fixtures().await.expect("push fixtures");
    let host = registry.host();
    let mut daemon = support::TestDaemon::prepare(&format!(
        "[image]\ninsecure_registries = [\"{host}\"]\npause_image = \"{host}/pause:latest\"\n"
    ));
    daemon.write(
        "crid.d/10-network.toml",
        &format!(
            "[network]\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nplugin_timeout_secs = 2\n",
            plugins.display()
        ),
    );
    daemon.spawn();
    daemon.wait_ready();
    Cluster { daemon, registry }
}

/// Live processes running `sleep <secs>`: the hung plugin of one test (each test's plugin
/// sleeps for its own number of seconds, so tests running side by side do not see each
/// other's).
fn hung_plugins(secs: &str) -> Vec<i32> {
    let cmdline = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            alive(*pid)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == cmdline.as_bytes())
        })
        .collect()
}

// A CNI plugin that hangs past network.plugin_timeout_secs, crashes with garbage, or prints
// broken JSON: RunPodSandbox fails within its deadline naming the plugin, and leaves no
// pin, mount, veth or lease behind (the real bridge plugin before it is rolled back); a pod
// on a sane network works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_cni_plugin_fails_only_its_pod_needs_root() {
    let dir = tempfile::Builder::new()
        .prefix("crid-cni-")
        .tempdir()
        .expect("tempdir");
    misbehaving_plugin(dir.path());
    let c = plugin_cluster(&dir.path().join("bin")).await;
    let net = support::cri::TestNetwork::install(&c.daemon, "mb", 77);
    let sane: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.daemon.path().join("net.d/10-test.conflist")).expect("read"),
    )
    .expect("conflist");
    let mut broken = sane.clone();
    broken["plugins"]
        .as_array_mut()
        .expect("plugins")
        .push(serde_json::json!({"type": "misbehave"}));
    std::fs::write(
        c.daemon.path().join("net.d/10-test.conflist"),
        broken.to_string(),
    )
    .expect("write conflist");
    let mut rs = c.rs().await;

    for (i, mode) in ["hang", "crash", "garbage"].into_iter().enumerate() {
        std::fs::write(dir.path().join("mode"), mode).expect("mode");
        let pc = pod_config(&format!("cni-{mode}"), &c.log_dir());
        let t = Instant::now();
        let err = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(mode);
        let took = t.elapsed();
        eprintln!(
            "CNI plugin {mode} -> {:?} after {took:?}: {}",
            err.code(),
            err.message()
        );
        assert!(took < Duration::from_secs(20), "{mode}: {took:?}");
        assert!(
            err.message().contains("misbehave"),
            "{mode}: names the plugin: {err}"
        );
        assert!(err.message().len() < 16 << 10, "{mode}: bounded");
        if i == 0 {
            assert!(err.message().contains("timed out"), "{err}");
        }
        let pods = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .expect("list")
            .into_inner()
            .items;
        assert!(pods.is_empty(), "{mode}: no pod kept: {pods:?}");
        assert!(net.leases().is_empty(), "{mode}: leases {:?}", net.leases());
        assert!(net.ports().is_empty(), "{mode}: veths {:?}", net.ports());
        assert!(
            hung_plugins("4321").is_empty(),
            "{mode}: the hung plugin was killed"
        );
        assert_nothing_left(&c.daemon, &[]);
    }

    // The same daemon, a sane network: a pod runs.
    std::fs::write(
        c.daemon.path().join("net.d/10-test.conflist"),
        sane.to_string(),
    )
    .expect("write conflist");
    let image = c.pull("busybox").await;
    let pc = pod_config("cni-sane", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("sane", &image, &["sleep", "1000"]),
    )
    .await;
    let r = exec(&mut rs, &ctr, &["echo", "sane"], 10)
        .await
        .expect("exec");
    assert_eq!(r.stdout, b"sane\n");
    assert_eq!(net.leases().len(), 1, "{:?}", net.leases());
    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
    assert!(net.leases().is_empty(), "{:?}", net.leases());
}

/// A CNI plugin, first in its chain, whose ADD answers an empty result (the bridge after it
/// makes the interface; a shell script, so ADD stays fast on a loaded machine) and which,
/// on DEL (run last), does what `<dir>/del-mode` says: `hang`, `crash` (binary garbage,
/// exit 1), `garbage` (exit 0 with noise on stdout, which DEL's caller must not read as a
/// failure) or `ok`.
fn misbehaving_del_plugin(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("misbehave-del");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n\
             VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}'; exit 0;;\n\
             ADD) cat >/dev/null; echo '{{\"cniVersion\":\"1.0.0\"}}'; exit 0;;\n\
             DEL) cat >/dev/null;;\n*) cat >/dev/null; exit 0;;\nesac\n\
             case \"$(cat {d}/del-mode)\" in\n\
             hang) exec sleep 4322;;\n\
             crash) head -c 20000 /dev/urandom; echo 'misbehave-del: plugin garbage' >&2; exit 1;;\n\
             garbage) echo 'not json at all'; exit 0;;\n\
             *) exit 0;;\n\
             esac\n",
            d = dir.display()
        ),
    )
    .expect("write plugin");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// A CNI plugin that hangs or crashes on DEL: StopPodSandbox (and RemovePodSandbox) fails
// within network.plugin_timeout_secs naming the plugin, the pod is NOTREADY, a neighbour
// pod works meanwhile, and once the plugin behaves the retry releases everything. Noise on stdout with exit 0 is a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_cni_del_fails_only_its_pod_and_the_retry_cleans_up_needs_root() {
    let dir = tempfile::Builder::new()
        .prefix("crid-cni-del-")
        .tempdir()
        .expect("tempdir");
    misbehaving_del_plugin(dir.path());
    std::fs::write(dir.path().join("del-mode"), "ok").expect("mode");
    let c = plugin_cluster(&dir.path().join("bin")).await;
    let net = support::cri::TestNetwork::install(&c.daemon, "md", 78);
    let conflist = c.daemon.path().join("net.d/10-test.conflist");
    let mut chain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist).expect("read")).expect("json");
    chain["plugins"]
        .as_array_mut()
        .expect("plugins")
        .insert(0, serde_json::json!({"type": "misbehave-del"}));
    std::fs::write(&conflist, chain.to_string()).expect("write conflist");
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let neighbour_config = pod_config("del-neighbour", &c.log_dir());
    let neighbour = run_pod(&mut rs, &neighbour_config, "").await;

    for mode in ["hang", "crash"] {
        let pc = pod_config(&format!("del-{mode}"), &c.log_dir());
        let pod = run_pod(&mut rs, &pc, "").await;
        assert_eq!(net.leases().len(), 2, "{mode}: {:?}", net.leases());
        std::fs::write(dir.path().join("del-mode"), mode).expect("mode");

        // The stop fails alone: the neighbour takes a container while the DEL hangs.
        let mut other = c.rs().await;
        let stopping = tokio::spawn(async move {
            let t = Instant::now();
            let r = other
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await;
            (pod, r, t.elapsed())
        });
        let ctr = run_container(
            &mut rs,
            &neighbour,
            &neighbour_config,
            container_config(&format!("n-{mode}"), &image, &["sleep", "1000"]),
        )
        .await;
        let (pod, stopped, took) = stopping.await.expect("join");
        let err = stopped.expect_err(mode);
        eprintln!(
            "CNI DEL {mode} -> {:?} after {took:?}: {}",
            err.code(),
            err.message()
        );
        assert!(took < Duration::from_secs(20), "{mode}: {took:?}");
        assert!(
            err.message().contains("misbehave-del"),
            "{mode}: names the plugin: {err}"
        );
        assert!(err.message().len() < 16 << 10, "{mode}: bounded");
        if mode == "hang" {
            assert!(err.message().contains("timed out"), "{err}");
        }
        assert!(
            hung_plugins("4322").is_empty(),
            "{mode}: the hung plugin was killed"
        );
        let s = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .expect("status")
            .into_inner()
            .status
            .expect("status");
        assert_eq!(
            s.state,
            cri::PodSandboxState::SandboxNotready as i32,
            "{mode}"
        );
        // RemovePodSandbox runs the same DEL: it fails too, and the pod stays.
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect_err("remove while DEL fails");
        assert_eq!(
            status(&mut rs, &ctr).await.state,
            cri::ContainerState::ContainerRunning as i32
        );

        // The plugin behaves again: the retry releases everything.
        std::fs::write(dir.path().join("del-mode"), "ok").expect("mode");
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("retried stop");
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .expect("remove");
        assert_eq!(net.leases().len(), 1, "{mode}: {:?}", net.leases());
        assert_eq!(net.ports().len(), 1, "{mode}: {:?}", net.ports());
    }

    // Noise on stdout with exit 0 is a successful DEL.
    let pc = pod_config("del-garbage", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    std::fs::write(dir.path().join("del-mode"), "garbage").expect("mode");
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("DEL with noise on stdout succeeds");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove");
    std::fs::write(dir.path().join("del-mode"), "ok").expect("mode");

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(net.ports().is_empty(), "{:?}", net.ports());
}

/// A pod on runc (the default handler) runs a container that answers ExecSync.
async fn a_neighbour_on_runc_runs(
    rs: &mut crid_api::runtime::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    c: &Cluster,
    image: &str,
) {
    let pc = pod_config("calm", &c.log_dir());
    let pod = run_pod(rs, &pc, "").await;
    let calm = run_container(
        rs,
        &pod,
        &pc,
        container_config("calm", image, &["sleep", "1000"]),
    )
    .await;
    let r = exec(rs, &calm, &["echo", "calm"], 10).await.expect("exec");
    assert_eq!(r.stdout, b"calm\n");
}

/// A shim v2 binary that misbehaves on `start` as `<dir>/mode` says: `fail` (exit 1 with a
/// reason on stderr), `garbage` (exit 0 printing no address), `hang` (never returns),
/// `gone` (the address of a socket nobody serves: a shim that died at once) or `deaf` (a
/// listener that takes connections and never answers a call). Its `delete`, the clean-up
/// after a dead shim, ends the deaf listener as a real shim's would end its task. Every
/// process it leaves running names `dir` on its command line.
fn misbehaving_shim(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("bad-shim");
    let d = dir.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do action=$a; done\n\
             case $action in\n\
             delete) [ -f {d}/deaf.pid ] && kill \"$(cat {d}/deaf.pid)\"; rm -f {d}/deaf.pid {d}/deaf.sock; exit 0;;\n\
             start) ;;\n\
             *) exit 0;;\n\
             esac\n\
             case $(cat {d}/mode) in\n\
             fail) echo 'bad-shim: no hypervisor on this host' >&2; exit 1;;\n\
             garbage) printf 'garbage\\377\\376{{{{\\n'; exit 0;;\n\
             hang) exec python3 -c 'import time; time.sleep(1000)' {d};;\n\
             gone) echo unix://{d}/nobody.sock; exit 0;;\n\
             deaf) python3 -c 'import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(8)\ntime.sleep(1000)' {d}/deaf.sock </dev/null >/dev/null 2>&1 &\n\
               echo $! > {d}/deaf.pid\n\
               while [ ! -S {d}/deaf.sock ]; do sleep 0.05; done\n\
               echo unix://{d}/deaf.sock; exit 0;;\n\
             esac\n"
        ),
    )
    .expect("write shim");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// Live processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(needle).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

// Issue 13: a shim v2 that fails to start, prints garbage, hangs, dies at once or takes
// connections without answering fails only its own container, within the handler's
// `timeout_secs` (DeadlineExceeded for the two that run out of time), with a message that
// says what happened, and leaves no container, task record, FIFO or process; a pod on runc
// runs meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_shim_fails_only_its_own_container_needs_root() {
    let dir = tempfile::Builder::new()
        .prefix("crid-badshim-")
        .tempdir()
        .expect("tempdir");
    let shim = misbehaving_shim(dir.path());
    let c = Cluster::start(&format!(
        "[runtime.runtimes.bad]\npath = \"{}\"\ntype = \"shim\"\ntimeout_secs = 3\n",
        shim.display()
    ))
    .await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let needle = dir.path().display().to_string();
    // The shim runs the pod's sandbox task, so RunPodSandbox is where it first misbehaves.
    for (n, (mode, code, says)) in [
        ("fail", tonic::Code::Internal, "no hypervisor on this host"),
        ("garbage", tonic::Code::Internal, "not a ttrpc address"),
        (
            "hang",
            tonic::Code::DeadlineExceeded,
            "did not finish within 3s",
        ),
        ("gone", tonic::Code::Internal, "nobody.sock"),
        (
            "deaf",
            tonic::Code::DeadlineExceeded,
            "create` for container",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(dir.path().join("mode"), mode).expect("mode");
        let t = Instant::now();
        let err = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config(&format!("badshim{n}"), &c.log_dir())),
                runtime_handler: "bad".into(),
            })
            .await
            .expect_err("the shim misbehaved");
        let took = t.elapsed();
        eprintln!(
            "shim {mode} -> {:?} after {took:?}: {}",
            err.code(),
            err.message()
        );
        assert_eq!(err.code(), code, "{mode}: {err}");
        assert!(err.message().contains(says), "{mode}: {err}");
        assert!(
            err.message().contains("handler bad"),
            "{mode}: names the handler: {err}"
        );
        // fail, garbage, gone: at once; hang: one bound; deaf: connect, create and the
        // clean-up's kill each run out (3 s and 1 s of slack each), then `delete`.
        assert!(took < Duration::from_secs(20), "{mode}: {took:?}");
        let pods = rs
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .expect("list")
            .into_inner()
            .items;
        assert!(pods.is_empty(), "{mode}: no half pod: {pods:?}");
        let left = processes_naming(&needle);
        assert!(left.is_empty(), "{mode}: processes left: {left:?}");
    }

    // A neighbour on runc is unaffected.
    a_neighbour_on_runc_runs(&mut rs, &c, &image).await;

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    assert_nothing_left(&c.daemon, &ids);
    // The handler's state directory existed (it serves the shims' events there) and holds
    // no task record.
    let state = c.daemon.path().join("run/shims/bad");
    let records: Vec<_> = std::fs::read_dir(&state)
        .expect("the shim handler's state directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert!(records.is_empty(), "task records left: {records:?}");
}

//! `crid::runtime::shim` against Debian's `containerd-shim-runc-v2` (the containerd
//! package), the same task API Kata's shim serves: create, start, exec, update, stop (the
//! exit code recorded through the exit file), delete, a crid restart (a new handler
//! reconnects), a shim that died (cleaned up with the binary's `delete`), one shim per pod,
//! and a failed create leaving nothing. Needs root, runc, busybox-static and containerd.
//! Every shim started here is killed by PID on drop, with its runc container and socket.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crid::monitor::exit::{self, ExitRecord};
use crid::runtime::shim::ShimHandler;
use crid::runtime::{CreateRequest, Created, RuntimeHandler, State};
use crid::spec::oci::{Memory, Process, Resources, User};
use crid_api::runtime::v1 as cri;
use support::bundle::Bundle;
use support::cri::{
    Cluster, assert_nothing_left, container_config, exec, pod_config, remove_all, run_container,
    run_pod, wait_state,
};

const SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
/// runc's state directory under the runc shim, for namespace `crid`.
const RUNC_ROOT: &str = "/run/containerd/runc/crid";

/// A handler whose state lives in `dir`, and what to clean up after it.
struct Setup {
    dir: tempfile::TempDir,
    cleanup: Vec<Cleanup>,
}

/// Kills the shim (by the PID it wrote in the bundle that started it) and force-deletes
/// the container through runc, even when the test failed.
struct Cleanup {
    id: String,
    bundle: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runc")
            .args(["--root", RUNC_ROOT, "delete", "--force", &self.id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Ok(a) = std::fs::read_to_string(self.bundle.join("address"))
            && let Some(path) = a.trim().strip_prefix("unix://")
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a failed daemon test leaves of its shims: runc containers whose state names the
/// daemon's directory (force-deleted), then the shims started below it (killed by PID).
struct Sweep(PathBuf);

impl Drop for Sweep {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for e in std::fs::read_dir(RUNC_ROOT).into_iter().flatten().flatten() {
            let state = std::fs::read_to_string(e.path().join("state.json")).unwrap_or_default();
            if state.contains(&needle) {
                let _ = std::process::Command::new("runc")
                    .args(["--root", RUNC_ROOT, "delete", "--force"])
                    .arg(e.file_name())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        for pid in shims_under(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Setup {
    fn new() -> Self {
        assert!(
            Path::new(SHIM).exists(),
            "apt-get install containerd (for {SHIM})"
        );
        Setup {
            dir: tempfile::Builder::new()
                .prefix("crid-shim-")
                .tempdir()
                .expect("tempdir"),
            cleanup: Vec::new(),
        }
    }

    fn handler(&self) -> ShimHandler {
        ShimHandler::new("shim", SHIM.into(), self.dir.path()).with_timeout(Duration::from_secs(20))
    }

    fn request(&mut self, b: &Bundle) -> CreateRequest {
        let exits = self.dir.path().join("exits");
        std::fs::create_dir_all(&exits).expect("exit dir");
        self.cleanup.push(Cleanup {
            id: b.id.clone(),
            bundle: b.dir.path().to_path_buf(),
        });
        CreateRequest {
            id: b.id.clone(),
            bundle: b.dir.path().to_path_buf(),
            log_path: b.path("container.log"),
            log_max_size: None,
            exit_file: exits.join(&b.id),
            pid_file: b.path("pid"),
            memory_cgroup: None,
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Containers first (while their bundles exist), newest first.
        while let Some(c) = self.cleanup.pop() {
            drop(c);
        }
        for pid in shims_under(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The live shim processes started with an `-address` below `dir` (unique per test).
fn shims_under(dir: &Path) -> Vec<i32> {
    let needle = format!("-address {}/", dir.display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| alive(*p) && is_shim(*p) && cmdline(*p).contains(&needle))
        .collect()
}

/// The one shim of this setup.
fn shim_pid(dir: &Path) -> Option<i32> {
    let shims = shims_under(dir);
    assert!(shims.len() <= 1, "one shim per pod: {shims:?}");
    shims.first().copied()
}

fn shim_log(bundle: &Path) -> String {
    std::fs::read_to_string(bundle.join("shim.log")).unwrap_or_default()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn is_shim(pid: i32) -> bool {
    cmdline(pid).contains("containerd-shim-runc-v2")
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn process(args: &[&str]) -> Process {
    Process {
        user: User::default(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        ..Process::default()
    }
}

/// Polls with tokio's sleep, so the handler's tasks (exit waiter, log copy) run.
async fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_exit(path: &Path) -> ExitRecord {
    let mut record = None;
    eventually("exit file", Duration::from_secs(20), || {
        record = exit::read(path).expect("read exit file");
        record.is_some()
    })
    .await;
    record.expect("record")
}

async fn create(h: &ShimHandler, req: &CreateRequest) -> Created {
    let created = h
        .create(req)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(created.pid > 1, "{created:?}");
    assert_eq!(created.monitor_pid, 0, "a shim handler has no monitor");
    created
}

fn status(s: Option<State>) -> Option<String> {
    s.map(|s| s.status)
}

// oci-runtime:runtime.md#lifecycle through the shim v2 task API: Create -> created ->
// Start -> running (output in the CRI log) -> Exec (output, exit code, timeout) -> Update
// -> Kill -> the exit code in the exit file -> Delete -> unknown, and the shim is gone.
#[tokio::test]
async fn lifecycle_needs_root() {
    const MIB: i64 = 1 << 20;
    let mut s = Setup::new();
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "echo out; echo err >&2; while :; do sleep 0.1; done",
        ],
        64 * MIB,
    );
    let h = s.handler();
    let req = s.request(&b);
    let created = create(&h, &req).await;
    assert_eq!(
        h.state(&b.id).await.expect("state"),
        Some(State {
            status: "created".into(),
            pid: created.pid,
            bundle: req.bundle.clone(),
        })
    );
    let again = h.create(&req).await.expect_err("same id twice");
    assert!(again.to_string().contains("already exists"), "{again}");
    let shim = shim_pid(s.dir.path()).expect("the shim wrote its pid in the bundle");
    assert!(is_shim(shim), "{}", cmdline(shim));

    h.start(&b.id).await.expect("start");
    assert_eq!(
        status(h.state(&b.id).await.expect("state")).as_deref(),
        Some("running")
    );
    // cri:ContainerConfig#log_path: the CRI log format, both streams.
    let log = req.log_path.clone();
    eventually("both streams in the log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains(" stdout F out\n") && text.contains(" stderr F err\n")
    })
    .await;

    // cri:RuntimeService.ExecSync: output, exit codes, the timeout.
    let out = h
        .exec(
            &b.id,
            &process(&["/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"]),
            None,
        )
        .await
        .expect("exec");
    assert_eq!(
        (
            out.stdout.as_slice(),
            out.stderr.as_slice(),
            out.exit_code,
            out.timed_out
        ),
        (&b"hi\n"[..], &b"oops\n"[..], 3, false)
    );
    let started = Instant::now();
    let out = h
        .exec(
            &b.id,
            &process(&["/bin/sleep", "30"]),
            Some(Duration::from_secs(1)),
        )
        .await
        .expect("exec with timeout");
    assert!(out.timed_out, "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = h.exec(&b.id, &process(&["/no/such/binary"]), None).await;
    assert!(
        err.as_ref().is_err() || err.as_ref().is_ok_and(|o| o.exit_code != 0),
        "{err:?}"
    );

    // cri:RuntimeService.UpdateContainerResources: the LinuxResources reach the cgroup.
    h.update(
        &b.id,
        &Resources {
            memory: Some(Memory {
                limit: Some(128 * MIB),
                swap: Some(128 * MIB),
            }),
            ..Resources::default()
        },
    )
    .await
    .expect("update");
    let cg = b.memory_cgroup().join("memory.limit_in_bytes");
    if Path::new("/sys/fs/cgroup/memory").exists() {
        let limit: i64 = std::fs::read_to_string(&cg)
            .expect("memory.limit_in_bytes")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(limit, 128 * MIB);
    }

    // StopContainer's SIGKILL: 137 through the exit file.
    h.kill(&b.id, "KILL", false).await.expect("kill");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 137);
    assert_eq!(
        status(h.state(&b.id).await.expect("state")).as_deref(),
        Some("stopped")
    );
    h.kill(&b.id, "KILL", false)
        .await
        .expect("kill of an exited container is not an error");

    h.delete(&b.id, false).await.expect("delete");
    assert_eq!(h.state(&b.id).await.expect("state"), None);
    h.delete(&b.id, false).await.expect("delete is idempotent");
    assert!(!alive(created.pid));
    println!("shim log:\n{}", shim_log(b.dir.path()));
    eventually(
        "the shim exits after its last task",
        Duration::from_secs(10),
        || !alive(shim),
    )
    .await;
    assert!(!Path::new(RUNC_ROOT).join(&b.id).exists());
}

// The stop signal reaches the container's init through Kill; its own exit code is kept.
#[tokio::test]
async fn stop_signal_and_exit_code_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
        0,
    );
    let h = s.handler();
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    // Give sh the moment it needs to install its trap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.kill(&b.id, "SIGTERM", false).await.expect("kill");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 7);
    h.delete(&b.id, false).await.expect("delete");
}

// A crid restart: a new handler over the same state reconnects to the running shim, waits
// for the exit again, and can stop and remove the container.
#[tokio::test]
async fn a_restarted_crid_reconnects_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(&["/bin/sleep", "3600"], 0);
    let req = s.request(&b);
    let before = s.handler();
    let created = create(&before, &req).await;
    before.start(&b.id).await.expect("start");
    let address = before.shim_address(&b.id).expect("address kept");
    drop(before);

    let after = s.handler();
    assert_eq!(after.shim_address(&b.id), Some(address));
    assert_eq!(
        after.state(&b.id).await.expect("state"),
        Some(State {
            status: "running".into(),
            pid: created.pid,
            bundle: req.bundle.clone(),
        })
    );
    after.kill(&b.id, "KILL", false).await.expect("kill");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 137);
    after.delete(&b.id, false).await.expect("delete");
    assert_eq!(after.state(&b.id).await.expect("state"), None);
}

// A shim that died: the container is stopped and removed with the shim binary's `delete`,
// which kills what the shim left running; the exit is recorded as a kill.
#[tokio::test]
async fn a_dead_shim_is_cleaned_up_with_delete_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(&["/bin/sleep", "3600"], 0);
    let h = s.handler();
    // The runc shim's `delete` finds its state in `../<id>` of the bundle, as containerd
    // and crid lay bundles out.
    let mut req = s.request(&b);
    req.bundle = s.dir.path().join(&b.id);
    std::os::unix::fs::symlink(b.dir.path(), &req.bundle).expect("symlink");
    let created = create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    let shim = shim_pid(s.dir.path()).expect("shim pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    eventually("the shim is gone", Duration::from_secs(10), || !alive(shim)).await;
    assert_eq!(h.state(&b.id).await.expect("state"), None);
    // StopContainer still completes: the kill goes through the binary's `delete`, and
    // the exit is recorded as a kill.
    h.kill(&b.id, "SIGTERM", false)
        .await
        .expect("kill after the shim died");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 137);
    eventually("the container is gone", Duration::from_secs(10), || {
        !alive(created.pid)
    })
    .await;
    h.delete(&b.id, true)
        .await
        .expect("delete after the shim died");
    assert!(h.shim_address(&b.id).is_none());
    assert!(!Path::new(RUNC_ROOT).join(&b.id).exists());
}

// One shim per pod: the runc shim groups containers by `io.kubernetes.cri.sandbox-id`
// (crid's specs carry it); it stays while one of them is left, and exits after the last.
#[tokio::test]
async fn containers_of_a_pod_share_one_shim_needs_root() {
    let mut s = Setup::new();
    let first = Bundle::new(&["/bin/sleep", "3600"], 0);
    let second = Bundle::new(&["/bin/sleep", "3600"], 0);
    let h = s.handler();
    let (r1, r2) = (s.request(&first), s.request(&second));
    create(&h, &r1).await;
    create(&h, &r2).await;
    assert_eq!(h.shim_address(&first.id), h.shim_address(&second.id));
    let shim = shim_pid(s.dir.path()).expect("shim pid");
    for b in [&first, &second] {
        h.start(&b.id).await.expect("start");
    }
    h.delete(&first.id, true).await.expect("delete --force");
    assert_eq!(h.state(&first.id).await.expect("state"), None);
    assert!(alive(shim), "the shim still serves the second container");
    assert_eq!(
        status(h.state(&second.id).await.expect("state")).as_deref(),
        Some("running")
    );
    h.delete(&second.id, true).await.expect("delete --force");
    eventually(
        "the shim exits after its last task",
        Duration::from_secs(10),
        || !alive(shim),
    )
    .await;
}

// cri:ContainerStatus#reason OOMKilled: the shim's /tasks/oom event reaches crid's events
// sink, and the exit record says OOM-killed.
#[tokio::test]
async fn an_oom_kill_is_recorded_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
        16 << 20,
    );
    let h = s.handler();
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    let record = wait_exit(&req.exit_file).await;
    assert!(record.oom_killed, "{record:?}");
    h.delete(&b.id, false).await.expect("delete");
}

// A create the runtime refuses leaves no record and no shim.
#[tokio::test]
async fn a_failed_create_leaves_nothing_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(&["/no/such/binary"], 0);
    std::fs::remove_file(b.path("config.json")).expect("break the bundle");
    let h = s.handler();
    let req = s.request(&b);
    let err = h.create(&req).await.expect_err("no config.json");
    assert!(err.to_string().contains(&b.id), "{err}");
    assert!(h.shim_address(&b.id).is_none());
    if let Some(shim) = shim_pid(s.dir.path()) {
        eventually("the shim exits", Duration::from_secs(10), || !alive(shim)).await;
    }
}

// Through the daemon: a pod on a shim handler runs a container whose output reaches the CRI
// log and which answers ExecSync; after crid is killed (-9) and restarted it is still
// running, StopContainer records the exit (reconnected waiter), and removing the pod
// leaves no shim, process, mount or cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_container_outlives_a_crid_restart_needs_root() {
    let mut c = Cluster::start(&format!(
        "[runtime.runtimes.shim]\npath = \"{SHIM}\"\ntype = \"shim\"\n"
    ))
    .await;
    let _sweep = Sweep(c.daemon.path().to_path_buf());
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("shim-restart", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "shim").await;
    let mut cc = container_config(
        "sleeper",
        &image,
        &["sh", "-c", "echo started; exec sleep 1000"],
    );
    cc.log_path = "sleeper.log".into();
    let id = run_container(&mut rs, &pod, &pc, cc).await;
    wait_state(
        &mut rs,
        &id,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;
    let out = exec(&mut rs, &id, &["echo", "hi"], 10)
        .await
        .expect("ExecSync");
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"hi\n"[..], 0));
    let log = c.log_dir().join("shim-restart/sleeper.log");
    eventually("the log", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(" stdout F started"))
    })
    .await;
    let shims = shims_under(c.daemon.path());
    assert_eq!(shims.len(), 1, "one shim for the pod");

    drop(rs);
    c.daemon
        .signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;
    let s = support::cri::status(&mut rs, &id).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    assert_eq!(shims_under(c.daemon.path()), shims, "the same shim");
    rs.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("StopContainer after the restart");
    let s = wait_state(
        &mut rs,
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await;
    // SIGTERM (143) or, a second later, SIGKILL (137): recorded by the waiter the
    // restarted crid started when recovery asked the shim for the container's state.
    assert!([137, 143].contains(&s.exit_code), "{s:?}");

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    eventually("the shim exits", Duration::from_secs(10), || {
        shims_under(c.daemon.path()).is_empty()
    })
    .await;
    assert_nothing_left(&c.daemon, &ids);
}

// cri:RuntimeService.ReopenContainerLog on a shim handler: crid writes the log itself, so it
// reopens the file when asked; after the kubelet's rename the new file gets the output at
// once. A handler made after a restart has no copy of the container's output and says so.
#[tokio::test]
async fn reopen_log_starts_a_new_file_needs_root() {
    let mut s = Setup::new();
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.05; done",
        ],
        0,
    );
    let h = s.handler();
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    eventually("first lines in the log", Duration::from_secs(10), || {
        std::fs::read_to_string(&req.log_path).is_ok_and(|t| t.contains("line-3"))
    })
    .await;
    let rotated = req.log_path.with_extension("log.1");
    std::fs::rename(&req.log_path, &rotated).expect("rotate");
    h.reopen_log(&b.id).await.expect("reopen");
    assert!(
        req.log_path.exists(),
        "the new file exists when the call returns"
    );
    eventually("lines in the new file", Duration::from_secs(10), || {
        std::fs::read_to_string(&req.log_path).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await;
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    let new = std::fs::read_to_string(&req.log_path).expect("new");
    let last_old: u32 = old
        .lines()
        .filter_map(|l| l.rsplit("line-").next()?.parse().ok())
        .max()
        .expect("numbered lines");
    let first_new: u32 = new
        .lines()
        .filter_map(|l| l.rsplit("line-").next()?.parse().ok())
        .min()
        .expect("numbered lines");
    assert_eq!(
        first_new,
        last_old + 1,
        "no line lost or repeated across the reopen"
    );

    let after = s.handler();
    let err = after
        .reopen_log(&b.id)
        .await
        .expect_err("no copy after a restart");
    assert!(err.to_string().contains("no longer copies"), "{err}");
    h.kill(&b.id, "KILL", false).await.expect("kill");
    wait_exit(&req.exit_file).await;
    h.delete(&b.id, false).await.expect("delete");
}

/// The infra PID that verbose PodSandboxStatus reports (`info` → `infraPid`), if any.
async fn infra_pid(
    rs: &mut crid_api::runtime::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    pod: &str,
) -> Option<i64> {
    let r = rs
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_owned(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(r.info.get("info").expect("verbose info")).expect("JSON");
    info["infraPid"].as_i64().filter(|p| *p > 0)
}

// Issue 13 (Kata's path): with `always_infra` a shim handler runs the pod's infra container
// as the shim's sandbox task in every pod, also one whose containers keep PID namespaces
// of their own: RunPodSandbox starts the pod's shim with it, the pod's container joins that
// shim, and nothing is left after the pod's removal. Without `always_infra` such a pod
// starts no shim until its first container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_infra_runs_the_sandbox_task_in_the_pods_shim_needs_root() {
    let c = Cluster::start(&format!(
        "[runtime.runtimes.kata]\npath = \"{SHIM}\"\ntype = \"shim\"\nalways_infra = true\n\
         [runtime.runtimes.plain]\npath = \"{SHIM}\"\ntype = \"shim\"\n"
    ))
    .await;
    let _sweep = Sweep(c.daemon.path().to_path_buf());
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let own_pids = |name: &str| {
        let mut pc = pod_config(name, &c.log_dir());
        pc.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        pc
    };

    let plain = own_pids("plain");
    let plain_pod = run_pod(&mut rs, &plain, "plain").await;
    assert_eq!(infra_pid(&mut rs, &plain_pod).await, None, "no infra");
    assert!(shims_under(c.daemon.path()).is_empty(), "no shim yet");
    rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: plain_pod.clone(),
    })
    .await
    .expect("stop");
    rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: plain_pod,
    })
    .await
    .expect("remove");

    let pc = own_pids("kata");
    let pod = run_pod(&mut rs, &pc, "kata").await;
    let infra = infra_pid(&mut rs, &pod).await.expect("an infra process");
    let shims = shims_under(c.daemon.path());
    assert_eq!(
        shims.len(),
        1,
        "the pod's shim, started for the sandbox task"
    );
    assert!(alive(infra as i32), "the infra process {infra} runs");
    let id = run_container(
        &mut rs,
        &pod,
        &pc,
        container_config("app", &image, &["sleep", "1000"]),
    )
    .await;
    let out = exec(&mut rs, &id, &["echo", "hi"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(
        shims_under(c.daemon.path()),
        shims,
        "the container joined the sandbox's shim"
    );

    let ids = support::object_ids(c.daemon.path());
    remove_all(&mut rs).await;
    eventually("the shim exits", Duration::from_secs(10), || {
        shims_under(c.daemon.path()).is_empty()
    })
    .await;
    assert!(!alive(infra as i32), "the infra process is gone");
    assert_nothing_left(&c.daemon, &ids);
}

/// Rewrites the bundle's config.json: a terminal, and crid's stdin annotation (`open` or
/// `once`), as the spec builder writes them for cri:ContainerConfig#tty, #stdin and
/// #stdin_once.
fn with_stdio(b: &Bundle, terminal: bool, stdin: Option<&str>) {
    let path = b.path("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    v["process"]["terminal"] = terminal.into();
    if let Some(mode) = stdin {
        v["annotations"][crid::monitor::attach::STDIN_ANNOTATION] = mode.into();
    }
    std::fs::write(&path, serde_json::to_vec(&v).expect("json")).expect("write config.json");
}

/// Reads an attach connection's frames until it ends (within `limit`): stdout, stderr.
async fn attach_output(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> (String, String) {
    use crid::monitor::attach as wire;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    tokio::time::timeout(limit, async {
        while let Ok((kind, data)) = wire::read_frame(conn).await {
            match kind {
                wire::STDOUT => out.extend_from_slice(&data),
                wire::STDERR => err.extend_from_slice(&data),
                _ => {}
            }
        }
    })
    .await
    .expect("the attach session ends when the container's output does");
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

async fn read_all(r: &mut Option<crid::runtime::interactive::Output>) -> String {
    use tokio::io::AsyncReadExt;
    let mut v = Vec::new();
    if let Some(r) = r {
        let _ = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut v)).await;
    }
    String::from_utf8_lossy(&v).into_owned()
}

// cri:RuntimeService.Exec through the task API's Exec on a shim handler: stdin reaches the
// process and its end (CloseIO) ends `cat`; stdout and stderr come apart; the exit code
// comes from Wait; with a terminal, ResizePty sets the size the process reads; a session
// dropped before its process ended kills it.
#[tokio::test]
async fn streaming_exec_needs_root() {
    use crid::runtime::Streams;
    use tokio::io::AsyncWriteExt;
    let mut s = Setup::new();
    let b = Bundle::new(&["/bin/sh", "-c", "while :; do sleep 0.1; done"], 0);
    let h = s.handler();
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");

    let pipes = Streams {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut p = h
        .exec_interactive(
            &b.id,
            &process(&["/bin/sh", "-c", "cat; echo err >&2; exit 3"]),
            pipes,
        )
        .await
        .expect("exec");
    let mut stdin = p.io.stdin.take().expect("stdin asked for");
    stdin.write_all(b"hello").await.expect("write stdin");
    stdin.shutdown().await.expect("close stdin");
    let (mut out, mut err) = (p.io.stdout.take(), p.io.stderr.take());
    let (out, err) = tokio::join!(read_all(&mut out), read_all(&mut err));
    let code = tokio::time::timeout(Duration::from_secs(10), p.wait())
        .await
        .expect("cat ends once stdin closed")
        .expect("wait");
    assert_eq!((out.as_str(), err.as_str(), code), ("hello", "err\n", 3));
    assert!(p.io.terminal.is_none());

    let tty = Streams {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let mut p = h
        .exec_interactive(
            &b.id,
            &process(&["/bin/sh", "-c", "read l; stty size; echo got-$l"]),
            tty,
        )
        .await
        .expect("exec with a terminal");
    assert!(p.io.stderr.is_none(), "a terminal has one output");
    p.io.terminal
        .as_ref()
        .expect("terminal")
        .resize(100, 30)
        .await
        .expect("ResizePty");
    let mut stdin = p.io.stdin.take().expect("stdin");
    stdin.write_all(b"x\n").await.expect("write");
    let mut out = p.io.stdout.take();
    let out = read_all(&mut out).await;
    assert_eq!(p.wait().await.expect("wait"), 0);
    assert!(
        out.contains("30 100") && out.contains("got-x"),
        "terminal output {out:?}"
    );

    // A session whose client left: its process is killed and deleted.
    let p = h
        .exec_interactive(&b.id, &process(&["/bin/sleep", "1234"]), pipes)
        .await
        .expect("exec");
    let sleeping = || async {
        let ps = h
            .exec(
                &b.id,
                &process(&["/bin/sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]),
                None,
            )
            .await
            .expect("ps");
        String::from_utf8_lossy(&ps.stdout).contains("sleep 1234")
    };
    assert!(sleeping().await, "the exec'd process runs");
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping().await {
        assert!(
            Instant::now() < deadline,
            "the dropped session's process lives on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    h.kill(&b.id, "KILL", false).await.expect("kill");
    wait_exit(&req.exit_file).await;
    h.delete(&b.id, false).await.expect("delete");
}

// cri:RuntimeService.Attach on a shim handler: an attached client gets the container's
// output (stdout and stderr apart) and feeds its stdin; with stdin_once its end of input
// closes the container's stdin (CloseIO), so `cat` ends; the session ends with the
// container. With a terminal, the client's size reaches it through ResizePty. A handler
// made after a restart holds no stdio and refuses to attach.
#[tokio::test]
async fn attach_needs_root() {
    use crid::monitor::attach::{self as wire, frame};
    use tokio::io::AsyncWriteExt;
    let mut s = Setup::new();
    let h = s.handler();

    let b = Bundle::new(&["/bin/sh", "-c", "cat; echo done; echo err >&2"], 0);
    with_stdio(&b, false, Some("once"));
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    let mut conn = h.attach(&b.id, b.dir.path()).await.expect("attach");
    conn.write_all(&frame(wire::STDIN, b"hi\n"))
        .await
        .expect("stdin");
    conn.write_all(&frame(wire::CLOSE_STDIN, &[]))
        .await
        .expect("close stdin");
    let (out, err) = attach_output(&mut conn, Duration::from_secs(10)).await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\ndone\n", "err\n"));
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 0);
    let log = std::fs::read_to_string(&req.log_path).expect("log");
    assert!(
        log.contains(" stdout F done\n"),
        "the log has it too: {log}"
    );
    h.delete(&b.id, false).await.expect("delete");

    let b = Bundle::new(&["/bin/sh", "-c", "read l; stty size"], 0);
    with_stdio(&b, true, Some("open"));
    let req = s.request(&b);
    create(&h, &req).await;
    h.start(&b.id).await.expect("start");
    let after = s.handler();
    let refused = after
        .attach(&b.id, b.dir.path())
        .await
        .err()
        .expect("no attach without the container's stdio");
    assert!(refused.to_string().contains("last restart"), "{refused}");
    let mut conn = h.attach(&b.id, b.dir.path()).await.expect("attach");
    let mut size = 123u16.to_be_bytes().to_vec();
    size.extend_from_slice(&45u16.to_be_bytes());
    conn.write_all(&frame(wire::RESIZE, &size))
        .await
        .expect("resize");
    conn.write_all(&frame(wire::STDIN, b"go\n"))
        .await
        .expect("stdin");
    let (out, _) = attach_output(&mut conn, Duration::from_secs(10)).await;
    assert!(out.contains("45 123"), "terminal output {out:?}");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 0);
    h.delete(&b.id, false).await.expect("delete");
}

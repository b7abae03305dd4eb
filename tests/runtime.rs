//! `crid::runtime::oci` against the real runc and crun: create under crid-monitor, start,
//! state, kill, delete, exec, update, exit watching and timeouts. Each check runs for both
//! handlers as its own test (`<check>::runc_needs_root`, `<check>::crun_needs_root`).
//! Needs root, runc, crun and busybox-static (CI has them). Every test uses its own bundle,
//! whose Drop force-deletes what is left; processes are only ever signalled by PID.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crid::config::{CgroupDriver, RuntimeHandler, RuntimeKind};
use crid::monitor::exit::{self, ExitRecord};
use crid::monitor::watch::watch_exits;
use crid::runtime::RuntimeError;
use crid::runtime::hybrid::CgroupLayout;
use crid::runtime::oci::{CreateRequest, Created, OciRuntime, State};
use crid::spec::PidNamespace;
use crid::spec::oci::{Memory, Process, Resources, User};
use support::bundle::Bundle;

const MONITOR: &str = env!("CARGO_BIN_EXE_crid-monitor");

/// Runs the async check `$check(handler)` once for runc and once for crun, each as a test.
macro_rules! for_each_handler {
    ($check:ident) => {
        mod $check {
            #[tokio::test]
            async fn runc_needs_root() {
                super::$check("runc").await
            }
            #[tokio::test]
            async fn crun_needs_root() {
                super::$check("crun").await
            }
        }
    };
}

async fn runtime(b: &Bundle, handler: &str) -> OciRuntime {
    let h = RuntimeHandler {
        path: handler.into(),
        root: Some(b.root_for(handler)),
        kind: RuntimeKind::Oci,
        args: Vec::new(),
        always_infra: false,
        timeout_secs: None,
        exit_via_wait: None,
    };
    let rt = OciRuntime::new(handler, &h, b.dir.path(), CgroupDriver::Cgroupfs)
        .await
        .expect("runtime (apt-get install runc crun)");
    // On this hybrid host crun must run in the private mount namespace; runc never.
    let hybrid = CgroupLayout::detect().is_hybrid();
    assert_eq!(rt.private_mount_ns(), hybrid && handler == "crun");
    rt
}

fn request(b: &Bundle) -> CreateRequest {
    let exits = b.path("exits");
    std::fs::create_dir_all(&exits).expect("exit dir");
    CreateRequest {
        id: b.id.clone(),
        bundle: b.dir.path().to_path_buf(),
        log_path: b.path("container.log"),
        log_max_size: None,
        exit_file: exits.join(&b.id),
        pid_file: b.path("pid"),
        memory_cgroup: Some(b.memory_cgroup()),
    }
}

async fn create(rt: &OciRuntime, b: &Bundle) -> (CreateRequest, Created) {
    let req = request(b);
    let created = rt
        .create(Path::new(MONITOR), &req)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(created.pid > 1 && created.monitor_pid > 1, "{created:?}");
    (req, created)
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

/// Polls with tokio's sleep, so the runtime's background tasks (the monitor's reaper) run.
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

/// `/proc/PID/stat`: (state, ppid).
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// Whether process `pid` has a handler for `signal` (`SigCgt` in /proc/PID/status).
fn catches(pid: i32, signal: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let mask = s
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&mask, 16).ok()
        })
        .is_some_and(|m| m & (1 << (signal - 1)) != 0)
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z')
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Children of this test process that died and were not reaped.
fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|p| stat(*p) == Some(('Z', me)))
        .collect()
}

/// Live processes other than this one whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|p| *p != me && alive(*p))
        .filter_map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle).then_some((p, cmd))
        })
        .collect()
}

fn cgroup_procs(b: &Bundle) -> Vec<i32> {
    std::fs::read_to_string(b.memory_cgroup().join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// What `state` must say: the status, the init's PID and the bundle it was created from.
fn state(status: &str, pid: i32, bundle: &Path) -> Option<State> {
    Some(State {
        status: status.into(),
        pid,
        bundle: bundle.to_owned(),
    })
}

// oci-runtime:runtime.md#lifecycle: create (under the monitor) -> created -> start ->
// running -> kill -> stopped, exit code recorded -> delete -> unknown; delete and kill of an
// unknown container are no-ops (cri:RuntimeService.RemoveContainer#idempotent).
async fn lifecycle(handler: &str) {
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
        0,
    );
    let rt = runtime(&b, handler).await;
    let (req, created) = create(&rt, &b).await;
    assert_eq!(
        rt.state(&b.id).await.expect("state"),
        state("created", created.pid, &req.bundle)
    );
    // crun's monitor (and the create it ran) lives in the private mount namespace without
    // the cgroup2 mount; runc's shares ours.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("ns");
    let monitor = created.monitor_pid.to_string();
    let mountinfo = std::fs::read_to_string(format!("/proc/{monitor}/mountinfo")).expect("mi");
    let sees_unified = mountinfo.contains(" /sys/fs/cgroup/unified ");
    if rt.private_mount_ns() {
        assert_ne!(ns(&monitor), ns("self"));
        assert!(!sees_unified, "{mountinfo}");
    } else {
        assert_eq!(ns(&monitor), ns("self"));
    }
    // A second create of the same ID is refused and leaves the first container alone.
    let err = rt
        .create(Path::new(MONITOR), &req)
        .await
        .expect_err("duplicate create");
    assert!(matches!(err, RuntimeError::Exists { .. }), "{err}");
    // The same --root serves commands run outside crun's private mount namespace.
    assert_eq!(
        rt.clone()
            .with_private_mount_ns(false)
            .state(&b.id)
            .await
            .expect("state"),
        state("created", created.pid, &req.bundle)
    );
    rt.start(&b.id).await.expect("start");
    assert_eq!(
        rt.state(&b.id).await.expect("state"),
        state("running", created.pid, &req.bundle)
    );
    // The shell is PID 1 of its namespace: until its trap is set it ignores SIGTERM, so
    // the signal goes only once the kernel says it is caught (on a loaded host `start`
    // returns well before the shell has run its first command).
    eventually("sh catches SIGTERM", Duration::from_secs(20), || {
        catches(created.pid, libc::SIGTERM)
    })
    .await;
    rt.kill(&b.id, "SIGTERM", false).await.expect("kill");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 7);
    assert_eq!(
        rt.state(&b.id).await.expect("state").map(|s| s.status),
        Some("stopped".into())
    );
    rt.kill(&b.id, "KILL", false)
        .await
        .expect("kill of a stopped container is a no-op");
    rt.delete(&b.id, false).await.expect("delete");
    assert_eq!(rt.state(&b.id).await.expect("state"), None);
    rt.delete(&b.id, false).await.expect("delete again");
    rt.kill(&b.id, "15", false)
        .await
        .expect("kill of an unknown container is a no-op");
    // The monitor ended after writing the exit file, and we reaped it.
    eventually("monitor reaped", Duration::from_secs(10), || {
        stat(created.monitor_pid).is_none()
    })
    .await;
    assert_eq!(zombie_children(), [] as [i32; 0]);
    assert!(!b.memory_cgroup().exists(), "cgroup removed by delete");
}
for_each_handler!(lifecycle);

// A create that fails reports the runtime's message, and leaves nothing: no monitor, no
// runtime process, no container.
async fn create_failure(handler: &str) {
    let b = Bundle::new(&["/bin/does-not-exist"], 0);
    let rt = runtime(&b, handler).await;
    let err = rt
        .create(Path::new(MONITOR), &request(&b))
        .await
        .expect_err("create must fail");
    match &err {
        RuntimeError::Create { id, stderr, .. } => {
            assert_eq!(id, &b.id);
            assert!(stderr.contains("does-not-exist"), "{err}");
        }
        other => panic!("want RuntimeError::Create, got {other:?}"),
    }
    assert_eq!(processes_mentioning(&b.id), []);
    assert_eq!(zombie_children(), [] as [i32; 0]);
    assert_eq!(rt.state(&b.id).await.expect("state"), None);
}
for_each_handler!(create_failure);

// cri:RuntimeService.ExecSync: stdout, stderr and exit code; a timeout kills the process (and
// what it started), reaps it, and leaves the container as it was.
async fn exec(handler: &str) {
    let b = Bundle::new(&["/bin/sleep", "3600"], 0);
    let rt = runtime(&b, handler).await;
    let (req, created) = create(&rt, &b).await;
    rt.start(&b.id).await.expect("start");

    let out = rt
        .exec(
            &b.id,
            &process(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            Some(Duration::from_secs(20)),
        )
        .await
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!((out.exit_code, out.timed_out), (3, false));

    let started = Instant::now();
    let out = rt
        .exec(
            &b.id,
            &process(&["/bin/sh", "-c", "sleep 60 & sleep 61"]),
            Some(Duration::from_secs(1)),
        )
        .await
        .expect("exec with timeout");
    let took = started.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Only the container's init is left in its cgroup: both sleeps are gone.
    eventually("exec'd processes gone", Duration::from_secs(5), || {
        cgroup_procs(&b) == [created.pid]
    })
    .await;
    assert!(cmdline(created.pid).starts_with("/bin/sleep 3600"));
    assert_eq!(zombie_children(), [] as [i32; 0]);
    assert_eq!(
        rt.state(&b.id).await.expect("state"),
        state("running", created.pid, &req.bundle)
    );

    // An exec whose caller gives up (the future is dropped) leaves nothing either.
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        rt.exec(&b.id, &process(&["/bin/sleep", "60"]), None),
    )
    .await;
    assert!(dropped.is_err(), "the exec must still be running");
    eventually(
        "cancelled exec's process gone",
        Duration::from_secs(5),
        || cgroup_procs(&b) == [created.pid],
    )
    .await;

    // A process left behind holding stdout does not hold up the exec, nor lose its output.
    let started = Instant::now();
    let out = rt
        .exec(
            &b.id,
            &process(&["/bin/sh", "-c", "sleep 30 & echo hi"]),
            Some(Duration::from_secs(20)),
        )
        .await
        .expect("exec leaving a process behind");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!((out.exit_code, out.timed_out), (0, false));
    assert!(started.elapsed() < Duration::from_secs(5));

    // An exec into an unknown container is an error, not an exit code.
    let err = rt
        .exec("crid-no-such-container", &process(&["/bin/true"]), None)
        .await
        .expect_err("unknown container");
    assert!(matches!(err, RuntimeError::Command { .. }), "{err}");
}
for_each_handler!(exec);

// cri:RuntimeService.UpdateContainerResources: the runtime puts the container in the v1
// memory cgroup with the bundle's limit, and `update` changes it. Then `delete --force`
// on the running container kills it.
async fn update(handler: &str) {
    const MIB: i64 = 1 << 20;
    let b = Bundle::new(&["/bin/sleep", "3600"], 64 * MIB);
    let rt = runtime(&b, handler).await;
    let (req, created) = create(&rt, &b).await;
    rt.start(&b.id).await.expect("start");
    let cg = b.memory_cgroup();
    let limit = || {
        std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
            .expect("memory.limit_in_bytes")
            .trim()
            .parse::<i64>()
            .expect("number")
    };
    if Path::new("/sys/fs/cgroup/memory").exists() {
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", created.pid)).expect("cg");
        assert!(
            own.lines()
                .any(|l| l.ends_with(&format!(":memory:/{}", b.id))),
            "{own}"
        );
        assert_eq!(cgroup_procs(&b), [created.pid]);
        assert_eq!(limit(), 64 * MIB);
    }
    rt.update(
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
    if Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(limit(), 128 * MIB);
    }

    rt.delete(&b.id, true).await.expect("delete --force");
    assert_eq!(rt.state(&b.id).await.expect("state"), None);
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 137);
    eventually("init killed", Duration::from_secs(10), || {
        !alive(created.pid)
    })
    .await;
}
for_each_handler!(update);

// The daemon learns of an exit from inotify on the exit directory, without polling.
async fn watch(handler: &str) {
    let b = Bundle::new(&["/bin/sh", "-c", "sleep 0.3; exit 5"], 0);
    let rt = runtime(&b, handler).await;
    let req = request(&b);
    let dir = req.exit_file.parent().map(PathBuf::from).expect("exit dir");
    let mut exits = watch_exits(&dir).expect("watch");
    let created = rt
        .create(Path::new(MONITOR), &req)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    rt.start(&b.id).await.expect("start");
    let id = tokio::time::timeout(Duration::from_secs(20), exits.recv())
        .await
        .expect("an exit within 20s");
    assert_eq!(id.as_deref(), Some(b.id.as_str()));
    let record = exit::read(&req.exit_file).expect("read").expect("record");
    assert_eq!(record.exit_code, 5);
    eventually("monitor reaped", Duration::from_secs(10), || {
        stat(created.monitor_pid).is_none()
    })
    .await;
}
for_each_handler!(watch);

// A container in the host PID namespace: killing its init leaves its other processes
// running; `kill --all` reaches them through the cgroup.
async fn kill_all_host_pid(handler: &str) {
    let b = Bundle::with_pid_namespace(
        &["/bin/sh", "-c", "sleep 3600 & wait"],
        0,
        PidNamespace::Host,
    );
    let rt = runtime(&b, handler).await;
    let (req, created) = create(&rt, &b).await;
    rt.start(&b.id).await.expect("start");
    eventually("the child sleep started", Duration::from_secs(10), || {
        cgroup_procs(&b).len() == 2
    })
    .await;
    let child = cgroup_procs(&b)
        .into_iter()
        .find(|p| *p != created.pid)
        .expect("child");
    rt.kill(&b.id, "KILL", false).await.expect("kill");
    assert_eq!(wait_exit(&req.exit_file).await.exit_code, 137);
    assert!(alive(child), "without --all the child survives its init");
    rt.kill(&b.id, "KILL", true).await.expect("kill --all");
    eventually(
        "child killed by kill --all",
        Duration::from_secs(10),
        || !alive(child),
    )
    .await;
    rt.delete(&b.id, false).await.expect("delete");
}
for_each_handler!(kill_all_host_pid);

/// A runc wrapper that hangs (recording its PID and its child's) when asked to `command`, and
/// otherwise runs runc.
fn hanging_runc(b: &Bundle, command: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = b.path("hanging-runc");
    let script = format!(
        "#!/bin/sh\n\
         for a in \"$@\"; do\n\
           if [ \"$a\" = {command} ]; then\n\
             echo $$ > {dir}/wrapper.pid\n\
             sleep 100 &\n\
             echo $! > {dir}/sleep.pid\n\
             wait\n\
             exit 1\n\
           fi\n\
         done\n\
         exec runc \"$@\"\n",
        dir = b.dir.path().display()
    );
    std::fs::write(&wrapper, script).expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    wrapper
}

async fn hanging_runtime(b: &Bundle, wrapper: &Path) -> OciRuntime {
    let h = RuntimeHandler {
        path: wrapper.to_path_buf(),
        root: Some(b.runc_root()),
        kind: RuntimeKind::Oci,
        args: Vec::new(),
        always_infra: false,
        timeout_secs: None,
        exit_via_wait: None,
    };
    OciRuntime::new("hanging-runc", &h, b.dir.path(), CgroupDriver::Cgroupfs)
        .await
        .expect("runtime")
        .with_timeout(Duration::from_secs(1))
}

/// A PID the wrapper recorded.
fn recorded_pid(b: &Bundle, file: &str) -> i32 {
    std::fs::read_to_string(b.path(file))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

// A runtime command that hangs is killed at the timeout, with everything it started.
#[tokio::test]
async fn start_timeout_kills_the_runtime_needs_root() {
    let b = Bundle::new(&["/bin/sleep", "3600"], 0);
    let wrapper = hanging_runc(&b, "start");
    let rt = hanging_runtime(&b, &wrapper).await;
    let _ = create(&rt, &b).await;
    let started = Instant::now();
    let err = rt.start(&b.id).await.expect_err("start must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        RuntimeError::Timeout {
            command,
            id,
            binary,
            ..
        } => {
            assert_eq!(command, "start");
            assert_eq!(id.as_deref(), Some(b.id.as_str()));
            assert_eq!(binary, &wrapper);
        }
        other => panic!("want RuntimeError::Timeout, got {other:?}"),
    }
    // The wrapper was our child: killed and reaped, so gone entirely.
    assert_eq!(stat(recorded_pid(&b, "wrapper.pid")), None);
    // Its sleep was killed with its process group (init reaps it).
    let sleep = recorded_pid(&b, "sleep.pid");
    eventually("the wrapper's sleep killed", Duration::from_secs(5), || {
        !alive(sleep)
    })
    .await;
    assert_eq!(zombie_children(), [] as [i32; 0]);
    // The container itself is untouched: still created, cleaned up by the bundle's Drop.
    assert_eq!(
        rt.state(&b.id).await.expect("state").map(|s| s.status),
        Some("created".into())
    );
}

// A `create` that hangs: the monitor and the runtime under it are killed, and nothing of the
// container is left.
#[tokio::test]
async fn create_timeout_leaves_nothing_needs_root() {
    let b = Bundle::new(&["/bin/sleep", "3600"], 0);
    let wrapper = hanging_runc(&b, "create");
    let rt = hanging_runtime(&b, &wrapper).await;
    let started = Instant::now();
    let err = rt
        .create(Path::new(MONITOR), &request(&b))
        .await
        .expect_err("create must time out");
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        RuntimeError::Timeout {
            command, binary, ..
        } => {
            assert_eq!(command, "create");
            assert_eq!(binary, Path::new(MONITOR));
        }
        other => panic!("want RuntimeError::Timeout, got {other:?}"),
    }
    let sleep = recorded_pid(&b, "sleep.pid");
    eventually("the wrapper's sleep killed", Duration::from_secs(5), || {
        !alive(sleep)
    })
    .await;
    eventually(
        "no process of the container",
        Duration::from_secs(5),
        || processes_mentioning(&b.id).is_empty(),
    )
    .await;
    assert_eq!(zombie_children(), [] as [i32; 0]);
    assert_eq!(rt.state(&b.id).await.expect("state"), None);
}

// What the runtime prints during `create` (runc's warnings with the systemd driver:
// "skipping device ... for systemd") is not the container's output: the CRI log holds only
// what the container's process wrote, and the warning lands in the monitor's own log. Found
// by the cgroup v2 guest, where it broke `container/command-args-workdir`.
#[tokio::test]
async fn what_the_runtime_prints_during_create_is_not_container_output_needs_root() {
    use std::os::unix::fs::PermissionsExt;
    let b = Bundle::new(&["/bin/echo", "hello from the container"], 0);
    let wrapper = b.path("noisy-runc");
    let script = "#!/bin/sh\n\
                  for a in \"$@\"; do\n\
                    if [ \"$a\" = create ]; then\n\
                      echo 'level=warning msg=\"skipping device /dev/char/10:200 for systemd\"' >&2\n\
                    fi\n\
                  done\n\
                  exec runc \"$@\"\n";
    std::fs::write(&wrapper, script).expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let h = RuntimeHandler {
        path: wrapper.clone(),
        root: Some(b.runc_root()),
        kind: RuntimeKind::Oci,
        args: Vec::new(),
        always_infra: false,
        timeout_secs: None,
        exit_via_wait: None,
    };
    let rt = OciRuntime::new("noisy-runc", &h, b.dir.path(), CgroupDriver::Cgroupfs)
        .await
        .expect("runtime");
    let (req, _) = create(&rt, &b).await;
    rt.start(&b.id).await.expect("start");
    let exit = wait_exit(&req.exit_file).await;
    assert_eq!(exit.exit_code, 0);
    let log = std::fs::read_to_string(&req.log_path).expect("log");
    assert!(log.contains("hello from the container"), "{log}");
    assert!(
        !log.contains("skipping device"),
        "runtime output in the CRI log: {log}"
    );
    let monitor = std::fs::read_to_string(req.monitor_log()).unwrap_or_default();
    assert!(
        monitor.contains("skipping device"),
        "monitor log: {monitor}"
    );
    rt.delete(&b.id, true).await.expect("delete");
}

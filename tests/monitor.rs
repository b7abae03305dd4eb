//! crid-monitor against real runc: CRI log format, exit codes, OOM, log reopen, and life
//! without its parent. Needs root, runc and busybox-static (CI has them).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crid::monitor::exit::{self, ExitRecord};
use support::bundle::Bundle;

const MONITOR: &str = env!("CARGO_BIN_EXE_crid-monitor");

fn monitor_command(b: &Bundle) -> Command {
    let mut cmd = Command::new(MONITOR);
    cmd.arg("--runtime")
        .arg("runc")
        .arg("--runtime-root")
        .arg(b.runc_root())
        .arg("--bundle")
        .arg(b.dir.path())
        .arg("--id")
        .arg(&b.id)
        .arg("--log-path")
        .arg(b.path("container.log"))
        .arg("--exit-file")
        .arg(b.path("exit"))
        .arg("--pid-file")
        .arg(b.path("pid"))
        .arg("--memory-cgroup")
        .arg(b.memory_cgroup());
    cmd
}

/// Starts the monitor and reads its status line (after the runtime's create).
fn start_monitor(b: &Bundle) -> (Child, serde_json::Value) {
    let mut child = monitor_command(b)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(b.path("monitor.err")).expect("stderr file"))
        .spawn()
        .expect("spawn crid-monitor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("status line");
    let status =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("status line {line:?}: {e}"));
    (child, status)
}

fn wait_exit(b: &Bundle, limit: Duration) -> ExitRecord {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(r) = exit::read(&b.path("exit")).expect("read exit file") {
            return r;
        }
        assert!(Instant::now() < deadline, "no exit file within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_lines(b: &Bundle, file: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(b.path(file))
        .expect("read log")
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let ts = parts.next().expect("timestamp");
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "timestamp {ts}"
            );
            let stream = parts.next().expect("stream").to_owned();
            let tag = parts.next().expect("tag").to_owned();
            (stream, tag, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

// cri:ContainerConfig#log_path: CRI log format, stream and P/F tags; cri:ContainerStatus#exit_code.
#[test]
fn output_goes_to_the_cri_log_and_exit_code_is_recorded_needs_root() {
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "echo out; echo err >&2; printf partial; exit 3",
        ],
        0,
    );
    let (mut monitor, status) = start_monitor(&b);
    assert!(status["pid"].as_i64().is_some_and(|p| p > 1), "{status}");
    let (started, err) = b.runc(&["start", &b.id]);
    assert!(started, "runc start: {err}");
    let record = wait_exit(&b, Duration::from_secs(20));
    assert_eq!(record.exit_code, 3);
    assert!(!record.oom_killed);
    assert!(monitor.wait().expect("monitor exit").success());
    let mut lines = log_lines(&b, "container.log");
    lines.sort();
    assert_eq!(
        lines,
        [
            ("stderr".into(), "F".into(), "err".into()),
            ("stdout".into(), "F".into(), "out".into()),
            ("stdout".into(), "P".into(), "partial".into()),
        ]
    );
}

// A container killed by a signal exits with 128 + the signal (cri:ContainerStatus#exit_code).
// The kill comes from outside, as StopContainer's does: init ignores SIGKILL from inside.
#[test]
fn killed_container_exits_128_plus_signal_needs_root() {
    let b = Bundle::new(&["/bin/sh", "-c", "sleep 30"], 0);
    let (mut monitor, _) = start_monitor(&b);
    assert!(b.runc(&["start", &b.id]).0);
    let (killed, err) = b.runc(&["kill", &b.id, "KILL"]);
    assert!(killed, "runc kill: {err}");
    let record = wait_exit(&b, Duration::from_secs(20));
    assert!(monitor.wait().expect("monitor exit").success());
    assert_eq!(record.exit_code, 137);
    assert!(!record.oom_killed, "SIGKILL without OOM is not an OOM kill");
}

// cri:ContainerStatus#reason OOMKilled: the memory cgroup's oom_kill counter.
#[test]
fn oom_kill_is_detected_needs_root() {
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
        16 << 20,
    );
    let (mut monitor, _) = start_monitor(&b);
    assert!(b.runc(&["start", &b.id]).0);
    let record = wait_exit(&b, Duration::from_secs(60));
    assert!(monitor.wait().expect("monitor exit").success());
    assert!(record.oom_killed, "{record:?}");
    assert!(
        !std::fs::read_to_string(b.path("container.log"))
            .unwrap_or_default()
            .contains("survived")
    );
}

// A create that fails is reported on the status pipe, and no exit file appears.
#[test]
fn create_failure_is_reported_needs_root() {
    let b = Bundle::new(&["/bin/does-not-exist"], 0);
    let (mut monitor, status) = start_monitor(&b);
    let err = status["error"].as_str().unwrap_or_default();
    assert!(err.contains("create failed"), "{status}");
    assert!(!monitor.wait().expect("monitor exit").success());
    assert_eq!(exit::read(&b.path("exit")).expect("read"), None);
}

// cri:RuntimeService.ReopenContainerLog: after rotation, SIGUSR1 makes the monitor reopen.
#[test]
fn log_is_reopened_after_rotation_needs_root() {
    let b = Bundle::new(
        &[
            "/bin/sh",
            "-c",
            "echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo two",
        ],
        0,
    );
    let (mut monitor, _) = start_monitor(&b);
    assert!(b.runc(&["start", &b.id]).0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(b.path("container.log"))
        .unwrap_or_default()
        .contains("one")
    {
        assert!(Instant::now() < deadline, "first line never logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(b.path("container.log"), b.path("container.log.1")).expect("rotate");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("signal monitor");
    // Let the monitor reopen before the container writes again.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(b.path("rootfs/tmp/go"), "").expect("release the container");
    wait_exit(&b, Duration::from_secs(20));
    assert!(monitor.wait().expect("monitor exit").success());
    assert_eq!(
        log_lines(&b, "container.log.1"),
        [("stdout".into(), "F".into(), "one".into())]
    );
    assert_eq!(
        log_lines(&b, "container.log"),
        [("stdout".into(), "F".into(), "two".into())]
    );
}

// The monitor outlives its parent (the daemon): it runs in its own session and still
// records the exit when nobody waits for it.
#[test]
fn monitor_outlives_its_parent_needs_root() {
    let b = Bundle::new(&["/bin/sh", "-c", "sleep 0.5; exit 7"], 0);
    let status_file = b.path("status");
    let mut cmd = monitor_command(&b);
    let monitor_line = format!(
        "{} {} > {} 2>/dev/null &",
        shell_quote(MONITOR),
        cmd.get_args()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
        shell_quote(&status_file.to_string_lossy())
    );
    // The parent shell exits at once, like a daemon killed with -9.
    let parent = Command::new("/bin/sh")
        .arg("-c")
        .arg(&monitor_line)
        .status()
        .expect("sh");
    assert!(parent.success());
    cmd.stdin(Stdio::null());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&status_file)
        .unwrap_or_default()
        .contains("pid")
    {
        assert!(
            Instant::now() < deadline,
            "no status from the orphaned monitor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(b.runc(&["start", &b.id]).0);
    assert_eq!(wait_exit(&b, Duration::from_secs(20)).exit_code, 7);
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

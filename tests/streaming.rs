//! Exec and PortForward through crid's streaming server, on real runtimes (root): crid's
//! own harness client on both protocols, and two independent clients: the Kubernetes
//! Python client (WebSocket) and a Go program on spdystream (SPDY, tests/spdy-client).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crid_api::runtime::v1 as cri;
use crid_conformance::fixtures::image::rootfs::INDEX_HTML;
use crid_conformance::stream::{self, ExecOptions};
use support::cri::{
    Cluster, container_config, pod_config, remove_all, run_container, run_pod, wait_state,
};
use tonic::Code;

const GET: &[u8] = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";

async fn exec_url(
    rs: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    cmd: &[&str],
    tty: bool,
    stdin: bool,
    stderr: bool,
) -> String {
    rs.exec(cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr,
        ..Default::default()
    })
    .await
    .expect("Exec")
    .into_inner()
    .url
}

async fn pf_url(
    rs: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    pod: &str,
) -> String {
    rs.port_forward(cri::PortForwardRequest {
        pod_sandbox_id: pod.into(),
        port: vec![80],
    })
    .await
    .expect("PortForward")
    .into_inner()
    .url
}

/// Builds tests/spdy-client with Debian's Go and spdystream (GOPATH mode, no network).
fn spdy_client(dir: &Path) -> PathBuf {
    let out = dir.join("crid-spdy-client");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spdy-client");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", dir.join("gocache"))
        .status()
        .expect("go (run scripts/setup.sh: golang-go, golang-github-docker-spdystream-dev)");
    assert!(status.success(), "building the SPDY client failed");
    out
}

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

fn py_client(args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream/stream_client.py");
    let text = run_tool(Command::new(python()).arg(script).args(args));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            cmdline
                .contains(marker)
                .then(|| format!("{} {cmdline} [{stat:.60}]", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_port_forward_over_spdy_and_websocket_needs_root() {
    let c = Cluster::start("").await;
    let image = c.pull("httpd").await;
    let mut rs = c.rs().await;
    let pc = pod_config("stream", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let ctr = run_container(&mut rs, &pod, &pc, container_config("web", &image, &[])).await;
    wait_state(
        &mut rs,
        &ctr,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await;

    // Bad requests are refused before any URL exists.
    let bad = |r: cri::ExecRequest| {
        let mut rs = rs.clone();
        async move { rs.exec(r).await.expect_err("refused").code() }
    };
    let base = cri::ExecRequest {
        container_id: ctr.clone(),
        cmd: vec!["true".into()],
        ..Default::default()
    };
    assert_eq!(bad(base.clone()).await, Code::InvalidArgument);
    let tty_stderr = cri::ExecRequest {
        tty: true,
        stdout: true,
        stderr: true,
        ..base.clone()
    };
    assert_eq!(bad(tty_stderr).await, Code::InvalidArgument);
    let unknown = cri::ExecRequest {
        container_id: "nope".into(),
        stdout: true,
        ..base.clone()
    };
    assert_eq!(bad(unknown).await, Code::NotFound);

    // crid's harness client, WebSocket v4 and v5.
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        false,
        true,
    )
    .await;
    let out = stream::websocket::exec(
        &url,
        "v4.channel.k8s.io",
        &ExecOptions {
            stderr: true,
            ..Default::default()
        },
    )
    .await
    .expect("ws v4 exec");
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..]),
        "{out:?}"
    );
    assert_eq!(out.exit_code(), Some(3), "{out:?}");
    // The token was spent.
    assert_eq!(
        stream::websocket::upgrade_status(&url, "v4.channel.k8s.io").await,
        Ok(404)
    );

    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "cat; echo done"],
        false,
        true,
        false,
    )
    .await;
    let opts = ExecOptions {
        stdin: Some(b"hello\n".to_vec()),
        close_stdin: true,
        ..Default::default()
    };
    let out = stream::websocket::exec(&url, "v5.channel.k8s.io", &opts)
        .await
        .expect("ws v5 exec");
    assert_eq!(out.stdout, b"hello\ndone\n", "{out:?}");
    assert_eq!(out.exit_code(), Some(0), "{out:?}");

    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "test -t 0 && echo a-tty"],
        true,
        true,
        false,
    )
    .await;
    let opts = ExecOptions {
        stdin: Some(Vec::new()),
        tty: Some((100, 30)),
        ..Default::default()
    };
    let out = stream::websocket::exec(&url, "v5.channel.k8s.io", &opts)
        .await
        .expect("ws tty exec");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a-tty"),
        "{out:?}"
    );

    // An unknown protocol is refused with ours listed.
    let url = exec_url(&mut rs, &ctr, &["true"], false, false, false).await;
    assert_eq!(
        stream::websocket::upgrade_status(&url, "v1.bogus").await,
        Ok(403)
    );

    // crid's harness client, SPDY.
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "cat; echo err >&2; exit 5"],
        false,
        true,
        true,
    )
    .await;
    let opts = ExecOptions {
        stdin: Some(b"spdy in\n".to_vec()),
        close_stdin: true,
        stderr: true,
        ..Default::default()
    };
    let out = stream::spdy::exec(&url, "v4.channel.k8s.io", &opts)
        .await
        .expect("spdy exec");
    assert_eq!(out.stdout, b"spdy in\n", "{out:?}");
    assert_eq!(out.stderr, b"err\n", "{out:?}");
    assert_eq!(out.exit_code(), Some(5), "{out:?}");

    // Port forwarding to the pod's httpd, both protocols.
    let url = pf_url(&mut rs, &pod).await;
    let body = stream::websocket::port_forward(&url, 80, GET)
        .await
        .expect("ws port forward");
    assert!(
        String::from_utf8_lossy(&body).contains(INDEX_HTML.trim()),
        "{body:?}"
    );
    let url = pf_url(&mut rs, &pod).await;
    let body = stream::spdy::port_forward(&url, 80, GET)
        .await
        .expect("spdy port forward");
    assert!(
        String::from_utf8_lossy(&body).contains(INDEX_HTML.trim()),
        "{body:?}"
    );
    // A closed port: the error stream says so.
    let url = pf_url(&mut rs, &pod).await;
    let err = stream::spdy::port_forward(&url, 81, GET)
        .await
        .expect_err("port 81 is closed");
    assert!(err.contains("81"), "{err}");

    // The client leaving mid-stream takes the process with it.
    let marker = "sleep 4321";
    let url = exec_url(&mut rs, &ctr, &["sh", "-c", marker], false, false, false).await;
    let session = tokio::spawn(async move {
        stream::websocket::exec(&url, "v4.channel.k8s.io", &ExecOptions::default()).await
    });
    let mut seen = false;
    for _ in 0..50 {
        if !processes_with(marker).is_empty() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the exec'd process never started");
    session.abort();
    let mut left = processes_with(marker);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = processes_with(marker);
    }
    assert!(left.is_empty(), "left behind: {left:?}");

    // Independent SPDY client: spdystream, as kubectl uses it.
    let tools = tempfile::tempdir().expect("tempdir");
    let go = spdy_client(tools.path());
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "cat; exit 4"],
        false,
        true,
        false,
    )
    .await;
    let text =
        run_tool(Command::new(&go).args(["exec", &url, "-use-stdin", "-stdin", "from go\n"]));
    assert!(text.contains(r#"STDOUT "from go\n""#), "{text}");
    assert!(
        text.contains("NonZeroExitCode") && text.contains(r#""message":"4""#),
        "{text}"
    );
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "test -t 0 && echo go-tty"],
        true,
        true,
        false,
    )
    .await;
    let text = run_tool(Command::new(&go).args([
        "exec",
        &url,
        "-tty",
        "-use-stdin",
        "-cols",
        "90",
        "-rows",
        "20",
    ]));
    assert!(
        text.contains("go-tty") && text.contains(r#""status":"Success""#),
        "{text}"
    );
    let url = pf_url(&mut rs, &pod).await;
    let text = run_tool(Command::new(&go).args([
        "portforward",
        &url,
        "80",
        std::str::from_utf8(GET).expect("utf8"),
    ]));
    // The Go client prints quoted data: look for a line of the page.
    assert!(text.contains("crid-conformance httpd fixture"), "{text}");

    // Independent WebSocket client: the Kubernetes Python client.
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "echo py; exit 2"],
        false,
        false,
        true,
    )
    .await;
    let v = py_client(&["exec", &url]);
    assert_eq!(
        (v["stdout"].as_str(), v["returncode"].as_i64()),
        (Some("py\n"), Some(2)),
        "{v}"
    );
    let url = exec_url(
        &mut rs,
        &ctr,
        &["sh", "-c", "test -t 0 && cat"],
        true,
        true,
        false,
    )
    .await;
    let v = py_client(&["exec", &url, "--tty", "--stdin", "typed\u{4}"]);
    assert!(v["stdout"].as_str().unwrap_or("").contains("typed"), "{v}");
    let url = pf_url(&mut rs, &pod).await;
    let v = py_client(&[
        "portforward",
        &url,
        "80",
        std::str::from_utf8(GET).expect("utf8"),
    ]);
    assert!(
        v["data"].as_str().unwrap_or("").contains(INDEX_HTML.trim()),
        "{v}"
    );

    remove_all(&mut rs).await;
}

async fn attach_url(
    rs: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    tty: bool,
    stdin: bool,
) -> String {
    rs.attach(cri::AttachRequest {
        container_id: id.into(),
        stdin,
        tty,
        stdout: true,
        ..Default::default()
    })
    .await
    .expect("Attach")
    .into_inner()
    .url
}

/// A container that echoes the lines it reads and exits on `bye`.
fn echoer(name: &str, image: &str, tty: bool, stdin_once: bool) -> cri::ContainerConfig {
    cri::ContainerConfig {
        stdin: true,
        stdin_once,
        tty,
        ..container_config(
            name,
            image,
            &[
                "sh",
                "-c",
                "echo ready; while read l; do echo \"got $l\"; [ \"$l\" = bye ] && exit 0; done",
            ],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_through_the_monitor_across_a_restart_and_for_several_clients_needs_root() {
    use nix::sys::signal::Signal;
    let mut c = Cluster::start("").await;
    let image = c.pull("busybox").await;
    let mut rs = c.rs().await;
    let pc = pod_config("attach", &c.log_dir());
    let pod = run_pod(&mut rs, &pc, "").await;
    let mut ids = Vec::new();
    // b is stdin_once: only then does its client's end of input end the container's.
    for (name, tty, once) in [
        ("a", false, false),
        ("b", false, true),
        ("c", true, false),
        ("d", false, false),
    ] {
        let id = run_container(&mut rs, &pod, &pc, echoer(name, &image, tty, once)).await;
        wait_state(
            &mut rs,
            &id,
            cri::ContainerState::ContainerRunning,
            Duration::from_secs(5),
        )
        .await;
        ids.push(id);
    }
    // The monitors hold the attach sockets: a daemon restart changes nothing for them.
    drop(rs);
    c.daemon
        .signal_and_wait(Signal::SIGKILL, Duration::from_secs(5));
    c.daemon.spawn();
    c.daemon.wait_ready();
    let mut rs = c.rs().await;

    // Two clients at once: a watcher, and a writer whose input ends the container.
    let watcher_url = attach_url(&mut rs, &ids[0], false, false).await;
    let watcher = tokio::spawn(async move {
        stream::websocket::exec(&watcher_url, "v4.channel.k8s.io", &ExecOptions::default()).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = attach_url(&mut rs, &ids[0], false, true).await;
    let opts = ExecOptions {
        stdin: Some(b"hello\nbye\n".to_vec()),
        ..Default::default()
    };
    let out = stream::websocket::exec(&url, "v4.channel.k8s.io", &opts)
        .await
        .expect("attach");
    assert_eq!(out.stdout, b"got hello\ngot bye\n", "{out:?}");
    assert_eq!(out.exit_code(), Some(0), "{out:?}");
    let seen = watcher.await.expect("join").expect("watcher");
    assert_eq!(seen.stdout, b"got hello\ngot bye\n", "{seen:?}");

    // SPDY (the harness's client), stdin closed after the input: the container (stdin_once)
    // reads EOF.
    let url = attach_url(&mut rs, &ids[1], false, true).await;
    let opts = ExecOptions {
        stdin: Some(b"one\n".to_vec()),
        close_stdin: true,
        ..Default::default()
    };
    let out = stream::spdy::exec(&url, "v4.channel.k8s.io", &opts)
        .await
        .expect("spdy attach");
    assert_eq!(out.stdout, b"got one\n", "{out:?}");

    // A terminal, with the Kubernetes Python client.
    let url = attach_url(&mut rs, &ids[2], true, true).await;
    let v = py_client(&["exec", &url, "--tty", "--stdin", "typed\nbye\n"]);
    let text = v["stdout"].as_str().unwrap_or("");
    assert!(
        text.contains("got typed") && text.contains("got bye"),
        "{v}"
    );

    // spdystream (Go).
    let tools = tempfile::tempdir().expect("tempdir");
    let go = spdy_client(tools.path());
    let url = attach_url(&mut rs, &ids[3], false, true).await;
    let text =
        run_tool(Command::new(&go).args(["exec", &url, "-use-stdin", "-stdin", "go\nbye\n"]));
    assert!(text.contains(r#"STDOUT "got go\ngot bye\n""#), "{text}");

    // Attach to a container that is not running.
    let err = rs
        .attach(cri::AttachRequest {
            container_id: ids[0].clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("exited");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    remove_all(&mut rs).await;
}

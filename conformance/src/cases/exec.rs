//! ExecSync (output, exit codes, time limit) and the streaming RPCs' URLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crid_api::cri;
use tonic::Code;

use super::container::CONTAINER_NEEDS;
use super::support::{Scope, scoped};
use super::{Area, Case, CaseResult, ensure, status_text};
use crate::fixtures::image::HTTPD_PORT;
use crate::fixtures::image::rootfs::INDEX_HTML;
use crate::stream::{self, ExecOptions};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Exec
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "exec/sync-stdout",
            "cri:RuntimeService.ExecSync#stdout",
            "ExecSync returns the command's stdout and exit code 0 (exec probes rely on it)",
            |ctx| Box::pin(scoped(ctx, "es", sync_stdout)),
        ),
        cases.required(
            "exec/sync-stderr-exit-code",
            "cri:RuntimeService.ExecSync#exit_code",
            "ExecSync keeps stderr apart from stdout and returns a non-zero exit code as a result, not an error",
            |ctx| Box::pin(scoped(ctx, "ee", sync_stderr)),
        ),
        cases.required(
            "exec/sync-timeout",
            "cri:RuntimeService.ExecSync#timeout",
            "ExecSync of a command outliving its timeout returns (an error or a non-zero exit) soon after the timeout",
            |ctx| Box::pin(scoped(ctx, "et", sync_timeout)),
        ),
        cases.optional(
            "exec/sync-unknown-container",
            "cri:RuntimeService.ExecSync#container_id",
            "ExecSync in an unknown container is NotFound",
            |ctx| Box::pin(scoped(ctx, "eu", sync_unknown)),
        ),
        cases.optional(
            "exec/sync-exited-container-refused",
            "cri:RuntimeService.ExecSync#container_id",
            "ExecSync in an exited container is refused rather than run",
            |ctx| Box::pin(scoped(ctx, "ez", sync_exited)),
        ),
        cases.required(
            "exec/exec-url",
            "cri:RuntimeService.Exec#url",
            "Exec returns a streaming URL where a WebSocket (v4.channel.k8s.io) and a SPDY/3.1 client each run a command and get its output and exit code",
            |ctx| Box::pin(scoped(ctx, "ex", exec_url)),
        ),
        cases.required(
            "exec/attach-url",
            "cri:RuntimeService.Attach#url",
            "Attach returns a streaming URL where WebSocket and SPDY/3.1 clients write to the container's stdin (stdin: true) and read its output",
            |ctx| Box::pin(scoped(ctx, "ea", attach_url)),
        ),
        cases.required(
            "exec/exec-stdin-stderr",
            "cri:RuntimeService.Exec#stdin",
            "Exec with stdin and stderr true: the command reads what the client sends and its stderr arrives apart from stdout",
            |ctx| Box::pin(scoped(ctx, "xs", exec_stdin_stderr)),
        ),
        cases.required(
            "exec/exec-tty",
            "cri:RuntimeService.Exec#tty",
            "Exec with tty true runs the command on a terminal (its stdout is a tty); without, it is not",
            |ctx| Box::pin(scoped(ctx, "xt", exec_tty)),
        ),
        cases.required(
            "exec/attach-stderr",
            "cri:RuntimeService.Attach#stderr",
            "Attach with stderr true delivers the container's stderr apart from its stdout",
            |ctx| Box::pin(scoped(ctx, "as", attach_stderr)),
        ),
        cases.required(
            "exec/attach-tty",
            "cri:RuntimeService.Attach#tty",
            "Attach with tty true to a terminal container carries the client's terminal size: the container's terminal takes it",
            |ctx| Box::pin(scoped(ctx, "at", attach_tty)),
        ),
        cases.required(
            "exec/attach-stdin-once",
            "cri:RuntimeService.CreateContainer#config.stdin_once",
            "with stdin_once, the container's stdin closes when the first attach session closes its stdin (a `cat` in it sees end of file and the container exits); without, it stays open and the container runs on",
            |ctx| Box::pin(scoped(ctx, "ao", attach_stdin_once)),
        ),
        cases.required(
            "exec/port-forward-url",
            "cri:RuntimeService.PortForward#url",
            "PortForward returns a streaming URL through which WebSocket and SPDY/3.1 clients each reach the pod's httpd on its loopback",
            |ctx| Box::pin(scoped(ctx, "ep", port_forward_url)),
        ),
    ]
}

async fn sync_stdout(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let (out, err, code) = s.exec(&id, &["echo", "hello", "conformance"], 10).await?;
    ensure(
        out == "hello conformance\n" && err.is_empty() && code == 0,
        || format!("stdout {out:?} stderr {err:?} exit {code}"),
    )?;
    Ok(String::new())
}

async fn sync_stderr(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let (out, err, code) = s
        .exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .await?;
    ensure(out == "out\n" && err == "err\n" && code == 7, || {
        format!("stdout {out:?} stderr {err:?} exit {code}, expected \"out\\n\" \"err\\n\" 7")
    })?;
    Ok(String::new())
}

async fn sync_timeout(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let started = Instant::now();
    let r = s
        .rs()
        .exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: vec!["sleep".into(), "60".into()],
            timeout: 2,
        })
        .await;
    let took = started.elapsed();
    ensure(took < Duration::from_secs(15), || {
        format!("ExecSync with timeout 2s returned after {took:?}")
    })?;
    match r {
        Err(e) => Ok(format!("{:?} after {took:?}", e.code())),
        Ok(r) if r.get_ref().exit_code != 0 => {
            Ok(format!("exit {} after {took:?}", r.get_ref().exit_code))
        }
        Ok(_) => Err("a timed-out command reported success".into()),
    }
}

async fn sync_unknown(s: Arc<Scope>) -> CaseResult {
    let r = s
        .rs()
        .exec_sync(cri::ExecSyncRequest {
            container_id: s.name("never-created"),
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await;
    match r {
        Err(e) if e.code() == Code::NotFound => Ok(String::new()),
        Err(e) => Err(format!("expected NotFound, got {}", status_text(&e))),
        Ok(_) => Err("ExecSync in an unknown container succeeded".into()),
    }
}

async fn sync_exited(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s
        .busybox_exited("exit 0", |_| {}, Duration::from_secs(20))
        .await?;
    let r = s
        .rs()
        .exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await;
    match r {
        Err(e) if e.code() == Code::Unimplemented => {
            Err(format!("ExecSync is not served: {}", status_text(&e)))
        }
        Err(e) => Ok(format!("{:?}", e.code())),
        Ok(r) => Err(format!(
            "ExecSync in an exited container ran (exit {})",
            r.get_ref().exit_code
        )),
    }
}

fn check_url(rpc: &str, url: &str) -> CaseResult {
    ensure(
        url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'),
        || format!("{rpc} url {url:?} is not an http(s) URL or path"),
    )?;
    Ok(url.to_owned())
}

async fn exec_url(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let mut done = Vec::new();
    for protocol in ["websocket", "spdy"] {
        let req = cri::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo out; exit 3".into()],
            stdout: true,
            ..Default::default()
        };
        let out = exec_with(&s, protocol, req, &ExecOptions::default()).await?;
        ensure(out.stdout == b"out\n" && out.exit_code() == Some(3), || {
            format!(
                "{protocol}: stdout {:?}, status {:?}; expected \"out\\n\" and exit code 3",
                String::from_utf8_lossy(&out.stdout),
                out.status
            )
        })?;
        done.push(protocol);
    }
    Ok(done.join(", "))
}

async fn attach_url(s: Arc<Scope>) -> CaseResult {
    let mut done = Vec::new();
    for protocol in ["websocket", "spdy"] {
        let (_, id, _) = s
            .busybox("read l; echo \"got $l\"", |_| {}, |c| c.stdin = true)
            .await?;
        let url = attach_url_of(
            &s,
            cri::AttachRequest {
                container_id: id,
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await?;
        let opts = ExecOptions {
            stdin: Some(b"hi\n".to_vec()),
            ..Default::default()
        };
        let out = match protocol {
            "websocket" => stream::websocket::exec(&url, "v4.channel.k8s.io", &opts).await,
            _ => stream::spdy::exec(&url, "v4.channel.k8s.io", &opts).await,
        }
        .map_err(|e| format!("{protocol}: {e}"))?;
        ensure(out.stdout == b"got hi\n", || {
            format!(
                "{protocol}: stdout {:?}, status {:?}; expected \"got hi\\n\"",
                String::from_utf8_lossy(&out.stdout),
                out.status
            )
        })?;
        done.push(protocol);
    }
    Ok(done.join(", "))
}

/// The URL Attach answers for `req`, checked.
async fn attach_url_of(s: &Scope, req: cri::AttachRequest) -> Result<String, String> {
    let r = s
        .rs()
        .attach(req)
        .await
        .map_err(|e| format!("Attach: {}", status_text(&e)))?;
    check_url("Attach", &r.into_inner().url)
}

/// Runs `req` through Exec and a v4 client of `protocol` (`websocket` or `spdy`) sending
/// and asking as `opts` say.
async fn exec_with(
    s: &Scope,
    protocol: &str,
    req: cri::ExecRequest,
    opts: &ExecOptions,
) -> Result<stream::ExecOutput, String> {
    let r = s
        .rs()
        .exec(req)
        .await
        .map_err(|e| format!("Exec: {}", status_text(&e)))?;
    let url = check_url("Exec", &r.into_inner().url)?;
    match protocol {
        "websocket" => stream::websocket::exec(&url, "v4.channel.k8s.io", opts).await,
        _ => stream::spdy::exec(&url, "v4.channel.k8s.io", opts).await,
    }
    .map_err(|e| format!("{protocol}: {e}"))
}

async fn exec_stdin_stderr(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let req = cri::ExecRequest {
        container_id: id,
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "read l; echo \"out $l\"; echo \"err $l\" >&2".into(),
        ],
        stdin: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let opts = ExecOptions {
        stdin: Some(b"hi\n".to_vec()),
        stderr: true,
        ..Default::default()
    };
    let out = exec_with(&s, "websocket", req, &opts).await?;
    ensure(
        out.stdout == b"out hi\n" && out.stderr == b"err hi\n" && out.exit_code() == Some(0),
        || {
            format!(
                "stdout {:?}, stderr {:?}, status {:?}; expected \"out hi\\n\", \"err hi\\n\", exit 0",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                out.status
            )
        },
    )?;
    Ok(String::new())
}

async fn exec_tty(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let mut seen = Vec::new();
    for tty in [true, false] {
        let req = cri::ExecRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "if [ -t 1 ]; then echo tty; else echo notty; fi".into(),
            ],
            tty,
            stdout: true,
            ..Default::default()
        };
        let opts = ExecOptions {
            tty: tty.then_some((80, 24)),
            ..Default::default()
        };
        // SPDY, as kubectl speaks it: containerd 1.6's WebSocket path drops a terminal's
        // output, which is no question of the tty field.
        let out = exec_with(&s, "spdy", req, &opts).await?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want = if tty { "tty" } else { "notty" };
        ensure(got == want, || {
            format!(
                "Exec with tty {tty}: the command printed {got:?}, expected {want:?} (stderr {:?}, status {:?})",
                String::from_utf8_lossy(&out.stderr),
                out.status
            )
        })?;
        seen.push(got);
    }
    Ok(seen.join(", "))
}

async fn attach_stderr(s: Arc<Scope>) -> CaseResult {
    // The container outlives its output by a second: what a runtime forwards while the
    // process runs is judged here, not a race with its exit (containerd 1.6 sometimes loses
    // the last output of a process that exits at once).
    let (_, id, _) = s
        .busybox(
            "read l; echo \"out $l\"; echo \"err $l\" >&2; sleep 1",
            |_| {},
            |c| c.stdin = true,
        )
        .await?;
    let url = attach_url_of(
        &s,
        cri::AttachRequest {
            container_id: id,
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await?;
    let opts = ExecOptions {
        stdin: Some(b"hi\n".to_vec()),
        stderr: true,
        ..Default::default()
    };
    let out = stream::websocket::exec(&url, "v4.channel.k8s.io", &opts).await?;
    ensure(
        out.stdout == b"out hi\n" && out.stderr == b"err hi\n",
        || {
            format!(
                "stdout {:?}, stderr {:?}; expected \"out hi\\n\" and \"err hi\\n\"",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        },
    )?;
    Ok(String::new())
}

async fn attach_tty(s: Arc<Scope>) -> CaseResult {
    // The size travels on its own stream (SPDY's resize stream), so nothing orders it
    // before the line on stdin: the container polls its terminal for up to 5 s after the
    // line (containerd 1.6 applied the size after the shell had read it once in CI).
    // `stty size` prints rows then columns, and fails while the terminal has no size.
    let (_, id, _) = s
        .busybox(
            "read l; i=0; \
             while [ $i -lt 50 ] && [ \"$(stty size 2>/dev/null)\" != '45 123' ]; do \
             i=$((i+1)); sleep 0.1; done; \
             echo \"size $(stty size 2>/dev/null)\"; sleep 1",
            |_| {},
            |c| {
                c.stdin = true;
                c.tty = true;
            },
        )
        .await?;
    let url = attach_url_of(
        &s,
        cri::AttachRequest {
            container_id: id,
            stdin: true,
            stdout: true,
            tty: true,
            ..Default::default()
        },
    )
    .await?;
    let opts = ExecOptions {
        stdin: Some(b"hi\n".to_vec()),
        tty: Some((123, 45)),
        ..Default::default()
    };
    let out = stream::spdy::exec(&url, "v4.channel.k8s.io", &opts).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(text.contains("size 45 123"), || {
        format!("the container's terminal did not take the client's size 123x45: output {text:?}")
    })?;
    Ok(String::new())
}

/// Attaches to `id` over SPDY, sends "hi\n" and half-closes stdin (SPDY FIN); returns what
/// came out, or an error when the session outlives `limit` (the container kept reading).
async fn attach_and_close_stdin(
    s: &Scope,
    id: &str,
    limit: Duration,
) -> Result<Option<stream::ExecOutput>, String> {
    let url = attach_url_of(
        s,
        cri::AttachRequest {
            container_id: id.to_owned(),
            stdin: true,
            stdout: true,
            ..Default::default()
        },
    )
    .await?;
    let opts = ExecOptions {
        stdin: Some(b"hi\n".to_vec()),
        close_stdin: true,
        ..Default::default()
    };
    match tokio::time::timeout(limit, stream::spdy::exec(&url, "v4.channel.k8s.io", &opts)).await {
        Ok(out) => out.map(Some),
        Err(_) => Ok(None),
    }
}

async fn attach_stdin_once(s: Arc<Scope>) -> CaseResult {
    // Kubernetes: with stdinOnce the stdin closes when the first attach session ends its
    // input; without, a process reading stdin never sees end of file.
    let mut seen = Vec::new();
    for once in [true, false] {
        let (_, id, _) = s
            .busybox(
                "cat; echo done",
                |_| {},
                |c| {
                    c.stdin = true;
                    c.stdin_once = once;
                },
            )
            .await?;
        let out = attach_and_close_stdin(&s, &id, Duration::from_secs(5)).await?;
        let st = s.container_status(&id).await?;
        let state = cri::ContainerState::try_from(st.state).ok();
        if once {
            let out =
                out.ok_or("stdin_once: the attach session did not end after its stdin closed")?;
            ensure(out.stdout == b"hi\ndone\n", || {
                format!(
                    "stdin_once: stdout {:?}; expected \"hi\\ndone\\n\" (cat ends when stdin closes)",
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
            let st = s
                .wait_state(
                    &id,
                    cri::ContainerState::ContainerExited,
                    Duration::from_secs(10),
                )
                .await?;
            ensure(st.exit_code == 0, || format!("exit code {}", st.exit_code))?;
        } else {
            ensure(state == Some(cri::ContainerState::ContainerRunning), || {
                format!(
                    "without stdin_once the container is {:?} after an attach closed its stdin; cat must not have seen end of file",
                    state
                )
            })?;
        }
        seen.push(format!("once={once}: {:?}", state.map(|s| s.as_str_name())));
    }
    Ok(seen.join(", "))
}

async fn port_forward_url(s: Arc<Scope>) -> CaseResult {
    let pod_id = s.httpd(|_| {}).await?;
    let request = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let mut done = Vec::new();
    for protocol in ["websocket", "spdy"] {
        let r = s
            .rs()
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod_id.clone(),
                port: vec![i32::from(HTTPD_PORT)],
            })
            .await
            .map_err(|e| format!("PortForward: {}", status_text(&e)))?;
        let url = check_url("PortForward", &r.into_inner().url)?;
        // httpd may still be starting: a refused dial is retried.
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..10 {
            let url = if attempt == 0 {
                url.clone()
            } else {
                let r = s
                    .rs()
                    .port_forward(cri::PortForwardRequest {
                        pod_sandbox_id: pod_id.clone(),
                        port: vec![i32::from(HTTPD_PORT)],
                    })
                    .await
                    .map_err(|e| format!("PortForward: {}", status_text(&e)))?;
                r.into_inner().url
            };
            let got = match protocol {
                "websocket" => stream::websocket::port_forward(&url, HTTPD_PORT, request).await,
                _ => stream::spdy::port_forward(&url, HTTPD_PORT, request).await,
            };
            match got {
                Ok(body) if String::from_utf8_lossy(&body).contains(INDEX_HTML.trim()) => {
                    ok = true;
                    break;
                }
                Ok(body) => last = format!("answered {:.200}", String::from_utf8_lossy(&body)),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ensure(ok, || format!("{protocol}: {last}"))?;
        done.push(protocol);
    }
    Ok(done.join(", "))
}

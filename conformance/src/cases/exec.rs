//! ExecSync (output, exit codes, time limit) and the streaming RPCs' URLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crid_api::cri;
use tonic::Code;

use super::container::CONTAINER_NEEDS;
use super::support::{Scope, scoped};
use super::{Area, Case, CaseResult, Requirement, ensure, status_text};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) fn cases() -> Vec<Case> {
    let case = |id, clause, requirement, summary, run| Case {
        id,
        clause,
        area: Area::Exec,
        requirement,
        needs: CONTAINER_NEEDS,
        summary,
        timeout: CASE_TIMEOUT,
        run,
    };
    use Requirement::{Optional, Required};
    vec![
        case(
            "exec/sync-stdout",
            "cri:RuntimeService.ExecSync#stdout",
            Required,
            "ExecSync returns the command's stdout and exit code 0 (exec probes rely on it)",
            |ctx| Box::pin(scoped(ctx, "es", sync_stdout)),
        ),
        case(
            "exec/sync-stderr-exit-code",
            "cri:RuntimeService.ExecSync#exit_code",
            Required,
            "ExecSync keeps stderr apart from stdout and returns a non-zero exit code as a result, not an error",
            |ctx| Box::pin(scoped(ctx, "ee", sync_stderr)),
        ),
        case(
            "exec/sync-timeout",
            "cri:RuntimeService.ExecSync#timeout",
            Required,
            "ExecSync of a command outliving its timeout returns (an error or a non-zero exit) soon after the timeout",
            |ctx| Box::pin(scoped(ctx, "et", sync_timeout)),
        ),
        case(
            "exec/sync-unknown-container",
            "cri:RuntimeService.ExecSync#container_id",
            Optional,
            "ExecSync in an unknown container is NotFound",
            |ctx| Box::pin(scoped(ctx, "eu", sync_unknown)),
        ),
        case(
            "exec/sync-exited-container-refused",
            "cri:RuntimeService.ExecSync#container_id",
            Optional,
            "ExecSync in an exited container is refused rather than run",
            |ctx| Box::pin(scoped(ctx, "ez", sync_exited)),
        ),
        case(
            "exec/exec-url",
            "cri:RuntimeService.Exec#url",
            Required,
            "Exec returns a streaming URL (kubectl exec connects to it)",
            |ctx| Box::pin(scoped(ctx, "ex", exec_url)),
        ),
        case(
            "exec/attach-url",
            "cri:RuntimeService.Attach#url",
            Required,
            "Attach returns a streaming URL (kubectl attach connects to it)",
            |ctx| Box::pin(scoped(ctx, "ea", attach_url)),
        ),
        case(
            "exec/port-forward-url",
            "cri:RuntimeService.PortForward#url",
            Required,
            "PortForward returns a streaming URL (kubectl port-forward connects to it)",
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
    let (_, id, _) = s.busybox("exit 0", |_| {}, |_| {}).await?;
    s.wait_state(
        &id,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
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
    let r = s
        .rs()
        .exec(cri::ExecRequest {
            container_id: id,
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("Exec: {}", status_text(&e)))?;
    check_url("Exec", &r.into_inner().url)
}

async fn attach_url(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let r = s
        .rs()
        .attach(cri::AttachRequest {
            container_id: id,
            stdout: true,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("Attach: {}", status_text(&e)))?;
    check_url("Attach", &r.into_inner().url)
}

async fn port_forward_url(s: Arc<Scope>) -> CaseResult {
    let (pod, _) = s.sleeper(|_| {}).await?;
    let r = s
        .rs()
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod,
            port: vec![80],
        })
        .await
        .map_err(|e| format!("PortForward: {}", status_text(&e)))?;
    check_url("PortForward", &r.into_inner().url)
}

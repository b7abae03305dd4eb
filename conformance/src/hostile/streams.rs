//! The streaming server as an attacker sees it: a URL works once, for its own kind of
//! session only, and a token that was not issued (made up, cut short, spent, used by a
//! racing client) reaches nobody's stream. And bytes that are not UTF-8 come back from
//! ExecSync as they were written.

use crid_api::{RuntimeServiceClient, cri};
use tonic::transport::Channel;

use crate::stream::websocket;

const PROTOCOL: &str = "v4.channel.k8s.io";

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

fn check(name: &'static str, passed: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        passed,
        detail: detail.into(),
    }
}

/// Whether an upgrade answer refuses the session (a 4xx status).
fn refused(answer: &Result<u16, String>) -> bool {
    matches!(answer, Ok(code) if (400..500).contains(code))
}

fn show(answer: &Result<u16, String>) -> String {
    match answer {
        Ok(c) => format!("HTTP {c}"),
        Err(e) => format!("no HTTP status: {e}"),
    }
}

/// `url` with its token (the last path segment) replaced.
fn with_token(url: &str, token: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{token}"),
        None => url.to_owned(),
    }
}

/// `url` with its kind (`exec`, `attach`, `portforward`) replaced.
fn with_kind(url: &str, kind: &str) -> String {
    let Some((base, token)) = url.rsplit_once('/') else {
        return url.to_owned();
    };
    let Some((host, _old)) = base.rsplit_once('/') else {
        return url.to_owned();
    };
    format!("{host}/{kind}/{token}")
}

fn token_of(url: &str) -> &str {
    url.rsplit_once('/').map_or("", |(_, t)| t)
}

async fn exec_url(
    rs: &mut RuntimeServiceClient<Channel>,
    container: &str,
) -> Result<String, String> {
    rs.exec(cri::ExecRequest {
        container_id: container.into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().url)
    .map_err(|s| format!("Exec: {:?}: {}", s.code(), s.message()))
}

async fn attach_url(
    rs: &mut RuntimeServiceClient<Channel>,
    container: &str,
) -> Result<String, String> {
    rs.attach(cri::AttachRequest {
        container_id: container.into(),
        stdout: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().url)
    .map_err(|s| format!("Attach: {:?}: {}", s.code(), s.message()))
}

/// Runs the checks against the running container `container` in pod `pod`. Each check
/// sends one or more requests; the count is returned with the checks.
pub async fn check_all(channel: Channel, pod: &str, container: &str) -> (Vec<Check>, usize) {
    let mut rs = RuntimeServiceClient::new(channel);
    let mut out = Vec::new();
    let mut sent = 0usize;
    let status = |url: String| async move { websocket::upgrade_status(&url, PROTOCOL).await };

    // A URL works once.
    match exec_url(&mut rs, container).await {
        Ok(url) => {
            let first = status(url.clone()).await;
            let again = status(url.clone()).await;
            sent += 3;
            out.push(check(
                "stream:token#single-use",
                first == Ok(101) && refused(&again),
                format!("first use {}, second use {}", show(&first), show(&again)),
            ));
            // A token no one was given, and one cut short.
            let made_up = status(with_token(&url, "hostileMadeUpToken0123")).await;
            let cut = url[..url.len().saturating_sub(1)].to_owned();
            let short = status(cut).await;
            let dots = status(format!(
                "{}/x/../{}",
                url.rsplit_once('/').map_or("", |(b, _)| b),
                token_of(&url)
            ))
            .await;
            sent += 3;
            out.push(check(
                "stream:token#unknown-refused",
                refused(&made_up) && refused(&short) && refused(&dots),
                format!(
                    "made-up {}, cut short {}, with `x/..` {}",
                    show(&made_up),
                    show(&short),
                    show(&dots)
                ),
            ));
        }
        Err(e) => out.push(check("stream:token#single-use", false, e)),
    }

    // A token is good for its own kind of session only, and is spent by the attempt.
    match exec_url(&mut rs, container).await {
        Ok(url) => {
            let as_attach = status(with_kind(&url, "attach")).await;
            let as_forward = status(format!("{}?port=80", with_kind(&url, "portforward"))).await;
            let after = status(url.clone()).await;
            sent += 4;
            out.push(check(
                "stream:token#kind-bound",
                refused(&as_attach) && refused(&as_forward) && refused(&after),
                format!(
                    "exec token as attach {}, as portforward {}, then as exec {}",
                    show(&as_attach),
                    show(&as_forward),
                    show(&after)
                ),
            ));
        }
        Err(e) => out.push(check("stream:token#kind-bound", false, e)),
    }
    match rs
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![80],
        })
        .await
    {
        Ok(r) => {
            let url = r.into_inner().url;
            let as_exec = status(with_kind(&url, "exec")).await;
            sent += 2;
            out.push(check(
                "stream:token#portforward-not-exec",
                refused(&as_exec),
                format!("portforward token as exec {}", show(&as_exec)),
            ));
        }
        Err(s) => out.push(check(
            "stream:token#portforward-not-exec",
            false,
            format!("PortForward: {:?}: {}", s.code(), s.message()),
        )),
    }

    // Eight clients race for one URL: exactly one gets the stream.
    match attach_url(&mut rs, container).await {
        Ok(url) => {
            let tries: Vec<_> = (0..8).map(|_| tokio::spawn(status(url.clone()))).collect();
            let mut answers = Vec::new();
            for t in tries {
                answers.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
            }
            sent += 9;
            let won = answers.iter().filter(|a| **a == Ok(101)).count();
            let lost = answers.iter().filter(|a| refused(a)).count();
            out.push(check(
                "stream:token#one-client",
                won == 1 && lost == 7,
                format!("{won} of 8 racing clients got the attach stream, {lost} were refused"),
            ));
        }
        Err(e) => out.push(check("stream:token#one-client", false, e)),
    }

    // Output that is not UTF-8 comes back byte for byte (ExecSyncResponse.stdout is bytes).
    let r = rs
        .exec_sync(cri::ExecSyncRequest {
            container_id: container.into(),
            cmd: vec!["printf".into(), "\\377\\376\\300\\200".into()],
            timeout: 10,
        })
        .await;
    sent += 1;
    out.push(match r {
        Ok(r) => {
            let r = r.into_inner();
            check(
                "cri:RuntimeService.ExecSync#stdout",
                r.stdout == [0xff, 0xfe, 0xc0, 0x80] && r.exit_code == 0,
                format!("stdout {:02x?}, exit code {}", r.stdout, r.exit_code),
            )
        }
        Err(s) => check(
            "cri:RuntimeService.ExecSync#stdout",
            false,
            format!("{:?}: {}", s.code(), s.message()),
        ),
    });
    (out, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_by_token_and_kind() {
        let url = "http://127.0.0.1:1234/exec/abcDEF";
        assert_eq!(with_token(url, "x"), "http://127.0.0.1:1234/exec/x");
        assert_eq!(
            with_kind(url, "attach"),
            "http://127.0.0.1:1234/attach/abcDEF"
        );
        assert_eq!(token_of(url), "abcDEF");
        assert!(refused(&Ok(404)));
        assert!(!refused(&Ok(101)));
        assert!(!refused(&Err("reset".into())));
    }
}

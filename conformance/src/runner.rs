//! Runs cases against one endpoint: needs are checked, each case runs in its own task with
//! its own time limit, so a panicking or hanging case never takes the run down with it.

use std::time::{Duration, Instant};

use crid_api::{RuntimeServiceClient, cri};
use tonic::transport::Channel;

use crate::cases::{Case, Ctx, Verdict};

/// How long the harness waits for an endpoint's Version and Status before giving up on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an endpoint cannot be judged at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No channel to the socket.
    #[error("{endpoint}: {source}")]
    Connect {
        /// The endpoint given.
        endpoint: String,
        /// Why.
        source: crid_api::client::ConnectError,
    },
    /// The endpoint did not answer an RPC every runtime serves.
    #[error("{endpoint} does not answer {rpc}: {reason}")]
    Rpc {
        /// The endpoint given.
        endpoint: String,
        /// `Version` or `Status`.
        rpc: &'static str,
        /// The status, or the time limit.
        reason: String,
    },
}

/// An endpoint ready to be judged: its channel, who it says it is, its runtime handlers.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint as given.
    pub endpoint: String,
    /// A channel to it.
    pub channel: Channel,
    /// `runtime_name runtime_version` from Version.
    pub runtime: String,
    /// Handler names from Status.runtime_handlers (see [`handlers_from_status`]).
    pub handlers: Vec<String>,
}

/// Connects to `endpoint` and asks for its Version and Status.
pub async fn probe(endpoint: &str) -> Result<Target, ProbeError> {
    let channel = crid_api::client::connect(endpoint)
        .await
        .map_err(|source| ProbeError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let rpc_error = |rpc, reason: String| ProbeError::Rpc {
        endpoint: endpoint.to_owned(),
        rpc,
        reason,
    };
    let mut client = RuntimeServiceClient::new(channel.clone());
    let version = tokio::time::timeout(
        PROBE_TIMEOUT,
        client.version(cri::VersionRequest {
            version: "0.1.0".into(),
        }),
    )
    .await
    .map_err(|_| rpc_error("Version", format!("no answer within {PROBE_TIMEOUT:?}")))?
    .map_err(|s| rpc_error("Version", format!("{:?}: {}", s.code(), s.message())))?
    .into_inner();
    let status = tokio::time::timeout(
        PROBE_TIMEOUT,
        client.status(cri::StatusRequest { verbose: false }),
    )
    .await
    .map_err(|_| rpc_error("Status", format!("no answer within {PROBE_TIMEOUT:?}")))?
    .map_err(|s| rpc_error("Status", format!("{:?}: {}", s.code(), s.message())))?
    .into_inner();
    Ok(Target {
        endpoint: endpoint.to_owned(),
        channel,
        runtime: format!("{} {}", version.runtime_name, version.runtime_version),
        handlers: handlers_from_status(&status),
    })
}

/// The handlers a matrix runs on an endpoint: the non-empty names Status reports, each
/// once, in its order; the default handler (`""`) when it reports none (older runtimes,
/// such as containerd 1.6, leave the field empty).
pub fn handlers_from_status(status: &cri::StatusResponse) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for h in &status.runtime_handlers {
        if !h.name.is_empty() && !names.contains(&h.name) {
            names.push(h.name.clone());
        }
    }
    if names.is_empty() {
        names.push(String::new());
    }
    names
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case.
    pub case: Case,
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// What a passing case observed (for the report); empty otherwise.
    pub note: String,
    /// Wall time of the body.
    pub duration: Duration,
}

/// What the environment offers, to decide which cases can run.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The harness runs as root (the endpoint is on this host).
    pub root: bool,
    /// The runtime handlers the endpoint's Status reports (empty: it reports none, as
    /// containerd 1.6 does, and any handler is tried).
    pub handlers: Vec<String>,
}

impl Environment {
    /// The environment of this process.
    pub fn detect() -> Self {
        Self {
            root: nix::unistd::geteuid().is_root(),
            handlers: Vec::new(),
        }
    }

    /// With the handlers `target` reports.
    pub fn for_target(mut self, target: &Target) -> Self {
        self.handlers = target
            .handlers
            .iter()
            .filter(|h| !h.is_empty())
            .cloned()
            .collect();
        self
    }

    fn unmet(&self, case: &Case, ctx: &Ctx) -> Option<String> {
        if case.needs.root && !self.root {
            return Some("needs root".into());
        }
        if case.needs.runtime_handler
            && !ctx.runtime_handler.is_empty()
            && !self.handlers.is_empty()
            && !self.handlers.contains(&ctx.runtime_handler)
        {
            return Some(format!(
                "needs runtime handler {:?}, which the endpoint does not report (it reports {})",
                ctx.runtime_handler,
                self.handlers.join(", ")
            ));
        }
        if case.needs.not_ready_endpoint && ctx.not_ready.is_none() {
            return Some(
                "needs an endpoint of the same runtime without a network configuration \
                 (--not-ready-endpoint)"
                    .into(),
            );
        }
        if let Some(image) = case.needs.image
            && ctx.images.is_none()
        {
            return Some(format!("needs fixture image {image} (no fixture registry)"));
        }
        None
    }
}

/// Selects cases whose id or clause contains `filter` (all when `None`).
pub fn select(cases: Vec<Case>, filter: Option<&str>) -> Vec<Case> {
    match filter {
        None => cases,
        Some(f) => cases
            .into_iter()
            .filter(|c| c.id.contains(f) || c.clause.contains(f))
            .collect(),
    }
}

/// Runs `cases` in order, each with a clone of `ctx`; `progress` sees each outcome.
pub async fn run(
    ctx: &Ctx,
    cases: &[Case],
    env: &Environment,
    mut progress: impl FnMut(&Outcome),
) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let started = Instant::now();
        let (verdict, note) = match env.unmet(case, ctx) {
            Some(why) => (Verdict::Skip(why), String::new()),
            None => run_one(case, ctx.clone()).await,
        };
        let outcome = Outcome {
            case: *case,
            verdict,
            note,
            duration: started.elapsed(),
        };
        progress(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

async fn run_one(case: &Case, ctx: Ctx) -> (Verdict, String) {
    let task = tokio::spawn((case.run)(ctx));
    let abort = task.abort_handle();
    match tokio::time::timeout(case.timeout, task).await {
        Ok(Ok(Ok(note))) => (Verdict::Pass, note),
        Ok(Ok(Err(why))) => (Verdict::Fail(why), String::new()),
        Ok(Err(join)) => (
            Verdict::Fail(format!("case panicked: {join}")),
            String::new(),
        ),
        Err(_) => {
            abort.abort();
            (
                Verdict::Fail(format!("timed out after {:?}", case.timeout)),
                String::new(),
            )
        }
    }
}

/// A run id: short, unique per run, safe in pod and container names.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "crt-{:x}{:05x}",
        std::process::id() & 0xffff,
        nanos & 0xfffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::{Area, Needs, Requirement};

    fn case(run: crate::cases::CaseFn, timeout: Duration) -> Case {
        Case {
            id: "api-surface/test",
            clause: "cri:RuntimeService.Version#test",
            area: Area::ApiSurface,
            requirement: Requirement::Required,
            needs: Needs::default(),
            summary: "test",
            timeout,
            run,
        }
    }

    fn ctx() -> Ctx {
        Ctx {
            channel: tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
            run_id: "t".into(),
            runtime_handler: String::new(),
            images: None,
            not_ready: None,
        }
    }

    #[tokio::test]
    async fn panics_and_hangs_become_failures() {
        let panicking = case(
            |_| Box::pin(async { panic!("boom") }),
            Duration::from_secs(5),
        );
        let (v, _) = run_one(&panicking, ctx()).await;
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("panicked")),
            "{v:?}"
        );

        let hanging = case(
            |_| Box::pin(async { std::future::pending::<crate::cases::CaseResult>().await }),
            Duration::from_millis(100),
        );
        let (v, _) = run_one(&hanging, ctx()).await;
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("timed out")),
            "{v:?}"
        );

        let passing = case(
            |_| Box::pin(async { Ok("seen".to_owned()) }),
            Duration::from_secs(5),
        );
        assert_eq!(
            run_one(&passing, ctx()).await,
            (Verdict::Pass, "seen".into())
        );
    }

    #[tokio::test]
    async fn unmet_needs_skip() {
        let mut c = case(
            |_| Box::pin(async { Ok(String::new()) }),
            Duration::from_secs(1),
        );
        c.needs.root = true;
        let mut with_images = ctx();
        with_images.images = Some(std::sync::Arc::new(crate::cases::ImageRefs {
            registry: "127.0.0.1:5000".into(),
            credentials: None,
        }));
        assert_eq!(
            Environment::default().unmet(&c, &with_images).as_deref(),
            Some("needs root")
        );
        c.needs.root = false;
        c.needs.image = Some("busybox");
        assert!(
            Environment {
                root: true,
                ..Environment::default()
            }
            .unmet(&c, &ctx())
            .is_some_and(|w| w.contains("busybox"))
        );
        let root = Environment {
            root: true,
            ..Environment::default()
        };
        assert_eq!(root.unmet(&c, &with_images), None);

        // A named handler the endpoint does not report; none reported: tried anyway.
        c.needs.runtime_handler = true;
        with_images.runtime_handler = "kata".into();
        let reporting = Environment {
            root: true,
            handlers: vec!["runc".into(), "crun".into()],
        };
        assert!(
            reporting
                .unmet(&c, &with_images)
                .is_some_and(|w| w.contains("\"kata\"") && w.contains("runc, crun"))
        );
        assert_eq!(root.unmet(&c, &with_images), None);
        with_images.runtime_handler = "crun".into();
        assert_eq!(reporting.unmet(&c, &with_images), None);

        // The endpoint without a network.
        c.needs.not_ready_endpoint = true;
        assert!(
            reporting
                .unmet(&c, &with_images)
                .is_some_and(|w| w.contains("--not-ready-endpoint"))
        );
        with_images.not_ready = Some(ctx().channel);
        assert_eq!(reporting.unmet(&c, &with_images), None);
    }

    #[test]
    fn handlers_are_the_named_ones_or_the_default() {
        let handler = |name: &str| cri::RuntimeHandler {
            name: name.into(),
            features: None,
        };
        let mut status = cri::StatusResponse::default();
        assert_eq!(handlers_from_status(&status), vec![String::new()]);
        status.runtime_handlers = vec![
            handler(""),
            handler("runc"),
            handler("crun"),
            handler("runc"),
        ];
        assert_eq!(handlers_from_status(&status), vec!["runc", "crun"]);
    }

    #[tokio::test]
    async fn probing_a_missing_socket_names_the_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/none.sock", dir.path().display());
        let err = probe(&endpoint).await.unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("none.sock"), "{err}");
    }

    #[test]
    fn run_ids_are_name_safe() {
        let id = new_run_id();
        assert!(
            id.len() <= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{id}"
        );
    }
}

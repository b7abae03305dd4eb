//! The catalogue of conformance cases.
//!
//! A case is a static record: what it checks (the spec clause), where it belongs (area),
//! how binding the behaviour is (required or optional in the spec), what it needs, and an
//! async function that talks CRI to the endpoint. The harness knows nothing of any
//! runtime's internals; cases judge crid, containerd and CRI-O by the same rules.

mod api_surface;
mod cdi;
mod container;
mod events;
mod exec;
mod image;
mod image_handler;
mod image_volume;
mod kubelet_replay;
mod logs;
mod networking;
mod pod_resources;
mod pod_sandbox;
mod resources;
mod runtime_info;
mod security;
mod stats;
pub(crate) mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

/// The spec area a case belongs to; areas are the rows of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// Version, Status, RuntimeConfig, UpdateRuntimeConfig.
    RuntimeInfo,
    /// Which RPCs answer, and how requests without required fields are treated.
    ApiSurface,
    /// Pod sandbox lifecycle, status and list filters.
    PodSandbox,
    /// Container lifecycle, status and list filters.
    Container,
    /// Image pull, list, status, remove, filesystem info.
    Image,
    /// ExecSync, Exec, Attach, PortForward.
    Exec,
    /// Container logs: CRI log format, reopen.
    Logs,
    /// Pod IPs, DNS, port mappings, pod-to-pod traffic.
    Networking,
    /// Users, groups, capabilities, privileged, read-only rootfs, seccomp, AppArmor,
    /// namespaces, sysctls.
    SecurityContext,
    /// Resource limits and UpdateContainerResources.
    Resources,
    /// Container and pod stats and metrics.
    Stats,
    /// GetContainerEvents.
    Events,
    /// A real kubelet's captured requests, replayed in its order.
    KubeletReplay,
}

impl Area {
    /// Every area, in report order.
    pub const ALL: [Area; 13] = [
        Area::RuntimeInfo,
        Area::ApiSurface,
        Area::PodSandbox,
        Area::Container,
        Area::Image,
        Area::Exec,
        Area::Logs,
        Area::Networking,
        Area::SecurityContext,
        Area::Resources,
        Area::Stats,
        Area::Events,
        Area::KubeletReplay,
    ];

    /// The name used in reports and JUnit suite names.
    pub fn name(self) -> &'static str {
        match self {
            Area::RuntimeInfo => "runtime-info",
            Area::ApiSurface => "api-surface",
            Area::PodSandbox => "pod-sandbox",
            Area::Container => "container",
            Area::Image => "image",
            Area::Exec => "exec",
            Area::Logs => "logs",
            Area::Networking => "networking",
            Area::SecurityContext => "security-context",
            Area::Resources => "resources",
            Area::Stats => "stats",
            Area::Events => "events",
            Area::KubeletReplay => "kubelet-replay",
        }
    }
}

/// How binding the checked behaviour is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// The spec (or the kubelet's reliance on it) requires it; a failure fails the run.
    Required,
    /// The spec recommends or allows it; a failure is reported but does not fail the run.
    Optional,
}

/// What a case needs from its environment; a case whose needs are unmet is skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Needs {
    /// Runs privileged operations on the endpoint's host (pods, containers).
    pub root: bool,
    /// Needs a working runtime handler: the run's handler, when one is named, must be one
    /// the endpoint's Status reports (when it reports any).
    pub runtime_handler: bool,
    /// Needs this image from the fixture registry.
    pub image: Option<&'static str>,
    /// Needs a second endpoint of the same runtime whose network is not ready
    /// ([`Ctx::not_ready`], `--not-ready-endpoint`).
    pub not_ready_endpoint: bool,
}

/// Everything a case may use.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// A channel to the endpoint under test.
    pub channel: Channel,
    /// Prefix for every name a case creates, unique per run, so runs never collide.
    pub run_id: String,
    /// The runtime handler pods are created with (empty: the endpoint's default).
    pub runtime_handler: String,
    /// The fixture registry, when one is up for this run.
    pub images: Option<Arc<ImageRefs>>,
    /// A channel to a second endpoint of the same runtime, started without a network
    /// configuration (so NetworkReady is false), when the run was given one.
    pub not_ready: Option<Channel>,
}

/// Where the fixture images are: a registry the endpoint can pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRefs {
    /// `host:port` of the registry.
    pub registry: String,
    /// Basic-auth user and password, when the registry requires them.
    pub credentials: Option<(String, String)>,
}

impl ImageRefs {
    /// The reference of fixture image `name:tag`, e.g. `127.0.0.1:5000/busybox:latest`.
    pub fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.registry)
    }
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The behaviour matched the clause.
    Pass,
    /// It did not; the message says what was expected and what came back.
    Fail(String),
    /// The case could not run here; the message says which need was unmet.
    Skip(String),
}

/// What a case function returns: `Ok(note)` on pass (the note may be empty), `Err` on failure.
pub type CaseResult = Result<String, String>;

/// An async case body.
pub type CaseFn = fn(Ctx) -> Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Stable identifier, e.g. `runtime-info/version-api-version`.
    pub id: &'static str,
    /// The clause checked: `cri:<Service>.<RPC>#<field or behaviour>` or `oci-runtime:<file>#<section>`.
    pub clause: &'static str,
    /// Report row.
    pub area: Area,
    /// Required or optional in the spec.
    pub requirement: Requirement,
    /// What it needs.
    pub needs: Needs,
    /// One line: the behaviour checked.
    pub summary: &'static str,
    /// Time limit for the body.
    pub timeout: Duration,
    /// The body.
    pub run: CaseFn,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("clause", &self.clause)
            .finish_non_exhaustive()
    }
}

/// The default time limit of a case.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Area {
    /// A builder of this area's cases: no needs and [`DEFAULT_TIMEOUT`] until told otherwise.
    pub(crate) fn cases(self) -> CaseBuilder {
        CaseBuilder {
            area: self,
            needs: Needs::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What the cases of one module share (area, needs, time limit), and the one place a
/// [`Case`] is made from them. It is `Copy`: a case that needs something else takes
/// `cases.needs(other).required(..)` and leaves the module's builder as it was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CaseBuilder {
    area: Area,
    needs: Needs,
    timeout: Duration,
}

impl CaseBuilder {
    /// The same builder, its cases needing `needs`.
    pub(crate) fn needs(self, needs: Needs) -> CaseBuilder {
        CaseBuilder { needs, ..self }
    }

    /// The same builder, its cases limited to `timeout`.
    pub(crate) fn timeout(self, timeout: Duration) -> CaseBuilder {
        CaseBuilder { timeout, ..self }
    }

    /// A case checking a behaviour the spec requires.
    pub(crate) fn required(
        self,
        id: &'static str,
        clause: &'static str,
        summary: &'static str,
        run: CaseFn,
    ) -> Case {
        self.case(Requirement::Required, id, clause, summary, run)
    }

    /// A case checking a behaviour the spec recommends or allows.
    pub(crate) fn optional(
        self,
        id: &'static str,
        clause: &'static str,
        summary: &'static str,
        run: CaseFn,
    ) -> Case {
        self.case(Requirement::Optional, id, clause, summary, run)
    }

    fn case(
        self,
        requirement: Requirement,
        id: &'static str,
        clause: &'static str,
        summary: &'static str,
        run: CaseFn,
    ) -> Case {
        Case {
            id,
            clause,
            area: self.area,
            requirement,
            needs: self.needs,
            summary,
            timeout: self.timeout,
            run,
        }
    }
}

/// Every case, in report order.
pub fn catalogue() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(runtime_info::cases());
    all.extend(api_surface::cases());
    all.extend(pod_sandbox::cases());
    all.extend(pod_resources::cases());
    all.extend(container::cases());
    all.extend(cdi::cases());
    all.extend(image_volume::cases());
    all.extend(image::cases());
    all.extend(image_handler::cases());
    all.extend(exec::cases());
    all.extend(logs::cases());
    all.extend(networking::cases());
    all.extend(security::cases());
    all.extend(resources::cases());
    all.extend(stats::cases());
    all.extend(events::cases());
    all.extend(kubelet_replay::cases());
    all
}

/// Fails with `what` when `cond` is false.
pub(crate) fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Formats a gRPC status for failure messages.
pub(crate) fn status_text(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_clauses_are_well_formed() {
        let cases = catalogue();
        let mut ids = HashSet::new();
        for c in &cases {
            assert!(ids.insert(c.id), "duplicate case id {}", c.id);
            assert!(
                c.id.starts_with(c.area.name()),
                "{}: id must start with its area",
                c.id
            );
            let (spec, rest) = c
                .clause
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: clause without spec", c.id));
            assert!(
                ["cri", "oci-runtime", "oci-image", "grpc"].contains(&spec),
                "{}: unknown spec {spec}",
                c.id
            );
            assert!(
                rest.contains('#') || rest.contains('.'),
                "{}: clause names no RPC or section",
                c.id
            );
            assert!(!c.summary.is_empty(), "{}: empty summary", c.id);
        }
    }

    #[test]
    fn clauses_name_real_rpcs() {
        for c in catalogue() {
            let Some(rest) = c.clause.strip_prefix("cri:") else {
                continue;
            };
            let rpc_part = rest.split('#').next().unwrap_or_default();
            let Some((service, rpc)) = rpc_part.split_once('.') else {
                continue;
            };
            let rpcs = match service {
                "RuntimeService" => crid_api::RUNTIME_SERVICE_RPCS,
                "ImageService" => crid_api::IMAGE_SERVICE_RPCS,
                other => panic!("{}: unknown service {other}", c.id),
            };
            assert!(rpcs.contains(&rpc), "{}: {service} has no RPC {rpc}", c.id);
        }
    }
}

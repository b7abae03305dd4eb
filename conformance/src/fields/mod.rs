//! Field-level traceability: every field of every request message of the CRI services,
//! by dotted path (`CreateContainerRequest.config.linux.security_context.run_as_user`),
//! and which cases exercise it ([`map::FIELDS`]) or why none does
//! (conformance/traceability/unchecked.toml). Tests hold the three together, so a new
//! proto field fails the build of the matrix until someone says what checks it.

pub mod map;

use std::collections::BTreeSet;

use prost_reflect::{Kind, MessageDescriptor};
use serde::Deserialize;

/// One field of a request, reached from the request message through message-typed fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestField {
    /// `RuntimeService` or `ImageService`.
    pub service: String,
    /// The RPC whose request holds the field.
    pub rpc: String,
    /// Dotted path from the request message, e.g. `RunPodSandboxRequest.config.hostname`.
    pub path: String,
}

/// Every leaf field of the request messages of both services, in service and RPC order.
/// A message-typed field is followed into its message (a repeated one too: its fields are
/// checked per element); a map, a scalar, an enum, an empty message, or a message already
/// on the path (recursion) ends the path.
pub fn request_fields() -> Vec<RequestField> {
    let pool = crate::kubelet_corpus::pool();
    let mut out = Vec::new();
    for service in [crid_api::RUNTIME_SERVICE, crid_api::IMAGE_SERVICE] {
        let Some(sd) = pool.get_service_by_name(service) else {
            continue;
        };
        let short = service.rsplit('.').next().unwrap_or(service).to_owned();
        for m in sd.methods() {
            let input = m.input();
            let mut stack = vec![input.full_name().to_owned()];
            walk(&input, input.name(), &mut stack, &mut |path| {
                out.push(RequestField {
                    service: short.clone(),
                    rpc: m.name().to_owned(),
                    path,
                })
            });
        }
    }
    out
}

fn walk(
    msg: &MessageDescriptor,
    prefix: &str,
    stack: &mut Vec<String>,
    emit: &mut dyn FnMut(String),
) {
    for f in msg.fields() {
        let path = format!("{prefix}.{}", f.name());
        match f.kind() {
            Kind::Message(inner)
                if !f.is_map()
                    && inner.fields().len() > 0
                    && !stack.iter().any(|s| s == inner.full_name()) =>
            {
                stack.push(inner.full_name().to_owned());
                walk(&inner, &path, stack, emit);
                stack.pop();
            }
            _ => emit(path),
        }
    }
}

/// A field (or a subtree: the entry covers the path and everything under it) no case
/// checks, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unchecked {
    /// A dotted request field path, or the prefix of a subtree.
    pub path: String,
    /// Why no case checks it.
    pub reason: String,
    /// Whether the field carries behaviour a runtime must implement (counted in the
    /// coverage of behaviour-carrying fields) or not (Windows only, informational, ...).
    pub behaviour: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedFile {
    unchecked: Vec<Unchecked>,
}

/// conformance/traceability/unchecked.toml, as committed.
pub const UNCHECKED_TOML: &str = include_str!("../../traceability/unchecked.toml");

/// Parses the unchecked table.
pub fn parse_unchecked(text: &str) -> Result<Vec<Unchecked>, String> {
    let f: UncheckedFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for u in &f.unchecked {
        if u.reason.trim().is_empty() {
            return Err(format!("{}: no reason", u.path));
        }
    }
    Ok(f.unchecked)
}

/// The committed unchecked table (it is compiled in; a test holds it valid).
pub fn unchecked() -> Vec<Unchecked> {
    parse_unchecked(UNCHECKED_TOML).unwrap_or_else(|e| panic!("traceability/unchecked.toml: {e}"))
}

/// True when `path` is `prefix` or lies under it.
pub fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// How one request field is traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace<'a> {
    /// Cases that exercise it.
    Checked(Vec<&'static str>),
    /// No case does; the table says why.
    Unchecked(&'a Unchecked),
    /// Neither: a gap the tests refuse.
    Untraced,
}

/// The cases that name `path` (or a field under it) in [`map::FIELDS`].
pub fn cases_of(path: &str, map: &[(&'static str, &'static [&'static str])]) -> Vec<&'static str> {
    let mut ids: BTreeSet<&'static str> = BTreeSet::new();
    for (id, fields) in map {
        if fields.iter().any(|f| under(path, f)) {
            ids.insert(id);
        }
    }
    ids.into_iter().collect()
}

/// Traces one field: checked by the cases naming it, else the unchecked entry covering it.
pub fn trace<'a>(
    path: &str,
    map: &[(&'static str, &'static [&'static str])],
    unchecked: &'a [Unchecked],
) -> Trace<'a> {
    let cases = cases_of(path, map);
    if !cases.is_empty() {
        return Trace::Checked(cases);
    }
    match unchecked.iter().find(|u| under(path, &u.path)) {
        Some(u) => Trace::Unchecked(u),
        None => Trace::Untraced,
    }
}

/// The fields a case names in [`map::FIELDS`]; empty for a case the table does not list.
pub fn fields_of(case: &str) -> &'static [&'static str] {
    map::FIELDS
        .iter()
        .find(|(id, _)| *id == case)
        .map(|(_, f)| *f)
        .unwrap_or_default()
}

/// Counts of one RPC's request fields (or of all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Fields some case checks.
    pub checked: usize,
    /// Fields no case checks that carry behaviour.
    pub unchecked_behaviour: usize,
    /// Fields no case checks that carry none (Windows, deprecated, informational).
    pub unchecked_other: usize,
    /// Fields in neither table (a test refuses them).
    pub untraced: usize,
}

impl Coverage {
    /// Every field counted.
    pub fn total(&self) -> usize {
        self.checked + self.unchecked_behaviour + self.unchecked_other + self.untraced
    }

    /// Fields that carry behaviour: checked ones, unchecked behaviour-carrying ones and
    /// untraced ones (which count against the coverage until someone says otherwise).
    pub fn behaviour(&self) -> usize {
        self.checked + self.unchecked_behaviour + self.untraced
    }

    /// Percentage of the behaviour-carrying fields that are checked; 100 when none.
    pub fn percent(&self) -> f64 {
        if self.behaviour() == 0 {
            100.0
        } else {
            100.0 * self.checked as f64 / self.behaviour() as f64
        }
    }

    fn add(&mut self, t: &Trace<'_>) {
        match t {
            Trace::Checked(_) => self.checked += 1,
            Trace::Unchecked(u) if u.behaviour => self.unchecked_behaviour += 1,
            Trace::Unchecked(_) => self.unchecked_other += 1,
            Trace::Untraced => self.untraced += 1,
        }
    }
}

/// Every request field with its trace, and the coverage per RPC (service order) and
/// overall.
pub struct FieldReport<'a> {
    /// Each field and how it is traced.
    pub rows: Vec<(RequestField, Trace<'a>)>,
    /// `(service, rpc, coverage)` for every RPC whose request has fields.
    pub per_rpc: Vec<(String, String, Coverage)>,
    /// Over every field.
    pub overall: Coverage,
}

/// Traces every request field against `map` and `unchecked`.
pub fn field_report<'a>(
    map: &[(&'static str, &'static [&'static str])],
    unchecked: &'a [Unchecked],
) -> FieldReport<'a> {
    let mut rows = Vec::new();
    let mut per_rpc: Vec<(String, String, Coverage)> = Vec::new();
    let mut overall = Coverage::default();
    for f in request_fields() {
        let t = trace(&f.path, map, unchecked);
        overall.add(&t);
        match per_rpc.last_mut() {
            Some((s, r, c)) if *s == f.service && *r == f.rpc => c.add(&t),
            _ => {
                let mut c = Coverage::default();
                c.add(&t);
                per_rpc.push((f.service.clone(), f.rpc.clone(), c));
            }
        }
        rows.push((f, t));
    }
    FieldReport {
        rows,
        per_rpc,
        overall,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn fields_are_walked_through_nested_messages() {
        let all = request_fields();
        let paths: Vec<&str> = all.iter().map(|f| f.path.as_str()).collect();
        for p in [
            "VersionRequest.version",
            "CreateContainerRequest.config.linux.security_context.run_as_user.value",
            "CreateContainerRequest.config.linux.resources.hugepage_limits.page_size",
            "RunPodSandboxRequest.config.dns_config.servers",
            "PullImageRequest.auth.server_address",
            "CreateContainerRequest.sandbox_config.linux.sysctls",
        ] {
            assert!(paths.contains(&p), "{p} missing");
        }
        // Message-typed fields are followed, not listed.
        assert!(!paths.contains(&"CreateContainerRequest.config"));
        assert!(!paths.contains(&"RunPodSandboxRequest.config.dns_config"));
        let unique: BTreeSet<&str> = paths.iter().copied().collect();
        assert_eq!(unique.len(), paths.len(), "duplicate paths");
        // Every RPC with a non-empty request is there.
        let rpcs: BTreeSet<&str> = all.iter().map(|f| f.rpc.as_str()).collect();
        for rpc in ["RunPodSandbox", "CreateContainer", "PullImage", "ExecSync"] {
            assert!(rpcs.contains(rpc), "{rpc} missing");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(under("A.config.linux", "A.config"));
        assert!(under("A.config", "A.config"));
        assert!(!under("A.configx", "A.config"));
    }

    /// A proto field in neither a case's fields nor the unchecked table fails here: a new
    /// field needs a case or an entry with its reason.
    #[test]
    fn every_request_field_is_checked_or_listed_unchecked() {
        let unchecked = unchecked();
        let report = field_report(map::FIELDS, &unchecked);
        let untraced: Vec<&str> = report
            .rows
            .iter()
            .filter(|(_, t)| *t == Trace::Untraced)
            .map(|(f, _)| f.path.as_str())
            .collect();
        assert!(
            untraced.is_empty(),
            "request fields no case checks and conformance/traceability/unchecked.toml does \
             not list (add them to a case's fields in conformance/src/fields/map.rs, or to the \
             table with a reason):\n  {}",
            untraced.join("\n  ")
        );
    }

    #[test]
    fn every_path_a_case_names_is_a_request_field() {
        let all = request_fields();
        for (id, fields) in map::FIELDS {
            for p in *fields {
                assert!(
                    all.iter().any(|f| under(&f.path, p)),
                    "{id}: {p} is no request field (nor a message holding one)"
                );
            }
        }
    }

    #[test]
    fn the_map_lists_every_case_of_the_catalogue_once() {
        let catalogue: Vec<&str> = crate::cases::catalogue().iter().map(|c| c.id).collect();
        let mut seen = BTreeSet::new();
        for (id, _) in map::FIELDS {
            assert!(seen.insert(*id), "{id} is listed twice");
            assert!(catalogue.contains(id), "{id} is not in the catalogue");
        }
        let missing: Vec<&str> = catalogue
            .iter()
            .copied()
            .filter(|id| !seen.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "cases without an entry in conformance/src/fields/map.rs (list the request fields \
             each exercises, or none): {missing:?}"
        );
    }

    #[test]
    fn unchecked_entries_cover_fields_and_none_that_a_case_checks() {
        let all = request_fields();
        let unchecked = unchecked();
        let mut paths = BTreeSet::new();
        for u in &unchecked {
            assert!(paths.insert(u.path.as_str()), "{} is listed twice", u.path);
            let covered: Vec<&RequestField> =
                all.iter().filter(|f| under(&f.path, &u.path)).collect();
            assert!(!covered.is_empty(), "{}: no such request field", u.path);
            for f in covered {
                let cases = cases_of(&f.path, map::FIELDS);
                assert!(
                    cases.is_empty(),
                    "{} is listed unchecked ({}) but {cases:?} check it",
                    f.path,
                    u.path
                );
            }
        }
    }

    #[test]
    fn bad_unchecked_tables_are_refused() {
        assert!(
            parse_unchecked("[[unchecked]]\npath = \"A\"\nreason = \" \"\nbehaviour = true\n")
                .is_err()
        );
        assert!(parse_unchecked("[[unchecked]]\npath = \"A\"\nreason = \"r\"\n").is_err());
        assert!(
            parse_unchecked(
                "[[unchecked]]\npath = \"A\"\nreason = \"r\"\nbehaviour = true\nx = 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn coverage_counts_and_percentages() {
        let unchecked = vec![
            Unchecked {
                path: "RunPodSandboxRequest.config".into(),
                reason: "r".into(),
                behaviour: true,
            },
            Unchecked {
                path: "VersionRequest".into(),
                reason: "r".into(),
                behaviour: false,
            },
        ];
        let map: &[(&str, &[&str])] = &[("x", &["RunPodSandboxRequest.config.hostname"])];
        let r = field_report(map, &unchecked);
        let (_, _, run) = r
            .per_rpc
            .iter()
            .find(|(_, rpc, _)| rpc == "RunPodSandbox")
            .expect("RunPodSandbox");
        assert_eq!(run.checked, 1);
        // runtime_handler is outside the unchecked subtree: untraced, and counted against.
        assert_eq!(run.untraced, 1);
        assert_eq!(run.unchecked_behaviour, run.total() - 2);
        assert!((run.percent() - 100.0 / run.behaviour() as f64).abs() < 1e-9);
        let (_, _, v) = r
            .per_rpc
            .iter()
            .find(|(_, rpc, _)| rpc == "Version")
            .expect("Version");
        assert_eq!((v.checked, v.unchecked_other, v.behaviour()), (0, 1, 0));
        assert_eq!(v.percent(), 100.0);
        assert_eq!(r.overall.total(), r.rows.len());
    }
}

//! The traceability matrix: which cases check which CRI RPC or OCI section, generated from
//! the catalogue so it can never drift from the cases (docs/traceability.md is its output,
//! and a test fails when the checked-in copy is stale).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::cases::{Area, Case, Requirement};

/// The command that regenerates docs/traceability.md, quoted in the page and in the
/// staleness test's failure message.
pub const REGENERATE: &str =
    "cargo run -q -p crid-conformance -- traceability > docs/traceability.md";

/// Where a clause points: an RPC of a CRI service, or some other clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClauseTarget<'a> {
    /// `cri:<Service>.<RPC>#<detail>`.
    Rpc {
        /// `RuntimeService` or `ImageService`.
        service: &'a str,
        /// The RPC name.
        rpc: &'a str,
        /// What after `#` (a field or behaviour); empty when absent.
        detail: &'a str,
    },
    /// Anything else: `oci-runtime:…`, `oci-image:…`, `grpc:…`, or a CRI clause naming no RPC.
    Other {
        /// The part before the first `:` (`oci-runtime`, `grpc`, …).
        spec: &'a str,
    },
}

/// Splits a clause into its target.
pub fn parse_clause(clause: &str) -> ClauseTarget<'_> {
    let (spec, rest) = clause.split_once(':').unwrap_or((clause, ""));
    if spec == "cri" {
        let (rpc_part, detail) = rest.split_once('#').unwrap_or((rest, ""));
        if let Some((service, rpc)) = rpc_part.split_once('.')
            && !service.is_empty()
            && !rpc.is_empty()
        {
            return ClauseTarget::Rpc {
                service,
                rpc,
                detail,
            };
        }
    }
    ClauseTarget::Other { spec }
}

fn req(r: Requirement) -> &'static str {
    match r {
        Requirement::Required => "required",
        Requirement::Optional => "optional",
    }
}

/// Escapes text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the matrix as Markdown: a summary per area, every RPC of both services with the
/// cases that name it (gaps marked), then the non-RPC clauses.
pub fn to_traceability(cases: &[Case]) -> String {
    let services: [(&str, &[&str]); 2] = [
        ("RuntimeService", crid_api::RUNTIME_SERVICE_RPCS),
        ("ImageService", crid_api::IMAGE_SERVICE_RPCS),
    ];
    let mut by_rpc: BTreeMap<(&str, &str), Vec<&Case>> = BTreeMap::new();
    let mut others: Vec<&Case> = Vec::new();
    for c in cases {
        match parse_clause(c.clause) {
            ClauseTarget::Rpc { service, rpc, .. } => {
                by_rpc.entry((service, rpc)).or_default().push(c)
            }
            ClauseTarget::Other { .. } => others.push(c),
        }
    }
    let total_rpcs: usize = services.iter().map(|(_, r)| r.len()).sum();
    let covered = services
        .iter()
        .flat_map(|(s, rpcs)| rpcs.iter().map(move |r| (*s, *r)))
        .filter(|k| by_rpc.contains_key(k))
        .count();

    let mut s = String::new();
    s.push_str("# CRI conformance traceability matrix\n\n");
    s.push_str(
        "Generated from the case catalogue by `crid-conformance traceability`; do not edit by \
         hand.\n",
    );
    let _ = writeln!(s, "Regenerate with `{REGENERATE}`.\n");
    let _ = writeln!(
        s,
        "{} cases. {covered} of {total_rpcs} runtime.v1 RPCs are checked by at least one \
         case; {} are gaps (marked **gap**).\n",
        cases.len(),
        total_rpcs - covered
    );

    s.push_str("## Cases per area\n\n");
    s.push_str("| area | cases | required | optional | need root |\n|---|---:|---:|---:|---:|\n");
    let mut totals = [0usize; 4];
    for area in Area::ALL {
        let in_area: Vec<&Case> = cases.iter().filter(|c| c.area == area).collect();
        let row = [
            in_area.len(),
            in_area
                .iter()
                .filter(|c| c.requirement == Requirement::Required)
                .count(),
            in_area
                .iter()
                .filter(|c| c.requirement == Requirement::Optional)
                .count(),
            in_area.iter().filter(|c| c.needs.root).count(),
        ];
        for (t, v) in totals.iter_mut().zip(row) {
            *t += v;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            area.name(),
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    let _ = writeln!(
        s,
        "| **total** | **{}** | **{}** | **{}** | **{}** |\n",
        totals[0], totals[1], totals[2], totals[3]
    );

    for (service, rpcs) in services {
        let _ = writeln!(s, "## {service}\n");
        s.push_str("| RPC | cases | case: clause detail (requirement) |\n|---|---:|---|\n");
        for rpc in rpcs {
            match by_rpc.get(&(service, *rpc)) {
                None => {
                    let _ = writeln!(s, "| `{rpc}` | 0 | **gap**: no case names this RPC |");
                }
                Some(list) => {
                    let items: Vec<String> = list
                        .iter()
                        .map(|c| {
                            let detail = match parse_clause(c.clause) {
                                ClauseTarget::Rpc { detail, .. } if !detail.is_empty() => {
                                    format!(" `#{}`", cell(detail))
                                }
                                _ => String::new(),
                            };
                            format!("`{}`{detail} ({})", cell(c.id), req(c.requirement))
                        })
                        .collect();
                    let _ = writeln!(s, "| `{rpc}` | {} | {} |", list.len(), items.join("<br>"));
                }
            }
        }
        s.push('\n');
    }

    // Clauses naming an RPC the services do not have are a catalogue bug; list them so a
    // reader sees them rather than having them vanish from the matrix.
    let unknown: Vec<&Case> = cases
        .iter()
        .filter(|c| match parse_clause(c.clause) {
            ClauseTarget::Rpc { service, rpc, .. } => !services
                .iter()
                .any(|(s, rpcs)| *s == service && rpcs.contains(&rpc)),
            ClauseTarget::Other { .. } => false,
        })
        .collect();
    if !unknown.is_empty() {
        s.push_str("## Clauses naming an unknown RPC\n\n| clause | case |\n|---|---|\n");
        for c in unknown {
            let _ = writeln!(s, "| `{}` | `{}` |", cell(c.clause), cell(c.id));
        }
        s.push('\n');
    }

    s.push_str("## Property-based lifecycle tests\n\n");
    s.push_str(
        "`crid-conformance props` generates sequences of these operations and checks each \
         clause after every step (see conformance/src/props/).\n\n| clause | checked |\n|---|---|\n",
    );
    for (clause, what) in crate::props::CLAUSES {
        let _ = writeln!(s, "| `{}` | {} |", cell(clause), cell(what));
    }
    s.push('\n');

    s.push_str(&field_section());

    s.push_str(&crate::mutate::Results::checked_in().markdown());

    s.push_str("## Differences between runtimes\n\n");
    s.push_str(
        "Cases listed in exactly one of conformance/baseline/crid.toml and \
         conformance/baseline/containerd-1.6.toml: where the two runtimes behave differently, \
         the clause, and whose behaviour it supports.\n\n",
    );
    s.push_str(&crate::baseline::differences_markdown(
        &crate::baseline::checked_in_differences(cases),
    ));
    s.push('\n');

    s.push_str("## Other clauses (OCI specs, gRPC, CRI behaviour without one RPC)\n\n");
    if others.is_empty() {
        s.push_str("None.\n");
    } else {
        others.sort_by(|a, b| (a.clause, a.id).cmp(&(b.clause, b.id)));
        s.push_str("| clause | case | area | requirement |\n|---|---|---|---|\n");
        for c in others {
            let _ = writeln!(
                s,
                "| `{}` | `{}` | {} | {} |",
                cell(c.clause),
                cell(c.id),
                c.area.name(),
                req(c.requirement)
            );
        }
    }
    s
}

/// The field-level matrix: coverage of the request fields per RPC and overall, then every
/// field with the cases that check it or the reason none does.
fn field_section() -> String {
    use crate::fields::{Trace, field_report, map, unchecked};
    let unchecked = unchecked();
    let r = field_report(map::FIELDS, &unchecked);
    let o = r.overall;
    let mut s = String::from("## Request fields\n\n");
    let _ = writeln!(
        s,
        "Every field of every request message of both services, nested fields included \
         (conformance/src/fields/). A field is checked when a case sends it with a value \
         whose effect it checks, or checks the runtime's answer to it \
         (conformance/src/fields/map.rs); otherwise \
         conformance/traceability/unchecked.toml says why, and whether it carries behaviour. \
         A test fails when a proto field is in neither.\n\n\
         **{} of {} behaviour-carrying request fields are checked ({:.1}%).** {} fields in \
         all: {} checked, {} carrying behaviour but unchecked, {} carrying none (Windows \
         only, deprecated, informational, copies of fields traced elsewhere).\n",
        o.checked,
        o.behaviour(),
        o.percent(),
        o.total(),
        o.checked,
        o.unchecked_behaviour + o.untraced,
        o.unchecked_other
    );
    s.push_str(
        "| service | RPC | fields | checked | unchecked (behaviour) | no behaviour | checked of behaviour |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for (service, rpc, c) in &r.per_rpc {
        let _ = writeln!(
            s,
            "| {service} | `{rpc}` | {} | {} | {} | {} | {:.0}% |",
            c.total(),
            c.checked,
            c.unchecked_behaviour + c.untraced,
            c.unchecked_other,
            c.percent()
        );
    }
    let _ = writeln!(
        s,
        "| **all** | | **{}** | **{}** | **{}** | **{}** | **{:.1}%** |\n",
        o.total(),
        o.checked,
        o.unchecked_behaviour + o.untraced,
        o.unchecked_other,
        o.percent()
    );
    s.push_str("### Every request field\n\n| field | checked by, or why not |\n|---|---|\n");
    for (f, t) in &r.rows {
        let how = match t {
            Trace::Checked(ids) => ids
                .iter()
                .map(|id| format!("`{}`", cell(id)))
                .collect::<Vec<_>>()
                .join(", "),
            Trace::Unchecked(u) => format!(
                "unchecked{}: {}",
                if u.behaviour { "" } else { " (no behaviour)" },
                cell(&u.reason)
            ),
            Trace::Untraced => "**untraced**: in neither table".to_owned(),
        };
        let _ = writeln!(s, "| `{}` | {how} |", cell(&f.path));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cases::Needs;

    fn case(id: &'static str, clause: &'static str, area: Area, requirement: Requirement) -> Case {
        Case {
            id,
            clause,
            area,
            requirement,
            needs: Needs {
                root: id.contains("root"),
                ..Needs::default()
            },
            summary: "s",
            timeout: Duration::from_secs(1),
            run: |_| Box::pin(async { Ok(String::new()) }),
        }
    }

    fn sample() -> Vec<Case> {
        vec![
            case(
                "runtime-info/v",
                "cri:RuntimeService.Version#runtime_api_version",
                Area::RuntimeInfo,
                Requirement::Required,
            ),
            case(
                "image/pull-root",
                "cri:ImageService.PullImage#image|auth",
                Area::Image,
                Requirement::Optional,
            ),
            case(
                "api-surface/all",
                "grpc:status-codes#UNIMPLEMENTED",
                Area::ApiSurface,
                Requirement::Required,
            ),
            case(
                "container/bogus",
                "cri:RuntimeService.NoSuchRpc#x",
                Area::Container,
                Requirement::Required,
            ),
        ]
    }

    #[test]
    fn clauses_are_split_into_rpc_and_detail() {
        assert_eq!(
            parse_clause("cri:RuntimeService.StopContainer#idempotent"),
            ClauseTarget::Rpc {
                service: "RuntimeService",
                rpc: "StopContainer",
                detail: "idempotent"
            }
        );
        assert_eq!(
            parse_clause("cri:ImageService.ListImages"),
            ClauseTarget::Rpc {
                service: "ImageService",
                rpc: "ListImages",
                detail: ""
            }
        );
        assert_eq!(
            parse_clause("oci-runtime:config.md#process"),
            ClauseTarget::Other {
                spec: "oci-runtime"
            }
        );
        assert_eq!(
            parse_clause("cri:pod-lifecycle#ordering"),
            ClauseTarget::Other { spec: "cri" }
        );
    }

    #[test]
    fn every_rpc_is_listed_with_its_cases_or_as_a_gap() {
        let md = to_traceability(&sample());
        for rpc in crid_api::RUNTIME_SERVICE_RPCS
            .iter()
            .chain(crid_api::IMAGE_SERVICE_RPCS)
        {
            assert_eq!(
                md.lines()
                    .filter(|l| l.starts_with(&format!("| `{rpc}` |")))
                    .count(),
                1,
                "{rpc} must have exactly one row:\n{md}"
            );
        }
        assert!(
            md.contains("| `Version` | 1 | `runtime-info/v` `#runtime_api_version` (required) |"),
            "{md}"
        );
        // The pipe in the clause detail must not split the table cell.
        assert!(
            md.contains("| `PullImage` | 1 | `image/pull-root` `#image\\|auth` (optional) |"),
            "{md}"
        );
        assert!(
            md.contains("| `StopContainer` | 0 | **gap**: no case names this RPC |"),
            "{md}"
        );
        let total = crid_api::RUNTIME_SERVICE_RPCS.len() + crid_api::IMAGE_SERVICE_RPCS.len();
        assert!(
            md.contains(&format!(
                "4 cases. 2 of {total} runtime.v1 RPCs are checked by at least one case; {} are gaps",
                total - 2
            )),
            "{md}"
        );
    }

    #[test]
    fn other_clauses_unknown_rpcs_and_area_counts() {
        let md = to_traceability(&sample());
        assert!(
            md.contains(
                "| `grpc:status-codes#UNIMPLEMENTED` | `api-surface/all` | api-surface | required |"
            ),
            "{md}"
        );
        assert!(
            md.contains("## Clauses naming an unknown RPC")
                && md.contains("| `cri:RuntimeService.NoSuchRpc#x` | `container/bogus` |"),
            "{md}"
        );
        // Every area has a row, even one without cases.
        for area in Area::ALL {
            assert!(md.contains(&format!("| {} |", area.name())), "{md}");
        }
        assert!(md.contains("| image | 1 | 0 | 1 | 1 |"), "{md}");
        assert!(md.contains("| events | 0 | 0 | 0 | 0 |"), "{md}");
        assert!(
            md.contains("| **total** | **4** | **3** | **1** | **1** |"),
            "{md}"
        );
    }
}

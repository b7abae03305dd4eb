//! Reports of a run: JUnit XML for CI, a terminal table, Markdown and an HTML matrix for
//! people, the traceability matrix for the docs, and progress lines while a run goes on.

mod entry;
pub mod grid;
pub mod html;
mod junit;
pub mod matrix;
pub mod progress;
mod text;
pub mod traceability;

pub use entry::{EXTERNAL_AREA, Entry};
pub use junit::{cell_to_junit, to_junit};
pub use matrix::MatrixReport;
pub use text::{cell_to_markdown, cell_to_table, to_markdown, to_table};
pub use traceability::to_traceability;

use crate::cases::{Requirement, Verdict};
use crate::runner::Outcome;

/// Everything known about one run against one endpoint.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The endpoint judged, e.g. `unix:///run/crid/crid.sock`.
    pub endpoint: String,
    /// `runtime_name runtime_version` as the endpoint reported it.
    pub runtime: String,
    /// The outcomes, in run order.
    pub outcomes: Vec<Outcome>,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Cases that passed.
    pub passed: usize,
    /// Required cases that failed.
    pub failed_required: usize,
    /// Optional cases that failed.
    pub failed_optional: usize,
    /// Cases that could not run here.
    pub skipped: usize,
}

impl Totals {
    /// Counts verdicts.
    pub fn of<'a>(results: impl IntoIterator<Item = (&'a Verdict, Requirement)>) -> Totals {
        let mut t = Totals::default();
        for (verdict, requirement) in results {
            match (verdict, requirement) {
                (Verdict::Pass, _) => t.passed += 1,
                (Verdict::Fail(_), Requirement::Required) => t.failed_required += 1,
                (Verdict::Fail(_), Requirement::Optional) => t.failed_optional += 1,
                (Verdict::Skip(_), _) => t.skipped += 1,
            }
        }
        t
    }

    /// Every counted result.
    pub fn total(&self) -> usize {
        self.passed + self.failed_required + self.failed_optional + self.skipped
    }

    /// Failures, required and optional.
    pub fn failed(&self) -> usize {
        self.failed_required + self.failed_optional
    }
}

impl RunReport {
    /// Counts outcomes.
    pub fn totals(&self) -> Totals {
        Totals::of(
            self.outcomes
                .iter()
                .map(|o| (&o.verdict, o.case.requirement)),
        )
    }

    /// True when no required case failed: the run's exit status.
    pub fn passed(&self) -> bool {
        self.totals().failed_required == 0
    }
}

/// One cell of a matrix: the results against one endpoint with one runtime handler, from
/// the catalogue and from any external suite folded in.
#[derive(Debug, Clone)]
pub struct CellReport {
    /// The endpoint judged.
    pub endpoint: String,
    /// `runtime_name runtime_version` as the endpoint reported it.
    pub runtime: String,
    /// The runtime handler pods ran with; empty for the endpoint's default.
    pub handler: String,
    /// Where the endpoint ran when not on this host: a VM fixture's cell name
    /// (`vm-debian12-cgroupv2`); empty for this host.
    pub fixture: String,
    /// The results, in run order.
    pub entries: Vec<Entry>,
    /// The `runtime` of the baseline the results were read against, when one was given
    /// (`run --baseline`): then a failure it expects does not fail the cell.
    pub baseline: Option<String>,
}

impl CellReport {
    /// Counts entries.
    pub fn totals(&self) -> Totals {
        Totals::of(self.entries.iter().map(|e| (&e.verdict, e.requirement)))
    }

    /// True when no required check failed, leaving out the failures the run's baseline
    /// expects (all of them count when there is no baseline).
    pub fn passed(&self) -> bool {
        !self
            .entries
            .iter()
            .any(|e| e.is_required_failure() && e.expected.is_none())
    }

    /// The entries that failed, in run order.
    pub fn failures(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.verdict, crate::cases::Verdict::Fail(_)))
            .collect()
    }

    /// The failures the baseline does not expect, in run order.
    pub fn unexpected_failures(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.is_unexpected_failure())
            .collect()
    }

    /// The failures and skips the baseline expects, in run order (empty without one).
    pub fn expected_non_passes(&self) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.expected.is_some())
            .collect()
    }

    /// The verdict in words: `PASS` or `FAIL` with why, reading the baseline when there
    /// is one.
    pub fn verdict_line(&self) -> String {
        let required = self
            .entries
            .iter()
            .filter(|e| e.is_required_failure() && e.expected.is_none())
            .count();
        let expected = self.expected_non_passes().len();
        match (&self.baseline, required) {
            (None, 0) => "PASS: no required case failed".to_owned(),
            (None, n) => format!("FAIL: {n} required case(s) failed"),
            (Some(b), 0) => format!(
                "PASS: no required case failed unexpectedly; {expected} failure(s) or skip(s) \
                 expected by the baseline of {b}"
            ),
            (Some(b), n) => format!(
                "FAIL: {n} required case(s) failed that the baseline of {b} does not expect \
                 ({expected} expected)"
            ),
        }
    }

    /// The runtime as people read it, with the fixture it ran on when not this host:
    /// `crid 0.1.0 (vm-debian12-cgroupv2)`.
    pub fn runtime_label(&self) -> String {
        if self.fixture.is_empty() {
            self.runtime.clone()
        } else {
            format!("{} ({})", self.runtime, self.fixture)
        }
    }

    /// The handler as people read it: `(default)` for the empty name.
    pub fn handler_label(&self) -> &str {
        if self.handler.is_empty() {
            "(default)"
        } else {
            &self.handler
        }
    }
}

impl From<&RunReport> for CellReport {
    fn from(r: &RunReport) -> Self {
        CellReport {
            endpoint: r.endpoint.clone(),
            runtime: r.runtime.clone(),
            handler: String::new(),
            fixture: String::new(),
            entries: r.outcomes.iter().map(Entry::from).collect(),
            baseline: None,
        }
    }
}

/// The closing line of a run, in the plain form CI tooling reads: `N passed, N failed, N skipped`.
pub fn closing_line(t: Totals) -> String {
    format!(
        "conformance: {} passed, {} failed, {} skipped",
        t.passed,
        t.failed(),
        t.skipped
    )
}

/// The name of a requirement in reports.
pub fn requirement_name(r: Requirement) -> &'static str {
    match r {
        Requirement::Required => "required",
        Requirement::Optional => "optional",
    }
}

#[cfg(test)]
pub(crate) mod sample {
    use std::time::Duration;

    use super::*;
    use crate::cases::{Area, Case, Needs};

    fn case(id: &'static str, requirement: Requirement) -> Case {
        Case {
            id,
            clause: "cri:RuntimeService.Status#status.conditions",
            area: Area::RuntimeInfo,
            requirement,
            needs: Needs::default(),
            summary: "Status reports <both> & \"conditions\"",
            timeout: Duration::from_secs(1),
            run: |_| Box::pin(async { Ok(String::new()) }),
        }
    }

    /// One pass, one required failure, one optional failure, one skip.
    pub(crate) fn report() -> RunReport {
        let o = |id, requirement, verdict, note: &str| Outcome {
            case: case(id, requirement),
            verdict,
            note: note.into(),
            duration: Duration::from_millis(12),
        };
        RunReport {
            endpoint: "unix:///run/x.sock".into(),
            runtime: "crid 0.1.0".into(),
            outcomes: vec![
                o(
                    "runtime-info/a",
                    Requirement::Required,
                    Verdict::Pass,
                    "RuntimeReady=true",
                ),
                o(
                    "runtime-info/b",
                    Requirement::Required,
                    Verdict::Fail("got <nothing> & less".into()),
                    "",
                ),
                o(
                    "runtime-info/c",
                    Requirement::Optional,
                    Verdict::Fail("no info".into()),
                    "",
                ),
                o(
                    "runtime-info/d",
                    Requirement::Required,
                    Verdict::Skip("needs root".into()),
                    "",
                ),
            ],
        }
    }

    #[test]
    fn totals_and_exit_status() {
        let r = report();
        assert_eq!(
            r.totals(),
            Totals {
                passed: 1,
                failed_required: 1,
                failed_optional: 1,
                skipped: 1
            }
        );
        assert!(!r.passed());
        assert_eq!(
            closing_line(r.totals()),
            "conformance: 1 passed, 2 failed, 1 skipped"
        );
    }
}

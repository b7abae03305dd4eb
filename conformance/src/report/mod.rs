//! Reports of a run: JUnit XML for CI, a terminal table and Markdown for people.

mod junit;
mod text;
pub mod traceability;

pub use junit::to_junit;
pub use text::{to_markdown, to_table};
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

impl RunReport {
    /// Counts outcomes.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for o in &self.outcomes {
            match (&o.verdict, o.case.requirement) {
                (Verdict::Pass, _) => t.passed += 1,
                (Verdict::Fail(_), Requirement::Required) => t.failed_required += 1,
                (Verdict::Fail(_), Requirement::Optional) => t.failed_optional += 1,
                (Verdict::Skip(_), _) => t.skipped += 1,
            }
        }
        t
    }

    /// True when no required case failed: the run's exit status.
    pub fn passed(&self) -> bool {
        self.totals().failed_required == 0
    }
}

/// The closing line of a run, in the plain form CI tooling reads: `N passed, N failed, N skipped`.
pub fn closing_line(t: Totals) -> String {
    format!(
        "conformance: {} passed, {} failed, {} skipped",
        t.passed,
        t.failed_required + t.failed_optional,
        t.skipped
    )
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

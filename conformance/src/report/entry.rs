//! The report's unit: one checked behaviour and its verdict, owned, so that results of the
//! built-in catalogue and of external suites (critest, node e2e) share every renderer.

use std::time::Duration;

use crate::cases::{Requirement, Verdict};
use crate::runner::Outcome;

/// The area label of results folded in from external suites.
pub const EXTERNAL_AREA: &str = "external";

/// One result in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Stable identifier: a case id, or an external suite's test name.
    pub id: String,
    /// The clause checked, e.g. `cri:RuntimeService.Version#runtime_api_version` or
    /// `critest:[sig-node] Runtime info runtime should support returning runtime info`.
    pub clause: String,
    /// Report row: an [`crate::cases::Area`] name, or [`EXTERNAL_AREA`].
    pub area: String,
    /// Whether a failure fails the run.
    pub requirement: Requirement,
    /// One line: the behaviour checked.
    pub summary: String,
    /// Pass, fail or skip, with the reason.
    pub verdict: Verdict,
    /// What a passing check observed; empty otherwise.
    pub note: String,
    /// Wall time.
    pub duration: Duration,
    /// When the run was read against a baseline and this non-pass is one it expects (with
    /// the message it must hold): the baseline's reason. `None` otherwise.
    pub expected: Option<String>,
}

impl From<&Outcome> for Entry {
    fn from(o: &Outcome) -> Self {
        Entry {
            id: o.case.id.to_owned(),
            clause: o.case.clause.to_owned(),
            area: o.case.area.name().to_owned(),
            requirement: o.case.requirement,
            summary: o.case.summary.to_owned(),
            verdict: o.verdict.clone(),
            note: o.note.clone(),
            duration: o.duration,
            expected: None,
        }
    }
}

impl Entry {
    /// True for a failed required check: what makes a run fail.
    pub fn is_required_failure(&self) -> bool {
        matches!(self.verdict, Verdict::Fail(_)) && self.requirement == Requirement::Required
    }

    /// True for a failed check the run's baseline does not expect.
    pub fn is_unexpected_failure(&self) -> bool {
        matches!(self.verdict, Verdict::Fail(_)) && self.expected.is_none()
    }

    /// The failure's reason on one line of at most `max` characters; empty for a pass.
    pub fn reason_line(&self, max: usize) -> String {
        match &self.verdict {
            Verdict::Fail(why) | Verdict::Skip(why) => super::text::one_line(why, max),
            Verdict::Pass => String::new(),
        }
    }
}

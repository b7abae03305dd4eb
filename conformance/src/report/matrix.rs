//! The matrix: the suite's results across endpoints and runtime handlers, one cell each,
//! summarised as areas × cells (Markdown here, HTML in [`super::html`]).

use std::fmt::Write;

use super::text::one_line;
use super::{CellReport, Totals, requirement_name};
use crate::baseline::{RuntimeDifference, differences_markdown};
use crate::cases::{Area, Verdict};

/// Every cell of a matrix run.
#[derive(Debug, Clone)]
pub struct MatrixReport {
    /// When the run started, as people read it (UTC).
    pub generated: String,
    /// The cells, in run order.
    pub cells: Vec<CellReport>,
    /// Where the run's runtime and another differ, from their two baselines
    /// (`run --baseline A --compare-baseline B`); empty when only one is known.
    pub differences: Vec<RuntimeDifference>,
}

impl MatrixReport {
    /// The rows: every catalogue area in report order, then any other label the cells
    /// carry (results of external suites), in order of appearance.
    pub fn areas(&self) -> Vec<String> {
        let mut rows: Vec<String> = Area::ALL.iter().map(|a| a.name().to_owned()).collect();
        for e in self.cells.iter().flat_map(|c| &c.entries) {
            if !rows.contains(&e.area) {
                rows.push(e.area.clone());
            }
        }
        rows
    }

    /// Counts of one area in one cell.
    pub fn area_totals(cell: &CellReport, area: &str) -> Totals {
        Totals::of(
            cell.entries
                .iter()
                .filter(|e| e.area == area)
                .map(|e| (&e.verdict, e.requirement)),
        )
    }

    /// Counts over every cell.
    pub fn totals(&self) -> Totals {
        Totals::of(
            self.cells
                .iter()
                .flat_map(|c| &c.entries)
                .map(|e| (&e.verdict, e.requirement)),
        )
    }

    /// True when no required check failed in any cell, leaving out failures a cell's
    /// baseline expects: the exit status.
    pub fn passed(&self) -> bool {
        self.cells.iter().all(CellReport::passed)
    }

    /// The verdict in words: the one cell's, or counted over the cells.
    pub fn verdict_line(&self) -> String {
        if let [one] = self.cells.as_slice() {
            return one.verdict_line();
        }
        let unexpected = self
            .cells
            .iter()
            .flat_map(|c| &c.entries)
            .filter(|e| e.is_required_failure() && e.expected.is_none())
            .count();
        let expected = self
            .cells
            .iter()
            .flat_map(|c| &c.entries)
            .filter(|e| e.expected.is_some())
            .count();
        match (self.cells.iter().any(|c| c.baseline.is_some()), unexpected) {
            (false, 0) => "PASS: no required case failed".to_owned(),
            (false, n) => format!("FAIL: {n} required case(s) failed"),
            (true, 0) => format!(
                "PASS: no required case failed unexpectedly; {expected} failure(s) or skip(s) \
                 expected by the cells' baselines"
            ),
            (true, n) => format!(
                "FAIL: {n} required case(s) failed that the cells' baselines do not expect \
                 ({expected} expected)"
            ),
        }
    }

    /// The file name of cell `index`'s JUnit XML, e.g. `junit-1-containerd-runc.xml`.
    pub fn junit_file_name(index: usize, cell: &CellReport) -> String {
        let runtime = cell.runtime.split_whitespace().next().unwrap_or("runtime");
        let handler = if cell.handler.is_empty() {
            "default"
        } else {
            &cell.handler
        };
        let on = if cell.fixture.is_empty() {
            String::new()
        } else {
            format!("-{}", cell.fixture)
        };
        format!(
            "junit-{}-{}.xml",
            index + 1,
            slug(&format!("{runtime}-{handler}{on}"))
        )
    }

    /// A short column heading: `containerd 1.6.20 · runc`.
    pub fn cell_label(cell: &CellReport) -> String {
        format!("{} · {}", cell.runtime_label(), cell.handler_label())
    }

    /// The Markdown summary: cells, the areas × cells grid, then every failure.
    pub fn to_markdown(&self) -> String {
        let t = self.totals();
        let mut s = String::from("# CRI conformance matrix\n\n");
        let verdict = match self.verdict_line().split_once(": ") {
            Some((word, why)) => format!("**{word}**: {why}"),
            None => self.verdict_line(),
        };
        let _ = writeln!(
            s,
            "Generated {}. {verdict}. {} passed, {} failed ({} optional), {} skipped across {} cell(s).\n",
            self.generated,
            t.passed,
            t.failed(),
            t.failed_optional,
            t.skipped,
            self.cells.len()
        );
        s.push_str("## Cells\n\n| # | runtime | handler | endpoint | passed | failed (required) | failed (optional) | skipped | JUnit |\n|---:|---|---|---|---:|---:|---:|---:|---|\n");
        for (i, c) in self.cells.iter().enumerate() {
            let ct = c.totals();
            let _ = writeln!(
                s,
                "| {} | {} | `{}` | `{}` | {} | {} | {} | {} | [{f}]({f}) |",
                i + 1,
                md(&c.runtime_label()),
                md(c.handler_label()),
                md(&c.endpoint),
                ct.passed,
                ct.failed_required,
                ct.failed_optional,
                ct.skipped,
                f = Self::junit_file_name(i, c)
            );
        }
        s.push_str("\n## Areas\n\nEach cell: passed/run, then failures (required, optional) and skips.\n\n| area |");
        for (i, _) in self.cells.iter().enumerate() {
            let _ = write!(s, " #{} |", i + 1);
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(self.cells.len()));
        s.push('\n');
        for area in self.areas() {
            let _ = write!(s, "| {area} |");
            for c in &self.cells {
                let _ = write!(s, " {} |", grid_text(Self::area_totals(c, &area)));
            }
            s.push('\n');
        }
        s.push_str("\n## Failures\n\n");
        let mut any = false;
        for (i, c) in self.cells.iter().enumerate() {
            let failed = c.unexpected_failures();
            if failed.is_empty() {
                continue;
            }
            any = true;
            let _ = writeln!(s, "### #{} {}\n", i + 1, md(&Self::cell_label(c)));
            for e in failed {
                let why = match &e.verdict {
                    Verdict::Fail(w) => w.as_str(),
                    _ => "",
                };
                let _ = writeln!(
                    s,
                    "- **{}** `{}` (`{}`): {}",
                    requirement_name(e.requirement),
                    md(&e.id),
                    md(&e.clause),
                    md(&one_line(why, 300))
                );
            }
            s.push('\n');
        }
        if !any {
            s.push_str("None.\n");
        }
        if self.cells.iter().any(|c| c.baseline.is_some()) {
            s.push_str("\n## Expected failures and skips (in the baseline)\n\n");
            let mut any = false;
            for (i, c) in self.cells.iter().enumerate() {
                let expected = c.expected_non_passes();
                if expected.is_empty() {
                    continue;
                }
                any = true;
                let _ = writeln!(
                    s,
                    "### #{} {} (baseline of {})\n",
                    i + 1,
                    md(&Self::cell_label(c)),
                    md(c.baseline.as_deref().unwrap_or_default())
                );
                for e in expected {
                    let _ = writeln!(
                        s,
                        "- `{}` (`{}`): {}",
                        md(&e.id),
                        md(&e.clause),
                        md(&one_line(e.expected.as_deref().unwrap_or_default(), 400))
                    );
                }
                s.push('\n');
            }
            if !any {
                s.push_str("None.\n");
            }
        }
        if !self.differences.is_empty() {
            s.push_str("\n## Differences between runtimes\n\n");
            s.push_str(&differences_markdown(&self.differences));
        }
        s
    }
}

/// `8/9 ✗1` style text for a grid cell; `–` when the area has no results.
fn grid_text(t: Totals) -> String {
    if t.total() == 0 {
        return "–".to_owned();
    }
    let run = t.total() - t.skipped;
    let mut s = format!("{}/{run}", t.passed);
    if t.failed_required > 0 {
        let _ = write!(s, " ✗{}", t.failed_required);
    }
    if t.failed_optional > 0 {
        let _ = write!(s, " (✗{} opt)", t.failed_optional);
    }
    if t.skipped > 0 {
        let _ = write!(s, " ⊘{}", t.skipped);
    }
    s
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'")
}

/// Lower-case letters, digits and single dashes: safe in file names.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cases::Requirement;
    use crate::report::EXTERNAL_AREA;
    use crate::report::Entry;

    pub(crate) fn entry(id: &str, area: &str, requirement: Requirement, verdict: Verdict) -> Entry {
        Entry {
            id: id.to_owned(),
            clause: format!("cri:RuntimeService.Version#{id}"),
            area: area.to_owned(),
            requirement,
            summary: "checks <x> & y".to_owned(),
            verdict,
            note: String::new(),
            duration: Duration::from_millis(5),
            expected: None,
        }
    }

    /// Two cells: one all green with an external result, one with a required and an
    /// optional failure (with markup in the message) and a skip.
    pub(crate) fn sample() -> MatrixReport {
        use Requirement::{Optional, Required};
        MatrixReport {
            generated: "2026-01-02 03:04:05 UTC".into(),
            differences: Vec::new(),
            cells: vec![
                CellReport {
                    endpoint: "unix:///run/containerd/containerd.sock".into(),
                    runtime: "containerd 1.6.20".into(),
                    handler: "runc".into(),
                    fixture: String::new(),
                    baseline: None,
                    entries: vec![
                        entry("runtime-info/a", "runtime-info", Required, Verdict::Pass),
                        entry("runtime-info/b", "runtime-info", Optional, Verdict::Pass),
                        entry("[sig-node] ok", EXTERNAL_AREA, Required, Verdict::Pass),
                    ],
                },
                CellReport {
                    endpoint: "unix:///run/crid/crid.sock".into(),
                    runtime: "crid 0.1.0".into(),
                    handler: String::new(),
                    fixture: "vm-guest".into(),
                    baseline: None,
                    entries: vec![
                        entry("runtime-info/a", "runtime-info", Required, Verdict::Pass),
                        entry(
                            "runtime-info/b",
                            "runtime-info",
                            Required,
                            Verdict::Fail("<script>alert(1)</script> | & \"q\"".into()),
                        ),
                        entry(
                            "image/c",
                            "image",
                            Optional,
                            Verdict::Fail("no digest".into()),
                        ),
                        entry(
                            "image/d",
                            "image",
                            Required,
                            Verdict::Skip("needs root".into()),
                        ),
                    ],
                },
            ],
        }
    }

    #[test]
    fn rows_are_every_area_then_external_labels() {
        let areas = sample().areas();
        assert_eq!(areas.len(), Area::ALL.len() + 1);
        assert_eq!(areas[0], "runtime-info");
        assert_eq!(areas.last().map(String::as_str), Some(EXTERNAL_AREA));
    }

    #[test]
    fn counts_per_area_and_verdict() {
        let m = sample();
        let t = MatrixReport::area_totals(&m.cells[1], "image");
        assert_eq!(
            t,
            Totals {
                passed: 0,
                failed_required: 0,
                failed_optional: 1,
                skipped: 1
            }
        );
        assert_eq!(grid_text(t), "0/1 (✗1 opt) ⊘1");
        assert_eq!(
            grid_text(MatrixReport::area_totals(&m.cells[1], "runtime-info")),
            "1/2 ✗1"
        );
        assert_eq!(
            grid_text(MatrixReport::area_totals(&m.cells[0], "events")),
            "–"
        );
        assert!(!m.passed());
        assert!(m.cells[0].passed());
    }

    #[test]
    fn markdown_summary_lists_cells_grid_and_failures() {
        let md = sample().to_markdown();
        assert!(md.contains("**FAIL**: 1 required case(s) failed"), "{md}");
        assert!(
            md.contains("| 2 | crid 0.1.0 (vm-guest) | `(default)` | `unix:///run/crid/crid.sock` | 1 | 1 | 1 | 1 | [junit-2-crid-default-vm-guest.xml](junit-2-crid-default-vm-guest.xml) |"),
            "{md}"
        );
        assert!(md.contains("| runtime-info | 2/2 | 1/2 ✗1 |"), "{md}");
        assert!(md.contains("| external | 1/1 | – |"), "{md}");
        // Pipes in messages are escaped so the table and list stay intact.
        assert!(md.contains("- **required** `runtime-info/b`"), "{md}");
        assert!(md.contains("\\| & \"q\""), "{md}");
        assert!(md.contains("- **optional** `image/c`"), "{md}");
    }

    #[test]
    fn junit_file_names_are_safe_and_distinct() {
        let m = sample();
        assert_eq!(
            MatrixReport::junit_file_name(0, &m.cells[0]),
            "junit-1-containerd-runc.xml"
        );
        let mut odd = m.cells[0].clone();
        odd.runtime = "Some/Runtime v1".into();
        odd.handler = "../kata qemu".into();
        assert_eq!(
            MatrixReport::junit_file_name(6, &odd),
            "junit-7-some-runtime-..-kata-qemu.xml"
        );
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a time since the Unix epoch, without a date library.
pub fn format_utc(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days, for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod time_tests {
    use std::time::Duration;

    use super::format_utc;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(Duration::ZERO), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_utc(Duration::from_secs(951_782_400 + 3_661)),
            "2000-02-29 01:01:01 UTC"
        );
        assert_eq!(
            format_utc(Duration::from_secs(1_795_856_523)),
            "2026-11-28 09:02:03 UTC"
        );
    }
}

//! Reports for people: a terminal table and a Markdown page.

use std::fmt::Write;

use super::{CellReport, Entry, RunReport, closing_line};
use crate::cases::{Requirement, Verdict};

fn tag(e: &Entry) -> &'static str {
    match (&e.verdict, &e.expected) {
        (Verdict::Fail(_), Some(_)) => "fail (expected)",
        (Verdict::Skip(_), Some(_)) => "skip (expected)",
        _ => verdict_tag(&e.verdict, e.requirement),
    }
}

/// The failures and skips the baseline expects, one line each with its reason; empty
/// without a baseline.
fn expected_lines(report: &CellReport, bullet: &str, width: usize) -> String {
    let mut s = String::new();
    for e in report.expected_non_passes() {
        let _ = writeln!(
            s,
            "{bullet}{}: {}",
            e.id,
            one_line(e.expected.as_deref().unwrap_or_default(), width)
        );
    }
    s
}

fn verdict_tag(v: &Verdict, r: Requirement) -> &'static str {
    match (v, r) {
        (Verdict::Pass, _) => "PASS",
        (Verdict::Fail(_), Requirement::Required) => "FAIL",
        (Verdict::Fail(_), Requirement::Optional) => "fail (optional)",
        (Verdict::Skip(_), _) => "skip",
    }
}

fn detail(v: &Verdict, note: &str) -> String {
    match v {
        Verdict::Pass => note.to_owned(),
        Verdict::Fail(why) | Verdict::Skip(why) => why.clone(),
    }
}

/// A fixed-width table for the terminal, ending with the plain closing line.
pub fn to_table(report: &RunReport) -> String {
    cell_to_table(&CellReport::from(report))
}

/// [`to_table`] for one cell of a matrix or an external suite's results.
pub fn cell_to_table(report: &CellReport) -> String {
    let id_w = report
        .entries
        .iter()
        .map(|o| o.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut s = String::new();
    let handler = if report.handler.is_empty() {
        String::new()
    } else {
        format!(", handler {}", report.handler)
    };
    let _ = writeln!(
        s,
        "Conformance of {} ({}{handler})",
        report.runtime, report.endpoint
    );
    let _ = writeln!(
        s,
        "{:<15}  {:<id_w$}  {:>7}  DETAIL",
        "RESULT", "CASE", "TIME"
    );
    for o in &report.entries {
        let _ = writeln!(
            s,
            "{:<15}  {:<id_w$}  {:>6.0}ms  {}",
            tag(o),
            o.id,
            o.duration.as_secs_f64() * 1000.0,
            one_line(&detail(&o.verdict, &o.note), 100)
        );
    }
    s.push('\n');
    if let Some(b) = &report.baseline {
        let unexpected = report.unexpected_failures();
        let _ = writeln!(s, "Unexpected failures ({}):", unexpected.len());
        for e in unexpected {
            let _ = writeln!(s, "  {} ({})", e.id, verdict_tag(&e.verdict, e.requirement));
        }
        let expected = expected_lines(report, "  ", 160);
        let _ = writeln!(
            s,
            "Expected by the baseline of {b} ({}):",
            report.expected_non_passes().len()
        );
        s.push_str(&expected);
        let _ = writeln!(s, "{}", report.verdict_line());
    }
    s.push_str(&closing_line(report.totals()));
    s.push('\n');
    s
}

/// A Markdown page: totals, then every case with its clause and what was seen.
pub fn to_markdown(report: &RunReport) -> String {
    cell_to_markdown(&CellReport::from(report))
}

/// [`to_markdown`] for one cell of a matrix or an external suite's results.
pub fn cell_to_markdown(report: &CellReport) -> String {
    let t = report.totals();
    let mut s = String::new();
    let _ = writeln!(s, "# Conformance report: {}\n", report.runtime);
    let _ = writeln!(s, "Endpoint: `{}`\n", report.endpoint);
    if !report.handler.is_empty() {
        let _ = writeln!(s, "Runtime handler: `{}`\n", report.handler);
    }
    if report.baseline.is_some() {
        let verdict = report.verdict_line();
        let (word, why) = verdict.split_once(": ").unwrap_or((&verdict, ""));
        let _ = writeln!(s, "**{word}**: {why}\n");
    }
    let _ = writeln!(
        s,
        "| passed | failed (required) | failed (optional) | skipped |\n|---|---|---|---|\n| {} | {} | {} | {} |\n",
        t.passed, t.failed_required, t.failed_optional, t.skipped
    );
    let _ = writeln!(s, "| result | case | clause | detail |\n|---|---|---|---|");
    for o in &report.entries {
        let _ = writeln!(
            s,
            "| {} | `{}` | `{}` | {} |",
            tag(o),
            o.id,
            o.clause.replace('|', "\\|"),
            one_line(&detail(&o.verdict, &o.note), 200).replace('|', "\\|")
        );
    }
    if let Some(b) = &report.baseline {
        let unexpected = report.unexpected_failures();
        let _ = writeln!(s, "\n## Unexpected failures\n");
        if unexpected.is_empty() {
            s.push_str("None.\n");
        }
        for e in unexpected {
            let _ = writeln!(
                s,
                "- `{}` ({}): {}",
                e.id,
                super::requirement_name(e.requirement),
                one_line(&detail(&e.verdict, &e.note), 300)
            );
        }
        let _ = writeln!(s, "\n## Expected failures and skips (baseline of {b})\n");
        let expected = expected_lines(report, "- ", 400);
        if expected.is_empty() {
            s.push_str("None.\n");
        }
        s.push_str(&expected);
    }
    s
}

pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn table_lists_every_case_and_closes_with_counts() {
        let t = to_table(&sample::report());
        for id in [
            "runtime-info/a",
            "runtime-info/b",
            "runtime-info/c",
            "runtime-info/d",
        ] {
            assert!(t.contains(id), "{t}");
        }
        assert!(t.contains("fail (optional)"), "{t}");
        assert!(
            t.trim_end()
                .ends_with("conformance: 1 passed, 2 failed, 1 skipped"),
            "{t}"
        );
    }

    #[test]
    fn markdown_has_totals_and_escapes_pipes() {
        let mut r = sample::report();
        r.outcomes[0].note = "a | b".into();
        let md = to_markdown(&r);
        assert!(md.contains("| 1 | 1 | 1 | 1 |"), "{md}");
        assert!(md.contains("a \\| b"), "{md}");
    }

    #[test]
    fn long_details_are_cut() {
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdefghijkl", 5).chars().count(), 5);
    }
}

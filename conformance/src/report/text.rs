//! Reports for people: a terminal table and a Markdown page.

use std::fmt::Write;

use super::{CellReport, RunReport, closing_line};
use crate::cases::{Requirement, Verdict};

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
            verdict_tag(&o.verdict, o.requirement),
            o.id,
            o.duration.as_secs_f64() * 1000.0,
            one_line(&detail(&o.verdict, &o.note), 100)
        );
    }
    s.push('\n');
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
            verdict_tag(&o.verdict, o.requirement),
            o.id,
            o.clause.replace('|', "\\|"),
            one_line(&detail(&o.verdict, &o.note), 200).replace('|', "\\|")
        );
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

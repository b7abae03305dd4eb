//! The matrix as one self-contained HTML page: inline CSS, no script, no external asset, so
//! it can be archived as a CI artifact and opened anywhere. Areas are rows, cells (endpoint
//! × runtime handler) are columns; each square is coloured by its worst result, and every
//! failure is listed below with its clause and message.

use std::fmt::Write;

use super::matrix::MatrixReport;
use super::{CellReport, Entry, Totals, requirement_name};
use crate::cases::{Requirement, Verdict};

const STYLE: &str = r#"
:root{--ok:#1a7f37;--ok-bg:#dafbe1;--bad:#cf222e;--bad-bg:#ffebe9;--warn:#9a6700;--warn-bg:#fff8c5;
--skip:#57606a;--skip-bg:#eaeef2;--line:#d0d7de;--fg:#1f2328;--muted:#59636e}
*{box-sizing:border-box}
body{margin:0;padding:28px 36px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
.meta{color:var(--muted);margin:0 0 14px}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.verdict{display:inline-block;padding:8px 14px;border-radius:6px;font-weight:600;font-size:15px;margin-right:14px}
.verdict.pass{background:var(--ok-bg);color:var(--ok)}.verdict.fail{background:var(--bad-bg);color:var(--bad)}
.chips{display:inline-flex;gap:8px;flex-wrap:wrap;vertical-align:middle}
.chip{padding:3px 10px;border-radius:12px;font-size:13px;font-weight:500}
.chip.ok{background:var(--ok-bg);color:var(--ok)}.chip.bad{background:var(--bad-bg);color:var(--bad)}
.chip.warn{background:var(--warn-bg);color:var(--warn)}.chip.skip,.chip.zero{background:var(--skip-bg);color:var(--skip)}
table{border-collapse:separate;border-spacing:0}
.grid th,.grid td{border-bottom:1px solid var(--line);padding:0}
.grid thead th{vertical-align:bottom;text-align:left;padding:8px 10px;font-weight:normal;border-bottom:2px solid var(--line);width:220px;min-width:160px}
.grid thead th .rt{font-weight:600;display:block}.grid thead th .h{display:block;color:var(--muted)}
.grid thead th code{color:var(--muted);font-size:11px;word-break:break-all}
.grid tbody th{text-align:left;padding:6px 16px 6px 0;font-weight:500;white-space:nowrap}
.sq{display:block;margin:3px;padding:6px 10px;border-radius:5px;min-height:44px}
.sq .n{font-size:16px;font-weight:600;display:block}.sq .d{font-size:12px;display:block}
.sq.ok{background:var(--ok-bg);color:var(--ok)}.sq.bad{background:var(--bad-bg);color:var(--bad)}
.sq.warn{background:var(--warn-bg);color:var(--warn)}.sq.skip{background:var(--skip-bg);color:var(--skip)}
.sq.none{color:#8c959f;min-height:0;padding:3px 10px;font-size:12px;background:repeating-linear-gradient(135deg,#f6f8fa 0 6px,#fff 6px 12px)}
.grid tr.total th{font-weight:700}.grid tr.total .sq{outline:2px solid rgba(0,0,0,.08)}
.legend{color:var(--muted);font-size:12.5px;margin-top:10px}
.legend span{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-1px;margin:0 4px 0 12px}
.list{width:100%;max-width:1400px;table-layout:fixed}
.list td{border-top:1px solid var(--line);padding:7px 10px;vertical-align:top}
.list td.v{white-space:nowrap;width:130px}.list td.id{width:40%}
.list .clause{color:var(--muted);font-size:12px;overflow-wrap:anywhere}.list .req{color:var(--muted);font-size:11.5px;white-space:nowrap}
.list code{overflow-wrap:anywhere}
.list pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.bad{background:var(--bad-bg);color:var(--bad)}.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.ok{background:var(--ok-bg);color:var(--ok)}.badge.skip{background:var(--skip-bg);color:var(--skip)}
details{margin:8px 0}summary{cursor:pointer;font-weight:500}
.none-msg{color:var(--ok);font-weight:500}
"#;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour class of a set of results: its worst verdict.
fn class(t: Totals) -> &'static str {
    if t.total() == 0 {
        "none"
    } else if t.failed_required > 0 {
        "bad"
    } else if t.failed_optional > 0 {
        "warn"
    } else if t.passed == 0 {
        "skip"
    } else {
        "ok"
    }
}

fn square(t: Totals) -> String {
    let cls = class(t);
    if t.total() == 0 {
        return "<span class=\"sq none\">– no cases</span>".to_owned();
    }
    let run = t.total() - t.skipped;
    let mut detail = Vec::new();
    if t.failed_required > 0 {
        detail.push(format!("{} failed", t.failed_required));
    }
    if t.failed_optional > 0 {
        detail.push(format!("{} optional failed", t.failed_optional));
    }
    if t.skipped > 0 {
        detail.push(format!("{} skipped", t.skipped));
    }
    if detail.is_empty() {
        detail.push("all passed".to_owned());
    }
    format!(
        "<span class=\"sq {cls}\" title=\"{} passed, {} failed (required), {} failed (optional), {} skipped\"><span class=\"n\">{}/{run}</span><span class=\"d\">{}</span></span>",
        t.passed,
        t.failed_required,
        t.failed_optional,
        t.skipped,
        t.passed,
        detail.join(" · ")
    )
}

fn verdict_badge(e: &Entry) -> &'static str {
    if e.expected.is_some() {
        return "<span class=\"badge skip\">expected</span>";
    }
    match (&e.verdict, e.requirement) {
        (Verdict::Pass, _) => "<span class=\"badge ok\">pass</span>",
        (Verdict::Fail(_), Requirement::Required) => "<span class=\"badge bad\">FAIL</span>",
        (Verdict::Fail(_), Requirement::Optional) => {
            "<span class=\"badge warn\">fail (optional)</span>"
        }
        (Verdict::Skip(_), _) => "<span class=\"badge skip\">skip</span>",
    }
}

fn entry_row(e: &Entry) -> String {
    let detail = match &e.verdict {
        Verdict::Pass => e.note.as_str(),
        Verdict::Fail(w) | Verdict::Skip(w) => w.as_str(),
    };
    format!(
        "<tr><td class=\"v\">{}</td><td class=\"id\"><code>{}</code><div class=\"clause\">{} <span class=\"req\">· {}</span></div></td><td><pre>{}</pre></td></tr>\n",
        verdict_badge(e),
        esc(&e.id),
        esc(&e.clause),
        requirement_name(e.requirement),
        esc(detail)
    )
}

fn cell_heading(i: usize, c: &CellReport) -> String {
    format!(
        "#{} <span class=\"rt\">{}</span><span class=\"h\">handler {}</span><code>{}</code>",
        i + 1,
        esc(&c.runtime_label()),
        esc(c.handler_label()),
        esc(&c.endpoint)
    )
}

/// Renders the matrix as a standalone HTML page.
pub fn to_html(m: &MatrixReport) -> String {
    let t = m.totals();
    let mut s =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    s.push_str("<title>CRI conformance matrix</title>\n<style>");
    s.push_str(STYLE);
    s.push_str("</style>\n</head>\n<body>\n<header>\n<h1>CRI conformance matrix</h1>\n");
    let runtimes: Vec<String> = {
        let mut r: Vec<String> = m.cells.iter().map(|c| c.runtime_label()).collect();
        r.dedup();
        r
    };
    let _ = writeln!(
        s,
        "<p class=\"meta\">Generated {} · {} · {} cell(s) · {} results</p>",
        esc(&m.generated),
        esc(&runtimes.join(", ")),
        m.cells.len(),
        t.total()
    );
    let verdict = m.verdict_line();
    let (word, why) = verdict.split_once(": ").unwrap_or((&verdict, ""));
    let _ = write!(
        s,
        "<div class=\"verdict {}\">{} · {}</div>",
        if m.passed() { "pass" } else { "fail" },
        esc(word),
        esc(why)
    );
    // A zero count is grey: colour only draws the eye to what is there.
    let chip = |n: usize, cls: &str, what: &str| {
        let cls = if n == 0 { "zero" } else { cls };
        format!("<span class=\"chip {cls}\">{n} {what}</span>")
    };
    let _ = writeln!(
        s,
        "<span class=\"chips\">{}{}{}{}</span>\n</header>",
        chip(t.passed, "ok", "passed"),
        chip(t.failed_required, "bad", "required failed"),
        chip(t.failed_optional, "warn", "optional failed"),
        chip(t.skipped, "skip", "skipped")
    );

    s.push_str("<h2>Results by area</h2>\n<table class=\"grid\">\n<thead><tr><th></th>");
    for (i, c) in m.cells.iter().enumerate() {
        let _ = write!(s, "<th>{}</th>", cell_heading(i, c));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for area in m.areas() {
        let _ = write!(s, "<tr><th>{}</th>", esc(&area));
        for c in &m.cells {
            let _ = write!(
                s,
                "<td>{}</td>",
                square(MatrixReport::area_totals(c, &area))
            );
        }
        s.push_str("</tr>\n");
    }
    s.push_str("<tr class=\"total\"><th>all areas</th>");
    for c in &m.cells {
        let _ = write!(s, "<td>{}</td>", square(c.totals()));
    }
    s.push_str("</tr>\n</tbody>\n</table>\n");
    s.push_str("<p class=\"legend\">passed / run.<span style=\"background:var(--ok-bg)\"></span>all passed<span style=\"background:var(--bad-bg)\"></span>a required case failed<span style=\"background:var(--warn-bg)\"></span>only optional cases failed<span style=\"background:var(--skip-bg)\"></span>all skipped<span style=\"background:#f6f8fa\"></span>no cases in this area</p>\n");

    s.push_str("<h2>Failures</h2>\n");
    let mut any = false;
    for (i, c) in m.cells.iter().enumerate() {
        let failed = c.unexpected_failures();
        if failed.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(
            s,
            "<h3>#{} {} · handler {}</h3>\n<table class=\"list\">",
            i + 1,
            esc(&c.runtime_label()),
            esc(c.handler_label())
        );
        // Required failures first: they are what fails the run.
        let (req, opt): (Vec<&Entry>, Vec<&Entry>) = failed
            .into_iter()
            .partition(|e| e.requirement == Requirement::Required);
        for e in req.into_iter().chain(opt) {
            s.push_str(&entry_row(e));
        }
        s.push_str("</table>\n");
    }
    if !any {
        let none = if m.cells.iter().any(|c| c.baseline.is_some()) {
            "No case failed unexpectedly."
        } else {
            "No case failed."
        };
        let _ = writeln!(s, "<p class=\"none-msg\">{none}</p>");
    }
    if m.cells.iter().any(|c| c.baseline.is_some()) {
        s.push_str("<h2>Expected failures and skips (in the baseline)</h2>\n");
        let mut any = false;
        for (i, c) in m.cells.iter().enumerate() {
            let expected = c.expected_non_passes();
            if expected.is_empty() {
                continue;
            }
            any = true;
            let _ = writeln!(
                s,
                "<h3>#{} {} · handler {} · baseline of {}</h3>\n<table class=\"list\">",
                i + 1,
                esc(&c.runtime_label()),
                esc(c.handler_label()),
                esc(c.baseline.as_deref().unwrap_or_default())
            );
            for e in expected {
                let _ = writeln!(
                    s,
                    "<tr><td class=\"v\">{}</td><td class=\"id\"><code>{}</code><div class=\"clause\">{}</div></td><td><pre>{}</pre><div class=\"clause\">why: {}</div></td></tr>",
                    verdict_badge(e),
                    esc(&e.id),
                    esc(&e.clause),
                    esc(match &e.verdict {
                        Verdict::Fail(w) | Verdict::Skip(w) => w,
                        Verdict::Pass => "",
                    }),
                    esc(e.expected.as_deref().unwrap_or_default())
                );
            }
            s.push_str("</table>\n");
        }
        if !any {
            s.push_str("<p class=\"none-msg\">None.</p>\n");
        }
    }
    if !m.differences.is_empty() {
        s.push_str("<h2>Differences between runtimes</h2>\n<table class=\"list\">\n<tr><th>case</th><th>clause</th><th>does not pass on</th><th>passes on</th><th>why: the clause, and whose behaviour it supports</th></tr>\n");
        for d in &m.differences {
            let _ = writeln!(
                s,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.case),
                esc(&d.clause),
                esc(&d.fails_on),
                esc(&d.passes_on),
                esc(&d.reason)
            );
        }
        s.push_str("</table>\n");
    }

    s.push_str("<h2>All results</h2>\n");
    for (i, c) in m.cells.iter().enumerate() {
        let ct = c.totals();
        let _ = writeln!(
            s,
            "<details><summary>#{} {} · handler {} — {} passed, {} failed, {} skipped</summary>\n<table class=\"list\">",
            i + 1,
            esc(&c.runtime_label()),
            esc(c.handler_label()),
            ct.passed,
            ct.failed(),
            ct.skipped
        );
        for e in &c.entries {
            s.push_str(&entry_row(e));
        }
        s.push_str("</table>\n</details>\n");
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::matrix::tests::sample;

    #[test]
    fn page_is_self_contained() {
        let h = to_html(&sample());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.trim_end().ends_with("</html>"));
        for external in ["<link", "<script", "src=", "http://", "https://", "@import"] {
            assert!(!h.contains(external), "page references {external}");
        }
    }

    #[test]
    fn grid_has_a_row_per_area_and_a_column_per_cell() {
        let m = sample();
        let h = to_html(&m);
        let body = &h[h.find("<tbody>").unwrap()..h.find("</tbody>").unwrap()];
        assert_eq!(body.matches("<tr><th>").count(), m.areas().len());
        assert_eq!(
            body.matches("<td>").count(),
            (m.areas().len() + 1) * m.cells.len()
        );
        assert_eq!(h.matches("<th>#").count(), m.cells.len());
        // crid's runtime-info: one of two passed, a required failure: red.
        assert!(
            h.contains("<span class=\"sq bad\" title=\"1 passed, 1 failed (required), 0 failed (optional), 0 skipped\"><span class=\"n\">1/2</span>"),
            "{h}"
        );
        // Its image area: an optional failure and a skip: amber.
        assert!(h.contains("<span class=\"sq warn\""), "{h}");
        assert!(h.contains(
            "<span class=\"n\">0/1</span><span class=\"d\">1 optional failed · 1 skipped</span>"
        ));
        // containerd's external row is green; areas without cases are marked.
        assert!(
            h.contains("<tr><th>external</th><td><span class=\"sq ok\""),
            "{h}"
        );
        assert!(h.contains("<span class=\"sq none\">"), "{h}");
        assert!(h.contains("FAIL · 1 required case(s) failed"));
    }

    #[test]
    fn messages_are_escaped_and_failures_listed_with_clauses() {
        let h = to_html(&sample());
        assert!(!h.contains("<script>alert"), "raw markup leaked");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; | &amp; &quot;q&quot;"));
        assert!(h.contains("<code>runtime-info/b</code><div class=\"clause\">cri:RuntimeService.Version#runtime-info/b <span class=\"req\">· required</span></div>"));
        let failures =
            &h[h.find("<h2>Failures</h2>").unwrap()..h.find("<h2>All results</h2>").unwrap()];
        assert_eq!(failures.matches("<tr>").count(), 2, "{failures}");
        assert!(failures.find("runtime-info/b").unwrap() < failures.find("image/c").unwrap());
        assert!(h.contains("handler (default)"));
    }

    #[test]
    fn a_green_matrix_says_so() {
        let mut m = sample();
        m.cells.truncate(1);
        let h = to_html(&m);
        assert!(h.contains("PASS · no required case failed"));
        assert!(h.contains("No case failed."));
    }
}

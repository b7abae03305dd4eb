//! JUnit XML: one `<testsuite>` per area, one `<testcase>` per case, the clause as a property.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{CellReport, Entry, RunReport, Totals, requirement_name};
use crate::cases::Verdict;

/// Renders the run as JUnit XML, the format CI systems ingest.
pub fn to_junit(report: &RunReport) -> String {
    cell_to_junit(&CellReport::from(report))
}

/// Renders one cell (catalogue and external results) as JUnit XML: one `<testsuite>` per
/// area, the endpoint, runtime and handler as suite properties.
pub fn cell_to_junit(report: &CellReport) -> String {
    let mut by_area: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in &report.entries {
        by_area.entry(e.area.as_str()).or_default().push(e);
    }
    let t = report.totals();
    let total_time: f64 = report
        .entries
        .iter()
        .map(|e| e.duration.as_secs_f64())
        .sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"crid-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total_time:.3}\">",
        report.entries.len(),
        t.failed(),
        t.skipped
    );
    for (area, entries) in by_area {
        let at = Totals::of(entries.iter().map(|e| (&e.verdict, e.requirement)));
        let time: f64 = entries.iter().map(|e| e.duration.as_secs_f64()).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            esc(area),
            entries.len(),
            at.failed(),
            at.skipped
        );
        let _ = write!(
            x,
            "    <properties><property name=\"endpoint\" value=\"{}\"/><property name=\"runtime\" value=\"{}\"/>",
            esc(&report.endpoint),
            esc(&report.runtime)
        );
        if !report.handler.is_empty() {
            let _ = write!(
                x,
                "<property name=\"runtime_handler\" value=\"{}\"/>",
                esc(&report.handler)
            );
        }
        if !report.fixture.is_empty() {
            let _ = write!(
                x,
                "<property name=\"fixture\" value=\"{}\"/>",
                esc(&report.fixture)
            );
        }
        x.push_str("</properties>\n");
        for e in entries {
            let _ = writeln!(
                x,
                "    <testcase classname=\"{}\" name=\"{} [{}]\" time=\"{:.3}\">",
                esc(area),
                esc(&e.id),
                esc(&e.clause),
                e.duration.as_secs_f64()
            );
            let requirement = requirement_name(e.requirement);
            let _ = writeln!(
                x,
                "      <properties><property name=\"clause\" value=\"{}\"/><property name=\"requirement\" value=\"{requirement}\"/></properties>",
                esc(&e.clause)
            );
            match &e.verdict {
                Verdict::Pass => {
                    if !e.note.is_empty() {
                        let _ = writeln!(x, "      <system-out>{}</system-out>", esc(&e.note));
                    }
                }
                Verdict::Fail(why) => {
                    let _ = writeln!(
                        x,
                        "      <failure message=\"{}\" type=\"{requirement}\">{}: {}</failure>",
                        esc(why),
                        esc(&e.summary),
                        esc(why)
                    );
                }
                Verdict::Skip(why) => {
                    let _ = writeln!(x, "      <skipped message=\"{}\"/>", esc(why));
                }
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 cannot carry.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn counts_escaping_and_structure() {
        let xml = to_junit(&sample::report());
        assert!(
            xml.contains(
                "<testsuites name=\"crid-conformance\" tests=\"4\" failures=\"2\" skipped=\"1\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testsuite name=\"runtime-info\" tests=\"4\" failures=\"2\" skipped=\"1\""
            ),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"runtime-info/a [cri:RuntimeService.Status#status.conditions]\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"got &lt;nothing&gt; &amp; less\" type=\"required\">"),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"needs root\"/>"), "{xml}");
        assert!(
            xml.contains("<system-out>RuntimeReady=true</system-out>"),
            "{xml}"
        );
        assert_eq!(
            xml.matches("<testcase ").count(),
            xml.matches("</testcase>").count()
        );
        assert!(!xml.contains(" & "), "no raw ampersands");
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(esc("a\u{1}b\u{7}c\n"), "abc\n");
    }
}

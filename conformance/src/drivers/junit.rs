//! Ginkgo v2 JUnit XML (what `--ginkgo.junit-report` writes) parsed and folded into report
//! entries. Ginkgo writes one `<testcase>` per spec; its `status` attribute and its
//! `<failure>`, `<error>` or `<skipped>` child carry the verdict and the message.

use std::time::Duration;

use crate::cases::{Requirement, Verdict};
use crate::report::{EXTERNAL_AREA, Entry};

/// The state of one spec as ginkgo reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecState {
    /// `passed`.
    Passed,
    /// `skipped` or `pending`, with ginkgo's message (`skipped - REASON`, `pending`).
    Skipped(String),
    /// `failed`, `aborted`, `timedout` (a `<failure>`), or `panicked`, `interrupted` (an
    /// `<error>`), with the message and the first line of the location.
    Failed(String),
}

/// One `<testcase>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The name with ginkgo's leaf-node prefix (`[It] `) removed.
    pub name: String,
    /// The raw `status` attribute.
    pub status: String,
    /// Verdict and message.
    pub state: SpecState,
    /// Run time.
    pub duration: Duration,
}

impl Spec {
    /// Suite-level nodes (`[BeforeSuite]`, `[ReportAfterSuite] …`, suite-level
    /// `DeferCleanup`): not specs of their own, but their failure explains why every spec
    /// was skipped.
    pub fn is_suite_node(&self) -> bool {
        const NODES: [&str; 7] = [
            "[BeforeSuite]",
            "[AfterSuite]",
            "[SynchronizedBeforeSuite]",
            "[SynchronizedAfterSuite]",
            "[ReportBeforeSuite]",
            "[ReportAfterSuite]",
            "[DeferCleanup (Suite)]",
        ];
        NODES.iter().any(|n| self.name.starts_with(n))
    }
}

/// Why a JUnit file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("ginkgo JUnit report: {0}")]
pub struct JunitError(String);

/// Parses every `<testcase>` of a ginkgo JUnit report, in file order.
pub fn parse(xml: &str) -> Result<Vec<Spec>, JunitError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| JunitError(e.to_string()))?;
    let root = doc.root_element();
    if !matches!(root.tag_name().name(), "testsuites" | "testsuite") {
        return Err(JunitError(format!(
            "root element is <{}>, expected <testsuites>",
            root.tag_name().name()
        )));
    }
    let mut specs = Vec::new();
    for case in root.descendants().filter(|n| n.has_tag_name("testcase")) {
        let raw_name = case
            .attribute("name")
            .ok_or_else(|| JunitError("a <testcase> has no name".into()))?;
        let name =
            without_label_group(raw_name.strip_prefix("[It] ").unwrap_or(raw_name)).to_owned();
        let status = case.attribute("status").unwrap_or_default().to_owned();
        let seconds: f64 = case
            .attribute("time")
            .unwrap_or("0")
            .parse()
            .map_err(|_| JunitError(format!("{name}: time is not a number")))?;
        let duration = Duration::try_from_secs_f64(seconds).unwrap_or_default();
        let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
        let state = if let Some(f) = child("failure").or_else(|| child("error")) {
            let body = f.text().unwrap_or_default();
            let message = match f.attribute("message").unwrap_or_default().trim() {
                // Reports written without the attribute (Kubernetes' own JUnit writer
                // omits it) still carry the message in the body.
                "" => body_message(body),
                m => m.to_owned(),
            };
            let kind = f.attribute("type").unwrap_or("failed");
            // The body starts with the location (or `[FAILED] …` then `In [It] at: …`);
            // one line of it tells a reader where to look.
            let location = body
                .lines()
                .map(str::trim)
                .find(|l| l.contains(".go:"))
                .unwrap_or_default();
            let mut why = if message.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind}: {message}")
            };
            if !location.is_empty() {
                why.push_str(&format!(" ({location})"));
            }
            SpecState::Failed(why)
        } else if let Some(s) = child("skipped") {
            SpecState::Skipped(s.attribute("message").unwrap_or("skipped").to_owned())
        } else {
            match status.as_str() {
                "passed" | "" => SpecState::Passed,
                "skipped" | "pending" => SpecState::Skipped(status.clone()),
                other => SpecState::Failed(format!("status {other}")),
            }
        };
        specs.push(Spec {
            name,
            status,
            state,
            duration,
        });
    }
    Ok(specs)
}

/// Ginkgo appends a spec's labels to its name as ` [a, b]`. Kubernetes' suites also write
/// each label into the spec text as `[a]`, so there the group repeats the name and is
/// dropped: names then read as the suites print them (and as their own reports, written
/// without labels, name them). A group naming anything the text lacks is kept.
fn without_label_group(name: &str) -> &str {
    let Some(open) = name.rfind(" [") else {
        return name;
    };
    let (head, group) = name.split_at(open);
    let Some(inner) = group[2..].strip_suffix(']') else {
        return name;
    };
    let redundant = !inner.is_empty()
        && !inner.contains(['[', ']'])
        && inner
            .split(", ")
            .all(|label| !label.is_empty() && head.contains(&format!("[{label}]")));
    if redundant { head } else { name }
}

/// The message at the head of a failure body (`[FAILED] message…` up to the `In [It] at:`
/// line), for reports whose `message` attribute is empty.
fn body_message(body: &str) -> String {
    let lines: Vec<&str> = body
        .lines()
        .take_while(|l| !l.trim_start().starts_with("In ["))
        .collect();
    let text = lines.join("\n");
    let text = text.trim();
    // `[FAILED] `, `[PANICKED] `, `[TIMEDOUT] `...: the state is already in `type`.
    match text.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((state, rest)) if state.chars().all(|c| c.is_ascii_uppercase()) => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// Decides whether a spec's failure fails the run.
pub type RequirementRule = fn(&str) -> Requirement;

/// Folds specs into report entries under the `external` area: the clause is
/// `<suite>:<spec name>`. Passing suite nodes are dropped (noise); failing ones are kept
/// as required failures, since they void the whole run.
pub fn to_entries(suite: &str, specs: &[Spec], rule: RequirementRule) -> Vec<Entry> {
    specs
        .iter()
        .filter(|s| !(s.is_suite_node() && s.state == SpecState::Passed))
        .map(|s| {
            let verdict = match &s.state {
                SpecState::Passed => Verdict::Pass,
                SpecState::Skipped(why) => Verdict::Skip(why.clone()),
                SpecState::Failed(why) => Verdict::Fail(why.clone()),
            };
            let requirement = if s.is_suite_node() {
                Requirement::Required
            } else {
                rule(&s.name)
            };
            Entry {
                id: format!("{suite}/{}", s.name),
                clause: format!("{suite}:{}", s.name),
                area: EXTERNAL_AREA.to_owned(),
                requirement,
                summary: s.name.clone(),
                verdict,
                note: String::new(),
                duration: s.duration,
                expected: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" disabled="1" errors="1" failures="1" time="1.5">
  <testsuite name="S" tests="4">
    <testcase name="[BeforeSuite]" classname="S" status="passed" time="0.1"></testcase>
    <testcase name="[It] a works [Conformance]" classname="S" status="passed" time="0.25"></testcase>
    <testcase name="[It] b &lt;breaks&gt;" classname="S" status="failed" time="1">
      <failure message="expected &#34;x&#34;&#xA;got y" type="failed">[FAILED] expected
In [It] at: /src/b_test.go:42 @ 01/02/25 10:00:00.000
</failure>
    </testcase>
    <testcase name="[It] c" classname="S" status="panicked" time="0"><error message="boom" type="panicked">/src/c.go:7&#xA;stack</error></testcase>
    <testcase name="[It] d" classname="S" status="skipped" time="0"><skipped message="skipped - no SELinux"></skipped></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn verdicts_messages_names_and_times() {
        let specs = parse(MINIMAL).unwrap();
        assert_eq!(specs.len(), 5);
        assert!(specs[0].is_suite_node());
        assert_eq!(specs[1].name, "a works [Conformance]");
        assert_eq!(specs[1].duration, Duration::from_millis(250));
        assert_eq!(specs[2].name, "b <breaks>");
        assert_eq!(
            specs[2].state,
            SpecState::Failed(
                "failed: expected \"x\"\ngot y (In [It] at: /src/b_test.go:42 @ 01/02/25 10:00:00.000)"
                    .into()
            )
        );
        assert_eq!(
            specs[3].state,
            SpecState::Failed("panicked: boom (/src/c.go:7)".into())
        );
        assert_eq!(
            specs[4].state,
            SpecState::Skipped("skipped - no SELinux".into())
        );
    }

    #[test]
    fn folding_drops_passing_suite_nodes_and_applies_the_rule() {
        let specs = parse(MINIMAL).unwrap();
        let entries = to_entries("critest", &specs, |name| {
            if name.contains("[Conformance]") {
                Requirement::Required
            } else {
                Requirement::Optional
            }
        });
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].clause, "critest:a works [Conformance]");
        assert_eq!(entries[0].area, EXTERNAL_AREA);
        assert_eq!(entries[0].requirement, Requirement::Required);
        assert_eq!(entries[1].requirement, Requirement::Optional);
        assert!(matches!(entries[1].verdict, Verdict::Fail(_)));
    }

    #[test]
    fn a_failing_suite_node_is_a_required_failure() {
        let xml = r#"<testsuites><testsuite name="S"><testcase name="[SynchronizedBeforeSuite]" status="failed" time="2"><failure message="no runtime" type="failed">/x.go:1</failure></testcase></testsuite></testsuites>"#;
        let entries = to_entries("node-e2e", &parse(xml).unwrap(), |_| Requirement::Optional);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].requirement, Requirement::Required);
        assert!(entries[0].is_required_failure());
    }

    #[test]
    fn label_groups_that_repeat_the_name_are_dropped() {
        assert_eq!(
            without_label_group(
                "[sig-node] Pods x [NodeConformance] [Conformance] [sig-node, NodeConformance, Conformance]"
            ),
            "[sig-node] Pods x [NodeConformance] [Conformance]"
        );
        // Labels the text lacks stay: the group says something.
        assert_eq!(
            without_label_group("a works [fast, linux]"),
            "a works [fast, linux]"
        );
        assert_eq!(
            without_label_group("x [Conformance] [Conformance]"),
            "x [Conformance]"
        );
        // A text ending in a tag of its own is no label group.
        assert_eq!(
            without_label_group("version info [Conformance]"),
            "version info [Conformance]"
        );
        assert_eq!(without_label_group("[BeforeSuite]"), "[BeforeSuite]");
        assert_eq!(without_label_group("y []"), "y []");
    }

    #[test]
    fn an_empty_message_attribute_is_read_from_the_body() {
        let xml = "<testsuites><testsuite name=\"S\"><testcase name=\"[It] t [a] [a]\" status=\"failed\" time=\"1\"><failure message=\"\" type=\"failed\">[FAILED] Timed out after 5s.&#xA;Expected true&#xA;In [It] at: /x/t.go:9 @ 01/02/25 10:00:00.1&#xA;</failure></testcase></testsuite></testsuites>";
        let specs = parse(xml).unwrap();
        assert_eq!(specs[0].name, "t [a]");
        assert_eq!(
            specs[0].state,
            SpecState::Failed(
                "failed: Timed out after 5s.\nExpected true (In [It] at: /x/t.go:9 @ 01/02/25 10:00:00.1)".into()
            )
        );
    }

    #[test]
    fn malformed_reports_are_errors() {
        assert!(parse("<testsuites><testcase").is_err());
        assert!(
            parse("<html></html>")
                .unwrap_err()
                .to_string()
                .contains("<html>")
        );
        assert!(
            parse(r#"<testsuites><testcase name="x" time="soon"/></testsuites>"#)
                .unwrap_err()
                .to_string()
                .contains("time")
        );
    }
}

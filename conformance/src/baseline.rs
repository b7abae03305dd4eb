//! Baselines: the cases a given runtime is known to fail or skip, each with the reason and
//! what its message must say, and the comparison of a run against one. Any difference is
//! unexplained and fails: a failure or skip the baseline does not list, a listed case that
//! now passes (so the baseline stays true), a listed case that fails for another reason
//! (its message lacks the entry's `message_contains`), and a case of the selection that
//! the report does not hold (a truncated report, a case dropped from the catalogue). A
//! runtime's transient failures (`[[transient]]`: a failure it shows now and then under
//! load, in whichever case meets it) explain a failure in any case by their message. This
//! is how the differential run against containerd proves the cases right rather than
//! fitted to crid.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cases::Verdict;
use crate::runner::Outcome;

/// Errors reading a baseline or a JUnit report.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The baseline is not valid TOML of the expected shape.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when known.
        reason: String,
    },
    /// The JUnit report holds something this reader does not understand.
    #[error("{path}: {reason}")]
    Junit {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What a baseline expects of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// The case fails on this runtime.
    Fail,
    /// The case is skipped on this runtime (a need the runtime cannot meet).
    Skip,
}

/// One expected non-pass.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Case id, e.g. `events/container-lifecycle`.
    pub case: String,
    /// Fail or skip.
    pub expect: Expected,
    /// Why: the runtime's behaviour and, where it helps, the upstream issue or code.
    pub reason: String,
    /// Text the failure (or skip) message must contain, so that the case fails for the
    /// reason given and not for another (`exec/exec-url` failing with Internal from a
    /// half-built server is not "Unimplemented as expected").
    pub message_contains: String,
    /// The runtime handlers the entry applies to (a matrix cell's handler); empty: all.
    #[serde(default)]
    pub handlers: Vec<String>,
}

impl Entry {
    fn applies_to(&self, handler: &str) -> bool {
        self.handlers.is_empty() || self.handlers.iter().any(|h| h == handler)
    }

    fn overlaps(&self, other: &Entry) -> bool {
        self.case == other.case
            && (self.handlers.is_empty()
                || other.handlers.is_empty()
                || self.handlers.iter().any(|h| other.handlers.contains(h)))
    }
}

/// A failure the runtime shows now and then in whichever case meets it: a property of the
/// runtime under load, not of one case, so no case entry can name it. A case failing with
/// its `message_contains` is explained by it; a run that never meets it is no difference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transient {
    /// Why: the runtime's behaviour, and why it comes and goes.
    pub reason: String,
    /// Text the failure message must contain (the runtime's own words).
    pub message_contains: String,
    /// The runtime handlers it applies to; empty: all.
    #[serde(default)]
    pub handlers: Vec<String>,
}

impl Transient {
    fn explains(&self, message: &str, handler: &str) -> bool {
        (self.handlers.is_empty() || self.handlers.iter().any(|h| h == handler))
            && message.contains(self.message_contains.as_str())
    }
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// The runtime it describes, e.g. `containerd 1.6.20`.
    pub runtime: String,
    /// The expected non-passes.
    #[serde(default)]
    pub expected: Vec<Entry>,
    /// The runtime's transient failures, in any case.
    #[serde(default)]
    pub transient: Vec<Transient>,
}

impl Baseline {
    /// Reads and checks a baseline: every entry has a reason and names a case once.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Baseline::parse(&text).map_err(|reason| BaselineError::Parse {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses baseline TOML: every entry has a reason and a `message_contains`, and no
    /// case is listed twice for the same handler.
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let b: Baseline = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, e) in b.expected.iter().enumerate() {
            if b.expected[..i].iter().any(|o| o.overlaps(e)) {
                return Err(format!("case {} is listed twice", e.case));
            }
            if e.reason.trim().is_empty() {
                return Err(format!("case {} has no reason", e.case));
            }
            if e.message_contains.trim().is_empty() {
                return Err(format!(
                    "case {} has no message_contains (what its message must say)",
                    e.case
                ));
            }
        }
        for t in &b.transient {
            if t.reason.trim().is_empty() || t.message_contains.trim().is_empty() {
                return Err("a transient failure needs a reason and a message_contains".to_owned());
            }
        }
        Ok(b)
    }

    /// The transient failure that explains a failure with `message` on `handler`.
    fn transient_for(&self, message: &str, handler: &str) -> Option<&Transient> {
        self.transient.iter().find(|t| t.explains(message, handler))
    }

    fn get(&self, case: &str, handler: &str) -> Option<&Entry> {
        self.expected
            .iter()
            .find(|e| e.case == case && e.applies_to(handler))
    }
}

/// What a run observed of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Passed.
    Pass,
    /// Failed, with the message.
    Fail(String),
    /// Skipped, with the reason.
    Skip(String),
}

impl Observed {
    fn word(&self) -> &'static str {
        match self {
            Observed::Pass => "pass",
            Observed::Fail(_) => "fail",
            Observed::Skip(_) => "skip",
        }
    }

    fn message(&self) -> &str {
        match self {
            Observed::Pass => "",
            Observed::Fail(m) | Observed::Skip(m) => m,
        }
    }
}

/// Results of a run by case id, from in-process outcomes.
pub fn from_outcomes(outcomes: &[Outcome]) -> BTreeMap<String, Observed> {
    outcomes
        .iter()
        .map(|o| {
            let seen = match &o.verdict {
                Verdict::Pass => Observed::Pass,
                Verdict::Fail(m) => Observed::Fail(m.clone()),
                Verdict::Skip(m) => Observed::Skip(m.clone()),
            };
            (o.case.id.to_owned(), seen)
        })
        .collect()
}

/// One unexplained difference between a run and its baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The case did not pass and the baseline does not expect that.
    Unexpected {
        /// Case id.
        case: String,
        /// What happened.
        observed: Observed,
    },
    /// The baseline expects a failure or skip, but the case passed: remove the entry.
    NowPasses {
        /// Case id.
        case: String,
        /// The baseline's reason.
        reason: String,
    },
    /// The baseline expects fail but the run skipped, or the reverse.
    Changed {
        /// Case id.
        case: String,
        /// What the baseline says.
        expected: Expected,
        /// What happened.
        observed: Observed,
    },
    /// The case failed or skipped as expected, but its message lacks the entry's
    /// `message_contains`: it fails for another reason than the one given.
    WrongMessage {
        /// Case id.
        case: String,
        /// What the message must contain.
        expected: String,
        /// What happened.
        observed: Observed,
    },
    /// A case of the selection is not in the report (truncated report, dropped case).
    Missing {
        /// Case id.
        case: String,
    },
    /// The report holds a case that is not in the selection (not in the catalogue, or
    /// filtered out): the report is not of this catalogue.
    NotSelected {
        /// Case id.
        case: String,
    },
    /// The baseline names a case the catalogue does not have.
    UnknownCase {
        /// Case id.
        case: String,
    },
}

/// The comparison of a run with a baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Every unexplained difference, in case order.
    pub differences: Vec<Difference>,
    /// Cases that failed or were skipped as the baseline expects.
    pub explained: usize,
    /// Of those, cases that failed with one of the runtime's transient failures.
    pub transient: usize,
    /// Cases that passed.
    pub passed: usize,
}

impl Comparison {
    /// True when the run matches its baseline exactly.
    pub fn matches(&self) -> bool {
        self.differences.is_empty()
    }

    /// A readable diff: `+` lines are unexplained results, `-` lines stale baseline entries.
    pub fn render(&self, baseline_name: &str) -> String {
        let mut out = String::new();
        let transient = if self.transient > 0 {
            format!(
                " ({} of them a transient failure of the runtime)",
                self.transient
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "baseline {baseline_name}: {} passed, {} as expected{transient}, {} unexplained",
            self.passed,
            self.explained,
            self.differences.len()
        );
        for d in &self.differences {
            let _ = match d {
                Difference::Unexpected { case, observed } => writeln!(
                    out,
                    "+ {case}: unexpected {} (add it to the baseline with a reason, or fix it): {}",
                    observed.word(),
                    one_line(observed.message())
                ),
                Difference::NowPasses { case, reason } => writeln!(
                    out,
                    "- {case}: now passes; remove it from the baseline (it said: {})",
                    one_line(reason)
                ),
                Difference::Changed {
                    case,
                    expected,
                    observed,
                } => writeln!(
                    out,
                    "~ {case}: baseline expects {expected:?}, got {}: {}",
                    observed.word(),
                    one_line(observed.message())
                ),
                Difference::WrongMessage {
                    case,
                    expected,
                    observed,
                } => writeln!(
                    out,
                    "~ {case}: {} as the baseline expects, but not for its reason (the message \
                     must contain {expected:?}): {}",
                    observed.word(),
                    one_line(observed.message())
                ),
                Difference::Missing { case } => writeln!(
                    out,
                    "! {case}: not in the report (truncated report, or the case did not run)"
                ),
                Difference::NotSelected { case } => writeln!(
                    out,
                    "! {case}: in the report but not in the catalogue (or filtered out)"
                ),
                Difference::UnknownCase { case } => {
                    writeln!(out, "? {case}: in the baseline but not in the catalogue")
                }
            };
        }
        out
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// Compares observed results with `baseline`. `catalogue` is every known case id;
/// `selected` the ids the run was asked to run (the catalogue, or those a filter chose):
/// the observed ids must be exactly these. `handler` is the run's runtime handler (entries
/// restricted to other handlers do not apply). Entries for cases that exist but were
/// filtered out are not differences.
pub fn compare(
    baseline: &Baseline,
    observed: &BTreeMap<String, Observed>,
    catalogue: &[&str],
    selected: &[&str],
    handler: &str,
) -> Comparison {
    let mut c = Comparison::default();
    for (case, seen) in observed {
        if !selected.contains(&case.as_str()) {
            c.differences
                .push(Difference::NotSelected { case: case.clone() });
            continue;
        }
        if let Observed::Fail(m) = seen
            && baseline.transient_for(m, handler).is_some()
        {
            c.explained += 1;
            c.transient += 1;
            continue;
        }
        match (baseline.get(case, handler), seen) {
            (None, Observed::Pass) => c.passed += 1,
            (None, _) => c.differences.push(Difference::Unexpected {
                case: case.clone(),
                observed: seen.clone(),
            }),
            (Some(e), Observed::Pass) => c.differences.push(Difference::NowPasses {
                case: case.clone(),
                reason: e.reason.clone(),
            }),
            (Some(e), Observed::Fail(m)) if e.expect == Expected::Fail => {
                c.judge_message(case, e, seen, m)
            }
            (Some(e), Observed::Skip(m)) if e.expect == Expected::Skip => {
                c.judge_message(case, e, seen, m)
            }
            (Some(e), _) => c.differences.push(Difference::Changed {
                case: case.clone(),
                expected: e.expect,
                observed: seen.clone(),
            }),
        }
    }
    for case in selected {
        if !observed.contains_key(*case) {
            c.differences.push(Difference::Missing {
                case: (*case).to_owned(),
            });
        }
    }
    for e in &baseline.expected {
        if !catalogue.contains(&e.case.as_str()) {
            c.differences.push(Difference::UnknownCase {
                case: e.case.clone(),
            });
        }
    }
    c
}

impl Comparison {
    fn judge_message(&mut self, case: &str, e: &Entry, seen: &Observed, message: &str) {
        if message.contains(e.message_contains.as_str()) {
            self.explained += 1;
        } else {
            self.differences.push(Difference::WrongMessage {
                case: case.to_owned(),
                expected: e.message_contains.clone(),
                observed: seen.clone(),
            });
        }
    }
}

impl Baseline {
    /// Marks the non-passes of `cell` that this baseline explains: the entry applies to
    /// the cell's handler, expects what happened (fail or skip), and the message holds its
    /// `message_contains`. Each such result gets the entry's reason as `expected`; the
    /// others get `None`, so reports list them as unexpected. Unlike [`compare`] a stale
    /// entry is no failure here: this is the reading of a run, `compare` the strict check.
    pub fn annotate(&self, cell: &mut crate::report::CellReport) {
        let handler = cell.handler.clone();
        for e in &mut cell.entries {
            if let Verdict::Fail(m) = &e.verdict
                && let Some(t) = self.transient_for(m, &handler)
            {
                e.expected = Some(format!("a transient failure of the runtime: {}", t.reason));
                continue;
            }
            e.expected = match (&e.verdict, self.get(&e.id, &handler)) {
                (Verdict::Fail(m), Some(b)) if b.expect == Expected::Fail => m
                    .contains(b.message_contains.as_str())
                    .then(|| b.reason.clone()),
                (Verdict::Skip(m), Some(b)) if b.expect == Expected::Skip => m
                    .contains(b.message_contains.as_str())
                    .then(|| b.reason.clone()),
                _ => None,
            };
        }
        cell.baseline = Some(self.runtime.clone());
    }
}

/// The baselines of crid and of the reference runtime (containerd 1.6), as checked in:
/// the differences between runtimes in docs/traceability.md are generated from them.
pub const CHECKED_IN: [(&str, &str); 2] = [
    ("crid", include_str!("../baseline/crid.toml")),
    (
        "containerd-1.6",
        include_str!("../baseline/containerd-1.6.toml"),
    ),
];

/// One case on which two runtimes disagree: listed in exactly one of two baselines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDifference {
    /// Case id.
    pub case: String,
    /// The case's clause (empty when the catalogue does not have the case).
    pub clause: String,
    /// The runtime that does not pass (its baseline's `runtime`).
    pub fails_on: String,
    /// The runtime that passes.
    pub passes_on: String,
    /// Fail or skip.
    pub expect: Expected,
    /// The baseline's reason: the clause and whose behaviour it supports.
    pub reason: String,
}

/// The cases listed in exactly one of `a` and `b` (for any handler), in case order, with
/// the clause from `catalogue`: where the two runtimes behave differently.
pub fn runtime_differences(
    a: &Baseline,
    b: &Baseline,
    catalogue: &[crate::cases::Case],
) -> Vec<RuntimeDifference> {
    let mut rows: Vec<RuntimeDifference> = Vec::new();
    for (this, other) in [(a, b), (b, a)] {
        for e in &this.expected {
            if other.expected.iter().any(|o| o.case == e.case)
                || rows.iter().any(|r| r.case == e.case)
            {
                continue;
            }
            rows.push(RuntimeDifference {
                case: e.case.clone(),
                clause: catalogue
                    .iter()
                    .find(|c| c.id == e.case)
                    .map(|c| c.clause.to_owned())
                    .unwrap_or_default(),
                fails_on: this.runtime.clone(),
                passes_on: other.runtime.clone(),
                expect: e.expect,
                reason: e.reason.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    }
    rows.sort_by(|x, y| x.case.cmp(&y.case));
    rows
}

/// The differences as a Markdown table (a line saying there are none when empty).
pub fn differences_markdown(rows: &[RuntimeDifference]) -> String {
    if rows.is_empty() {
        return "No case is listed in exactly one of the two baselines.\n".to_owned();
    }
    let cell = |s: &str| s.replace('|', "\\|");
    let mut s = String::from(
        "| case | clause | does not pass on | passes on | why: the clause, and whose behaviour it supports |\n\
         |---|---|---|---|---|\n",
    );
    for r in rows {
        let what = match r.expect {
            Expected::Fail => "fails",
            Expected::Skip => "skipped",
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} ({what}) | {} | {} |",
            cell(&r.case),
            cell(&r.clause),
            cell(&r.fails_on),
            cell(&r.passes_on),
            cell(&r.reason)
        );
    }
    s
}

/// The differences between the checked-in baselines of crid and containerd 1.6.
pub fn checked_in_differences(catalogue: &[crate::cases::Case]) -> Vec<RuntimeDifference> {
    let [crid, containerd] = CHECKED_IN.map(|(name, text)| {
        Baseline::parse(text).unwrap_or_else(|e| panic!("checked-in baseline {name}: {e}"))
    });
    runtime_differences(&crid, &containerd, catalogue)
}

/// What a JUnit report written by `run --junit` (or one matrix cell) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JunitRun {
    /// The runtime handler of the run (empty: the endpoint's default).
    pub handler: String,
    /// Results by case id.
    pub observed: BTreeMap<String, Observed>,
}

/// Reads results from a JUnit report written by `run --junit`: each `<testcase>` is named
/// `<case id> [<clause>]` and holds a `<failure>`, a `<skipped>` or neither (pass).
pub fn from_junit(path: &Path) -> Result<JunitRun, BaselineError> {
    let xml = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_junit(&xml).map_err(|reason| BaselineError::Junit {
        path: path.to_owned(),
        reason,
    })
}

/// Parses the JUnit text (see [`from_junit`]). A report that does not end with
/// `</testsuites>`, or whose `tests` count differs from the test cases it holds, is
/// refused as truncated.
pub fn parse_junit(xml: &str) -> Result<JunitRun, String> {
    let mut out = BTreeMap::new();
    if !xml.trim_end().ends_with("</testsuites>") {
        return Err("the report does not end with </testsuites>: truncated".into());
    }
    let suites = xml
        .find("<testsuites")
        .map(|i| &xml[i..])
        .ok_or("no <testsuites> element")?;
    let declared: Option<usize> = attr(suites, "tests").and_then(|n| n.parse().ok());
    let handler = xml
        .find("<property name=\"runtime_handler\"")
        .and_then(|i| attr(&xml[i..], "value"))
        .unwrap_or_default();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase ") {
        let body = &rest[start..];
        let end = body
            .find("</testcase>")
            .or_else(|| body.find("/>"))
            .ok_or("a <testcase> is not closed")?;
        let element = &body[..end];
        let name = attr(element, "name").ok_or("a <testcase> has no name")?;
        let id = name.split(" [").next().unwrap_or(&name).to_owned();
        let observed = if let Some(i) = element.find("<failure") {
            Observed::Fail(attr(&element[i..], "message").unwrap_or_default())
        } else if let Some(i) = element.find("<skipped") {
            Observed::Skip(attr(&element[i..], "message").unwrap_or_default())
        } else {
            Observed::Pass
        };
        if out.insert(id.clone(), observed).is_some() {
            return Err(format!("case {id} appears twice"));
        }
        rest = &body[end..];
    }
    if out.is_empty() {
        return Err("no <testcase> elements".into());
    }
    if let Some(n) = declared
        && n != out.len()
    {
        return Err(format!(
            "<testsuites tests=\"{n}\"> but {} test cases: truncated or edited",
            out.len()
        ));
    }
    Ok(JunitRun {
        handler,
        observed: out,
    })
}

/// The unescaped value of `name="..."` in the first tag of `element`.
fn attr(element: &str, name: &str) -> Option<String> {
    let tag_end = element.find('>').unwrap_or(element.len());
    let tag = &element[..tag_end];
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `crid-conformance compare`: a JUnit report against a baseline.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The JUnit XML written by `run --junit`.
    #[arg(long, value_name = "FILE")]
    pub junit: PathBuf,
    /// The baseline TOML, e.g. conformance/baseline/containerd-1.6.toml.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// The `--filter` the run was given: the report must then hold exactly the cases it
    /// selects. Without it, the report must hold every case of the catalogue.
    #[arg(long)]
    pub filter: Option<String>,
    /// The `--area`s the run was given (repeat): the report must then hold exactly the
    /// cases of those areas that the filter selects.
    #[arg(long = "area", value_name = "AREA")]
    pub areas: Vec<String>,
}

/// Runs `compare`: prints the diff; `Ok(true)` when nothing is unexplained.
pub fn compare_command(args: &CompareArgs) -> Result<bool, BaselineError> {
    let baseline = Baseline::load(&args.baseline)?;
    let run = from_junit(&args.junit)?;
    let catalogue = crate::cases::catalogue();
    let ids: Vec<&str> = catalogue.iter().map(|c| c.id).collect();
    let selected: Vec<&str> = crate::runner::select(catalogue.clone(), args.filter.as_deref())
        .iter()
        .filter(|c| args.areas.is_empty() || args.areas.iter().any(|a| a == c.area.name()))
        .map(|c| c.id)
        .collect();
    let c = compare(&baseline, &run.observed, &ids, &selected, &run.handler);
    let handler = if run.handler.is_empty() {
        String::new()
    } else {
        format!(", handler {}", run.handler)
    };
    print!(
        "{}",
        c.render(&format!(
            "{} ({}{handler})",
            args.baseline.display(),
            baseline.runtime
        ))
    );
    Ok(c.matches())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{self, sample};

    const BASELINE: &str = r#"
runtime = "example 1.0"

[[expected]]
case = "runtime-info/b"
expect = "fail"
reason = "known bug"
message_contains = "Unimplemented"

[[expected]]
case = "runtime-info/d"
expect = "skip"
reason = "no root in CI"
message_contains = "needs root"
"#;

    fn observed(pairs: &[(&str, Observed)]) -> BTreeMap<String, Observed> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    const CATALOGUE: &[&str] = &[
        "runtime-info/a",
        "runtime-info/b",
        "runtime-info/c",
        "runtime-info/d",
    ];

    fn full(o: &BTreeMap<String, Observed>, b: &Baseline) -> Comparison {
        compare(b, o, CATALOGUE, CATALOGUE, "")
    }

    fn unimplemented() -> Observed {
        Observed::Fail("Exec: Unimplemented: not served".into())
    }

    #[test]
    fn a_run_matching_its_baseline_passes() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let o = observed(&[
            ("runtime-info/a", Observed::Pass),
            ("runtime-info/b", unimplemented()),
            ("runtime-info/c", Observed::Pass),
            ("runtime-info/d", Observed::Skip("needs root".into())),
        ]);
        let c = full(&o, &b);
        assert!(c.matches(), "{c:?}");
        assert_eq!((c.passed, c.explained), (2, 2));
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let o = observed(&[
            ("runtime-info/a", Observed::Fail("broke".into())),
            ("runtime-info/b", Observed::Pass),
            ("runtime-info/c", Observed::Skip("why".into())),
            ("runtime-info/d", Observed::Fail("ran and failed".into())),
        ]);
        let c = full(&o, &b);
        assert_eq!(
            c.differences,
            vec![
                Difference::Unexpected {
                    case: "runtime-info/a".into(),
                    observed: Observed::Fail("broke".into())
                },
                Difference::NowPasses {
                    case: "runtime-info/b".into(),
                    reason: "known bug".into()
                },
                Difference::Unexpected {
                    case: "runtime-info/c".into(),
                    observed: Observed::Skip("why".into())
                },
                Difference::Changed {
                    case: "runtime-info/d".into(),
                    expected: Expected::Skip,
                    observed: Observed::Fail("ran and failed".into())
                },
            ]
        );
        let text = c.render("b.toml");
        assert!(text.contains("+ runtime-info/a: unexpected fail"), "{text}");
        assert!(text.contains("- runtime-info/b: now passes"), "{text}");
        assert!(
            text.contains("~ runtime-info/d: baseline expects Skip, got fail"),
            "{text}"
        );
    }

    /// A baselined failure counts only when it fails for the reason given: the same case
    /// failing with Internal from a half-built server is a difference.
    #[test]
    fn a_baselined_failure_with_another_message_is_a_difference() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let o = observed(&[
            ("runtime-info/a", Observed::Pass),
            (
                "runtime-info/b",
                Observed::Fail("Exec: Internal: half-built".into()),
            ),
            ("runtime-info/c", Observed::Pass),
            ("runtime-info/d", Observed::Skip("needs a registry".into())),
        ]);
        let c = full(&o, &b);
        assert_eq!(
            c.differences,
            vec![
                Difference::WrongMessage {
                    case: "runtime-info/b".into(),
                    expected: "Unimplemented".into(),
                    observed: Observed::Fail("Exec: Internal: half-built".into()),
                },
                Difference::WrongMessage {
                    case: "runtime-info/d".into(),
                    expected: "needs root".into(),
                    observed: Observed::Skip("needs a registry".into()),
                },
            ]
        );
        assert_eq!(c.explained, 0);
        let text = c.render("b.toml");
        assert!(
            text.contains("~ runtime-info/b: fail as the baseline expects, but not for its reason"),
            "{text}"
        );
    }

    /// A report missing a case of the selection (truncated, or the case was dropped from
    /// the run) fails, as does a case the selection does not have.
    #[test]
    fn missing_and_extra_cases_are_differences() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let o = observed(&[
            ("runtime-info/a", Observed::Pass),
            ("runtime-info/b", unimplemented()),
            ("runtime-info/zz", Observed::Pass),
        ]);
        let c = full(&o, &b);
        assert_eq!(
            c.differences,
            vec![
                Difference::NotSelected {
                    case: "runtime-info/zz".into()
                },
                Difference::Missing {
                    case: "runtime-info/c".into()
                },
                Difference::Missing {
                    case: "runtime-info/d".into()
                },
            ]
        );
        assert!(
            c.render("b.toml")
                .contains("! runtime-info/c: not in the report")
        );
        // With a filter, only the selected cases must be there, and entries of cases
        // filtered out are not differences.
        let c = compare(
            &b,
            &observed(&[("runtime-info/a", Observed::Pass)]),
            CATALOGUE,
            &["runtime-info/a"],
            "",
        );
        assert!(c.matches(), "filtered-out cases are not differences: {c:?}");
    }

    #[test]
    fn entries_for_unknown_cases_are_stale() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let cat = ["runtime-info/a", "runtime-info/d"];
        let c = compare(&b, &BTreeMap::new(), &cat, &[], "");
        assert_eq!(
            c.differences,
            vec![Difference::UnknownCase {
                case: "runtime-info/b".into()
            }]
        );
    }

    #[test]
    fn entries_may_be_limited_to_handlers() {
        let b = Baseline::parse(
            r#"
runtime = "x"
[[expected]]
case = "runtime-info/b"
expect = "fail"
reason = "only crun"
message_contains = "crun"
handlers = ["crun"]
"#,
        )
        .expect("parse");
        let crun_fail = observed(&[("runtime-info/b", Observed::Fail("crun said no".into()))]);
        let sel = ["runtime-info/b"];
        assert!(compare(&b, &crun_fail, CATALOGUE, &sel, "crun").matches());
        let runc = compare(&b, &crun_fail, CATALOGUE, &sel, "runc");
        assert!(
            matches!(&runc.differences[..], [Difference::Unexpected { .. }]),
            "{runc:?}"
        );
        let passes = observed(&[("runtime-info/b", Observed::Pass)]);
        assert!(compare(&b, &passes, CATALOGUE, &sel, "runc").matches());
    }

    #[test]
    fn bad_baselines_are_refused() {
        let twice = format!(
            "{BASELINE}\n[[expected]]\ncase = \"runtime-info/b\"\nexpect = \"fail\"\nreason = \"again\"\nmessage_contains = \"x\"\n"
        );
        assert!(Baseline::parse(&twice).unwrap_err().contains("twice"));
        let per_handler = "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"fail\"\nreason = \"r\"\nmessage_contains = \"m\"\nhandlers = [\"runc\"]\n[[expected]]\ncase = \"a\"\nexpect = \"fail\"\nreason = \"r\"\nmessage_contains = \"m\"\nhandlers = [\"crun\"]\n";
        assert!(Baseline::parse(per_handler).is_ok());
        let overlapping = per_handler.replace("[\"crun\"]", "[\"crun\", \"runc\"]");
        assert!(Baseline::parse(&overlapping).unwrap_err().contains("twice"));
        let no_reason = "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"fail\"\nreason = \" \"\nmessage_contains = \"m\"\n";
        assert!(
            Baseline::parse(no_reason)
                .unwrap_err()
                .contains("no reason")
        );
        let no_message =
            "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"fail\"\nreason = \"r\"\n";
        assert!(Baseline::parse(no_message).is_err());
        let empty_message = format!("{no_message}message_contains = \"\"\n");
        assert!(
            Baseline::parse(&empty_message)
                .unwrap_err()
                .contains("message_contains")
        );
        let bad_kind = "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"flaky\"\nreason = \"r\"\nmessage_contains = \"m\"\n";
        assert!(Baseline::parse(bad_kind).is_err());
        assert!(Baseline::parse("runtime = \"x\"\nextra = 1\n").is_err());
    }

    #[test]
    fn junit_written_by_the_report_reads_back() {
        let r = sample::report();
        let xml = report::to_junit(&r);
        let run = parse_junit(&xml).expect("parse");
        assert_eq!(run.observed, from_outcomes(&r.outcomes));
        assert_eq!(run.handler, "");
        assert_eq!(
            run.observed.get("runtime-info/b"),
            Some(&Observed::Fail("got <nothing> & less".into()))
        );
        assert_eq!(
            run.observed.get("runtime-info/d"),
            Some(&Observed::Skip("needs root".into()))
        );
        assert!(parse_junit("<testsuites/>").is_err());
        let mut cell = crate::report::CellReport::from(&r);
        cell.handler = "crun".into();
        let run = parse_junit(&report::cell_to_junit(&cell)).expect("parse");
        assert_eq!(run.handler, "crun");
    }

    /// A report cut short is refused, wherever the cut falls: mid-element, between test
    /// cases, or between suites.
    #[test]
    fn truncated_junit_is_refused() {
        let xml = report::to_junit(&sample::report());
        let mut cuts = 0;
        for (at, _) in xml.char_indices().filter(|(i, _)| *i > 0) {
            let cut = &xml[..at];
            if cut.trim_end().ends_with("</testsuites>") {
                continue;
            }
            assert!(parse_junit(cut).is_err(), "accepted a report cut at {at}");
            cuts += 1;
        }
        assert!(cuts > 100);
        // A whole test case removed, the end intact: the count no longer matches.
        let start = xml.find("<testcase ").expect("a test case");
        let end = xml[start..].find("</testcase>").expect("closed") + start + "</testcase>".len();
        let edited = format!("{}{}", &xml[..start], &xml[end..]);
        assert!(
            parse_junit(&edited)
                .unwrap_err()
                .contains("truncated or edited")
        );
    }

    /// The command as the scripts run it: a truncated report, and a report short of the
    /// catalogue, both fail.
    #[test]
    fn compare_command_fails_a_truncated_or_partial_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("b.toml");
        std::fs::write(&base, "runtime = \"x\"\n").expect("write");
        let junit = dir.path().join("junit.xml");
        let xml = report::to_junit(&sample::report());
        let args = CompareArgs {
            junit: junit.clone(),
            baseline: base,
            filter: None,
            areas: Vec::new(),
        };
        std::fs::write(&junit, &xml[..xml.len() / 2]).expect("write");
        assert!(matches!(
            compare_command(&args),
            Err(BaselineError::Junit { .. })
        ));
        // Whole, but of four made-up cases: the catalogue's cases are missing.
        std::fs::write(&junit, &xml).expect("write");
        assert_eq!(compare_command(&args).ok(), Some(false));
    }

    /// A run of some areas (`run --area`, as the VM fixture does) is judged by `compare
    /// --area`: it must hold exactly those areas' cases.
    #[test]
    fn compare_command_judges_a_run_of_some_areas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("b.toml");
        std::fs::write(&base, "runtime = \"crid 0.1.0\"\n").expect("write");
        let junit = dir.path().join("junit.xml");
        let outcomes = crate::cases::catalogue()
            .into_iter()
            .filter(|c| c.area.name() == "runtime-info")
            .map(|case| Outcome {
                case,
                verdict: Verdict::Pass,
                note: String::new(),
                duration: std::time::Duration::from_millis(1),
            })
            .collect();
        let run = report::RunReport {
            endpoint: "unix:///run/vm/crid.sock".into(),
            runtime: "crid 0.1.0".into(),
            outcomes,
        };
        std::fs::write(&junit, report::to_junit(&run)).expect("write");
        let mut args = CompareArgs {
            junit,
            baseline: base,
            filter: None,
            areas: vec!["runtime-info".into()],
        };
        assert!(
            compare_command(&args).expect("compare"),
            "the area is whole"
        );
        args.areas.push("stats".into());
        assert!(
            !compare_command(&args).expect("compare"),
            "the stats cases are missing"
        );
    }

    #[test]
    fn checked_in_baselines_parse_and_name_real_cases() {
        let ids: Vec<&str> = crate::cases::catalogue().iter().map(|c| c.id).collect();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("conformance/baseline exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let b = Baseline::load(&path).expect("valid baseline");
                for e in &b.expected {
                    assert!(
                        ids.contains(&e.case.as_str()),
                        "{}: unknown case {}",
                        path.display(),
                        e.case
                    );
                }
                n += 1;
            }
        }
        assert!(
            n >= 2,
            "expected the crid and containerd baselines in {}",
            dir.display()
        );
    }

    /// Appended to [`BASELINE`].
    const TRANSIENT: &str = r#"
[[transient]]
reason = "the runtime fails to start now and then"
message_contains = "failed to seal"
handlers = ["youki"]
"#;

    #[test]
    fn a_transient_failure_explains_a_failure_of_any_case_by_its_message() {
        let b = Baseline::parse(&format!("{BASELINE}{TRANSIENT}")).expect("parse");
        let sealed =
            || Observed::Fail("ExecSync: Internal: youki: failed to seal /proc/self/exe".into());
        // In a case without an entry, and in one whose entry expects another message.
        let o = observed(&[
            ("runtime-info/a", sealed()),
            ("runtime-info/b", sealed()),
            ("runtime-info/c", Observed::Pass),
            ("runtime-info/d", Observed::Skip("needs root".into())),
        ]);
        let c = compare(&b, &o, CATALOGUE, CATALOGUE, "youki");
        assert!(c.matches(), "{c:?}");
        assert_eq!((c.passed, c.explained, c.transient), (1, 3, 2));
        assert!(
            c.render("b").starts_with(
                "baseline b: 1 passed, 3 as expected (2 of them a transient failure of the runtime), 0 unexplained"
            ),
            "{}",
            c.render("b")
        );
        // A run that never meets it is no difference (runtime-info/b's own entry still is).
        let o = observed(&[
            ("runtime-info/a", Observed::Pass),
            ("runtime-info/b", unimplemented()),
            ("runtime-info/c", Observed::Pass),
            ("runtime-info/d", Observed::Skip("needs root".into())),
        ]);
        let c = compare(&b, &o, CATALOGUE, CATALOGUE, "youki");
        assert!(c.matches(), "{c:?}");
        assert_eq!(c.transient, 0);
        // Another handler, another message, or a skip: not explained.
        let on = |handler, seen: Observed| {
            let o = observed(&[
                ("runtime-info/a", seen),
                ("runtime-info/b", unimplemented()),
                ("runtime-info/c", Observed::Pass),
                ("runtime-info/d", Observed::Skip("needs root".into())),
            ]);
            compare(&b, &o, CATALOGUE, CATALOGUE, handler)
                .differences
                .len()
        };
        assert_eq!(on("runc", sealed()), 1);
        assert_eq!(on("youki", Observed::Fail("broke".into())), 1);
        assert_eq!(on("youki", Observed::Skip("failed to seal".into())), 1);
        // The reports name it as expected, with its reason.
        let mut cell = report::CellReport::from(&sample::report());
        cell.handler = "youki".into();
        cell.entries[2].verdict = Verdict::Fail("youki: failed to seal /proc/self/exe".into());
        b.annotate(&mut cell);
        assert_eq!(
            cell.entries[2].expected.as_deref(),
            Some("a transient failure of the runtime: the runtime fails to start now and then")
        );
        assert!(
            Baseline::parse(
                "runtime = \"x\"\n[[transient]]\nreason = \"r\"\nmessage_contains = \" \"\n"
            )
            .is_err()
        );
    }

    fn annotated(baseline: &str) -> report::CellReport {
        let mut cell = report::CellReport::from(&sample::report());
        Baseline::parse(baseline)
            .expect("parse")
            .annotate(&mut cell);
        cell
    }

    const EXPECTS_B: &str = r#"
runtime = "example 1.0"

[[expected]]
case = "runtime-info/b"
expect = "fail"
reason = "known <bug>"
message_contains = "nothing"
"#;

    #[test]
    fn a_run_whose_required_failures_are_all_expected_passes() {
        // Without a baseline the required failure of runtime-info/b fails the run.
        let plain = report::CellReport::from(&sample::report());
        assert!(!plain.passed());
        assert_eq!(plain.verdict_line(), "FAIL: 1 required case(s) failed");

        let cell = annotated(EXPECTS_B);
        assert_eq!(cell.baseline.as_deref(), Some("example 1.0"));
        assert_eq!(cell.entries[1].expected.as_deref(), Some("known <bug>"));
        // The optional failure is not in the baseline: unexpected, but it fails no run.
        assert_eq!(cell.entries[2].expected, None);
        assert!(cell.passed());
        assert!(
            cell.verdict_line().starts_with("PASS: "),
            "{}",
            cell.verdict_line()
        );
        let ids = |v: Vec<&report::Entry>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(cell.unexpected_failures()), ["runtime-info/c"]);
        assert_eq!(ids(cell.expected_non_passes()), ["runtime-info/b"]);

        let table = report::cell_to_table(&cell);
        assert!(table.contains("fail (expected)  runtime-info/b"), "{table}");
        assert!(
            table.contains("Unexpected failures (1):\n  runtime-info/c (fail (optional))"),
            "{table}"
        );
        assert!(
            table.contains(
                "Expected by the baseline of example 1.0 (1):\n  runtime-info/b: known <bug>"
            ),
            "{table}"
        );
        // The closing line CI tooling reads is unchanged.
        assert!(
            table
                .trim_end()
                .ends_with("conformance: 1 passed, 2 failed, 1 skipped"),
            "{table}"
        );

        let md = report::cell_to_markdown(&cell);
        assert!(
            md.contains("**PASS**: no required case failed unexpectedly"),
            "{md}"
        );
        let unexpected = md.find("## Unexpected failures").expect("section");
        let expected = md
            .find("## Expected failures and skips (baseline of example 1.0)")
            .expect("section");
        assert!(
            md[unexpected..expected].contains("- `runtime-info/c` (optional)"),
            "{md}"
        );
        assert!(
            md[expected..].contains("- runtime-info/b: known <bug>"),
            "{md}"
        );
        assert!(!md[unexpected..expected].contains("runtime-info/b"), "{md}");

        let m = report::MatrixReport {
            generated: "now".into(),
            cells: vec![cell],
            differences: Vec::new(),
        };
        assert!(m.passed());
        let html = report::html::to_html(&m);
        assert!(
            html.contains("<div class=\"verdict pass\">PASS · "),
            "{html}"
        );
        let expected = html
            .find("<h2>Expected failures and skips")
            .expect("section");
        let failures = html.find("<h2>Failures</h2>").expect("section");
        assert!(
            html[failures..expected].contains("runtime-info/c"),
            "{html}"
        );
        assert!(
            !html[failures..expected].contains("runtime-info/b"),
            "{html}"
        );
        assert!(
            html[expected..].contains("why: known &lt;bug&gt;"),
            "{html}"
        );
        let summary = m.to_markdown();
        assert!(
            summary.contains("## Expected failures and skips (in the baseline)"),
            "{summary}"
        );
        assert!(summary.contains("**PASS**"), "{summary}");
    }

    #[test]
    fn a_listed_failure_with_another_message_is_unexpected_in_the_reports() {
        // BASELINE expects runtime-info/b to fail with Unimplemented; it failed otherwise.
        let cell = annotated(BASELINE);
        assert_eq!(cell.entries[1].expected, None);
        // runtime-info/d is skipped as the baseline expects.
        assert_eq!(cell.entries[3].expected.as_deref(), Some("no root in CI"));
        assert!(!cell.passed());
        assert!(
            cell.verdict_line().starts_with(
                "FAIL: 1 required case(s) failed that the baseline of example 1.0 does not expect"
            ),
            "{}",
            cell.verdict_line()
        );
        assert!(report::cell_to_table(&cell).contains("skip (expected)  runtime-info/d"));
        // A handler-restricted entry does not apply to another handler's cell.
        let mut cell = report::CellReport::from(&sample::report());
        cell.handler = "crun".into();
        let mut b = Baseline::parse(EXPECTS_B).expect("parse");
        b.expected[0].handlers = vec!["runc".into()];
        b.annotate(&mut cell);
        assert!(!cell.passed());
    }

    #[test]
    fn differences_are_the_cases_in_exactly_one_baseline() {
        let a = Baseline::parse(
            r#"
runtime = "alpha"
[[expected]]
case = "container/stop-unknown-id"
expect = "fail"
reason = "only alpha | fails"
message_contains = "x"
[[expected]]
case = "events/container-lifecycle"
expect = "fail"
reason = "both"
message_contains = "x"
"#,
        )
        .expect("parse");
        let b = Baseline::parse(
            r#"
runtime = "beta"
[[expected]]
case = "events/container-lifecycle"
expect = "skip"
reason = "both"
message_contains = "x"
handlers = ["runc"]
[[expected]]
case = "api-surface/no-such-case"
expect = "skip"
reason = "only beta"
message_contains = "x"
"#,
        )
        .expect("parse");
        let rows = runtime_differences(&a, &b, &crate::cases::catalogue());
        assert_eq!(
            rows.iter().map(|r| r.case.as_str()).collect::<Vec<_>>(),
            ["api-surface/no-such-case", "container/stop-unknown-id"]
        );
        assert_eq!(rows[0].fails_on, "beta");
        assert_eq!(rows[0].passes_on, "alpha");
        assert_eq!(rows[0].clause, "");
        assert_eq!(rows[1].fails_on, "alpha");
        assert!(
            rows[1]
                .clause
                .starts_with("cri:RuntimeService.StopContainer")
        );
        let md = differences_markdown(&rows);
        assert!(
            md.contains("| `container/stop-unknown-id` | `cri:RuntimeService.StopContainer"),
            "{md}"
        );
        assert!(
            md.contains("| alpha (fails) | beta | only alpha \\| fails |"),
            "{md}"
        );
        assert!(
            md.contains("| beta (skipped) | alpha | only beta |"),
            "{md}"
        );
        assert!(differences_markdown(&[]).starts_with("No case"));
    }

    /// Every case on which crid and containerd differ has a reason that names the case's
    /// clause and says whose behaviour the clause supports.
    #[test]
    fn checked_in_differences_name_their_clause_and_whom_it_supports() {
        let catalogue = crate::cases::catalogue();
        let rows = checked_in_differences(&catalogue);
        assert!(!rows.is_empty());
        for r in rows {
            assert!(!r.clause.is_empty(), "{}: not in the catalogue", r.case);
            assert!(
                r.reason.contains(&format!("Clause `{}`", r.clause)),
                "{}: the reason must name its clause as Clause `{}`: {}",
                r.case,
                r.clause,
                r.reason
            );
            assert!(
                r.reason.contains("supports"),
                "{}: the reason must say whose behaviour the clause supports: {}",
                r.case,
                r.reason
            );
        }
    }
}

//! Baselines: the cases a given runtime is known to fail or skip, each with the reason,
//! and the comparison of a run against one. Any difference is unexplained and fails:
//! a failure or skip the baseline does not list, and a listed case that now passes (so
//! the baseline stays true). This is how the differential run against containerd proves
//! the cases right rather than fitted to crid.

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

    /// Parses baseline TOML.
    pub fn parse(text: &str) -> Result<Baseline, String> {
        let b: Baseline = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        for e in &b.expected {
            if !seen.insert(e.case.as_str()) {
                return Err(format!("case {} is listed twice", e.case));
            }
            if e.reason.trim().is_empty() {
                return Err(format!("case {} has no reason", e.case));
            }
        }
        Ok(b)
    }

    fn get(&self, case: &str) -> Option<&Entry> {
        self.expected.iter().find(|e| e.case == case)
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
        let _ = writeln!(
            out,
            "baseline {baseline_name}: {} passed, {} as expected, {} unexplained",
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

/// Compares observed results with `baseline`. `catalogue` is every known case id; entries
/// for cases that exist but did not run (filtered out) are not differences.
pub fn compare(
    baseline: &Baseline,
    observed: &BTreeMap<String, Observed>,
    catalogue: &[&str],
) -> Comparison {
    let mut c = Comparison::default();
    for (case, seen) in observed {
        match (baseline.get(case), seen) {
            (None, Observed::Pass) => c.passed += 1,
            (None, _) => c.differences.push(Difference::Unexpected {
                case: case.clone(),
                observed: seen.clone(),
            }),
            (Some(e), Observed::Pass) => c.differences.push(Difference::NowPasses {
                case: case.clone(),
                reason: e.reason.clone(),
            }),
            (Some(e), Observed::Fail(_)) if e.expect == Expected::Fail => c.explained += 1,
            (Some(e), Observed::Skip(_)) if e.expect == Expected::Skip => c.explained += 1,
            (Some(e), _) => c.differences.push(Difference::Changed {
                case: case.clone(),
                expected: e.expect,
                observed: seen.clone(),
            }),
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

/// Reads results from a JUnit report written by `run --junit`: each `<testcase>` is named
/// `<case id> [<clause>]` and holds a `<failure>`, a `<skipped>` or neither (pass).
pub fn from_junit(path: &Path) -> Result<BTreeMap<String, Observed>, BaselineError> {
    let xml = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_junit(&xml).map_err(|reason| BaselineError::Junit {
        path: path.to_owned(),
        reason,
    })
}

/// Parses the JUnit text (see [`from_junit`]).
pub fn parse_junit(xml: &str) -> Result<BTreeMap<String, Observed>, String> {
    let mut out = BTreeMap::new();
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
    Ok(out)
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
}

/// Runs `compare`: prints the diff; `Ok(true)` when nothing is unexplained.
pub fn compare_command(args: &CompareArgs) -> Result<bool, BaselineError> {
    let baseline = Baseline::load(&args.baseline)?;
    let observed = from_junit(&args.junit)?;
    let ids: Vec<&str> = crate::cases::catalogue().iter().map(|c| c.id).collect();
    let c = compare(&baseline, &observed, &ids);
    print!(
        "{}",
        c.render(&format!(
            "{} ({})",
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

[[expected]]
case = "runtime-info/d"
expect = "skip"
reason = "no root in CI"
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

    #[test]
    fn a_run_matching_its_baseline_passes() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let o = observed(&[
            ("runtime-info/a", Observed::Pass),
            ("runtime-info/b", Observed::Fail("x".into())),
            ("runtime-info/d", Observed::Skip("needs root".into())),
        ]);
        let c = compare(&b, &o, CATALOGUE);
        assert!(c.matches(), "{c:?}");
        assert_eq!((c.passed, c.explained), (1, 2));
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
        let c = compare(&b, &o, CATALOGUE);
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

    #[test]
    fn entries_for_unknown_cases_are_stale_but_unrun_cases_are_not() {
        let b = Baseline::parse(BASELINE).expect("parse");
        let c = compare(
            &b,
            &observed(&[("runtime-info/a", Observed::Pass)]),
            CATALOGUE,
        );
        assert!(c.matches(), "filtered-out cases are not differences: {c:?}");
        let c = compare(&b, &BTreeMap::new(), &["runtime-info/a", "runtime-info/d"]);
        assert_eq!(
            c.differences,
            vec![Difference::UnknownCase {
                case: "runtime-info/b".into()
            }]
        );
    }

    #[test]
    fn bad_baselines_are_refused() {
        let twice = format!(
            "{BASELINE}\n[[expected]]\ncase = \"runtime-info/b\"\nexpect = \"fail\"\nreason = \"again\"\n"
        );
        assert!(Baseline::parse(&twice).unwrap_err().contains("twice"));
        let no_reason =
            "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"fail\"\nreason = \" \"\n";
        assert!(
            Baseline::parse(no_reason)
                .unwrap_err()
                .contains("no reason")
        );
        let bad_kind =
            "runtime = \"x\"\n[[expected]]\ncase = \"a\"\nexpect = \"flaky\"\nreason = \"r\"\n";
        assert!(Baseline::parse(bad_kind).is_err());
        assert!(Baseline::parse("runtime = \"x\"\nextra = 1\n").is_err());
    }

    #[test]
    fn junit_written_by_the_report_reads_back() {
        let r = sample::report();
        let xml = report::to_junit(&r);
        let o = parse_junit(&xml).expect("parse");
        assert_eq!(o, from_outcomes(&r.outcomes));
        assert_eq!(
            o.get("runtime-info/b"),
            Some(&Observed::Fail("got <nothing> & less".into()))
        );
        assert_eq!(
            o.get("runtime-info/d"),
            Some(&Observed::Skip("needs root".into()))
        );
        assert!(parse_junit("<testsuites/>").is_err());
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
}

//! The recorded results of a mutation run (conformance/traceability/mutation.toml) and
//! their section of docs/traceability.md.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// The committed results, read by the traceability generator and by crid's test that keeps
/// its faults and this file in step.
pub const RESULTS_TOML: &str = include_str!("../../traceability/mutation.toml");

/// The command that records them (quoted in the generated page).
pub const RECORD: &str = "scripts/mutation.sh";

/// A mutation run. Every field has a default, so that a record without a run parses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Results {
    /// Every area for every fault (`--full`), rather than the areas each fault declares.
    pub full: bool,
    /// Wall time of the whole run (control included), in seconds.
    pub seconds: u64,
    /// Cases that failed in the control run (no fault): they catch nothing.
    pub control_failures: Vec<String>,
    /// One entry per fault, in crid's order.
    pub fault: Vec<FaultResult>,
}

/// One fault's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultResult {
    /// The fault's name (`crid --fault NAME`).
    pub name: String,
    /// The clause it violates.
    pub clause: String,
    /// What it breaks.
    pub summary: String,
    /// The areas run (`all` in a full run).
    pub areas: Vec<String>,
    /// How many cases ran.
    pub cases_run: usize,
    /// The cases that failed under it and pass without it.
    pub caught_by: Vec<String>,
}

impl Results {
    /// Parses recorded results.
    pub fn parse(text: &str) -> Result<Results, toml::de::Error> {
        toml::from_str(text)
    }

    /// The checked-in results (an empty record when the file holds none yet).
    pub fn checked_in() -> Results {
        Results::parse(RESULTS_TOML).unwrap_or_default()
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# Written by `crid-conformance mutate` ({RECORD}); docs/traceability.md is \
             generated from it.\n# Do not edit by hand: run the mutation again.\n\n{body}"
        )
    }

    /// Takes the faults of `newer` over ours (a run of some faults updates only those),
    /// keeping `order` (crid's list of names); faults no longer in it are dropped. The
    /// run's mode and duration are the newer run's only when it ran every fault.
    pub fn merge(mut self, newer: Results, order: &[String]) -> Results {
        let complete = order
            .iter()
            .all(|n| newer.fault.iter().any(|f| &f.name == n));
        if complete {
            self.full = newer.full;
            self.seconds = newer.seconds;
            self.control_failures = newer.control_failures;
        } else {
            self.control_failures.extend(newer.control_failures);
            self.control_failures.sort();
            self.control_failures.dedup();
        }
        for f in newer.fault {
            match self.fault.iter_mut().find(|o| o.name == f.name) {
                Some(o) => *o = f,
                None => self.fault.push(f),
            }
        }
        self.fault.retain(|f| order.contains(&f.name));
        self.fault
            .sort_by_key(|f| order.iter().position(|n| *n == f.name));
        self
    }

    /// Faults caught by at least one case.
    pub fn caught(&self) -> usize {
        self.fault
            .iter()
            .filter(|f| !f.caught_by.is_empty())
            .count()
    }

    /// The Markdown section of docs/traceability.md.
    pub fn markdown(&self) -> String {
        let mut s = String::from("## Mutation score\n\n");
        if self.fault.is_empty() {
            s.push_str("No mutation run is recorded.\n\n");
            return s;
        }
        let _ = writeln!(
            s,
            "A test build of crid (`--features faults`) carries named faults, off by default, \
             each a plausible bug at one point of behaviour (src/faults.rs); `{RECORD}` runs the \
             suite once per fault, on a fresh daemon started with `--fault NAME`, and records \
             the cases that failed under it and pass without it \
             (conformance/traceability/mutation.toml). A fault no case catches is a gap in the \
             harness.\n\n\
             **Score: {} of {} faults caught ({:.0}%).** Each fault ran {}; the last run of every fault took \
             {} min {} s.{}\n",
            self.caught(),
            self.fault.len(),
            100.0 * self.caught() as f64 / self.fault.len() as f64,
            if self.full {
                "the whole suite"
            } else {
                "the cases of the areas it declares (`--full` runs the whole suite for each)"
            },
            self.seconds / 60,
            self.seconds % 60,
            if self.control_failures.is_empty() {
                String::new()
            } else {
                format!(
                    " Failing without a fault, so catching nothing: {}.",
                    self.control_failures
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        s.push_str(
            "| fault | what it breaks | clause | areas run | caught by |\n|---|---|---|---|---|\n",
        );
        for f in &self.fault {
            let caught = if f.caught_by.is_empty() {
                "**not caught**".to_owned()
            } else {
                f.caught_by
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = writeln!(
                s,
                "| `{}` | {} | `{}` | {} | {caught} |",
                f.name,
                f.summary.replace('|', "\\|"),
                f.clause.replace('|', "\\|"),
                f.areas.join(", ")
            );
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(name: &str, caught: &[&str]) -> FaultResult {
        FaultResult {
            name: name.into(),
            clause: "cri:RuntimeService.StopContainer#idempotent".into(),
            summary: "s".into(),
            areas: vec!["container".into()],
            cases_run: 3,
            caught_by: caught.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn results_round_trip_and_merge_in_crids_order() {
        let old = Results {
            full: false,
            seconds: 10,
            control_failures: vec![],
            fault: vec![fault("a", &["x"]), fault("gone", &["y"]), fault("b", &[])],
        };
        let text = old.to_toml();
        assert_eq!(Results::parse(&text).expect("parses"), old);
        let newer = Results {
            full: false,
            seconds: 5,
            control_failures: vec!["z".into()],
            fault: vec![fault("c", &["w"]), fault("b", &["v"])],
        };
        let order = ["a", "b", "c"].map(String::from);
        let merged = old.clone().merge(newer.clone(), &order);
        let names: Vec<&str> = merged.fault.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(merged.fault[1].caught_by, ["v"]);
        assert_eq!(merged.caught(), 3);
        // A partial run keeps the whole run's duration.
        assert_eq!(merged.seconds, 10);
        assert_eq!(merged.control_failures, ["z"]);
        // A run of every fault replaces it.
        let order = ["b", "c"].map(String::from);
        let merged = old.merge(newer, &order);
        assert_eq!(merged.seconds, 5);
        assert_eq!(merged.fault.len(), 2);
    }

    #[test]
    fn the_section_gives_the_score_and_marks_gaps() {
        let r = Results {
            full: false,
            seconds: 125,
            control_failures: vec![],
            fault: vec![fault("a", &["x", "y"]), fault("b", &[])],
        };
        let md = r.markdown();
        assert!(
            md.contains("**Score: 1 of 2 faults caught (50%).**"),
            "{md}"
        );
        assert!(md.contains("2 min 5 s"), "{md}");
        assert!(md.contains("| `a` | s | `cri:RuntimeService.StopContainer#idempotent` | container | `x`<br>`y` |"), "{md}");
        assert!(
            md.contains("| `b` | s |") && md.contains("**not caught**"),
            "{md}"
        );
    }
}

//! The grid of cells that ran apart: JUnit reports written by `run --junit`, `matrix` or a
//! VM fixture's guest, read back into cells and rendered as one matrix. CI runs its cells
//! one after another (the host's handlers, the shim v2 cell area by area, the guests), so
//! the grid people read is put together afterwards from their reports.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::{CellReport, EXTERNAL_AREA, Entry};
use crate::baseline::Baseline;
use crate::cases::{self, Requirement, Verdict};

/// One cell of the grid: its JUnit reports (several when the cell ran area by area), the
/// baseline its failures are read against, and where it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSpec {
    /// The reports; their cases must not overlap.
    pub junit: Vec<PathBuf>,
    /// The runtime's baseline: a failure it expects does not fail the cell.
    pub baseline: Option<PathBuf>,
    /// Where the endpoint ran when not on this host (a VM fixture's cell name).
    pub fixture: String,
}

impl FromStr for CellSpec {
    type Err = String;

    /// `junit=A.xml[,B.xml...][;baseline=FILE][;fixture=NAME]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = CellSpec {
            junit: Vec::new(),
            baseline: None,
            fixture: String::new(),
        };
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=value"))?;
            match key {
                "junit" => spec.junit.extend(
                    value
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from),
                ),
                "baseline" => spec.baseline = Some(PathBuf::from(value)),
                "fixture" => spec.fixture = value.to_owned(),
                other => {
                    return Err(format!("unknown key {other:?} (junit, baseline, fixture)"));
                }
            }
        }
        if spec.junit.is_empty() {
            return Err(format!("{s:?}: no junit= report"));
        }
        Ok(spec)
    }
}

/// Reads a cell from its reports and annotates it with its baseline.
pub fn load_cell(spec: &CellSpec) -> Result<CellReport, String> {
    let mut cell: Option<CellReport> = None;
    for path in &spec.junit {
        let xml = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let part = cell_from_junit(&xml).map_err(|e| format!("{}: {e}", path.display()))?;
        match &mut cell {
            None => cell = Some(part),
            Some(c) => {
                if (c.endpoint.as_str(), c.handler.as_str())
                    != (part.endpoint.as_str(), part.handler.as_str())
                {
                    return Err(format!(
                        "{}: endpoint {} handler {:?}, but the cell's first report has {} {:?}",
                        path.display(),
                        part.endpoint,
                        part.handler,
                        c.endpoint,
                        c.handler
                    ));
                }
                for e in part.entries {
                    if c.entries.iter().any(|x| x.id == e.id) {
                        return Err(format!("{}: case {} appears twice", path.display(), e.id));
                    }
                    c.entries.push(e);
                }
            }
        }
    }
    let mut cell = cell.ok_or("a cell with no report")?;
    if !spec.fixture.is_empty() {
        cell.fixture = spec.fixture.clone();
    }
    if let Some(path) = &spec.baseline {
        Baseline::load(path)
            .map_err(|e| e.to_string())?
            .annotate(&mut cell);
    }
    Ok(cell)
}

/// Parses a JUnit report this harness wrote ([`super::cell_to_junit`]) back into a cell.
/// The catalogue supplies each case's summary (JUnit keeps it only for failures); a case
/// the catalogue does not know (an external suite's) keeps what the report says.
pub fn cell_from_junit(xml: &str) -> Result<CellReport, String> {
    // The strict reader refuses truncated reports, miscounts and duplicate cases.
    crate::baseline::parse_junit(xml)?;
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let property = |scope: roxmltree::Node<'_, '_>, name: &str| {
        scope
            .descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .unwrap_or_default()
            .to_owned()
    };
    let root = doc.root_element();
    let catalogue = cases::catalogue();
    let mut entries = Vec::new();
    for case in root.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").ok_or("a <testcase> has no name")?;
        let (id, clause) = match name.split_once(" [") {
            Some((id, clause)) => (id.to_owned(), clause.trim_end_matches(']').to_owned()),
            None => (name.to_owned(), String::new()),
        };
        let child = |tag: &str| case.children().find(|n| n.has_tag_name(tag));
        let message =
            |n: roxmltree::Node<'_, '_>| n.attribute("message").unwrap_or_default().to_owned();
        let verdict = match (child("failure"), child("skipped")) {
            (Some(f), _) => Verdict::Fail(message(f)),
            (None, Some(s)) => Verdict::Skip(message(s)),
            (None, None) => Verdict::Pass,
        };
        let known = catalogue.iter().find(|c| c.id == id);
        entries.push(Entry {
            summary: known.map(|c| c.summary.to_owned()).unwrap_or_default(),
            area: case
                .attribute("classname")
                .unwrap_or(EXTERNAL_AREA)
                .to_owned(),
            requirement: match property(case, "requirement").as_str() {
                "optional" => Requirement::Optional,
                _ => Requirement::Required,
            },
            verdict,
            note: child("system-out")
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_owned(),
            duration: case
                .attribute("time")
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or_default(),
            expected: None,
            id,
            clause,
        });
    }
    Ok(CellReport {
        endpoint: property(root, "endpoint"),
        runtime: property(root, "runtime"),
        handler: property(root, "runtime_handler"),
        fixture: property(root, "fixture"),
        entries,
        baseline: None,
    })
}

/// Checks that every report of `specs` exists before any is read, for a clear error.
pub fn check_paths(specs: &[CellSpec]) -> Result<(), String> {
    let missing: Vec<&Path> = specs
        .iter()
        .flat_map(|s| s.junit.iter().chain(s.baseline.iter()))
        .map(PathBuf::as_path)
        .filter(|p| !p.exists())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing: {}",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{cell_to_junit, sample};

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let s: CellSpec = "junit=a.xml,b.xml;baseline=c.toml;fixture=vm-x"
            .parse()
            .expect("parse");
        assert_eq!(
            s.junit,
            vec![PathBuf::from("a.xml"), PathBuf::from("b.xml")]
        );
        assert_eq!(s.baseline, Some(PathBuf::from("c.toml")));
        assert_eq!(s.fixture, "vm-x");
        assert!("baseline=c.toml".parse::<CellSpec>().is_err());
        assert!("junit=a.xml;colour=red".parse::<CellSpec>().is_err());
        assert!("junit".parse::<CellSpec>().is_err());
    }

    #[test]
    fn a_cell_survives_its_junit_round_trip() {
        let mut cell = CellReport::from(&sample::report());
        cell.handler = "crun".into();
        let back = cell_from_junit(&cell_to_junit(&cell)).expect("parse");
        assert_eq!(back.endpoint, cell.endpoint);
        assert_eq!(back.runtime, cell.runtime);
        assert_eq!(back.handler, "crun");
        assert_eq!(back.entries.len(), cell.entries.len());
        for (a, b) in cell.entries.iter().zip(&back.entries) {
            assert_eq!(
                (
                    &a.id,
                    &a.clause,
                    &a.area,
                    a.requirement,
                    &a.verdict,
                    &a.note
                ),
                (
                    &b.id,
                    &b.clause,
                    &b.area,
                    b.requirement,
                    &b.verdict,
                    &b.note
                )
            );
        }
        assert_eq!(back.totals(), cell.totals());
    }

    #[test]
    fn a_cell_in_several_reports_is_joined_and_overlaps_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cell = CellReport::from(&sample::report());
        let (first, second) = cell.entries.split_at(1);
        let write = |name: &str, entries: &[Entry]| {
            let mut c = cell.clone();
            c.entries = entries.to_vec();
            let p = dir.path().join(name);
            std::fs::write(&p, cell_to_junit(&c)).expect("write");
            p
        };
        let a = write("a.xml", first);
        let b = write("b.xml", second);
        let spec = CellSpec {
            junit: vec![a.clone(), b],
            baseline: None,
            fixture: "vm-guest".into(),
        };
        let joined = load_cell(&spec).expect("load");
        assert_eq!(joined.entries.len(), cell.entries.len());
        assert_eq!(joined.fixture, "vm-guest");
        let twice = CellSpec {
            junit: vec![a.clone(), a],
            baseline: None,
            fixture: String::new(),
        };
        assert!(load_cell(&twice).expect_err("overlap").contains("twice"));
        assert!(check_paths(&[spec]).is_ok());
        assert!(
            check_paths(&[CellSpec {
                junit: vec![dir.path().join("absent.xml")],
                baseline: None,
                fixture: String::new(),
            }])
            .is_err()
        );
    }

    #[test]
    fn a_truncated_report_is_refused() {
        let cell = CellReport::from(&sample::report());
        let xml = cell_to_junit(&cell);
        assert!(cell_from_junit(&xml[..xml.len() / 2]).is_err());
    }
}

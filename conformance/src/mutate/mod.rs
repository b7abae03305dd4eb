//! The mutation score (issue 15): the suite run once per fault of a test build of crid
//! (feature `faults`, `crid --fault NAME`), each fault on a fresh daemon, and the cases
//! that failed under it recorded as the ones that caught it. A fault no case catches is a
//! gap in the harness. A control run without a fault comes first: a case that fails there
//! catches nothing.
//!
//! The faults and what they violate are crid's (`crid --list-faults`); this module knows
//! them only through that list. The results are written to
//! conformance/traceability/mutation.toml, which docs/traceability.md is generated from.

mod daemon;
pub mod results;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use daemon::Daemon;
pub use results::{FaultResult, Results};

use crate::cases::{self, Case, Verdict};
use crate::runner::{self, Environment};

/// What can stop a mutation run (a fault that is not caught is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `crid --list-faults` did not answer a list: not a build with the `faults` feature.
    #[error("{binary} --list-faults: {reason} (build it with `--features faults`)")]
    List {
        /// The binary asked.
        binary: String,
        /// What went wrong.
        reason: String,
    },
    /// A fault was asked for that the build does not have.
    #[error("unknown fault {0:?} (crid --list-faults lists them)")]
    UnknownFault(String),
    /// crid did not serve its socket.
    #[error("crid with fault {fault} did not start; its log ends:\n{log}")]
    Start {
        /// The fault (or `none`).
        fault: String,
        /// The end of its log.
        log: String,
    },
    /// The endpoint did not answer CRI.
    #[error("probing crid with fault {fault}: {reason}")]
    Probe {
        /// The fault (or `none`).
        fault: String,
        /// The probe's error.
        reason: String,
    },
}

/// One fault as `crid --list-faults` describes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FaultInfo {
    /// The stable kebab-case name.
    pub name: String,
    /// The areas whose cases should catch it.
    pub areas: Vec<String>,
    /// The CRI or OCI clause it violates.
    pub clause: String,
    /// What it breaks.
    pub summary: String,
}

/// Asks the faults build at `bin_dir/crid` for its faults.
pub fn list_faults(bin_dir: &Path) -> Result<Vec<FaultInfo>, MutateError> {
    let binary = bin_dir.join("crid");
    let fail = |reason: String| MutateError::List {
        binary: binary.display().to_string(),
        reason,
    };
    let out = std::process::Command::new(&binary)
        .arg("--list-faults")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let faults: Vec<FaultInfo> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| fail(format!("{e}: {l}"))))
        .collect::<Result<_, _>>()?;
    if faults.is_empty() {
        return Err(fail("no faults listed".into()));
    }
    Ok(faults)
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the faults build's `crid` and `crid-monitor` are.
    pub bin_dir: PathBuf,
    /// The fixture registry, as cases see it.
    pub images: Arc<cases::ImageRefs>,
    /// Only these faults (all when empty).
    pub only: Vec<String>,
    /// Every area for every fault, not only the areas each declares.
    pub full: bool,
    /// The daemons' CNI subnet.
    pub subnet: String,
    /// Where the daemons' directories go.
    pub work_root: PathBuf,
}

/// Runs the control and then every selected fault; `progress` gets a line per step.
pub async fn run(opts: &Options, mut progress: impl FnMut(&str)) -> Result<Results, MutateError> {
    let started = Instant::now();
    let all = list_faults(&opts.bin_dir)?;
    for name in &opts.only {
        if !all.iter().any(|f| &f.name == name) {
            return Err(MutateError::UnknownFault(name.clone()));
        }
    }
    let selected: Vec<FaultInfo> = all
        .into_iter()
        .filter(|f| opts.only.is_empty() || opts.only.contains(&f.name))
        .collect();
    let areas_of = |f: &FaultInfo| -> Vec<Case> {
        cases::catalogue()
            .into_iter()
            .filter(|c| opts.full || f.areas.iter().any(|a| a == c.area.name()))
            .collect()
    };
    // The control covers every case any fault runs.
    let control_areas: BTreeSet<String> = selected.iter().flat_map(|f| f.areas.clone()).collect();
    let control_cases: Vec<Case> = cases::catalogue()
        .into_iter()
        .filter(|c| opts.full || control_areas.contains(c.area.name()))
        .collect();
    progress(&format!(
        "control: {} cases without a fault",
        control_cases.len()
    ));
    let control = run_one(opts, None, &control_cases).await?;
    let control_failures: BTreeSet<String> = control
        .failed
        .iter()
        .map(|(id, why)| {
            progress(&format!("control: {id} fails without a fault: {why}"));
            id.clone()
        })
        .collect();

    let mut faults = Vec::new();
    for (i, f) in selected.iter().enumerate() {
        let cases = areas_of(f);
        let t = Instant::now();
        let r = run_one(opts, Some(&f.name), &cases).await?;
        let caught_by: Vec<String> = r
            .failed
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !control_failures.contains(id))
            .collect();
        progress(&format!(
            "[{}/{}] {}: {} ({} cases, {:.0}s){}",
            i + 1,
            selected.len(),
            f.name,
            if caught_by.is_empty() {
                "NOT CAUGHT".to_owned()
            } else {
                format!("caught by {}", caught_by.join(", "))
            },
            cases.len(),
            t.elapsed().as_secs_f64(),
            if r.leftovers.is_empty() {
                String::new()
            } else {
                format!("; left behind: {}", r.leftovers.join(", "))
            }
        ));
        faults.push(FaultResult {
            name: f.name.clone(),
            clause: f.clause.clone(),
            summary: f.summary.clone(),
            areas: if opts.full {
                vec!["all".to_owned()]
            } else {
                f.areas.clone()
            },
            cases_run: cases.len(),
            caught_by,
        });
    }
    Ok(Results {
        full: opts.full,
        seconds: started.elapsed().as_secs(),
        control_failures: control_failures.into_iter().collect(),
        fault: faults,
    })
}

/// What one daemon's run found.
struct OneRun {
    /// Failed cases with their messages, in catalogue order.
    failed: Vec<(String, String)>,
    /// What its teardown could not remove.
    leftovers: Vec<String>,
}

async fn run_one(
    opts: &Options,
    fault: Option<&str>,
    cases: &[Case],
) -> Result<OneRun, MutateError> {
    let (bin, work, registry, subnet) = (
        opts.bin_dir.clone(),
        opts.work_root.clone(),
        opts.images.registry.clone(),
        opts.subnet.clone(),
    );
    let name = fault.map(str::to_owned);
    let daemon = tokio::task::spawn_blocking(move || {
        Daemon::start(&bin, &work, name.as_deref(), &registry, &subnet)
    })
    .await
    .map_err(|e| MutateError::Io {
        what: "starting crid".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    let target = runner::probe(&daemon.endpoint())
        .await
        .map_err(|e| MutateError::Probe {
            fault: fault.unwrap_or("none").to_owned(),
            reason: e.to_string(),
        })?;
    let ctx = cases::Ctx {
        channel: target.channel.clone(),
        run_id: runner::new_run_id(),
        runtime_handler: String::new(),
        images: Some(opts.images.clone()),
        not_ready: None,
    };
    let env = Environment::detect().for_target(&target);
    let outcomes = runner::run(&ctx, cases, &env, |_| {}).await;
    let failed = outcomes
        .iter()
        .filter_map(|o| match &o.verdict {
            Verdict::Fail(why) => Some((o.case.id.to_owned(), why.clone())),
            _ => None,
        })
        .collect();
    // Give a hung RPC of the fault no chance to hold the teardown.
    drop(ctx);
    drop(target);
    let leftovers = tokio::time::timeout(Duration::from_secs(120), daemon.shutdown())
        .await
        .unwrap_or_else(|_| vec!["teardown did not finish within 120 s".into()]);
    Ok(OneRun { failed, leftovers })
}

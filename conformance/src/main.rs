//! `crid-conformance`: run the conformance suite against a CRI endpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crid_conformance::cases::{self, Requirement};
use crid_conformance::drivers;
use crid_conformance::report::progress::Progress;
use crid_conformance::report::{self, CellReport, MatrixReport, RunReport};
use crid_conformance::runner::{self, Environment, Target};

/// Checks a CRI endpoint against the CRI and OCI specs; every case names its clause.
#[derive(Debug, Parser)]
#[command(name = "crid-conformance", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the suite against an endpoint.
    Run {
        /// The CRI endpoint: unix:///path/to.sock or /path/to.sock.
        #[arg(long, default_value = "unix:///run/crid/crid.sock")]
        endpoint: String,
        /// Only cases whose id or clause contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Only cases of this area (e.g. runtime-info); repeat for several.
        #[arg(long = "area", value_name = "AREA")]
        areas: Vec<String>,
        /// Write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write a Markdown report here.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Write the self-contained HTML report (the one-cell matrix) here.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Runtime handler for pods (empty: the endpoint's default).
        #[arg(long, default_value = "")]
        runtime_handler: String,
        /// Use the fixture registry started by `fixtures up --state-dir DIR`; cases that need
        /// fixture images are skipped without it.
        #[arg(long, value_name = "DIR")]
        registry_state: Option<PathBuf>,
        /// A second endpoint of the same runtime started without a network configuration
        /// (an empty CNI directory), so that NetworkReady is false there; cases that need
        /// one (runtime-info/status-not-ready-reason) are skipped without it.
        #[arg(long, value_name = "ENDPOINT")]
        not_ready_endpoint: Option<String>,
        /// Read the results against this runtime's baseline (e.g.
        /// conformance/baseline/crid.toml): the reports list the failures it expects apart,
        /// with its reasons, and the run passes (exit 0) when every required failure is
        /// expected. `compare` stays the strict check (stale entries, wrong messages).
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Another runtime's baseline (e.g. conformance/baseline/containerd-1.6.toml): the
        /// Markdown and HTML reports gain the differences between the two runtimes.
        /// Needs --baseline.
        #[arg(long, value_name = "FILE", requires = "baseline")]
        compare_baseline: Option<PathBuf>,
    },
    /// Run the suite across endpoints and runtime handlers; write JUnit XML per cell, a
    /// Markdown summary and an HTML page with the areas × cells grid.
    Matrix {
        /// A CRI endpoint; repeat for several (unix:///path/to.sock or /path/to.sock).
        #[arg(long = "endpoint", required = true, value_name = "ENDPOINT")]
        endpoints: Vec<String>,
        /// A runtime handler to run on every endpoint; repeat for several. Default: what
        /// each endpoint's Status reports, or its default handler when it reports none.
        #[arg(long = "runtime-handler", value_name = "HANDLER")]
        handlers: Vec<String>,
        /// Only cases whose id or clause contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Use the fixture registry started by `fixtures up --state-dir DIR`.
        #[arg(long, value_name = "DIR")]
        registry_state: Option<PathBuf>,
        /// Directory for junit-*.xml, summary.md and report.html (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also run cri-tools' critest (this binary) in every cell and fold its results in.
        #[arg(long, value_name = "PATH")]
        critest: Option<PathBuf>,
        /// A second endpoint of the same runtime started without a network configuration
        /// (an empty CNI directory), so that NetworkReady is false there; cases that need
        /// one (runtime-info/status-not-ready-reason) are skipped without it.
        #[arg(long, value_name = "ENDPOINT")]
        not_ready_endpoint: Option<String>,
    },
    /// Put cells that ran apart into one matrix: read the JUnit reports that `run --junit`,
    /// `matrix` or a VM fixture wrote, each cell read against its baseline, and write the
    /// Markdown summary and the HTML grid. Exits 1 when a cell has a failure its baseline
    /// does not expect.
    Grid {
        /// A cell, in column order: `junit=A.xml[,B.xml...][;baseline=FILE][;fixture=NAME]`
        /// (several reports when the cell ran area by area; `fixture` names a guest).
        #[arg(long = "cell", required = true, value_name = "SPEC")]
        cells: Vec<report::grid::CellSpec>,
        /// Directory for summary.md and report.html (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run cri-tools' critest against an endpoint with the fixture registry wired in, and
    /// fold its JUnit results into this harness's reports.
    Critest {
        /// The CRI endpoint.
        #[arg(long)]
        endpoint: String,
        /// The critest binary (default: `critest` in $PATH).
        #[arg(long, value_name = "PATH")]
        critest: Option<PathBuf>,
        /// Give critest the fixture registry started by `fixtures up --state-dir DIR` as its
        /// images file and registry prefix.
        #[arg(long, value_name = "DIR")]
        registry_state: Option<PathBuf>,
        /// Runtime handler for critest's pods (empty: the default).
        #[arg(long, default_value = "")]
        runtime_handler: String,
        /// Only specs matching this regular expression (ginkgo focus).
        #[arg(long)]
        focus: Option<String>,
        /// Leave out specs matching this regular expression (ginkgo skip).
        #[arg(long)]
        skip: Option<String>,
        /// Kill critest after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Directory for critest's log, its JUnit report and ours (junit.xml, summary.md,
        /// report.html).
        #[arg(long, value_name = "DIR", default_value = "critest-report")]
        out: PathBuf,
        /// Further arguments for critest, after `--`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Run the Kubernetes node e2e suite (e2e_node.test) with the given kubelet against an
    /// endpoint, and fold its JUnit results into this harness's reports.
    NodeE2e {
        /// The CRI endpoint.
        #[arg(long)]
        endpoint: String,
        /// The e2e_node.test binary.
        #[arg(long, value_name = "PATH")]
        e2e_binary: PathBuf,
        /// The kubelet the suite starts.
        #[arg(long, value_name = "PATH")]
        kubelet: PathBuf,
        /// The node name (default: the host name).
        #[arg(long, default_value = "")]
        node_name: String,
        /// Specs to run (ginkgo focus).
        #[arg(long, default_value = drivers::node_e2e::DEFAULT_FOCUS)]
        focus: String,
        /// Specs to leave out (ginkgo skip).
        #[arg(long, default_value = drivers::node_e2e::DEFAULT_SKIP)]
        skip: String,
        /// Kill the suite after this many seconds.
        #[arg(long, default_value_t = 3 * 3600)]
        timeout: u64,
        /// Directory for the suite's log and artifacts, its JUnit report and ours.
        #[arg(long, value_name = "DIR", default_value = "node-e2e-report")]
        out: PathBuf,
        /// Further arguments for e2e_node.test (e.g. --kubelet-flags=...), after `--`.
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Property-based lifecycle tests: random sequences of pod, container and image
    /// operations checked against a model after every step; a failure is shrunk to a
    /// minimal sequence and printed so `--replay` runs it again.
    Props {
        /// The CRI endpoint.
        #[arg(long)]
        endpoint: String,
        /// The fixture registry started by `fixtures up --state-dir DIR` (containers run its
        /// busybox image).
        #[arg(long, value_name = "DIR")]
        registry_state: PathBuf,
        /// Runtime handler for pods (empty: the default).
        #[arg(long, default_value = "")]
        runtime_handler: String,
        /// Sequences to generate.
        #[arg(long, default_value_t = 16)]
        cases: u32,
        /// Longest sequence.
        #[arg(long, default_value_t = 8)]
        max_ops: usize,
        /// Re-runs spent shrinking a failure.
        #[arg(long, default_value_t = 64)]
        max_shrink_iters: u32,
        /// Seed of the generator (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Time limit of one RPC, in seconds.
        #[arg(long, default_value_t = 30)]
        op_timeout: u64,
        /// Run this one sequence instead, e.g. 'RunPod, CreateContainer(0), StopPod(0)'.
        #[arg(long, value_name = "SEQUENCE")]
        replay: Option<String>,
    },
    /// Malformed and hostile RPCs: seeded random and mutated requests to every RPC (huge
    /// strings, deep label maps, bytes that are not UTF-8, IDs of other objects, escaping
    /// paths, concurrent duplicates), each answer judged by its code; then the streaming
    /// tokens, the socket's mode, the daemon's liveness and log, and no leaked or lost
    /// object. Exits 1 on any wrong answer.
    Hostile {
        /// The CRI endpoint.
        #[arg(long)]
        endpoint: String,
        /// The fixture registry started by `fixtures up --state-dir DIR` (containers run its
        /// busybox image).
        #[arg(long, value_name = "DIR")]
        registry_state: PathBuf,
        /// Generated requests to send.
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
        /// Seed of the generator (default: from the clock; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Time limit of one request, in seconds.
        #[arg(long, default_value_t = 30)]
        op_timeout: u64,
        /// The daemon's log (stderr): a panic in it fails the run.
        #[arg(long, value_name = "FILE")]
        daemon_log: Option<PathBuf>,
        /// Also write the report (Markdown) here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Soak: pods churned for a given time by parallel workers (run, create, start, exec,
    /// stop, remove; image pulls and removals mixed in) while the daemon's RSS, descriptors,
    /// threads, mounts, container cgroups and monitors are sampled. Exits 1 on a failed
    /// operation, RSS growth over the limit, or anything left after the clean-up. Run it on
    /// the endpoint's host (it reads its /proc and /sys).
    Soak {
        /// The CRI endpoint.
        #[arg(long)]
        endpoint: String,
        /// The fixture registry started by `fixtures up --state-dir DIR`.
        #[arg(long, value_name = "DIR")]
        registry_state: PathBuf,
        /// The daemon's PID.
        #[arg(long)]
        daemon_pid: i32,
        /// The daemon's state directories (storage root and runroot): mounts below count.
        #[arg(long = "state-dir", value_name = "DIR")]
        state_dirs: Vec<PathBuf>,
        /// How long to churn, in seconds.
        #[arg(long, default_value_t = 3600)]
        duration: u64,
        /// Pods in flight at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Seconds between samples.
        #[arg(long, default_value_t = 60)]
        sample_every: u64,
        /// Largest RSS growth that passes, in KiB.
        #[arg(long, default_value_t = 1024)]
        rss_growth_limit_kib: u64,
        /// Runtime handler for pods (empty: the default).
        #[arg(long, default_value = "")]
        runtime_handler: String,
        /// Time limit of one RPC, in seconds.
        #[arg(long, default_value_t = 60)]
        op_timeout: u64,
        /// Also write the report (Markdown) here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// The mutation score: start a test build of crid (`--features faults`) once per
    /// fault with `--fault NAME` on a fresh directory, run the cases of the areas the fault
    /// declares (every case with --full), and report which cases caught it. A control run
    /// without a fault comes first. Exits 1 when a fault is caught by no case.
    Mutate {
        /// Directory of the faults build's `crid` and `crid-monitor`.
        #[arg(long, value_name = "DIR")]
        crid_bin_dir: PathBuf,
        /// The fixture registry started by `fixtures up --state-dir DIR`.
        #[arg(long, value_name = "DIR")]
        registry_state: PathBuf,
        /// Only this fault; repeat for several (default: every fault of the build).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<String>,
        /// Run the whole suite for every fault, not only the areas it declares.
        #[arg(long)]
        full: bool,
        /// The daemons' CNI subnet (a private one no other network uses).
        #[arg(long, default_value = "10.219.0.0/24")]
        subnet: String,
        /// Where the daemons' directories go.
        #[arg(long, value_name = "DIR", default_value = "/tmp")]
        work_dir: PathBuf,
        /// Merge the results into this file (conformance/traceability/mutation.toml).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// List the catalogue: case, clause, area, requirement.
    List,
    /// Print the traceability matrix (Markdown): every runtime.v1 RPC with the cases that
    /// check it, gaps marked; docs/traceability.md is this output.
    Traceability,
    /// Compare a JUnit report with a runtime's baseline; non-zero on any unexplained difference.
    Compare(crid_conformance::baseline::CompareArgs),
    /// The kubelet's captured CRI calls, the test data of the `kubelet-replay` cases.
    KubeletCorpus {
        #[command(subcommand)]
        action: KubeletCorpusAction,
    },
    /// Local test images in a real registry (Debian's docker-registry on loopback).
    Fixtures {
        #[command(subcommand)]
        action: FixturesAction,
    },
}

#[derive(Debug, Subcommand)]
enum KubeletCorpusAction {
    /// Cut a capture (`calls.jsonl`) into one trace per pod plus a README, as committed
    /// under conformance/testdata/kubelet-1.36/.
    Extract {
        /// The capture's directory (holds calls.jsonl).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Where the traces go (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FixturesAction {
    /// Build the fixture images, start a registry, push them, and leave it running.
    Up {
        /// Where the registry keeps its storage, config, log and state.json.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Require basic auth (user and password are printed).
        #[arg(long)]
        auth: bool,
    },
    /// Stop the registry that `up` started (by its recorded PID) and remove its directory.
    Down {
        /// The directory given to `up`.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// A private containerd (the differential run's reference runtime).
    Containerd {
        #[command(subcommand)]
        action: crid_conformance::fixtures::containerd::Action,
    },
    /// A Debian 12 guest under QEMU (cgroup v2, systemd, AppArmor) that runs crid and the
    /// suite inside and brings the reports back (docs/vm.md).
    Vm {
        #[command(subcommand)]
        action: crid_conformance::fixtures::vm::Action,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            endpoint,
            filter,
            areas,
            junit,
            markdown,
            html,
            runtime_handler,
            registry_state,
            not_ready_endpoint,
            baseline,
            compare_baseline,
        } => {
            run(RunArgs {
                endpoint,
                filter,
                areas,
                junit,
                markdown,
                html,
                runtime_handler,
                registry_state,
                not_ready_endpoint,
                baseline,
                compare_baseline,
            })
            .await
        }
        Command::Matrix {
            endpoints,
            handlers,
            filter,
            registry_state,
            out,
            critest,
            not_ready_endpoint,
        } => {
            matrix(MatrixArgs {
                endpoints,
                handlers,
                filter,
                registry_state,
                out,
                critest,
                not_ready_endpoint,
            })
            .await
        }
        Command::Grid { cells, out } => grid(&cells, &out),
        Command::Critest {
            endpoint,
            critest,
            registry_state,
            runtime_handler,
            focus,
            skip,
            timeout,
            out,
            extra,
        } => {
            run_critest(
                drivers::critest::CritestOptions {
                    binary: critest,
                    endpoint,
                    runtime_handler,
                    registry: None,
                    focus,
                    skip,
                    extra_args: extra,
                    work_dir: out,
                    timeout: std::time::Duration::from_secs(timeout),
                },
                registry_state,
            )
            .await
        }
        Command::NodeE2e {
            endpoint,
            e2e_binary,
            kubelet,
            node_name,
            focus,
            skip,
            timeout,
            out,
            extra,
        } => {
            run_node_e2e(drivers::node_e2e::NodeE2eOptions {
                binary: e2e_binary,
                kubelet,
                endpoint,
                node_name,
                focus,
                skip,
                extra_args: extra,
                work_dir: out,
                timeout: std::time::Duration::from_secs(timeout),
            })
            .await
        }
        Command::Props {
            endpoint,
            registry_state,
            runtime_handler,
            cases,
            max_ops,
            max_shrink_iters,
            seed,
            op_timeout,
            replay,
        } => {
            let seed = seed.unwrap_or_else(|| now().as_nanos() as u64);
            props(PropsArgs {
                endpoint,
                registry_state,
                runtime_handler,
                budget: crid_conformance::props::Budget {
                    cases,
                    max_ops,
                    max_shrink_iters,
                    seed,
                },
                op_timeout: std::time::Duration::from_secs(op_timeout),
                replay,
            })
            .await
        }
        Command::Hostile {
            endpoint,
            registry_state,
            requests,
            seed,
            op_timeout,
            daemon_log,
            report,
        } => {
            hostile(HostileArgs {
                endpoint,
                registry_state,
                requests,
                seed: seed.unwrap_or_else(|| now().as_nanos() as u64),
                op_timeout: std::time::Duration::from_secs(op_timeout),
                daemon_log,
                report,
            })
            .await
        }
        Command::Soak {
            endpoint,
            registry_state,
            daemon_pid,
            state_dirs,
            duration,
            parallel,
            sample_every,
            rss_growth_limit_kib,
            runtime_handler,
            op_timeout,
            report,
        } => {
            soak(SoakArgs {
                endpoint,
                registry_state,
                daemon_pid,
                state_dirs,
                duration,
                parallel,
                sample_every,
                rss_growth_limit_kib,
                runtime_handler,
                op_timeout,
                report,
            })
            .await
        }
        Command::Mutate {
            crid_bin_dir,
            registry_state,
            faults,
            full,
            subnet,
            work_dir,
            record,
        } => {
            let images = match load_images(Some(registry_state)) {
                Ok(Some(images)) => Ok(images),
                Ok(None) => Err(anyhow::anyhow!(
                    "the fixture registry state could not be read"
                )),
                Err(e) => Err(e),
            };
            match images {
                Ok(images) => {
                    let opts = crid_conformance::mutate::Options {
                        bin_dir: crid_bin_dir,
                        images,
                        only: faults,
                        full,
                        subnet,
                        work_root: work_dir,
                    };
                    mutate(opts, record).await
                }
                Err(e) => Err(e),
            }
        }
        Command::List => print_all(&list()),
        Command::Traceability => print_all(&report::to_traceability(&cases::catalogue())),
        Command::Compare(args) => {
            crid_conformance::baseline::compare_command(&args).map_err(anyhow::Error::from)
        }
        Command::KubeletCorpus {
            action: KubeletCorpusAction::Extract { from, out },
        } => crid_conformance::kubelet_corpus::extract::extract_dir(&from, &out)
            .map(|readme| {
                print!("{readme}");
                true
            })
            .map_err(anyhow::Error::from),
        Command::Fixtures { action } => fixtures(action).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crid-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct RunArgs {
    endpoint: String,
    filter: Option<String>,
    areas: Vec<String>,
    junit: Option<PathBuf>,
    markdown: Option<PathBuf>,
    html: Option<PathBuf>,
    runtime_handler: String,
    registry_state: Option<PathBuf>,
    not_ready_endpoint: Option<String>,
    baseline: Option<PathBuf>,
    compare_baseline: Option<PathBuf>,
}

/// A channel to the endpoint without a network, after checking that it answers.
async fn not_ready_channel(
    endpoint: Option<&str>,
) -> anyhow::Result<Option<tonic::transport::Channel>> {
    match endpoint {
        None => Ok(None),
        Some(e) => Ok(Some(runner::probe(e).await?.channel)),
    }
}

/// The fixture registry recorded by `fixtures up`, as cases see it.
fn load_images(registry_state: Option<PathBuf>) -> anyhow::Result<Option<Arc<cases::ImageRefs>>> {
    let Some(dir) = registry_state else {
        return Ok(None);
    };
    let st = crid_conformance::fixtures::registry::state::read_state(&dir)?;
    Ok(Some(Arc::new(cases::ImageRefs {
        registry: st.host,
        credentials: st.credentials.map(|c| (c.username, c.password)),
    })))
}

/// Runs `cases` against one (endpoint, handler) cell, reporting each result to `progress`.
async fn run_cell(
    target: &Target,
    handler: &str,
    images: Option<Arc<cases::ImageRefs>>,
    not_ready: Option<tonic::transport::Channel>,
    cases: &[cases::Case],
    progress: &mut Progress<impl std::io::Write>,
    label: &str,
) -> Vec<runner::Outcome> {
    let ctx = cases::Ctx {
        channel: target.channel.clone(),
        run_id: runner::new_run_id(),
        runtime_handler: handler.to_owned(),
        images,
        not_ready,
    };
    let env = Environment::detect().for_target(target);
    runner::run(&ctx, cases, &env, |o| {
        progress.result(label, o.case.id, &o.verdict, o.case.requirement)
    })
    .await
}

/// Keeps the cases of `areas` (all when empty); an unknown area name is an error.
fn select_areas(cases: Vec<cases::Case>, areas: &[String]) -> anyhow::Result<Vec<cases::Case>> {
    if areas.is_empty() {
        return Ok(cases);
    }
    for a in areas {
        anyhow::ensure!(
            cases::Area::ALL.iter().any(|k| k.name() == a),
            "unknown area {a:?}; areas: {}",
            cases::Area::ALL.map(|k| k.name()).join(", ")
        );
    }
    Ok(cases
        .into_iter()
        .filter(|c| areas.iter().any(|a| a == c.area.name()))
        .collect())
}

fn write_file(path: &Path, data: &str) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let started = now();
    let RunArgs {
        endpoint,
        filter,
        areas,
        junit,
        markdown,
        html,
        runtime_handler,
        registry_state,
        not_ready_endpoint,
        baseline,
        compare_baseline,
    } = args;
    let filter = filter.as_deref();
    // Baselines first: a typo in a path must not cost a whole run.
    let baseline = baseline
        .map(|p| crid_conformance::baseline::Baseline::load(&p))
        .transpose()?;
    let other = compare_baseline
        .map(|p| crid_conformance::baseline::Baseline::load(&p))
        .transpose()?;
    let images = load_images(registry_state)?;
    let target = runner::probe(&endpoint).await?;
    let not_ready = not_ready_channel(not_ready_endpoint.as_deref()).await?;
    let cases = select_areas(runner::select(cases::catalogue(), filter), &areas)?;
    anyhow::ensure!(
        !cases.is_empty(),
        "no case matches filter {filter:?} and areas {areas:?}"
    );
    let mut progress = Progress::stderr(cases.len());
    progress.note(&format!(
        "running {} cases against {} at {endpoint}",
        cases.len(),
        target.runtime
    ));
    let outcomes = run_cell(
        &target,
        &runtime_handler,
        images,
        not_ready,
        &cases,
        &mut progress,
        "",
    )
    .await;
    progress.finish();

    let report = RunReport {
        endpoint: endpoint.clone(),
        runtime: target.runtime.clone(),
        outcomes,
    };
    let mut cell = CellReport::from(&report);
    cell.handler = runtime_handler;
    if let Some(b) = &baseline {
        b.annotate(&mut cell);
    }
    let differences = match (&baseline, &other) {
        (Some(a), Some(b)) => {
            crid_conformance::baseline::runtime_differences(a, b, &cases::catalogue())
        }
        _ => Vec::new(),
    };
    let passed = cell.passed();
    if let Some(path) = junit {
        write_file(&path, &report::cell_to_junit(&cell))?;
    }
    if let Some(path) = markdown {
        let mut md = report::cell_to_markdown(&cell);
        if !differences.is_empty() {
            md.push_str("\n## Differences between runtimes\n\n");
            md.push_str(&crid_conformance::baseline::differences_markdown(
                &differences,
            ));
        }
        write_file(&path, &md)?;
    }
    print!("{}", report::cell_to_table(&cell));
    if let Some(path) = html {
        let m = MatrixReport {
            generated: report::matrix::format_utc(started),
            differences,
            cells: vec![cell],
        };
        write_file(&path, &report::html::to_html(&m))?;
    }
    Ok(passed)
}

struct MatrixArgs {
    endpoints: Vec<String>,
    handlers: Vec<String>,
    filter: Option<String>,
    registry_state: Option<PathBuf>,
    out: PathBuf,
    critest: Option<PathBuf>,
    not_ready_endpoint: Option<String>,
}

/// Writes one cell's reports (ours: junit.xml, summary.md, report.html) into `dir`.
fn write_single_cell(
    dir: &Path,
    cell: CellReport,
    started: std::time::Duration,
) -> anyhow::Result<bool> {
    write_file(&dir.join("junit.xml"), &report::cell_to_junit(&cell))?;
    print!("{}", report::cell_to_table(&cell));
    let m = MatrixReport {
        generated: report::matrix::format_utc(started),
        differences: Vec::new(),
        cells: vec![cell],
    };
    write_file(&dir.join("summary.md"), &m.to_markdown())?;
    write_file(&dir.join("report.html"), &report::html::to_html(&m))?;
    println!(
        "reports: {} (junit.xml, summary.md, report.html)",
        dir.display()
    );
    Ok(m.passed())
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

async fn run_critest(
    mut opts: drivers::critest::CritestOptions,
    registry_state: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let started = now();
    // The binary first: without it nothing else matters, and the message says what to install.
    opts.binary = Some(drivers::critest::locate(opts.binary.as_deref())?);
    opts.registry = load_images(registry_state)?.map(|i| i.registry.clone());
    let target = runner::probe(&opts.endpoint).await?;
    eprintln!(
        "running critest against {} at {} (log: {})",
        target.runtime,
        opts.endpoint,
        opts.work_dir.join("critest.log").display()
    );
    let entries = drivers::critest::run(&opts).await?;
    let cell = CellReport {
        endpoint: opts.endpoint.clone(),
        runtime: target.runtime,
        handler: opts.runtime_handler.clone(),
        fixture: String::new(),
        entries,
        baseline: None,
    };
    write_single_cell(&opts.work_dir, cell, started)
}

async fn run_node_e2e(opts: drivers::node_e2e::NodeE2eOptions) -> anyhow::Result<bool> {
    let started = now();
    drivers::require_binary("e2e_node.test", &opts.binary, drivers::node_e2e::E2E_HINT)?;
    drivers::require_binary("kubelet", &opts.kubelet, drivers::node_e2e::KUBELET_HINT)?;
    let target = runner::probe(&opts.endpoint).await?;
    eprintln!(
        "running node e2e against {} at {} (log: {})",
        target.runtime,
        opts.endpoint,
        opts.work_dir.join("node-e2e.log").display()
    );
    let entries = drivers::node_e2e::run(&opts).await?;
    let cell = CellReport {
        endpoint: opts.endpoint.clone(),
        runtime: target.runtime,
        handler: String::new(),
        fixture: String::new(),
        entries,
        baseline: None,
    };
    write_single_cell(&opts.work_dir, cell, started)
}

/// `grid`: cells read back from their reports, rendered together.
fn grid(specs: &[report::grid::CellSpec], out: &Path) -> anyhow::Result<bool> {
    report::grid::check_paths(specs).map_err(anyhow::Error::msg)?;
    let cells = specs
        .iter()
        .map(report::grid::load_cell)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let m = MatrixReport {
        generated: report::matrix::format_utc(now()),
        differences: Vec::new(),
        cells,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // Each cell's results beside the grid, under the names its summary links to.
    for (i, cell) in m.cells.iter().enumerate() {
        write_file(
            &out.join(MatrixReport::junit_file_name(i, cell)),
            &report::cell_to_junit(cell),
        )?;
    }
    write_file(&out.join("summary.md"), &m.to_markdown())?;
    write_file(&out.join("report.html"), &report::html::to_html(&m))?;
    for (i, cell) in m.cells.iter().enumerate() {
        println!(
            "#{} {}: {}",
            i + 1,
            MatrixReport::cell_label(cell),
            cell.verdict_line()
        );
        // Named here too: the grid's lines are what a CI log's tail shows.
        for e in cell.unexpected_failures() {
            println!("   unexpected: {}: {}", e.id, e.reason_line(300));
        }
    }
    println!("{}", m.verdict_line());
    println!(
        "grid: {} (junit-*.xml, summary.md, report.html)",
        out.display()
    );
    Ok(m.passed())
}

async fn matrix(args: MatrixArgs) -> anyhow::Result<bool> {
    let started = now();
    let filter = args.filter.as_deref();
    let images = load_images(args.registry_state)?;
    let critest = match &args.critest {
        Some(p) => Some(drivers::critest::locate(Some(p))?),
        None => None,
    };
    let cases = runner::select(cases::catalogue(), filter);
    anyhow::ensure!(!cases.is_empty(), "no case matches filter {filter:?}");
    // Probe every endpoint first: a typo in the last one should not cost a whole run.
    let mut targets = Vec::new();
    for endpoint in &args.endpoints {
        targets.push(runner::probe(endpoint).await?);
    }
    let not_ready = not_ready_channel(args.not_ready_endpoint.as_deref()).await?;
    let cells: Vec<(usize, String)> = targets
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let handlers = if args.handlers.is_empty() {
                t.handlers.clone()
            } else {
                args.handlers.clone()
            };
            handlers.into_iter().map(move |h| (i, h))
        })
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let mut progress = Progress::stderr(cells.len() * cases.len());
    let mut reports = Vec::new();
    for (n, (i, handler)) in cells.iter().enumerate() {
        let target = &targets[*i];
        let label = format!(
            "#{} {}/{}",
            n + 1,
            target
                .runtime
                .split_whitespace()
                .next()
                .unwrap_or("runtime"),
            if handler.is_empty() {
                "default"
            } else {
                handler
            }
        );
        progress.note(&format!(
            "cell #{}: {} at {}, handler {}",
            n + 1,
            target.runtime,
            target.endpoint,
            if handler.is_empty() {
                "(default)"
            } else {
                handler
            }
        ));
        let outcomes = run_cell(
            target,
            handler,
            images.clone(),
            not_ready.clone(),
            &cases,
            &mut progress,
            &label,
        )
        .await;
        let mut entries: Vec<report::Entry> = outcomes.iter().map(report::Entry::from).collect();
        if let Some(binary) = &critest {
            let work_dir = args.out.join(format!("critest-{}", n + 1));
            progress.note(&format!(
                "cell #{}: critest (log: {})",
                n + 1,
                work_dir.join("critest.log").display()
            ));
            let opts = drivers::critest::CritestOptions {
                binary: Some(binary.clone()),
                endpoint: target.endpoint.clone(),
                runtime_handler: handler.clone(),
                registry: images.as_ref().map(|i| i.registry.clone()),
                focus: None,
                skip: None,
                extra_args: Vec::new(),
                work_dir,
                timeout: drivers::critest::DEFAULT_TIMEOUT,
            };
            match drivers::critest::run(&opts).await {
                Ok(found) => entries.extend(found),
                // A suite that could not run is a failure of this cell, not of the matrix.
                Err(e) => entries.push(report::Entry {
                    id: "critest/run".into(),
                    clause: "critest:run".into(),
                    area: report::EXTERNAL_AREA.into(),
                    requirement: Requirement::Required,
                    summary: "critest runs and writes its JUnit report".into(),
                    verdict: cases::Verdict::Fail(e.to_string()),
                    note: String::new(),
                    duration: std::time::Duration::ZERO,
                    expected: None,
                }),
            }
        }
        reports.push(CellReport {
            endpoint: target.endpoint.clone(),
            runtime: target.runtime.clone(),
            handler: handler.clone(),
            fixture: String::new(),
            entries,
            baseline: None,
        });
    }
    progress.finish();

    let m = MatrixReport {
        generated: report::matrix::format_utc(started),
        differences: Vec::new(),
        cells: reports,
    };
    for (i, cell) in m.cells.iter().enumerate() {
        write_file(
            &args.out.join(MatrixReport::junit_file_name(i, cell)),
            &report::cell_to_junit(cell),
        )?;
    }
    write_file(&args.out.join("summary.md"), &m.to_markdown())?;
    write_file(&args.out.join("report.html"), &report::html::to_html(&m))?;
    for (i, cell) in m.cells.iter().enumerate() {
        println!(
            "#{} {}: {}",
            i + 1,
            MatrixReport::cell_label(cell),
            report::closing_line(cell.totals())
        );
    }
    println!(
        "reports: {} ({}, summary.md, report.html)",
        args.out.display(),
        if m.cells.len() == 1 {
            "junit-1-*.xml".to_owned()
        } else {
            format!("junit-{{1..{}}}-*.xml", m.cells.len())
        }
    );
    Ok(m.passed())
}

/// `println!` that ignores a closed stdout: `fixtures up | head -1` must not panic when
/// `head` exits before the rest is written (the registry is already up and recorded).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

async fn fixtures(action: FixturesAction) -> anyhow::Result<bool> {
    use crid_conformance::fixtures::registry::{RegistryOptions, state};
    match action {
        FixturesAction::Up { state_dir, auth } => {
            let dir = state_dir.unwrap_or_else(state::default_state_dir);
            let opts = if auth {
                RegistryOptions::basic_auth()
            } else {
                RegistryOptions::plain()
            };
            let st = state::up(&dir, opts).await?;
            say!(
                "registry {} (pid {}) serving from {}",
                st.host,
                st.pid,
                dir.display()
            );
            if let Some(c) = &st.credentials {
                say!("basic auth: user {} password {}", c.username, c.password);
            }
            for image in &st.images {
                say!("  {image}");
            }
            say!(
                "stop it with: crid-conformance fixtures down --state-dir {}",
                dir.display()
            );
        }
        FixturesAction::Down { state_dir } => {
            let dir = state_dir.unwrap_or_else(state::default_state_dir);
            match state::down(&dir)? {
                state::DownOutcome::Stopped { pid } => say!("stopped registry pid {pid}"),
                state::DownOutcome::NotRunning { pid } => {
                    say!("registry pid {pid} was not running")
                }
            }
        }
        FixturesAction::Containerd { action } => {
            crid_conformance::fixtures::containerd::command(action)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        // Synchronous on purpose: QEMU is spawned from this (main) thread, so its
        // parent-death signal fires only when the harness itself goes.
        FixturesAction::Vm { action } => {
            return Ok(crid_conformance::fixtures::vm::command(action)?);
        }
    }
    Ok(true)
}

struct PropsArgs {
    endpoint: String,
    registry_state: PathBuf,
    runtime_handler: String,
    budget: crid_conformance::props::Budget,
    op_timeout: std::time::Duration,
    replay: Option<String>,
}

async fn props(args: PropsArgs) -> anyhow::Result<bool> {
    use crid_conformance::props::{self, exec};
    let replay = match &args.replay {
        Some(s) => Some(props::parse_sequence(s).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let images = load_images(Some(args.registry_state))?
        .context("the fixture registry state could not be read")?;
    let target = runner::probe(&args.endpoint).await?;
    let opts = exec::PropsOptions {
        channel: target.channel.clone(),
        run_id: runner::new_run_id(),
        runtime_handler: args.runtime_handler,
        image: images.image(
            crid_conformance::fixtures::image::BUSYBOX,
            crid_conformance::fixtures::image::LATEST,
        ),
        credentials: images.credentials.clone(),
        op_timeout: args.op_timeout,
    };
    if let Some(ops) = replay {
        eprintln!(
            "replaying {} against {} at {}",
            props::format_sequence(&ops),
            target.runtime,
            args.endpoint
        );
        return match exec::replay(opts, &ops).await {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                println!("props: the sequence passed");
                Ok(true)
            }
            Err(why) => {
                println!("{why}");
                Ok(false)
            }
        };
    }
    let b = args.budget;
    eprintln!(
        "props: {} sequences of up to {} ops against {} at {} (seed {})",
        b.cases, b.max_ops, target.runtime, args.endpoint, b.seed
    );
    let report = exec::run_props(opts, b).await.map_err(anyhow::Error::msg)?;
    let summary = format!(
        "props: {} sequences run ({} ops, shrinking included) in {:.1}s, seed {}",
        report.executed,
        report.ops,
        report.duration.as_secs_f64(),
        report.seed
    );
    match report.failure {
        None => {
            println!("{summary}: passed");
            Ok(true)
        }
        Some(f) => {
            println!("{f}\n{summary}: FAILED");
            Ok(false)
        }
    }
}

struct HostileArgs {
    endpoint: String,
    registry_state: PathBuf,
    requests: u64,
    seed: u64,
    op_timeout: std::time::Duration,
    daemon_log: Option<PathBuf>,
    report: Option<PathBuf>,
}

async fn hostile(args: HostileArgs) -> anyhow::Result<bool> {
    use crid_conformance::hostile;
    let images = load_images(Some(args.registry_state))?
        .context("the fixture registry state could not be read")?;
    let target = runner::probe(&args.endpoint).await?;
    eprintln!(
        "hostile: {} generated requests against {} at {} (seed {})",
        args.requests, target.runtime, args.endpoint, args.seed
    );
    let report = hostile::run(hostile::Options {
        endpoint: args.endpoint,
        channel: target.channel.clone(),
        runtime: target.runtime.clone(),
        registry: images.registry.clone(),
        image: images.image(
            crid_conformance::fixtures::image::BUSYBOX,
            crid_conformance::fixtures::image::LATEST,
        ),
        credentials: images.credentials.clone(),
        requests: args.requests,
        seed: args.seed,
        op_timeout: args.op_timeout,
        daemon_log: args.daemon_log,
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let text = report.render();
    print!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed())
}

struct SoakArgs {
    endpoint: String,
    registry_state: PathBuf,
    daemon_pid: i32,
    state_dirs: Vec<PathBuf>,
    duration: u64,
    parallel: usize,
    sample_every: u64,
    rss_growth_limit_kib: u64,
    runtime_handler: String,
    op_timeout: u64,
    report: Option<PathBuf>,
}

async fn soak(args: SoakArgs) -> anyhow::Result<bool> {
    use crid_conformance::fixtures::image::{BUSYBOX, BUSYBOX_STOPSIGNAL, LATEST};
    let images = load_images(Some(args.registry_state))?
        .context("the fixture registry state could not be read")?;
    let target = runner::probe(&args.endpoint).await?;
    let opts = crid_conformance::soak::Options {
        channel: target.channel.clone(),
        run_id: runner::new_run_id(),
        runtime_handler: args.runtime_handler,
        image: images.image(BUSYBOX, LATEST),
        churn_image: images.image(BUSYBOX_STOPSIGNAL, LATEST),
        duration: std::time::Duration::from_secs(args.duration),
        parallel: args.parallel.max(1),
        sample_every: std::time::Duration::from_secs(args.sample_every.max(1)),
        daemon_pid: args.daemon_pid,
        state_dirs: args.state_dirs,
        log_dir: std::env::temp_dir().join(format!("crid-soak-logs-{}", std::process::id())),
        op_timeout: std::time::Duration::from_secs(args.op_timeout),
        rss_growth_limit_kib: args.rss_growth_limit_kib,
    };
    let report = args.report;
    eprintln!(
        "soak: {} s, {} workers, a sample every {} s, daemon pid {}",
        opts.duration.as_secs(),
        opts.parallel,
        opts.sample_every.as_secs(),
        opts.daemon_pid
    );
    // The image containers run is pulled once, outside the churn.
    let mut is = crid_api::ImageServiceClient::new(opts.channel.clone());
    is.pull_image(crid_api::cri::PullImageRequest {
        image: Some(crid_api::cri::ImageSpec {
            image: opts.image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .context("pulling the soak's image")?;
    let log_dir = opts.log_dir.clone();
    let r = crid_conformance::soak::run(opts)
        .await
        .map_err(anyhow::Error::msg)?;
    let _ = std::fs::remove_dir_all(&log_dir);
    let text = r.render();
    print!("{text}");
    if let Some(path) = &report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(r.failures().is_empty())
}

async fn mutate(
    opts: crid_conformance::mutate::Options,
    record: Option<PathBuf>,
) -> anyhow::Result<bool> {
    use crid_conformance::mutate::{self, Results};
    // The record first: a run of a quarter of an hour must not end unrecorded.
    let old = match &record {
        None => None,
        Some(path) => Some(match std::fs::read_to_string(path) {
            Ok(text) => {
                Results::parse(&text).with_context(|| format!("reading {}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Results::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }),
    };
    let results = mutate::run(&opts, |line| eprintln!("mutate: {line}")).await?;
    let caught = results.caught();
    let total = results.fault.len();
    let passed = caught == total;
    println!(
        "mutate: {caught} of {total} faults caught in {} s{}",
        results.seconds,
        if passed {
            ""
        } else {
            "; NOT CAUGHT faults are gaps in the harness"
        }
    );
    if let (Some(path), Some(old)) = (record, old) {
        let order: Vec<String> = mutate::list_faults(&opts.bin_dir)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        let merged = old.merge(results, &order);
        write_file(&path, &merged.to_toml())?;
        println!(
            "mutate: recorded in {} ({} of {} faults caught)",
            path.display(),
            merged.caught(),
            merged.fault.len()
        );
    }
    Ok(passed)
}

fn list() -> String {
    let mut out = String::new();
    for c in cases::catalogue() {
        let req = match c.requirement {
            Requirement::Required => "required",
            Requirement::Optional => "optional",
        };
        out.push_str(&format!(
            "{:<48} {:<70} {:<8} {}\n",
            c.id, c.clause, req, c.summary
        ));
    }
    out
}

/// Writes `text` to stdout; a reader that stopped early (`| head`) is no error.
fn print_all(text: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

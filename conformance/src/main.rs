//! `crid-conformance`: run the conformance suite against a CRI endpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crid_conformance::cases::{self, Requirement};
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
        /// Write JUnit XML here.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Write a Markdown report here.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Runtime handler for pods (empty: the endpoint's default).
        #[arg(long, default_value = "")]
        runtime_handler: String,
        /// Use the fixture registry started by `fixtures up --state-dir DIR`; cases that need
        /// fixture images are skipped without it.
        #[arg(long, value_name = "DIR")]
        registry_state: Option<PathBuf>,
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
    },
    /// List the catalogue: case, clause, area, requirement.
    List,
    /// Print the traceability matrix (Markdown): every runtime.v1 RPC with the cases that
    /// check it, gaps marked; docs/traceability.md is this output.
    Traceability,
    /// Local test images in a real registry (Debian's docker-registry on loopback).
    Fixtures {
        #[command(subcommand)]
        action: FixturesAction,
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
            junit,
            markdown,
            runtime_handler,
            registry_state,
        } => {
            run(RunArgs {
                endpoint,
                filter,
                junit,
                markdown,
                runtime_handler,
                registry_state,
            })
            .await
        }
        Command::Matrix {
            endpoints,
            handlers,
            filter,
            registry_state,
            out,
        } => {
            matrix(MatrixArgs {
                endpoints,
                handlers,
                filter,
                registry_state,
                out,
            })
            .await
        }
        Command::List => {
            list();
            Ok(true)
        }
        Command::Traceability => {
            print!("{}", report::to_traceability(&cases::catalogue()));
            Ok(true)
        }
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
    junit: Option<PathBuf>,
    markdown: Option<PathBuf>,
    runtime_handler: String,
    registry_state: Option<PathBuf>,
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
    cases: &[cases::Case],
    progress: &mut Progress<impl std::io::Write>,
    label: &str,
) -> Vec<runner::Outcome> {
    let ctx = cases::Ctx {
        channel: target.channel.clone(),
        run_id: runner::new_run_id(),
        runtime_handler: handler.to_owned(),
        images,
    };
    runner::run(&ctx, cases, &Environment::detect(), |o| {
        progress.result(label, o.case.id, &o.verdict, o.case.requirement)
    })
    .await
}

fn write_file(path: &Path, data: &str) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let RunArgs {
        endpoint,
        filter,
        junit,
        markdown,
        runtime_handler,
        registry_state,
    } = args;
    let filter = filter.as_deref();
    let images = load_images(registry_state)?;
    let target = runner::probe(&endpoint).await?;
    let cases = runner::select(cases::catalogue(), filter);
    anyhow::ensure!(!cases.is_empty(), "no case matches filter {filter:?}");
    let mut progress = Progress::stderr(cases.len());
    progress.note(&format!(
        "running {} cases against {} at {endpoint}",
        cases.len(),
        target.runtime
    ));
    let outcomes = run_cell(&target, &runtime_handler, images, &cases, &mut progress, "").await;
    progress.finish();

    let report = RunReport {
        endpoint: endpoint.clone(),
        runtime: target.runtime.clone(),
        outcomes,
    };
    let mut cell = CellReport::from(&report);
    cell.handler = runtime_handler;
    if let Some(path) = junit {
        write_file(&path, &report::cell_to_junit(&cell))?;
    }
    if let Some(path) = markdown {
        write_file(&path, &report::cell_to_markdown(&cell))?;
    }
    print!("{}", report::cell_to_table(&cell));
    Ok(report.passed())
}

struct MatrixArgs {
    endpoints: Vec<String>,
    handlers: Vec<String>,
    filter: Option<String>,
    registry_state: Option<PathBuf>,
    out: PathBuf,
}

async fn matrix(args: MatrixArgs) -> anyhow::Result<bool> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let filter = args.filter.as_deref();
    let images = load_images(args.registry_state)?;
    let cases = runner::select(cases::catalogue(), filter);
    anyhow::ensure!(!cases.is_empty(), "no case matches filter {filter:?}");
    // Probe every endpoint first: a typo in the last one should not cost a whole run.
    let mut targets = Vec::new();
    for endpoint in &args.endpoints {
        targets.push(runner::probe(endpoint).await?);
    }
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
            &cases,
            &mut progress,
            &label,
        )
        .await;
        reports.push(CellReport {
            endpoint: target.endpoint.clone(),
            runtime: target.runtime.clone(),
            handler: handler.clone(),
            entries: outcomes.iter().map(report::Entry::from).collect(),
        });
    }
    progress.finish();

    let m = MatrixReport {
        generated: report::matrix::format_utc(started),
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
            println!(
                "registry {} (pid {}) serving from {}",
                st.host,
                st.pid,
                dir.display()
            );
            if let Some(c) = &st.credentials {
                println!("basic auth: user {} password {}", c.username, c.password);
            }
            for image in &st.images {
                println!("  {image}");
            }
            println!(
                "stop it with: crid-conformance fixtures down --state-dir {}",
                dir.display()
            );
        }
        FixturesAction::Down { state_dir } => {
            let dir = state_dir.unwrap_or_else(state::default_state_dir);
            match state::down(&dir)? {
                state::DownOutcome::Stopped { pid } => println!("stopped registry pid {pid}"),
                state::DownOutcome::NotRunning { pid } => {
                    println!("registry pid {pid} was not running")
                }
            }
        }
    }
    Ok(true)
}

fn list() {
    for c in cases::catalogue() {
        let req = match c.requirement {
            Requirement::Required => "required",
            Requirement::Optional => "optional",
        };
        println!("{:<48} {:<70} {:<8} {}", c.id, c.clause, req, c.summary);
    }
}

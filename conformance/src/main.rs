//! `crid-conformance`: run the conformance suite against a CRI endpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::cases::{self, Requirement};
use crid_conformance::report::{self, RunReport};
use crid_conformance::runner::{self, Environment};

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
    /// List the catalogue: case, clause, area, requirement.
    List,
    /// Compare a JUnit report with a runtime's baseline; non-zero on any unexplained difference.
    Compare(crid_conformance::baseline::CompareArgs),
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
    /// A private containerd (the differential run's reference runtime).
    Containerd {
        #[command(subcommand)]
        action: crid_conformance::fixtures::containerd::Action,
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
        Command::List => {
            list();
            Ok(true)
        }
        Command::Compare(args) => {
            crid_conformance::baseline::compare_command(&args).map_err(anyhow::Error::from)
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

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let RunArgs {
        endpoint,
        filter,
        junit,
        markdown,
        runtime_handler,
        registry_state,
    } = args;
    let endpoint = endpoint.as_str();
    let filter = filter.as_deref();
    let images = match registry_state {
        None => None,
        Some(dir) => {
            let st = crid_conformance::fixtures::registry::state::read_state(&dir)?;
            Some(std::sync::Arc::new(cases::ImageRefs {
                registry: st.host,
                credentials: st.credentials.map(|c| (c.username, c.password)),
            }))
        }
    };
    let channel = crid_api::client::connect(endpoint).await?;
    let version = RuntimeServiceClient::new(channel.clone())
        .version(cri::VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .with_context(|| format!("{endpoint} does not answer Version"))?
        .into_inner();
    let runtime = format!("{} {}", version.runtime_name, version.runtime_version);

    let cases = runner::select(cases::catalogue(), filter);
    anyhow::ensure!(!cases.is_empty(), "no case matches filter {filter:?}");
    let run_id = runner::new_run_id();
    eprintln!(
        "running {} cases against {runtime} at {endpoint} (run {run_id})",
        cases.len()
    );
    let total = cases.len();
    let mut done = 0;
    let ctx = cases::Ctx {
        channel,
        run_id: run_id.clone(),
        runtime_handler,
        images,
    };
    let outcomes = runner::run(&ctx, &cases, &Environment::detect(), |o| {
        done += 1;
        let tag = match (&o.verdict, o.case.requirement) {
            (cases::Verdict::Pass, _) => "pass",
            (cases::Verdict::Fail(_), Requirement::Required) => "FAIL",
            (cases::Verdict::Fail(_), Requirement::Optional) => "fail (optional)",
            (cases::Verdict::Skip(_), _) => "skip",
        };
        eprintln!("[{done}/{total}] {tag} {}", o.case.id);
    })
    .await;

    let report = RunReport {
        endpoint: endpoint.to_owned(),
        runtime,
        outcomes,
    };
    if let Some(path) = junit {
        std::fs::write(&path, report::to_junit(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = markdown {
        std::fs::write(&path, report::to_markdown(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report::to_table(&report));
    Ok(report.passed())
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
        FixturesAction::Containerd { action } => {
            crid_conformance::fixtures::containerd::command(action)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
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

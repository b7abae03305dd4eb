//! `crid`: the CRI daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crid::config::{self, Config, LoadOptions, LogLevel, Overrides};

/// A Kubernetes CRI daemon: serves runtime.v1 on a unix socket.
#[derive(Debug, Parser)]
#[command(name = "crid", version, about)]
struct Cli {
    /// Main configuration file [default: /etc/crid/crid.toml, optional when not given].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Drop-in directory, applied in lexical order [default: /etc/crid/crid.d].
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// CRI socket path (server.listen).
    #[arg(long, global = true, value_name = "SOCKET")]
    listen: Option<PathBuf>,
    /// Persistent state directory (storage.root).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Volatile state directory (storage.runroot).
    #[arg(long, global = true, value_name = "DIR")]
    runroot: Option<PathBuf>,
    /// error, warn, info, debug or trace (server.log_level).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    /// Test builds only (feature `faults`): run with this fault (src/faults.rs).
    #[cfg(feature = "faults")]
    #[arg(long, value_name = "NAME")]
    fault: Option<String>,
    /// Test builds only (feature `faults`): print every fault as a JSON line and exit.
    #[cfg(feature = "faults")]
    #[arg(long)]
    list_faults: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the CRI (the default when no command is given).
    Serve,
    /// Print the effective configuration as TOML.
    Config,
    /// Validate the configuration and the host; exit non-zero when crid cannot work.
    Check,
    /// Print version information.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "faults")]
    if let Some(code) = faults(&cli) {
        return code;
    }
    if let Some(Command::Version) = cli.command {
        println!("crid {}", crid::daemon::RUNTIME_VERSION);
        println!("CRI API {}", crid::daemon::RUNTIME_API_VERSION);
        return ExitCode::SUCCESS;
    }

    let opts = LoadOptions {
        config_file: cli.config,
        config_dir: cli.config_dir,
        overrides: Overrides {
            listen: cli.listen,
            root: cli.root,
            runroot: cli.runroot,
            log_level: cli.log_level,
        },
    };
    let config = match config::load(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crid: {e}");
            return ExitCode::from(2);
        }
    };

    match cli.command {
        Some(Command::Config) => {
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Some(Command::Check) => run_async(check(config)),
        Some(Command::Version) => unreachable!("handled above"),
        None | Some(Command::Serve) => {
            return_large_buffers_to_the_os();
            run_async(serve(config))
        }
    }
}

/// `--list-faults` prints and exits; `--fault` selects the fault, an unknown name ends crid.
#[cfg(feature = "faults")]
fn faults(cli: &Cli) -> Option<ExitCode> {
    use crid::faults::{self, Fault};
    if cli.list_faults {
        for f in Fault::ALL {
            let line = serde_json::json!({
                "name": f.name(), "areas": f.areas(), "clause": f.clause(), "summary": f.summary(),
            });
            println!("{line}");
        }
        return Some(ExitCode::SUCCESS);
    }
    let name = cli.fault.as_deref()?;
    match faults::select(name) {
        Ok(f) => {
            eprintln!("crid: running with fault {} ({})", f.name(), f.summary());
            None
        }
        Err(e) => {
            eprintln!("crid: --fault: {e}");
            Some(ExitCode::from(2))
        }
    }
}

/// glibc raises its mmap threshold each time a large block is freed, so after one big
/// request the next ones come from the heap, which it rarely gives back: RSS went from 25
/// to 71 MB after a few 16 MiB requests and stayed there. A fixed threshold keeps every
/// buffer over 256 KiB in its own mapping, returned to the kernel when freed.
fn return_large_buffers_to_the_os() {
    // SAFETY: mallopt only changes allocator tuning; called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn run_async(fut: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("crid: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn check(config: Config) -> ExitCode {
    let report = crid::check::run(&config).await;
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn serve(config: Config) -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::new(format!("warn,crid={}", config.server.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    // Handlers go in before the socket exists: a SIGTERM sent as soon as the socket
    // answers must stop crid cleanly, not kill it with the default action.
    let shutdown = shutdown_signal();
    match crid::server::serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("crid: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on the first signal.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop crid with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}

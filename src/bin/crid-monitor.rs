//! `crid-monitor`: the per-container monitor (crid's conmon). See `crid::monitor`.
//!
//! Usage: crid-monitor --runtime BIN --runtime-root DIR --bundle DIR --id ID --log-path FILE
//!        --exit-file FILE --pid-file FILE [--log-max-size BYTES] [--memory-cgroup DIR]
//!        [--runtime-arg ARG]...
//! Its stdout carries one JSON status line for the daemon; its stderr, its own errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--version") {
        println!("crid-monitor {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // A test build's daemon hands its fault on (src/faults.rs); an unknown one is ignored.
    #[cfg(feature = "faults")]
    if let Ok(name) = std::env::var(crid::faults::ENV) {
        let _ = crid::faults::select(&name);
    }
    let args = match crid::monitor::supervise::parse_args(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crid-monitor: {e}");
            return ExitCode::from(2);
        }
    };
    // The status line goes to a close-on-exec duplicate of stdout, and fd 1 itself to
    // /dev/null, so the daemon's pipe closes as soon as the status is written.
    let status = match status_pipe() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("crid-monitor: cannot set up the status pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crid::monitor::supervise::run(&args, status) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crid-monitor: container {}: {e}", args.id);
            ExitCode::FAILURE
        }
    }
}

fn status_pipe() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    let status = std::io::stdout().as_fd().try_clone_to_owned()?;
    let devnull = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdout(&devnull)?;
    Ok(std::fs::File::from(status))
}

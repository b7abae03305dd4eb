//! `crid-monitor`: the per-container monitor (crid's conmon).
//!
//! Placeholder: the monitor holds container stdio, writes CRI logs and exit files once
//! containers land. Until then it only identifies itself, so nothing mistakes it for working.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version") => {
            println!("crid-monitor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("crid-monitor: container monitoring is not implemented yet");
            ExitCode::from(2)
        }
    }
}

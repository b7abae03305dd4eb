//! crid-monitor, our conmon: one small process per container that holds its output, writes
//! the CRI log, and records how it exited. The binary is `src/bin/crid-monitor.rs`; this
//! module holds its logic and the formats the daemon shares with it (exit file, log), and
//! the daemon's watches on exit files and on its monitors' lives.

pub mod attach;
pub mod console;
pub mod exit;
pub mod liveness;
pub mod log;
pub mod oom;
pub mod runtime_wait;
pub mod supervise;
pub mod watch;

/// The crid-monitor binary: next to the running executable (how it is installed and
/// built), else in PATH.
pub fn binary() -> std::path::PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("crid-monitor")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => crate::runtime::resolve_binary(std::path::Path::new("crid-monitor"))
            .unwrap_or_else(|| std::path::PathBuf::from("crid-monitor")),
    }
}

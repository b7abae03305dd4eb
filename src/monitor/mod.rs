//! crid-monitor, our conmon: one small process per container that holds its output, writes
//! the CRI log, and records how it exited. The binary is `src/bin/crid-monitor.rs`; this
//! module holds its logic and the formats the daemon shares with it (exit file, log), and
//! the daemon's watches on exit files and on its monitors' lives.

pub mod attach;
pub mod console;
pub mod exit;
pub mod liveness;
pub mod log;
pub mod supervise;
pub mod watch;

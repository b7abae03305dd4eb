//! crid-monitor, our conmon: one small process per container that holds its output, writes
//! the CRI log, and records how it exited. The binary is `src/bin/crid-monitor.rs`; this
//! module holds its logic and the formats the daemon shares with it (exit file, log), and
//! the daemon's watch on exit files.

pub mod attach;
pub mod console;
pub mod exit;
pub mod log;
pub mod supervise;
pub mod watch;

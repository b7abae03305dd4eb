//! crid: a Kubernetes CRI daemon.
//!
//! The crate is the daemon's library; `src/bin/crid.rs` is its command line. DESIGN.md in
//! the shared docs maps the modules: `server` is the gRPC edge, everything else is the core.

pub mod check;
pub mod config;
pub mod container;
pub mod daemon;
pub mod host;
pub mod image;
pub mod lifecycle;
pub mod monitor;
pub mod network;
pub mod pod;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod state;
pub mod stats;
pub mod storage;
pub mod streaming;

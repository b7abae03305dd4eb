//! crid: a Kubernetes CRI daemon.
//!
//! The crate is the daemon's library; `src/bin/crid.rs` is its command line. DESIGN.md in
//! the shared docs maps the modules: `daemon` is the composition root, `server` the gRPC
//! edge, `pod` and `container` the services over the `registry`, behind the `runtime`,
//! `host`, `image` and `network` seams; `state`, `storage`, `stats` and `digest` are below
//! all of them and import none of them (`tests/module_graph.rs` keeps it so).

pub mod check;
pub mod config;
pub mod container;
pub mod daemon;
pub mod digest;
pub mod error;
pub mod failpoint;
pub mod faults;
pub mod host;
pub mod image;
pub mod monitor;
pub mod network;
pub mod pod;
pub mod recover;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod state;
pub mod stats;
pub mod storage;
pub mod streaming;
#[cfg(test)]
mod testkit;

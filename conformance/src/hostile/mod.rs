//! Malformed and hostile RPCs: a seeded generator ([`probe`]) sends thousands of requests
//! to every CRI RPC over the socket (huge strings, deep label maps, bytes that are not
//! UTF-8 spliced in at wire level, IDs of other objects, paths that escape, concurrent
//! duplicates); [`judge`] says which status codes are right for each; [`oracle`] keeps the
//! objects whose creation was answered OK and compares them with what the endpoint lists at
//! the end. [`streams`] checks the streaming tokens, [`run`] the socket's mode, the
//! daemon's liveness and its log.

pub mod build;
pub mod checks;
pub mod fixture;
pub mod judge;
pub mod oracle;
pub mod probe;
pub mod report;
pub mod rpc;
pub mod streams;
pub mod wire;

mod run;

pub use run::{Options, run};

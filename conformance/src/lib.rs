//! crid-conformance: a spec-traceable conformance harness for any CRI endpoint.
//!
//! It speaks only CRI over a socket, so it judges crid, containerd and CRI-O by the same
//! rules. `cases` is the catalogue (each case names the clause it checks), `runner` runs
//! them in isolation, `report` renders JUnit XML and readable summaries, and `fixtures`
//! builds local test images and serves them from a real registry. `baseline` compares a
//! run with a runtime's known failures, each with its reason. `props` and `hostile` generate
//! requests: lifecycle sequences checked against a model, and malformed or hostile RPCs.
//! `mutate` scores the suite against a test build of crid with named faults.

pub mod baseline;
pub mod cases;
pub mod drivers;
pub mod fields;
pub mod fixtures;
pub mod hostile;
pub mod kubelet_corpus;
pub mod mutate;
pub mod props;
pub mod report;
pub mod runner;
pub mod soak;
pub mod stream;

//! Property-based lifecycle tests: proptest generates sequences of CRI operations (pods,
//! containers, image pulls, lists), runs each against a real endpoint, and after every step
//! checks the endpoint against a [`model::Model`] of what must exist, in which state, and
//! what each operation may answer. A failing sequence is shrunk to a minimal one and
//! reported in a form `crid-conformance props --replay` runs again.
//!
//! The clauses checked are [`CLAUSES`]; the traceability matrix lists them.

pub mod exec;
pub mod model;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// The clauses the model checks on every generated sequence.
pub const CLAUSES: &[(&str, &str)] = &[
    (
        "cri:RuntimeService.RunPodSandbox#pod_sandbox_id",
        "a new, unique id; the pod is listed READY",
    ),
    (
        "cri:RuntimeService.StopPodSandbox#idempotent",
        "OK again on a stopped pod; running containers exit",
    ),
    (
        "cri:RuntimeService.RemovePodSandbox#idempotent",
        "OK again on a removed pod; its containers are removed",
    ),
    (
        "cri:RuntimeService.PodSandboxStatus#NotFound",
        "state as modelled; NotFound once removed",
    ),
    (
        "cri:RuntimeService.CreateContainer#container_id",
        "a new, unique id in a ready pod; NotFound for a removed pod",
    ),
    (
        "cri:RuntimeService.StartContainer#state",
        "only a created container starts",
    ),
    (
        "cri:RuntimeService.StopContainer#idempotent",
        "OK again on a stopped container",
    ),
    (
        "cri:RuntimeService.RemoveContainer#idempotent",
        "removes running containers; OK again once removed",
    ),
    (
        "cri:RuntimeService.ContainerStatus#state",
        "state as modelled; NotFound once removed",
    ),
    (
        "cri:RuntimeService.ListPodSandbox#filter.label_selector",
        "exactly the live pods, with their states, after every step",
    ),
    (
        "cri:RuntimeService.ListContainers#filter.label_selector",
        "exactly the live containers, with their states, after every step",
    ),
    (
        "cri:ImageService.PullImage#image_ref",
        "non-empty and stable across pulls",
    ),
    (
        "cri:ImageService.ListImages#images",
        "the pulled image is listed",
    ),
];

/// One CRI operation. Indices pick among the objects the sequence created so far
/// (`idx % count`, so shrinking keeps them valid); with none created, the op targets an id
/// that never existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// RunPodSandbox.
    RunPod,
    /// CreateContainer in pod `idx`.
    CreateContainer(usize),
    /// StartContainer.
    StartContainer(usize),
    /// StopContainer (timeout 0).
    StopContainer(usize),
    /// RemoveContainer.
    RemoveContainer(usize),
    /// StopPodSandbox.
    StopPod(usize),
    /// RemovePodSandbox.
    RemovePod(usize),
    /// PodSandboxStatus.
    PodStatus(usize),
    /// ContainerStatus.
    ContainerStatus(usize),
    /// ListPodSandbox (the sequence's own, by label).
    ListPods,
    /// ListContainers (the sequence's own, by label).
    ListContainers,
    /// PullImage of the fixture busybox.
    PullImage,
    /// ListImages.
    ListImages,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::RunPod => write!(f, "RunPod"),
            Op::CreateContainer(i) => write!(f, "CreateContainer({i})"),
            Op::StartContainer(i) => write!(f, "StartContainer({i})"),
            Op::StopContainer(i) => write!(f, "StopContainer({i})"),
            Op::RemoveContainer(i) => write!(f, "RemoveContainer({i})"),
            Op::StopPod(i) => write!(f, "StopPod({i})"),
            Op::RemovePod(i) => write!(f, "RemovePod({i})"),
            Op::PodStatus(i) => write!(f, "PodStatus({i})"),
            Op::ContainerStatus(i) => write!(f, "ContainerStatus({i})"),
            Op::ListPods => write!(f, "ListPods"),
            Op::ListContainers => write!(f, "ListContainers"),
            Op::PullImage => write!(f, "PullImage"),
            Op::ListImages => write!(f, "ListImages"),
        }
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(s: &str) -> Result<Op, String> {
        let s = s.trim();
        let (name, idx) = match s.split_once('(') {
            None => (s, None),
            Some((name, rest)) => {
                let n = rest
                    .strip_suffix(')')
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .ok_or_else(|| format!("op {s:?}: expected Name(number)"))?;
                (name.trim(), Some(n))
            }
        };
        let op = match (name, idx) {
            ("RunPod", None) => Op::RunPod,
            ("ListPods", None) => Op::ListPods,
            ("ListContainers", None) => Op::ListContainers,
            ("PullImage", None) => Op::PullImage,
            ("ListImages", None) => Op::ListImages,
            ("CreateContainer", Some(i)) => Op::CreateContainer(i),
            ("StartContainer", Some(i)) => Op::StartContainer(i),
            ("StopContainer", Some(i)) => Op::StopContainer(i),
            ("RemoveContainer", Some(i)) => Op::RemoveContainer(i),
            ("StopPod", Some(i)) => Op::StopPod(i),
            ("RemovePod", Some(i)) => Op::RemovePod(i),
            ("PodStatus", Some(i)) => Op::PodStatus(i),
            ("ContainerStatus", Some(i)) => Op::ContainerStatus(i),
            _ => return Err(format!("unknown op {s:?}")),
        };
        Ok(op)
    }
}

/// Parses a sequence as printed: `RunPod, CreateContainer(0), StopPod(0)`.
pub fn parse_sequence(s: &str) -> Result<Vec<Op>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Op::from_str)
        .collect()
}

/// Prints a sequence so [`parse_sequence`] reads it back.
pub fn format_sequence(ops: &[Op]) -> String {
    ops.iter().map(Op::to_string).collect::<Vec<_>>().join(", ")
}

/// The generator of one op. Object-creating ops weigh more, so sequences build something
/// to act on; shrinking moves towards the first alternatives and index 0.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = || 0usize..4;
    prop_oneof![
        4 => Just(Op::RunPod),
        4 => idx().prop_map(Op::CreateContainer),
        3 => idx().prop_map(Op::StartContainer),
        2 => idx().prop_map(Op::StopContainer),
        2 => idx().prop_map(Op::RemoveContainer),
        2 => idx().prop_map(Op::StopPod),
        2 => idx().prop_map(Op::RemovePod),
        1 => idx().prop_map(Op::PodStatus),
        1 => idx().prop_map(Op::ContainerStatus),
        1 => Just(Op::ListPods),
        1 => Just(Op::ListContainers),
        1 => Just(Op::PullImage),
        1 => Just(Op::ListImages),
    ]
}

/// The generator of a sequence of 1..=`max_ops` ops.
pub fn sequence_strategy(max_ops: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(), 1..=max_ops.max(1))
}

/// How many sequences, how long, how much shrinking.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Sequences to generate.
    pub cases: u32,
    /// Longest sequence.
    pub max_ops: usize,
    /// Re-runs spent shrinking a failure.
    pub max_shrink_iters: u32,
    /// Seed of the generator, so a run can be repeated.
    pub seed: u64,
}

/// The result of checking sequences.
#[derive(Debug, Clone)]
pub struct PropsReport {
    /// Sequences executed, shrinking re-runs included.
    pub executed: usize,
    /// Ops executed over all sequences.
    pub ops: usize,
    /// The seed used.
    pub seed: u64,
    /// Wall time.
    pub duration: Duration,
    /// The minimal failing sequence and why it failed, if any failed.
    pub failure: Option<PropsFailure>,
}

/// A failing sequence after shrinking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropsFailure {
    /// The minimal sequence.
    pub ops: Vec<Op>,
    /// What the endpoint did wrong, with the step.
    pub reason: String,
}

impl fmt::Display for PropsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "minimal failing sequence ({} ops):", self.ops.len())?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  {}. {op}", i + 1)?;
        }
        writeln!(f, "{}", self.reason)?;
        write!(
            f,
            "replay it with: crid-conformance props --replay '{}' (plus --endpoint and --registry-state)",
            format_sequence(&self.ops)
        )
    }
}

/// Generates sequences within `budget` and checks each with `check` (which runs it and
/// returns the number of ops executed, or why it failed); shrinks a failure to a minimal
/// sequence. Blocking: `check` may block on async work.
pub fn check_sequences(
    budget: Budget,
    check: impl Fn(&[Op]) -> Result<usize, String>,
) -> PropsReport {
    let started = Instant::now();
    let config = Config {
        cases: budget.cases,
        max_shrink_iters: budget.max_shrink_iters,
        // No regression files: a run must leave nothing behind in the working directory.
        failure_persistence: None,
        max_global_rejects: 0,
        ..Config::default()
    };
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&budget.seed.to_le_bytes());
    }
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let executed = AtomicUsize::new(0);
    let ops = AtomicUsize::new(0);
    let result = runner.run(&sequence_strategy(budget.max_ops), |seq| {
        executed.fetch_add(1, Ordering::Relaxed);
        match check(&seq) {
            Ok(n) => {
                ops.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
            Err(why) => {
                ops.fetch_add(seq.len(), Ordering::Relaxed);
                Err(TestCaseError::fail(why))
            }
        }
    });
    let failure = match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, ops)) => Some(PropsFailure {
            ops,
            reason: reason.message().to_owned(),
        }),
        Err(TestError::Abort(reason)) => Some(PropsFailure {
            ops: Vec::new(),
            reason: format!("aborted: {}", reason.message()),
        }),
    };
    PropsReport {
        executed: executed.into_inner(),
        ops: ops.into_inner(),
        seed: budget.seed,
        duration: started.elapsed(),
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::model::{Model, Reply};
    use super::*;

    #[test]
    fn clauses_name_real_rpcs() {
        use crate::report::traceability::{ClauseTarget, parse_clause};
        for (clause, _) in CLAUSES {
            let ClauseTarget::Rpc { service, rpc, .. } = parse_clause(clause) else {
                panic!("{clause} names no RPC");
            };
            let rpcs = match service {
                "RuntimeService" => crid_api::RUNTIME_SERVICE_RPCS,
                "ImageService" => crid_api::IMAGE_SERVICE_RPCS,
                other => panic!("{clause}: unknown service {other}"),
            };
            assert!(rpcs.contains(&rpc), "{clause}");
        }
    }

    #[test]
    fn sequences_print_and_parse_back() {
        let ops = vec![
            Op::RunPod,
            Op::CreateContainer(1),
            Op::StartContainer(0),
            Op::StopContainer(2),
            Op::RemoveContainer(3),
            Op::StopPod(0),
            Op::RemovePod(1),
            Op::PodStatus(0),
            Op::ContainerStatus(0),
            Op::ListPods,
            Op::ListContainers,
            Op::PullImage,
            Op::ListImages,
        ];
        assert_eq!(parse_sequence(&format_sequence(&ops)).unwrap(), ops);
        assert!(
            parse_sequence("RunPod, Explode(1)")
                .unwrap_err()
                .contains("Explode")
        );
        assert!(parse_sequence("StopPod(x)").is_err());
        assert!(parse_sequence("RunPod(1)").is_err());
    }

    /// A pure stand-in for an endpoint, built from the model's own transitions but with one
    /// bug: it refuses to stop a stopped container. Only the shrinking and reporting logic is
    /// under test here; the real endpoint is tested in tests/props.rs.
    fn buggy_endpoint(ops: &[Op]) -> Result<usize, String> {
        let mut m = Model::default();
        let mut stopped = std::collections::HashSet::new();
        let mut started = std::collections::HashSet::new();
        let mut n = 0;
        for (step, op) in ops.iter().enumerate() {
            let (pods, ctrs) = m.created_ids();
            let reply = match *op {
                Op::RunPod => Reply::Created(format!("p{}", pods.len())),
                Op::CreateContainer(i) => match m.pod_target(i) {
                    Some(_) => Reply::Created(format!("c{}", ctrs.len())),
                    None => Reply::Err(tonic::Code::NotFound, "no pod".into()),
                },
                Op::StartContainer(i) => match m.ctr_target(i) {
                    Some((_, id)) if started.insert(id.to_owned()) => Reply::Ok,
                    Some(_) => Reply::Err(tonic::Code::FailedPrecondition, "started".into()),
                    None => Reply::Err(tonic::Code::NotFound, "no container".into()),
                },
                Op::StopContainer(i) => match m.ctr_target(i) {
                    Some((_, id)) if !stopped.insert(id.to_owned()) => {
                        Reply::Err(tonic::Code::FailedPrecondition, "already stopped".into())
                    }
                    _ => Reply::Ok,
                },
                _ => continue,
            };
            n += 1;
            m.step(op, "img", reply)
                .map_err(|e| format!("step {}: {e}", step + 1))?;
        }
        Ok(n)
    }

    #[test]
    fn the_stand_in_has_the_bug() {
        let seq = parse_sequence(
            "RunPod, CreateContainer(0), StartContainer(0), StopContainer(0), StopContainer(0)",
        )
        .unwrap();
        let e = buggy_endpoint(&seq).unwrap_err();
        assert!(e.contains("step 5"), "{e}");
    }

    #[test]
    fn a_failure_shrinks_to_a_minimal_sequence() {
        let report = check_sequences(
            Budget {
                cases: 5000,
                max_ops: 12,
                max_shrink_iters: 5000,
                seed: 7,
            },
            buggy_endpoint,
        );
        let failure = report.failure.expect("the bug must be found");
        // Minimal: it still fails, and dropping any one op makes it pass.
        assert!(buggy_endpoint(&failure.ops).is_err(), "{failure}");
        for i in 0..failure.ops.len() {
            let mut shorter = failure.ops.clone();
            shorter.remove(i);
            assert!(buggy_endpoint(&shorter).is_ok(), "not minimal:\n{failure}");
        }
        assert_eq!(failure.ops.len(), 5, "{failure}");
        assert_eq!(failure.ops.last(), Some(&Op::StopContainer(0)), "{failure}");
        assert!(failure.reason.contains("idempotent"), "{failure}");
        let printed = failure.to_string();
        assert!(
            printed.contains(&format!("--replay '{}'", format_sequence(&failure.ops))),
            "{printed}"
        );
        assert!(report.executed > 1, "shrinking re-ran sequences");
    }

    #[test]
    fn a_correct_endpoint_passes_every_case() {
        let report = check_sequences(
            Budget {
                cases: 32,
                max_ops: 8,
                max_shrink_iters: 0,
                seed: 1,
            },
            |ops| Ok(ops.len()),
        );
        assert!(report.failure.is_none());
        assert_eq!(report.executed, 32);
    }
}

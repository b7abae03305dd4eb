//! Property-based lifecycle tests against Debian's real containerd (with runc and the
//! fixture registry as its mirror): generated sequences of pod, container and image
//! operations must agree with the model after every step, and nothing may be left behind.
//! Bounded: 16 sequences of at most 8 ops, each RPC with a 30 s limit.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crid_api::{RuntimeServiceClient, cri};
use crid_conformance::fixtures::image::{BUSYBOX, LATEST};
use crid_conformance::props::exec::{PropsOptions, RUN_LABEL, replay, run_props};
use crid_conformance::props::{Budget, parse_sequence};
use support::{RegistryState, containerd, harness, require_root};

fn options(channel: tonic::transport::Channel, registry: &str, run_id: &str) -> PropsOptions {
    PropsOptions {
        channel,
        run_id: run_id.to_owned(),
        runtime_handler: String::new(),
        image: format!("{registry}/{BUSYBOX}:{LATEST}"),
        credentials: None,
        op_timeout: Duration::from_secs(30),
    }
}

async fn pods_labelled(channel: tonic::transport::Channel, run_id: &str) -> usize {
    RuntimeServiceClient::new(channel)
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([(RUN_LABEL.to_owned(), run_id.to_owned())]),
                ..Default::default()
            }),
        })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_agrees_with_the_lifecycle_model_needs_root() {
    require_root();
    let registry = RegistryState::up().await;
    let ctd = containerd(&registry).await;
    let channel = ctd.channel().await.expect("channel");

    // A fixed sequence through every op first: pods and containers really run and stop.
    let every_op = parse_sequence(
        "PullImage, RunPod, CreateContainer(0), StartContainer(0), ContainerStatus(0), \
         ListContainers, StopContainer(0), StopContainer(0), RemoveContainer(0), \
         RemoveContainer(0), ContainerStatus(0), CreateContainer(0), StartContainer(1), \
         StopPod(0), StopPod(0), PodStatus(0), RemovePod(0), RemovePod(0), PodStatus(0), \
         ListPods, ListImages",
    )
    .expect("sequence");
    let trace = replay(
        options(channel.clone(), &registry.host, "crt-props-fixed"),
        &every_op,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ctd.log_tail()));
    assert_eq!(trace.len(), every_op.len());
    assert_eq!(pods_labelled(channel.clone(), "crt-props-fixed").await, 0);

    // Then generated sequences.
    let run_id = "crt-props-gen";
    let report = run_props(
        options(channel.clone(), &registry.host, run_id),
        Budget {
            cases: 16,
            max_ops: 8,
            max_shrink_iters: 32,
            seed: 20261128,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ctd.log_tail()));
    if let Some(f) = &report.failure {
        panic!(
            "containerd disagrees with the model:\n{f}\n{}",
            ctd.log_tail()
        );
    }
    assert_eq!(report.executed, 16);
    assert!(report.ops > 16, "{report:?}");
    eprintln!(
        "props: {} sequences, {} ops in {:.1}s ({:.0} ms per op)",
        report.executed,
        report.ops,
        report.duration.as_secs_f64(),
        report.duration.as_secs_f64() * 1000.0 / report.ops as f64
    );
    assert_eq!(
        pods_labelled(channel.clone(), run_id).await,
        0,
        "nothing left behind"
    );

    // The subcommand: a replayed sequence through the CLI, and a refused bad sequence.
    let out = Command::new(harness())
        .args(["props", "--endpoint", &ctd.endpoint(), "--registry-state"])
        .arg(registry.state_dir())
        .args([
            "--replay",
            "RunPod, CreateContainer(0), StartContainer(0), RemovePod(0), ContainerStatus(0)",
        ])
        .output()
        .expect("run the harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5. ContainerStatus(0) -> Err(NotFound"),
        "{stdout}"
    );
    let bad = Command::new(harness())
        .args(["props", "--endpoint", &ctd.endpoint(), "--registry-state"])
        .arg(registry.state_dir())
        .args(["--replay", "RunPod, Explode(0)"])
        .output()
        .expect("run the harness");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown op \"Explode(0)\""));
    drop(ctd);
}

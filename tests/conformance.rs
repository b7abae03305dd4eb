//! The conformance catalogue, run in-process against the real crid binary with the fixture
//! registry up, and judged against crid's baseline (conformance/baseline/crid.toml): every
//! failure must be listed there with its reason, and every listed case must still fail.
//! When a capability lands, its cases pass and this test names the entries to delete.

mod support;

use std::sync::Arc;

use crid_conformance::baseline::{self, Baseline};
use crid_conformance::cases::{self, ImageRefs};
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use crid_conformance::report::{self, RunReport};
use crid_conformance::runner::{self, Environment};
use support::TestDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crid_matches_its_baseline_needs_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs pods and containers: run it as root (CI does)"
    );
    let registry = Registry::start(RegistryOptions::plain())
        .await
        .expect("start docker-registry (run scripts/setup.sh)");
    registry.push_all_fixtures().await.expect("push fixtures");
    // The fixture registry serves plain HTTP on loopback: crid must be told so.
    let d = TestDaemon::start(&format!(
        "[image]\ninsecure_registries = [\"{0}\"]\npause_image = \"{0}/pause:latest\"\n",
        registry.host()
    ));
    // Networking cases need a CNI network: a bridge and subnet of this test's own.
    let _net = support::cri::TestNetwork::install(&d, "cf", 6);
    // A second daemon with an empty CNI directory: NetworkReady is false there, which
    // runtime-info/status-not-ready-reason needs to see.
    let not_ready = TestDaemon::start("");
    let catalogue = cases::catalogue();
    let ctx = cases::Ctx {
        channel: d.channel().await,
        run_id: runner::new_run_id(),
        runtime_handler: String::new(),
        images: Some(Arc::new(ImageRefs {
            registry: registry.host(),
            credentials: None,
        })),
        not_ready: Some(not_ready.channel().await),
    };
    let outcomes = runner::run(&ctx, &catalogue, &Environment::detect(), |_| {}).await;
    let report = RunReport {
        endpoint: format!("unix://{}", d.socket().display()),
        runtime: "crid".into(),
        outcomes,
    };
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/baseline/crid.toml");
    let base = Baseline::load(&path).expect("crid baseline");
    let ids: Vec<&str> = catalogue.iter().map(|c| c.id).collect();
    let comparison = baseline::compare(
        &base,
        &baseline::from_outcomes(&report.outcomes),
        &ids,
        &ids,
        "",
    );
    assert!(
        comparison.matches(),
        "{}\n{}",
        comparison.render(&path.display().to_string()),
        report::to_table(&report)
    );

    let xml = report::to_junit(&report);
    assert_eq!(xml.matches("<testcase ").count(), catalogue.len());
}

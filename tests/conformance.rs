//! The conformance catalogue, run in-process against the real crid binary: every required
//! case must pass, and the JUnit report must count every case.

mod support;

use crid_conformance::cases::{self, Requirement, Verdict};
use crid_conformance::report::{self, RunReport};
use crid_conformance::runner::{self, Environment};
use support::TestDaemon;

#[tokio::test]
async fn crid_passes_every_required_case() {
    let d = TestDaemon::start("");
    let catalogue = cases::catalogue();
    let ctx = cases::Ctx {
        channel: d.channel().await,
        run_id: runner::new_run_id(),
        runtime_handler: String::new(),
        images: None,
    };
    let outcomes = runner::run(&ctx, &catalogue, &Environment::detect(), |_| {}).await;
    let report = RunReport {
        endpoint: format!("unix://{}", d.socket().display()),
        runtime: "crid".into(),
        outcomes,
    };
    let failures: Vec<_> = report
        .outcomes
        .iter()
        .filter(|o| {
            o.case.requirement == Requirement::Required && matches!(o.verdict, Verdict::Fail(_))
        })
        .map(|o| format!("{} [{}]: {:?}", o.case.id, o.case.clause, o.verdict))
        .collect();
    assert!(
        failures.is_empty(),
        "required cases failed:\n{}\n{}",
        failures.join("\n"),
        report::to_table(&report)
    );
    assert!(report.passed());

    let xml = report::to_junit(&report);
    assert_eq!(xml.matches("<testcase ").count(), catalogue.len());
}

mod support;
use std::process::Command;
use support::*;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() {
    let registry = RegistryState::up().await;
    let ctd = containerd(&registry).await;
    let endpoint = ctd.endpoint();
    let _ = std::fs::remove_dir_all("/tmp/mview");
    let m = Command::new(harness())
        .args([
            "matrix",
            "--endpoint",
            &endpoint,
            "--runtime-handler",
            "",
            "--runtime-handler",
            "runc",
            "--runtime-handler",
            "crun",
        ])
        .arg("--registry-state")
        .arg(registry.state_dir())
        .arg("--out")
        .arg("/tmp/mview")
        .output()
        .unwrap();
    std::fs::write("/tmp/mview/stderr.txt", &m.stderr).unwrap();
    std::fs::write("/tmp/mview/stdout.txt", &m.stdout).unwrap();
    drop(ctd);
}
#[test]
fn scratch_sample() {
    use crid_conformance::cases::{Requirement, Verdict};
    use crid_conformance::report::{CellReport, Entry, MatrixReport, html};
    let e = |id: &str, area: &str, r, v| Entry {
        id: id.into(),
        clause: format!("cri:RuntimeService.StopContainer#{id}"),
        area: area.into(),
        requirement: r,
        summary: "s".into(),
        verdict: v,
        note: "seen".into(),
        duration: std::time::Duration::from_millis(3),
    };
    let mut cells = Vec::new();
    for (rt, h) in [
        ("containerd 1.6.20", "runc"),
        ("crid 0.1.0", "runc"),
        ("crid 0.1.0", "crun"),
    ] {
        let mut entries = vec![];
        for a in [
            "runtime-info",
            "pod-sandbox",
            "container",
            "image",
            "exec",
            "external",
        ] {
            for i in 0..5 {
                entries.push(e(
                    &format!("{a}/case-{i}"),
                    a,
                    Requirement::Required,
                    Verdict::Pass,
                ));
            }
        }
        if rt.starts_with("crid") {
            entries.push(e("container/stop-idempotent", "container", Requirement::Required, Verdict::Fail("StopContainer on a stopped container returned NotFound: container \"abc\" not found\nsecond line".into())));
        }
        if h == "crun" {
            entries.push(e(
                "image/pull-by-digest",
                "image",
                Requirement::Optional,
                Verdict::Fail("digest mismatch <sha256:...>".into()),
            ));
            entries.push(e(
                "exec/x",
                "exec",
                Requirement::Required,
                Verdict::Skip("needs root".into()),
            ));
        }
        cells.push(CellReport {
            endpoint: format!("unix:///run/{}.sock", rt.split(' ').next().unwrap()),
            runtime: rt.into(),
            handler: h.into(),
            entries,
        });
    }
    std::fs::write(
        "/tmp/sample.html",
        html::to_html(&MatrixReport {
            generated: "2026-11-28 08:30:00 UTC".into(),
            cells,
        }),
    )
    .unwrap();
}

//! The `run` and `matrix` subcommands end to end against a real containerd with the fixture
//! registry: the files they write, what those files contain, and their exit status.

mod support;

use std::process::Command;

use support::{RegistryState, containerd, harness, require_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_matrix_write_their_reports_against_containerd_needs_root() {
    require_root();
    let registry = RegistryState::up().await;
    let ctd = containerd(&registry).await;
    let endpoint = ctd.endpoint();
    let out = tempfile::tempdir().expect("temp dir");
    // One area keeps the test bounded (three runs of it); the whole catalogue runs in CI's
    // main job and the differential run.
    const FILTER: &str = "runtime-info/";
    let catalogue =
        crid_conformance::runner::select(crid_conformance::cases::catalogue(), Some(FILTER));
    assert!(!catalogue.is_empty());

    // `run`: JUnit and Markdown files, the table on stdout.
    let junit = out.path().join("run.xml");
    let markdown = out.path().join("run.md");
    let run = Command::new(harness())
        .args([
            "run",
            "--endpoint",
            &endpoint,
            "--filter",
            FILTER,
            "--junit",
        ])
        .arg(&junit)
        .arg("--markdown")
        .arg(&markdown)
        .arg("--html")
        .arg(out.path().join("run.html"))
        .arg("--registry-state")
        .arg(registry.state_dir())
        .output()
        .expect("run the harness");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.code() == Some(0) || run.status.code() == Some(1),
        "run: {:?}\n{stderr}",
        run.status
    );
    let xml = std::fs::read_to_string(&junit).expect("run wrote JUnit");
    assert_eq!(xml.matches("<testcase ").count(), catalogue.len(), "{xml}");
    assert!(
        xml.contains("<property name=\"runtime\" value=\"containerd "),
        "{xml}"
    );
    let md = std::fs::read_to_string(&markdown).expect("run wrote Markdown");
    assert!(md.starts_with("# Conformance report: containerd "), "{md}");
    for c in &catalogue {
        assert!(
            md.contains(c.id),
            "{} missing from the Markdown report",
            c.id
        );
    }
    // Progress goes to stderr, one plain line per case when it is not a terminal.
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        catalogue.len(),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no terminal control codes in a pipe: {stderr:?}"
    );
    // The exit status follows the required failures in the report.
    let failed_required = xml.matches("type=\"required\"").count();
    assert_eq!(run.status.success(), failed_required == 0, "{stdout}");

    // `matrix`: the default handler (containerd 1.6 reports none) and runc, as two cells.
    let dir = out.path().join("matrix");
    let m = Command::new(harness())
        .args(["matrix", "--endpoint", &endpoint, "--filter", FILTER])
        .args(["--runtime-handler", "", "--runtime-handler", "runc"])
        .arg("--registry-state")
        .arg(registry.state_dir())
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("run the harness");
    let mstderr = String::from_utf8_lossy(&m.stderr);
    let mstdout = String::from_utf8_lossy(&m.stdout);
    assert!(
        m.status.code() == Some(0) || m.status.code() == Some(1),
        "matrix: {:?}\n{mstderr}",
        m.status
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("matrix out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "junit-1-containerd-default.xml",
            "junit-2-containerd-runc.xml",
            "report.html",
            "summary.md"
        ]
    );
    let cell2 = std::fs::read_to_string(dir.join("junit-2-containerd-runc.xml")).expect("JUnit");
    assert_eq!(cell2.matches("<testcase ").count(), catalogue.len());
    assert!(
        cell2.contains("<property name=\"runtime_handler\" value=\"runc\"/>"),
        "{cell2}"
    );
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary");
    assert!(summary.contains("| 1 | containerd "), "{summary}");
    assert!(summary.contains("| `runc` |"), "{summary}");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("HTML");
    assert!(html.contains("<table class=\"grid\">"));
    assert_eq!(html.matches("<th>#").count(), 2, "one column per cell");
    let matrix_failed = summary.contains("**FAIL**");
    assert_eq!(m.status.success(), !matrix_failed, "{mstdout}\n{summary}");
    assert_eq!(
        mstderr.lines().filter(|l| l.starts_with('[')).count(),
        2 * catalogue.len(),
        "{mstderr}"
    );
    drop(ctd);
}

#[test]
fn matrix_with_a_missing_critest_refuses_before_running_anything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let m = Command::new(harness())
        .args([
            "matrix",
            "--endpoint",
            "unix:///nonexistent.sock",
            "--critest",
        ])
        .arg(tmp.path().join("critest"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&m.stderr);
    assert_eq!(m.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("critest not found at"), "{stderr}");
    assert!(stderr.contains("(install cri-tools)"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn matrix_refuses_an_unreachable_endpoint_before_running_anything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("out");
    let missing = format!("unix://{}/missing.sock", tmp.path().display());
    let m = Command::new(harness())
        .args(["matrix", "--endpoint", &missing, "--out"])
        .arg(&out)
        .output()
        .expect("run the harness");
    let stderr = String::from_utf8_lossy(&m.stderr);
    assert_eq!(m.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.sock"), "{stderr}");
    assert!(
        !out.exists(),
        "nothing is written when an endpoint is unreachable"
    );
}

//! The judge logic of scripts/conformance.sh and scripts/differential.sh
//! (scripts/lib/judge.sh), run with fake suites: a harness error fails the job, a missing
//! report is never replaced by an earlier one, a daemon that never serves its socket fails
//! the wait, and every matrix cell is compared.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// Runs `script` in bash with scripts/lib/judge.sh sourced and `set -euo pipefail`, as the
/// job scripts do; `dir` is its working directory.
fn judge(dir: &Path, script: &str) -> Output {
    let lib = repo().join("scripts/lib/judge.sh");
    Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\n. '{}'\n{script}",
            lib.display()
        ))
        .current_dir(dir)
        .env("HARNESS", env!("CARGO_BIN_EXE_crid-conformance"))
        .output()
        .expect("bash runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fake `crid-conformance` that exits with the given status.
fn fake_suite(dir: &Path, status: i32) -> PathBuf {
    let path = dir.join(format!("fake-suite-{status}"));
    std::fs::write(&path, format!("#!/bin/sh\nexit {status}\n")).expect("write");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

#[test]
fn a_harness_error_fails_the_job_and_failed_cases_go_to_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (status, job) in [(2, Some(2)), (101, Some(101)), (1, None), (0, None)] {
        let suite = fake_suite(dir.path(), status);
        let o = judge(
            dir.path(),
            &format!(
                "run_suite run '{}' --junit x || exit\necho judged-by-the-baseline",
                suite.display()
            ),
        );
        let out = text(&o);
        match job {
            Some(code) => {
                assert_eq!(o.status.code(), Some(code), "{out}");
                assert!(!out.contains("judged-by-the-baseline"), "{out}");
                assert!(out.contains("the harness failed"), "{out}");
            }
            None => {
                assert!(o.status.success(), "{out}");
                assert!(out.contains("judged-by-the-baseline"), "{out}");
            }
        }
    }
}

#[test]
fn a_run_that_writes_no_report_is_not_judged_by_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("b.toml"), "runtime = \"x\"\n").expect("write");
    // An earlier run's report, and a suite that fails without writing one.
    std::fs::write(dir.path().join("junit.xml"), "stale").expect("write");
    let suite = fake_suite(dir.path(), 1);
    let o = judge(
        dir.path(),
        &format!(
            "fresh_report junit.xml\n\
             run_suite run '{}' || exit\n\
             \"$HARNESS\" compare --junit junit.xml --baseline b.toml",
            suite.display()
        ),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("junit.xml"), "{}", text(&o));
    assert!(!dir.path().join("junit.xml").exists());
}

#[test]
fn the_socket_wait_fails_on_timeout_and_on_an_early_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("log"), "the daemon's last words").expect("write");
    // A live process that never makes the socket: the wait ends in failure, not silently.
    let o = judge(
        dir.path(),
        "sleep 30 & pid=$!\n\
         rc=0; wait_socket none.sock \"$pid\" log 1 || rc=$?\n\
         kill \"$pid\"; exit \"$rc\"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("did not serve none.sock within 1s"));
    assert!(text(&o).contains("the daemon's last words"));
    // A process that exited.
    let o = judge(
        dir.path(),
        "true & pid=$!; wait \"$pid\"\nwait_socket none.sock \"$pid\" log 5",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("exited before serving"));
    // A socket that is there.
    let o = judge(
        dir.path(),
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"s.sock\")'\n\
         sleep 30 & pid=$!\n\
         rc=0; wait_socket s.sock \"$pid\" log 1 || rc=$?\n\
         kill \"$pid\"; exit \"$rc\"",
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn every_matrix_cell_is_compared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = dir.path().join("matrix");
    std::fs::create_dir(&cells).expect("mkdir");
    std::fs::write(dir.path().join("b.toml"), "runtime = \"x\"\n").expect("write");
    let compare = "compare_cells \"$HARNESS\" b.toml matrix";
    // No cell at all: nothing was judged, which is a failure.
    let o = judge(dir.path(), compare);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no cell was judged"));
    // A truncated cell fails the comparison.
    std::fs::write(
        cells.join("junit-1-crid-crun.xml"),
        "<testsuites tests=\"1\"><testcase name=\"a [b]\">",
    )
    .expect("write");
    let o = judge(dir.path(), compare);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("junit-1-crid-crun.xml"), "{}", text(&o));
}

/// The job scripts judge every suite run through the functions above: no run, matrix or
/// compare of theirs may swallow its exit status.
#[test]
fn the_job_scripts_swallow_no_exit_status() {
    for name in ["conformance.sh", "differential.sh"] {
        let path = repo().join("scripts").join(name);
        let script = std::fs::read_to_string(&path).expect("read script");
        assert!(
            script.contains(". scripts/lib/judge.sh"),
            "{name} must source the judge"
        );
        // Join continuation lines, so that a command is one line.
        let joined = script.replace("\\\n", " ");
        for line in joined.lines() {
            let suite = [
                " run ",
                " matrix ",
                " compare ",
                " props ",
                " hostile ",
                " soak ",
            ]
            .iter()
            .any(|w| line.contains(w));
            if !suite || !line.contains("crid-conformance") && !line.contains("\"$bin\"") {
                continue;
            }
            assert!(
                !line.contains("|| true") && !line.contains("|| echo"),
                "{name} swallows a suite's exit status: {line}"
            );
            if line.contains(" run --endpoint") {
                assert!(
                    line.trim_start().starts_with("run_suite ") && line.contains("|| exit"),
                    "{name}: the run must be judged by run_suite and end the job on a harness error: {line}"
                );
                assert!(
                    line.contains(" --baseline conformance/baseline/")
                        && line.contains(" --compare-baseline conformance/baseline/"),
                    "{name}: the run must read its results against its baseline and show the \
                     differences from the other runtime's: {line}"
                );
            }
        }
        assert!(
            script.contains("fresh_report \"$out/junit.xml\""),
            "{name} must remove the previous junit.xml before the run"
        );
        assert!(
            script.contains("--not-ready-endpoint"),
            "{name} must give the run an endpoint without a network"
        );
    }
    // The main job also judges every matrix cell and runs bounded props and hostile
    // requests against crid, where a timeout fails the job.
    let main = std::fs::read_to_string(repo().join("scripts/conformance.sh")).expect("read");
    assert!(main.contains("compare_cells \"$bin/crid-conformance\""));
    let at = main
        .find("\ntimeout ")
        .expect("conformance.sh runs props under a time bound");
    let props: String = main[at..].chars().take(700).collect();
    assert!(props.contains(" props "), "{props}");
    assert!(props.contains("--cases"), "{props}");
    assert!(
        props.contains("status=1"),
        "a props failure must fail the job: {props}"
    );
    // And a bounded hostile run, judged the same way, with crid's log for panics.
    let at = main
        .find("\ntimeout --kill-after=10 \"$hostile_limit\"")
        .expect("conformance.sh runs the hostile requests under a time bound");
    let hostile: String = main[at..].chars().take(800).collect();
    assert!(hostile.contains(" hostile "), "{hostile}");
    assert!(
        hostile.contains("--requests") && hostile.contains("--seed"),
        "{hostile}"
    );
    assert!(hostile.contains("--daemon-log"), "{hostile}");
    assert!(
        hostile.contains("status=1"),
        "a hostile failure must fail the job: {hostile}"
    );
    // And a bounded soak against the same crid, sampling its own process.
    let at = main
        .find("\ntimeout --kill-after=10 \"$((soak_seconds")
        .expect("conformance.sh runs the soak under a time bound");
    let soak: String = main[at..].chars().take(800).collect();
    assert!(soak.contains(" soak "), "{soak}");
    assert!(soak.contains("--daemon-pid \"$crid_pid\""), "{soak}");
    assert!(soak.contains("--duration"), "{soak}");
    assert!(
        soak.contains("status=1"),
        "a soak failure must fail the job: {soak}"
    );
    // And the mutation sample (issue 15), bounded, where an uncaught fault fails the job.
    let at = main
        .find("timeout --kill-after=10 \"$mutation_limit\" scripts/mutation.sh --sample")
        .expect("conformance.sh runs the mutation sample under a time bound");
    let sample: String = main[at..].chars().take(300).collect();
    assert!(
        sample.contains("status=1"),
        "an uncaught fault must fail the job: {sample}"
    );
}

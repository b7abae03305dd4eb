//! Drivers for external suites: cri-tools' `critest` and the Kubernetes node e2e binary.
//! Each runs the suite as a child process against an endpoint, reads the ginkgo JUnit report
//! it writes, and folds the specs into report entries under the `external` area, so their
//! results sit in the same JUnit, Markdown and HTML reports as the catalogue's.

pub mod critest;
pub mod junit;
pub mod node_e2e;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::report::Entry;

/// What went wrong running an external suite.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The suite's binary is not there.
    #[error("{what} not found at {where_} ({hint})")]
    NotFound {
        /// `critest`, `e2e_node.test`, `kubelet`.
        what: &'static str,
        /// Where it was looked for.
        where_: String,
        /// How to get it.
        hint: &'static str,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The suite ended without writing its JUnit report.
    #[error(
        "{what} exited with {status} without writing {report}; its output is in {log}:\n{tail}"
    )]
    NoReport {
        /// The suite.
        what: &'static str,
        /// Its exit status.
        status: String,
        /// The report path it was told to write.
        report: PathBuf,
        /// Its combined output.
        log: PathBuf,
        /// The end of that output.
        tail: String,
    },
    /// The suite ran past its time limit and was killed.
    #[error("{what} did not finish within {limit:?} and was killed; its output is in {log}")]
    TimedOut {
        /// The suite.
        what: &'static str,
        /// The limit.
        limit: Duration,
        /// Its combined output.
        log: PathBuf,
    },
    /// The JUnit report is not what ginkgo writes.
    #[error("{path}: {source}")]
    Junit {
        /// The report.
        path: PathBuf,
        /// What is wrong with it.
        source: junit::JunitError,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let context = context.into();
    move |source| DriverError::Io { context, source }
}

/// Finds `name` in `$PATH`, like a shell would.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `path` if it is an executable file, else [`DriverError::NotFound`].
pub fn require_binary(
    what: &'static str,
    path: &Path,
    hint: &'static str,
) -> Result<PathBuf, DriverError> {
    if is_executable(path) {
        Ok(path.to_owned())
    } else {
        Err(DriverError::NotFound {
            what,
            where_: path.display().to_string(),
            hint,
        })
    }
}

/// One external run: the binary, its arguments, where its output and report go.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `critest` or `node-e2e`: the suite label and the clause prefix.
    pub suite: &'static str,
    /// The binary.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where `--ginkgo.junit-report` points.
    pub junit: PathBuf,
    /// Where stdout and stderr go.
    pub log: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
}

/// Runs the invocation to its end, then parses its JUnit report into entries. A non-zero
/// exit is normal (failed specs); a missing report is an error.
pub async fn run(
    inv: &Invocation,
    rule: junit::RequirementRule,
) -> Result<Vec<Entry>, DriverError> {
    let log =
        std::fs::File::create(&inv.log).map_err(io(format!("creating {}", inv.log.display())))?;
    let log_err = log.try_clone().map_err(io("duplicating the log handle"))?;
    // A stale report from an earlier run must not pass for this one's.
    match std::fs::remove_file(&inv.junit) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", inv.junit.display()))(e)),
    }
    let mut child = tokio::process::Command::new(&inv.binary)
        .args(&inv.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // If the harness is interrupted, the suite goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("starting {}", inv.binary.display())))?;
    let status = match tokio::time::timeout(inv.timeout, child.wait()).await {
        Ok(status) => status.map_err(io(format!("waiting for {}", inv.binary.display())))?,
        Err(_) => {
            // Our own child, by its handle: kill and reap it.
            let _ = child.kill().await;
            return Err(DriverError::TimedOut {
                what: inv.suite,
                limit: inv.timeout,
                log: inv.log.clone(),
            });
        }
    };
    let xml = match std::fs::read_to_string(&inv.junit) {
        Ok(x) => x,
        Err(_) => {
            let data = std::fs::read(&inv.log).unwrap_or_default();
            let start = data.len().saturating_sub(2000);
            return Err(DriverError::NoReport {
                what: inv.suite,
                status: status.to_string(),
                report: inv.junit.clone(),
                log: inv.log.clone(),
                tail: String::from_utf8_lossy(&data[start..]).into_owned(),
            });
        }
    };
    let specs = junit::parse(&xml).map_err(|source| DriverError::Junit {
        path: inv.junit.clone(),
        source,
    })?;
    Ok(junit::to_entries(inv.suite, &specs, rule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::Requirement;

    fn inv(dir: &Path, binary: &str, args: &[&str], timeout: Duration) -> Invocation {
        Invocation {
            suite: "critest",
            binary: PathBuf::from(binary),
            args: args.iter().map(|a| a.to_string()).collect(),
            junit: dir.join("junit.xml"),
            log: dir.join("suite.log"),
            timeout,
        }
    }

    #[tokio::test]
    async fn a_suite_that_writes_no_report_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        // A stale report from an earlier run must not be taken for this run's.
        std::fs::write(dir.path().join("junit.xml"), "<testsuites/>").unwrap();
        let i = inv(
            dir.path(),
            "/bin/sh",
            &["-c", "echo flag provided but not defined >&2; exit 1"],
            Duration::from_secs(10),
        );
        let e = run(&i, |_| Requirement::Required).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DriverError::NoReport { .. }), "{msg}");
        assert!(msg.contains("exit status: 1"), "{msg}");
        assert!(msg.contains("flag provided but not defined"), "{msg}");
    }

    #[tokio::test]
    async fn a_suite_past_its_time_limit_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let i = inv(
            dir.path(),
            "/bin/sh",
            &["-c", &script],
            Duration::from_millis(500),
        );
        let started = std::time::Instant::now();
        let e = run(&i, |_| Requirement::Required).await.unwrap_err();
        assert!(matches!(e, DriverError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The process (sleep, exec'd in place of the shell) is gone, not orphaned.
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        assert!(!alive, "pid {pid} still runs");
    }

    #[tokio::test]
    async fn a_report_written_by_a_failing_suite_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("junit.xml");
        let script = format!(
            "printf '%s' '<testsuites><testsuite name=\"S\"><testcase name=\"[It] a\" status=\"passed\" time=\"0.5\"/></testsuite></testsuites>' > {}; exit 1",
            junit.display()
        );
        let i = inv(
            dir.path(),
            "/bin/sh",
            &["-c", &script],
            Duration::from_secs(10),
        );
        let entries = run(&i, |_| Requirement::Required).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].clause, "critest:a");
    }
}

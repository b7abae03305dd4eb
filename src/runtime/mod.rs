//! Runtime handlers: OCI runtime CLIs (runc, crun, runsc, youki) and VM shims (shim v2).
//!
//! [`RuntimeHandler`] is what the pod and container services use; [`RuntimeRegistry`]
//! resolves handler names to runtimes, for them and for `Status` and `crid check` alike.
//! This module finds a handler's binary and asks it for its version. [`oci`] drives the
//! container lifecycle through an OCI runtime CLI; [`shim`] through a containerd shim v2
//! over ttrpc; [`interactive`] is an exec session's process, whichever handler runs it;
//! [`hybrid`] holds the crun workaround for hybrid cgroup hosts.

#[cfg(test)]
pub mod fake;
pub mod handler;
pub mod hybrid;
pub mod interactive;
mod invoke;
pub mod oci;
pub mod registry;
pub mod shim;

pub use handler::{Features, OciHandler, RuntimeHandler};
pub use interactive::{Interactive, Streams};
pub use oci::{CreateRequest, Created, ExecOutput, State};
pub use registry::{HandlerError, RuntimeRegistry};
pub use shim::ShimHandler;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::{RuntimeHandler as HandlerConfig, RuntimeKind};

/// How long a runtime may take to print its version before it counts as broken.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a runtime handler is not usable, or why a command it ran failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The binary is not where the configuration says, or not in PATH.
    #[error("runtime handler {handler}: binary `{path}` not found{}", if *.searched_path { " in PATH" } else { "" })]
    NotFound {
        /// Handler name.
        handler: String,
        /// Configured path.
        path: PathBuf,
        /// Whether PATH was searched (a bare name) or the path was taken as is.
        searched_path: bool,
    },
    /// The binary could not be executed.
    #[error("runtime handler {handler}: cannot execute {binary}: {source}")]
    Exec {
        /// Handler name.
        handler: String,
        /// Resolved binary.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The binary ran but failed.
    #[error("runtime handler {handler}: `{binary} {arg}` failed ({status}): {stderr}")]
    Failed {
        /// Handler name.
        handler: String,
        /// Resolved binary.
        binary: PathBuf,
        /// The version flag that was passed.
        arg: &'static str,
        /// Exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A command did not finish in time; it was killed (with its process group) and reaped.
    #[error(
        "runtime handler {handler}: `{binary} {command}`{} did not finish within {timeout:?}",
        .id.as_ref().map(|id| format!(" for container {id}")).unwrap_or_default()
    )]
    Timeout {
        /// Handler name.
        handler: String,
        /// The binary that was killed (the runtime, or crid-monitor for `create`).
        binary: PathBuf,
        /// The command (`start`, `exec`, ...) or the version flag.
        command: String,
        /// The container, when the command was about one.
        id: Option<String>,
        /// The limit.
        timeout: Duration,
    },
    /// The handler is not an OCI runtime (it is a VM shim).
    #[error("runtime handler {handler}: not an OCI runtime")]
    NotOci {
        /// Handler name.
        handler: String,
    },
    /// A runtime command ran and failed.
    #[error("runtime handler {handler}: `{command}` of container {id} failed ({status}): {stderr}")]
    Command {
        /// Handler name.
        handler: String,
        /// The command (`start`, `kill`, ...).
        command: &'static str,
        /// Container ID.
        id: String,
        /// Exit status, as text.
        status: String,
        /// What the runtime printed on stderr (trimmed, bounded).
        stderr: String,
    },
    /// The runtime's `create`, run by crid-monitor, failed.
    #[error("runtime handler {handler}: create of container {id} failed: {stderr}")]
    Create {
        /// Handler name.
        handler: String,
        /// Container ID.
        id: String,
        /// The monitor's report, with the runtime's stderr.
        stderr: String,
    },
    /// `create` of an ID the runtime already knows; that container was left alone.
    #[error("runtime handler {handler}: container {id} already exists")]
    Exists {
        /// Handler name.
        handler: String,
        /// Container ID.
        id: String,
    },
    /// crid-monitor could not be started or did not report a status.
    #[error("runtime handler {handler}: monitor of container {id}: {reason}")]
    Monitor {
        /// Handler name.
        handler: String,
        /// Container ID.
        id: String,
        /// What went wrong, with the monitor's own log when there is one.
        reason: String,
    },
    /// A command could not be spawned, or its input files not written.
    #[error("runtime handler {handler}: `{command}` of container {id}: {source}")]
    Io {
        /// Handler name.
        handler: String,
        /// The command.
        command: &'static str,
        /// Container ID.
        id: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime's output could not be understood.
    #[error(
        "runtime handler {handler}: `{command}` of container {id}: unexpected output: {reason}"
    )]
    BadOutput {
        /// Handler name.
        handler: String,
        /// The command.
        command: &'static str,
        /// Container ID.
        id: String,
        /// Why it did not parse.
        reason: String,
    },
    /// Something this kind of handler does not do (yet).
    #[error("runtime handler {handler}: {what} is not supported on this handler")]
    NotSupported {
        /// Handler name.
        handler: String,
        /// What was asked.
        what: &'static str,
    },
    /// An argument crid refuses to put on a runtime's command line.
    #[error("runtime handler {handler}: invalid {what} `{value}`")]
    InvalidArgument {
        /// Handler name.
        handler: String,
        /// Which argument (`container id`, `signal`).
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// What a successful probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerProbe {
    /// The binary that ran.
    pub binary: PathBuf,
    /// First line of its version output, e.g. `runc version 1.1.5+ds1`; for a shim, its name
    /// and `Version:` line, e.g. `containerd-shim-runc-v2 1.6.20~ds1`.
    pub version: String,
}

/// Container IDs go on runtime and shim command lines: no empty ones, no options, no paths.
pub(crate) fn check_id(handler: &str, id: &str) -> Result<(), RuntimeError> {
    let valid = !id.is_empty()
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(RuntimeError::InvalidArgument {
            handler: handler.to_owned(),
            what: "container id",
            value: id.to_owned(),
        })
    }
}

/// Resolves a configured binary: an absolute path as is, a bare name through `PATH`.
pub fn resolve_binary(path: &Path) -> Option<PathBuf> {
    if path.is_absolute() {
        return is_executable(path).then(|| path.to_path_buf());
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(path))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the handler's binary and runs it with its version flag, bounded by [`PROBE_TIMEOUT`].
pub async fn probe(name: &str, handler: &HandlerConfig) -> Result<HandlerProbe, RuntimeError> {
    probe_within(name, handler, PROBE_TIMEOUT).await
}

/// [`probe`] with an explicit time limit.
pub async fn probe_within(
    name: &str,
    handler: &HandlerConfig,
    timeout: Duration,
) -> Result<HandlerProbe, RuntimeError> {
    let binary = resolve_binary(&handler.path).ok_or_else(|| RuntimeError::NotFound {
        handler: name.to_owned(),
        path: handler.path.clone(),
        searched_path: !handler.path.is_absolute(),
    })?;
    // OCI runtimes answer `--version`; shim v2 binaries answer `-v`.
    let arg = match handler.kind {
        RuntimeKind::Oci => "--version",
        RuntimeKind::Vm => "-v",
    };
    let child = tokio::process::Command::new(&binary)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RuntimeError::Exec {
            handler: name.to_owned(),
            binary: binary.clone(),
            source,
        })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(RuntimeError::Exec {
                handler: name.to_owned(),
                binary,
                source,
            });
        }
        Err(_) => {
            return Err(RuntimeError::Timeout {
                handler: name.to_owned(),
                binary,
                command: arg.to_owned(),
                id: None,
                timeout,
            });
        }
    };
    if !output.status.success() {
        return Err(RuntimeError::Failed {
            handler: name.to_owned(),
            binary,
            arg,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let version = match handler.kind {
        RuntimeKind::Oci => text.lines().next().unwrap_or_default().trim().to_owned(),
        RuntimeKind::Vm => shim::shim_version(&text),
    };
    Ok(HandlerProbe { binary, version })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn oci(path: PathBuf) -> HandlerConfig {
        HandlerConfig {
            path,
            root: None,
            kind: RuntimeKind::Oci,
            args: Vec::new(),
            always_infra: false,
            timeout_secs: None,
            exit_via_wait: None,
        }
    }

    #[tokio::test]
    async fn probe_reads_first_line_of_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = script(
            dir.path(),
            "fake-runtime",
            "echo \"fake version 1.2\"; echo commit: abc",
        );
        let p = probe("fake", &oci(bin.clone())).await.expect("probe");
        assert_eq!(
            p,
            HandlerProbe {
                binary: bin,
                version: "fake version 1.2".into()
            }
        );
    }

    #[tokio::test]
    async fn probe_reports_failure_with_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = script(dir.path(), "broken", "echo boom >&2; exit 3");
        let err = probe("broken", &oci(bin)).await.expect_err("must fail");
        assert!(
            matches!(&err, RuntimeError::Failed { stderr, .. } if stderr == "boom"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn probe_reports_missing_binary() {
        let err = probe("x", &oci("/nonexistent/runtime".into()))
            .await
            .expect_err("must fail");
        assert!(
            matches!(
                err,
                RuntimeError::NotFound {
                    searched_path: false,
                    ..
                }
            ),
            "{err}"
        );
        let err = probe("x", &oci("crid-no-such-runtime".into()))
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("not found in PATH"), "{err}");
    }

    #[tokio::test]
    async fn probe_times_out_on_a_hung_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = script(dir.path(), "hung", "exec sleep 30");
        let started = std::time::Instant::now();
        let err = probe_within("hung", &oci(bin), Duration::from_millis(300))
            .await
            .expect_err("must time out");
        assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
        // kill_on_drop reaps the child: the probe must not wait for the 30 s sleep.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn non_executable_file_is_not_a_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("plain");
        std::fs::write(&p, "x").expect("write");
        assert_eq!(resolve_binary(&p), None);
    }
}

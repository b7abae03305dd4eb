//! Starting a shim binary as containerd does, and the `delete` that cleans up after a shim
//! that died: `<shim> -namespace NS -address ADDR -publish-binary BIN -id ID start` with the
//! bundle as working directory, which prints the ttrpc address of the (new or existing)
//! shim process and exits.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::runtime::RuntimeError;
use crate::runtime::invoke::{self, Capture};

/// How much of a shim command's output is kept.
const OUTPUT_CAP: usize = 64 * 1024;

/// The ttrpc task service a shim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TaskApi {
    /// `containerd.task.v2.Task`: shims that print a bare `unix://` address.
    V2,
    /// `containerd.task.v3.Task`: shims that print `{"version": 3, ...}` (containerd 2).
    V3,
}

impl TaskApi {
    /// The ttrpc service name.
    pub fn service(self) -> &'static str {
        match self {
            TaskApi::V2 => "containerd.task.v2.Task",
            TaskApi::V3 => "containerd.task.v3.Task",
        }
    }
}

/// Where a shim serves its task API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShimAddress {
    /// `unix:///run/containerd/s/...` as the shim printed it.
    pub address: String,
    /// Which task service it serves there.
    pub api: TaskApi,
}

/// The output of `start`: a bare address (task API v2), or the bootstrap JSON of newer
/// shims, `{"version": 3, "address": "unix://...", "protocol": "ttrpc"}`.
pub fn parse_address(stdout: &str) -> Result<ShimAddress, String> {
    let text = stdout.trim();
    if text.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Bootstrap {
            version: u32,
            address: String,
            #[serde(default)]
            protocol: String,
        }
        let b: Bootstrap =
            serde_json::from_str(text).map_err(|e| format!("bad bootstrap JSON {text:?}: {e}"))?;
        if !b.protocol.is_empty() && b.protocol != "ttrpc" {
            return Err(format!(
                "the shim speaks {}; crid speaks only ttrpc",
                b.protocol
            ));
        }
        let api = match b.version {
            2 => TaskApi::V2,
            3 => TaskApi::V3,
            v => return Err(format!("unknown shim bootstrap version {v}")),
        };
        return check_scheme(b.address, api);
    }
    check_scheme(text.to_owned(), TaskApi::V2)
}

fn check_scheme(address: String, api: TaskApi) -> Result<ShimAddress, String> {
    if address.starts_with("unix://") || address.starts_with("vsock://") {
        Ok(ShimAddress { address, api })
    } else {
        Err(format!("not a ttrpc address: {address:?}"))
    }
}

/// What every invocation of one handler's shim binary shares.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// Handler name, for errors.
    pub handler: String,
    /// The shim binary.
    pub binary: PathBuf,
    /// The containerd namespace passed to the shim.
    pub namespace: String,
    /// The `-address` passed to the shim; crid serves the events API at its `.ttrpc`
    /// sibling (exits come from the task API's Wait).
    pub address: PathBuf,
    /// The `-publish-binary` passed to the shim.
    pub publish_binary: PathBuf,
    /// Bound on `start` and `delete`.
    pub timeout: Duration,
}

impl Launcher {
    /// The arguments of `action` for container `id`, as containerd passes them.
    pub fn args(&self, id: &str, bundle: &Path, action: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "-namespace".into(),
            self.namespace.clone().into(),
            "-address".into(),
            self.address.clone().into(),
            "-publish-binary".into(),
            self.publish_binary.clone().into(),
            "-id".into(),
            id.into(),
        ];
        if action == "delete" {
            a.extend(["-bundle".into(), bundle.into()]);
        }
        a.push(action.into());
        a
    }

    /// containerd's ttrpc address beside its gRPC one: where shims post events.
    pub fn ttrpc_address(&self) -> PathBuf {
        ttrpc_address(&self.address).into()
    }

    fn command(&self, id: &str, bundle: &Path, action: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(id, bundle, action))
            .current_dir(bundle)
            // Go's exec sets PWD with the working directory, so containerd's shims see it.
            .env("PWD", bundle)
            .env("GOMAXPROCS", "2")
            .env("TTRPC_ADDRESS", ttrpc_address(&self.address))
            .env("GRPC_ADDRESS", &self.address)
            .env("NAMESPACE", &self.namespace);
        cmd
    }

    async fn run(
        &self,
        id: &str,
        bundle: &Path,
        action: &'static str,
    ) -> Result<Vec<u8>, RuntimeError> {
        let cmd = self.command(id, bundle, action);
        tracing::debug!(handler = %self.handler, id, action, "shim command");
        let out = match invoke::run(cmd, Capture::Pipes, OUTPUT_CAP, self.timeout).await {
            Ok(Some(out)) => out,
            Ok(None) => {
                return Err(RuntimeError::Timeout {
                    handler: self.handler.clone(),
                    binary: self.binary.clone(),
                    command: action.into(),
                    id: Some(id.to_owned()),
                    timeout: self.timeout,
                });
            }
            Err(source) => {
                return Err(RuntimeError::Io {
                    handler: self.handler.clone(),
                    command: action,
                    id: id.to_owned(),
                    source,
                });
            }
        };
        if !out.status.success() {
            return Err(RuntimeError::Command {
                handler: self.handler.clone(),
                command: action,
                id: id.to_owned(),
                status: out.status.to_string(),
                stderr: invoke::stderr_text(&out.stderr),
            });
        }
        Ok(out.stdout)
    }

    /// `start`: the address of the shim that will serve container `id`.
    pub async fn start(&self, id: &str, bundle: &Path) -> Result<ShimAddress, RuntimeError> {
        let stdout = self.run(id, bundle, "start").await?;
        parse_address(&String::from_utf8_lossy(&stdout)).map_err(|reason| RuntimeError::BadOutput {
            handler: self.handler.clone(),
            command: "start",
            id: id.to_owned(),
            reason,
        })
    }

    /// `delete`: the shim binary cleans up container `id` after its shim process died
    /// (kills what is left, unmounts, removes the runtime's state).
    pub async fn delete(&self, id: &str, bundle: &Path) -> Result<(), RuntimeError> {
        self.run(id, bundle, "delete").await.map(drop)
    }
}

/// containerd's ttrpc address beside its gRPC one.
fn ttrpc_address(address: &Path) -> OsString {
    let mut a = address.as_os_str().to_owned();
    a.push(".ttrpc");
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_old_and_new_shims() {
        assert_eq!(
            parse_address("unix:///run/containerd/s/abc").expect("v2"),
            ShimAddress {
                address: "unix:///run/containerd/s/abc".into(),
                api: TaskApi::V2
            }
        );
        assert_eq!(
            parse_address("{\"version\":3,\"address\":\"unix:///s/x\",\"protocol\":\"ttrpc\"}\n")
                .expect("v3"),
            ShimAddress {
                address: "unix:///s/x".into(),
                api: TaskApi::V3
            }
        );
        assert!(
            parse_address("{\"version\":3,\"address\":\"unix:///s/x\",\"protocol\":\"grpc\"}")
                .is_err()
        );
        assert!(parse_address("{\"version\":9,\"address\":\"unix:///s/x\"}").is_err());
        assert!(parse_address("").is_err());
        assert!(parse_address("/run/x.sock").is_err());
        assert_eq!(TaskApi::V3.service(), "containerd.task.v3.Task");
    }

    #[test]
    fn arguments_are_containerds() {
        let l = Launcher {
            handler: "shim".into(),
            binary: "/usr/bin/containerd-shim-runc-v2".into(),
            namespace: "crid".into(),
            address: "/run/crid/shim/containerd.sock".into(),
            publish_binary: "/bin/true".into(),
            timeout: Duration::from_secs(1),
        };
        let args: Vec<String> = l
            .args("c1", Path::new("/b"), "start")
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-namespace",
                "crid",
                "-address",
                "/run/crid/shim/containerd.sock",
                "-publish-binary",
                "/bin/true",
                "-id",
                "c1",
                "start"
            ]
        );
        let delete = l.args("c1", Path::new("/b"), "delete");
        assert_eq!(
            delete[delete.len() - 3..],
            ["-bundle".into(), OsString::from("/b"), "delete".into()] as [OsString; 3]
        );
        assert_eq!(
            ttrpc_address(Path::new("/a.sock")),
            OsString::from("/a.sock.ttrpc")
        );
    }
}

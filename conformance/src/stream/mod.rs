//! A client of CRI streaming servers (the URLs Exec, Attach and PortForward return), over
//! both wire protocols kubelet clients use: WebSocket ([`websocket`]) and SPDY/3.1
//! ([`spdy`]). It knows only the Kubernetes protocols, nothing of any runtime, so it judges
//! crid and containerd alike.

pub mod spdy;
pub mod websocket;

use std::time::Duration;

/// What a client sends and asks for in an exec.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Sent on stdin (a stdin stream is opened when set).
    pub stdin: Option<Vec<u8>>,
    /// Close stdin after sending it (v5 close signal / SPDY FIN).
    pub close_stdin: bool,
    /// Ask for stderr (ignored with a terminal).
    pub stderr: bool,
    /// A terminal, with this initial size (columns, rows).
    pub tty: Option<(u16, u16)>,
}

/// What came back from an exec.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// stdout (or the terminal's output).
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: Vec<u8>,
    /// The raw error-stream content (a Status in v4 and later).
    pub status: String,
}

impl ExecOutput {
    /// The exit code the status carries: 0 for Success, the ExitCode cause of a
    /// NonZeroExitCode; `None` when the status says something else.
    pub fn exit_code(&self) -> Option<i32> {
        let v: serde_json::Value = serde_json::from_str(&self.status).ok()?;
        if v["status"] == "Success" {
            return Some(0);
        }
        if v["reason"] != "NonZeroExitCode" {
            return None;
        }
        v["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

/// How long a whole session may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// `host:port` and the request target of an `http://` URL (or a path, relative to
/// `base`).
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// streaming URLs are supported"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((host.to_owned(), format!("/{path}")))
}

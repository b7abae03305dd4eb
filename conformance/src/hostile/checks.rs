//! Checks around the requests: the socket's mode, the canary that traversals aim at, the
//! daemon's log.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use super::report::cut;
use super::streams::Check;

/// cri:api.proto#socket: the socket is not open to every local user (0660 or stricter).
pub fn socket_check(endpoint: &str) -> Check {
    let name = "daemon:socket-mode";
    let path = match crid_api::client::socket_path(endpoint) {
        Ok(p) => p,
        Err(e) => {
            return Check {
                name,
                passed: false,
                detail: e.to_string(),
            };
        }
    };
    match std::fs::metadata(&path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            Check {
                name,
                passed: m.file_type().is_socket() && mode & !0o660 == 0,
                detail: format!("{} mode {mode:04o}", path.display()),
            }
        }
        Err(e) => Check {
            name,
            passed: false,
            detail: format!("{}: {e}", path.display()),
        },
    }
}

/// The directories of the run: the canary traversals aim at, a mount source, the pods'
/// logs. Removed on drop.
pub struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    /// Creates them, with the canary's victim file.
    pub fn new() -> Result<Dirs, String> {
        let root = tempfile::Builder::new()
            .prefix("crid-hostile.")
            .tempdir()
            .map_err(|e| format!("creating the run's directory: {e}"))?;
        for d in ["canary", "mount", "logs"] {
            std::fs::create_dir(root.path().join(d)).map_err(|e| format!("creating {d}: {e}"))?;
        }
        std::fs::write(root.path().join("canary/victim"), b"untouched")
            .map_err(|e| format!("writing the canary: {e}"))?;
        Ok(Dirs { root })
    }

    /// The path of `d` (`canary`, `mount`, `logs`).
    pub fn path(&self, d: &str) -> String {
        self.root.path().join(d).display().to_string()
    }

    /// The victim file is still there, unchanged.
    pub fn canary_check(&self) -> Check {
        let victim = self.root.path().join("canary/victim");
        let content = std::fs::read(&victim);
        Check {
            name: "daemon:canary-intact",
            passed: matches!(&content, Ok(c) if c == b"untouched"),
            detail: match content {
                Ok(c) => format!("{}: {} bytes", victim.display(), c.len()),
                Err(e) => format!("{}: {e}", victim.display()),
            },
        }
    }
}

/// The daemon's log holds no panic.
pub fn log_check(path: &Path) -> Check {
    let name = "daemon:no-panic";
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let panics: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("panicked") || l.contains("fatal runtime error"))
                .collect();
            Check {
                name,
                passed: panics.is_empty(),
                detail: match panics.first() {
                    None => format!(
                        "{}: no panic in {} lines",
                        path.display(),
                        text.lines().count()
                    ),
                    Some(first) => format!("{} panics, first: {}", panics.len(), cut(first, 300)),
                },
            }
        }
        Err(e) => Check {
            name,
            passed: false,
            detail: format!("{}: {e}", path.display()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_log_fails_and_a_world_writable_socket_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("crid.log");
        std::fs::write(&log, "INFO serving\n").expect("write");
        assert!(log_check(&log).passed);
        std::fs::write(&log, "thread 'tokio' panicked at src/x.rs:1:1\n").expect("write");
        assert!(!log_check(&log).passed);
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let endpoint = format!("unix://{}", sock.display());
        assert!(!socket_check(&endpoint).passed);
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).expect("chmod");
        assert!(socket_check(&endpoint).passed);
    }
}

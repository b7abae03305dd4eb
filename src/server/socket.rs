//! The CRI unix socket: exclusive ownership, stale-socket replacement, cleanup.
//!
//! Ownership is an exclusive `flock` on `<socket>.lock`, held for the daemon's lifetime, so a
//! second crid on the same path is refused even before it touches the socket. A socket file
//! that no live crid owns is stale and replaced, unless something else still accepts
//! connections on it (another runtime), which is refused rather than stolen.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

/// Mode of the socket: root and the socket's group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The parent directory could not be created.
    #[error("cannot create socket directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The lock file could not be opened or locked for a reason other than contention.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another crid holds the lock.
    #[error("another crid is already serving on {socket} (it holds {lock}{})", .pid.map(|p| format!(", pid {p}")).unwrap_or_default())]
    Locked {
        /// The socket.
        socket: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid as it recorded it.
        pid: Option<u32>,
    },
    /// A different program accepts connections on the socket.
    #[error(
        "{socket} is in use by another process that accepts connections on it; refusing to replace it"
    )]
    InUse {
        /// The socket.
        socket: PathBuf,
    },
    /// The path exists and is not a socket.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding or preparing the socket failed.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A bound, owned CRI socket. Dropping it removes the socket and the lock file.
#[derive(Debug)]
pub struct OwnedSocket {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: Flock<File>,
    listener: Option<tokio::net::UnixListener>,
}

impl OwnedSocket {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the listener to the server; the ownership (lock, cleanup) stays here.
    pub fn take_listener(&mut self) -> Option<tokio::net::UnixListener> {
        self.listener.take()
    }
}

impl Drop for OwnedSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // The lock file goes last, while the flock is still held.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Takes ownership of `path` and listens on it. Must run inside a tokio runtime.
pub fn bind(path: &Path) -> Result<OwnedSocket, SocketError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|source| SocketError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }

    let lock_path = lock_path_for(path);
    let lock = acquire_lock(path, &lock_path)?;

    match listen(path) {
        Ok(listener) => Ok(OwnedSocket {
            path: path.to_path_buf(),
            lock_path,
            _lock: lock,
            listener: Some(listener),
        }),
        Err(e) => {
            // We own the lock file: remove it (while still locked) so a failure leaves nothing.
            let _ = std::fs::remove_file(&lock_path);
            Err(e)
        }
    }
}

/// Replaces a stale socket and binds a fresh one with [`SOCKET_MODE`]. Caller holds the lock.
fn listen(path: &Path) -> Result<tokio::net::UnixListener, SocketError> {
    let bind_err = |source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    socket: path.to_path_buf(),
                });
            }
            tracing::info!(socket = %path.display(), "replacing stale socket");
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(bind_err(source)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    if let Err(source) =
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
    {
        let _ = std::fs::remove_file(path);
        return Err(bind_err(source));
    }
    Ok(listener)
}

fn lock_path_for(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    socket.with_file_name(name)
}

fn acquire_lock(socket: &Path, lock_path: &Path) -> Result<Flock<File>, SocketError> {
    let lock_err = |source| SocketError::Lock {
        path: lock_path.to_path_buf(),
        source,
    };
    // The lock records our pid so a refused second daemon can name us.
    crate::state::lock_exclusive(lock_path)
        .map_err(lock_err)?
        .map_err(|pid| SocketError::Locked {
            socket: socket.to_path_buf(),
            lock: lock_path.to_path_buf(),
            pid,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_owner_is_refused_and_names_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("sub/dir/crid.sock");
        let first = bind(&sock).expect("first bind");
        let mode = std::fs::metadata(&sock).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        match bind(&sock) {
            Err(SocketError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        assert!(!sock.exists(), "socket removed on drop");
        assert!(!lock_path_for(&sock).exists(), "lock file removed on drop");
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("crid.sock");
        // A socket file nobody listens on: what a kill -9 leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
        assert!(sock.exists());
        let owned = bind(&sock).expect("replace stale socket");
        assert_eq!(owned.path(), sock);
    }

    #[tokio::test]
    async fn live_foreign_socket_is_not_stolen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("other.sock");
        let _other = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert!(matches!(bind(&sock), Err(SocketError::InUse { .. })));
        assert!(sock.exists(), "the other program's socket is left alone");
        assert!(
            !lock_path_for(&sock).exists(),
            "a failed bind leaves no lock file"
        );
    }

    #[tokio::test]
    async fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crid.sock");
        std::fs::write(&path, "data").expect("write");
        assert!(matches!(bind(&path), Err(SocketError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "data");
    }
}

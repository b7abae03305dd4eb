//! Who may reach crid's directories.
//!
//! Image layers keep their setuid files and device nodes as the image has them, and
//! container root filesystems are mounted below the runroot: a user who can walk into any
//! of them can run a setuid-root binary from an image or write to a device node. So every
//! directory that holds image or container content is `0700`, and the two roots above
//! them are at most `0711` (others may pass through to the socket directory, never list).
//! [`secure_dir`] creates such a directory or repairs an existing one; [`mode_problem`] is
//! its read-only twin for `crid check`.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// How far other users may reach into a directory crid owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `0700`: nobody but root. Every directory that holds content.
    Private,
    /// At most `0711`: others may traverse (to a socket below) but not list or write.
    Traverse,
}

impl Access {
    /// Group and other permission bits this access allows.
    fn allowed(self) -> u32 {
        match self {
            Access::Private => 0,
            Access::Traverse => 0o011,
        }
    }

    /// The mode a directory gets when crid creates it.
    fn create_mode(self) -> u32 {
        0o700 | self.allowed()
    }
}

/// A directory whose mode allowed more than its [`Access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Its mode before (permission bits only).
    pub was: u32,
    /// Its mode after.
    pub now: u32,
}

/// The mode `mode` should have under `access`, or `None` when it already complies.
pub fn tightened(mode: u32, access: Access) -> Option<u32> {
    let excess = mode & 0o077 & !access.allowed();
    // setgid on a directory would make new entries inherit a group: drop it too.
    let excess = excess | (mode & 0o2000);
    (excess != 0).then_some(mode & 0o7777 & !excess)
}

/// Creates `path` (missing parents get the same mode) or, when it exists, removes the permission
/// bits `access` does not allow, logging what was repaired. Symlinks to a directory are
/// followed: an administrator may put the storage on another disk that way.
pub fn secure_dir(path: &Path, access: Access) -> io::Result<Option<Repair>> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(access.create_mode())
        .create(path)
    {
        Ok(()) => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", path.display()),
        ));
    }
    let was = meta.permissions().mode() & 0o7777;
    let Some(now) = tightened(was, access) else {
        return Ok(None);
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(now))
        .map_err(|e| io::Error::new(e.kind(), format!("chmod {}: {e}", path.display())))?;
    tracing::info!(
        path = %path.display(),
        was = format!("{was:04o}"),
        now = format!("{now:04o}"),
        "repaired the mode of a crid directory other users could reach"
    );
    Ok(Some(Repair { was, now }))
}

/// What is wrong with an existing directory's mode under `access` (`Ok(None)`: nothing,
/// or it does not exist yet and will be created right).
pub fn mode_problem(path: &Path, access: Access) -> io::Result<Option<Repair>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let was = meta.permissions().mode() & 0o7777;
    Ok(tightened(was, access).map(|now| Repair { was, now }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightening_removes_only_what_the_access_forbids() {
        assert_eq!(tightened(0o755, Access::Private), Some(0o700));
        assert_eq!(tightened(0o700, Access::Private), None);
        assert_eq!(tightened(0o711, Access::Private), Some(0o700));
        assert_eq!(tightened(0o755, Access::Traverse), Some(0o711));
        assert_eq!(tightened(0o711, Access::Traverse), None);
        assert_eq!(tightened(0o701, Access::Traverse), None);
        assert_eq!(tightened(0o1777, Access::Traverse), Some(0o1711));
        assert_eq!(tightened(0o2700, Access::Private), Some(0o700));
        // Owner bits are the owner's business.
        assert_eq!(tightened(0o500, Access::Private), None);
    }

    #[test]
    fn creates_private_and_repairs_an_open_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("a/b");
        assert_eq!(secure_dir(&fresh, Access::Private).expect("create"), None);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&fresh), 0o700);

        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(
            mode_problem(&open, Access::Traverse).expect("check"),
            Some(Repair {
                was: 0o777,
                now: 0o711
            })
        );
        assert_eq!(
            secure_dir(&open, Access::Traverse).expect("repair"),
            Some(Repair {
                was: 0o777,
                now: 0o711
            })
        );
        assert_eq!(mode(&open), 0o711);
        assert_eq!(mode_problem(&open, Access::Traverse).expect("check"), None);
        assert_eq!(
            mode_problem(&dir.path().join("absent"), Access::Private).expect("check"),
            None
        );

        let file = dir.path().join("file");
        std::fs::write(&file, b"").expect("write");
        assert!(secure_dir(&file, Access::Private).is_err());
    }
}

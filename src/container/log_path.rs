//! Where a container's CRI log goes: its pod's `log_directory` joined with its `log_path`
//! (cri:ContainerConfig#log_path). The kubelet sends `<container>/<restarts>.log`; anything
//! that could leave the directory (absolute, `..`, a symlink below it) is refused, since
//! crid creates and appends to the file as root.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const FIELD: &str = "config.log_path";

/// Checks `log_path` on its own: relative, no `..`, no NUL, names a file.
pub fn check(log_path: &str) -> std::result::Result<(), String> {
    if log_path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let path = Path::new(log_path);
    if path.is_absolute() {
        return Err(format!(
            "`{log_path}` is absolute; it must be relative to the pod's log_directory"
        ));
    }
    let mut names = 0;
    for c in path.components() {
        match c {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "`{log_path}` contains `..`; it must stay inside the pod's log_directory"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{log_path}` is not a relative path"));
            }
        }
    }
    if names == 0 || log_path.ends_with('/') {
        return Err(format!("`{log_path}` does not name a file"));
    }
    Ok(())
}

/// The container's log file, created (with missing directories) inside `log_directory`
/// without following a symlink below it; `None` when the pod or the container asks for no
/// log. A symlink in the way is the caller's mistake or an attack: InvalidArgument.
pub fn create(log_directory: &str, log_path: &str) -> Result<Option<PathBuf>> {
    if log_directory.is_empty() || log_path.is_empty() {
        return Ok(None);
    }
    check(log_path).map_err(|reason| Error::invalid(FIELD, reason))?;
    let dir = Path::new(log_directory);
    std::fs::create_dir_all(dir).map_err(Error::host(format!(
        "creating the log directory {log_directory}"
    )))?;
    match crate::storage::create_beneath(dir, Path::new(log_path)) {
        Ok(_) => Ok(Some(dir.join(log_path))),
        // A symlink as a directory is ENOTDIR (O_DIRECTORY|O_NOFOLLOW), as the file ELOOP.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::EXDEV | libc::ENOTDIR)
            ) =>
        {
            Err(Error::invalid(
                FIELD,
                format!(
                    "`{log_path}` goes through a symlink or a non-directory inside {log_directory}; it could lead outside"
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            Err(Error::invalid(FIELD, format!("`{log_path}`: {e}")))
        }
        Err(e) => Err(Error::host(format!(
            "creating the log file {log_path} in {log_directory}"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_pass_and_escapes_are_refused() {
        for ok in ["c/0.log", "c.log", "./c/1.log", "a/b/c.log"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/etc/cron.d/x",
            "../../etc/cron.d/x",
            "c/../../x",
            "c/..",
            ".",
            "c/",
            "a\0b",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_symlink_inside_the_directory_is_refused_and_nothing_is_written_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("pods");
        let outside = dir.path().join("etc");
        std::fs::create_dir_all(&logs).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, logs.join("c")).expect("symlink");
        let d = logs.to_str().expect("utf-8");
        let err = create(d, "c/0.log").expect_err("through a symlink");
        assert!(err.to_string().starts_with("config.log_path: "), "{err}");
        assert!(matches!(err, Error::InvalidArgument { .. }));
        let err = create(d, "../etc/x").expect_err("dot-dot");
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);

        let made = create(d, "real/0.log").expect("create").expect("a path");
        assert_eq!(made, logs.join("real/0.log"));
        assert!(made.is_file());
        assert_eq!(create("", "c/0.log").expect("no dir"), None);
    }
}

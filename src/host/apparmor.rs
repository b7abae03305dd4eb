//! AppArmor on this host: whether the kernel enforces it, which profiles are loaded, and
//! loading crid's own default profile with `apparmor_parser`.
//!
//! crid counts a host as an AppArmor host when the kernel module says `Y`, securityfs shows
//! the loaded profiles, and `apparmor_parser` is there to load `crid-default`; containerd
//! and CRI-O decide the same way. Which profile a request asks for is decided by the pure
//! `crate::spec::apparmor`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The kernel module's switch: `Y` when AppArmor is the active LSM and enabled.
const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// The loaded profiles, one `name (mode)` a line.
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// Where `apparmor_parser` is looked for after `PATH` (Debian installs it in /sbin).
const PARSER_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];
/// How long one `apparmor_parser` run may take (under emulation it takes a few seconds).
const PARSER_LIMIT: Duration = Duration::from_secs(60);

/// Whether this host enforces AppArmor profiles, probed once at start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Support {
    /// The kernel enforces profiles, and this parser loads crid's.
    Enabled {
        /// `apparmor_parser`.
        parser: PathBuf,
    },
    /// Containers run without AppArmor; the reason says why.
    Disabled {
        /// What is missing.
        reason: String,
    },
}

impl Support {
    /// Whether containers get AppArmor profiles here.
    pub fn enforces(&self) -> bool {
        matches!(self, Support::Enabled { .. })
    }
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Support::Enabled { parser } => write!(f, "enabled (parser {})", parser.display()),
            Support::Disabled { reason } => write!(f, "not used: {reason}"),
        }
    }
}

/// Why a profile could not be checked or loaded.
#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    /// The loaded profiles could not be read.
    #[error("reading {PROFILES}: {0}")]
    Profiles(#[source] io::Error),
    /// `apparmor_parser` could not be run.
    #[error("running {parser}: {source}")]
    Spawn {
        /// The parser.
        parser: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `apparmor_parser` refused the profile or failed.
    #[error("{parser} -Kr refused AppArmor profile {profile} ({status}): {stderr}")]
    Parser {
        /// The parser.
        parser: PathBuf,
        /// The profile's name.
        profile: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `apparmor_parser` did not finish in time and was killed.
    #[error("{parser} did not finish loading AppArmor profile {profile} within {PARSER_LIMIT:?}")]
    Timeout {
        /// The parser.
        parser: PathBuf,
        /// The profile's name.
        profile: String,
    },
    /// The parser succeeded, yet the kernel does not list the profile.
    #[error("AppArmor profile {0} is not listed in {PROFILES} after loading it")]
    NotListed(String),
}

/// Probes this host (see [`Support`]).
pub fn probe() -> Support {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(PARSER_DIRS.iter().map(PathBuf::from));
    probe_at(Path::new(ENABLED), Path::new(PROFILES), &dirs)
}

fn probe_at(enabled: &Path, profiles: &Path, parser_dirs: &[PathBuf]) -> Support {
    let disabled = |reason: String| Support::Disabled { reason };
    match std::fs::read_to_string(enabled) {
        Ok(v) if v.trim() == "Y" => {}
        Ok(v) => {
            return disabled(format!(
                "the kernel's AppArmor is off ({} is {:?})",
                enabled.display(),
                v.trim()
            ));
        }
        Err(e) => {
            return disabled(format!(
                "the kernel has no AppArmor ({}: {e})",
                enabled.display()
            ));
        }
    }
    if !profiles.exists() {
        return disabled(format!(
            "{} is missing (securityfs not mounted)",
            profiles.display()
        ));
    }
    match parser_dirs
        .iter()
        .map(|d| d.join("apparmor_parser"))
        .find(|p| is_executable(p))
    {
        Some(parser) => Support::Enabled { parser },
        None => disabled("AppArmor is enabled, but apparmor_parser is not installed".into()),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The mode (`enforce`, `complain`, ...) of profile `name` when it is loaded.
pub fn loaded(name: &str) -> Result<Option<String>, AppArmorError> {
    let text = std::fs::read_to_string(PROFILES).map_err(AppArmorError::Profiles)?;
    Ok(mode_of(&text, name))
}

/// The mode of `name` in the text of the kernel's profile list (`name (mode)` lines; a
/// name may hold spaces, the mode never does).
fn mode_of(profiles: &str, name: &str) -> Option<String> {
    profiles.lines().find_map(|line| {
        let (n, mode) = line.rsplit_once(" (")?;
        (n == name).then(|| mode.trim_end_matches(')').to_owned())
    })
}

/// Loads profile `name` from `text` with `parser -Kr` (replace, bypass the cache) unless the
/// kernel lists it already. Blocks: call it off the async workers.
pub fn ensure_loaded(parser: &Path, name: &str, text: &str) -> Result<(), AppArmorError> {
    if loaded(name)?.is_some() {
        return Ok(());
    }
    load(parser, name, text)?;
    match loaded(name)? {
        Some(mode) => {
            tracing::info!(profile = name, mode, "AppArmor profile loaded");
            Ok(())
        }
        None => Err(AppArmorError::NotListed(name.to_owned())),
    }
}

fn load(parser: &Path, name: &str, text: &str) -> Result<(), AppArmorError> {
    let spawn_err = |source| AppArmorError::Spawn {
        parser: parser.to_owned(),
        source,
    };
    let mut child = Command::new(parser)
        .arg("-Kr")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A parser that dies early closes its stdin; its exit status tells why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(status) => break status,
            None if started.elapsed() > PARSER_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AppArmorError::Timeout {
                    parser: parser.to_owned(),
                    profile: name.to_owned(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    Err(AppArmorError::Parser {
        parser: parser.to_owned(),
        profile: name.to_owned(),
        status: status.to_string(),
        stderr: stderr.trim().chars().take(2000).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn the_probe_needs_the_module_securityfs_and_the_parser() {
        let root = tempfile::tempdir().expect("tempdir");
        let enabled = root.path().join("enabled");
        let profiles = root.path().join("profiles");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let dirs = [root.path().join("nowhere"), bin.clone()];

        let no_module = probe_at(&enabled, &profiles, &dirs);
        assert!(
            matches!(&no_module, Support::Disabled { reason } if reason.contains("no AppArmor")),
            "{no_module:?}"
        );
        std::fs::write(&enabled, "N\n").expect("write");
        let off = probe_at(&enabled, &profiles, &dirs);
        assert!(
            matches!(&off, Support::Disabled { reason } if reason.contains("\"N\"")),
            "{off:?}"
        );
        std::fs::write(&enabled, "Y\n").expect("write");
        let no_fs = probe_at(&enabled, &profiles, &dirs);
        assert!(
            matches!(&no_fs, Support::Disabled { reason } if reason.contains("securityfs")),
            "{no_fs:?}"
        );
        std::fs::write(&profiles, "").expect("write");
        let no_parser = probe_at(&enabled, &profiles, &dirs);
        assert!(
            matches!(&no_parser, Support::Disabled { reason } if reason.contains("apparmor_parser")),
            "{no_parser:?}"
        );
        // A file that is not executable does not count.
        std::fs::write(bin.join("apparmor_parser"), "").expect("write");
        assert!(!probe_at(&enabled, &profiles, &dirs).enforces());
        executable(&bin.join("apparmor_parser"));
        assert_eq!(
            probe_at(&enabled, &profiles, &dirs),
            Support::Enabled {
                parser: bin.join("apparmor_parser")
            }
        );
    }

    #[test]
    fn modes_are_read_from_the_kernels_list() {
        let list = "crid-default (enforce)\n/usr/bin/man (complain)\nname with space (enforce)\n\
                    crid-default-x (kill)\n";
        assert_eq!(mode_of(list, "crid-default").as_deref(), Some("enforce"));
        assert_eq!(mode_of(list, "/usr/bin/man").as_deref(), Some("complain"));
        assert_eq!(mode_of(list, "name with space").as_deref(), Some("enforce"));
        assert_eq!(mode_of(list, "crid"), None, "no prefix match");
        assert_eq!(mode_of("", "crid-default"), None);
    }

    #[test]
    fn a_failing_parser_is_reported_with_its_stderr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parser = dir.path().join("apparmor_parser");
        std::fs::write(
            &parser,
            "#!/bin/sh\ncat >/dev/null\necho 'syntax error at line 3' >&2\nexit 1\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&parser, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = load(&parser, "p", "profile p {}\n").expect_err("parser fails");
        let text = err.to_string();
        assert!(text.contains("syntax error at line 3"), "{text}");
        assert!(text.contains("-Kr refused AppArmor profile p"), "{text}");
    }

    /// Needs `apparmor_parser` (Debian package apparmor, which scripts/setup.sh installs),
    /// not the kernel side: compiling a profile loads nothing.
    #[test]
    fn crid_default_compiles_with_apparmor_parser() {
        let Some(parser) = PARSER_DIRS
            .iter()
            .map(|d| Path::new(d).join("apparmor_parser"))
            .find(|p| is_executable(p))
        else {
            panic!("apparmor_parser is not installed: run scripts/setup.sh (package apparmor)");
        };
        // -Q: compile only, never load into the kernel; -K: no cache.
        let mut child = Command::new(&parser)
            .args(["-QK"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn apparmor_parser");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(crate::spec::apparmor::default_profile_text().as_bytes())
            .expect("write profile");
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", out.status);
    }

    #[test]
    fn the_probe_agrees_with_this_host() {
        let kernel = std::fs::read_to_string(ENABLED).is_ok_and(|v| v.trim() == "Y");
        if !kernel {
            assert!(!probe().enforces(), "{}", probe());
        }
    }
}

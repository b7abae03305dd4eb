//! Reading and layering configuration sources.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    Config, ConfigError, DEFAULT_CONFIG_DIR, DEFAULT_CONFIG_FILE, LogLevel, Problem, Source,
};

/// Values given on the command line; each overrides the TOML key of the same meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` → `server.listen`.
    pub listen: Option<PathBuf>,
    /// `--root` → `storage.root`.
    pub root: Option<PathBuf>,
    /// `--runroot` → `storage.runroot`.
    pub runroot: Option<PathBuf>,
    /// `--log-level` → `server.log_level`.
    pub log_level: Option<LogLevel>,
}

/// Which files to read and what to override.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config`: when given, the file must exist; otherwise the default path is optional.
    pub config_file: Option<PathBuf>,
    /// `--config-dir`: when given, the directory must exist; otherwise it is optional.
    pub config_dir: Option<PathBuf>,
    /// Command-line flags.
    pub overrides: Overrides,
}

/// Which source last set each leaf key (dotted path).
pub(super) type Origins = BTreeMap<String, Source>;

/// Loads the effective configuration: defaults, main file, drop-ins, flags; then validates.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
    let mut merged = toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Syntax {
        path: PathBuf::from("<defaults>"),
        message: e.to_string(),
    })?;
    let mut origins = Origins::new();
    let mut problems = Vec::new();

    for path in source_files(opts)? {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let source = Source::File(path);
        let mut candidate = merged.clone();
        merge(&mut candidate, table, "", &source, &mut origins);
        // Check after each file, so that a problem is blamed on the file that brought it.
        match decode(&candidate) {
            Ok(_) => merged = candidate,
            Err((key, reason)) => problems.push(Problem {
                source,
                key,
                reason,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }

    let mut config = decode(&merged).map_err(|(key, reason)| {
        ConfigError::Invalid(vec![Problem {
            source: Source::Default,
            key,
            reason,
        }])
    })?;
    apply_overrides(&mut config, &opts.overrides, &mut origins);

    let problems = super::validate::check(&config, &origins);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The main file (when present or named) and the drop-ins, in the order they apply.
fn source_files(opts: &LoadOptions) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let (main, main_required) = match &opts.config_file {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    if main_required || main.exists() {
        files.push(main);
    }

    let (dir, dir_required) = match &opts.config_dir {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_DIR), false),
    };
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            let mut dropins = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConfigError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    dropins.push(path);
                }
            }
            // Lexical order by file name, later files win: 10-x.toml before 20-y.toml.
            dropins.sort();
            files.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir_required => {}
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    }
    Ok(files)
}

/// Deep-merges `src` into `dst`: tables merge key by key, anything else is replaced.
fn merge(
    dst: &mut toml::Table,
    src: toml::Table,
    prefix: &str,
    source: &Source,
    origins: &mut Origins,
) {
    for (key, value) in src {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (dst.get_mut(&key), value) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => {
                merge(d, s, &path, source, origins)
            }
            (_, toml::Value::Table(s)) => {
                let mut fresh = toml::Table::new();
                merge(&mut fresh, s, &path, source, origins);
                dst.insert(key, toml::Value::Table(fresh));
            }
            (_, value) => {
                origins.insert(path, source.clone());
                dst.insert(key, value);
            }
        }
    }
}

/// Decodes a merged table, or names the key that is wrong and why.
fn decode(table: &toml::Table) -> Result<Config, (String, String)> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        describe(&path, &message)
    })
}

/// Turns serde's wording into a key path and a reason a person can act on.
fn describe(path: &str, message: &str) -> (String, String) {
    let parent = if path == "." { "" } else { path };
    let join = |k: &str| {
        if parent == k || parent.ends_with(&format!(".{k}")) {
            parent.to_owned()
        } else if parent.is_empty() {
            k.to_owned()
        } else {
            format!("{parent}.{k}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let expected = expected.trim_start_matches(',').trim();
        return (join(field), format!("unknown key ({expected})"));
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return (join(field), "required key is missing".to_owned());
    }
    (parent.to_owned(), message.to_owned())
}

fn apply_overrides(config: &mut Config, o: &Overrides, origins: &mut Origins) {
    let mut set = |key: &str, flag: &'static str| {
        origins.insert(key.to_owned(), Source::Flag(flag));
    };
    if let Some(v) = &o.listen {
        config.server.listen = v.clone();
        set("server.listen", "--listen");
    }
    if let Some(v) = &o.root {
        config.storage.root = v.clone();
        set("storage.root", "--root");
    }
    if let Some(v) = &o.runroot {
        config.storage.runroot = v.clone();
        set("storage.runroot", "--runroot");
    }
    if let Some(v) = o.log_level {
        config.server.log_level = v;
        set("server.log_level", "--log-level");
    }
}

/// The source of a key: the exact key, else the nearest source that set something below it.
pub(super) fn origin_of(origins: &Origins, key: &str) -> Source {
    // Origins are recorded per TOML key: `a.b[0]` was set with `a.b`, `m."h:1"` as `m.h:1`.
    let key = key.split('[').next().unwrap_or(key).replace('"', "");
    let key = key.as_str();
    if let Some(s) = origins.get(key) {
        return s.clone();
    }
    let prefix = format!("{key}.");
    origins
        .iter()
        .rev()
        .find(|(k, _)| k.starts_with(&prefix))
        .map(|(_, s)| s.clone())
        .unwrap_or(Source::Default)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::config::{CgroupDriver, RuntimeKind};

    struct Dirs {
        _tmp: tempfile::TempDir,
        main: PathBuf,
        dropins: PathBuf,
    }

    fn dirs(main: Option<&str>, dropins: &[(&str, &str)]) -> Dirs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let main_path = tmp.path().join("crid.toml");
        if let Some(text) = main {
            fs::write(&main_path, text).expect("write main");
        }
        let dir = tmp.path().join("crid.d");
        fs::create_dir(&dir).expect("mkdir");
        for (name, text) in dropins {
            fs::write(dir.join(name), text).expect("write drop-in");
        }
        Dirs {
            main: main_path,
            dropins: dir,
            _tmp: tmp,
        }
    }

    fn opts(d: &Dirs) -> LoadOptions {
        LoadOptions {
            config_file: Some(d.main.clone()),
            config_dir: Some(d.dropins.clone()),
            overrides: Overrides::default(),
        }
    }

    fn problems(err: ConfigError) -> Vec<Problem> {
        match err {
            ConfigError::Invalid(p) => p,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let d = dirs(Some(""), &[]);
        assert_eq!(load(&opts(&d)).expect("load"), Config::default());
    }

    #[test]
    fn dropins_apply_in_lexical_order_and_merge_deeply() {
        let d = dirs(
            Some("[runtime]\ndefault_runtime = \"crun\"\ncgroup_driver = \"systemd\"\n"),
            &[
                ("20-b.toml", "[image]\npause_image = \"b/pause:1\"\n"),
                (
                    "10-a.toml",
                    "[image]\npause_image = \"a/pause:1\"\ninsecure_registries = [\"127.0.0.1:5000\"]\n",
                ),
                (
                    "30-kata.toml",
                    "[runtime.runtimes.kata]\npath = \"/usr/bin/containerd-shim-kata-v2\"\ntype = \"vm\"\n",
                ),
                (
                    "40-runsc.toml",
                    "[runtime.runtimes.runsc]\npath = \"runsc\"\nargs = [\"--platform=ptrace\"]\nalways_infra = true\n",
                ),
                ("ignored.conf", "this is not toml at all"),
            ],
        );
        let c = load(&opts(&d)).expect("load");
        let runsc = &c.runtime.runtimes["runsc"];
        assert_eq!(
            (runsc.args.as_slice(), runsc.always_infra),
            (["--platform=ptrace".to_owned()].as_slice(), true)
        );
        assert!(!c.runtime.runtimes["runc"].always_infra);
        assert_eq!(c.runtime.default_runtime, "crun");
        assert_eq!(c.runtime.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(c.image.pause_image, "b/pause:1", "later drop-in wins");
        assert_eq!(
            c.image.insecure_registries,
            ["127.0.0.1:5000"],
            "earlier keys survive"
        );
        assert_eq!(c.runtime.runtimes["kata"].kind, RuntimeKind::Vm);
        assert!(
            c.runtime.runtimes.contains_key("runc"),
            "default handlers stay"
        );
    }

    #[test]
    fn dropin_may_override_one_key_of_a_default_handler() {
        let d = dirs(
            None,
            &[(
                "10.toml",
                "[runtime.runtimes.runc]\nroot = \"/run/myrunc\"\n",
            )],
        );
        let mut o = opts(&d);
        o.config_file = None;
        let c = load(&o).expect("load");
        assert_eq!(
            c.runtime.runtimes["runc"].root.as_deref(),
            Some(Path::new("/run/myrunc"))
        );
        assert_eq!(c.runtime.runtimes["runc"].path, Path::new("runc"));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let d = dirs(
            Some("[runtime.runtimes.runc]\npth = \"/usr/bin/runc\"\n"),
            &[],
        );
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].source, Source::File(d.main.clone()));
        assert_eq!(p[0].key, "runtime.runtimes.runc.pth");
        assert!(p[0].reason.starts_with("unknown key"), "{}", p[0].reason);
    }

    #[test]
    fn bad_value_names_file_and_key() {
        let d = dirs(
            Some(""),
            &[(
                "50-x.toml",
                "[runtime.runtimes.runc]\ntype = \"container\"\n",
            )],
        );
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        assert_eq!(p[0].source, Source::File(d.dropins.join("50-x.toml")));
        assert_eq!(p[0].key, "runtime.runtimes.runc.type");
        assert!(p[0].reason.contains("container"), "{}", p[0].reason);
    }

    #[test]
    fn new_handler_without_path_is_rejected() {
        let d = dirs(Some("[runtime.runtimes.kata]\ntype = \"vm\"\n"), &[]);
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        assert_eq!(p[0].key, "runtime.runtimes.kata.path");
        assert_eq!(p[0].reason, "required key is missing");
    }

    #[test]
    fn handler_timeouts_are_bounded() {
        let d = dirs(
            Some(
                "[runtime.runtimes.kata]\npath = \"/bin/true\"\ntype = \"vm\"\ntimeout_secs = 0\n",
            ),
            &[],
        );
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        assert_eq!(p[0].key, "runtime.runtimes.kata.timeout_secs");
        assert!(p[0].reason.contains("1 to 3600"), "{}", p[0].reason);
        let d = dirs(
            Some(
                "[runtime.runtimes.kata]\npath = \"/bin/true\"\ntype = \"vm\"\ntimeout_secs = 120\n",
            ),
            &[],
        );
        let c = load(&opts(&d)).expect("valid");
        assert_eq!(c.runtime.runtimes["kata"].timeout_secs, Some(120));
    }

    #[test]
    fn semantic_problem_blames_the_source_that_set_it() {
        let d = dirs(
            Some("[runtime]\ndefault_runtime = \"nope\"\n"),
            &[("10.toml", "[image]\ninsecure_registries = [\"http://x\"]\n")],
        );
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        let keys: Vec<_> = p
            .iter()
            .map(|p| (p.key.as_str(), p.source.clone()))
            .collect();
        assert!(
            keys.contains(&("runtime.default_runtime", Source::File(d.main.clone()))),
            "{keys:?}"
        );
        assert!(
            keys.contains(&(
                "image.insecure_registries[0]",
                Source::File(d.dropins.join("10.toml"))
            )),
            "{keys:?}"
        );
    }

    #[test]
    fn flags_override_files_and_are_blamed_by_name() {
        let d = dirs(
            Some("[storage]\nroot = \"/var/lib/x\"\n[server]\nlog_level = \"debug\"\n"),
            &[],
        );
        let mut o = opts(&d);
        o.overrides = Overrides {
            listen: Some("/tmp/x.sock".into()),
            root: Some("/srv/crid".into()),
            runroot: Some("relative".into()),
            log_level: Some(LogLevel::Trace),
        };
        let p = problems(load(&o).expect_err("relative runroot must fail"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].key.as_str(), &p[0].source),
            ("storage.runroot", &Source::Flag("--runroot"))
        );

        o.overrides.runroot = Some("/run/x".into());
        let c = load(&o).expect("load");
        assert_eq!(c.storage.root, Path::new("/srv/crid"));
        assert_eq!(c.server.listen, Path::new("/tmp/x.sock"));
        assert_eq!(c.server.log_level, LogLevel::Trace);
    }

    #[test]
    fn mirror_problem_names_the_dropin() {
        let d = dirs(
            Some(""),
            &[(
                "10.toml",
                "[image.mirrors]\n\"registry.k8s.io\" = [\"ftp://127.0.0.1:5000\"]\n",
            )],
        );
        let p = problems(load(&opts(&d)).expect_err("must fail"));
        assert_eq!(p[0].key, "image.mirrors.\"registry.k8s.io\"[0]");
        assert_eq!(p[0].source, Source::File(d.dropins.join("10.toml")));
    }

    #[test]
    fn named_but_missing_file_is_an_error() {
        let d = dirs(None, &[]);
        assert!(matches!(load(&opts(&d)), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn syntax_error_names_the_file() {
        let d = dirs(Some("[runtime\n"), &[]);
        match load(&opts(&d)) {
            Err(ConfigError::Syntax { path, .. }) => assert_eq!(path, d.main),
            other => panic!("expected Syntax, got {other:?}"),
        }
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).expect("parse printed config");
        assert_eq!(back, c);
    }
}

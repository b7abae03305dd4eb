//! Discovery of CNI network configurations, with libcni's selection rules.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A network configuration that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    /// The file it came from.
    pub file: PathBuf,
    /// The network name.
    pub name: String,
    /// The declared `cniVersion` (empty when absent).
    pub cni_version: String,
    /// Plugin `type`s in chain order.
    pub plugin_types: Vec<String>,
    /// The configuration as a network list: a `.conflist` as written, a single-plugin
    /// `.conf`/`.json` wrapped as a list of one (`name` and `cniVersion` lifted from it).
    pub list: Value,
}

/// The result of scanning a configuration directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The default network: the lexically first valid file.
    pub default: Option<CniNetwork>,
    /// Files that were considered before it and rejected, with the reason.
    pub rejected: Vec<(PathBuf, String)>,
}

/// Extensions libcni considers, and the only ones we read.
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// Scans `dir` in lexical order and picks the first valid configuration, as libcni does.
///
/// A missing directory is not an error: it means no network is configured yet.
pub fn discover(dir: &Path) -> std::io::Result<Discovery> {
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| EXTENSIONS.iter().any(|x| e == *x))
            })
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Discovery::default()),
        Err(e) => return Err(e),
    };
    files.sort();

    let mut discovery = Discovery::default();
    for file in files {
        match load(&file) {
            Ok(network) => {
                discovery.default = Some(network);
                break;
            }
            Err(reason) => discovery.rejected.push((file, reason)),
        }
    }
    Ok(discovery)
}

fn load(file: &Path) -> Result<CniNetwork, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let is_list = file.extension().is_some_and(|e| e == "conflist");
    let (name, cni_version, plugin_types) = parse(&value, is_list)?;
    let list = if is_list {
        value
    } else {
        serde_json::json!({ "cniVersion": cni_version, "name": name, "plugins": [value] })
    };
    Ok(CniNetwork {
        file: file.to_path_buf(),
        name,
        cni_version,
        plugin_types,
        list,
    })
}

/// Validates one configuration: a list (`plugins`) or a single plugin (`type`).
fn parse(value: &Value, is_list: bool) -> Result<(String, String, Vec<String>), String> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("missing network `name`")?
        .to_owned();
    let cni_version = match obj.get("cniVersion") {
        None => String::new(),
        Some(v) => v.as_str().ok_or("`cniVersion` is not a string")?.to_owned(),
    };
    let plugin_type = |p: &Value, what: &str| -> Result<String, String> {
        p.get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("{what} has no plugin `type`"))
    };
    let types = if is_list {
        let plugins = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or("a .conflist needs a `plugins` array")?;
        if plugins.is_empty() {
            return Err("`plugins` is empty".into());
        }
        plugins
            .iter()
            .enumerate()
            .map(|(i, p)| plugin_type(p, &format!("plugins[{i}]")))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![plugin_type(value, "the configuration")?]
    };
    Ok((name, cni_version, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn missing_directory_means_no_network() {
        let d = discover(Path::new("/nonexistent/cni")).expect("discover");
        assert_eq!(d, Discovery::default());
    }

    #[test]
    fn first_valid_file_in_lexical_order_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "05-broken.conflist", "{not json");
        write(
            dir.path(),
            "07-empty.conflist",
            r#"{"name":"e","plugins":[]}"#,
        );
        write(
            dir.path(),
            "10-bridge.conflist",
            r#"{"cniVersion":"1.0.0","name":"crid","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        write(
            dir.path(),
            "20-other.conf",
            r#"{"name":"other","type":"ptp"}"#,
        );
        write(dir.path(), "01-readme.txt", "not a config");
        let d = discover(dir.path()).expect("discover");
        let net = d.default.expect("a default network");
        assert_eq!(net.name, "crid");
        assert_eq!(net.cni_version, "1.0.0");
        assert_eq!(net.plugin_types, ["bridge", "portmap"]);
        let rejected: Vec<_> = d
            .rejected
            .iter()
            .map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            rejected,
            [
                Some("05-broken.conflist".into()),
                Some("07-empty.conflist".into())
            ]
        );
    }

    #[test]
    fn single_plugin_conf_is_a_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "10.conf",
            r#"{"name":"single","type":"bridge"}"#,
        );
        let net = discover(dir.path())
            .expect("discover")
            .default
            .expect("network");
        assert_eq!(net.plugin_types, ["bridge"]);
        assert_eq!(
            net.list,
            serde_json::json!({"cniVersion": "", "name": "single",
                "plugins": [{"name": "single", "type": "bridge"}]})
        );
    }

    #[test]
    fn the_default_conflist_setup_installs_is_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "10-crid-bridge.conflist",
            include_str!("../../fixtures/cni/10-crid-bridge.conflist"),
        );
        let net = discover(dir.path())
            .expect("discover")
            .default
            .expect("network");
        assert_eq!(net.name, "crid");
        assert_eq!(net.cni_version, "1.0.0");
        assert_eq!(net.plugin_types, ["bridge", "portmap"]);
    }

    #[test]
    fn invalid_shapes_are_rejected_with_reasons() {
        let cases = [
            (r#"[]"#, true, "not a JSON object"),
            (
                r#"{"plugins":[{"type":"x"}]}"#,
                true,
                "missing network `name`",
            ),
            (r#"{"name":"n"}"#, true, "needs a `plugins` array"),
            (
                r#"{"name":"n","plugins":[{"type":""}]}"#,
                true,
                "plugins[0] has no plugin `type`",
            ),
            (r#"{"name":"n"}"#, false, "has no plugin `type`"),
            (
                r#"{"name":"n","type":"x","cniVersion":1}"#,
                false,
                "not a string",
            ),
        ];
        for (json, is_list, want) in cases {
            let value: Value = serde_json::from_str(json).expect("json");
            let err = parse(&value, is_list).expect_err(json);
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}

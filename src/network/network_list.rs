//! A network configuration list as the invoker runs it: checked once, before any plugin.

use serde_json::Value;

use super::error::CniError;
use super::plugin_conf;

/// A network configuration list, as the chain runs it.
#[derive(Debug, Clone)]
pub(crate) struct NetworkList {
    /// The network name, injected into every plugin's configuration.
    pub name: String,
    /// The list's `cniVersion`, injected likewise.
    pub cni_version: String,
    /// `disableCheck`: CHECK passes without running plugins.
    pub disable_check: bool,
    /// `(type, configuration)` of each plugin, in chain order.
    pub plugins: Vec<(String, Value)>,
    /// The list as read.
    pub raw: Value,
}

impl NetworkList {
    pub(crate) fn from_value(raw: Value) -> Result<Self, CniError> {
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let invalid = |reason: &str| CniError::InvalidConfig {
            network: name.clone(),
            reason: reason.to_owned(),
        };
        plugin_conf::check_id("network name", &name, 255).map_err(|r| invalid(&r))?;
        let cni_version = raw
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let disable_check = raw
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let plugins = raw
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("no `plugins`"))?
            .iter()
            .map(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty() && !t.contains('/'))
                    .map(|t| (t.to_owned(), p.clone()))
                    .ok_or_else(|| invalid("a plugin has no valid `type`"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn network_lists_are_checked_before_anything_runs() {
        let list = NetworkList::from_value(json!({"cniVersion": "0.4.0", "name": "n",
            "disableCheck": true, "plugins": [{"type": "bridge"}, {"type": "portmap"}]}))
        .expect("valid");
        assert_eq!(list.cni_version, "0.4.0");
        assert!(list.disable_check);
        let types: Vec<_> = list.plugins.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, ["bridge", "portmap"]);

        for bad in [
            json!({"name": "n", "plugins": []}),
            json!({"name": "n", "plugins": [{"type": "../../bin/sh"}]}),
            json!({"name": "a/b", "plugins": [{"type": "bridge"}]}),
            json!({"plugins": [{"type": "bridge"}]}),
        ] {
            assert!(
                matches!(
                    NetworkList::from_value(bad.clone()),
                    Err(CniError::InvalidConfig { .. })
                ),
                "{bad}"
            );
        }
    }
}

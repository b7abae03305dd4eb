//! Errors of the CNI invoker, each naming the network, the plugin and the command involved.

use std::path::PathBuf;
use std::time::Duration;

/// Why a CNI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No valid network configuration exists, so there is no default network.
    #[error("no valid CNI network configuration in {}", dir.display())]
    NoNetwork {
        /// The configuration directory that was scanned.
        dir: PathBuf,
    },
    /// The configuration directory could not be read.
    #[error("cannot read CNI configuration directory {}: {source}", dir.display())]
    ConfigDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The network configuration (or a cached copy of it) is not usable.
    #[error("CNI network {network}: invalid configuration: {reason}")]
    InvalidConfig {
        /// The network name.
        network: String,
        /// What is wrong.
        reason: String,
    },
    /// The caller passed an identifier or argument CNI cannot carry.
    #[error("invalid CNI request: {0}")]
    InvalidArgument(String),
    /// No plugin directory holds an executable of that type.
    #[error("CNI network {network}: plugin {plugin} not found in {dirs} ({command})")]
    PluginNotFound {
        /// The network name.
        network: String,
        /// The plugin `type`.
        plugin: String,
        /// The command that needed it.
        command: &'static str,
        /// The directories searched, joined by `:`.
        dirs: String,
    },
    /// The plugin could not be started or its pipes failed.
    #[error("CNI network {network}: cannot run plugin {plugin} ({command}): {source}")]
    Exec {
        /// The network name.
        network: String,
        /// The plugin `type`.
        plugin: String,
        /// The command.
        command: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The plugin ran and reported an error.
    #[error(
        "CNI network {network}: plugin {plugin} failed on {command}: {msg}{}",
        details_suffix(.code, .details)
    )]
    Plugin {
        /// The network name.
        network: String,
        /// The plugin `type`.
        plugin: String,
        /// The command (`ADD`, `CHECK`, `DEL`, `VERSION`).
        command: &'static str,
        /// The spec's error code, when the plugin printed a JSON error.
        code: Option<u32>,
        /// The plugin's message (`msg`; or its output when it printed no JSON error).
        msg: String,
        /// The plugin's `details`, possibly empty.
        details: String,
    },
    /// The plugin did not finish in time; its process group was killed.
    #[error("CNI network {network}: plugin {plugin} timed out on {command} after {timeout:?}")]
    Timeout {
        /// The network name.
        network: String,
        /// The plugin `type`.
        plugin: String,
        /// The command.
        command: &'static str,
        /// The per-plugin timeout that passed.
        timeout: Duration,
    },
    /// The plugin succeeded but its answer is not a result we can read.
    #[error("CNI network {network}: plugin {plugin} gave an invalid answer to {command}: {reason}")]
    InvalidResult {
        /// The network name.
        network: String,
        /// The plugin `type`.
        plugin: String,
        /// The command.
        command: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// CHECK needs the result of the ADD, and none is cached for this attachment.
    #[error("no cached CNI result for container {container_id} interface {ifname}")]
    NoCachedResult {
        /// The container (sandbox) id.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// CHECK is defined from CNI 0.4.0 on.
    #[error("CNI network {network}: cniVersion {version:?} does not support CHECK")]
    CheckUnsupported {
        /// The network name.
        network: String,
        /// Its `cniVersion`.
        version: String,
    },
    /// The operation's task was cancelled because the runtime is shutting down.
    #[error("CNI operation aborted: the daemon is shutting down")]
    Aborted,
    /// The result cache could not be written or cleaned.
    #[error("CNI result cache {}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn details_suffix(code: &Option<u32>, details: &str) -> String {
    let mut s = String::new();
    if !details.is_empty() {
        s.push_str(&format!(" ({details})"));
    }
    if let Some(c) = code {
        s.push_str(&format!(" [code {c}]"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_read_as_one_sentence_with_the_plugins_words() {
        let e = CniError::Plugin {
            network: "crid".into(),
            plugin: "bridge".into(),
            command: "ADD",
            code: Some(11),
            msg: "failed to allocate for range 0".into(),
            details: "no IP addresses available".into(),
        };
        assert_eq!(
            e.to_string(),
            "CNI network crid: plugin bridge failed on ADD: failed to allocate for range 0 \
             (no IP addresses available) [code 11]"
        );
        let e = CniError::Timeout {
            network: "crid".into(),
            plugin: "slow".into(),
            command: "DEL",
            timeout: Duration::from_secs(2),
        };
        assert_eq!(
            e.to_string(),
            "CNI network crid: plugin slow timed out on DEL after 2s"
        );
    }
}

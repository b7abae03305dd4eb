//! The CNI 1.x invoker: ADD, CHECK and DEL of a pod's attachment to the default network,
//! and VERSION of a plugin. It runs plugin binaries itself (no libcni, no cnitool), keeps
//! the result of every ADD in the [cache](super::cache), and tears down from that cache.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::cache::{Cache, Entry};
use super::error::CniError;
use super::exec::{self, Command, Invocation, RunError};
use super::network_list::NetworkList;
use super::plugin_conf::{self, capability_args, cni_args, plugin_stdin, version_at_least};
use super::result;
use super::serial::{Locks, to_completion};
use super::types::{Attachment, PodNetwork};

/// The default per-plugin timeout.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The interface name DEL uses when nothing is cached (CRI pods have one: `eth0`).
const DEFAULT_IFNAME: &str = "eth0";

/// Longest accepted container id (Kubernetes sandbox ids are 64 hex digits).
const MAX_ID_LEN: usize = 128;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;

/// The CNI invoker: where configurations, plugins and cached results are, and how long a
/// plugin may run. Cheap to clone.
///
/// Operations on one container id are serialized (clones share the locks): a DEL that
/// arrives while an ADD is still running (say, the caller of a cancelled `setup`) waits for
/// it, then removes what it made. The daemon should use one `Cni` (or clones of it).
#[derive(Debug, Clone)]
pub struct Cni {
    config_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    cache: Cache,
    timeout: Duration,
    locks: Locks,
}

/// What every plugin of one operation is run with.
struct Call<'a> {
    network: &'a NetworkList,
    container_id: &'a str,
    netns: &'a OsStr,
    ifname: &'a str,
    args: &'a str,
    capability_args: &'a Map<String, Value>,
}

impl Cni {
    /// The daemon's invoker: `[network]` directories, results cached in
    /// [`cache_dir_for`](Cni::cache_dir_for) `config`.
    pub fn from_config(config: &crate::config::Config) -> Cni {
        Cni::new(&config.network, Cni::cache_dir_for(config))
    }

    /// Where the daemon caches results: `<storage.root>/cni-cache`. Persistent on purpose,
    /// like host-local's leases: after a reboot, DEL of a pod made before it still finds the
    /// configuration and result it was made with.
    pub fn cache_dir_for(config: &crate::config::Config) -> PathBuf {
        config.storage.root.join("cni-cache")
    }

    /// An invoker for `config`'s directories, caching results under `cache_dir`.
    pub fn new(config: &crate::config::NetworkConfig, cache_dir: PathBuf) -> Cni {
        Cni {
            config_dir: config.cni_config_dir.clone(),
            plugin_dirs: config.cni_plugin_dirs.clone(),
            cache: Cache::new(cache_dir),
            timeout: Duration::from_secs(config.plugin_timeout_secs),
            locks: Locks::default(),
        }
    }

    /// The same invoker with another per-plugin timeout.
    pub fn with_timeout(mut self, per_plugin: Duration) -> Cni {
        self.timeout = per_plugin;
        self
    }

    /// The directory of cached results.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// ADD: attaches the pod to the default network, running the chain in order. On failure
    /// the whole chain is deleted again (rollback) and the ADD error is returned.
    ///
    /// Runs in a task of its own: dropping the returned future (a cancelled RPC) does not
    /// stop the chain half-way; it completes, or rolls back, and caches as usual.
    pub async fn setup(&self, a: &Attachment) -> Result<PodNetwork, CniError> {
        let (this, a) = (self.clone(), a.clone());
        self.serialized(&a.container_id.clone(), async move { this.add(&a).await })
            .await
    }

    async fn add(&self, a: &Attachment) -> Result<PodNetwork, CniError> {
        check_attachment(a)?;
        let network = self.default_network()?;
        let args = cni_args(a);
        let caps = capability_args(&a.port_mappings);
        let call = Call {
            network: &network,
            container_id: &a.container_id,
            netns: a.netns.as_os_str(),
            ifname: &a.ifname,
            args: &args,
            capability_args: &caps,
        };
        debug!(container_id = %a.container_id, network = %network.name, "CNI ADD");

        let mut prev: Option<Value> = None;
        for (plugin, conf) in &network.plugins {
            match self.add_one(&call, plugin, conf, prev.as_ref()).await {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    self.rollback(&call, prev.as_ref()).await;
                    return Err(e);
                }
            }
        }
        // The chain is never empty (NetworkList checks), so there is a final result.
        let final_result = prev.unwrap_or(Value::Null);
        let ips = match result::pod_ips(&final_result, &a.ifname) {
            Ok(ips) => ips,
            Err(reason) => {
                self.rollback(&call, Some(&final_result)).await;
                return Err(CniError::InvalidResult {
                    network: network.name.clone(),
                    plugin: network
                        .plugins
                        .last()
                        .map(|(t, _)| t.clone())
                        .unwrap_or_default(),
                    command: Command::Add.as_str(),
                    reason,
                });
            }
        };
        let entry = Entry::new(
            &a.container_id,
            &network.name,
            &a.ifname,
            args.clone(),
            caps.clone(),
            network.raw.clone(),
            final_result,
        );
        if let Err(e) = self.store(entry).await {
            self.rollback(&call, None).await;
            return Err(e);
        }
        Ok(PodNetwork {
            network: network.name.clone(),
            interface: a.ifname.clone(),
            ips,
        })
    }

    /// CHECK: asks every plugin whether the attachment is still as ADD made it, using the
    /// cached configuration and result. `disableCheck` networks pass without running plugins.
    pub async fn check(&self, a: &Attachment) -> Result<(), CniError> {
        let (this, a) = (self.clone(), a.clone());
        self.serialized(&a.container_id.clone(), async move {
            this.check_cached(&a).await
        })
        .await
    }

    async fn check_cached(&self, a: &Attachment) -> Result<(), CniError> {
        check_attachment(a)?;
        let entry = self
            .cached(&a.container_id)?
            .into_iter()
            .find(|(_, e)| e.if_name == a.ifname)
            .map(|(_, e)| e)
            .ok_or_else(|| CniError::NoCachedResult {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
            })?;
        let network = NetworkList::from_value(entry.config)?;
        if network.disable_check {
            return Ok(());
        }
        if !version_at_least(&network.cni_version, 0, 4) {
            return Err(CniError::CheckUnsupported {
                network: network.name,
                version: network.cni_version,
            });
        }
        let args = cni_args(a);
        let caps = capability_args(&a.port_mappings);
        let call = Call {
            network: &network,
            container_id: &a.container_id,
            netns: a.netns.as_os_str(),
            ifname: &a.ifname,
            args: &args,
            capability_args: &caps,
        };
        for (plugin, conf) in &network.plugins {
            self.invoke(&call, Command::Check, plugin, conf, Some(&entry.result))
                .await?;
        }
        Ok(())
    }

    /// DEL: detaches the container from every network its cache entries name, running each
    /// chain in reverse with the cached configuration, arguments and result; without a cache
    /// entry, with the current default network (nothing to do when there is none).
    ///
    /// Idempotent. A missing or no longer pinned `netns` is passed to plugins as empty, which
    /// they take as "only release what is held outside the namespace". Like `setup`, runs to
    /// completion even when the returned future is dropped.
    pub async fn teardown(&self, container_id: &str, netns: Option<&Path>) -> Result<(), CniError> {
        let (this, id) = (self.clone(), container_id.to_owned());
        let netns = netns.map(Path::to_path_buf);
        self.serialized(container_id, async move {
            this.del(&id, netns.as_deref()).await
        })
        .await
    }

    async fn del(&self, container_id: &str, netns: Option<&Path>) -> Result<(), CniError> {
        plugin_conf::check_id("container id", container_id, MAX_ID_LEN)
            .map_err(CniError::InvalidArgument)?;
        let netns_arg: OsString = netns
            .filter(|p| is_pinned_netns(p))
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_default();
        let cached = self.cached(container_id)?;
        if cached.is_empty() {
            let Some(network) = self.current_network()? else {
                debug!(
                    container_id,
                    "CNI DEL: no cache entry and no network, nothing to do"
                );
                return Ok(());
            };
            let args = plugin_conf::cni_args_for_id(container_id);
            let caps = Map::new();
            let call = Call {
                network: &network,
                container_id,
                netns: &netns_arg,
                ifname: DEFAULT_IFNAME,
                args: &args,
                capability_args: &caps,
            };
            return self.del_chain(&call, None).await;
        }

        let mut first_error = None;
        for (path, entry) in cached {
            let outcome = match NetworkList::from_value(entry.config) {
                Ok(network) => {
                    let call = Call {
                        network: &network,
                        container_id,
                        netns: &netns_arg,
                        ifname: &entry.if_name,
                        args: &entry.cni_args,
                        capability_args: &entry.capability_args,
                    };
                    self.del_chain(&call, Some(&entry.result)).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => self.remove(&path).await?,
                Err(e) => {
                    warn!(container_id, error = %e, "CNI DEL failed; cache entry kept for a retry");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// VERSION: the CNI versions a plugin supports.
    pub async fn version(&self, plugin_type: &str) -> Result<Vec<String>, CniError> {
        let command = Command::Version;
        let network = String::from("-");
        let binary = self.find_plugin(&network, plugin_type, command)?;
        let cni_path = self.cni_path();
        let inv = Invocation {
            binary: &binary,
            command,
            container_id: "",
            netns: OsStr::new(""),
            ifname: "",
            args: "",
            cni_path: &cni_path,
            stdin: br#"{"cniVersion":"1.0.0"}"#,
            timeout: self.timeout,
        };
        let out = self.run(&network, plugin_type, &inv).await?;
        result::supported_versions(&out).map_err(|reason| CniError::InvalidResult {
            network,
            plugin: plugin_type.to_owned(),
            command: command.as_str(),
            reason,
        })
    }

    /// Runs `f` under the container's lock, in a task of its own so that it completes even
    /// when the caller goes away. The lock is taken before the task starts: operations on one
    /// container run in the order they were called.
    async fn serialized<T: Send + 'static>(
        &self,
        container_id: &str,
        f: impl Future<Output = Result<T, CniError>> + Send + 'static,
    ) -> Result<T, CniError> {
        let guard = self.locks.get(container_id).lock_owned().await;
        to_completion(async move {
            let _guard = guard;
            f.await
        })
        .await
    }

    /// The current default network, or `NoNetwork`.
    fn default_network(&self) -> Result<NetworkList, CniError> {
        self.current_network()?.ok_or_else(|| CniError::NoNetwork {
            dir: self.config_dir.clone(),
        })
    }

    fn current_network(&self) -> Result<Option<NetworkList>, CniError> {
        let discovery =
            super::discover(&self.config_dir).map_err(|source| CniError::ConfigDir {
                dir: self.config_dir.clone(),
                source,
            })?;
        discovery
            .default
            .map(|n| NetworkList::from_value(n.list))
            .transpose()
    }

    /// Readable cache entries of a container; unreadable ones are logged and removed, since
    /// nothing can use them.
    fn cached(&self, container_id: &str) -> Result<Vec<(PathBuf, Entry)>, CniError> {
        let all = self
            .cache
            .load_all(container_id)
            .map_err(|source| CniError::Cache {
                path: self.cache.dir().join(container_id),
                source,
            })?;
        let mut entries = Vec::new();
        for (path, entry) in all {
            match entry {
                Ok(e) => entries.push((path, e)),
                Err(why) => {
                    warn!(container_id, path = %path.display(), why, "dropping unusable CNI cache entry");
                    let _ = self.cache.remove(&path);
                }
            }
        }
        Ok(entries)
    }

    async fn store(&self, entry: Entry) -> Result<(), CniError> {
        let cache = self.cache.clone();
        let path = cache.path(&entry.container_id, &entry.network_name, &entry.if_name);
        let joined = tokio::task::spawn_blocking(move || cache.store(&entry)).await;
        match joined {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(CniError::Cache { path, source }),
            Err(join) => Err(CniError::Cache {
                path,
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    async fn remove(&self, path: &Path) -> Result<(), CniError> {
        let cache = self.cache.clone();
        let owned = path.to_path_buf();
        let joined = tokio::task::spawn_blocking(move || cache.remove(&owned)).await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(CniError::Cache {
                path: path.to_path_buf(),
                source,
            }),
            Err(join) => Err(CniError::Cache {
                path: path.to_path_buf(),
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    /// Undoes a failed ADD: DEL of the whole chain (errors logged, not returned) and removal
    /// of any cache entry.
    async fn rollback(&self, call: &Call<'_>, prev: Option<&Value>) {
        if let Err(e) = self.del_chain(call, prev).await {
            warn!(container_id = call.container_id, error = %e, "CNI DEL during ADD rollback failed");
        }
        let path = self
            .cache
            .path(call.container_id, &call.network.name, call.ifname);
        if let Err(e) = self.remove(&path).await {
            warn!(container_id = call.container_id, error = %e, "cannot remove CNI cache entry");
        }
    }

    /// DEL of every plugin in reverse order; all run even when one fails, the first error
    /// is returned. `prevResult` is passed from CNI 0.4.0 on, as the spec defines it.
    async fn del_chain(&self, call: &Call<'_>, prev: Option<&Value>) -> Result<(), CniError> {
        let prev = prev.filter(|_| version_at_least(&call.network.cni_version, 0, 4));
        let mut first_error = None;
        for (plugin, conf) in call.network.plugins.iter().rev() {
            if let Err(e) = self.invoke(call, Command::Del, plugin, conf, prev).await {
                warn!(container_id = call.container_id, error = %e, "CNI DEL");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn add_one(
        &self,
        call: &Call<'_>,
        plugin: &str,
        conf: &Value,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let out = self.invoke(call, Command::Add, plugin, conf, prev).await?;
        serde_json::from_slice(&out).map_err(|e| CniError::InvalidResult {
            network: call.network.name.clone(),
            plugin: plugin.to_owned(),
            command: Command::Add.as_str(),
            reason: format!("not JSON: {e}"),
        })
    }

    /// Runs one plugin of the chain and returns its stdout.
    async fn invoke(
        &self,
        call: &Call<'_>,
        command: Command,
        plugin: &str,
        conf: &Value,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, CniError> {
        let network = &call.network.name;
        let stdin = plugin_stdin(
            conf,
            network,
            &call.network.cni_version,
            prev,
            call.capability_args,
        )
        .map_err(|reason| CniError::InvalidConfig {
            network: network.clone(),
            reason,
        })?;
        let binary = self.find_plugin(network, plugin, command)?;
        let cni_path = self.cni_path();
        let inv = Invocation {
            binary: &binary,
            command,
            container_id: call.container_id,
            netns: call.netns,
            ifname: call.ifname,
            args: call.args,
            cni_path: &cni_path,
            stdin: &stdin,
            timeout: self.timeout,
        };
        debug!(container_id = call.container_id, network, plugin, %command, "running CNI plugin");
        self.run(network, plugin, &inv).await
    }

    async fn run(
        &self,
        network: &str,
        plugin: &str,
        inv: &Invocation<'_>,
    ) -> Result<Vec<u8>, CniError> {
        let command = inv.command.as_str();
        match exec::run(inv).await {
            Ok(out) if out.status.success() => {
                if !out.stderr.is_empty() {
                    debug!(network, plugin, %command, stderr = %String::from_utf8_lossy(&out.stderr), "CNI plugin stderr");
                }
                Ok(out.stdout)
            }
            Ok(out) => {
                let f = result::plugin_failure(&out.stdout, &out.stderr, &out.status.to_string());
                Err(CniError::Plugin {
                    network: network.to_owned(),
                    plugin: plugin.to_owned(),
                    command,
                    code: f.code,
                    msg: f.msg,
                    details: f.details,
                })
            }
            Err(RunError::TimedOut) => Err(CniError::Timeout {
                network: network.to_owned(),
                plugin: plugin.to_owned(),
                command,
                timeout: inv.timeout,
            }),
            Err(RunError::Spawn(source) | RunError::Io(source)) => Err(CniError::Exec {
                network: network.to_owned(),
                plugin: plugin.to_owned(),
                command,
                source,
            }),
        }
    }

    /// The first plugin directory holding an executable `plugin`.
    fn find_plugin(
        &self,
        network: &str,
        plugin: &str,
        command: Command,
    ) -> Result<PathBuf, CniError> {
        let found = (!plugin.is_empty() && !plugin.contains('/'))
            .then(|| {
                self.plugin_dirs
                    .iter()
                    .map(|d| d.join(plugin))
                    .find(|p| is_executable(p))
            })
            .flatten();
        found.ok_or_else(|| CniError::PluginNotFound {
            network: network.to_owned(),
            plugin: plugin.to_owned(),
            command: command.as_str(),
            dirs: self.cni_path().to_string_lossy().into_owned(),
        })
    }

    /// `CNI_PATH`: the plugin directories joined by `:`.
    fn cni_path(&self) -> OsString {
        let mut path = OsString::new();
        for (i, d) in self.plugin_dirs.iter().enumerate() {
            if i > 0 {
                path.push(":");
            }
            path.push(d);
        }
        path
    }
}

fn check_attachment(a: &Attachment) -> Result<(), CniError> {
    plugin_conf::check_id("container id", &a.container_id, MAX_ID_LEN)
        .and_then(|()| plugin_conf::check_id("interface name", &a.ifname, MAX_IFNAME_LEN))
        .and_then(|()| plugin_conf::check_arg("pod namespace", &a.pod_namespace))
        .and_then(|()| plugin_conf::check_arg("pod name", &a.pod_name))
        .and_then(|()| plugin_conf::check_arg("pod uid", &a.pod_uid))
        .map_err(CniError::InvalidArgument)?;
    if !is_pinned_netns(&a.netns) {
        return Err(CniError::InvalidArgument(format!(
            "{} is not a pinned network namespace",
            a.netns.display()
        )));
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when `path` is a network namespace (an nsfs file, i.e. still bind-mounted), so a
/// plugin can enter it; an unmounted placeholder file or a missing path is not.
fn is_pinned_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_found_in_the_first_directory_that_has_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&first, &second] {
            std::fs::create_dir_all(d).expect("mkdir");
            let p = d.join("bridge");
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(first.join("plain"), "not executable").expect("write");
        let cni = Cni::new(
            &crate::config::NetworkConfig {
                cni_config_dir: dir.path().join("net.d"),
                cni_plugin_dirs: vec![first.clone(), second.clone()],
                ..Default::default()
            },
            dir.path().join("cache"),
        );
        assert_eq!(
            cni.find_plugin("n", "bridge", Command::Add).expect("found"),
            first.join("bridge")
        );
        assert_eq!(
            cni.cni_path(),
            OsString::from(format!("{}:{}", first.display(), second.display()))
        );
        for missing in ["plain", "nope", "../a/bridge", ""] {
            assert!(
                matches!(
                    cni.find_plugin("n", missing, Command::Add),
                    Err(CniError::PluginNotFound { .. })
                ),
                "{missing}"
            );
        }
        // A plain file is not a pinned namespace.
        assert!(!is_pinned_netns(&first.join("plain")));
        assert!(!is_pinned_netns(&dir.path().join("missing")));
    }
}

//! Daemon configuration: the typed model, its defaults, and how it is assembled.
//!
//! Sources are layered like CRI-O's: built-in defaults, then the main TOML file
//! (`/etc/crid/crid.toml`), then drop-ins from `/etc/crid/crid.d/*.toml` in lexical order,
//! then command-line flags. Later sources win key by key. Every file is checked on its own
//! (unknown keys, wrong types) so an error can name the file and the key; the merged result
//! is then checked as a whole, naming the source that set the offending key.

mod load;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use load::{LoadOptions, Overrides, load};
pub(crate) use validate::registry_host;

/// Default path of the main configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/crid/crid.toml";
/// Default directory of drop-in configuration files.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/crid/crid.d";

/// The effective configuration of the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The gRPC endpoint and the daemon's own logging.
    pub server: ServerConfig,
    /// Runtime handlers (OCI runtimes and VM shims) and the cgroup driver.
    pub runtime: RuntimeConfig,
    /// Image pulling: registries, mirrors, the pause image.
    pub image: ImageConfig,
    /// CNI configuration and plugin directories.
    pub network: NetworkConfig,
    /// The exec/attach/port-forward streaming server.
    pub streaming: StreamingConfig,
    /// Where persistent and volatile state lives.
    pub storage: StorageConfig,
}

/// `[server]`: where the CRI socket is and how loudly the daemon logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Path of the unix socket serving the CRI (flag `--listen`).
    pub listen: PathBuf,
    /// One of error, warn, info, debug, trace (flag `--log-level`).
    pub log_level: LogLevel,
    /// How long in-flight calls may run after SIGTERM before the daemon exits anyway.
    pub shutdown_timeout_secs: u64,
}

/// `[runtime]`: the handlers pods can ask for by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Handler used when a pod names none (the empty runtime_handler).
    pub default_runtime: String,
    /// cgroup driver reported to the kubelet through `RuntimeConfig`.
    pub cgroup_driver: CgroupDriver,
    /// Handlers by name; the defaults define `runc` and `crun`.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Largest CRI log file crid-monitor writes per container, in bytes; 0 for no limit
    /// (the kubelet rotates logs itself through ReopenContainerLog).
    pub log_size_max: u64,
    /// Drop `hugepage_limits` when the host has no hugetlb controller (the kubelet sends
    /// them for every page size the kernel has); `false` refuses such containers instead.
    pub tolerate_missing_hugetlb_controller: bool,
    /// Drop other resource requests the host cannot enforce (a page size the hugetlb
    /// controller lacks, swap limits without swap accounting, `unified` keys of absent
    /// controllers, an `oom_score_adj` below what crid may set, sysctls the kernel lacks);
    /// `false` refuses them instead.
    pub tolerate_unsupported_resources: bool,
    /// Directories of Container Device Interface spec files (`config.CDI_devices`), in
    /// rising precedence: a spec in a later directory overrides one in an earlier
    /// directory that defines the same device.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

/// `[runtime.runtimes.NAME]`: one runtime handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// The runtime binary: an absolute path, or a bare name looked up in `PATH`.
    pub path: PathBuf,
    /// The runtime's state directory (`--root` of an OCI runtime); defaults below runroot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// `oci` for an OCI runtime CLI, `vm` (or `shim`) for a containerd shim v2.
    #[serde(rename = "type", default)]
    pub kind: RuntimeKind,
    /// Global arguments of an OCI runtime, before each command (`--platform=ptrace` for
    /// gVisor's runsc on a host without KVM, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Run the pod's infra (pause) container in every pod, not only in pods that share a
    /// PID namespace: sandboxed runtimes such as runsc build the pod's sandbox around it
    /// and refuse containers without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_infra: bool,
    /// Bound on each call to the handler, in seconds: an OCI runtime's commands, a shim's
    /// `start` and `delete` and each of its ttrpc calls (default 30). A VM runtime that
    /// boots a guest per pod may need more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Learn each container's exit from the OCI runtime's `wait` command rather than only
    /// by reaping the process its `create` leaves: needed where containers are not host
    /// processes (runsc runs them in its sandbox). Default: on for a binary named `runsc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_via_wait: Option<bool>,
}

/// How crid drives a runtime handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// An OCI runtime command line (runc, crun, runsc, youki).
    #[default]
    Oci,
    /// A containerd shim v2 speaking ttrpc (Kata, containerd-shim-runc-v2); `shim` is an
    /// alias.
    #[serde(alias = "shim")]
    Vm,
}

/// The cgroup driver, as the CRI `RuntimeConfig` RPC reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// crid writes cgroups through the cgroup filesystem.
    #[default]
    Cgroupfs,
    /// cgroups are delegated to systemd.
    Systemd,
}

/// `[image]`: registries and the pause image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Image of the infra container, used only when a pod needs a PID 1.
    pub pause_image: String,
    /// Registries (`host[:port]`) reached over plain HTTP; nothing is insecure unless listed.
    pub insecure_registries: Vec<String>,
    /// Registries that complete a short name such as `busybox`, tried in order.
    pub short_name_search: Vec<String>,
    /// Mirrors per registry host, tried in order before the registry itself.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Layers of one image downloaded at the same time (1 to 64).
    pub max_concurrent_downloads: usize,
    /// A pull that receives nothing for this many seconds is cancelled (at least 1).
    pub pull_progress_timeout_secs: u64,
    /// Most bytes one layer may expand to when unpacked; 0: no limit. A small compressed
    /// layer can expand a thousandfold and fill the disk.
    pub max_layer_unpacked_bytes: u64,
    /// Most bytes all layers of one image may expand to; 0: no limit.
    pub max_image_unpacked_bytes: u64,
}

/// `[network]`: where CNI configuration and plugins are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Directory of `.conflist`, `.conf` and `.json` network configurations.
    pub cni_config_dir: PathBuf,
    /// Directories searched for plugin binaries, in order.
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// How long one plugin call (ADD, CHECK, DEL) may take before its process group is
    /// killed and the pod operation fails.
    pub plugin_timeout_secs: u64,
}

/// `[streaming]`: the exec/attach/port-forward server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address the streaming server binds to.
    pub address: IpAddr,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// How long an Exec/PortForward URL stays valid (it is single-use either way).
    pub token_ttl_secs: u64,
    /// PEM certificate chain: with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// `[storage]`: persistent and volatile state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Persistent state: images, layers, records (flag `--root`).
    pub root: PathBuf,
    /// Volatile state that does not survive a reboot (flag `--runroot`).
    pub runroot: PathBuf,
}

/// A log level accepted by `--log-level` and `server.log_level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Per-request detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// All levels, in increasing verbosity.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The lowercase name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown log level `{s}` (expected error, warn, info, debug or trace)")
            })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: PathBuf::from("/run/crid/crid.sock"),
            log_level: LogLevel::Info,
            shutdown_timeout_secs: 10,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let oci = |path: &str| RuntimeHandler {
            path: PathBuf::from(path),
            root: None,
            kind: RuntimeKind::Oci,
            args: Vec::new(),
            always_infra: false,
            timeout_secs: None,
            exit_via_wait: None,
        };
        Self {
            default_runtime: "runc".to_owned(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            log_size_max: 0,
            tolerate_missing_hugetlb_controller: true,
            tolerate_unsupported_resources: true,
            cdi_spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
            runtimes: BTreeMap::from([
                ("runc".to_owned(), oci("runc")),
                ("crun".to_owned(), oci("crun")),
            ]),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            pause_image: "registry.k8s.io/pause:3.10".to_owned(),
            insecure_registries: Vec::new(),
            short_name_search: vec!["docker.io".to_owned()],
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: 3,
            pull_progress_timeout_secs: 300,
            // Far above any real layer or image (the largest CUDA/ML images are tens of
            // GiB), far below what a thousandfold gzip bomb of a few MiB reaches.
            max_layer_unpacked_bytes: 64 << 30,
            max_image_unpacked_bytes: 256 << 30,
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            cni_config_dir: PathBuf::from("/etc/cni/net.d"),
            // /opt/cni/bin is upstream's convention, /usr/lib/cni is where Debian installs.
            cni_plugin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout_secs: crate::network::DEFAULT_PLUGIN_TIMEOUT.as_secs(),
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            token_ttl_secs: 60,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/crid"),
            runroot: PathBuf::from("/run/crid"),
        }
    }
}

impl Config {
    /// The state directory of a handler: its configured `root`, else `<runroot>/runtimes/<name>`.
    pub fn runtime_root(&self, name: &str) -> Option<PathBuf> {
        let handler = self.runtime.runtimes.get(name)?;
        Some(
            handler
                .root
                .clone()
                .unwrap_or_else(|| self.storage.runroot.join("runtimes").join(name)),
        )
    }

    /// The effective configuration as TOML, as `crid config` prints it.
    pub fn to_toml(&self) -> String {
        // Serializing plain structs of strings, paths and maps cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Where a configuration value came from, so errors can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// crid's built-in default.
    Default,
    /// A configuration file (main or drop-in).
    File(PathBuf),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One thing wrong with the configuration: where, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or flag that set the key.
    pub source: Source,
    /// Dotted key path, e.g. `runtime.runtimes.runc.type`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: key `{}`: {}", self.source, self.key, self.reason)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("{path}: invalid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Keys are unknown or values are wrong.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

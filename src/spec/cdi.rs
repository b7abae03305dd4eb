//! Container Device Interface (cncf-tags/container-device-interface, SPEC.md): the
//! devices a CreateContainer asks for by fully-qualified name (`vendor/class=name`,
//! `config.CDI_devices`) are looked up in the spec files vendors write, and their
//! `containerEdits` (environment, device nodes, mounts, hooks, additional GIDs) are
//! applied to the OCI spec. Pure: the files' contents come in as [`Registry::add`], the
//! device nodes' numbers as [`Resolved::fill_nodes`]; `crate::container::cdi` reads them.
//!
//! Precedence: a spec in a later directory of the configured list (`/var/run/cdi` after
//! `/etc/cdi`) overrides one in an earlier directory that defines the same device; two
//! specs in the same directory that define it are a conflict, and the device cannot be
//! used until one goes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::oci;

/// One spec file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpecFile {
    /// The spec's version, `MAJOR.MINOR.PATCH`.
    pub cdi_version: String,
    /// `vendor/class`.
    pub kind: String,
    /// Free-form, for consumers.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The devices it defines (at least one).
    pub devices: Vec<DeviceSpec>,
    /// Edits made once for any of its devices.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// One device of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceSpec {
    /// Its name within the kind.
    pub name: String,
    /// Free-form, for consumers.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Edits made when it is asked for.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// Edits to the OCI spec. Unknown kinds of edit (`intelRdt`, `netDevices`) fail the
/// parse: crid does not apply them, and a device half applied is worse than a refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerEdits {
    /// `KEY=VALUE`, replacing a variable of the same name.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes to create (and allow in the device cgroup).
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    /// Mounts to add.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Hooks to add.
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// Supplementary groups of the container's process (0 is ignored).
    #[serde(default, rename = "additionalGIDs", alias = "additionalGids")]
    pub additional_gids: Vec<u32>,
}

/// A device node edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Path on the host; `path` when absent.
    #[serde(default)]
    pub host_path: Option<String>,
    /// `c`, `b`, `u` or `p`; from the host's node when absent.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Major number; from the host's node when absent.
    #[serde(default)]
    pub major: Option<i64>,
    /// Minor number; from the host's node when absent.
    #[serde(default)]
    pub minor: Option<i64>,
    /// Permission bits of the node.
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// cgroup access, a combination of `r`, `w`, `m` (default all three).
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner in the container.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group in the container.
    #[serde(default)]
    pub gid: Option<u32>,
}

impl DeviceNode {
    /// Where the node is on the host.
    pub fn host_path(&self) -> &str {
        self.host_path.as_deref().unwrap_or(&self.path)
    }

    /// Whether its type and numbers still have to come from the host's node.
    pub fn needs_host_node(&self) -> bool {
        match self.kind.as_deref() {
            None => true,
            Some("p") => false,
            Some(_) => self.major.is_none() || self.minor.is_none(),
        }
    }
}

/// A mount edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// Source on the host.
    pub host_path: String,
    /// Destination in the container.
    pub container_path: String,
    /// Filesystem type; a bind mount when absent.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Mount options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// A hook edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    /// The OCI lifecycle point: prestart, createRuntime, createContainer,
    /// startContainer, poststart or poststop.
    pub hook_name: String,
    /// Absolute path of the command.
    pub path: String,
    /// Its argv.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before it is aborted (> 0).
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// Why a spec file or a device name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdiError {
    /// The file is not a valid spec.
    #[error("{path}: {reason}")]
    InvalidSpec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Not `vendor/class=name` with valid parts.
    #[error("`{name}` is not a fully-qualified CDI device name (vendor/class=name): {reason}")]
    InvalidName {
        /// As asked.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No spec defines the device.
    #[error("CDI device `{name}` is unknown: no spec in {dirs} defines it")]
    Unknown {
        /// As asked.
        name: String,
        /// The directories searched.
        dirs: String,
    },
    /// Two specs of the same precedence define it.
    #[error("CDI device `{name}` is defined by both {first} and {second}")]
    Conflict {
        /// As asked.
        name: String,
        /// One spec file.
        first: String,
        /// The other.
        second: String,
    },
    /// An edit cannot be applied (a host device node that is missing or not a device).
    #[error("CDI device `{name}`: {reason}")]
    Unusable {
        /// As asked.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(path: &std::path::Path, reason: impl Into<String>) -> CdiError {
    CdiError::InvalidSpec {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Letters, digits and `extra`, starting with a letter (or a digit when `digit_first`)
/// and ending with a letter or digit.
fn name_ok(s: &str, extra: &str, digit_first: bool) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    (first.is_ascii_alphabetic() || (digit_first && first.is_ascii_digit()))
        && last.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Checks a kind, `vendor/class`; returns (vendor, class).
fn parse_kind(kind: &str) -> Result<(&str, &str), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind `{kind}` is not vendor/class"))?;
    if !name_ok(vendor, "-_.", false) || vendor.len() > 253 {
        return Err(format!("vendor `{vendor}` is not a valid vendor name"));
    }
    if !name_ok(class, "-_", false) || class.len() > 63 {
        return Err(format!("class `{class}` is not a valid class name"));
    }
    Ok((vendor, class))
}

fn device_name_ok(name: &str) -> bool {
    name_ok(name, "-_.:", true)
}

/// Splits a fully-qualified device name into its kind and its device name.
pub fn parse_qualified(name: &str) -> Result<(&str, &str), CdiError> {
    let bad = |reason: String| CdiError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let (kind, device) = name
        .split_once('=')
        .ok_or_else(|| bad("no `=` between kind and device".into()))?;
    parse_kind(kind).map_err(bad)?;
    if !device_name_ok(device) {
        return Err(bad(format!("`{device}` is not a valid device name")));
    }
    Ok((kind, device))
}

impl SpecFile {
    /// Parses and validates a JSON spec file read from `path`.
    pub fn parse(path: &std::path::Path, json: &[u8]) -> Result<SpecFile, CdiError> {
        let spec: SpecFile =
            serde_json::from_slice(json).map_err(|e| invalid(path, e.to_string()))?;
        spec.validate(path)?;
        Ok(spec)
    }

    fn validate(&self, path: &std::path::Path) -> Result<(), CdiError> {
        let semver = self.cdi_version.split('.').collect::<Vec<_>>();
        if semver.len() != 3 || semver.iter().any(|p| p.parse::<u32>().is_err()) {
            return Err(invalid(
                path,
                format!("cdiVersion `{}` is not MAJOR.MINOR.PATCH", self.cdi_version),
            ));
        }
        if semver[0] != "0" && semver[0] != "1" {
            return Err(invalid(
                path,
                format!("cdiVersion {} is newer than crid knows", self.cdi_version),
            ));
        }
        parse_kind(&self.kind).map_err(|r| invalid(path, r))?;
        if self.devices.is_empty() {
            return Err(invalid(path, "it defines no device"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.devices {
            if !device_name_ok(&d.name) {
                return Err(invalid(
                    path,
                    format!("device name `{}` is not valid", d.name),
                ));
            }
            if !seen.insert(&d.name) {
                return Err(invalid(
                    path,
                    format!("device `{}` is defined twice", d.name),
                ));
            }
            d.container_edits
                .validate()
                .map_err(|r| invalid(path, format!("device `{}`: {r}", d.name)))?;
        }
        self.container_edits
            .validate()
            .map_err(|r| invalid(path, r))
    }
}

const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

impl ContainerEdits {
    fn validate(&self) -> Result<(), String> {
        for e in &self.env {
            if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(format!("env `{e}` is not KEY=VALUE"));
            }
        }
        for d in &self.device_nodes {
            if !d.path.starts_with('/') || !d.host_path().starts_with('/') {
                return Err(format!("device node `{}`: paths must be absolute", d.path));
            }
            if let Some(k) = &d.kind
                && !["b", "c", "u", "p"].contains(&k.as_str())
            {
                return Err(format!(
                    "device node `{}`: type `{k}` is not b, c, u or p",
                    d.path
                ));
            }
            if let Some(p) = &d.permissions
                && (p.is_empty() || !p.chars().all(|c| "rwm".contains(c)))
            {
                return Err(format!(
                    "device node `{}`: permissions `{p}` are not a combination of r, w and m",
                    d.path
                ));
            }
        }
        for m in &self.mounts {
            if m.host_path.is_empty() || !m.container_path.starts_with('/') {
                return Err(format!(
                    "mount `{}`: hostPath is required and containerPath must be absolute",
                    m.container_path
                ));
            }
        }
        for h in &self.hooks {
            if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
                return Err(format!("hook `{}` is not an OCI hook", h.hook_name));
            }
            if !h.path.starts_with('/') {
                return Err(format!(
                    "hook {}: path `{}` is not absolute",
                    h.hook_name, h.path
                ));
            }
            if h.timeout.is_some_and(|t| t <= 0) {
                return Err(format!("hook {}: timeout must be positive", h.hook_name));
            }
        }
        Ok(())
    }
}

/// The spec files found, each with its precedence (its directory's index).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    specs: Vec<(usize, PathBuf, SpecFile)>,
    /// The directories searched, for messages.
    pub dirs: Vec<PathBuf>,
}

/// The edits a container's devices bring, in the order they apply: each spec's own edits
/// once, before its devices' edits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// (the device or spec it comes from, the edits).
    pub edits: Vec<(String, ContainerEdits)>,
}

impl Registry {
    /// An empty registry of the spec directories `dirs` (named in messages).
    pub fn new(dirs: Vec<PathBuf>) -> Registry {
        Registry {
            specs: Vec::new(),
            dirs,
        }
    }

    /// Adds a spec read from `path` in the directory of precedence `priority` (higher wins).
    pub fn add(&mut self, priority: usize, path: PathBuf, spec: SpecFile) {
        self.specs.push((priority, path, spec));
    }

    /// Looks `names` up; the first that cannot be used is the error.
    pub fn resolve(&self, names: &[String]) -> Result<Resolved, CdiError> {
        let mut specs_used: Vec<usize> = Vec::new();
        let mut devices: Vec<(String, usize, usize)> = Vec::new();
        for name in names {
            let (kind, device) = parse_qualified(name)?;
            let mut best: Option<(usize, usize, usize)> = None; // (priority, spec, device)
            for (i, (priority, path, spec)) in self.specs.iter().enumerate() {
                if spec.kind != kind {
                    continue;
                }
                let Some(d) = spec.devices.iter().position(|d| d.name == device) else {
                    continue;
                };
                match best {
                    Some((p, other, _)) if p == *priority => {
                        return Err(CdiError::Conflict {
                            name: name.clone(),
                            first: self.specs[other].1.display().to_string(),
                            second: path.display().to_string(),
                        });
                    }
                    Some((p, _, _)) if p > *priority => {}
                    _ => best = Some((*priority, i, d)),
                }
            }
            let (_, s, d) = best.ok_or_else(|| CdiError::Unknown {
                name: name.clone(),
                dirs: self
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            if !specs_used.contains(&s) {
                specs_used.push(s);
            }
            if !devices.iter().any(|(n, _, _)| n == name) {
                devices.push((name.clone(), s, d));
            }
        }
        let mut edits = Vec::new();
        for s in specs_used {
            let (_, path, spec) = &self.specs[s];
            edits.push((
                format!("{} ({})", spec.kind, path.display()),
                spec.container_edits.clone(),
            ));
        }
        for (name, s, d) in devices {
            edits.push((name, self.specs[s].2.devices[d].container_edits.clone()));
        }
        Ok(Resolved { edits })
    }
}

impl Resolved {
    /// No device asked for.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Fills in the type and numbers of device nodes that do not give them, from `stat` of
    /// their host path: `Ok((kind, major, minor))` or why the node cannot be used.
    pub fn fill_nodes(
        &mut self,
        mut stat: impl FnMut(&str) -> Result<(String, i64, i64), String>,
    ) -> Result<(), CdiError> {
        for (name, edits) in &mut self.edits {
            for node in &mut edits.device_nodes {
                if !node.needs_host_node() {
                    continue;
                }
                let (kind, major, minor) =
                    stat(node.host_path()).map_err(|reason| CdiError::Unusable {
                        name: name.clone(),
                        reason: format!("device node {}: {reason}", node.host_path()),
                    })?;
                if node
                    .kind
                    .as_ref()
                    .is_some_and(|k| *k != kind && !(k == "u" && kind == "c"))
                {
                    return Err(CdiError::Unusable {
                        name: name.clone(),
                        reason: format!(
                            "device node {} is of type {kind}, the spec says {}",
                            node.host_path(),
                            node.kind.as_deref().unwrap_or_default()
                        ),
                    });
                }
                node.kind.get_or_insert(kind);
                node.major.get_or_insert(major);
                node.minor.get_or_insert(minor);
            }
        }
        Ok(())
    }

    /// Applies the edits to `spec`, in order. Device nodes must have their numbers
    /// ([`Resolved::fill_nodes`]).
    pub fn apply(&self, spec: &mut oci::Spec) {
        let mut mounted = false;
        for (_, edits) in &self.edits {
            for e in &edits.env {
                let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                spec.process
                    .env
                    .retain(|v| v.split_once('=').map_or(v.as_str(), |(k, _)| k) != key);
                spec.process.env.push(e.clone());
            }
            for node in &edits.device_nodes {
                let kind = node.kind.clone().unwrap_or_else(|| "c".into());
                let (major, minor) = (node.major.unwrap_or(0), node.minor.unwrap_or(0));
                spec.linux.devices.retain(|d| d.path != node.path);
                spec.linux.devices.push(oci::Device {
                    kind: kind.clone(),
                    path: node.path.clone(),
                    major,
                    minor,
                    file_mode: node.file_mode,
                    uid: node.uid,
                    gid: node.gid,
                });
                if kind != "p" {
                    spec.linux
                        .resources
                        .get_or_insert_with(Default::default)
                        .devices
                        .push(oci::DeviceRule {
                            allow: true,
                            kind: Some(if kind == "u" { "c".into() } else { kind }),
                            major: Some(major),
                            minor: Some(minor),
                            access: Some(node.permissions.clone().unwrap_or_else(|| "rwm".into())),
                        });
                }
            }
            for m in &edits.mounts {
                let mut options = m.options.clone();
                let kind = match &m.kind {
                    Some(k) if !k.is_empty() => k.clone(),
                    _ => {
                        if !options.iter().any(|o| o == "bind" || o == "rbind") {
                            options.push("rbind".into());
                        }
                        "bind".into()
                    }
                };
                spec.mounts.retain(|x| x.destination != m.container_path);
                spec.mounts.push(oci::Mount {
                    destination: m.container_path.clone(),
                    kind,
                    source: m.host_path.clone(),
                    options,
                });
                mounted = true;
            }
            for h in &edits.hooks {
                let hook = oci::Hook {
                    path: h.path.clone(),
                    args: h.args.clone(),
                    env: h.env.clone(),
                    timeout: h.timeout,
                };
                let list = match h.hook_name.as_str() {
                    "prestart" => &mut spec.hooks.prestart,
                    "createRuntime" => &mut spec.hooks.create_runtime,
                    "createContainer" => &mut spec.hooks.create_container,
                    "startContainer" => &mut spec.hooks.start_container,
                    "poststart" => &mut spec.hooks.poststart,
                    _ => &mut spec.hooks.poststop,
                };
                list.push(hook);
            }
            for gid in &edits.additional_gids {
                let gids = &mut spec.process.user.additional_gids;
                if *gid != 0 && !gids.contains(gid) {
                    gids.push(*gid);
                }
            }
        }
        if mounted {
            // A parent before what is mounted below it, whatever order the edits came in.
            spec.mounts
                .sort_by_key(|m| std::path::Path::new(&m.destination).components().count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SPEC: &str = r#"{
        "cdiVersion": "0.6.0",
        "kind": "vendor.example/gpu",
        "containerEdits": {"env": ["VENDOR_LIB=1"], "additionalGIDs": [44, 0]},
        "devices": [
            {"name": "gpu0", "containerEdits": {
                "env": ["GPU=0", "PATH=/gpu/bin"],
                "deviceNodes": [{"path": "/dev/gpu0", "hostPath": "/dev/null"}],
                "mounts": [{"hostPath": "/opt/gpu", "containerPath": "/usr/lib/gpu", "options": ["ro"]}],
                "hooks": [{"hookName": "createContainer", "path": "/usr/bin/gpu-hook", "args": ["gpu-hook", "x"]}]
            }},
            {"name": "gpu1", "containerEdits": {"env": ["GPU=1"],
                "deviceNodes": [{"path": "/dev/gpu1", "type": "c", "major": 195, "minor": 1, "permissions": "rw"}]}}
        ]
    }"#;

    fn registry(files: &[(usize, &str, &str)]) -> Registry {
        let mut r = Registry::new(vec!["/etc/cdi".into(), "/var/run/cdi".into()]);
        for (priority, path, json) in files {
            let spec = SpecFile::parse(Path::new(path), json.as_bytes()).expect("spec");
            r.add(*priority, PathBuf::from(path), spec);
        }
        r
    }

    fn base() -> oci::Spec {
        let mut s = oci::Spec::default();
        s.process.env = vec!["PATH=/bin".into(), "HOSTNAME=x".into()];
        s.mounts.push(oci::Mount {
            destination: "/usr/lib/gpu/sub".into(),
            kind: "bind".into(),
            source: "/x".into(),
            options: vec![],
        });
        s
    }

    #[test]
    fn qualified_names_are_checked() {
        assert_eq!(
            parse_qualified("vendor.com/class=dev-0").expect("ok"),
            ("vendor.com/class", "dev-0")
        );
        assert_eq!(parse_qualified("nvidia.com/gpu=0").expect("digit").1, "0");
        for bad in [
            "gpu0",
            "vendor.com/class",
            "vendor.com=dev",
            "/class=dev",
            "vendor.com/=dev",
            "vendor.com/cl.ass=dev",
            "vendor.com/class=",
            "vendor.com/class=-dev",
            "vendor.com/a/b=dev",
            "1vendor.com/class=dev",
        ] {
            assert!(
                matches!(parse_qualified(bad), Err(CdiError::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn edits_apply_spec_first_then_the_device() {
        let r = registry(&[(0, "/etc/cdi/gpu.json", SPEC)]);
        let mut resolved = r
            .resolve(&["vendor.example/gpu=gpu0".into()])
            .expect("resolve");
        resolved
            .fill_nodes(|p| {
                assert_eq!(p, "/dev/null");
                Ok(("c".into(), 1, 3))
            })
            .expect("fill");
        let mut spec = base();
        resolved.apply(&mut spec);
        assert_eq!(
            spec.process.env,
            ["HOSTNAME=x", "VENDOR_LIB=1", "GPU=0", "PATH=/gpu/bin"]
        );
        assert_eq!(spec.process.user.additional_gids, [44]);
        let dev = &spec.linux.devices[0];
        assert_eq!(
            (dev.path.as_str(), dev.kind.as_str(), dev.major, dev.minor),
            ("/dev/gpu0", "c", 1, 3)
        );
        let rule = &spec.linux.resources.as_ref().expect("rules").devices[0];
        assert_eq!(
            (rule.major, rule.minor, rule.access.as_deref()),
            (Some(1), Some(3), Some("rwm"))
        );
        // The parent mount comes before the one below it that was already there.
        let dests: Vec<_> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/usr/lib/gpu", "/usr/lib/gpu/sub"]);
        assert_eq!(spec.mounts[0].kind, "bind");
        assert_eq!(spec.mounts[0].options, ["ro", "rbind"]);
        assert_eq!(spec.hooks.create_container[0].path, "/usr/bin/gpu-hook");
        assert_eq!(spec.hooks.create_container[0].args, ["gpu-hook", "x"]);
    }

    #[test]
    fn two_devices_of_one_spec_take_its_edits_once() {
        let r = registry(&[(0, "/etc/cdi/gpu.json", SPEC)]);
        let mut resolved = r
            .resolve(&[
                "vendor.example/gpu=gpu1".into(),
                "vendor.example/gpu=gpu0".into(),
            ])
            .expect("resolve");
        assert_eq!(resolved.edits.len(), 3);
        resolved
            .fill_nodes(|_| Ok(("c".into(), 1, 3)))
            .expect("fill");
        let mut spec = base();
        resolved.apply(&mut spec);
        assert_eq!(
            spec.process
                .env
                .iter()
                .filter(|e| e.starts_with("VENDOR_LIB"))
                .count(),
            1
        );
        // The later device's value of a shared variable wins.
        assert!(spec.process.env.contains(&"GPU=0".to_owned()));
        let gpu1 = spec
            .linux
            .devices
            .iter()
            .find(|d| d.path == "/dev/gpu1")
            .expect("gpu1");
        assert_eq!((gpu1.major, gpu1.minor), (195, 1));
        let rules = &spec.linux.resources.as_ref().expect("rules").devices;
        assert!(
            rules
                .iter()
                .any(|r| r.access.as_deref() == Some("rw") && r.minor == Some(1))
        );
    }

    #[test]
    fn unknown_devices_and_kinds_are_named() {
        let r = registry(&[(0, "/etc/cdi/gpu.json", SPEC)]);
        for name in ["vendor.example/gpu=gpu9", "other.example/gpu=gpu0"] {
            let e = r.resolve(&[name.into()]).expect_err("unknown");
            assert!(matches!(e, CdiError::Unknown { .. }), "{e}");
            assert!(e.to_string().contains(name) && e.to_string().contains("/var/run/cdi"));
        }
    }

    #[test]
    fn a_later_directory_overrides_and_the_same_directory_conflicts() {
        let other = SPEC.replace("GPU=0", "GPU=override");
        let r = registry(&[
            (0, "/etc/cdi/gpu.json", SPEC),
            (1, "/var/run/cdi/gpu.json", &other),
        ]);
        let resolved = r
            .resolve(&["vendor.example/gpu=gpu0".into()])
            .expect("override");
        assert!(resolved.edits[1].1.env.contains(&"GPU=override".to_owned()));
        let r = registry(&[
            (1, "/var/run/cdi/a.json", SPEC),
            (1, "/var/run/cdi/b.json", &other),
        ]);
        let e = r
            .resolve(&["vendor.example/gpu=gpu0".into()])
            .expect_err("conflict");
        assert!(matches!(e, CdiError::Conflict { .. }), "{e}");
        // A device the two do not share is still usable.
        let r = registry(&[
            (1, "/var/run/cdi/a.json", SPEC),
            (1, "/var/run/cdi/b.json", &other.replace("gpu1", "gpu2")),
        ]);
        r.resolve(&["vendor.example/gpu=gpu2".into()])
            .expect("no conflict");
    }

    #[test]
    fn invalid_specs_are_refused_with_the_reason() {
        let cases = [
            (SPEC.replace("0.6.0", "six"), "cdiVersion"),
            (SPEC.replace("vendor.example/gpu", "gpu"), "vendor/class"),
            (SPEC.replace("\"GPU=1\"", "\"NOEQUALS\""), "KEY=VALUE"),
            (
                SPEC.replace("createContainer", "whenever"),
                "not an OCI hook",
            ),
            (SPEC.replace("\"rw\"", "\"rx\""), "permissions"),
            (SPEC.replace("\"gpu1\"", "\"gpu0\""), "defined twice"),
            (
                SPEC.replace("\"additionalGIDs\"", "\"intelRdt\""),
                "intelRdt",
            ),
            (
                r#"{"cdiVersion": "0.6.0", "kind": "a.b/c", "devices": []}"#.to_owned(),
                "no device",
            ),
        ];
        for (json, why) in cases {
            let e = SpecFile::parse(Path::new("/etc/cdi/x.json"), json.as_bytes()).expect_err(why);
            assert!(e.to_string().contains(why), "{e} lacks {why}");
            assert!(e.to_string().contains("/etc/cdi/x.json"));
        }
    }

    #[test]
    fn device_nodes_the_host_lacks_make_the_device_unusable() {
        let r = registry(&[(0, "/etc/cdi/gpu.json", SPEC)]);
        let mut resolved = r
            .resolve(&["vendor.example/gpu=gpu0".into()])
            .expect("resolve");
        let e = resolved
            .fill_nodes(|_| Err("No such file or directory".into()))
            .expect_err("missing");
        assert!(
            e.to_string().contains("vendor.example/gpu=gpu0")
                && e.to_string().contains("/dev/null")
        );
    }
}

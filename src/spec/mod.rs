//! CRI container config + image config → OCI runtime spec, as a pure function.
//!
//! [`build`] does no I/O: everything it needs from the host or the image (the rootfs's user
//! database, resolved devices, the host's capability bounding set, the pod's namespace paths,
//! a Localhost seccomp profile) is read by the caller and passed in [`SpecInput`]. That keeps
//! the translation unit-, property- and snapshot-testable without root.

pub mod apparmor;
pub mod cdi;
pub mod host;
pub mod mounts;
pub mod oci;
pub mod pod_resources;
pub mod process;
pub mod requests;
pub mod security;

use std::collections::BTreeMap;

use crid_api::cri;

pub use host::{HostResources, Lack, Unenforceable};
pub use mounts::{MountRequest, PodFiles, Propagation};
pub use process::{ImageProcess, ResolvedUser, UserDb, UserRequest};
pub use security::CapabilityRequest;

/// Why a spec could not be built: always a problem with the request (InvalidArgument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field of the request is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field, as named in api.proto (dotted from the container config).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How the container gets a PID namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidNamespace {
    /// Share the host's.
    Host,
    /// A new one of its own.
    Private,
    /// Join this one (the pod's infra container, or a target container).
    Join(String),
}

/// The pod's namespaces as the pod module pinned them; `None` means the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    /// Network namespace path.
    pub network: Option<String>,
    /// IPC namespace path.
    pub ipc: Option<String>,
    /// UTS namespace path.
    pub uts: Option<String>,
    /// PID namespace.
    pub pid: PidNamespace,
    /// Give the container a cgroup namespace (cgroup v2 hosts).
    pub cgroup: bool,
}

/// A device the caller resolved on the host (`stat` of `host_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDevice {
    /// Path in the container.
    pub container_path: String,
    /// `c` or `b`.
    pub kind: char,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits of the node.
    pub file_mode: u32,
    /// cgroup access: a combination of `r`, `w`, `m`.
    pub permissions: String,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container config of CreateContainer.
    pub container: &'a cri::ContainerConfig,
    /// The config of the container's pod.
    pub sandbox: &'a cri::PodSandboxConfig,
    /// The pod's ID.
    pub sandbox_id: &'a str,
    /// The container's ID.
    pub container_id: &'a str,
    /// The image's process defaults.
    pub image: &'a ImageProcess,
    /// The image's user database (from the rootfs).
    pub users: &'a UserDb,
    /// Root filesystem path.
    pub rootfs: &'a str,
    /// The pod's namespaces.
    pub namespaces: &'a PodNamespaces,
    /// The pod's shared files.
    pub files: &'a PodFiles,
    /// cgroup path for the container.
    pub cgroups_path: &'a str,
    /// Capabilities the host can grant (its bounding set), without `CAP_`.
    pub host_capabilities: &'a [String],
    /// `config.devices`, resolved, in order.
    pub devices: &'a [ResolvedDevice],
    /// Every host device, for privileged containers.
    pub host_devices: &'a [ResolvedDevice],
    /// The profile named by a Localhost seccomp request, loaded by the caller.
    pub localhost_seccomp: Option<&'a oci::Seccomp>,
    /// What the host's cgroups can enforce: the rest of `resources` is left out.
    pub host: &'a HostResources,
    /// Whether the host enforces AppArmor profiles (see [`apparmor::profile`]).
    pub apparmor: bool,
    /// Per entry of `container.mounts`: the host path of the image volume the caller
    /// mounted for it (`Mount.image`), `None` for other mounts.
    pub image_volumes: &'a [Option<String>],
}

/// Builds the OCI runtime spec of a container.
pub fn build(input: &SpecInput<'_>) -> Result<oci::Spec, SpecError> {
    let c = input.container;
    let linux = c.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let pod_privileged = input
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if sc.privileged && !pod_privileged {
        return Err(SpecError::Invalid {
            field: "config.linux.security_context.privileged",
            reason: "a privileged container needs a privileged pod (sandbox security_context.privileged)".into(),
        });
    }

    let user = process::resolve_user(
        &UserRequest {
            run_as_user: sc.run_as_user.map(|v| v.value),
            run_as_username: sc.run_as_username.clone(),
            run_as_group: sc
                .run_as_group
                .filter(|_| !crate::faults::on(crate::faults::Fault::IgnoreRunAsGroup))
                .map(|v| v.value),
            supplemental_groups: sc.supplemental_groups.clone(),
            strict_groups: sc.supplemental_groups_policy
                == cri::SupplementalGroupsPolicy::Strict as i32,
        },
        &input.image.user,
        input.users,
    )?;
    let mut container_env: Vec<(String, String)> = Vec::new();
    if !input.sandbox.hostname.is_empty() {
        container_env.push(("HOSTNAME".into(), input.sandbox.hostname.clone()));
    }
    container_env.extend(c.envs.iter().map(|kv| (kv.key.clone(), kv.value.clone())));
    if crate::faults::on(crate::faults::Fault::DropEnvVar) {
        container_env.pop();
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    let capabilities = security::capabilities(
        &CapabilityRequest {
            add: caps.add_capabilities,
            drop: if crate::faults::on(crate::faults::Fault::IgnoreCapDrop) {
                Vec::new()
            } else {
                caps.drop_capabilities
            },
            ambient: caps.add_ambient_capabilities,
        },
        sc.privileged,
        input.host_capabilities,
    )?;

    let (resources, _) =
        host::enforceable(&linux.resources.clone().unwrap_or_default(), input.host);
    let process = oci::Process {
        terminal: c.tty && !crate::faults::on(crate::faults::Fault::IgnoreTty),
        user: oci::User {
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids.clone(),
        },
        args: process::argv(&c.command, &c.args, input.image)?,
        env: process::env(&input.image.env, &container_env, &user.home),
        cwd: process::cwd(
            if crate::faults::on(crate::faults::Fault::IgnoreWorkingDir) {
                ""
            } else {
                &c.working_dir
            },
            &input.image.working_dir,
        )?,
        capabilities: Some(capabilities),
        rlimits: Vec::new(),
        no_new_privileges: sc.no_new_privs
            && !crate::faults::on(crate::faults::Fault::IgnoreNoNewPrivs),
        apparmor_profile: apparmor::profile(&sc, input.apparmor)?
            .oci_name()
            .to_owned(),
        oom_score_adj: linux.resources.as_ref().map(|_| resources.oom_score_adj),
        selinux_label: String::new(),
    };

    let mount_requests = c
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // cri:Mount#image: the image's filesystem, which the caller mounted read-only;
            // the mount is read-only whatever `readonly` says ("all OCI mounts are per
            // feature definition readonly").
            let volume = if m.image.is_some() {
                let source = input.image_volumes.get(i).cloned().flatten();
                Some(source.ok_or_else(|| SpecError::Invalid {
                    field: "config.mounts.image",
                    reason: format!(
                        "mount {}: the image volume is not mounted",
                        m.container_path
                    ),
                })?)
            } else {
                None
            };
            Ok(MountRequest {
                container_path: m.container_path.clone(),
                readonly: m.readonly || volume.is_some(),
                host_path: volume.unwrap_or_else(|| m.host_path.clone()),
                recursive_read_only: m.recursive_read_only,
                propagation: match cri::MountPropagation::try_from(m.propagation) {
                    Ok(cri::MountPropagation::PropagationHostToContainer) => {
                        Propagation::HostToContainer
                    }
                    Ok(cri::MountPropagation::PropagationBidirectional) => {
                        Propagation::Bidirectional
                    }
                    _ => Propagation::Private,
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (cri_mounts, rootfs_propagation) = mounts::cri_mounts(&mount_requests)?;
    let mount_list = mounts::merge(vec![
        mounts::defaults(sc.privileged, input.files.shm.is_none()),
        mounts::pod_files(input.files, sc.readonly_rootfs),
        cri_mounts,
    ]);

    let mut annotations: BTreeMap<String, String> = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    annotations.insert(
        "io.kubernetes.cri.sandbox-id".into(),
        input.sandbox_id.into(),
    );
    if let Some(md) = &c.metadata {
        annotations.insert("io.kubernetes.cri.container-name".into(), md.name.clone());
    }
    if let Some(img) = &c.image {
        annotations.insert("io.kubernetes.cri.image-name".into(), img.image.clone());
    }
    // cri:ContainerConfig#stdin: crid-monitor keeps stdin open for Attach.
    if c.stdin {
        let mode = if c.stdin_once { "once" } else { "open" };
        annotations.insert(crate::monitor::attach::STDIN_ANNOTATION.into(), mode.into());
    }

    let (devices, device_rules) = devices(sc.privileged, input.devices, input.host_devices);
    let seccomp = if sc.privileged {
        None
    } else {
        seccomp(sc.seccomp.as_ref(), input.localhost_seccomp)?
    };
    Ok(oci::Spec {
        oci_version: oci::OCI_VERSION.into(),
        process,
        root: oci::Root {
            path: input.rootfs.into(),
            readonly: sc.readonly_rootfs
                && !crate::faults::on(crate::faults::Fault::IgnoreReadonlyRootfs),
        },
        hostname: String::new(),
        mounts: mount_list,
        annotations,
        hooks: oci::Hooks::default(),
        linux: oci::Linux {
            sysctl: BTreeMap::new(),
            resources: Some(cgroup_resources(&resources, device_rules)),
            cgroups_path: input.cgroups_path.into(),
            namespaces: namespaces(input.namespaces),
            devices,
            seccomp,
            rootfs_propagation: rootfs_propagation.into(),
            masked_paths: if sc.privileged
                || crate::faults::on(crate::faults::Fault::IgnoreMaskedPaths)
            {
                Vec::new()
            } else {
                sc.masked_paths.clone()
            },
            readonly_paths: if sc.privileged {
                Vec::new()
            } else {
                sc.readonly_paths.clone()
            },
            mount_label: String::new(),
        },
    })
}

fn namespaces(ns: &PodNamespaces) -> Vec<oci::Namespace> {
    let join = |kind: &str, path: &Option<String>| {
        path.as_ref().map(|p| oci::Namespace {
            kind: kind.into(),
            path: p.clone(),
        })
    };
    let mut v = vec![oci::Namespace {
        kind: "mount".into(),
        path: String::new(),
    }];
    v.extend(join("network", &ns.network));
    v.extend(join("ipc", &ns.ipc));
    v.extend(join("uts", &ns.uts));
    match &ns.pid {
        PidNamespace::Host => {}
        PidNamespace::Private => v.push(oci::Namespace {
            kind: "pid".into(),
            path: String::new(),
        }),
        PidNamespace::Join(p) => v.push(oci::Namespace {
            kind: "pid".into(),
            path: p.clone(),
        }),
    }
    if ns.cgroup {
        v.push(oci::Namespace {
            kind: "cgroup".into(),
            path: String::new(),
        });
    }
    v
}

fn devices(
    privileged: bool,
    requested: &[ResolvedDevice],
    host: &[ResolvedDevice],
) -> (Vec<oci::Device>, Vec<oci::DeviceRule>) {
    let node = |d: &ResolvedDevice| oci::Device {
        kind: d.kind.to_string(),
        path: d.container_path.clone(),
        major: d.major,
        minor: d.minor,
        file_mode: Some(d.file_mode),
        uid: Some(0),
        gid: Some(0),
    };
    if privileged {
        let rule = oci::DeviceRule {
            allow: true,
            kind: None,
            major: None,
            minor: None,
            access: Some("rwm".into()),
        };
        return (host.iter().map(node).collect(), vec![rule]);
    }
    // Deny everything, then allow what was asked for; runc adds its standard devices itself.
    let mut rules = vec![oci::DeviceRule {
        allow: false,
        kind: None,
        major: None,
        minor: None,
        access: Some("rwm".into()),
    }];
    rules.extend(requested.iter().map(|d| oci::DeviceRule {
        allow: true,
        kind: Some(d.kind.to_string()),
        major: Some(d.major),
        minor: Some(d.minor),
        access: Some(d.permissions.clone()),
    }));
    (requested.iter().map(node).collect(), rules)
}

/// The cgroup resources of a container config alone, without device rules and without
/// what the host cannot enforce: what UpdateContainerResources hands to the runtime's
/// `update`.
pub fn resources(container: &cri::ContainerConfig, host: &HostResources) -> oci::Resources {
    let r = container
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .unwrap_or_default();
    cgroup_resources(&host::enforceable(&r, host).0, Vec::new())
}

/// What UpdateContainerResources hands the runtime's `update`, and the hugetlb limits crid
/// writes itself. `runc update` (and the runc shim's Update) ignore `hugepageLimits`: on
/// cgroup v2 they travel as their unified keys `hugetlb.<size>.max`, which `update` writes;
/// on cgroup v1 they come back second, for `hugetlb.<size>.limit_in_bytes`.
pub fn update_resources(
    container: &cri::ContainerConfig,
    host: &HostResources,
) -> (oci::Resources, Vec<oci::HugepageLimit>) {
    let mut r = resources(container, host);
    if r.hugepage_limits.is_empty() {
        return (r, Vec::new());
    }
    if host.unified_controllers.is_some() {
        for h in &r.hugepage_limits {
            r.unified
                .entry(format!("hugetlb.{}.max", h.page_size))
                .or_insert_with(|| h.limit.to_string());
        }
        (r, Vec::new())
    } else {
        let v1 = r.hugepage_limits.clone();
        (r, v1)
    }
}

/// CRI resources → OCI cgroup resources; CRI's zero values mean "not set".
fn cgroup_resources(
    r: &cri::LinuxContainerResources,
    devices: Vec<oci::DeviceRule>,
) -> oci::Resources {
    let positive = |v: i64| (v > 0).then_some(v);
    let memory =
        (r.memory_limit_in_bytes > 0 || r.memory_swap_limit_in_bytes > 0).then(|| oci::Memory {
            limit: positive(r.memory_limit_in_bytes)
                .filter(|_| !crate::faults::on(crate::faults::Fault::MemoryLimitDropped)),
            swap: positive(r.memory_swap_limit_in_bytes),
        });
    let cpu = oci::Cpu {
        shares: positive(r.cpu_shares).map(|v| v as u64),
        quota: positive(r.cpu_quota)
            .filter(|_| !crate::faults::on(crate::faults::Fault::CpuQuotaDropped)),
        period: positive(r.cpu_period).map(|v| v as u64),
        cpus: r.cpuset_cpus.clone(),
        mems: r.cpuset_mems.clone(),
    };
    oci::Resources {
        devices,
        memory,
        cpu: (cpu != oci::Cpu::default()).then_some(cpu),
        pids: None,
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| oci::HugepageLimit {
                page_size: h.page_size.clone(),
                limit: h.limit,
            })
            .collect(),
        unified: r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Seccomp: absent means unconfined (the kubelet always sends a profile when one applies).
fn seccomp(
    profile: Option<&cri::SecurityProfile>,
    localhost: Option<&oci::Seccomp>,
) -> Result<Option<oci::Seccomp>, SpecError> {
    let Some(p) = profile else { return Ok(None) };
    match cri::security_profile::ProfileType::try_from(p.profile_type) {
        Ok(cri::security_profile::ProfileType::RuntimeDefault) => Ok((!crate::faults::on(
            crate::faults::Fault::SeccompDefaultUnconfined,
        ))
        .then(security::runtime_default_seccomp)),
        Ok(cri::security_profile::ProfileType::Unconfined) => Ok(None),
        Ok(cri::security_profile::ProfileType::Localhost) => match localhost {
            Some(profile) => Ok(Some(profile.clone())),
            None => Err(SpecError::Invalid {
                field: "config.linux.security_context.seccomp.localhost_ref",
                reason: format!("seccomp profile `{}` was not loaded", p.localhost_ref),
            }),
        },
        Err(_) => Err(SpecError::Invalid {
            field: "config.linux.security_context.seccomp.profile_type",
            reason: format!("unknown profile type {}", p.profile_type),
        }),
    }
}

#[cfg(test)]
mod tests;

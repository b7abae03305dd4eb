//! The sandbox lifecycle: RunPodSandbox, StopPodSandbox, RemovePodSandbox.
//!
//! A pod is its pinned namespaces (network, IPC, UTS), its shared files (hostname, hosts,
//! resolv.conf), its /dev/shm, and, only when its containers share a PID namespace, an
//! infra container from the pause image to be that namespace's PID 1.

use std::path::PathBuf;
use std::sync::Arc;

use cri::NamespaceMode;
use crid_api::cri;

use super::files;
use super::namespaces::{self, PinRequest};
use crate::config::CgroupDriver;
use crate::lifecycle::{Lifecycle, LifecycleError, Object, Result, io};
use crate::spec::{self, PidNamespace, PodFiles, PodNamespaces, SpecInput};
use crate::state::{self, PodRecord, PodState, records::InfraRecord};

/// The namespace options of a pod config (all `POD` when absent).
pub fn namespace_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// cri:PodSandboxConfig#log_directory: an absolute host path; crid creates directories and
/// files below it as root, so it must say plainly where (no `..`, no NUL).
fn check_log_directory(dir: &str) -> std::result::Result<(), String> {
    if dir.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let path = std::path::Path::new(dir);
    if !path.is_absolute() {
        return Err(format!("`{dir}` is not an absolute path"));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!("`{dir}` contains `..`"));
    }
    Ok(())
}

fn mode(v: i32) -> NamespaceMode {
    NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod)
}

/// The pod's paths in its volatile directory.
pub(crate) struct PodPaths {
    pub dir: PathBuf,
}

impl PodPaths {
    pub fn ns(&self) -> PathBuf {
        self.dir.join("ns")
    }
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
}

impl Lifecycle {
    pub(crate) fn pod_paths(&self, id: &str) -> PodPaths {
        PodPaths {
            dir: self.layout.pod_dir(id),
        }
    }

    /// Checks a RunPodSandbox config; returns the namespaced sysctls.
    fn validate_pod(config: &cri::PodSandboxConfig) -> Result<Vec<(String, String)>> {
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| LifecycleError::invalid("config.metadata", "is required"))?;
        for (field, v) in [
            ("config.metadata.name", &md.name),
            ("config.metadata.namespace", &md.namespace),
            ("config.metadata.uid", &md.uid),
        ] {
            if v.is_empty() {
                return Err(LifecycleError::invalid(field, "must not be empty"));
            }
        }
        if !config.hostname.is_empty() {
            files::validate_hostname(&config.hostname)
                .map_err(|e| LifecycleError::invalid(format!("config.{}", e.field), e.reason))?;
        }
        files::resolv_conf(config.dns_config.as_ref())
            .map_err(|e| LifecycleError::invalid(format!("config.{}", e.field), e.reason))?;
        if !config.log_directory.is_empty() {
            check_log_directory(&config.log_directory)
                .map_err(|reason| LifecycleError::invalid("config.log_directory", reason))?;
        }
        let host_net = mode(namespace_options(config).network) == NamespaceMode::Node;
        let mut sysctls = Vec::new();
        if let Some(linux) = &config.linux {
            for (k, v) in &linux.sysctls {
                match namespaces::sysctl_namespace(k) {
                    None => {
                        return Err(LifecycleError::invalid(
                            "config.linux.sysctls",
                            format!("{k} is not a namespaced sysctl a pod may set"),
                        ));
                    }
                    Some("net") if host_net => {
                        return Err(LifecycleError::invalid(
                            "config.linux.sysctls",
                            format!(
                                "{k} needs the pod's own network namespace (the pod uses the host's)"
                            ),
                        ));
                    }
                    Some(_) => sysctls.push((k.clone(), v.clone())),
                }
            }
        }
        Ok(sysctls)
    }

    /// cri:RuntimeService.RunPodSandbox. Returns the new sandbox ID. On any failure
    /// everything done so far is undone.
    pub async fn run_pod(
        self: &Arc<Self>,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String> {
        crate::spec::requests::check_pod(&config).map_err(
            |crate::spec::SpecError::Invalid { field, reason }| {
                LifecycleError::invalid(field, reason)
            },
        )?;
        let mut sysctls = Self::validate_pod(&config)?;
        // A sysctl this kernel lacks cannot be set; drop it unless told to refuse.
        let mut lacking = Vec::new();
        sysctls.retain(|(k, _)| {
            let exists = crate::host::sysctl_exists(k);
            if !exists {
                lacking.push(k.clone());
            }
            exists
        });
        for k in lacking {
            if !self.tolerate_unsupported {
                return Err(LifecycleError::FailedPrecondition(format!(
                    "config.linux.sysctls: this kernel has no sysctl {k} (crid is configured to refuse what the host cannot enforce)"
                )));
            }
            tracing::debug!(sysctl = %k, "dropped: this kernel has no such sysctl");
        }
        let (handler, _) = self.runtime(handler)?;
        let id = state::new_id().map_err(io("generating a sandbox ID"))?;
        let cgroup_parent = super::cgroup::normalize(
            self.cgroup_driver,
            config
                .linux
                .as_ref()
                .map_or("", |l| l.cgroup_parent.as_str()),
        )
        .map_err(|e| LifecycleError::invalid("config.linux.cgroup_parent", e.to_string()))?;
        let record = PodRecord {
            id: id.clone(),
            config,
            runtime_handler: handler,
            state: PodState::Creating,
            created_at_ns: state::now_ns(),
            netns: None,
            ipcns: None,
            utsns: None,
            infra: None,
            ips: Vec::new(),
            network_attached: false,
            cgroup_parent,
        };
        let pod = Object::new(&id, self.layout.pod_record(&id), record.clone());
        let _op = pod.lock().await;
        {
            let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
            let name = record.reserved_name();
            if let Some(other) = pods
                .values()
                .find(|p| p.read(|r| r.reserved_name() == name))
            {
                return Err(LifecycleError::AlreadyExists(format!(
                    "pod name {name} is reserved by sandbox {}",
                    other.id()
                )));
            }
            pods.insert(id.clone(), pod.clone());
        }
        let setup = async {
            pod.persist()
                .map_err(io(format!("pod {id}: writing its record")))?;
            self.setup_pod(&pod, &sysctls).await
        };
        match setup.await {
            Ok(()) => {
                pod.update(|r| r.state = PodState::Ready)
                    .map_err(io(format!("pod {id}: writing its record")))?;
                tracing::info!(pod = %id, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod = %id, "RunPodSandbox failed, rolling back: {e}");
                if let Err(c) = self.release_pod(&pod).await {
                    tracing::error!(pod = %id, "rollback incomplete: {c}");
                }
                let _ = crate::state::remove_dir_all(&self.layout.pod_dir(&id));
                let _ = pod.forget();
                self.pods
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(e)
            }
        }
    }

    async fn setup_pod(
        self: &Arc<Self>,
        pod: &Arc<Object<PodRecord>>,
        sysctls: &[(String, String)],
    ) -> Result<()> {
        let record = pod.get();
        let id = record.id.clone();
        let paths = self.pod_paths(&id);
        std::fs::create_dir_all(&paths.dir)
            .map_err(io(format!("pod {id}: creating its directory")))?;
        let ns = namespace_options(&record.config);
        let host_net = mode(ns.network) == NamespaceMode::Node;
        let host_ipc = mode(ns.ipc) == NamespaceMode::Node;
        let c = &record.config;

        // Shared files. A host-network pod sees the host's names.
        let hostname = if host_net || c.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            c.hostname.clone()
        };
        let resolv = match files::resolv_conf(c.dns_config.as_ref()) {
            Ok(Some(text)) => text,
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            files::hosts(&hostname, &[])
        };
        for (path, text) in [
            (paths.hostname(), format!("{hostname}\n")),
            (paths.hosts(), hosts),
            (paths.resolv_conf(), resolv),
        ] {
            state::write_atomic(&path, text.as_bytes())
                .map_err(io(format!("pod {id}: writing {}", path.display())))?;
        }
        if !host_ipc {
            namespaces::mount_shm(&paths.shm())
                .map_err(LifecycleError::internal(format!("pod {id}")))?;
        }

        let req = PinRequest {
            dir: paths.ns(),
            net: !host_net,
            ipc: !host_ipc,
            uts: (!host_net).then(|| hostname.clone()),
            sysctls: sysctls.to_vec(),
        };
        let pinned = tokio::task::spawn_blocking(move || namespaces::pin(&req))
            .await
            .map_err(LifecycleError::internal(format!(
                "pod {id}: namespace task"
            )))?
            .map_err(|e| LifecycleError::Internal {
                what: format!("pod {id}: creating its namespaces"),
                detail: e.to_string(),
            })?;
        pod.update(|r| {
            r.netns = pinned.net.clone();
            r.ipcns = pinned.ipc.clone();
            r.utsns = pinned.uts.clone();
        })
        .map_err(io(format!("pod {id}: writing its record")))?;

        if let Some(netns) = &pinned.net {
            self.attach_network(pod, netns, &hostname).await?;
        }
        if mode(ns.pid) == NamespaceMode::Pod {
            self.start_infra(pod).await?;
        }
        Ok(())
    }

    /// ADD on the default CNI network; the pod's IPs go into its record and /etc/hosts.
    /// Without any network configuration the pod keeps a namespace with only `lo` (the
    /// kubelet runs no such pod while Status says NetworkReady is false).
    async fn attach_network(
        &self,
        pod: &Arc<Object<PodRecord>>,
        netns: &std::path::Path,
        hostname: &str,
    ) -> Result<()> {
        let record = pod.get();
        let id = &record.id;
        let md = record.metadata();
        let port_mappings = record
            .config
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let port = |v: i32, field: &str| {
                    u16::try_from(v).map_err(|_| {
                        LifecycleError::invalid(
                            format!("config.port_mappings.{field}"),
                            format!("{v} is not a port"),
                        )
                    })
                };
                Ok(crate::network::PortMapping {
                    host_port: port(p.host_port, "host_port")?,
                    container_port: port(p.container_port, "container_port")?,
                    protocol: match cri::Protocol::try_from(p.protocol) {
                        Ok(cri::Protocol::Udp) => "udp",
                        Ok(cri::Protocol::Sctp) => "sctp",
                        _ => "tcp",
                    }
                    .to_owned(),
                    host_ip: p.host_ip.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        pod.update(|r| r.network_attached = true)
            .map_err(io(format!("pod {id}: writing its record")))?;
        let attached = self
            .cni
            .setup(&crate::network::Attachment {
                container_id: id.clone(),
                netns: netns.to_path_buf(),
                ifname: "eth0".into(),
                pod_namespace: md.namespace,
                pod_name: md.name,
                pod_uid: md.uid,
                port_mappings,
            })
            .await;
        let network = match attached {
            Ok(n) => n,
            Err(e) => {
                // A failed ADD has already been rolled back by the invoker (DEL of the chain);
                // no network configured ran no plugin at all.
                pod.update(|r| r.network_attached = false)
                    .map_err(io(format!("pod {id}: writing its record")))?;
                if let crate::network::CniError::NoNetwork { dir } = &e {
                    tracing::warn!(pod = %id, dir = %dir.display(), "no CNI network configured: the pod has loopback only");
                    return Ok(());
                }
                return Err(e.into());
            }
        };
        let ips: Vec<String> = network.ips.iter().map(ToString::to_string).collect();
        tracing::info!(pod = %id, network = %network.network, ?ips, "pod network attached");
        state::write_atomic(
            &self.pod_paths(id).hosts(),
            files::hosts(hostname, &network.ips).as_bytes(),
        )
        .map_err(io(format!("pod {id}: writing its hosts file")))?;
        pod.update(|r| r.ips = ips)
            .map_err(io(format!("pod {id}: writing its record")))?;
        Ok(())
    }

    /// Runs the pause image as the PID 1 of the pod's shared PID namespace.
    async fn start_infra(self: &Arc<Self>, pod: &Arc<Object<PodRecord>>) -> Result<()> {
        let record = pod.get();
        let id = record.id.clone();
        let (_, runtime) = self.runtime(&record.runtime_handler)?;
        let field = "image.pause_image";
        let image = match self.images.find(&self.pause_image, field)? {
            Some(i) => i,
            None => {
                tracing::info!(image = %self.pause_image, "pulling the pause image");
                self.images
                    .pull(&self.pause_image, Default::default())
                    .await
                    .map_err(|e| LifecycleError::Internal {
                        what: format!("pod {id}: pulling the pause image {}", self.pause_image),
                        detail: e.to_string(),
                    })?;
                self.images.find(&self.pause_image, field)?.ok_or_else(|| {
                    LifecycleError::FailedPrecondition(format!(
                        "pause image {} is missing after its pull",
                        self.pause_image
                    ))
                })?
            }
        };
        let (process, _) = self.images.process_config(&image)?;
        let rootfs = self.mount_rootfs(&id, &image)?;
        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "POD".into(),
                attempt: 0,
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    no_new_privs: true,
                    capabilities: Some(cri::Capability {
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let paths = self.pod_paths(&id);
        let spec = spec::build(&SpecInput {
            container: &container,
            sandbox: &record.config,
            sandbox_id: &id,
            container_id: &id,
            image: &process,
            users: &crate::container::bundle::user_db(&rootfs),
            rootfs: &rootfs.display().to_string(),
            namespaces: &self.pod_namespaces(&record, PidNamespace::Private),
            files: &PodFiles {
                hostname: Some(paths.hostname().display().to_string()),
                hosts: None,
                resolv_conf: None,
                shm: None,
            },
            cgroups_path: &self.cgroups_path(&record, &id),
            host_capabilities: &self.host_capabilities,
            devices: &[],
            host_devices: &[],
            localhost_seccomp: None,
            host: &self.host_resources,
        })
        .map_err(|e| LifecycleError::Internal {
            what: format!("pod {id}: the infra container's spec"),
            detail: e.to_string(),
        })?;
        let mut spec = spec;
        spec.annotations
            .insert("io.kubernetes.cri.container-type".into(), "sandbox".into());
        let created = self
            .create_in_runtime(&runtime, &id, &spec, &PathBuf::from("/dev/null"), &record)
            .await?;
        pod.update(|r| {
            r.infra = Some(InfraRecord {
                id: id.clone(),
                pid: created.pid,
                image_id: image.id.clone(),
            })
        })
        .map_err(io(format!("pod {id}: writing its record")))?;
        runtime
            .start(&id)
            .await
            .map_err(LifecycleError::runtime(format!(
                "pod {id}: starting the infra container"
            )))?;
        Ok(())
    }

    /// The namespaces a container of `pod` joins.
    pub(crate) fn pod_namespaces(&self, pod: &PodRecord, pid: PidNamespace) -> PodNamespaces {
        let s = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        PodNamespaces {
            network: s(&pod.netns),
            ipc: s(&pod.ipcns),
            uts: s(&pod.utsns),
            pid,
            cgroup: crate::host::cgroup_mode() == crate::host::CgroupMode::Unified,
        }
    }

    /// The cgroups path of container `id` in `pod`, in the configured driver's syntax.
    pub(crate) fn cgroups_path(&self, pod: &PodRecord, id: &str) -> String {
        match self.cgroup_driver {
            CgroupDriver::Cgroupfs => {
                format!("{}/crid-{id}", pod.cgroup_parent.trim_end_matches('/'))
            }
            CgroupDriver::Systemd => format!("{}:crid:{id}", pod.cgroup_parent),
        }
    }

    /// Stops the pod's infra container, unpins its namespaces and unmounts its shm.
    /// Idempotent; every step is tried.
    pub(crate) async fn release_pod(&self, pod: &Arc<Object<PodRecord>>) -> Result<()> {
        let record = pod.get();
        let id = &record.id;
        let mut first_err = None;
        if let Ok((_, runtime)) = self.runtime(&record.runtime_handler) {
            // The infra container shares the pod's ID; delete --force kills it.
            if let Err(e) = self
                .remove_container_resources(&runtime, id, Some(&record))
                .await
            {
                first_err.get_or_insert(e);
            }
        }
        let paths = self.pod_paths(id);
        if record.network_attached {
            let netns = paths.ns().join("net");
            match self.cni.teardown(id, Some(&netns)).await {
                Ok(()) => {
                    pod.update(|r| {
                        r.network_attached = false;
                        r.ips.clear();
                    })
                    .map_err(io(format!("pod {id}: writing its record")))?;
                }
                // The namespace stays pinned, so a retried StopPodSandbox can try again.
                Err(e) => return Err(e.into()),
            }
        }
        for p in ["net", "ipc", "uts"].map(|k| paths.ns().join(k)) {
            if let Err(e) = namespaces::unpin(&p) {
                first_err.get_or_insert(io(format!("pod {id}: unpinning {}", p.display()))(e));
            }
        }
        if let Err(e) = namespaces::unmount(&paths.shm()) {
            first_err.get_or_insert(io(format!("pod {id}: unmounting its shm"))(e));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// cri:RuntimeService.StopPodSandbox: stops every container of the pod (forcibly: the
    /// kubelet has already stopped them gracefully), releases the namespaces. Idempotent;
    /// an unknown ID is not an error.
    pub async fn stop_pod(self: &Arc<Self>, id: &str) -> Result<()> {
        let Some(pod) = self.pod(id) else {
            return Ok(());
        };
        let _op = pod.lock().await;
        for c in self.all_containers(Some(id)) {
            self.stop_container_obj(&c, 0).await?;
        }
        self.release_pod(&pod).await?;
        pod.update(|r| {
            r.state = PodState::NotReady;
            r.infra = None;
        })
        .map_err(io(format!("pod {id}: writing its record")))?;
        tracing::info!(pod = %id, "pod sandbox stopped");
        Ok(())
    }

    /// cri:RuntimeService.RemovePodSandbox: stops and removes every container and
    /// everything the pod has on disk. Idempotent; an unknown ID is not an error.
    pub async fn remove_pod(self: &Arc<Self>, id: &str) -> Result<()> {
        let Some(pod) = self.pod(id) else {
            return Ok(());
        };
        let _op = pod.lock().await;
        for c in self.all_containers(Some(id)) {
            self.remove_container_obj(&c).await?;
        }
        self.release_pod(&pod).await?;
        crate::state::remove_dir_all(&self.layout.pod_dir(id))
            .map_err(io(format!("pod {id}: removing its directory")))?;
        pod.forget()
            .map_err(io(format!("pod {id}: removing its record")))?;
        self.pods
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        tracing::info!(pod = %id, "pod sandbox removed");
        Ok(())
    }

    /// A pod's record (cri:RuntimeService.PodSandboxStatus).
    pub fn pod_status(&self, id: &str) -> Result<PodRecord> {
        self.pod(id)
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating)
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "pod sandbox",
                id: id.to_owned(),
            })
    }

    /// Every pod past creation (cri:RuntimeService.ListPodSandbox; the edge filters).
    pub fn list_pods(&self) -> Vec<PodRecord> {
        let mut v: Vec<PodRecord> = self
            .all_pods()
            .iter()
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating)
            .collect();
        v.sort_by_key(|a| a.created_at_ns);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::check_log_directory;

    #[test]
    fn log_directory_is_absolute_and_plain() {
        assert_eq!(check_log_directory("/var/log/pods/ns_name_uid"), Ok(()));
        for bad in ["etc", "var/log/pods", "/var/log/../../etc", "/a\0b"] {
            assert!(check_log_directory(bad).is_err(), "{bad}");
        }
    }
}

//! The sandbox lifecycle: RunPodSandbox, StopPodSandbox, RemovePodSandbox.
//!
//! A pod is its pinned namespaces (network, IPC, UTS), its shared files (hostname, hosts,
//! resolv.conf), its /dev/shm, and, only when its containers share a PID namespace, an
//! infra container from the pause image to be that namespace's PID 1.

use std::path::PathBuf;
use std::sync::Arc;

use cri::NamespaceMode;
use crid_api::cri;

use super::security::{self, SandboxSecurity};
use super::{files, sysctl};
use crate::container::ContainerService;
use crate::error::{Error, Result};
use crate::host::PinRequest;
use crate::network::Attacher;
use crate::registry::{Object, Registry};
use crate::runtime::RuntimeHandler;
use crate::spec::{self, PidNamespace, PodFiles, SpecInput, pod_resources};
use crate::state::{self, Layout, PodRecord, PodState, records::InfraRecord};

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

/// Pod-level resources (cri:LinuxPodSandboxConfig#overhead, #resources): values that
/// cannot be valid are refused, naming the field under `prefix`.
fn check_resources(prefix: &str, r: Option<&cri::LinuxContainerResources>) -> Result<()> {
    let Some(r) = r else { return Ok(()) };
    pod_resources::check(r).map_err(|e| Error::invalid(format!("{prefix}.{}", e.field), e.reason))
}

/// Longest pod name, namespace or UID: a Kubernetes object name (DNS subdomain) is at most
/// 253 bytes.
const MAX_METADATA_LEN: usize = 253;

fn mode(v: i32) -> NamespaceMode {
    NamespaceMode::try_from(v).unwrap_or(NamespaceMode::Pod)
}

/// The pod service. It holds the container service: a pod's stop and removal stop and
/// remove its containers first.
#[derive(Debug)]
pub struct PodService {
    registry: Arc<Registry>,
    containers: Arc<ContainerService>,
    network: Arc<dyn Attacher>,
    layout: Layout,
}

impl PodService {
    /// A service over these parts.
    pub fn new(
        registry: Arc<Registry>,
        containers: Arc<ContainerService>,
        network: Arc<dyn Attacher>,
    ) -> Arc<Self> {
        let layout = containers.layout().clone();
        Arc::new(PodService {
            registry,
            containers,
            network,
            layout,
        })
    }

    /// The container service.
    pub fn containers(&self) -> &Arc<ContainerService> {
        &self.containers
    }

    /// Checks a RunPodSandbox config; returns the namespaced sysctls.
    fn validate_pod(config: &cri::PodSandboxConfig) -> Result<Vec<(String, String)>> {
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::invalid("config.metadata", "is required"))?;
        for (field, v) in [
            ("config.metadata.name", &md.name),
            ("config.metadata.namespace", &md.namespace),
            ("config.metadata.uid", &md.uid),
        ] {
            if v.is_empty() {
                return Err(Error::invalid(field, "must not be empty"));
            }
            // Kubernetes names are at most 253 bytes; these go into CNI_ARGS, whose one
            // environment string the kernel caps at 128 KiB.
            if v.len() > MAX_METADATA_LEN {
                return Err(Error::invalid(
                    field,
                    format!("is {} bytes, more than {MAX_METADATA_LEN}", v.len()),
                ));
            }
        }
        if !config.hostname.is_empty() {
            files::validate_hostname(&config.hostname)
                .map_err(|e| Error::invalid(format!("config.{}", e.field), e.reason))?;
        }
        files::resolv_conf(config.dns_config.as_ref())
            .map_err(|e| Error::invalid(format!("config.{}", e.field), e.reason))?;
        if !config.log_directory.is_empty() {
            check_log_directory(&config.log_directory)
                .map_err(|reason| Error::invalid("config.log_directory", reason))?;
        }
        let host_net = mode(namespace_options(config).network) == NamespaceMode::Node;
        let mut sysctls = Vec::new();
        if let Some(linux) = &config.linux {
            check_resources("config.linux.overhead", linux.overhead.as_ref())?;
            check_resources("config.linux.resources", linux.resources.as_ref())?;
            for (k, v) in &linux.sysctls {
                match sysctl::sysctl_namespace(k) {
                    None => {
                        return Err(Error::invalid(
                            "config.linux.sysctls",
                            format!("{k} is not a namespaced sysctl a pod may set"),
                        ));
                    }
                    Some("net") if host_net => {
                        return Err(Error::invalid(
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
    pub async fn run(
        self: &Arc<Self>,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String> {
        let mut sysctls = Self::validate_pod(&config)?;
        // The sandbox's own confinement is checked whether or not an infra process runs.
        let security = security::sandbox_security(&config)?;
        self.containers.prepare_apparmor(&security.context).await?;
        sysctls.retain(|_| !crate::faults::on(crate::faults::Fault::SysctlsDropped));
        // A sysctl this kernel lacks cannot be set; drop it unless told to refuse.
        let mut lacking = Vec::new();
        sysctls.retain(|(k, _)| {
            let exists = self.containers.host().sysctl_exists(k);
            if !exists {
                lacking.push(k.clone());
            }
            exists
        });
        for k in lacking {
            if !self.containers.settings().tolerate_unsupported {
                return Err(Error::Unsupported(format!(
                    "config.linux.sysctls: this kernel has no sysctl {k} (crid is configured to refuse what the host cannot enforce)"
                )));
            }
            tracing::debug!(sysctl = %k, "dropped: this kernel has no such sysctl");
        }
        let (handler, runtime) = self.containers.runtimes().get(handler).await?;
        // The kubelet asks for a user namespace only of a handler whose Status features
        // say it can; anyone else is told which handler lacks what.
        if let Some(mode) = crate::spec::requests::pod_user_namespace(&config)
            && !runtime.features().user_namespaces
        {
            return Err(Error::Unsupported(format!(
                "config.linux.security_context.namespace_options.userns_options.mode: a user namespace ({mode}) needs a handler that supports user namespaces; runtime handler {handler} does not (Status reports user_namespaces false)"
            )));
        }
        let id = state::new_id().map_err(Error::host("generating a sandbox ID"))?;
        let cgroup_parent = super::cgroup::normalize(
            self.containers.settings().cgroup_driver,
            config
                .linux
                .as_ref()
                .map_or("", |l| l.cgroup_parent.as_str()),
        )
        .map_err(|e| Error::invalid("config.linux.cgroup_parent", e.to_string()))?;
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
        let name = record.reserved_name();
        let pod = self
            .registry
            .reserve_pod(record)
            .map_err(|other| Error::NameReserved {
                kind: "pod",
                name,
                by: format!("sandbox {other}"),
            })?;
        let _op = pod.lock().await;
        let setup = async {
            pod.persist().await?;
            crate::failpoint!("run-pod.recorded");
            self.setup(&pod, &sysctls, &runtime, &security).await
        };
        match setup.await {
            Ok(()) => {
                pod.update(|r| r.state = PodState::Ready).await?;
                crate::failpoint!("run-pod.ready");
                tracing::info!(pod = %id, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod = %id, "RunPodSandbox failed, rolling back: {e}");
                let mut cleanup = self.release(&pod).await;
                if let Err(d) = state::remove_dir_all(&self.layout.pod_dir(&id)) {
                    cleanup = cleanup.and(Err(Error::host(format!(
                        "pod {id}: removing its directory"
                    ))(d)));
                }
                if let Err(f) = pod.forget().await {
                    cleanup = cleanup.and(Err(f.into()));
                }
                self.registry.drop_pod(&id);
                if let Err(c) = &cleanup {
                    tracing::error!(pod = %id, "rollback incomplete: {c}");
                }
                Err(e.with_cleanup(cleanup))
            }
        }
    }

    async fn setup(
        self: &Arc<Self>,
        pod: &Arc<Object<PodRecord>>,
        sysctls: &[(String, String)],
        runtime: &Arc<dyn RuntimeHandler>,
        security: &SandboxSecurity,
    ) -> Result<()> {
        let record = pod.get();
        let id = record.id.clone();
        let paths = self.layout.pod_files(&id);
        std::fs::create_dir_all(&paths.dir)
            .map_err(Error::host(format!("pod {id}: creating its directory")))?;
        let ns = namespace_options(&record.config);
        let host_net = mode(ns.network) == NamespaceMode::Node;
        let host_ipc = mode(ns.ipc) == NamespaceMode::Node;
        let c = &record.config;

        // Shared files. A host-network pod sees the host's names.
        let host = self.containers.host().clone();
        let hostname = if host_net || c.hostname.is_empty() {
            host.hostname()
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
            // The pod directory is on the runroot (a tmpfs): atomic, not durable.
            state::write_volatile(&path, text.as_bytes())
                .map_err(Error::host(format!("pod {id}: writing {}", path.display())))?;
        }
        if !host_ipc {
            host.mount_shm(&paths.shm()).map_err(|e| Error::Host {
                what: format!("pod {id}: {}", e.what),
                source: e.source,
            })?;
            crate::failpoint!("run-pod.shm-mounted");
        }

        let req = PinRequest {
            dir: paths.ns(),
            net: !host_net,
            ipc: !host_ipc,
            uts: (!host_net).then(|| {
                if crate::faults::on(crate::faults::Fault::HostnameIgnored) {
                    String::from("localhost")
                } else {
                    hostname.clone()
                }
            }),
            sysctls: sysctls.to_vec(),
        };
        let uts_name = req.uts.clone();
        let pinned = tokio::task::spawn_blocking(move || host.pin_namespaces(&req))
            .await
            .map_err(|e| {
                Error::host(format!("pod {id}: namespace task"))(std::io::Error::other(
                    e.to_string(),
                ))
            })?
            .map_err(|e| {
                if e.is_rejected_sysctl_value() {
                    return Error::invalid(
                        "config.linux.sysctls",
                        format!("the kernel refused it: {}: {}", e.what, e.source),
                    );
                }
                Error::Host {
                    what: format!("pod {id}: creating its namespaces: {}", e.what),
                    source: e.source,
                }
            })?;
        crate::failpoint!("run-pod.namespaces-pinned");
        pod.update(|r| {
            r.netns = pinned.net.clone();
            r.ipcns = pinned.ipc.clone();
            r.utsns = pinned.uts.clone();
        })
        .await?;

        if let Some(netns) = &pinned.net {
            self.attach_network(pod, netns, &hostname).await?;
        }
        if mode(ns.pid) == NamespaceMode::Pod || runtime.needs_infra() {
            self.start_infra(pod, runtime.as_ref(), security, uts_name.as_deref())
                .await?;
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
                        Error::invalid(
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
        pod.update(|r| r.network_attached = true).await?;
        let attached = self
            .network
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
            Ok(n) => {
                crate::failpoint!("run-pod.cni-added");
                n
            }
            Err(e) => {
                // A failed ADD has already been rolled back by the invoker (DEL of the chain);
                // no network configured ran no plugin at all.
                pod.update(|r| r.network_attached = false).await?;
                if let crate::network::CniError::NoNetwork { dir } = &e {
                    tracing::warn!(pod = %id, dir = %dir.display(), "no CNI network configured: the pod has loopback only");
                    return Ok(());
                }
                return Err(e.into());
            }
        };
        let ips: Vec<String> = network.ips.iter().map(ToString::to_string).collect();
        tracing::info!(pod = %id, network = %network.network, ?ips, "pod network attached");
        state::write_volatile(
            &self.layout.pod_files(id).hosts(),
            files::hosts(hostname, &network.ips).as_bytes(),
        )
        .map_err(Error::host(format!("pod {id}: writing its hosts file")))?;
        pod.update(|r| r.ips = ips).await?;
        Ok(())
    }

    /// Runs the pause image as the PID 1 of the pod's shared PID namespace.
    /// `uts_name`: the name set in the pod's own UTS namespace, if it has one.
    async fn start_infra(
        self: &Arc<Self>,
        pod: &Arc<Object<PodRecord>>,
        runtime: &dyn RuntimeHandler,
        security: &SandboxSecurity,
        uts_name: Option<&str>,
    ) -> Result<()> {
        let record = pod.get();
        let id = record.id.clone();
        let c = &self.containers;
        let field = "image.pause_image";
        let pause = c.settings().pause_image.clone();
        let image = match c.images().find(&pause, field)? {
            Some(i) => i,
            None => {
                tracing::info!(image = %pause, "pulling the pause image");
                c.images().pull(&pause).await?;
                c.images().find(&pause, field)?.ok_or_else(|| {
                    Error::Unsupported(format!("pause image {pause} is missing after its pull"))
                })?
            }
        };
        let (process, _) = c.images().process_config(&image)?;
        let rootfs = c.mount_rootfs(&id, &image)?;
        crate::failpoint!("run-pod.infra-rootfs-mounted");
        // cri:RuntimeService.RunPodSandbox#config.linux.security_context: the seccomp and
        // AppArmor profiles, user, groups and read-only root the pod asks for apply to its
        // sandbox process (checked, and AppArmor's loaded, by `run`).
        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "POD".into(),
                attempt: 0,
            }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(security.context.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let paths = self.layout.pod_files(&id);
        let settings = c.settings();
        let mut spec = spec::build(&SpecInput {
            container: &container,
            sandbox: &record.config,
            sandbox_id: &id,
            container_id: &id,
            image: &process,
            users: &crate::container::bundle::user_db(&rootfs),
            rootfs: &rootfs.display().to_string(),
            namespaces: &c.pod_namespaces(&record, PidNamespace::Private),
            files: &PodFiles {
                hostname: Some(paths.hostname().display().to_string()),
                hosts: None,
                resolv_conf: None,
                shm: None,
            },
            cgroups_path: &c.cgroups_path(&record, &id),
            host_capabilities: &settings.host_capabilities,
            devices: &[],
            host_devices: &[],
            localhost_seccomp: security.localhost_seccomp.as_ref(),
            host: &settings.host_resources,
            apparmor: settings.apparmor.enforces(),
            image_volumes: &[],
        })?;
        spec.annotations
            .insert("io.kubernetes.cri.container-type".into(), "sandbox".into());
        // cri:PodSandboxConfig#hostname, in the sandbox's spec as containerd puts it: a
        // runtime with a kernel of its own (gVisor's sentry, Kata's VM) joins no host UTS
        // namespace and names the pod from here. Only with the pod's own UTS namespace,
        // and the name it was given (runc sets it there again).
        if let Some(name) = uts_name {
            spec.hostname = name.to_owned();
        }
        // The pod's resources, for runtimes that size a sandbox of their own (Kata's VM).
        spec.annotations
            .extend(pod_resources::sandbox_annotations(&record.config));
        let created = c
            .create_in_runtime(runtime, &id, &spec, &PathBuf::from("/dev/null"), &record)
            .await?;
        crate::failpoint!("run-pod.infra-created");
        pod.update(|r| {
            r.infra = Some(InfraRecord {
                id: id.clone(),
                pid: created.pid,
                image_id: image.id.clone(),
            })
        })
        .await?;
        runtime.start(&id).await.map_err(Error::runtime(format!(
            "pod {id}: starting the infra container"
        )))?;
        crate::failpoint!("run-pod.infra-started");
        Ok(())
    }

    /// Stops the pod's infra container, unpins its namespaces and unmounts its shm.
    /// Idempotent; every step is tried.
    pub(crate) async fn release(&self, pod: &Arc<Object<PodRecord>>) -> Result<()> {
        let record = pod.get();
        let id = &record.id;
        let mut first_err = None;
        if let Ok((_, runtime)) = self
            .containers
            .runtimes()
            .get(&record.runtime_handler)
            .await
        {
            // The infra container shares the pod's ID; delete --force kills it.
            if let Err(e) = self
                .containers
                .remove_resources(runtime.as_ref(), id, Some(&record))
                .await
            {
                first_err.get_or_insert(e);
            }
            crate::failpoint!("release.infra-removed");
        }
        let paths = self.layout.pod_files(id);
        if record.network_attached {
            let netns = paths.ns().join("net");
            match self.network.teardown(id, Some(&netns)).await {
                Ok(()) => {
                    crate::failpoint!("release.cni-deleted");
                    pod.update(|r| {
                        r.network_attached = false;
                        r.ips.clear();
                    })
                    .await?;
                }
                // The namespace stays pinned, so a retried StopPodSandbox can try again.
                Err(e) => return Err(e.into()),
            }
        }
        let host = self.containers.host();
        for p in ["net", "ipc", "uts"].map(|k| paths.ns().join(k)) {
            if let Err(e) = host.unpin(&p) {
                first_err
                    .get_or_insert(Error::host(format!("pod {id}: unpinning {}", p.display()))(
                        e,
                    ));
            }
        }
        crate::failpoint!("release.namespaces-unpinned");
        if let Err(e) = host.unmount(&paths.shm()) {
            first_err.get_or_insert(Error::host(format!("pod {id}: unmounting its shm"))(e));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// cri:RuntimeService.StopPodSandbox: stops every container of the pod (forcibly: the
    /// kubelet has already stopped them gracefully), releases the namespaces. Idempotent;
    /// an unknown ID is not an error.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let Some(pod) = self.registry.pod(id) else {
            return if crate::faults::on(crate::faults::Fault::StopPodUnknownNotFound) {
                Err(Error::NotFound {
                    kind: "pod sandbox",
                    id: id.to_owned(),
                })
            } else {
                Ok(())
            };
        };
        let _op = pod.lock().await;
        // Not ready before anything is torn down: a stop that fails or is cut short by a
        // crash leaves a pod that says what it is, and the kubelet's retry finishes it.
        pod.update(|r| r.state = PodState::NotReady).await?;
        crate::failpoint!("stop-pod.not-ready");
        if !crate::faults::on(crate::faults::Fault::StopPodLeavesContainers) {
            self.containers.stop_all(id).await?;
        }
        self.release(&pod).await?;
        pod.update(|r| r.infra = None).await?;
        tracing::info!(pod = %id, "pod sandbox stopped");
        Ok(())
    }

    /// cri:RuntimeService.RemovePodSandbox: stops and removes every container and
    /// everything the pod has on disk. Idempotent; an unknown ID is not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(pod) = self.registry.pod(id) else {
            return if crate::faults::on(crate::faults::Fault::RemovePodUnknownNotFound) {
                Err(Error::NotFound {
                    kind: "pod sandbox",
                    id: id.to_owned(),
                })
            } else {
                Ok(())
            };
        };
        let _op = pod.lock().await;
        self.containers.remove_all(id).await?;
        self.release(&pod).await?;
        state::remove_dir_all(&self.layout.pod_dir(id))
            .map_err(Error::host(format!("pod {id}: removing its directory")))?;
        crate::failpoint!("remove-pod.dir-removed");
        pod.forget().await?;
        crate::failpoint!("remove-pod.unrecorded");
        self.registry.drop_pod(id);
        tracing::info!(pod = %id, "pod sandbox removed");
        Ok(())
    }

    /// cri:RuntimeService.UpdatePodSandboxResources: records in the pod's config the
    /// pod-level resources the kubelet has given the pod cgroup (the kubelet owns that
    /// cgroup; crid changes no limit), durably, before answering. An absent `overhead` or
    /// `resources` leaves the recorded one as it is; a present one replaces it whole. A
    /// stopped pod is updated too, as containerd 2.x and CRI-O do (they find the pod by ID
    /// whatever its state); only an unknown one is NotFound.
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("pod_sandbox_id", "must not be empty"));
        }
        check_resources("overhead", overhead.as_ref())?;
        check_resources("resources", resources.as_ref())?;
        let not_found = || Error::NotFound {
            kind: "pod sandbox",
            id: id.to_owned(),
        };
        let pod = self
            .registry
            .pod(id)
            .filter(|p| p.read(|r| r.state != PodState::Creating))
            .ok_or_else(not_found)?;
        let _op = pod.lock().await;
        // A RemovePodSandbox that held the lock first has forgotten the pod.
        if self.registry.pod(id).is_none() {
            return Err(not_found());
        }
        if crate::faults::on(crate::faults::Fault::PodResourcesUpdateIgnored) {
            return Ok(());
        }
        pod.update(|r| {
            let linux = r.config.linux.get_or_insert_with(Default::default);
            if let Some(o) = overhead {
                linux.overhead = Some(o);
            }
            if let Some(res) = resources {
                linux.resources = Some(res);
            }
        })
        .await?;
        tracing::info!(pod = %id, "pod sandbox resources recorded");
        Ok(())
    }

    /// A pod's record (cri:RuntimeService.PodSandboxStatus).
    pub fn status(&self, id: &str) -> Result<PodRecord> {
        self.registry
            .pod(id)
            .map(|p| p.get())
            .filter(|r| r.state != PodState::Creating)
            .ok_or_else(|| Error::NotFound {
                kind: "pod sandbox",
                id: id.to_owned(),
            })
    }

    /// Every pod past creation (cri:RuntimeService.ListPodSandbox; the edge filters).
    pub fn list(&self) -> Vec<PodRecord> {
        self.registry.pod_records()
    }

    /// The network namespace of pod `pod_id`, which must be ready (cri:PortForward).
    pub fn netns(&self, pod_id: &str) -> Result<Option<PathBuf>> {
        let pod = self.status(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::InvalidState {
                kind: "pod sandbox",
                id: pod_id.to_owned(),
                state: pod.state.cri_name().to_owned(),
                wanted: "it must be ready",
            });
        }
        Ok(pod.netns)
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

//! Pod and container services over fakes, for unit tests without root: a recording host,
//! a fake runtime, an in-memory record store, images and a network that need no registry
//! or plugin. Everything the services touch on disk stays in a temporary directory.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crid_api::cri;

use crate::config::CgroupDriver;
use crate::container::{ContainerService, Settings};
use crate::host::fake::Recording;
use crate::image::{ImageError, ImageRecord, ImageSource};
use crate::network::{Attacher, Attachment, CniError, PodNetwork};
use crate::pod::PodService;
use crate::registry::Registry;
use crate::runtime::RuntimeRegistry;
use crate::runtime::fake::FakeRuntime;
use crate::state::Layout;
use crate::state::store::MemoryRecords;

/// Images that exist without a pull: `busybox` and `pause` (any name in `names`).
#[derive(Debug)]
pub struct FakeImages {
    dir: PathBuf,
    names: Mutex<BTreeSet<String>>,
}

impl FakeImages {
    fn record(name: &str) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{:0>64}", name.len()),
            repo_tags: vec![format!("{name}:latest")],
            repo_digests: Vec::new(),
            manifest_digest: String::new(),
            blobs: Vec::new(),
            layers: Vec::new(),
            size: 1,
            user: String::new(),
        }
    }

    /// Forgets `name`: a pull of it fails from now on.
    pub fn remove(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[async_trait::async_trait]
impl ImageSource for FakeImages {
    fn find(&self, image: &str, _field: &'static str) -> Result<Option<ImageRecord>, ImageError> {
        let known = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(image);
        Ok(known.then(|| Self::record(image)))
    }

    fn process_config(
        &self,
        _record: &ImageRecord,
    ) -> Result<(crate::spec::ImageProcess, String), ImageError> {
        Ok((
            crate::spec::ImageProcess {
                entrypoint: Vec::new(),
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                working_dir: String::new(),
                user: String::new(),
            },
            "SIGTERM".into(),
        ))
    }

    fn layer_dirs(&self, _record: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        Ok(vec![self.dir.join("layer")])
    }

    async fn pull(&self, image: &str) -> Result<String, ImageError> {
        Err(ImageError::NotFound {
            reference: image.to_owned(),
            detail: "the fake registry has no images".into(),
        })
    }
}

/// A network that hands out 10.0.0.<n> and remembers who is attached.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    attached: Mutex<BTreeSet<String>>,
    failing: std::sync::atomic::AtomicBool,
}

impl FakeNetwork {
    /// Makes ADD fail (a broken plugin) or succeed again.
    pub fn fail(&self, on: bool) {
        self.failing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The pods attached now.
    pub fn attached(&self) -> BTreeSet<String> {
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl Attacher for FakeNetwork {
    async fn setup(&self, a: &Attachment) -> Result<PodNetwork, CniError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CniError::InvalidArgument(
                "injected failure of the network plugin".into(),
            ));
        }
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        attached.insert(a.container_id.clone());
        Ok(PodNetwork {
            network: "fake".into(),
            interface: a.ifname.clone(),
            ips: vec![std::net::IpAddr::from([10, 0, 0, attached.len() as u8 + 1])],
        })
    }

    async fn teardown(
        &self,
        container_id: &str,
        _netns: Option<&std::path::Path>,
    ) -> Result<(), CniError> {
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container_id);
        Ok(())
    }
}

/// The gRPC code a service error answers with (the edge's one mapping).
pub fn code(e: crate::error::Error) -> tonic::Code {
    tonic::Status::from(e).code()
}

/// The services over fakes.
pub struct Kit {
    /// Holds the layout (logs, bundles, pod directories, exit files).
    pub dir: tempfile::TempDir,
    /// The record store.
    pub store: Arc<MemoryRecords>,
    /// The host.
    pub host: Arc<Recording>,
    /// The runtime behind the default handler `fake`.
    pub runtime: Arc<FakeRuntime>,
    /// The images.
    pub images: Arc<FakeImages>,
    /// The network.
    pub network: Arc<FakeNetwork>,
    /// The registry.
    pub registry: Arc<Registry>,
    /// The container service.
    pub containers: Arc<ContainerService>,
    /// The pod service.
    pub pods: Arc<PodService>,
}

impl Kit {
    /// Fresh services with nothing in them; exit files are watched.
    pub fn new() -> Kit {
        Self::with_settings(|_| {})
    }

    /// As [`Kit::new`], with settings changed by `f`.
    pub fn with_settings(f: impl FnOnce(&mut Settings)) -> Kit {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = Arc::new(FakeImages {
            dir: dir.path().to_path_buf(),
            names: Mutex::new(["busybox", "pause"].map(str::to_owned).into()),
        });
        Self::build(
            dir,
            Arc::new(MemoryRecords::default()),
            Arc::new(Recording::default()),
            Arc::new(FakeRuntime::new("fake")),
            images,
            Arc::new(FakeNetwork::default()),
            f,
        )
    }

    /// The daemon restarted: new services (empty registry) over the same store, host,
    /// runtime, network and directories. Recovery is the caller's to run.
    pub fn restart(self) -> Kit {
        let Kit {
            dir,
            store,
            host,
            runtime,
            images,
            network,
            ..
        } = self;
        Self::build(dir, store, host, runtime, images, network, |_| {})
    }

    fn build(
        dir: tempfile::TempDir,
        store: Arc<MemoryRecords>,
        host: Arc<Recording>,
        runtime: Arc<FakeRuntime>,
        images: Arc<FakeImages>,
        network: Arc<FakeNetwork>,
        f: impl FnOnce(&mut Settings),
    ) -> Kit {
        let layout = Layout::new(&dir.path().join("root"), &dir.path().join("run"));
        layout.create().expect("layout");
        let registry = Registry::new(store.clone());
        let mut settings = Settings {
            cgroup_driver: CgroupDriver::Cgroupfs,
            log_size_max: None,
            pause_image: "pause".into(),
            host_capabilities: crate::spec::security::ALL_CAPABILITIES
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            host_resources: Default::default(),
            tolerate_missing_hugetlb: true,
            tolerate_unsupported: true,
            cgroup_namespace: false,
            apparmor: crate::host::apparmor::Support::Disabled {
                reason: "the test kit has no AppArmor".into(),
            },
            cdi_spec_dirs: Vec::new(),
        };
        f(&mut settings);
        let containers = ContainerService::new(
            registry.clone(),
            Arc::new(RuntimeRegistry::fixed(vec![runtime.clone()])),
            host.clone(),
            images.clone(),
            layout,
            settings,
        );
        containers.watch_exits().expect("watch exits");
        let pods = PodService::new(registry.clone(), containers.clone(), network.clone());
        Kit {
            dir,
            store,
            host,
            runtime,
            images,
            network,
            registry,
            containers,
            pods,
        }
    }

    /// A pod config as the kubelet sends one, named `name`, logging below the kit.
    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir.path().join("logs").display().to_string(),
            // As the kubelet sends it: a PID namespace per container, so no infra.
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container config from `busybox`, named `name`.
    pub fn container_config(name: &str) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "1000".into()],
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    /// A ready pod.
    pub async fn pod(&self, name: &str) -> String {
        self.pods
            .run(self.pod_config(name), "")
            .await
            .expect("RunPodSandbox")
    }

    /// A running container in `pod`.
    pub async fn running(&self, pod: &str, name: &str) -> String {
        let id = self
            .containers
            .create(pod, Self::container_config(name))
            .await
            .expect("CreateContainer");
        self.containers.start(&id).await.expect("StartContainer");
        id
    }

    /// Entries below `dir` of the kit (relative), for "nothing left behind" checks.
    pub fn entries(&self, rel: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

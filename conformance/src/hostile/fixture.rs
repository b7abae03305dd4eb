//! The run's own objects and places, and how a probe's target becomes the string its ID
//! field holds.

use std::collections::HashMap;

use crid_api::cri;

use super::probe::Target;
use super::rpc::{Names, Rpc};

/// The label every pod and container of the run carries.
pub const RUN_LABEL: &str = "crid-hostile-run";

/// The run's own objects and places.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// This run's ID (the value of [`RUN_LABEL`]).
    pub run_id: String,
    /// A ready pod.
    pub pod_id: String,
    /// Its config.
    pub pod_config: cri::PodSandboxConfig,
    /// A running container in it.
    pub container_id: String,
    /// The image reference containers run (the fixture busybox).
    pub image: String,
    /// The fixture registry's `host:port`.
    pub registry: String,
    /// Where the run's pods log (a directory per pod below it).
    pub log_root: String,
    /// A directory outside the daemon's state that traversals aim at; it must survive.
    pub canary: String,
    /// An existing host directory mounts may name.
    pub host_dir: String,
    /// Registry credentials, if the registry wants them.
    pub credentials: Option<(String, String)>,
}

impl Fixture {
    /// The run's labels, plus `extra`.
    pub fn labels(&self, extra: HashMap<String, String>) -> HashMap<String, String> {
        let mut l = extra;
        l.insert(RUN_LABEL.into(), self.run_id.clone());
        l
    }

    /// A fresh pod config (`n` makes its name unique).
    pub fn pod_config(&self, n: u64) -> cri::PodSandboxConfig {
        let name = format!("hostile-{}-{n}", self.run_id);
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                uid: format!("{name}-uid"),
                name,
                namespace: "crid-hostile".into(),
                attempt: 0,
            }),
            log_directory: format!("{}/{n}", self.log_root),
            labels: self.labels(HashMap::new()),
            ..Default::default()
        }
    }

    /// A container config for the run's pod (`n` makes its name unique).
    pub fn container_config(&self, n: u64) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: format!("c{n}"),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("c{n}.log"),
            labels: self.labels(HashMap::new()),
            ..Default::default()
        }
    }

    /// The pull request for the fixture image.
    pub fn pull_request(&self) -> cri::PullImageRequest {
        cri::PullImageRequest {
            image: Some(self.spec(&self.image)),
            auth: self.credentials.as_ref().map(|(u, p)| cri::AuthConfig {
                username: u.clone(),
                password: p.clone(),
                ..Default::default()
            }),
            sandbox_config: None,
        }
    }

    /// An ImageSpec naming `image`.
    pub fn spec(&self, image: &str) -> cri::ImageSpec {
        cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }
    }

    /// The string the probe's ID field holds.
    pub fn id(&self, rpc: Rpc, target: &Target) -> String {
        let names = rpc.names();
        let own = match names {
            Names::Pod => self.pod_id.clone(),
            Names::Container => self.container_id.clone(),
            Names::Image => self.image.clone(),
            Names::Nothing => String::new(),
        };
        let image_ref = |repo: &str| format!("{}/{repo}", self.registry);
        match target {
            Target::Own => own,
            Target::Missing(hex) => match names {
                Names::Image => image_ref(&format!("hostile-missing-{}:latest", &hex[..16])),
                _ => hex.clone(),
            },
            Target::OtherKind => match names {
                Names::Pod => self.container_id.clone(),
                Names::Container => self.pod_id.clone(),
                // An image named like the run's container (a repository that does not
                // exist), never the registry's default host.
                _ if rpc == Rpc::PullImage => image_ref(&format!("x/{}", self.container_id)),
                _ => self.pod_id.clone(),
            },
            Target::Prefix => own.chars().take(12).collect(),
            Target::Empty => String::new(),
            Target::Huge(n) => {
                let s = filler(*n);
                if names == Names::Image {
                    image_ref(&s)
                } else {
                    s
                }
            }
            Target::Traversal(s) => {
                if rpc == Rpc::PullImage {
                    image_ref(s)
                } else {
                    s.clone()
                }
            }
        }
    }
}

/// `n` bytes of lowercase letters and digits.
pub fn filler(n: usize) -> String {
    const PATTERN: &[u8] = b"hostile0123456789abcdefghijklmnopqrstuvwxyz";
    (0..n).map(|i| PATTERN[i % PATTERN.len()] as char).collect()
}

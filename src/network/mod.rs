//! Pod networking through CNI plugins.
//!
//! `cni_config` finds the default network configuration (which decides `NetworkReady`);
//! [`Cni`] runs the plugins of that network for a pod: ADD, CHECK, DEL and VERSION, with
//! every ADD's configuration and result cached on disk so DEL works after a restart or a
//! configuration change.

mod cache;
mod cni_config;
mod error;
mod exec;
mod invoker;
mod network_list;
mod plugin_conf;
mod result;
mod serial;
mod types;

pub use cni_config::{CniNetwork, Discovery, discover};
pub use error::CniError;
pub use invoker::{Cni, DEFAULT_PLUGIN_TIMEOUT};
pub use types::{Attachment, PodNetwork, PortMapping};

/// What the pod service asks of pod networking: attach a pod's network namespace to the
/// default network, and detach it. [`Cni`] is the real one.
#[async_trait::async_trait]
pub trait Attacher: Send + Sync + std::fmt::Debug {
    /// ADD: attaches the pod; on failure nothing stays attached.
    async fn setup(&self, a: &Attachment) -> Result<PodNetwork, CniError>;
    /// DEL: detaches the pod (known from its ADD), idempotent.
    async fn teardown(
        &self,
        container_id: &str,
        netns: Option<&std::path::Path>,
    ) -> Result<(), CniError>;
}

#[async_trait::async_trait]
impl Attacher for Cni {
    async fn setup(&self, a: &Attachment) -> Result<PodNetwork, CniError> {
        Cni::setup(self, a).await
    }

    async fn teardown(
        &self,
        container_id: &str,
        netns: Option<&std::path::Path>,
    ) -> Result<(), CniError> {
        Cni::teardown(self, container_id, netns).await
    }
}

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

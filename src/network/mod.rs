//! Pod networking through CNI plugins.
//!
//! Today: finding the default network configuration, which decides `NetworkReady`. The
//! CNI invoker (ADD/CHECK/DEL, result cache) lands with the networking work.

mod cni_config;

pub use cni_config::{CniNetwork, Discovery, discover};

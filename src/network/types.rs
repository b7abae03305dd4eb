//! The invoker's vocabulary: what the pod lifecycle passes in and gets back.

use std::net::IpAddr;
use std::path::PathBuf;

/// One pod's attachment to the default network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The pod sandbox id (`CNI_CONTAINERID`).
    pub container_id: String,
    /// The pinned network namespace (a bind-mounted nsfs file).
    pub netns: PathBuf,
    /// The interface to create in it, `eth0` for CRI pods.
    pub ifname: String,
    /// The pod's namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// The pod's name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// The pod's UID (`K8S_POD_UID`).
    pub pod_uid: String,
    /// Host ports, passed to plugins declaring the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
}

/// One host port mapping, in the portmap plugin's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u16,
    /// The port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The host address to bind; empty for all.
    pub host_ip: String,
}

/// What ADD gave the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The network name.
    pub network: String,
    /// The interface in the pod.
    pub interface: String,
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<IpAddr>,
}

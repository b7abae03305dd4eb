//! The pod service: pinned namespaces and the pod's /dev/shm (through the host seam), the
//! files a pod shares with its containers (`files`), the cgroup parent in the driver's
//! syntax (`cgroup`), which sysctls a pod may set (`sysctl`), and the sandbox lifecycle
//! (`sandbox`).

pub mod cgroup;
pub mod files;
pub mod sandbox;
mod security;
pub mod sysctl;
#[cfg(test)]
mod tests;

pub use sandbox::{PodService, namespace_options};

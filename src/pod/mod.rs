//! Pod sandboxes: pinned namespaces and the pod's /dev/shm (`namespaces`), the files a pod
//! shares with its containers (`files`), the cgroup parent in the driver's syntax
//! (`cgroup`), and the sandbox lifecycle (`sandbox`).

pub mod cgroup;
pub mod files;
pub mod namespaces;
pub mod sandbox;

//! Pod sandboxes: pinned namespaces and the pod's /dev/shm (`namespaces`), the files a pod
//! shares with its containers (`files`), and the sandbox lifecycle (`sandbox`).

pub mod files;
pub mod namespaces;
pub mod sandbox;

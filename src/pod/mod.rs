//! Pod sandboxes. Today: the files a pod shares with its containers (resolv.conf, hosts,
//! hostname). Namespace pinning and the sandbox lifecycle land with the pods work.

pub mod files;

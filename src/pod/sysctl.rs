//! Which sysctls a pod may set, and in which of its namespaces (pure).

/// Namespaced sysctls a pod may set, and the namespace each belongs to
/// (cri:LinuxPodSandboxConfig#sysctls; the kubelet's safe and unsafe namespaced sets).
pub fn sysctl_namespace(key: &str) -> Option<&'static str> {
    const IPC: [&str; 6] = [
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
    ];
    if key.starts_with("net.") {
        Some("net")
    } else if IPC.contains(&key)
        || key == "kernel.msgmni"
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
    {
        Some("ipc")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_are_classified_by_namespace() {
        assert_eq!(sysctl_namespace("net.ipv4.ip_forward"), Some("net"));
        assert_eq!(sysctl_namespace("kernel.shm_rmid_forced"), Some("ipc"));
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max"), Some("ipc"));
        assert_eq!(sysctl_namespace("kernel.hostname"), None);
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
    }
}

//! Capabilities and seccomp.

use super::SpecError;
use super::oci::{Capabilities, Seccomp, SyscallRule};

/// Every capability Linux defines (0 to 40), without the `CAP_` prefix.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities an unprivileged container starts with: the same 14 as containerd's
/// default, so workloads behave alike on both runtimes.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Normalizes `net_admin` / `CAP_NET_ADMIN` to `NET_ADMIN`, rejecting unknown names.
fn normalize(name: &str, field: &'static str) -> Result<String, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare == "ALL" || ALL_CAPABILITIES.contains(&bare) {
        Ok(bare.to_owned())
    } else {
        Err(SpecError::Invalid {
            field,
            reason: format!("unknown capability `{name}`"),
        })
    }
}

/// The capability request of a container (cri:Capability).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityRequest {
    /// `add_capabilities`; `ALL` adds every capability.
    pub add: Vec<String>,
    /// `drop_capabilities`; `ALL` drops every capability first.
    pub drop: Vec<String>,
    /// `add_ambient_capabilities`.
    pub ambient: Vec<String>,
}

/// Computes the capability sets. `host_bounding` limits the result: a runtime cannot grant
/// what the host's bounding set lacks (on some hosts CAP_SYS_RESOURCE is missing).
///
/// Order: the default set; `add: ALL` makes it everything; `drop: ALL` empties it; then the
/// named adds, then the named drops. Effective, permitted and bounding are equal; inheritable
/// holds only the ambient capabilities (the kernel clears an ambient capability that is not
/// also inheritable), so no other file capability can be inherited past exec.
pub fn capabilities(
    req: &CapabilityRequest,
    privileged: bool,
    host_bounding: &[String],
) -> Result<Capabilities, SpecError> {
    let add: Vec<String> = req
        .add
        .iter()
        .map(|c| {
            normalize(
                c,
                "config.linux.security_context.capabilities.add_capabilities",
            )
        })
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = req
        .drop
        .iter()
        .map(|c| {
            normalize(
                c,
                "config.linux.security_context.capabilities.drop_capabilities",
            )
        })
        .collect::<Result<_, _>>()?;
    let ambient: Vec<String> = req
        .ambient
        .iter()
        .map(|c| {
            normalize(
                c,
                "config.linux.security_context.capabilities.add_ambient_capabilities",
            )
        })
        .collect::<Result<_, _>>()?;

    let mut set: Vec<String> = if privileged || add.iter().any(|c| c == "ALL") {
        ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    };
    if !privileged {
        if drop.iter().any(|c| c == "ALL") {
            set.clear();
        }
        for c in add.iter().chain(&ambient).filter(|c| *c != "ALL") {
            if !set.contains(c) {
                set.push(c.clone());
            }
        }
        set.retain(|c| !drop.contains(c));
    }
    set.retain(|c| host_bounding.iter().any(|h| h == c));
    let prefixed = |v: &[String]| v.iter().map(|c| format!("CAP_{c}")).collect::<Vec<_>>();
    let ambient: Vec<String> = ambient
        .into_iter()
        .filter(|c| c != "ALL" && set.contains(c))
        .collect();
    Ok(Capabilities {
        bounding: prefixed(&set),
        effective: prefixed(&set),
        inheritable: prefixed(&ambient),
        permitted: prefixed(&set),
        ambient: prefixed(&ambient),
    })
}

/// Syscalls refused with EPERM by crid's RuntimeDefault profile.
///
/// crid's default is a deny list: everything is allowed except what a container has no
/// business doing (kernel modules, kexec, reboot, swap, clock setting, the mount and
/// keyring APIs, BPF, perf, userfaultfd, obsolete and debug interfaces). Each of these
/// would also need a capability that the default set withholds, so the profile is a second
/// line of defence for privileges granted by `add_capabilities`, not the only one.
pub const DENIED_SYSCALLS: [&str; 44] = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
];

/// crid's RuntimeDefault seccomp profile (see [`DENIED_SYSCALLS`]).
pub fn runtime_default_seccomp() -> Seccomp {
    Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        default_errno_ret: None,
        architectures: vec![
            "SCMP_ARCH_X86_64".into(),
            "SCMP_ARCH_X86".into(),
            "SCMP_ARCH_X32".into(),
        ],
        syscalls: vec![SyscallRule {
            names: DENIED_SYSCALLS.iter().map(|s| (*s).to_owned()).collect(),
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: Some(1), // EPERM
            args: Vec::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_all() -> Vec<String> {
        ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    }

    fn req(add: &[&str], drop: &[&str]) -> CapabilityRequest {
        CapabilityRequest {
            add: add.iter().map(|s| (*s).to_owned()).collect(),
            drop: drop.iter().map(|s| (*s).to_owned()).collect(),
            ambient: Vec::new(),
        }
    }

    #[test]
    fn default_add_drop_and_all() {
        let c = capabilities(&req(&[], &[]), false, &host_all()).expect("caps");
        assert_eq!(c.bounding.len(), DEFAULT_CAPABILITIES.len());
        assert!(c.inheritable.is_empty());

        let c = capabilities(&req(&["NET_ADMIN"], &["MKNOD"]), false, &host_all()).expect("caps");
        assert!(c.effective.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!c.effective.contains(&"CAP_MKNOD".to_owned()));

        let c = capabilities(&req(&["CAP_NET_ADMIN"], &["ALL"]), false, &host_all()).expect("caps");
        assert_eq!(c.effective, ["CAP_NET_ADMIN"], "drop ALL then add");

        let c = capabilities(&req(&["ALL"], &["SYS_ADMIN"]), false, &host_all()).expect("caps");
        assert_eq!(c.effective.len(), ALL_CAPABILITIES.len() - 1);
    }

    #[test]
    fn host_bounding_set_limits_even_privileged() {
        let host: Vec<String> = host_all()
            .into_iter()
            .filter(|c| c != "SYS_RESOURCE")
            .collect();
        let c = capabilities(&req(&[], &["ALL"]), true, &host).expect("caps");
        assert_eq!(
            c.bounding.len(),
            ALL_CAPABILITIES.len() - 1,
            "privileged ignores drops"
        );
        assert!(!c.bounding.contains(&"CAP_SYS_RESOURCE".to_owned()));
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let err = capabilities(&req(&["NET_MAGIC"], &[]), false, &host_all()).expect_err("unknown");
        assert!(err.to_string().contains("add_capabilities"), "{err}");
    }

    #[test]
    fn ambient_must_be_in_the_set() {
        let r = CapabilityRequest {
            ambient: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        };
        let c = capabilities(&r, false, &host_all()).expect("caps");
        assert_eq!(c.ambient, ["CAP_NET_BIND_SERVICE"]);
        // Without it in the inheritable set the kernel drops it from the ambient set.
        assert_eq!(c.inheritable, ["CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn default_profile_denies_module_loading_and_allows_the_rest() {
        let p = runtime_default_seccomp();
        assert_eq!(p.default_action, "SCMP_ACT_ALLOW");
        let denied = &p.syscalls[0].names;
        for s in ["init_module", "kexec_load", "bpf", "mount", "reboot"] {
            assert!(denied.iter().any(|d| d == s), "{s}");
        }
        for s in ["read", "write", "clone", "execve"] {
            assert!(!denied.iter().any(|d| d == s), "{s}");
        }
        let mut sorted = denied.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(&sorted, denied, "sorted, no duplicates");
    }
}

//! Pod-level resources (cri:LinuxPodSandboxConfig#overhead, #resources, and
//! cri:RuntimeService.UpdatePodSandboxResources): what values can be valid, and the
//! annotations that carry them to the sandbox's runtime.
//!
//! The kubelet owns the pod cgroup and sizes it itself; the runtime records the values and
//! hands them to runtimes that size a sandbox of their own (a VM, for Kata), through the
//! sandbox spec's annotations containerd defined.

use crid_api::cri;

/// containerd's annotations of the sandbox's resources on its spec (pkg/cri/annotations).
pub const CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
/// See [`CPU_PERIOD`].
pub const CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// See [`CPU_PERIOD`].
pub const CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
/// See [`CPU_PERIOD`].
pub const MEMORY: &str = "io.kubernetes.cri.sandbox-memory";

/// Why a resources message cannot be valid: the field (relative to the message, e.g.
/// `cpu_quota` or `hugepage_limits.page_size`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, relative to the LinuxContainerResources message.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Result<(), Invalid> {
    Err(Invalid {
        field,
        reason: reason.into(),
    })
}

/// Checks values no kernel or runtime could accept: negative sizes (the kubelet's -1 means
/// "unlimited" for the quota and the swap limit), an oom_score_adj outside the kernel's
/// range, CFS values below the kernel's minimum, malformed CPU and memory-node lists,
/// hugepage sizes that are not `<n><unit>` and unified keys that are not cgroup files.
pub fn check(r: &cri::LinuxContainerResources) -> Result<(), Invalid> {
    if r.cpu_period != 0 && !(1_000..=1_000_000).contains(&r.cpu_period) {
        invalid(
            "cpu_period",
            format!(
                "{} is outside the kernel's CFS period range 1000..=1000000 (µs; 0 is unset)",
                r.cpu_period
            ),
        )?;
    }
    if r.cpu_quota < -1 || (r.cpu_quota > 0 && r.cpu_quota < 1_000) {
        invalid(
            "cpu_quota",
            format!(
                "{} is not a CFS quota (0 unset, -1 unlimited, else at least 1000 µs)",
                r.cpu_quota
            ),
        )?;
    }
    if r.cpu_shares < 0 || r.cpu_shares > 262_144 {
        invalid(
            "cpu_shares",
            format!("{} is outside 0..=262144", r.cpu_shares),
        )?;
    }
    if r.memory_limit_in_bytes < 0 {
        invalid(
            "memory_limit_in_bytes",
            format!("{} is negative", r.memory_limit_in_bytes),
        )?;
    }
    if r.memory_swap_limit_in_bytes < -1 {
        invalid(
            "memory_swap_limit_in_bytes",
            format!(
                "{} is negative (-1, unlimited, is the only negative value)",
                r.memory_swap_limit_in_bytes
            ),
        )?;
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        invalid(
            "oom_score_adj",
            format!("{} is outside the kernel's -1000..=1000", r.oom_score_adj),
        )?;
    }
    check_list("cpuset_cpus", &r.cpuset_cpus)?;
    check_list("cpuset_mems", &r.cpuset_mems)?;
    for h in &r.hugepage_limits {
        if !is_page_size(&h.page_size) {
            invalid(
                "hugepage_limits.page_size",
                format!(
                    "`{}` is not a page size such as 2MB or 1GB (a number and KB, MB, GB, TB or PB)",
                    h.page_size
                ),
            )?;
        }
    }
    for key in r.unified.keys() {
        let file = key.split_once('.');
        if key.contains('/')
            || key.contains('\0')
            || file.is_none_or(|(c, f)| c.is_empty() || f.is_empty())
        {
            invalid(
                "unified",
                format!("`{key}` is not a cgroup v2 interface file (controller.name)"),
            )?;
        }
    }
    Ok(())
}

/// A cpuset list: empty, or comma-separated numbers and ascending ranges (`0-3,5`).
fn check_list(field: &'static str, list: &str) -> Result<(), Invalid> {
    if list.is_empty() {
        return Ok(());
    }
    super::host::parse_exact_list(list)
        .map(drop)
        .or_else(|why| {
            invalid(
                field,
                format!("`{list}` is not a list of numbers and ranges such as 0-3,5: {why}"),
            )
        })
}

/// `2MB`, `1GB`, `64KB`: a positive number and a binary-prefixed unit, as the hugetlb
/// controller names its files.
fn is_page_size(s: &str) -> bool {
    ["KB", "MB", "GB", "TB", "PB"].iter().any(|unit| {
        s.strip_suffix(unit).is_some_and(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u64>().is_ok_and(|v| v > 0)
        })
    })
}

/// The annotations of the pod's resources on its sandbox spec, as containerd sets them
/// (all four whenever the pod config carries resources; none otherwise).
pub fn sandbox_annotations(config: &cri::PodSandboxConfig) -> Vec<(String, String)> {
    let Some(r) = config.linux.as_ref().and_then(|l| l.resources.as_ref()) else {
        return Vec::new();
    };
    [
        (CPU_PERIOD, r.cpu_period),
        (CPU_QUOTA, r.cpu_quota),
        (CPU_SHARES, r.cpu_shares),
        (MEMORY, r.memory_limit_in_bytes),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(edit: impl FnOnce(&mut cri::LinuxContainerResources)) -> &'static str {
        let mut r = cri::LinuxContainerResources::default();
        edit(&mut r);
        match check(&r) {
            Ok(()) => "accepted",
            Err(e) => e.field,
        }
    }

    #[test]
    fn what_a_kubelet_sends_is_accepted() {
        assert_eq!(field_of(|_| {}), "accepted");
        assert_eq!(
            field_of(|r| {
                r.cpu_period = 100_000;
                r.cpu_quota = -1;
                r.cpu_shares = 2;
                r.memory_limit_in_bytes = 256 << 20;
                r.memory_swap_limit_in_bytes = -1;
                r.oom_score_adj = -998;
                r.cpuset_cpus = "0-3,6,8-9".into();
                r.cpuset_mems = "0".into();
                r.hugepage_limits = vec![
                    cri::HugepageLimit {
                        page_size: "2MB".into(),
                        limit: 0,
                    },
                    cri::HugepageLimit {
                        page_size: "1GB".into(),
                        limit: 1 << 30,
                    },
                ];
                r.unified.insert("memory.high".into(), "max".into());
            }),
            "accepted"
        );
    }

    #[test]
    fn impossible_values_name_their_field() {
        assert_eq!(field_of(|r| r.cpu_period = -5), "cpu_period");
        assert_eq!(field_of(|r| r.cpu_period = 999), "cpu_period");
        assert_eq!(field_of(|r| r.cpu_quota = -2), "cpu_quota");
        assert_eq!(field_of(|r| r.cpu_quota = 10), "cpu_quota");
        assert_eq!(field_of(|r| r.cpu_shares = -1), "cpu_shares");
        assert_eq!(
            field_of(|r| r.memory_limit_in_bytes = -1),
            "memory_limit_in_bytes"
        );
        assert_eq!(
            field_of(|r| r.memory_swap_limit_in_bytes = -2),
            "memory_swap_limit_in_bytes"
        );
        assert_eq!(field_of(|r| r.oom_score_adj = 1001), "oom_score_adj");
        for bad in ["a", "1-", "3-1", "1,,2", "-1", " 1"] {
            assert_eq!(
                field_of(|r| r.cpuset_cpus = bad.into()),
                "cpuset_cpus",
                "{bad}"
            );
        }
        assert_eq!(field_of(|r| r.cpuset_mems = "0-x".into()), "cpuset_mems");
        for bad in ["2M", "MB", "0MB", "2 MB", "2mb", ""] {
            assert_eq!(
                field_of(|r| r.hugepage_limits.push(cri::HugepageLimit {
                    page_size: bad.into(),
                    limit: 1
                })),
                "hugepage_limits.page_size",
                "{bad}"
            );
        }
        for bad in ["memory", "../memory.max", ".max", "memory."] {
            assert_eq!(
                field_of(|r| {
                    r.unified.insert(bad.into(), "1".into());
                }),
                "unified",
                "{bad}"
            );
        }
    }

    #[test]
    fn annotations_follow_containerds_names_and_only_with_resources() {
        let mut config = cri::PodSandboxConfig::default();
        assert!(sandbox_annotations(&config).is_empty());
        config.linux = Some(cri::LinuxPodSandboxConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 1 << 28,
                ..Default::default()
            }),
            ..Default::default()
        });
        let got = sandbox_annotations(&config);
        assert_eq!(
            got,
            [
                (CPU_PERIOD, "100000"),
                (CPU_QUOTA, "50000"),
                (CPU_SHARES, "512"),
                (MEMORY, "268435456"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}

//! What the host can enforce decides which resource requests reach the OCI spec.
//!
//! A kubelet sends what its node *could* have: a `hugepage_limits` entry for every page size
//! the kernel offers (whether or not a hugetlb cgroup controller is mounted), a swap limit
//! equal to the memory limit, `unified` keys of cgroup v2. A runtime that passes a limit the
//! host cannot enforce fails `create` ("cannot set hugetlb limit"), so crid drops what the
//! host lacks, names it, and lets configuration refuse instead (as containerd's
//! `tolerate_missing_hugetlb_controller`). Pure: the host's facts come in as
//! [`HostResources`], probed once at start by `crate::host::probe_resources`.

use std::collections::BTreeSet;

use crid_api::cri;

/// What the host's cgroups and kernel can enforce.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostResources {
    /// A hugetlb controller is mounted where the runtime sets limits.
    pub hugetlb_controller: bool,
    /// Page sizes that controller can limit, in the CRI's form (`2MB`, `1GB`).
    pub hugetlb_sizes: BTreeSet<String>,
    /// Memory+swap limits can be set (cgroup v1 `memory.memsw.*`, v2 `memory.swap.max`).
    pub swap_accounting: bool,
    /// cgroup v2 controllers a container's cgroup can use, for `unified` keys; `None` when
    /// the runtime does not manage containers through cgroup v2 (v1 and hybrid hosts).
    pub unified_controllers: Option<BTreeSet<String>>,
    /// The lowest `oom_score_adj` crid's children may take: -1000 with CAP_SYS_RESOURCE,
    /// crid's own value without (the kernel refuses to go lower).
    pub oom_score_adj_min: i64,
    /// The host's online memory (NUMA) nodes, for `cpuset_mems`.
    pub memory_nodes: BTreeSet<u32>,
}

impl Default for HostResources {
    /// A host that can enforce everything the CRI can ask for.
    fn default() -> Self {
        Self {
            hugetlb_controller: true,
            hugetlb_sizes: ["2MB", "1GB"].map(String::from).into(),
            swap_accounting: true,
            unified_controllers: Some(
                ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"]
                    .map(String::from)
                    .into(),
            ),
            oom_score_adj_min: -1000,
            memory_nodes: [0].into(),
        }
    }
}

/// A resource request no configuration can make crid accept: the request is wrong for
/// this host, not merely more than it enforces (InvalidArgument naming the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field under `LinuxContainerResources` (`cpuset_mems`, `unified`).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

/// Refuses what `resources` asks that cannot apply on `host` at all: memory nodes the host
/// does not have (runc would fail late, with a cgroup write error), and cgroup v2 `unified`
/// keys on a host whose runtime manages containers through cgroup v1 (runc refuses them
/// there; the kubelet sends them only on cgroup v2 nodes).
pub fn refusal(resources: &cri::LinuxContainerResources, host: &HostResources) -> Option<Refusal> {
    if !resources.cpuset_mems.is_empty()
        && !crate::faults::on(crate::faults::Fault::CpusetMemsUnchecked)
    {
        let reason = match parse_list(&resources.cpuset_mems) {
            Err(e) => Some(format!("`{}`: {e}", resources.cpuset_mems)),
            Ok(nodes) => nodes.difference(&host.memory_nodes).next().map(|n| {
                format!(
                    "`{}`: the host has no memory node {n} (online: {})",
                    resources.cpuset_mems,
                    format_list(&host.memory_nodes)
                )
            }),
        };
        if let Some(reason) = reason {
            return Some(Refusal {
                field: "cpuset_mems",
                reason,
            });
        }
    }
    if host.unified_controllers.is_none()
        && !crate::faults::on(crate::faults::Fault::UnifiedOnV1Dropped)
        && let Some(key) = resources.unified.keys().next()
    {
        return Some(Refusal {
            field: "unified",
            reason: format!(
                "`{key}`: cgroup v2 keys cannot apply on this host, whose containers' cgroups are managed through cgroup v1"
            ),
        });
    }
    None
}

/// Parses a kernel list (`0-2,4`, as in `cpuset.mems` and `/sys/devices/system/node/online`)
/// as a file holds it (surrounding white space, a final newline).
pub fn parse_list(s: &str) -> Result<BTreeSet<u32>, String> {
    parse_exact_list(s.trim())
}

/// Parses a kernel list exactly as written: comma-separated numbers and ascending ranges,
/// nothing else (no spaces, no signs, no empty parts).
pub fn parse_exact_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut out = BTreeSet::new();
    for part in s.split(',') {
        let num = |v: &str| {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| format!("`{part}` is not a node number or range"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 4096 {
                    return Err(format!("`{part}` is not a range"));
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(num(part)?);
            }
        }
    }
    Ok(out)
}

fn format_list(nodes: &BTreeSet<u32>) -> String {
    nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a request the host cannot enforce was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lack {
    /// No hugetlb controller (`[runtime] tolerate_missing_hugetlb_controller`).
    HugetlbController,
    /// Anything else (`[runtime] tolerate_unsupported_resources`).
    Other,
}

/// One request the host cannot enforce, and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unenforceable {
    /// The request field, as named in api.proto under the container config.
    pub field: &'static str,
    /// What was asked and why the host cannot do it.
    pub detail: String,
    /// Which configuration key decides whether it is dropped or refused.
    pub lack: Lack,
}

impl std::fmt::Display for Unenforceable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

const FIELD: &str = "config.linux.resources";

/// Splits `resources` into what the host enforces and what it cannot: the first is what
/// goes into the OCI spec, the second is for the caller to log or refuse.
pub fn enforceable(
    resources: &cri::LinuxContainerResources,
    host: &HostResources,
) -> (cri::LinuxContainerResources, Vec<Unenforceable>) {
    let mut kept = resources.clone();
    let mut lacking = Vec::new();

    kept.hugepage_limits.retain(|h| {
        let why = if crate::faults::on(crate::faults::Fault::SkipHugetlbProbe) {
            None
        } else if !host.hugetlb_controller {
            Some((
                Lack::HugetlbController,
                "the host has no hugetlb cgroup controller",
            ))
        } else if !host.hugetlb_sizes.contains(&h.page_size) {
            Some((
                Lack::Other,
                "the host's hugetlb controller has no such page size",
            ))
        } else {
            None
        };
        if let Some((lack, why)) = why {
            lacking.push(Unenforceable {
                field: "config.linux.resources.hugepage_limits",
                detail: format!("{} limit {}: {why}", h.page_size, h.limit),
                lack,
            });
        }
        why.is_none()
    });

    if kept.memory_swap_limit_in_bytes > 0 && !host.swap_accounting {
        lacking.push(Unenforceable {
            field: "config.linux.resources.memory_swap_limit_in_bytes",
            detail: format!(
                "{}: the host has no swap accounting",
                kept.memory_swap_limit_in_bytes
            ),
            lack: Lack::Other,
        });
        kept.memory_swap_limit_in_bytes = 0;
    }

    kept.unified.retain(|key, value| {
        let controller = key.split('.').next().unwrap_or_default();
        let why = match &host.unified_controllers {
            None => Some("the runtime does not manage this host's containers through cgroup v2"),
            Some(_) if controller == "cgroup" => None,
            Some(c) if c.contains(controller) => None,
            Some(_) => Some("the host's cgroup v2 hierarchy has no such controller"),
        };
        if let Some(why) = why {
            lacking.push(Unenforceable {
                field: "config.linux.resources.unified",
                detail: format!("{key}={value}: {why}"),
                lack: Lack::Other,
            });
        }
        why.is_none()
    });

    if kept.oom_score_adj < host.oom_score_adj_min {
        lacking.push(Unenforceable {
            field: "config.linux.resources.oom_score_adj",
            detail: format!(
                "{} raised to {}: lowering it needs CAP_SYS_RESOURCE, which crid lacks",
                kept.oom_score_adj, host.oom_score_adj_min
            ),
            lack: Lack::Other,
        });
        kept.oom_score_adj = host.oom_score_adj_min;
    }
    debug_assert!(lacking.iter().all(|l| l.field.starts_with(FIELD)));
    (kept, lacking)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet's resources for a Burstable container, as captured from kubelet 1.36.
    fn kubelet_burstable() -> cri::LinuxContainerResources {
        cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 102,
            memory_limit_in_bytes: 67_108_864,
            oom_score_adj: 999,
            hugepage_limits: vec![
                cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                cri::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            memory_swap_limit_in_bytes: 67_108_864,
            ..Default::default()
        }
    }

    /// This project's CI host: hybrid cgroups, no hugetlb controller, swap accounting, no
    /// CAP_SYS_RESOURCE.
    fn hybrid_without_hugetlb() -> HostResources {
        HostResources {
            hugetlb_controller: false,
            hugetlb_sizes: BTreeSet::new(),
            swap_accounting: true,
            unified_controllers: None,
            oom_score_adj_min: 0,
            memory_nodes: [0].into(),
        }
    }

    #[test]
    fn a_capable_host_keeps_everything() {
        let r = kubelet_burstable();
        let (kept, lacking) = enforceable(&r, &HostResources::default());
        assert_eq!(kept, r);
        assert!(lacking.is_empty(), "{lacking:?}");
    }

    #[test]
    fn without_a_hugetlb_controller_every_hugepage_limit_is_dropped_and_named() {
        let (kept, lacking) = enforceable(&kubelet_burstable(), &hybrid_without_hugetlb());
        assert!(kept.hugepage_limits.is_empty());
        assert_eq!(kept.memory_limit_in_bytes, 67_108_864, "the rest stays");
        assert_eq!(kept.memory_swap_limit_in_bytes, 67_108_864);
        assert_eq!(lacking.len(), 2);
        assert!(lacking.iter().all(|l| l.lack == Lack::HugetlbController
            && l.field == "config.linux.resources.hugepage_limits"));
        assert!(lacking[0].to_string().contains("2MB"), "{}", lacking[0]);
    }

    #[test]
    fn a_page_size_the_controller_lacks_is_dropped_alone() {
        let host = HostResources {
            hugetlb_sizes: ["2MB".to_owned()].into(),
            ..HostResources::default()
        };
        let (kept, lacking) = enforceable(&kubelet_burstable(), &host);
        assert_eq!(kept.hugepage_limits.len(), 1);
        assert_eq!(kept.hugepage_limits[0].page_size, "2MB");
        assert_eq!(lacking.len(), 1);
        assert_eq!(lacking[0].lack, Lack::Other);
        assert!(lacking[0].detail.contains("1GB"));
    }

    #[test]
    fn swap_limits_need_swap_accounting() {
        let host = HostResources {
            swap_accounting: false,
            ..HostResources::default()
        };
        let (kept, lacking) = enforceable(&kubelet_burstable(), &host);
        assert_eq!(kept.memory_swap_limit_in_bytes, 0);
        assert_eq!(
            lacking[0].field,
            "config.linux.resources.memory_swap_limit_in_bytes"
        );
    }

    #[test]
    fn unified_keys_follow_the_v2_controllers() {
        let mut r = cri::LinuxContainerResources::default();
        r.unified.insert("memory.high".into(), "1000000".into());
        r.unified.insert("cgroup.max.depth".into(), "3".into());
        r.unified.insert("rdma.max".into(), "x".into());
        // cgroup v2 with memory but no rdma controller.
        let v2 = HostResources {
            unified_controllers: Some(["memory".to_owned()].into()),
            ..HostResources::default()
        };
        let (kept, lacking) = enforceable(&r, &v2);
        let mut keys: Vec<_> = kept.unified.keys().collect();
        keys.sort();
        assert_eq!(keys, ["cgroup.max.depth", "memory.high"]);
        assert_eq!(lacking.len(), 1);
        assert!(lacking[0].detail.starts_with("rdma.max"));
        // cgroup v1 or hybrid: the runtime sets v1 limits; no unified key applies.
        let (kept, lacking) = enforceable(&r, &hybrid_without_hugetlb());
        assert!(kept.unified.is_empty());
        assert_eq!(lacking.len(), 3);
    }

    #[test]
    fn oom_score_adj_is_raised_to_what_the_host_allows() {
        let mut r = kubelet_burstable();
        r.oom_score_adj = -997; // Guaranteed pods.
        let (kept, lacking) = enforceable(&r, &hybrid_without_hugetlb());
        assert_eq!(kept.oom_score_adj, 0);
        assert!(
            lacking
                .iter()
                .any(|l| l.field == "config.linux.resources.oom_score_adj")
        );
        let (kept, _) = enforceable(&r, &HostResources::default());
        assert_eq!(kept.oom_score_adj, -997);
    }

    #[test]
    fn memory_nodes_the_host_lacks_are_refused() {
        let host = HostResources {
            memory_nodes: [0, 1].into(),
            ..HostResources::default()
        };
        let with = |mems: &str| cri::LinuxContainerResources {
            cpuset_mems: mems.into(),
            ..Default::default()
        };
        assert_eq!(refusal(&with("0"), &host), None);
        assert_eq!(refusal(&with("0-1"), &host), None);
        assert_eq!(refusal(&with(""), &host), None);
        for bad in ["2", "0,7", "1-3", "x", "3-1", "0-"] {
            let r = refusal(&with(bad), &host).expect(bad);
            assert_eq!(r.field, "cpuset_mems");
            assert!(r.reason.contains(bad), "{r:?}");
        }
        assert!(
            refusal(&with("1-3"), &host)
                .expect("r")
                .reason
                .contains("no memory node 2")
        );
    }

    #[test]
    fn unified_keys_are_refused_where_cgroup_v2_does_not_manage_containers() {
        let mut r = cri::LinuxContainerResources::default();
        r.unified.insert("memory.high".into(), "1000000".into());
        let refused = refusal(&r, &hybrid_without_hugetlb()).expect("refused");
        assert_eq!(refused.field, "unified");
        assert!(refused.reason.contains("memory.high"));
        assert_eq!(refusal(&r, &HostResources::default()), None);
    }

    #[test]
    fn kernel_lists_parse() {
        assert_eq!(parse_list("0").expect("0"), [0].into());
        assert_eq!(parse_list("0-2,5\n").expect("l"), [0, 1, 2, 5].into());
        assert!(parse_list("").is_err());
        assert!(parse_list("0-99999").is_err());
    }
}

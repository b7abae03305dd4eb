//! Container resource usage read from cgroups (v1 controllers or the v2 unified hierarchy)
//! for ContainerStats and PodSandboxStats. Reading is cheap (a few small files), so stats
//! are read when asked, not collected in the background; CPU rates come from the previous
//! sample of the same container.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What one cgroup used, as far as the kernel says; `None` where a file is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory charged, bytes.
    pub memory: Option<u64>,
    /// Memory charged minus inactive file cache: what the kubelet evicts on.
    pub working_set: Option<u64>,
    /// Anonymous memory, bytes.
    pub rss: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
    /// Processes (tasks) in the cgroup.
    pub pids: Option<u64>,
}

impl Usage {
    /// The sum of several cgroups' usage (a pod of containers).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Usage>) -> Usage {
        let add = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        all.into_iter().fold(Usage::default(), |acc, u| Usage {
            cpu_ns: add(acc.cpu_ns, u.cpu_ns),
            memory: add(acc.memory, u.memory),
            working_set: add(acc.working_set, u.working_set),
            rss: add(acc.rss, u.rss),
            page_faults: add(acc.page_faults, u.page_faults),
            major_page_faults: add(acc.major_page_faults, u.major_page_faults),
            pids: add(acc.pids, u.pids),
        })
    }
}

/// The `key value` lines of memory.stat or cpu.stat.
fn stat_file(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| v.trim().parse().ok().map(|v| (k, v)))
        .collect()
}

fn number(text: Option<String>) -> Option<u64> {
    text.and_then(|t| t.trim().parse().ok())
}

/// cgroup v1: `cpuacct.usage`, `memory.usage_in_bytes`, `memory.stat` (`total_*`), `pids.current`.
pub fn parse_v1(
    cpuacct_usage: Option<String>,
    memory_usage: Option<String>,
    memory_stat: Option<String>,
    pids_current: Option<String>,
) -> Usage {
    let memory = number(memory_usage);
    let stat_text = memory_stat.unwrap_or_default();
    let stat = stat_file(&stat_text);
    let inactive = stat.get("total_inactive_file").copied().unwrap_or(0);
    Usage {
        cpu_ns: number(cpuacct_usage),
        memory,
        working_set: memory.map(|m| m.saturating_sub(inactive)),
        rss: stat.get("total_rss").copied(),
        page_faults: stat.get("total_pgfault").copied(),
        major_page_faults: stat.get("total_pgmajfault").copied(),
        pids: number(pids_current),
    }
}

/// cgroup v2: `cpu.stat` (`usage_usec`), `memory.current`, `memory.stat`, `pids.current`.
pub fn parse_v2(
    cpu_stat: Option<String>,
    memory_current: Option<String>,
    memory_stat: Option<String>,
    pids_current: Option<String>,
) -> Usage {
    let memory = number(memory_current);
    let cpu_text = cpu_stat.unwrap_or_default();
    let stat_text = memory_stat.unwrap_or_default();
    let stat = stat_file(&stat_text);
    let inactive = stat.get("inactive_file").copied().unwrap_or(0);
    Usage {
        cpu_ns: stat_file(&cpu_text).get("usage_usec").map(|u| u * 1000),
        memory,
        working_set: memory.map(|m| m.saturating_sub(inactive)),
        rss: stat.get("anon").copied(),
        page_faults: stat.get("pgfault").copied(),
        major_page_faults: stat.get("pgmajfault").copied(),
        pids: number(pids_current),
    }
}

/// The cgroup directory of a cgroups path as the runtime created it: cgroupfs paths as
/// they are; systemd's `slice:prefix:name` as `<expanded slice>/<prefix>-<name>.scope`.
pub fn relative_dir(cgroups_path: &str) -> Option<PathBuf> {
    let mut parts = cgroups_path.split(':');
    let (first, prefix, name) = (parts.next()?, parts.next(), parts.next());
    let rel = match (prefix, name) {
        (Some(prefix), Some(name)) => slice_dir(first)?.join(format!("{prefix}-{name}.scope")),
        _ => PathBuf::from(first.trim_start_matches('/')),
    };
    (!rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir)))
    .then_some(rel)
}

/// Where systemd puts slice `a-b-c.slice`: `a.slice/a-b.slice/a-b-c.slice`.
pub fn slice_dir(slice: &str) -> Option<PathBuf> {
    let stem = slice.strip_suffix(".slice")?;
    let mut dir = PathBuf::new();
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        dir.push(format!("{acc}.slice"));
    }
    Some(dir)
}

/// Reads the usage of `cgroups_path` from the host's cgroup hierarchies.
pub fn read(cgroups_path: &str) -> io::Result<Usage> {
    let rel = relative_dir(cgroups_path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad cgroups path {cgroups_path}"),
        )
    })?;
    let root = Path::new("/sys/fs/cgroup");
    let file = |dir: PathBuf, name: &str| std::fs::read_to_string(dir.join(name)).ok();
    if crate::host::cgroup_mode() == crate::host::CgroupMode::Unified {
        let d = root.join(&rel);
        if !d.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", d.display()),
            ));
        }
        return Ok(parse_v2(
            file(d.clone(), "cpu.stat"),
            file(d.clone(), "memory.current"),
            file(d.clone(), "memory.stat"),
            file(d, "pids.current"),
        ));
    }
    let memory = root.join("memory").join(&rel);
    if !memory.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", memory.display()),
        ));
    }
    Ok(parse_v1(
        file(root.join("cpuacct").join(&rel), "cpuacct.usage")
            .or_else(|| file(root.join("cpu,cpuacct").join(&rel), "cpuacct.usage")),
        file(memory.clone(), "memory.usage_in_bytes"),
        file(memory, "memory.stat"),
        file(root.join("pids").join(&rel), "pids.current"),
    ))
}

/// The previous CPU sample of each object, for `usage_nano_cores`.
#[derive(Debug, Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Records a sample taken at `at_ns`; returns the rate since the previous sample of
    /// `id`, in nanocores, when there is one.
    pub fn rate(&self, id: &str, at_ns: i64, cpu_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let prev = last.insert(id.to_owned(), (at_ns, cpu_ns));
        let (t0, c0) = prev?;
        let dt = u64::try_from(at_ns - t0).ok().filter(|d| *d > 0)?;
        Some(((cpu_ns.saturating_sub(c0)) as u128 * 1_000_000_000 / dt as u128) as u64)
    }

    /// Forgets objects not in `live`.
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn v1_working_set_excludes_inactive_file_cache() {
        let u = parse_v1(
            s("123456789\n"),
            s("10000000\n"),
            s(
                "cache 1\ntotal_rss 3000000\ntotal_inactive_file 4000000\ntotal_pgfault 50\ntotal_pgmajfault 2\n",
            ),
            s("3\n"),
        );
        assert_eq!(u.cpu_ns, Some(123_456_789));
        assert_eq!(u.memory, Some(10_000_000));
        assert_eq!(u.working_set, Some(6_000_000));
        assert_eq!(
            (u.rss, u.page_faults, u.major_page_faults, u.pids),
            (Some(3_000_000), Some(50), Some(2), Some(3))
        );
    }

    #[test]
    fn v2_reads_usage_usec_and_anon() {
        let u = parse_v2(
            s("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            s("8192\n"),
            s("anon 4096\ninactive_file 9000\npgfault 7\npgmajfault 1\n"),
            None,
        );
        assert_eq!(u.cpu_ns, Some(1_500_000));
        assert_eq!(u.working_set, Some(0), "never below zero");
        assert_eq!(
            (u.rss, u.page_faults, u.major_page_faults, u.pids),
            (Some(4096), Some(7), Some(1), None)
        );
    }

    #[test]
    fn missing_files_are_none_and_sums_skip_them() {
        let empty = parse_v1(None, None, None, None);
        assert_eq!(empty, Usage::default());
        let a = Usage {
            cpu_ns: Some(1),
            memory: Some(10),
            ..Default::default()
        };
        let b = Usage {
            cpu_ns: Some(2),
            ..Default::default()
        };
        let t = Usage::sum([&a, &b]);
        assert_eq!((t.cpu_ns, t.memory, t.rss), (Some(3), Some(10), None));
    }

    #[test]
    fn cgroups_paths_of_both_drivers() {
        assert_eq!(
            relative_dir("/crid/crid-abc"),
            Some(PathBuf::from("crid/crid-abc"))
        );
        assert_eq!(
            relative_dir("kubepods-besteffort-pod1.slice:crid:abc"),
            Some(PathBuf::from(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crid-abc.scope"
            ))
        );
        assert_eq!(relative_dir("/crid/../etc"), None);
    }

    #[test]
    fn cpu_rate_needs_two_samples() {
        let r = CpuRates::default();
        assert_eq!(r.rate("c", 1_000_000_000, 0), None);
        assert_eq!(
            r.rate("c", 2_000_000_000, 500_000_000),
            Some(500_000_000),
            "half a core"
        );
        r.retain(&|_| false);
        assert_eq!(r.rate("c", 3_000_000_000, 600_000_000), None);
    }
}

//! Soak (issue 16, part 6): pods churned for a given time (RunPodSandbox, CreateContainer,
//! StartContainer, ExecSync, StopPodSandbox, RemovePodSandbox, several workers at once,
//! with image pulls and removals mixed in), while the daemon's resources are sampled at a
//! fixed interval: RSS, open descriptors and threads of the daemon process, mounts under
//! its state directories, container cgroups and monitor processes. After the final clean-up
//! the run passes when every operation succeeded, RSS grew less than the limit over the
//! run, and mounts, cgroups, monitors and objects are back where they started.
//!
//! It reads /proc and /sys of the machine it runs on: run it on the endpoint's host.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crid_api::{ImageServiceClient, RuntimeServiceClient, cri};
use tonic::transport::Channel;

/// Label naming the run that created an object.
pub const RUN_LABEL: &str = "crid-conformance.soak";

/// What to churn, for how long, and what to watch.
#[derive(Debug, Clone)]
pub struct Options {
    /// A channel to the endpoint.
    pub channel: Channel,
    /// Unique per run: a label and a name prefix.
    pub run_id: String,
    /// Runtime handler for pods.
    pub runtime_handler: String,
    /// The image containers run.
    pub image: String,
    /// An image pulled and removed again and again.
    pub churn_image: String,
    /// How long to churn.
    pub duration: Duration,
    /// Pods in flight at once.
    pub parallel: usize,
    /// Time between samples.
    pub sample_every: Duration,
    /// The daemon's PID (RSS, descriptors, threads).
    pub daemon_pid: i32,
    /// Directories whose mounts count (the daemon's root and runroot).
    pub state_dirs: Vec<PathBuf>,
    /// Pods' log directory.
    pub log_dir: PathBuf,
    /// Time limit of one RPC.
    pub op_timeout: Duration,
    /// Largest RSS growth that passes, in KiB.
    pub rss_growth_limit_kib: u64,
}

/// One sample of the daemon's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub at_s: u64,
    /// Resident set of the daemon, KiB.
    pub rss_kib: u64,
    /// Open descriptors of the daemon.
    pub fds: u64,
    /// Threads of the daemon.
    pub threads: u64,
    /// Mounts under the state directories.
    pub mounts: u64,
    /// Container cgroups (`crid-*` directories in any hierarchy).
    pub cgroups: u64,
    /// crid-monitor processes.
    pub monitors: u64,
    /// Pod cycles finished so far.
    pub cycles: u64,
}

/// The run's outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Before any churn.
    pub before: Sample,
    /// During the churn, at every interval.
    pub samples: Vec<Sample>,
    /// After the final clean-up.
    pub after: Sample,
    /// Pod cycles done.
    pub cycles: u64,
    /// Images pulled and removed.
    pub image_cycles: u64,
    /// Operations that failed, with what they said (at most 20 kept).
    pub errors: Vec<String>,
    /// Failed operations in all.
    pub error_count: u64,
    /// Objects of the run still listed after the clean-up.
    pub leaked_objects: usize,
    /// The run's length.
    pub duration: Duration,
    /// The RSS growth limit, KiB.
    pub rss_growth_limit_kib: u64,
}

impl Report {
    /// RSS after the clean-up minus RSS at the middle of the churn, KiB (negative when it
    /// shrank). The first half is the warm-up: the allocator's arenas and the daemon's maps
    /// grow to the load's size and stay there; a leak keeps growing through the second half.
    pub fn rss_growth_kib(&self) -> i64 {
        self.after.rss_kib as i64 - self.base().rss_kib as i64
    }

    /// RSS after the clean-up minus RSS at the first sample of the churn, KiB: the warm-up
    /// included, for the record.
    pub fn rss_growth_since_start_kib(&self) -> i64 {
        let first = self
            .samples
            .first()
            .map_or(self.before.rss_kib, |s| s.rss_kib);
        self.after.rss_kib as i64 - first as i64
    }

    /// The sample at the middle of the churn (the last one before, with fewer than two).
    fn base(&self) -> Sample {
        self.samples
            .get(self.samples.len() / 2)
            .copied()
            .unwrap_or(self.before)
    }

    /// Why the run failed; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.error_count > 0 {
            out.push(format!("{} operations failed", self.error_count));
        }
        if self.cycles == 0 {
            out.push("no pod cycle finished".into());
        }
        if self.rss_growth_kib() > self.rss_growth_limit_kib as i64 {
            out.push(format!(
                "RSS grew {} KiB (limit {} KiB)",
                self.rss_growth_kib(),
                self.rss_growth_limit_kib
            ));
        }
        for (what, b, a) in [
            ("mounts", self.before.mounts, self.after.mounts),
            ("cgroups", self.before.cgroups, self.after.cgroups),
            ("monitors", self.before.monitors, self.after.monitors),
        ] {
            if a > b {
                out.push(format!("{what}: {b} before, {a} after the clean-up"));
            }
        }
        if self.leaked_objects > 0 {
            out.push(format!(
                "{} objects left after the clean-up",
                self.leaked_objects
            ));
        }
        out
    }

    /// Markdown: the verdict, the figures and the curve.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let failures = self.failures();
        s.push_str(&format!(
            "soak: {} pod cycles and {} image pull/remove cycles in {:.0} s, {} failed operations; RSS growth over the second half {} KiB (limit {}; {} KiB since the first sample); {}\n\n",
            self.cycles,
            self.image_cycles,
            self.duration.as_secs_f64(),
            self.error_count,
            self.rss_growth_kib(),
            self.rss_growth_limit_kib,
            self.rss_growth_since_start_kib(),
            if failures.is_empty() {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", failures.join("; "))
            }
        ));
        s.push_str(
            "| when | s | RSS KiB | fds | threads | mounts | cgroups | monitors | pod cycles |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let row = |s: &mut String, label: &str, x: &Sample| {
            s.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                x.at_s, x.rss_kib, x.fds, x.threads, x.mounts, x.cgroups, x.monitors, x.cycles
            ));
        };
        row(&mut s, "before", &self.before);
        for x in &self.samples {
            row(&mut s, "churn", x);
        }
        row(&mut s, "after clean-up", &self.after);
        if !self.errors.is_empty() {
            s.push_str("\nfailed operations (first ones):\n");
            for e in &self.errors {
                s.push_str(&format!("- {e}\n"));
            }
        }
        s
    }
}

fn status_field(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn count_dir(dir: &str) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.count() as u64)
}

/// Mount points below any of `dirs` (from /proc/self/mountinfo; octal escapes kept).
fn mounts_under(dirs: &[PathBuf]) -> u64 {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| dirs.iter().any(|d| Path::new(m).starts_with(d)))
        .count() as u64
}

/// `crid-<id>` directories in every cgroup hierarchy (cgroupfs driver) for the IDs of the
/// run's own pods and containers: other daemons on the host do not count.
fn container_cgroups(ids: &HashSet<String>) -> u64 {
    fn walk(dir: &Path, depth: usize, n: &mut u64, ids: &HashSet<String>) {
        if depth > 8 {
            return;
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name()
                    .to_string_lossy()
                    .strip_prefix("crid-")
                    .is_some_and(|id| ids.contains(id))
                {
                    *n += 1;
                }
                walk(&e.path(), depth + 1, n, ids);
            }
        }
    }
    let mut n = 0;
    walk(Path::new("/sys/fs/cgroup"), 0, &mut n, ids);
    n
}

/// crid-monitor processes of this daemon: an argument of theirs lies below its state
/// directories (other daemons on the host do not count).
fn monitors(dirs: &[PathBuf]) -> u64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let mut args = c.split(|b| *b == 0);
                args.next().is_some_and(|a| a.ends_with(b"crid-monitor"))
                    && args.any(|a| {
                        let a = Path::new(std::ffi::OsStr::from_bytes(a));
                        dirs.iter().any(|d| a.starts_with(d))
                    })
            })
        })
        .count() as u64
}

fn sample(opts: &Options, started: Instant, cycles: u64, ids: &Ids) -> Sample {
    let ids = ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let pid = opts.daemon_pid;
    Sample {
        at_s: started.elapsed().as_secs(),
        rss_kib: status_field(pid, "VmRSS:"),
        fds: count_dir(&format!("/proc/{pid}/fd")),
        threads: status_field(pid, "Threads:"),
        mounts: mounts_under(&opts.state_dirs),
        cgroups: container_cgroups(&ids),
        monitors: monitors(&opts.state_dirs),
        cycles,
    }
}

/// The IDs of the run's pods and containers.
type Ids = Arc<std::sync::Mutex<HashSet<String>>>;

#[derive(Clone)]
struct Worker {
    opts: Arc<Options>,
    ids: Ids,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

impl Worker {
    fn remember(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_owned(), self.opts.run_id.clone())])
    }

    /// One pod's life; the pod is removed whatever happens.
    async fn cycle(&mut self, worker: usize, n: u64) -> Result<(), String> {
        let t = self.opts.op_timeout;
        let name = format!("{}-w{worker}-{n}", self.opts.run_id);
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: format!("uid-{name}"),
                namespace: "crid-soak".into(),
                attempt: 0,
            }),
            hostname: format!("soak-{worker}"),
            log_directory: self.opts.log_dir.join(&name).display().to_string(),
            labels: self.labels(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        pid: cri::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = timed(
            t,
            "RunPodSandbox",
            self.rs.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: self.opts.runtime_handler.clone(),
            }),
        )
        .await?
        .pod_sandbox_id;
        self.remember(&pod);
        let result = self.in_pod(&pod, &config).await;
        let stopped = timed(
            t,
            "StopPodSandbox",
            self.rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            }),
        )
        .await;
        let removed = timed(
            t,
            "RemovePodSandbox",
            self.rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            }),
        )
        .await;
        let _ = std::fs::remove_dir_all(self.opts.log_dir.join(&name));
        result.and(stopped.map(|_| ())).and(removed.map(|_| ()))
    }

    async fn in_pod(&mut self, pod: &str, config: &cri::PodSandboxConfig) -> Result<(), String> {
        let t = self.opts.op_timeout;
        let c = timed(
            t,
            "CreateContainer",
            self.rs.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: self.opts.image.clone(),
                        ..Default::default()
                    }),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "echo soak; exec sleep 3600".into(),
                    ],
                    log_path: "app.log".into(),
                    labels: self.labels(),
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            }),
        )
        .await?
        .container_id;
        self.remember(&c);
        timed(
            t,
            "StartContainer",
            self.rs.start_container(cri::StartContainerRequest {
                container_id: c.clone(),
            }),
        )
        .await?;
        let out = timed(
            t,
            "ExecSync",
            self.rs.exec_sync(cri::ExecSyncRequest {
                container_id: c.clone(),
                cmd: vec!["echo".into(), "ok".into()],
                timeout: 10,
            }),
        )
        .await?;
        if out.exit_code != 0 || out.stdout != b"ok\n" {
            return Err(format!(
                "ExecSync: exit code {}, stdout {:?}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        timed(
            t,
            "StopContainer",
            self.rs.stop_container(cri::StopContainerRequest {
                container_id: c,
                timeout: 0,
            }),
        )
        .await?;
        Ok(())
    }

    async fn image_cycle(&mut self) -> Result<(), String> {
        let t = self.opts.op_timeout * 4;
        let spec = cri::ImageSpec {
            image: self.opts.churn_image.clone(),
            ..Default::default()
        };
        timed(
            t,
            "PullImage",
            self.is.pull_image(cri::PullImageRequest {
                image: Some(spec.clone()),
                ..Default::default()
            }),
        )
        .await?;
        timed(
            t,
            "RemoveImage",
            self.is
                .remove_image(cri::RemoveImageRequest { image: Some(spec) }),
        )
        .await?;
        Ok(())
    }
}

/// Runs the soak.
pub async fn run(opts: Options) -> Result<Report, String> {
    let opts = Arc::new(opts);
    let ids: Ids = Arc::default();
    let worker = Worker {
        opts: opts.clone(),
        ids: ids.clone(),
        rs: RuntimeServiceClient::new(opts.channel.clone()),
        is: ImageServiceClient::new(opts.channel.clone()),
    };
    let started = Instant::now();
    let before = sample(&opts, started, 0, &ids);
    let deadline = started + opts.duration;
    let cycles = Arc::new(AtomicU64::new(0));
    let image_cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new((0u64, Vec::<String>::new())));
    let record = {
        let errors = errors.clone();
        move |e: String| {
            let mut g = errors.lock().unwrap_or_else(|p| p.into_inner());
            g.0 += 1;
            if g.1.len() < 20 {
                g.1.push(e);
            }
        }
    };
    let mut tasks = Vec::new();
    for w in 0..opts.parallel {
        let mut worker = worker.clone();
        let cycles = cycles.clone();
        let image_cycles = image_cycles.clone();
        let record = record.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if let Err(e) = worker.cycle(w, n).await {
                    record(e);
                }
                cycles.fetch_add(1, Ordering::Relaxed);
                // The first worker pulls and removes an image every fifth cycle.
                if w == 0 && n % 5 == 4 {
                    match worker.image_cycle().await {
                        Ok(()) => {
                            image_cycles.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => record(e),
                    }
                }
                n += 1;
            }
        }));
    }
    let mut samples = Vec::new();
    let mut next = started + opts.sample_every;
    while Instant::now() < deadline {
        tokio::time::sleep_until(next.min(deadline).into()).await;
        if Instant::now() >= next {
            samples.push(sample(&opts, started, cycles.load(Ordering::Relaxed), &ids));
            next += opts.sample_every;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let leaked_objects = cleanup(&worker).await;
    // Let exits, monitors and lingering blocking threads settle before the last sample.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = sample(&opts, started, cycles.load(Ordering::Relaxed), &ids);
    let (error_count, errors) = {
        let g = errors.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    };
    Ok(Report {
        before,
        samples,
        after,
        cycles: cycles.load(Ordering::Relaxed),
        image_cycles: image_cycles.load(Ordering::Relaxed),
        errors,
        error_count,
        leaked_objects,
        duration: started.elapsed(),
        rss_growth_limit_kib: opts.rss_growth_limit_kib,
    })
}

/// Removes whatever of the run is still there; returns how many objects it found.
async fn cleanup(w: &Worker) -> usize {
    let mut rs = w.rs.clone();
    let selector = w.labels();
    let pods = rs
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    let containers = rs
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    for p in &pods {
        let _ = rs
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await;
        let _ = rs
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await;
    }
    pods.len() + containers.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rss: u64, mounts: u64) -> Sample {
        Sample {
            rss_kib: rss,
            mounts,
            ..Default::default()
        }
    }

    #[test]
    fn the_verdict_reads_growth_leaks_and_errors() {
        let mut r = Report {
            before: sample(9000, 2),
            samples: vec![sample(10000, 10), sample(11000, 9), sample(11500, 9)],
            after: sample(11800, 2),
            cycles: 40,
            rss_growth_limit_kib: 1024,
            ..Default::default()
        };
        // From the middle sample (11000), not the first (10000).
        assert_eq!(r.rss_growth_kib(), 800);
        assert_eq!(r.rss_growth_since_start_kib(), 1800);
        assert!(r.failures().is_empty(), "{:?}", r.failures());
        assert!(r.render().contains("PASS"));
        r.after.rss_kib = 12100;
        r.after.mounts = 3;
        r.error_count = 1;
        let f = r.failures();
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            r.render()
                .contains("FAIL: 1 operations failed; RSS grew 1100 KiB")
        );
    }

    #[test]
    fn mounts_are_counted_below_the_given_directories_only() {
        // The root filesystem is mounted at / on any Linux machine.
        assert!(mounts_under(&[PathBuf::from("/")]) >= 1);
        assert_eq!(mounts_under(&[PathBuf::from("/no/such/crid/dir")]), 0);
    }
}

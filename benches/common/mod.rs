//! What the pod benchmarks share: a release `crid` started on its own directory, socket and
//! CNI network next to the containerd fixture, CRI helpers that time one call, percentiles,
//! and memory readings (RSS, PSS) from /proc.
//!
//! Everything started here is stopped by PID and everything made is removed by path, also
//! when a benchmark fails half-way (guards with `Drop`).

#![allow(dead_code)] // Each benchmark uses a different part of this module.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crid_api::{ImageServiceClient, cri};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// Where Debian's containernetworking-plugins installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The runc both runtimes use.
pub const RUNC: &str = "/usr/sbin/runc";

/// Removes what `cargo bench` adds to the environment of the bench it runs (package and
/// binary variables, its library path entries), so that the nested build sees the
/// environment of a plain `cargo build` and finds it fresh instead of rebuilding.
fn without_cargo_run_env(cmd: &mut Command, target: &Path) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let added_by_cargo = ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_MANIFEST_"]
            .iter()
            .any(|p| k.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
                "RUST_RECURSION_COUNT",
            ]
            .contains(&k.as_ref());
        if added_by_cargo {
            cmd.env_remove(&key);
        }
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        let toolchains =
            Path::new(&std::env::var_os("RUSTUP_HOME").unwrap_or_default()).join("toolchains");
        let kept: Vec<PathBuf> = std::env::split_paths(&paths)
            .filter(|p| !p.starts_with(target) && !p.starts_with(&toolchains))
            .collect();
        if kept.is_empty() {
            cmd.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = std::env::join_paths(kept) {
            cmd.env("LD_LIBRARY_PATH", joined);
        }
    }
}

/// The release `crid` and `crid-monitor` as users build them (`cargo build --release
/// --bins`), copied into a private directory; the daemon finds the monitor beside itself.
///
/// Not `CARGO_BIN_EXE_crid`: for a bench, Cargo builds the binaries with the features of the
/// dev-dependencies unified in (a different, larger binary), and `cargo bench` puts that
/// build at `target/release/crid`. So the bench builds the real ones itself (a no-op when
/// fresh) in the target directory it runs from, unless `BENCH_CRID_BIN_DIR` names a directory
/// holding both.
pub struct Binaries {
    dir: tempfile::TempDir,
}

impl Binaries {
    /// Builds (or finds) and copies the two binaries.
    pub fn release() -> Result<Binaries> {
        let from = match std::env::var_os("BENCH_CRID_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                // <target>/release/deps/<bench>-<hash>
                let exe = std::env::current_exe().context("the bench's own path")?;
                let target = exe
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::parent)
                    .context("the bench does not run from <target>/release/deps")?
                    .to_owned();
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                eprintln!("building the release binaries (cargo build --release --bins) ...");
                let mut cmd = Command::new(cargo);
                without_cargo_run_env(&mut cmd, &target);
                let status = cmd
                    .args([
                        "build",
                        "--release",
                        "--bins",
                        "-p",
                        "crid",
                        "--manifest-path",
                    ])
                    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                    .arg("--target-dir")
                    .arg(&target)
                    .stdout(Stdio::null())
                    .status()
                    .context("run cargo build --release --bins")?;
                if !status.success() {
                    bail!("cargo build --release --bins failed: {status}");
                }
                target.join("release")
            }
        };
        Self::copy_from(&from)
    }

    /// The two binaries of directory `from`, copied.
    pub fn from_dir(from: &Path) -> Result<Binaries> {
        Self::copy_from(from)
    }

    fn copy_from(from: &Path) -> Result<Binaries> {
        let dir = tempfile::Builder::new()
            .prefix("crid-bench-bin-")
            .tempdir()?;
        for bin in ["crid", "crid-monitor"] {
            let to = dir.path().join(bin);
            std::fs::copy(from.join(bin), &to)
                .with_context(|| format!("copy {}", from.join(bin).display()))?;
            // Out of the page cache, as an installed binary on a fresh node: a just-written
            // file is cached whole, and mapped pages of it would all count in RSS.
            let f = std::fs::File::open(&to)?;
            f.sync_all()?;
            nix::fcntl::posix_fadvise(
                &f,
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )?;
        }
        Ok(Binaries { dir })
    }

    /// The daemon.
    pub fn crid(&self) -> PathBuf {
        self.dir.path().join("crid")
    }

    /// `crid: N MiB, crid-monitor: N KiB` for the report.
    pub fn describe(&self) -> String {
        let size = |b: &str| std::fs::metadata(self.dir.path().join(b)).map_or(0, |m| m.len());
        format!(
            "release build: crid {:.1} MiB, crid-monitor {} KiB",
            size("crid") as f64 / 1024.0 / 1024.0,
            size("crid-monitor") / 1024
        )
    }
}

/// Eight hex digits, unique enough to keep bridges and networks of parallel runs apart.
pub fn unique_tag() -> String {
    let h = RandomState::new().hash_one((Instant::now(), std::process::id()));
    format!("{:08x}", h & 0xffff_ffff)
}

/// A /24 in 10.216.0.0/13 that is not routed on this host and is none of `avoid` (the
/// containerd fixture takes its own from 10.200.0.0/13, so the two never meet).
pub fn private_subnet(avoid: &[&str]) -> String {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut seed = RandomState::new().hash_one(Instant::now());
    for _ in 0..64 {
        let second = 216 + (seed % 8) as u8;
        let third = ((seed >> 8) % 256) as u8;
        seed = seed.rotate_left(13) ^ 0x9e37_79b9_7f4a_7c15;
        let subnet = format!("10.{second}.{third}.0/24");
        // /proc/net/route stores the destination as little-endian hex.
        let dest = format!("{:02X}{:02X}{:02X}{:02X}", 0, third, second, 10);
        if !routes.lines().any(|l| l.split('\t').nth(1) == Some(&dest))
            && !avoid.contains(&subnet.as_str())
        {
            return subnet;
        }
    }
    "10.223.255.0/24".to_owned()
}

/// One CNI network: the conflist the containerd fixture writes (bridge with host-local IPAM,
/// portmap, loopback), on a bridge and subnet of its own.
#[derive(Debug, Clone)]
pub struct Network {
    /// Network name.
    pub name: String,
    /// Bridge device (at most 15 bytes).
    pub bridge: String,
    /// The /24.
    pub subnet: String,
    /// host-local's `dataDir`.
    pub ipam_dir: PathBuf,
}

impl Network {
    /// A fresh network `<prefix>-<tag>` on bridge `<prefix><tag>` with its IPAM under `dir`.
    pub fn new(prefix: &str, dir: &Path, avoid: &[&str]) -> Network {
        let tag = unique_tag();
        Network {
            name: format!("{prefix}-{tag}"),
            bridge: format!("{prefix}{tag}"),
            subnet: private_subnet(avoid),
            ipam_dir: dir.join("ipam"),
        }
    }

    /// The conflist, byte for byte the shape of the containerd fixture's.
    pub fn conflist(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.subnet }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": self.ipam_dir,
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "loopback" }
            ]
        })
    }

    /// Deletes the bridge, if CNI made it.
    pub fn remove_bridge(&self) {
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A release `crid` on a private directory (config, state, socket, CNI network), stopped by
/// PID and cleaned up on drop after its pods were removed through CRI.
///
/// `BENCH_CRID_LOG_LEVEL` (e.g. `debug`) sets its `--log-level`; `BENCH_CRID_LOG=FILE`
/// keeps a copy of its log, to see where the time went.
pub struct Crid {
    dir: tempfile::TempDir,
    child: Option<Child>,
    network: Network,
}

/// Debian's runc shim v2 (package containerd): the shim handler the benches time.
pub const SHIM_RUNC_V2: &str = "/usr/bin/containerd-shim-runc-v2";
/// youki as scripts/setup.sh builds it.
pub const YOUKI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools/bin/youki");
/// Debian's gVisor (package runsc).
pub const RUNSC: &str = "/usr/bin/runsc";

/// The extra handlers of the bench's crid whose binaries are installed: the runc shim v2,
/// youki, and runsc as the conformance cell configures it (scripts/conformance.sh).
fn extra_handlers() -> String {
    let mut toml = String::new();
    if Path::new(SHIM_RUNC_V2).is_file() {
        toml += &format!(
            "[runtime.runtimes.shim-runc-v2]\npath = \"{SHIM_RUNC_V2}\"\ntype = \"shim\"\n"
        );
    }
    if Path::new(YOUKI).is_file() {
        toml += &format!("[runtime.runtimes.youki]\npath = \"{YOUKI}\"\n");
    }
    if Path::new(RUNSC).is_file() {
        toml += &format!(
            "[runtime.runtimes.runsc]\npath = \"{RUNSC}\"\nargs = [\"--platform=ptrace\", \"--network=host\"]\nalways_infra = true\n"
        );
    }
    toml
}

impl Crid {
    /// Starts `bin`'s crid trusting `registry` (`127.0.0.1:PORT`) on its own bridge network,
    /// and waits until its socket answers. `avoid` lists subnets already taken.
    pub fn start(bin: &Binaries, registry: &str, avoid: &[&str]) -> Result<Crid> {
        let dir = tempfile::Builder::new()
            .prefix("crid-bench-")
            .tempdir()
            .context("temp dir")?;
        let d = dir.path();
        for sub in ["crid.d", "net.d", "root", "run", "logs"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let network = Network::new("crb", d, avoid);
        std::fs::write(
            d.join("net.d/10-crb.conflist"),
            network.conflist().to_string(),
        )?;
        // Beside the default handlers (runc, crun), those installed of the runc shim v2,
        // youki and runsc: the lifecycle bench's handler table times them.
        let shim = extra_handlers();
        std::fs::write(
            d.join("crid.toml"),
            format!(
                "[image]\ninsecure_registries = [\"{registry}\"]\npause_image = \"{registry}/pause:latest\"\n[network]\ncni_config_dir = \"{}\"\n[storage]\nroot = \"{}\"\nrunroot = \"{}\"\n{shim}",
                d.join("net.d").display(),
                d.join("root").display(),
                d.join("run").display(),
            ),
        )?;
        let log = std::fs::File::create(d.join("crid.log"))?;
        let mut cmd = Command::new(bin.crid());
        cmd.arg("--config")
            .arg(d.join("crid.toml"))
            .arg("--config-dir")
            .arg(d.join("crid.d"))
            .arg("--listen")
            .arg(d.join("crid.sock"));
        if let Ok(level) = std::env::var("BENCH_CRID_LOG_LEVEL") {
            cmd.arg("--log-level").arg(level);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.crid().display()))?;
        let mut me = Crid {
            dir,
            child: Some(child),
            network,
        };
        me.wait_ready()?;
        Ok(me)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "crid exited during startup ({status}):\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("crid did not listen within 20s:\n{}", self.log_tail())
    }

    /// Its socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("crid.sock")
    }

    /// Its private directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Its network's /24.
    pub fn subnet(&self) -> &str {
        &self.network.subnet
    }

    /// Where pods log (per pod directories are made by [`log_dir_for`]).
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Its CNI network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// PID of the daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        let data = std::fs::read(self.dir.path().join("crid.log")).unwrap_or_default();
        String::from_utf8_lossy(&data[data.len().saturating_sub(4096)..]).into_owned()
    }

    /// A channel to its socket.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(crid_api::client::connect_path(&self.socket()).await?)
    }
}

impl Drop for Crid {
    fn drop(&mut self) {
        // Pods first, through CRI (runs CNI DEL, stops monitors); drop may run inside a
        // runtime, so the CRI calls get a thread and a runtime of their own.
        let socket = self.socket();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(remove_all_pods(&socket));
            }
        })
        .join();
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
        if let Some(keep) = std::env::var_os("BENCH_CRID_LOG") {
            let _ = std::fs::copy(self.dir.path().join("crid.log"), keep);
        }
        // Anything a failed run left: monitors of our containers (their command line names
        // our directory), runc containers in our runc root, mounts under our directory.
        let dir = self.dir.path().to_owned();
        for pid in pids_whose_cmdline_contains(&dir.to_string_lossy()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let runc_root = dir.join("run/runtimes/runc");
        if let Ok(entries) = std::fs::read_dir(&runc_root) {
            for e in entries.flatten() {
                let _ = Command::new(RUNC)
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        umount_under(&dir);
        self.network.remove_bridge();
    }
}

/// SIGTERM, up to 10 s, then SIGKILL; always reaped.
pub fn stop_child(mut child: Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Lazily unmounts every mount point at or under `dir`, deepest first.
pub fn umount_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// PIDs (other than ours) whose command line contains `needle`.
pub fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .contains(needle)
        })
        .collect()
}

/// PIDs whose argv[0] ends with `binary` and whose arguments hold `flag value` in a row.
pub fn pids_with_arg(binary: &str, flag: &str, value: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(binary.as_bytes()))
                && args
                    .windows(2)
                    .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
        })
        .collect()
}

/// Stops and removes every pod of the CRI server at `socket`, best effort (the harness's
/// own cleanup, shared).
pub use crid_conformance::fixtures::containerd::remove_all_pods;

/// Pulls `image` through CRI.
pub async fn pull(channel: Channel, image: &str) -> Result<()> {
    ImageServiceClient::new(channel)
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .with_context(|| format!("PullImage {image}"))?;
    Ok(())
}

/// The kubelet's namespaces for a pod that does not share its process namespace: the pod's
/// network and IPC, a PID namespace per container (so neither runtime needs a pod PID 1).
pub fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A pod config with unique metadata and [`namespaces`], logging under `logs/<name>` (made
/// here: the kubelet makes it, and containerd expects it).
pub fn pod_config(name: &str, logs: &Path) -> Result<cri::PodSandboxConfig> {
    let log_dir = logs.join(name);
    std::fs::create_dir_all(&log_dir)?;
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "crid-bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.display().to_string(),
        labels: HashMap::from([("app".to_owned(), "bench".to_owned())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A container running `cmd` from `image` with [`namespaces`], logging to `<name>.log`.
pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Times one call.
pub async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

/// The `q` quantile (0..=1) by the nearest-rank method; zero for no samples.
pub fn percentile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut v = samples.to_vec();
    v.sort();
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median and p90 of `samples`.
pub fn median_p90(samples: &[Duration]) -> (Duration, Duration) {
    (percentile(samples, 0.5), percentile(samples, 0.9))
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Resident, proportional and anonymous set size of a process, in KiB.
///
/// File-backed pages (the binary, libc) count in RSS as far as they are mapped, and this
/// kernel maps whole large page-cache folios at a fault, so RSS moves with the page cache;
/// PSS shares them out, and the anonymous pages (heap, stacks) are the process's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS from /proc/PID/status.
    pub rss_kib: u64,
    /// Pss from /proc/PID/smaps_rollup.
    pub pss_kib: u64,
    /// Anonymous from /proc/PID/smaps_rollup.
    pub anon_kib: u64,
}

impl Memory {
    /// Reads both for `pid`.
    pub fn of(pid: i32) -> Result<Memory> {
        let field = |text: &str, key: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("read /proc/{pid}/status"))?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("read /proc/{pid}/smaps_rollup"))?;
        Ok(Memory {
            rss_kib: field(&status, "VmRSS:").context("no VmRSS")?,
            pss_kib: field(&rollup, "Pss:").context("no Pss")?,
            anon_kib: field(&rollup, "Anonymous:").context("no Anonymous")?,
        })
    }

    /// `RSS | PSS | anonymous` in MiB, as table cells.
    pub fn show(&self) -> String {
        let mib = |k: u64| k as f64 / 1024.0;
        format!(
            "{:.2} | {:.2} | {:.2}",
            mib(self.rss_kib),
            mib(self.pss_kib),
            mib(self.anon_kib)
        )
    }
}

/// The mappings of `pid` holding the most resident memory: `(Rss KiB, Pss KiB, name)`.
pub fn top_mappings(pid: i32, n: usize) -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out: Vec<(u64, u64, String)> = Vec::new();
    let mut current: Option<(u64, u64, String)> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: `start-end perms offset dev inode [path]`.
            out.extend(current.take());
            let name = line
                .split_whitespace()
                .nth(5)
                .unwrap_or("[anon]")
                .to_owned();
            current = Some((0, 0, name));
        } else if let Some(c) = current.as_mut() {
            let value = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match first {
                "Rss:" => c.0 = value,
                "Pss:" => c.1 = value,
                _ => {}
            }
        }
    }
    out.extend(current);
    // Sum per name: a binary's text, data and bss are separate mappings.
    let mut by_name: Vec<(u64, u64, String)> = Vec::new();
    for (rss, pss, name) in out {
        match by_name.iter_mut().find(|e| e.2 == name) {
            Some(e) => {
                e.0 += rss;
                e.1 += pss;
            }
            None => by_name.push((rss, pss, name)),
        }
    }
    by_name.sort_by_key(|e| std::cmp::Reverse(e.0));
    by_name.truncate(n);
    by_name
}

/// A network namespace pinned by a bind mount of a thread's own, unpinned on drop.
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Unshares a network namespace on a short-lived thread and pins it at `path`.
    pub fn new(path: PathBuf) -> Result<NetNs> {
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let target = path.clone();
        std::thread::spawn(move || -> nix::Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
        .context("unshare and pin a network namespace (needs root)")?;
        Ok(NetNs { path })
    }

    /// The pin.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `true` when `--list` was passed (`cargo bench -- --list` asks harness-less benches for
/// their names; they have nothing to list).
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

/// A positive count from the environment, else `default`.
pub fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}=`{v}` is not a positive count"),
        },
        Err(_) => Ok(default),
    }
}

/// Machine facts for the report: cores, memory, kernel, runc version.
pub fn machine_facts() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let runc = Command::new(RUNC)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    format!(
        "{cores} cores, {:.1} GiB RAM, kernel {}, {runc}",
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

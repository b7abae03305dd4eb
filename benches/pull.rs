//! Pull benchmark (not a test): a multi-layer image of over 100 MiB, served by the real
//! docker-registry fixture on loopback, pulled cold by
//!
//! - crid (CRI PullImage over its socket: download, verify, unpack), and
//! - Debian's containerd (CRI PullImage to its CRI plugin: download into its content store
//!   and unpack into the overlayfs snapshotter), the conformance fixture on its own socket,
//!   root and state, with the registry as its plain-HTTP mirror,
//!
//! both through the same RPC, each cold (a fresh daemon per pull), alternately, the order
//! swapped every round so neither always runs first (page cache, CPU frequency, the other
//! builds on the machine), plus the floors that bound any pull: sha256 and gunzip of the
//! same bytes, and crid's unpack alone from memory.
//!
//! Run as root: `cargo bench -p crid --bench pull` (env `PULL_BENCH_ROUNDS`, default 3).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crid::image::reference::Digest;
use crid::storage::layers::LayerStore;
use crid_api::runtime::v1 as cri;
use crid_conformance::fixtures::containerd::{Containerd, ContainerdOptions};
use crid_conformance::fixtures::image::Blob;
use crid_conformance::fixtures::registry::{Registry, RegistryOptions};
use sha2::Digest as _;

const LAYERS: usize = 5;
const FILES_PER_LAYER: usize = 192;
const FILE_SIZE: usize = 128 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

struct Image {
    layers: Vec<(Vec<u8>, Vec<u8>)>,
    config: Blob,
    manifest: Blob,
}

impl Image {
    fn compressed(&self) -> u64 {
        self.layers.iter().map(|(_, gz)| gz.len() as u64).sum()
    }
    fn uncompressed(&self) -> u64 {
        self.layers.iter().map(|(tar, _)| tar.len() as u64).sum()
    }
}

/// Text-like, compressible content (words drawn by xorshift from a small vocabulary).
fn content(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "container",
        "runtime",
        "layer",
        "image",
        "kubelet",
        "overlay",
        "digest",
        "registry",
        "manifest",
        "sandbox",
        "pod",
        "namespace",
        "cgroup",
        "mount",
        "blob",
        "index",
        "tar",
        "gzip",
        "socket",
        "stream",
        "0x3f",
        "1024",
        "/usr/lib",
        "config",
        "\n",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x & 0x300 == 0 { b'\n' } else { b' ' });
        // Some noise, so the data compresses about 3:1 like typical image content.
        if x & 0x3 == 0 {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn build_image() -> Result<Image> {
    let mut layers = Vec::new();
    for l in 0..LAYERS {
        let mut b = tar::Builder::new(Vec::new());
        for f in 0..FILES_PER_LAYER {
            let data = content(FILE_SIZE, (l * 1000 + f) as u64 + 1);
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, format!("usr/share/l{l}/d{}/f{f}", f % 8), &data[..])?;
        }
        let tar = b.into_inner()?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar)?;
        layers.push((tar.clone(), gz.finish()?));
    }
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(t, _)| Digest::of(t).to_string())
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config)?,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config.media_type(), "digest": config.digest().as_str(), "size": config.size()},
        "layers": layers.iter().map(|(_, gz)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": Digest::of(gz).as_str(), "size": gz.len(),
        })).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest)?,
    );
    Ok(Image {
        layers,
        config,
        manifest,
    })
}

/// A child process stopped (SIGTERM, then SIGKILL) by PID when dropped.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_socket(path: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("{what} did not listen on {} within 20s", path.display())
}

async fn crid_pull(work: &Path, registry: &str, image: &str) -> Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("crid-bench-")
        .tempdir_in(work)?;
    let sock = dir.path().join("crid.sock");
    std::fs::create_dir(dir.path().join("crid.d"))?;
    std::fs::write(
        dir.path().join("crid.toml"),
        format!(
            "[image]\ninsecure_registries = [\"{registry}\"]\n[storage]\nroot = \"{}\"\nrunroot = \"{}\"\n[network]\ncni_config_dir = \"{}\"\n",
            dir.path().join("root").display(),
            dir.path().join("run").display(),
            dir.path().join("net.d").display()
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("crid.log"))?;
    let _daemon = Proc(Some(
        Command::new(env!("CARGO_BIN_EXE_crid"))
            .arg("--config")
            .arg(dir.path().join("crid.toml"))
            .arg("--config-dir")
            .arg(dir.path().join("crid.d"))
            .arg("--listen")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start crid")?,
    ));
    wait_socket(&sock, "crid")?;
    let channel = crid_api::client::connect_path(&sock).await?;
    let mut c = cri::image_service_client::ImageServiceClient::new(channel);
    let start = Instant::now();
    c.pull_image(cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .context("crid PullImage")?;
    Ok(start.elapsed())
}

async fn containerd_pull(work: &Path, registry: &str, image: &str) -> Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("containerd-bench-")
        .tempdir_in(work)?;
    let mut opts = ContainerdOptions::new(registry);
    // The fixture's own directory (it must be missing or empty): removed with the TempDir.
    opts.dir = Some(dir.path().join("containerd"));
    let ctd = Containerd::start(opts)
        .await
        .context("start containerd (run scripts/setup.sh: apt containerd)")?;
    let mut c = cri::image_service_client::ImageServiceClient::new(ctd.channel().await?);
    let start = Instant::now();
    let pulled = c
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let elapsed = start.elapsed();
    ctd.shutdown().await.context("containerd teardown")?;
    pulled.context("containerd PullImage")?;
    Ok(elapsed)
}

fn throughput(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn floors(img: &Image, work: &Path) -> Result<(f64, f64, f64, f64)> {
    let c = img.compressed();
    let u = img.uncompressed();
    let t = Instant::now();
    for (_, gz) in &img.layers {
        std::hint::black_box(sha2::Sha256::digest(gz));
    }
    let sha_c = throughput(c, t.elapsed());
    let t = Instant::now();
    for (_, gz) in &img.layers {
        let mut d = flate2::read::MultiGzDecoder::new(&gz[..]);
        let mut buf = vec![0u8; 256 * 1024];
        while d.read(&mut buf)? > 0 {}
    }
    let gunzip_u = throughput(u, t.elapsed());
    // gunzip + sha256 of both streams: what any verifying pull must do, minus disk and net.
    let t = Instant::now();
    for (_, gz) in &img.layers {
        let mut h = crid::storage::layers::HashingReader::new(&gz[..]);
        let mut d =
            crid::storage::layers::HashingReader::new(flate2::read::MultiGzDecoder::new(&mut h));
        std::io::copy(&mut d, &mut std::io::sink())?;
        std::hint::black_box((d.digest(), h.digest()));
    }
    let verify_u = throughput(u, t.elapsed());
    let dir = tempfile::Builder::new()
        .prefix("unpack-bench-")
        .tempdir_in(work)?;
    let store = LayerStore::open(dir.path().join("layers"))?;
    let t = Instant::now();
    for (tar, gz) in &img.layers {
        store.unpack(&gz[..], &Digest::of(tar), |_| Ok(()))?;
    }
    let unpack_u = throughput(u, t.elapsed());
    Ok((sha_c, gunzip_u, verify_u, unpack_u))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list` asks harness-less benches for their names.
    }
    let rounds: usize = std::env::var("PULL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    eprintln!("building the image ...");
    let img = tokio::task::spawn_blocking(build_image).await??;
    let (c, u) = (img.compressed(), img.uncompressed());
    eprintln!(
        "image: {LAYERS} layers, {:.1} MiB uncompressed, {:.1} MiB gzip",
        u as f64 / MIB,
        c as f64 / MIB
    );
    let reg = Registry::start(RegistryOptions::plain())
        .await
        .context("start docker-registry (run scripts/setup.sh)")?;
    for (_, gz) in &img.layers {
        reg.client()
            .push_blob(
                "bench",
                &Blob::new("application/vnd.oci.image.layer.v1.tar+gzip", gz.clone()),
            )
            .await?;
    }
    reg.client().push_blob("bench", &img.config).await?;
    reg.client()
        .push_manifest("bench", "latest", &img.manifest)
        .await?;
    let image = reg.image_ref("bench", "latest");

    let (mut crid_t, mut ctr_t) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Even rounds crid first, odd rounds containerd first.
        for crid_turn in [round % 2 == 0, round % 2 != 0] {
            if crid_turn {
                let t = crid_pull(&work, &reg.host(), &image).await?;
                eprintln!("round {round}: crid       {:>6.2}s", t.as_secs_f64());
                crid_t.push(t);
            } else {
                let t = containerd_pull(&work, &reg.host(), &image).await?;
                eprintln!("round {round}: containerd {:>6.2}s", t.as_secs_f64());
                ctr_t.push(t);
            }
        }
    }
    let (sha_c, gunzip_u, verify_u, unpack_u) =
        tokio::task::spawn_blocking(move || floors(&img, &work)).await??;
    let (cm, km) = (median(crid_t.clone()), median(ctr_t.clone()));
    println!(
        "pull benchmark: {LAYERS} gzip layers, {:.1} MiB compressed, {:.1} MiB uncompressed, loopback docker-registry, CRI PullImage on both, {rounds} cold rounds in alternating order (median)",
        c as f64 / MIB,
        u as f64 / MIB
    );
    println!("| measure | time | MiB/s compressed | MiB/s uncompressed |");
    println!("|---|---|---|---|");
    println!(
        "| crid PullImage (pull+verify+unpack) | {:.2}s | {:.1} | {:.1} |",
        cm.as_secs_f64(),
        throughput(c, cm),
        throughput(u, cm)
    );
    println!(
        "| containerd 1.6 CRI PullImage (pull+unpack) | {:.2}s | {:.1} | {:.1} |",
        km.as_secs_f64(),
        throughput(c, km),
        throughput(u, km)
    );
    println!("| crid unpack alone, from memory (gunzip+hash+write+syncfs) | | | {unpack_u:.1} |");
    println!("| floor: gunzip + sha256 of both streams, one core | | | {verify_u:.1} |");
    println!("| floor: gunzip, one core | | | {gunzip_u:.1} |");
    println!("| floor: sha256 of the compressed bytes | | {sha_c:.1} | |");
    println!(
        "crid / containerd speed-up: {:.2}x",
        km.as_secs_f64() / cm.as_secs_f64()
    );
    println!(
        "crid vs the single-stream verify floor: {:.0}% of {verify_u:.1} MiB/s (layers unpack in parallel, so crid may exceed one core's floor)",
        100.0 * throughput(u, cm) / verify_u
    );
    Ok(())
}

//! A pod's namespaces, pinned by bind mounts so they outlive every process (no infra
//! process is needed unless the pod shares a PID namespace), and its /dev/shm.
//!
//! The namespaces are made by a short-lived thread: `unshare` of the network, IPC and UTS
//! namespaces is per thread, so the thread sets the hostname, brings `lo` up, applies the
//! pod's sysctls and bind-mounts its `/proc/thread-self/ns/*` files, then exits; the
//! daemon's other threads never change namespace.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;

/// NSFS_MAGIC: the filesystem type of a namespace file (a pin is a mount of one).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Why a pod's namespaces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NamespaceError {
    /// What was being done.
    pub what: String,
    /// The OS error.
    pub source: io::Error,
}

/// How a failed sysctl write is named in [`NamespaceError::what`].
const SETTING_SYSCTL: &str = "setting sysctl ";

impl NamespaceError {
    /// The kernel refused a sysctl's value (EINVAL, ERANGE): the request's fault.
    pub fn is_rejected_sysctl_value(&self) -> bool {
        self.what.starts_with(SETTING_SYSCTL)
            && matches!(
                self.source.raw_os_error(),
                Some(libc::EINVAL | libc::ERANGE)
            )
    }
}

fn err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> NamespaceError {
    let what = what.into();
    move |e| NamespaceError {
        what,
        source: e.into(),
    }
}

/// Which namespaces to create and pin, and how to set them up.
#[derive(Debug, Clone, Default)]
pub struct PinRequest {
    /// Directory the pins go into (`net`, `ipc`, `uts`).
    pub dir: PathBuf,
    /// A new network namespace (with `lo` up).
    pub net: bool,
    /// A new IPC namespace.
    pub ipc: bool,
    /// A new UTS namespace with this hostname.
    pub uts: Option<String>,
    /// Namespaced sysctls (`net.*` in the network namespace, IPC ones in the IPC one).
    pub sysctls: Vec<(String, String)>,
}

/// The pinned namespace files; `None` where the host's namespace is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pinned {
    /// Network namespace.
    pub net: Option<PathBuf>,
    /// IPC namespace.
    pub ipc: Option<PathBuf>,
    /// UTS namespace.
    pub uts: Option<PathBuf>,
}

impl Pinned {
    /// Every pin, for cleanup.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.net, &self.ipc, &self.uts].into_iter().flatten()
    }
}

/// Creates and pins the requested namespaces. Blocking (a thread is created and joined):
/// call it from `spawn_blocking`. On error, whatever was pinned is unpinned.
pub fn pin(req: &PinRequest) -> Result<Pinned, NamespaceError> {
    std::fs::create_dir_all(&req.dir).map_err(|source| NamespaceError {
        what: format!("creating {}", req.dir.display()),
        source,
    })?;
    let pinned = Pinned {
        net: req.net.then(|| req.dir.join("net")),
        ipc: req.ipc.then(|| req.dir.join("ipc")),
        uts: req.uts.as_ref().map(|_| req.dir.join("uts")),
    };
    if pinned.paths().next().is_none() {
        return Ok(pinned);
    }
    let req2 = req.clone();
    let pinned2 = pinned.clone();
    let result = std::thread::Builder::new()
        .name("crid-netns".into())
        .spawn(move || pin_in_thread(&req2, &pinned2))
        .map_err(|source| NamespaceError {
            what: "spawning the namespace thread".into(),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(NamespaceError {
                what: "namespace thread".into(),
                source: io::Error::other("panicked"),
            })
        });
    if let Err(e) = result {
        for p in pinned.paths() {
            let _ = unpin(p);
        }
        return Err(e);
    }
    Ok(pinned)
}

/// Runs on its own thread, which ends afterwards: its namespace changes die with it.
fn pin_in_thread(req: &PinRequest, pinned: &Pinned) -> Result<(), NamespaceError> {
    let mut flags = CloneFlags::empty();
    if req.net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if req.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if req.uts.is_some() {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    nix::sched::unshare(flags).map_err(err("unshare"))?;
    if let Some(h) = &req.uts {
        nix::unistd::sethostname(h).map_err(err(format!("setting hostname {h}")))?;
    }
    if req.net {
        loopback_up().map_err(|source| NamespaceError {
            what: "bringing lo up".into(),
            source,
        })?;
    }
    for (key, value) in &req.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| NamespaceError {
            what: format!("{SETTING_SYSCTL}{key}={value}"),
            source,
        })?;
    }
    for (kind, path) in [
        ("net", &pinned.net),
        ("ipc", &pinned.ipc),
        ("uts", &pinned.uts),
    ] {
        let Some(path) = path else { continue };
        std::fs::File::create(path).map_err(|source| NamespaceError {
            what: format!("creating {}", path.display()),
            source,
        })?;
        let source = format!("/proc/thread-self/ns/{kind}");
        mount(
            Some(source.as_str()),
            path.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err(format!(
            "pinning the {kind} namespace at {}",
            path.display()
        )))?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `path` is a live namespace pin.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Unmounts a pin and removes its file; absent or already unmounted is fine.
pub fn unpin(path: &Path) -> io::Result<()> {
    unmount(path)?;
    crate::state::remove_file(path)
}

pub use crate::storage::unmount;

/// Mounts the pod's /dev/shm: a 64 MiB tmpfs, as Docker, containerd and CRI-O size it.
pub fn mount_shm(path: &Path) -> Result<(), NamespaceError> {
    std::fs::create_dir_all(path).map_err(|source| NamespaceError {
        what: format!("creating {}", path.display()),
        source,
    })?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(err(format!("mounting the pod's shm at {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_sysctl_value_is_the_requests_fault() {
        let refused = NamespaceError {
            what: format!("{SETTING_SYSCTL}net.ipv4.ip_forward=banana"),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(refused.is_rejected_sysctl_value());
        let denied = NamespaceError {
            what: format!("{SETTING_SYSCTL}net.ipv4.ip_forward=1"),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(!denied.is_rejected_sysctl_value());
        let other = NamespaceError {
            what: "bringing lo up".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(!other.is_rejected_sysctl_value());
    }

    // oci-runtime:config-linux.md#namespaces (a path joins an existing namespace)
    #[test]
    fn pinned_namespaces_outlive_their_thread_and_unpin_cleanly_needs_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = PinRequest {
            dir: dir.path().join("ns"),
            net: true,
            ipc: true,
            uts: Some("pinned-host".into()),
            sysctls: vec![("net.ipv4.ip_unprivileged_port_start".into(), "80".into())],
        };
        let pinned = pin(&req).expect("pin");
        for p in pinned.paths() {
            assert!(is_pinned(p), "{} is a pin", p.display());
        }
        let host_net = std::fs::read_link("/proc/self/ns/net").expect("readlink");
        let pinned_net = nix::sys::stat::stat(pinned.net.as_deref().expect("net")).expect("stat");
        let host_stat = nix::sys::stat::stat("/proc/self/ns/net").expect("stat");
        assert_ne!(
            pinned_net.st_ino, host_stat.st_ino,
            "{host_net:?} differs from the pin"
        );
        // The hostname and sysctl landed in the pinned namespaces, not the host's.
        let seen = std::thread::spawn({
            let uts = pinned.uts.clone().expect("uts");
            let net = pinned.net.clone().expect("net");
            move || {
                let f = std::fs::File::open(&uts).expect("open uts");
                nix::sched::setns(&f, CloneFlags::CLONE_NEWUTS).expect("setns uts");
                let n = std::fs::File::open(&net).expect("open net");
                nix::sched::setns(&n, CloneFlags::CLONE_NEWNET).expect("setns net");
                let host = nix::unistd::gethostname().expect("hostname");
                let port = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                    .expect("sysctl");
                // lo is up: a listener on 127.0.0.1 accepts.
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind lo");
                let addr = l.local_addr().expect("addr");
                std::net::TcpStream::connect(addr).expect("connect over lo");
                (host.to_string_lossy().into_owned(), port.trim().to_owned())
            }
        })
        .join()
        .expect("join");
        assert_eq!(seen, ("pinned-host".to_owned(), "80".to_owned()));
        assert_ne!(
            nix::unistd::gethostname().expect("h").to_string_lossy(),
            "pinned-host"
        );
        for p in pinned.paths() {
            unpin(p).expect("unpin");
            assert!(!p.exists());
            unpin(p).expect("unpin twice");
        }
    }

    #[test]
    fn shm_is_a_tmpfs_needs_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shm = dir.path().join("shm");
        mount_shm(&shm).expect("mount");
        let fs = nix::sys::statfs::statfs(&shm).expect("statfs");
        assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
        unmount(&shm).expect("unmount");
        unmount(&shm).expect("unmount twice");
    }
}

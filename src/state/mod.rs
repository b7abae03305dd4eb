//! Persisted records: atomic writes (temp file, fsync, rename, directory fsync) so a reader
//! never sees half a record, even after `kill -9` of the daemon or a power cut, and the
//! on-disk layout of pods and containers.

pub mod access;
pub mod records;
pub mod store;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use access::{Access, secure_dir};

pub use records::{ContainerRecord, ContainerState, PodRecord, PodState};

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically (temp file and rename) but not durably: for files
/// under `storage.runroot`, a tmpfs in production, which a reboot empties anyway.
pub fn write_volatile(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Serializes `value` as JSON into `path` with [`write_atomic`].
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a file; absent is fine.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a directory tree; absent is fine.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A pod's volatile directory (see [`Layout::pod_dir`]) and the paths in it.
#[derive(Debug, Clone)]
pub struct PodDir {
    /// The directory.
    pub dir: PathBuf,
}

impl PodDir {
    /// Namespace pins (`net`, `ipc`, `uts`).
    pub fn ns(&self) -> PathBuf {
        self.dir.join("ns")
    }
    /// The pod's /dev/shm mount.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    /// The hostname file.
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    /// The hosts file.
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    /// The resolv.conf file.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
}

/// `<root>/storage/layers`: unpacked layers by diff ID.
pub fn layers_dir(root: &Path) -> PathBuf {
    root.join("storage").join("layers")
}

/// `<root>/storage/containers`: container writable layers.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("storage").join("containers")
}

/// Where pods and containers keep their state.
///
/// Records live under `storage.root` (they outlive a reboot, as the kubelet expects of
/// pods it has not removed); what the kernel holds (namespace pins, the shm tmpfs, rootfs
/// mounts, bundles, exit files) lives under `storage.runroot`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    runroot: PathBuf,
}

impl Layout {
    /// The layout under the two configured directories.
    pub fn new(root: &Path, runroot: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
        }
    }

    /// Takes the storage root for this daemon: two daemons sharing one root would each
    /// "recover" the other's pods. The lock is held as long as the returned guard lives.
    pub fn lock(&self) -> io::Result<nix::fcntl::Flock<std::fs::File>> {
        secure_dir(&self.root, Access::Traverse)?;
        let path = self.root.join("crid.lock");
        lock_exclusive(&path)?.map_err(|pid| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "storage root {} is in use by another crid (it holds {}{})",
                    self.root.display(),
                    path.display(),
                    pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                ),
            )
        })
    }

    /// Creates the directories every operation assumes, and repairs the modes of those
    /// that exist (see [`Layout::private_dirs`]).
    pub fn create(&self) -> io::Result<()> {
        for (d, access) in self.private_dirs() {
            secure_dir(&d, access)?;
        }
        for d in [self.pod_records(), self.container_records()] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }

    /// crid's directories with how far other users may reach into them: the two roots
    /// at most `0711` (the socket may live below the runroot), and every directory that
    /// holds image or container content `0700`. Parents come before their children.
    pub fn private_dirs(&self) -> Vec<(PathBuf, Access)> {
        let private = |p: PathBuf| (p, Access::Private);
        vec![
            (self.root.clone(), Access::Traverse),
            private(self.root.join("storage")),
            private(layers_dir(&self.root)),
            private(containers_dir(&self.root)),
            // Image configs and manifests (env values may be secrets).
            private(self.root.join("image")),
            private(self.root.join("state")),
            (self.runroot.clone(), Access::Traverse),
            // Bundles hold the mounted container root filesystems.
            private(self.runroot.join("containers")),
            // Pod directories hold the pod's /dev/shm and namespace pins.
            private(self.runroot.join("pods")),
            private(self.exits()),
        ]
    }

    /// `storage.runroot`.
    pub fn runroot(&self) -> &Path {
        &self.runroot
    }

    /// Directory of pod records.
    pub fn pod_records(&self) -> PathBuf {
        self.root.join("state").join("pods")
    }

    /// Directory of container records.
    pub fn container_records(&self) -> PathBuf {
        self.root.join("state").join("containers")
    }

    /// A pod's record.
    pub fn pod_record(&self, id: &str) -> PathBuf {
        self.pod_records().join(format!("{id}.json"))
    }

    /// A container's record.
    pub fn container_record(&self, id: &str) -> PathBuf {
        self.container_records().join(format!("{id}.json"))
    }

    /// A pod's volatile directory: namespace pins, shm, resolv.conf, hosts, hostname.
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.runroot.join("pods").join(id)
    }

    /// A pod's volatile directory with the paths of what it holds.
    pub fn pod_files(&self, id: &str) -> PodDir {
        PodDir {
            dir: self.pod_dir(id),
        }
    }

    /// A container's bundle directory (config.json, rootfs mount point, pid file).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    /// A container's writable layer (overlay upper and work directories).
    pub fn container_storage(&self, id: &str) -> PathBuf {
        containers_dir(&self.root).join(id)
    }

    /// The directory crid-monitor writes exit files into; the daemon watches it.
    pub fn exits(&self) -> PathBuf {
        self.runroot.join("exits")
    }

    /// A container's exit file.
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.exits().join(id)
    }

    /// Loads every record of a directory, skipping temp files; unreadable records are
    /// reported with their path.
    pub fn load<T: DeserializeOwned>(
        dir: &Path,
    ) -> io::Result<Vec<Result<T, (PathBuf, io::Error)>>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let is_record = path.extension().is_some_and(|e| e == "json")
                && !path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_record {
                continue;
            }
            out.push(match read_json::<T>(&path) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => continue,
                Err(e) => Err((path, e)),
            });
        }
        Ok(out)
    }
}

/// Takes an exclusive `flock` on `path` (created if missing) and records our pid in it.
/// `Ok(Err(pid))` when another process holds it: the pid it recorded, if readable.
pub fn lock_exclusive(
    path: &Path,
) -> io::Result<Result<nix::fcntl::Flock<std::fs::File>, Option<u32>>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::{Read, Seek};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(Ok(lock))
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Ok(Err(text.trim().parse().ok()))
        }
        Err((_, errno)) => Err(errno.into()),
    }
}

/// A new random 64-hex-digit ID, as containerd and CRI-O make them.
pub fn new_id() -> io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_atomic_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("absent"), None);
        write_json(&path, &vec![1u32, 2]).expect("write");
        write_json(&path, &vec![3u32]).expect("overwrite");
        assert_eq!(read_json::<Vec<u32>>(&path).expect("read"), Some(vec![3]));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        let loaded = Layout::load::<Vec<u32>>(dir.path()).expect("load");
        assert_eq!(loaded.len(), 1);
    }

    #[test]
    fn a_corrupt_record_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.json"), b"{").expect("w");
        std::fs::write(dir.path().join(".tmpXYZ"), b"{").expect("w");
        let loaded = Layout::load::<Vec<u32>>(dir.path()).expect("load");
        assert_eq!(loaded.len(), 1);
        let (path, _) = loaded[0].as_ref().expect_err("corrupt");
        assert!(path.ends_with("bad.json"));
    }

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = new_id().expect("id");
        let b = new_id().expect("id");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

//! A recording [`Host`] for unit tests, as youki's `TestHelperSyscall`: every call is
//! logged, a model keeps what would exist on a real host (pins, mounts, cgroups), and any
//! operation can be made to fail, so rollback and cleanup are checked without root.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Host, NamespaceError, PinRequest, Pinned};
use crate::storage::overlay::RootfsLayout;

/// What the fake host holds now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Model {
    /// Live namespace pins.
    pub pins: BTreeSet<PathBuf>,
    /// Mount points (shm and root filesystems).
    pub mounts: BTreeSet<PathBuf>,
    /// Cgroups a container may have populated (known from `kill_remaining` targets).
    pub cgroups: BTreeSet<String>,
}

impl Model {
    /// Nothing is pinned or mounted.
    pub fn is_clean(&self) -> bool {
        self.pins.is_empty() && self.mounts.is_empty()
    }
}

/// The recording host.
#[derive(Debug, Default)]
pub struct Recording {
    calls: Mutex<Vec<String>>,
    model: Mutex<Model>,
    fail: Mutex<BTreeSet<&'static str>>,
}

impl Recording {
    /// Makes every later call of `op` (a method name, e.g. `mount_rootfs`) fail.
    pub fn fail(&self, op: &'static str) {
        lock(&self.fail).insert(op);
    }

    /// Lets `op` succeed again.
    pub fn heal(&self, op: &'static str) {
        lock(&self.fail).remove(op);
    }

    /// The calls so far, as `op path`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// What exists now.
    pub fn model(&self) -> Model {
        lock(&self.model).clone()
    }

    fn call(&self, op: &'static str, arg: &dyn std::fmt::Display) -> io::Result<()> {
        lock(&self.calls).push(format!("{op} {arg}"));
        if lock(&self.fail).contains(op) {
            return Err(io::Error::other(format!("injected failure of {op}")));
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_err(what: &str) -> impl FnOnce(io::Error) -> NamespaceError {
    let what = what.to_owned();
    move |source| NamespaceError { what, source }
}

impl Host for Recording {
    fn pin_namespaces(&self, req: &PinRequest) -> Result<Pinned, NamespaceError> {
        self.call("pin_namespaces", &req.dir.display())
            .map_err(ns_err("pinning"))?;
        std::fs::create_dir_all(&req.dir).map_err(ns_err("creating the pin directory"))?;
        let pin = |on: bool, name: &str| on.then(|| req.dir.join(name));
        let pinned = Pinned {
            net: pin(req.net, "net"),
            ipc: pin(req.ipc, "ipc"),
            uts: pin(req.uts.is_some(), "uts"),
        };
        let mut m = lock(&self.model);
        for p in pinned.paths() {
            std::fs::write(p, b"").map_err(ns_err("creating a pin file"))?;
            m.pins.insert(p.clone());
        }
        Ok(pinned)
    }

    fn unpin(&self, path: &Path) -> io::Result<()> {
        self.call("unpin", &path.display())?;
        lock(&self.model).pins.remove(path);
        crate::state::remove_file(path)
    }

    fn is_pinned(&self, path: &Path) -> bool {
        lock(&self.model).pins.contains(path)
    }

    fn mount_shm(&self, path: &Path) -> Result<(), NamespaceError> {
        self.call("mount_shm", &path.display())
            .map_err(ns_err("mounting shm"))?;
        std::fs::create_dir_all(path).map_err(ns_err("creating shm"))?;
        lock(&self.model).mounts.insert(path.to_path_buf());
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        self.call("unmount", &path.display())?;
        lock(&self.model).mounts.remove(path);
        Ok(())
    }

    fn mount_rootfs(&self, layout: &RootfsLayout, lower: &[PathBuf]) -> io::Result<()> {
        self.call("mount_rootfs", &layout.target.display())?;
        if lower.is_empty() {
            return Err(io::Error::other("no lower layers"));
        }
        std::fs::create_dir_all(layout.storage.join("upper"))?;
        std::fs::create_dir_all(&layout.target)?;
        lock(&self.model).mounts.insert(layout.target.clone());
        Ok(())
    }

    fn remove_rootfs(&self, layout: &RootfsLayout) -> io::Result<()> {
        self.call("remove_rootfs", &layout.target.display())?;
        lock(&self.model).mounts.remove(&layout.target);
        crate::state::remove_dir_all(&layout.storage)
    }

    fn mount_image_volume(&self, target: &Path, lower: &[PathBuf]) -> io::Result<()> {
        self.call("mount_image_volume", &target.display())?;
        if lower.is_empty() {
            return Err(io::Error::other("no lower layers"));
        }
        std::fs::create_dir_all(target)?;
        lock(&self.model).mounts.insert(target.to_path_buf());
        Ok(())
    }

    fn kill_remaining(&self, cgroups_path: &str, _limit: Duration) -> io::Result<usize> {
        self.call("kill_remaining", &cgroups_path)?;
        lock(&self.model).cgroups.insert(cgroups_path.to_owned());
        Ok(0)
    }

    fn remove_cgroup(&self, cgroups_path: &str) -> io::Result<()> {
        self.call("remove_cgroup", &cgroups_path)?;
        lock(&self.model).cgroups.remove(cgroups_path);
        Ok(())
    }

    fn set_oom_score_adj(&self, cgroups_path: &str, pid: i32, value: i64) -> io::Result<()> {
        self.call(
            "set_oom_score_adj",
            &format!("{cgroups_path} {pid} {value}"),
        )
    }

    fn write_cgroup_v1(
        &self,
        controller: &str,
        cgroups_path: &str,
        file: &str,
        value: &str,
    ) -> io::Result<()> {
        self.call(
            "write_cgroup_v1",
            &format!("{controller} {cgroups_path} {file} {value}"),
        )
    }

    fn sysctl_exists(&self, key: &str) -> bool {
        key != "net.no.such.sysctl"
    }

    fn hostname(&self) -> String {
        "fake-host".to_owned()
    }
}

//! Shared by the harness's integration tests: a fixture registry recorded in a state
//! directory (what `--registry-state` reads) and containerd mirroring it, both torn down
//! by guards even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crid_conformance::fixtures::containerd::{Containerd, ContainerdOptions};
use crid_conformance::fixtures::registry::RegistryOptions;
use crid_conformance::fixtures::registry::state;

/// The registry `fixtures up` would start, stopped and removed on drop.
pub struct RegistryState {
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl RegistryState {
    /// Starts docker-registry in a fresh state directory and pushes every fixture image.
    pub async fn up() -> RegistryState {
        let dir = tempfile::Builder::new()
            .prefix("crid-conformance-test-")
            .tempdir()
            .expect("temp dir");
        let st = state::up(&dir.path().join("registry"), RegistryOptions::plain())
            .await
            .expect("start the fixture registry (run scripts/setup.sh for docker-registry and busybox-static)");
        RegistryState { dir, host: st.host }
    }

    /// The directory to pass as `--registry-state`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("registry")
    }
}

impl Drop for RegistryState {
    fn drop(&mut self) {
        let _ = state::down(&self.state_dir());
    }
}

/// Fails with the setup hint unless the test runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (containerd, mounts, network namespaces): run it as root after scripts/setup.sh"
    );
}

/// containerd mirroring `registry`, torn down when dropped.
pub async fn containerd(registry: &RegistryState) -> Containerd {
    Containerd::start(ContainerdOptions::new(registry.host.clone()))
        .await
        .expect("start containerd (run scripts/setup.sh)")
}

/// The harness binary.
pub fn harness() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_crid-conformance"))
}

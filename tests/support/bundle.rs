//! OCI bundles for tests: a rootfs with Debian's static busybox and a config.json built by
//! crid's own `spec::build`. Dropping a bundle force-deletes any container left in its runc
//! or crun state directory, so a failing test leaks no container, process or cgroup.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crid::spec::{self, ImageProcess, PidNamespace, PodFiles, PodNamespaces, SpecInput, UserDb};
use crid_api::cri;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const GROUP: &str = "root:x:0:\n";

/// A bundle directory with `rootfs/`, `config.json` and a private runc root.
pub struct Bundle {
    /// The temp dir holding everything.
    pub dir: tempfile::TempDir,
    /// The container ID, unique per bundle.
    pub id: String,
}

impl Bundle {
    /// A bundle running `args` (e.g. `["/bin/sh", "-c", "echo hi"]`), with optional memory limit.
    pub fn new(args: &[&str], memory_limit: i64) -> Self {
        Self::with_pid_namespace(args, memory_limit, PidNamespace::Private)
    }

    /// [`Bundle::new`] with a choice of PID namespace (`PidNamespace::Host` to share the host's).
    pub fn with_pid_namespace(args: &[&str], memory_limit: i64, pid: PidNamespace) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crid-bundle-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("copy busybox (apt-get install busybox-static)");
        for applet in [
            "sh", "echo", "sleep", "head", "tr", "kill", "cat", "printf", "true",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
        }
        std::fs::write(root.join("etc/passwd"), PASSWD).expect("passwd");
        std::fs::write(root.join("etc/group"), GROUP).expect("group");
        let id = format!(
            "crid-test-{}",
            &dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()[11..]
        )
        .to_lowercase();

        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "t".into(),
                attempt: 0,
            }),
            command: args.iter().map(|s| (*s).to_owned()).collect(),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: memory_limit,
                    memory_swap_limit_in_bytes: memory_limit,
                    ..Default::default()
                }),
                security_context: None,
            }),
            ..Default::default()
        };
        let rootfs = root.display().to_string();
        let cgroups_path = format!("/{id}");
        let spec = spec::build(&SpecInput {
            container: &container,
            sandbox: &cri::PodSandboxConfig::default(),
            sandbox_id: "test-pod",
            container_id: &id,
            image: &ImageProcess::default(),
            users: &UserDb::parse(PASSWD, GROUP),
            rootfs: &rootfs,
            namespaces: &PodNamespaces {
                network: None,
                ipc: None,
                uts: None,
                pid,
                cgroup: false,
            },
            files: &PodFiles::default(),
            cgroups_path: &cgroups_path,
            host_capabilities: &crid::host::bounding_capabilities(),
            devices: &[],
            host_devices: &[],
            localhost_seccomp: None,
            host: &crid::host::probe_resources(),
            apparmor: false,
            image_volumes: &[],
        })
        .expect("spec");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&spec).expect("json"),
        )
        .expect("write");
        Self { dir, id }
    }

    /// A path inside the bundle dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// runc's state directory for this bundle.
    pub fn runc_root(&self) -> PathBuf {
        self.root_for("runc")
    }

    /// The state directory of runtime `name` (`runc` or `crun`) for this bundle; Drop
    /// cleans both.
    pub fn root_for(&self, name: &str) -> PathBuf {
        self.path(name)
    }

    /// The container's memory cgroup (cgroup v1 layout of this host, v2 when unified).
    pub fn memory_cgroup(&self) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup/memory").join(&self.id);
        if Path::new("/sys/fs/cgroup/memory").exists() {
            v1
        } else {
            Path::new("/sys/fs/cgroup").join(&self.id)
        }
    }

    /// Runs runc with this bundle's root; stdio to files, since a container keeps inherited pipes.
    pub fn runc(&self, args: &[&str]) -> (bool, String) {
        let err_path = self.path("runc.err");
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let status = std::process::Command::new("runc")
            .arg("--root")
            .arg(self.runc_root())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .status()
            .expect("run runc (apt-get install runc)");
        (
            status.success(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.runc_root()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.runc(&["delete", "--force", &id]);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.root_for("crun")) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let mut cmd = std::process::Command::new("crun");
                cmd.arg("--root")
                    .arg(self.root_for("crun"))
                    .args(["delete", "--force", &id])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                if crid::runtime::hybrid::CgroupLayout::detect().is_hybrid() {
                    // The same private mount namespace crid runs crun in.
                    unsafe {
                        cmd.pre_exec(crid::runtime::hybrid::enter_private_mount_ns);
                    }
                }
                let _ = cmd.status();
            }
        }
    }
}

//! What a container's OCI bundle is made of, read from the host and the image: the root
//! filesystem mount, the image's user database, devices, a Localhost seccomp profile.
//! `crate::spec::build` turns these into `config.json`, with no I/O of its own.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crid_api::cri;

use super::ContainerService;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::runtime::RuntimeHandler;
use crate::spec::{ResolvedDevice, UserDb, oci};
use crate::storage::overlay::RootfsLayout;

/// Largest /etc/passwd or /etc/group crid reads from an image.
const MAX_USER_DB: u64 = 4 * 1024 * 1024;

impl ContainerService {
    /// The rootfs layout of container (or infra container) `id`.
    pub(crate) fn rootfs_layout(&self, id: &str) -> RootfsLayout {
        RootfsLayout {
            storage: self.layout.container_storage(id),
            target: self.layout.bundle(id).join("rootfs"),
        }
    }

    /// Mounts the container's root filesystem over the image's layers.
    pub(crate) fn mount_rootfs(&self, id: &str, image: &ImageRecord) -> Result<PathBuf> {
        let lower = self.images.layer_dirs(image)?;
        let layout = self.rootfs_layout(id);
        self.host
            .mount_rootfs(&layout, &lower)
            .map_err(Error::host(format!(
                "container {id}: mounting the root filesystem"
            )))?;
        Ok(layout.target)
    }

    /// Where container `id`'s image volumes are mounted: a directory of its bundle.
    pub(crate) fn image_volumes_dir(&self, id: &str) -> PathBuf {
        self.layout.bundle(id).join("image-volumes")
    }

    /// cri:ImageSpec#runtime_handler of an image a container uses: empty (the default) or
    /// a configured handler; the image store is shared by every handler, so either finds
    /// the same images. An unknown handler is InvalidArgument naming `field`.
    pub(crate) fn check_image_handler(&self, requested: &str, field: &str) -> Result<()> {
        self.runtimes
            .check_known(requested)
            .map_err(|reason| Error::invalid(field, reason))
    }

    /// The images of the config's image volumes (cri:Mount#image), by mount index. The
    /// kubelet pulls them first: one that is not in the store is NotFound naming the field.
    pub(crate) fn image_volume_images(
        &self,
        config: &cri::ContainerConfig,
    ) -> Result<Vec<(usize, ImageRecord)>> {
        let mut out = Vec::new();
        for (i, m) in config.mounts.iter().enumerate() {
            let Some(spec) = &m.image else { continue };
            self.check_image_handler(&spec.runtime_handler, "config.mounts.image.runtime_handler")?;
            let image = self
                .images
                .find(&spec.image, "config.mounts.image.image")?
                .ok_or_else(|| Error::NotFound {
                    kind: "image of the image volume (config.mounts.image)",
                    id: spec.image.clone(),
                })?;
            out.push((i, image));
        }
        Ok(out)
    }

    /// Mounts the image volumes read-only under the container's bundle; returns, per entry
    /// of `config.mounts`, the host path the runtime bind-mounts (the volume, or its
    /// `image_sub_path` resolved inside it). Whatever was mounted before a failure is
    /// undone by [`Self::remove_resources`].
    pub(crate) fn mount_image_volumes(
        &self,
        id: &str,
        config: &cri::ContainerConfig,
        volumes: &[(usize, ImageRecord)],
    ) -> Result<Vec<Option<String>>> {
        use crate::storage::image_volume::{SubPathError, resolve_sub_path};
        let mut sources = vec![None; config.mounts.len()];
        for (i, image) in volumes {
            let Some(m) = config.mounts.get(*i) else {
                continue;
            };
            let lower = self.images.layer_dirs(image)?;
            let target = self.image_volumes_dir(id).join(i.to_string());
            self.host
                .mount_image_volume(&target, &lower)
                .map_err(Error::host(format!(
                    "container {id}: mounting image {} at {}",
                    image.id, m.container_path
                )))?;
            let source = if m.image_sub_path.is_empty() {
                target
            } else {
                resolve_sub_path(&target, &m.image_sub_path).map_err(|e| match e {
                    SubPathError::Io { path, source } => Error::host(format!(
                        "container {id}: resolving image_sub_path {path} in image {}",
                        image.id
                    ))(source),
                    other => Error::invalid(
                        "config.mounts.image_sub_path",
                        format!("mount {} of image {}: {other}", m.container_path, image.id),
                    ),
                })?
            };
            sources[*i] = Some(source.display().to_string());
        }
        Ok(sources)
    }

    /// Removes everything a container (or infra container) may have on the host: the
    /// runtime's container, the rootfs mount and writable layer, the bundle and exit file.
    /// Idempotent; every step is tried even when one fails.
    pub(crate) async fn remove_resources(
        &self,
        runtime: &dyn RuntimeHandler,
        id: &str,
        pod: Option<&crate::state::PodRecord>,
    ) -> Result<()> {
        let deleted = runtime
            .delete(id, true)
            .await
            .map_err(Error::runtime(format!("container {id}: deleting it")));
        crate::failpoint!("remove.runtime-deleted");
        // What an interrupted `create` left in the cgroup, which `delete` does not know.
        if let Some(pod) = pod
            && self.settings.cgroup_driver == crate::config::CgroupDriver::Cgroupfs
        {
            let path = self.cgroups_path(pod, id);
            let host = self.host.clone();
            let removed = tokio::task::spawn_blocking(move || host.remove_cgroup(&path)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(container = id, "cgroup cleanup: {e}");
            }
        }
        let rootfs = if crate::faults::on(crate::faults::Fault::LeakRootfsMount) {
            Ok(())
        } else {
            self.host.remove_rootfs(&self.rootfs_layout(id))
        }
        .map_err(Error::host(format!(
            "container {id}: removing its root filesystem"
        )));
        crate::failpoint!("remove.rootfs-unmounted");
        let volumes = self.remove_image_volumes(id);
        let bundle = crate::state::remove_dir_all(&self.layout.bundle(id))
            .map_err(Error::host(format!("container {id}: removing its bundle")));
        let _ = crate::state::remove_file(&self.layout.exit_file(id));
        deleted?;
        rootfs?;
        volumes?;
        bundle
    }

    /// Unmounts and removes container `id`'s image volumes; idempotent.
    pub(crate) fn remove_image_volumes(&self, id: &str) -> Result<()> {
        let host = self.host.clone();
        crate::storage::image_volume::remove_all(&self.image_volumes_dir(id), &|p| host.unmount(p))
            .map_err(Error::host(format!(
                "container {id}: removing its image volumes"
            )))
    }
}

/// Reads the image's /etc/passwd and /etc/group from the mounted rootfs. Paths resolve
/// inside the rootfs (a symlink in the image cannot point at the host's files).
pub(crate) fn user_db(rootfs: &Path) -> UserDb {
    let read =
        |name: &str| crate::storage::read_in_root(rootfs, name, MAX_USER_DB).unwrap_or_default();
    UserDb::parse(&read("etc/passwd"), &read("etc/group"))
}

/// Resolves `config.devices` on the host (cri:ContainerConfig#devices).
/// Every CRI mount's `host_path` must exist (the kubelet creates volume directories
/// before it asks): a missing one is the caller's mistake, InvalidArgument naming the
/// mount, not a runtime failure. Relative paths are left to the spec's own check.
pub(crate) fn check_mount_sources(mounts: &[cri::Mount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if !Path::new(&m.host_path).is_absolute() {
            continue;
        }
        // Followed like the runtime follows it: a symlink to a directory is a directory.
        if let Err(e) = std::fs::metadata(&m.host_path) {
            let reason = if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{}` does not exist on the host", m.host_path)
            } else {
                format!("`{}`: {e}", m.host_path)
            };
            return Err(Error::invalid(
                format!("config.mounts[{i}].host_path"),
                reason,
            ));
        }
    }
    Ok(())
}

pub(crate) fn resolve_devices(devices: &[cri::Device]) -> Result<Vec<ResolvedDevice>> {
    devices
        .iter()
        .map(|d| {
            if !d.container_path.starts_with('/') {
                return Err(Error::invalid(
                    "config.devices.container_path",
                    format!("`{}` is not an absolute path", d.container_path),
                ));
            }
            let meta = std::fs::metadata(&d.host_path).map_err(|e| {
                Error::invalid("config.devices.host_path", format!("{}: {e}", d.host_path))
            })?;
            let permissions = if d.permissions.is_empty() {
                "rwm".to_owned()
            } else if d.permissions.chars().all(|c| "rwm".contains(c)) {
                d.permissions.clone()
            } else {
                return Err(Error::invalid(
                    "config.devices.permissions",
                    format!("`{}` is not a combination of r, w and m", d.permissions),
                ));
            };
            device(&meta, &d.container_path, permissions).ok_or_else(|| {
                Error::invalid(
                    "config.devices.host_path",
                    format!("{} is not a device node", d.host_path),
                )
            })
        })
        .collect()
}

fn device(
    meta: &std::fs::Metadata,
    container_path: &str,
    permissions: String,
) -> Option<ResolvedDevice> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(ResolvedDevice {
        container_path: container_path.to_owned(),
        kind,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        file_mode: meta.permissions().mode() & 0o7777,
        permissions,
    })
}

/// Every device node under the host's /dev and its direct subdirectories, for privileged
/// containers. The console, the pty multiplexer and /dev/tty are the runtime's business.
pub(crate) fn host_devices() -> Vec<ResolvedDevice> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    let mut depth = 0;
    while !dirs.is_empty() && depth < 2 {
        let mut next = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let Some(p) = path.to_str() else { continue };
                if meta.is_dir() {
                    if !matches!(p, "/dev/pts" | "/dev/shm" | "/dev/mqueue") {
                        next.push(path);
                    }
                } else if !matches!(p, "/dev/console" | "/dev/ptmx" | "/dev/tty")
                    && let Some(d) = device(&meta, p, "rwm".into())
                {
                    out.push(d);
                }
            }
        }
        dirs = next;
        depth += 1;
    }
    out.sort_by(|a, b| a.container_path.cmp(&b.container_path));
    out
}

/// Loads a Localhost seccomp profile (cri:SecurityProfile#localhost_ref: an absolute path
/// on the node to an OCI seccomp JSON document).
pub(crate) fn localhost_seccomp(
    profile: Option<&cri::SecurityProfile>,
) -> Result<Option<oci::Seccomp>> {
    let field = "config.linux.security_context.seccomp.localhost_ref";
    let Some(p) =
        profile.filter(|p| p.profile_type == cri::security_profile::ProfileType::Localhost as i32)
    else {
        return Ok(None);
    };
    let path = p
        .localhost_ref
        .strip_prefix("localhost/")
        .unwrap_or(&p.localhost_ref);
    if !path.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("`{path}` is not an absolute path"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::invalid(field, format!("{path}: {e}")))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::invalid(field, format!("{path} is not an OCI seccomp profile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_host_path_names_its_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = |host: &str| cri::Mount {
            container_path: "/data".into(),
            host_path: host.into(),
            ..Default::default()
        };
        let here = dir.path().display().to_string();
        let gone = dir.path().join("gone").display().to_string();
        check_mount_sources(&[mount(&here)]).expect("exists");
        let err = check_mount_sources(&[mount(&here), mount(&gone)]).expect_err("missing");
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert!(
            err.to_string().starts_with("config.mounts[1].host_path: `"),
            "{err}"
        );
        assert!(err.to_string().ends_with("` does not exist on the host"));
    }
}

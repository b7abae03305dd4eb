//! Mounts: the container's standard filesystems, the pod's shared files, and CRI mounts.

use std::path::{Component, Path};

use super::SpecError;
use super::oci::Mount;

/// How changes propagate across a CRI mount (cri:MountPropagation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// `PROPAGATION_PRIVATE`: no propagation.
    Private,
    /// `PROPAGATION_HOST_TO_CONTAINER`: host mounts appear in the container (rslave).
    HostToContainer,
    /// `PROPAGATION_BIDIRECTIONAL`: both ways (rshared).
    Bidirectional,
}

/// A CRI mount, as the container config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// `container_path`.
    pub container_path: String,
    /// `host_path`.
    pub host_path: String,
    /// `readonly`.
    pub readonly: bool,
    /// `propagation`.
    pub propagation: Propagation,
    /// `recursive_read_only`: submounts read-only too (the runtime's `rro` option).
    pub recursive_read_only: bool,
}

/// Files and directories the pod provides to each of its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// The pod's /etc/hostname.
    pub hostname: Option<String>,
    /// The pod's /etc/hosts.
    pub hosts: Option<String>,
    /// The pod's /etc/resolv.conf.
    pub resolv_conf: Option<String>,
    /// The pod's /dev/shm (a tmpfs the pod mounted); None gives the container its own.
    pub shm: Option<String>,
}

fn m(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
    }
}

/// The standard filesystems of a Linux container (oci-runtime:config-linux.md#default-filesystems).
pub fn defaults(privileged: bool, own_shm: bool) -> Vec<Mount> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut v = vec![
        m("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        m(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        m(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        m(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        m(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
    ];
    if own_shm {
        v.push(m(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ));
    }
    v
}

/// Bind mounts of the pod's shared files; read-only when the container's rootfs is.
pub fn pod_files(files: &PodFiles, readonly_rootfs: bool) -> Vec<Mount> {
    let rw = if readonly_rootfs { "ro" } else { "rw" };
    let mut v = Vec::new();
    for (dest, src) in [
        ("/etc/hostname", &files.hostname),
        ("/etc/hosts", &files.hosts),
        ("/etc/resolv.conf", &files.resolv_conf),
    ] {
        if let Some(src) = src {
            v.push(m(dest, "bind", src, &["rbind", "rprivate", rw]));
        }
    }
    if let Some(shm) = &files.shm {
        v.push(m("/dev/shm", "bind", shm, &["rbind", "rprivate", "rw"]));
    }
    v
}

/// Checks a container path: absolute, no `..`, not `/` itself.
fn container_path_ok(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && path != Path::new("/")
        && !path.components().any(|c| matches!(c, Component::ParentDir))
}

/// Translates CRI mounts to bind mounts. Also returns the rootfs propagation that the
/// requested propagations need (a shared or slave mount needs a matching rootfs).
pub fn cri_mounts(requests: &[MountRequest]) -> Result<(Vec<Mount>, &'static str), SpecError> {
    let mut out = Vec::with_capacity(requests.len());
    let mut rootfs = "";
    for r in requests {
        if !container_path_ok(&r.container_path) {
            return Err(SpecError::Invalid {
                field: "config.mounts.container_path",
                reason: format!(
                    "`{}` must be an absolute path other than / without `..`",
                    r.container_path
                ),
            });
        }
        if !Path::new(&r.host_path).is_absolute() {
            return Err(SpecError::Invalid {
                field: "config.mounts.host_path",
                reason: format!("`{}` must be an absolute path", r.host_path),
            });
        }
        // api.proto (Mount.recursive_read_only): readonly must be set too, and propagation
        // must be private (a read-only submount cannot propagate).
        if r.recursive_read_only && (!r.readonly || r.propagation != Propagation::Private) {
            return Err(SpecError::Invalid {
                field: "config.mounts.recursive_read_only",
                reason: format!(
                    "mount {}: a recursive read-only mount needs readonly true and propagation PROPAGATION_PRIVATE",
                    r.container_path
                ),
            });
        }
        let propagation = match r.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                if rootfs.is_empty() {
                    rootfs = "rslave";
                }
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs = "rshared";
                "rshared"
            }
        };
        let mode = if r.readonly { "ro" } else { "rw" };
        let mut options = vec!["rbind", propagation, mode];
        if r.recursive_read_only {
            options.push("rro");
        }
        out.push(m(&r.container_path, "bind", &r.host_path, &options));
    }
    Ok((out, rootfs))
}

/// Merges mount lists: a later list's destination replaces an earlier one's, and the result
/// is ordered parents before children (stable), so `/a` is mounted before `/a/b`.
pub fn merge(lists: Vec<Vec<Mount>>) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for list in lists {
        for mount in list {
            let dest = clean(&mount.destination);
            out.retain(|x| clean(&x.destination) != dest);
            out.push(mount);
        }
    }
    out.sort_by_key(|x| Path::new(&x.destination).components().count());
    out
}

fn clean(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(c: &str, h: &str, p: Propagation) -> MountRequest {
        MountRequest {
            container_path: c.into(),
            host_path: h.into(),
            readonly: false,
            propagation: p,
            recursive_read_only: false,
        }
    }

    // api.proto Mount.recursive_read_only: `rro` beside `ro`, and only with readonly true
    // and private propagation.
    #[test]
    fn recursive_read_only_adds_rro_and_needs_readonly_private() {
        let rro = |readonly, p| MountRequest {
            readonly,
            recursive_read_only: true,
            ..req("/a", "/h/a", p)
        };
        let (mounts, _) = cri_mounts(&[rro(true, Propagation::Private)]).expect("ok");
        assert_eq!(mounts[0].options, ["rbind", "rprivate", "ro", "rro"]);
        for bad in [
            rro(false, Propagation::Private),
            rro(true, Propagation::HostToContainer),
            rro(true, Propagation::Bidirectional),
        ] {
            let err = cri_mounts(&[bad]).expect_err("refused");
            assert!(
                matches!(
                    err,
                    SpecError::Invalid {
                        field: "config.mounts.recursive_read_only",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn propagation_maps_and_sets_rootfs_propagation() {
        let (mounts, rootfs) = cri_mounts(&[req("/a", "/h/a", Propagation::Private)]).expect("ok");
        assert_eq!(mounts[0].options, ["rbind", "rprivate", "rw"]);
        assert_eq!(rootfs, "");
        let (_, rootfs) = cri_mounts(&[
            req("/a", "/h", Propagation::HostToContainer),
            req("/b", "/h", Propagation::Bidirectional),
        ])
        .expect("ok");
        assert_eq!(rootfs, "rshared");
        let (_, rootfs) = cri_mounts(&[req("/a", "/h", Propagation::HostToContainer)]).expect("ok");
        assert_eq!(rootfs, "rslave");
    }

    #[test]
    fn bad_paths_are_rejected() {
        for c in ["relative", "/", "/a/../../etc"] {
            assert!(
                cri_mounts(&[req(c, "/h", Propagation::Private)]).is_err(),
                "{c}"
            );
        }
        assert!(cri_mounts(&[req("/a", "rel", Propagation::Private)]).is_err());
    }

    #[test]
    fn later_lists_override_and_parents_come_first() {
        let merged = merge(vec![
            defaults(false, true),
            vec![
                m("/dev/shm/", "bind", "/pod/shm", &["rbind"]),
                m("/data/sub", "bind", "/x", &[]),
            ],
            vec![m("/data", "bind", "/y", &[])],
        ]);
        let shm: Vec<_> = merged
            .iter()
            .filter(|x| x.destination.starts_with("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].source, "/pod/shm");
        let pos = |d: &str| merged.iter().position(|x| x.destination == d).expect(d);
        assert!(pos("/data") < pos("/data/sub"));
        assert!(pos("/dev") < pos("/dev/pts"));
    }

    #[test]
    fn privileged_gets_writable_sysfs() {
        let sys = |p| {
            defaults(p, false)
                .into_iter()
                .find(|x| x.destination == "/sys")
                .expect("sys")
        };
        assert!(sys(false).options.contains(&"ro".to_owned()));
        assert!(sys(true).options.contains(&"rw".to_owned()));
    }
}

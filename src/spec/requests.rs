//! Request fields crid does not implement are refused, never silently ignored: a pod that
//! asks for its own user namespace must not run in the host's. And the fields crid reads
//! outside the OCI spec itself (the stop signal).

use crid_api::cri;

use super::SpecError;

fn refuse(field: &'static str, reason: impl Into<String>) -> Result<(), SpecError> {
    Err(SpecError::Invalid {
        field,
        reason: reason.into(),
    })
}

/// The mode, by name, of a user namespace other than the host's (`userns_options.mode`
/// POD). An absent `userns_options` is the host's, as older kubelets send it.
fn user_namespace(ns: Option<&cri::NamespaceOption>) -> Option<String> {
    ns.and_then(|n| n.userns_options.as_ref())
        .filter(|u| u.mode != cri::NamespaceMode::Node as i32)
        .map(|u| {
            cri::NamespaceMode::try_from(u.mode)
                .map_or_else(|_| u.mode.to_string(), |m| m.as_str_name().to_owned())
        })
}

/// The user namespace a pod asks for when it is not the host's: RunPodSandbox needs a
/// handler whose features include user namespaces for it.
pub fn pod_user_namespace(config: &cri::PodSandboxConfig) -> Option<String> {
    user_namespace(
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref()),
    )
}

/// cri:Mount#image and #image_sub_path, as far as the request alone tells: an image volume
/// names its image, and a sub path needs one and must stay inside it (relative, no `..`).
/// Whether the image has the sub path is known only once it is mounted.
fn check_image_volume(i: usize, m: &cri::Mount) -> Result<(), SpecError> {
    use std::path::{Component, Path};
    match &m.image {
        Some(image) if image.image.trim().is_empty() => refuse(
            "config.mounts.image.image",
            format!(
                "mount {i} ({}): an image volume must name its image",
                m.container_path
            ),
        )?,
        None if !m.image_sub_path.is_empty() => refuse(
            "config.mounts.image_sub_path",
            format!(
                "mount {i} ({}): image_sub_path is set but mounts.image is not",
                m.container_path
            ),
        )?,
        _ => {}
    }
    let sub = Path::new(&m.image_sub_path);
    if !m.image_sub_path.is_empty()
        && (sub.is_absolute()
            || !sub.components().any(|c| matches!(c, Component::Normal(_)))
            || sub
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)))
    {
        refuse(
            "config.mounts.image_sub_path",
            format!(
                "mount {i} ({}): `{}` must be a relative path inside the image without `..`",
                m.container_path, m.image_sub_path
            ),
        )?;
    }
    Ok(())
}

/// Refuses what CreateContainer cannot honour.
pub fn check_container(config: &cri::ContainerConfig) -> Result<(), SpecError> {
    // crid reports `user_namespaces: false` in Status, so a client must not ask for one.
    if let Some(mode) = user_namespace(
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref()),
    ) {
        refuse(
            "config.linux.security_context.namespace_options.userns_options.mode",
            format!(
                "user namespaces ({mode}) are not supported; only NODE is (Status reports user_namespaces false)"
            ),
        )?;
    }
    // CDI devices by fully-qualified name; whether one exists is the spec files' to say.
    for d in &config.cdi_devices {
        if let Err(e) = super::cdi::parse_qualified(&d.name) {
            refuse("config.CDI_devices", e.to_string())?;
        }
    }
    for (i, m) in config.mounts.iter().enumerate() {
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            refuse(
                "config.mounts.uidMappings",
                format!(
                    "mount {i} ({}): ID-mapped mounts need user namespaces, which are not supported",
                    m.container_path
                ),
            )?;
        }
        check_image_volume(i, m)?;
    }
    if config.stop_signal != cri::Signal::RuntimeDefault as i32
        && cri::Signal::try_from(config.stop_signal).is_err()
    {
        refuse(
            "config.stop_signal",
            format!("{} is not a signal of the CRI", config.stop_signal),
        )?;
    }
    Ok(())
}

/// The signal `config.stop_signal` names, as the runtime's `kill` takes it; `None` for
/// RUNTIME_DEFAULT (the image's StopSignal, then SIGTERM).
pub fn stop_signal(config: &cri::ContainerConfig) -> Option<String> {
    let s = cri::Signal::try_from(config.stop_signal).ok()?;
    if s == cri::Signal::RuntimeDefault {
        return None;
    }
    // Real-time signals by number: runtimes parse names of the classic signals only.
    // Linux numbers them from SIGRTMIN = 34 to SIGRTMAX = 64.
    let name = s.as_str_name();
    let rt = if let Some(n) = name.strip_prefix("SIGRTMINPLUS") {
        n.parse::<i32>().ok().map(|n| 34 + n)
    } else if let Some(n) = name.strip_prefix("SIGRTMAXMINUS") {
        n.parse::<i32>().ok().map(|n| 64 - n)
    } else {
        match name {
            "SIGRTMIN" => Some(34),
            "SIGRTMAX" => Some(64),
            _ => None,
        }
    };
    Some(rt.map_or_else(|| name.to_owned(), |n| n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_userns(mode: Option<cri::NamespaceMode>) -> cri::NamespaceOption {
        cri::NamespaceOption {
            userns_options: mode.map(|m| cri::UserNamespace {
                mode: m as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_ns(ns: cri::NamespaceOption) -> cri::ContainerConfig {
        cri::ContainerConfig {
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_kubelets_node_userns_and_none_pass_a_pod_userns_is_refused() {
        assert_eq!(check_container(&container_ns(with_userns(None))), Ok(()));
        assert_eq!(
            check_container(&container_ns(with_userns(Some(cri::NamespaceMode::Node)))),
            Ok(())
        );
        let Err(SpecError::Invalid { field, reason }) =
            check_container(&container_ns(with_userns(Some(cri::NamespaceMode::Pod))))
        else {
            panic!("accepted");
        };
        assert_eq!(
            field,
            "config.linux.security_context.namespace_options.userns_options.mode"
        );
        assert!(reason.contains("POD"), "{reason}");
        let mut pod = cri::PodSandboxConfig::default();
        assert_eq!(pod_user_namespace(&pod), None);
        pod.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(with_userns(Some(cri::NamespaceMode::Pod))),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(pod_user_namespace(&pod).as_deref(), Some("POD"));
    }

    #[test]
    fn unsupported_mount_and_device_fields_are_named() {
        let field_of = |c: cri::ContainerConfig| match check_container(&c) {
            Err(SpecError::Invalid { field, .. }) => field,
            Ok(()) => "accepted",
        };
        let mount = |f: fn(&mut cri::Mount)| {
            let mut m = cri::Mount {
                container_path: "/data".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            };
            f(&mut m);
            cri::ContainerConfig {
                mounts: vec![m],
                ..Default::default()
            }
        };
        // Recursive read-only mounts are the runtime's to support (CreateContainer checks
        // the handler's features); the request itself is fine.
        assert_eq!(
            field_of(mount(|m| m.recursive_read_only = true)),
            "accepted"
        );
        assert_eq!(
            field_of(mount(|m| m.uid_mappings.push(cri::IdMapping::default()))),
            "config.mounts.uidMappings"
        );
        assert_eq!(
            field_of(mount(|m| m.image_sub_path = "x".into())),
            "config.mounts.image_sub_path"
        );
        let image = |sub: &str| {
            let sub = sub.to_owned();
            move |m: &mut cri::Mount| {
                m.host_path.clear();
                m.image = Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                });
                m.image_sub_path = sub.clone();
            }
        };
        let image_mount = |f: &dyn Fn(&mut cri::Mount)| {
            let mut m = cri::Mount {
                container_path: "/data".into(),
                ..Default::default()
            };
            f(&mut m);
            cri::ContainerConfig {
                mounts: vec![m],
                ..Default::default()
            }
        };
        for ok in ["", "etc", "etc/fixture/", "./www"] {
            assert_eq!(field_of(image_mount(&image(ok))), "accepted", "{ok}");
        }
        for bad in ["/etc", "..", "etc/../../x", "."] {
            assert_eq!(
                field_of(image_mount(&image(bad))),
                "config.mounts.image_sub_path",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(image_mount(
                &|m: &mut cri::Mount| m.image = Some(cri::ImageSpec::default())
            )),
            "config.mounts.image.image"
        );
        assert_eq!(field_of(mount(|_| {})), "accepted");
        let cdi = |name: &str| cri::ContainerConfig {
            cdi_devices: vec![cri::CdiDevice { name: name.into() }],
            ..Default::default()
        };
        assert_eq!(field_of(cdi("vendor.com/gpu=0")), "accepted");
        assert_eq!(field_of(cdi("gpu0")), "config.CDI_devices");
        assert_eq!(
            field_of(cri::ContainerConfig {
                stop_signal: 999,
                ..Default::default()
            }),
            "config.stop_signal"
        );
    }

    #[test]
    fn stop_signals_are_named_for_the_runtime() {
        let sig = |s: cri::Signal| {
            stop_signal(&cri::ContainerConfig {
                stop_signal: s as i32,
                ..Default::default()
            })
        };
        assert_eq!(sig(cri::Signal::RuntimeDefault), None);
        assert_eq!(sig(cri::Signal::Sigusr1).as_deref(), Some("SIGUSR1"));
        assert_eq!(sig(cri::Signal::Sigquit).as_deref(), Some("SIGQUIT"));
        assert_eq!(sig(cri::Signal::Sigrtmin).as_deref(), Some("34"));
        assert_eq!(sig(cri::Signal::Sigrtminplus3).as_deref(), Some("37"));
        assert_eq!(sig(cri::Signal::Sigrtmaxminus2).as_deref(), Some("62"));
        assert_eq!(sig(cri::Signal::Sigrtmax).as_deref(), Some("64"));
    }
}

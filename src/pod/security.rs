//! The confinement of the pod's own sandbox process (cri:LinuxSandboxSecurityContext):
//! seccomp and AppArmor as the pod asks, with the user, groups and read-only root.
//!
//! The request is checked at RunPodSandbox whether or not an infra process will run, so
//! that a refusal does not depend on the pod's PID namespace mode or the handler.

use cri::security_profile::ProfileType;
use crid_api::cri;

use crate::error::{Error, Result};
use crate::spec::oci;

/// The field of the pod's seccomp profile type, as named in api.proto.
const SECCOMP_TYPE: &str = "config.linux.security_context.seccomp.profile_type";

/// The sandbox process's security context and its Localhost seccomp profile, loaded.
#[derive(Debug, Clone)]
pub(crate) struct SandboxSecurity {
    /// The container security context the infra process runs with.
    pub context: cri::LinuxContainerSecurityContext,
    /// The Localhost seccomp profile, read from the host.
    pub localhost_seccomp: Option<oci::Seccomp>,
}

/// The pod's seccomp request. Absent is RuntimeDefault (the pause process needs no more),
/// unless the pod is privileged, as CRI-O's `seccomp_use_default_when_empty`.
fn seccomp_request(pod: &cri::LinuxSandboxSecurityContext) -> cri::SecurityProfile {
    pod.seccomp.clone().unwrap_or_else(|| cri::SecurityProfile {
        profile_type: if pod.privileged {
            ProfileType::Unconfined
        } else {
            ProfileType::RuntimeDefault
        } as i32,
        localhost_ref: String::new(),
    })
}

/// The sandbox's security from the pod config; Localhost seccomp profiles are read here,
/// so a missing or malformed one refuses the pod with InvalidArgument naming
/// `config.linux.security_context.seccomp.localhost_ref`.
pub(crate) fn sandbox_security(config: &cri::PodSandboxConfig) -> Result<SandboxSecurity> {
    let pod = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let mut seccomp = seccomp_request(&pod);
    if crate::faults::on(crate::faults::Fault::PodSeccompIgnored) {
        seccomp = cri::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        };
    }
    if ProfileType::try_from(seccomp.profile_type).is_err() {
        return Err(Error::invalid(
            SECCOMP_TYPE,
            format!("unknown profile type {}", seccomp.profile_type),
        ));
    }
    let localhost_seccomp = crate::container::bundle::localhost_seccomp(Some(&seccomp))?;
    let context = cri::LinuxContainerSecurityContext {
        seccomp: Some(seccomp),
        no_new_privs: true,
        capabilities: Some(cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        // cri:LinuxSandboxSecurityContext#apparmor is the sandbox's own profile.
        apparmor: pod.apparmor,
        run_as_user: pod.run_as_user,
        run_as_group: pod.run_as_group,
        supplemental_groups: pod.supplemental_groups,
        readonly_rootfs: pod.readonly_rootfs,
        ..Default::default()
    };
    Ok(SandboxSecurity {
        context,
        localhost_seccomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(edit: impl FnOnce(&mut cri::LinuxSandboxSecurityContext)) -> cri::PodSandboxConfig {
        let mut sc = cri::LinuxSandboxSecurityContext::default();
        edit(&mut sc);
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn profile(t: ProfileType, r: &str) -> Option<cri::SecurityProfile> {
        Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        })
    }

    fn seccomp_type(s: &SandboxSecurity) -> Option<ProfileType> {
        s.context
            .seccomp
            .as_ref()
            .and_then(|p| ProfileType::try_from(p.profile_type).ok())
    }

    #[test]
    fn the_pods_profiles_reach_the_sandbox_process() {
        let s = sandbox_security(&pod(|_| {})).expect("default");
        assert_eq!(seccomp_type(&s), Some(ProfileType::RuntimeDefault));
        let s = sandbox_security(&pod(|p| p.privileged = true)).expect("privileged");
        assert_eq!(seccomp_type(&s), Some(ProfileType::Unconfined));
        let s = sandbox_security(&pod(|p| p.seccomp = profile(ProfileType::Unconfined, "")))
            .expect("unconfined");
        assert_eq!(seccomp_type(&s), Some(ProfileType::Unconfined));
        let s = sandbox_security(&pod(|p| {
            p.apparmor = profile(ProfileType::Localhost, "x");
            p.run_as_user = Some(cri::Int64Value { value: 7 });
        }))
        .expect("apparmor");
        assert_eq!(s.context.apparmor, profile(ProfileType::Localhost, "x"));
        assert_eq!(s.context.run_as_user, Some(cri::Int64Value { value: 7 }));
        assert!(s.localhost_seccomp.is_none());
    }

    #[test]
    fn localhost_seccomp_is_loaded_or_refused_naming_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("profile.json");
        std::fs::write(&file, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).expect("write");
        let with =
            |r: &str| sandbox_security(&pod(|p| p.seccomp = profile(ProfileType::Localhost, r)));
        let s = with(&file.display().to_string()).expect("loaded");
        assert!(s.localhost_seccomp.is_some());
        for bad in [
            dir.path().join("absent.json").display().to_string(),
            "relative.json".into(),
        ] {
            let e = with(&bad).expect_err(&bad);
            assert!(
                e.to_string()
                    .starts_with("config.linux.security_context.seccomp.localhost_ref: "),
                "{e}"
            );
        }
        std::fs::write(&file, "not json").expect("write");
        assert!(with(&file.display().to_string()).is_err());
        let e = sandbox_security(&pod(|p| {
            p.seccomp = Some(cri::SecurityProfile {
                profile_type: 9,
                localhost_ref: String::new(),
            })
        }))
        .expect_err("unknown type");
        assert!(e.to_string().starts_with(SECCOMP_TYPE), "{e}");
    }
}

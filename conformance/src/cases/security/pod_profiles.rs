//! The pod's own seccomp and AppArmor profiles (cri:LinuxSandboxSecurityContext#seccomp,
//! #apparmor): they confine the pod's sandbox process. In a pod sharing one PID namespace
//! that process is PID 1 to the pod's containers, so a container of the pod reads its
//! confinement from /proc/1: `Seccomp:` in status (0 none, 2 filter), the AppArmor label in
//! attr. The observing container is itself unconfined, so AppArmor's ptrace mediation
//! never hides PID 1 from it. A profile the pod names that cannot apply (a Localhost
//! seccomp file that does not exist, an AppArmor profile not loaded or a host without
//! AppArmor) refuses RunPodSandbox whatever the pod's PID namespace mode, leaving no pod.

use std::io::Write;
use std::sync::Arc;

use cri::security_profile::ProfileType;
use crid_api::cri;

use super::super::support::{SLEEP_SCRIPT, Scope, ctr_ns, pod_ns, pod_sc, sc, status_field};
use super::super::{CaseResult, ensure, status_text};
use super::apparmor::{TestProfile, enforced, host_apparmor, profile, unlabelled};
use crate::fixtures::image::{BUSYBOX, LATEST};

/// Prints PID 1's AppArmor label, `-` where the kernel shows none.
const PID1_LABEL: &str = "v=$(cat /proc/1/attr/apparmor/current 2>/dev/null || \
    cat /proc/1/attr/current 2>/dev/null); echo \"${v:--}\"";

/// A Localhost seccomp profile that allows everything but `swapon` (which the pause
/// process never calls), in the OCI/Docker JSON form runtimes load.
const SECCOMP_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]
}"#;

/// A pod sharing one PID namespace, its config adjusted by `edit_pod`, with an unconfined
/// busybox sleeper; returns the sleeper's id once PID 1 is seen to be the sandbox process.
async fn observer(
    s: &Scope,
    edit_pod: impl FnOnce(&mut cri::LinuxSandboxSecurityContext),
) -> Result<String, String> {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (_, id, _) = s
        .started_in_new_pod(
            &image,
            &["sh", "-c", SLEEP_SCRIPT],
            |p| {
                pod_ns(p).pid = cri::NamespaceMode::Pod as i32;
                edit_pod(pod_sc(p));
            },
            |c| {
                ctr_ns(c).pid = cri::NamespaceMode::Pod as i32;
                sc(c).seccomp = profile(ProfileType::Unconfined, "");
                sc(c).apparmor = profile(ProfileType::Unconfined, "");
            },
        )
        .await?;
    // PID 1 must be the sandbox process, not the observer's own command.
    let cmdline = s.sh(&id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
    ensure(!cmdline.contains(SLEEP_SCRIPT), || {
        format!(
            "PID 1 is the observer itself ({cmdline:?}): the pod's containers do not share the sandbox's PID namespace"
        )
    })?;
    Ok(id)
}

/// PID 1's `Seccomp:` mode in a pod with pod-level seccomp `t` (`localhost_ref` for
/// Localhost).
async fn pid1_seccomp(s: &Scope, t: ProfileType, localhost_ref: &str) -> Result<String, String> {
    let id = observer(s, |p| p.seccomp = profile(t, localhost_ref)).await?;
    let status = s.sh(&id, "cat /proc/1/status").await?;
    Ok(status_field(&status, "Seccomp").unwrap_or("").to_owned())
}

/// `security-context/pod-seccomp-unconfined`.
pub(crate) async fn seccomp_unconfined(s: Arc<Scope>) -> CaseResult {
    let m = pid1_seccomp(&s, ProfileType::Unconfined, "").await?;
    ensure(m == "0", || {
        format!("the sandbox process has Seccomp: {m:?}, the pod asked for Unconfined (0)")
    })?;
    Ok(String::new())
}

/// `security-context/pod-seccomp-runtime-default`.
pub(crate) async fn seccomp_runtime_default(s: Arc<Scope>) -> CaseResult {
    let m = pid1_seccomp(&s, ProfileType::RuntimeDefault, "").await?;
    ensure(m == "2", || {
        format!(
            "the sandbox process has Seccomp: {m:?}, the pod asked for RuntimeDefault (2, filter)"
        )
    })?;
    Ok(String::new())
}

/// A file on the host (the endpoint's host is the harness's), removed on drop.
struct HostFile(std::path::PathBuf);

impl HostFile {
    fn write(s: &Scope, text: &str) -> Result<HostFile, String> {
        let path = std::env::temp_dir().join(format!("{}-seccomp.json", s.tag));
        let mut f =
            std::fs::File::create(&path).map_err(|e| format!("writing {}: {e}", path.display()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(HostFile(path))
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `security-context/pod-seccomp-localhost`.
pub(crate) async fn seccomp_localhost(s: Arc<Scope>) -> CaseResult {
    let file = HostFile::write(&s, SECCOMP_PROFILE)?;
    let path = file.0.display().to_string();
    let m = pid1_seccomp(&s, ProfileType::Localhost, &path).await?;
    ensure(m == "2", || {
        format!(
            "the sandbox process has Seccomp: {m:?}, the pod asked for the Localhost profile {path} (2, filter)"
        )
    })?;
    s.cleanup().await?;
    Ok(String::new())
}

/// RunPodSandbox of `config` must be refused, naming one of `needles`, and leave no pod.
async fn refused_pod(
    s: &Scope,
    config: cri::PodSandboxConfig,
    needles: &[&str],
) -> Result<String, String> {
    let r = s
        .rs()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: s.ctx.runtime_handler.clone(),
        })
        .await;
    let e = match r {
        Ok(ok) => {
            let id = ok.into_inner().pod_sandbox_id;
            s.track_pod(&id);
            return Err(format!("RunPodSandbox succeeded ({id})"));
        }
        Err(e) => e,
    };
    ensure(e.code() != tonic::Code::Unimplemented, || {
        format!("RunPodSandbox is not served: {}", status_text(&e))
    })?;
    let msg = e.message().to_ascii_lowercase();
    ensure(
        needles
            .iter()
            .any(|n| msg.contains(&n.to_ascii_lowercase())),
        || format!("the refusal names none of {needles:?}: {}", status_text(&e)),
    )?;
    let name = config.metadata.map(|m| m.name).unwrap_or_default();
    let left: Vec<String> = s
        .rs()
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(|e| format!("ListPodSandbox: {}", status_text(&e)))?
        .into_inner()
        .items
        .into_iter()
        .filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == name))
        .map(|p| {
            s.track_pod(&p.id);
            p.id
        })
        .collect();
    ensure(left.is_empty(), || {
        format!("the refused RunPodSandbox left pods {left:?}")
    })?;
    Ok(status_text(&e))
}

/// A pod config with its PID namespace `pid` and its security context edited.
fn pod_with(
    s: &Scope,
    pid: cri::NamespaceMode,
    edit: impl FnOnce(&mut cri::LinuxSandboxSecurityContext),
) -> cri::PodSandboxConfig {
    let mut config = s.pod_config();
    pod_ns(&mut config).pid = pid as i32;
    edit(pod_sc(&mut config));
    config
}

const PID_MODES: [cri::NamespaceMode; 2] = [cri::NamespaceMode::Pod, cri::NamespaceMode::Container];

/// `security-context/pod-seccomp-localhost-missing-refused`.
pub(crate) async fn seccomp_localhost_missing(s: Arc<Scope>) -> CaseResult {
    let missing = std::env::temp_dir().join(format!("{}-absent-seccomp.json", s.tag));
    let path = missing.display().to_string();
    let mut notes = Vec::new();
    for pid in PID_MODES {
        let config = pod_with(&s, pid, |p| {
            p.seccomp = profile(ProfileType::Localhost, &path)
        });
        let note = refused_pod(&s, config, &["localhost_ref", &path])
            .await
            .map_err(|e| format!("PID namespace {}: {e}", pid.as_str_name()))?;
        notes.push(format!("{}: {note}", pid.as_str_name()));
    }
    Ok(notes.join("; "))
}

/// PID 1's AppArmor label in a pod with pod-level AppArmor `t`.
async fn pid1_label(s: &Scope, t: ProfileType, localhost_ref: &str) -> Result<String, String> {
    let id = observer(s, |p| p.apparmor = profile(t, localhost_ref)).await?;
    Ok(s.sh(&id, PID1_LABEL).await?.trim().to_owned())
}

/// `security-context/pod-apparmor-runtime-default`.
pub(crate) async fn apparmor_runtime_default(s: Arc<Scope>) -> CaseResult {
    let l = pid1_label(&s, ProfileType::RuntimeDefault, "").await?;
    if let Err(no) = host_apparmor() {
        ensure(unlabelled(&l), || {
            format!("no AppArmor on this host, yet the sandbox process is labelled {l:?}")
        })?;
        return Ok(format!("no AppArmor on this host ({no}): runs unconfined"));
    }
    let name = enforced(&l).filter(|n| *n != "unconfined");
    ensure(name.is_some(), || {
        format!(
            "RuntimeDefault: the sandbox process is labelled {l:?}, expected the runtime's profile in enforce mode"
        )
    })?;
    Ok(format!("sandbox process: {l}"))
}

/// `security-context/pod-apparmor-unconfined`.
pub(crate) async fn apparmor_unconfined(s: Arc<Scope>) -> CaseResult {
    let l = pid1_label(&s, ProfileType::Unconfined, "").await?;
    match host_apparmor() {
        Ok(_) => {
            ensure(l == "unconfined", || {
                format!("Unconfined: the sandbox process is labelled {l:?}, expected unconfined")
            })?;
            Ok(String::new())
        }
        Err(no) => {
            ensure(unlabelled(&l), || {
                format!("no AppArmor on this host, yet the sandbox process is labelled {l:?}")
            })?;
            Ok(format!("no AppArmor on this host ({no})"))
        }
    }
}

/// `security-context/pod-apparmor-localhost`.
pub(crate) async fn apparmor_localhost(s: Arc<Scope>) -> CaseResult {
    let parser = match host_apparmor() {
        Ok(p) => p,
        Err(no) => {
            let name = format!("{}-aa", s.tag);
            let mut notes = Vec::new();
            for pid in PID_MODES {
                let config = pod_with(&s, pid, |p| {
                    p.apparmor = profile(ProfileType::Localhost, &name)
                });
                let note = refused_pod(&s, config, &[&name, "apparmor"])
                    .await
                    .map_err(|e| format!("PID namespace {}: {e}", pid.as_str_name()))?;
                notes.push(format!("{}: {note}", pid.as_str_name()));
            }
            return Ok(format!(
                "no AppArmor on this host ({no}): Localhost refused: {}",
                notes.join("; ")
            ));
        }
    };
    // Not loaded: refused, whatever the PID namespace mode.
    let absent = format!("{}-absent", s.tag);
    for pid in PID_MODES {
        let config = pod_with(&s, pid, |p| {
            p.apparmor = profile(ProfileType::Localhost, &absent)
        });
        refused_pod(&s, config, &[&absent, "apparmor"])
            .await
            .map_err(|e| format!("unloaded profile, PID namespace {}: {e}", pid.as_str_name()))?;
    }
    let test = TestProfile::load(&parser, &s)?;
    let l = pid1_label(&s, ProfileType::Localhost, &test.name).await?;
    let want = format!("{} (enforce)", test.name);
    ensure(l == want, || {
        format!("Localhost: the sandbox process is labelled {l:?}, expected {want:?}")
    })?;
    s.cleanup().await?;
    Ok(want)
}

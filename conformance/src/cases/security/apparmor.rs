//! AppArmor: `security_context.apparmor` (cri:SecurityProfile) and the deprecated
//! `apparmor_profile` string, judged by the label the container's processes carry
//! (`/proc/<pid>/attr/apparmor/current`, or `attr/current` on kernels without LSM stacking).
//!
//! Kubernetes' semantics: `RuntimeDefault` (or no request) is the runtime's default profile,
//! `Unconfined` none, `Localhost` a profile already loaded on the node; the structured field
//! wins over the deprecated string. The harness runs on the endpoint's host, so it reads the
//! host's AppArmor state itself and loads (and unloads) its own test profile with
//! `apparmor_parser`. On a host without AppArmor no profile can apply: the cases check that
//! containers run unlabelled and that a named profile is refused, and say so in their note.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cri::security_profile::ProfileType;
use crid_api::cri;

use super::super::support::{Scope, sc};
use super::super::{CaseResult, ensure, status_text};

/// The kernel module's switch.
const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// The kernel's list of loaded profiles.
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
/// The file a test profile denies writing to, to show the profile is enforced.
const DENIED_FILE: &str = "/tmp/apparmor-denied";

/// Prints the AppArmor label of PID 1 (the container's process) and of the exec'd shell,
/// one a line; `-` where the kernel shows none (no AppArmor, or another LSM).
const LABELS_SCRIPT: &str = "for p in 1 self; do \
    v=$(cat /proc/$p/attr/apparmor/current 2>/dev/null || cat /proc/$p/attr/current 2>/dev/null); \
    echo \"${v:--}\"; done";

/// Whether the endpoint's host (this host) enforces AppArmor, and with which parser the
/// harness can load a test profile; `Err` says what is missing.
pub(super) fn host_apparmor() -> Result<PathBuf, String> {
    match std::fs::read_to_string(ENABLED) {
        Ok(v) if v.trim() == "Y" => {}
        Ok(v) => return Err(format!("{ENABLED} is {:?}", v.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("the kernel has no AppArmor module".into());
        }
        Err(e) => return Err(format!("{ENABLED}: {e}")),
    }
    if !Path::new(PROFILES).exists() {
        return Err(format!("{PROFILES} is missing"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("apparmor_parser"))
        .find(|p| p.is_file())
        .ok_or_else(|| "AppArmor is enabled but apparmor_parser is not installed".into())
}

/// A profile this case loaded; unloaded on drop, also when the case fails or times out.
pub(super) struct TestProfile {
    parser: PathBuf,
    pub(super) name: String,
    text: String,
}

impl TestProfile {
    /// Loads a profile named after the case's scope that allows everything but writing
    /// [`DENIED_FILE`], so its enforcement shows from inside the container.
    pub(super) fn load(parser: &Path, s: &Scope) -> Result<TestProfile, String> {
        let name = format!("{}-aa", s.tag);
        let text = format!(
            "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  network,\n  \
             capability,\n  umount,\n  mount,\n  signal,\n  ptrace,\n  deny {DENIED_FILE} w,\n}}\n"
        );
        parse(parser, "-Kr", &text)?;
        Ok(TestProfile {
            parser: parser.to_owned(),
            name,
            text,
        })
    }
}

impl Drop for TestProfile {
    fn drop(&mut self) {
        // Containers using it are gone or going; an unload failure leaves only a profile.
        let _ = parse(&self.parser, "-R", &self.text);
    }
}

/// Runs `apparmor_parser FLAG` with `text` on stdin.
fn parse(parser: &Path, flag: &str, text: &str) -> Result<(), String> {
    let mut child = Command::new(parser)
        .args([flag, "-K"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", parser.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", parser.display()))?;
    ensure(out.status.success(), || {
        format!(
            "{} {flag}: {}: {}",
            parser.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

pub(super) fn profile(t: ProfileType, localhost_ref: &str) -> Option<cri::SecurityProfile> {
    Some(cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: localhost_ref.into(),
    })
}

#[allow(deprecated)] // The deprecated field is what the case checks.
fn set_deprecated(c: &mut cri::ContainerConfig, value: &str) {
    sc(c).apparmor_profile = value.into();
}

/// The labels of a running sleeper's PID 1 and of an exec'd process; they must agree,
/// since an exec'd process runs under the container's profile.
async fn label(s: &Scope, edit: impl FnOnce(&mut cri::ContainerConfig)) -> Result<String, String> {
    let (_, id) = s.sleeper(edit).await?;
    let out = s.sh(&id, LABELS_SCRIPT).await?;
    let mut lines = out.lines().map(str::trim);
    let (init, exec) = (lines.next().unwrap_or("-"), lines.next().unwrap_or("-"));
    ensure(init == exec, || {
        format!("the container's process has label {init:?}, an exec'd process {exec:?}")
    })?;
    Ok(init.to_owned())
}

/// `name (enforce)` for a profile in enforce mode.
pub(super) fn enforced(label: &str) -> Option<&str> {
    label.strip_suffix(" (enforce)")
}

/// Without AppArmor a container carries no label (`-`), or `unconfined` on kernels that
/// have the module but not as the active LSM.
pub(super) fn unlabelled(label: &str) -> bool {
    label == "-" || label == "unconfined"
}

/// CreateContainer with `edit` must be refused, naming the profile or AppArmor, and leave
/// no container behind.
async fn refused(
    s: &Scope,
    name: &str,
    edit: impl FnOnce(&mut cri::ContainerConfig),
) -> Result<String, String> {
    let (pod_id, pod) = s.pod().await?;
    let image = s
        .pulled(
            crate::fixtures::image::BUSYBOX,
            crate::fixtures::image::LATEST,
        )
        .await?;
    let mut config = s.container_config(&pod, &image, &["sh", "-c", "sleep 1"]);
    edit(&mut config);
    let r = s
        .rs()
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config.clone()),
            sandbox_config: Some(pod),
        })
        .await;
    let e = match r {
        Ok(resp) => {
            let id = resp.into_inner().container_id;
            s.track_container(&id);
            return Err(format!(
                "CreateContainer with AppArmor profile {name:?}, which is not loaded, succeeded ({id})"
            ));
        }
        Err(e) => e,
    };
    ensure(e.code() != tonic::Code::Unimplemented, || {
        format!("CreateContainer is not served: {}", status_text(&e))
    })?;
    let msg = e.message();
    ensure(
        msg.contains(name) || msg.to_ascii_lowercase().contains("apparmor"),
        || {
            format!(
                "the refusal names neither the profile {name:?} nor AppArmor: {}",
                status_text(&e)
            )
        },
    )?;
    let left = s
        .rs()
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod_id,
                label_selector: config.labels.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("ListContainers: {}", status_text(&e)))?
        .into_inner()
        .containers;
    ensure(left.is_empty(), || {
        format!("the refused container is listed: {left:?}")
    })?;
    Ok(status_text(&e))
}

/// `security-context/apparmor-runtime-default`.
pub(crate) async fn runtime_default(s: Arc<Scope>) -> CaseResult {
    let explicit = label(&s, |c| {
        sc(c).apparmor = profile(ProfileType::RuntimeDefault, "")
    })
    .await;
    if let Err(no) = host_apparmor() {
        // No default profile can exist here; a runtime may run the container unlabelled
        // or refuse the request (the kubelet never sends it to such a node).
        return match explicit {
            Ok(l) => {
                ensure(unlabelled(&l), || {
                    format!("no AppArmor on this host, yet the container is labelled {l:?}")
                })?;
                Ok(format!("no AppArmor on this host ({no}): runs unconfined"))
            }
            Err(e) => Ok(format!("no AppArmor on this host ({no}): refused: {e}")),
        };
    }
    let explicit = explicit?;
    let name = enforced(&explicit).filter(|n| *n != "unconfined");
    let Some(name) = name else {
        return Err(format!(
            "RuntimeDefault: label {explicit:?}, expected the runtime's profile in enforce mode"
        ));
    };
    // api.proto: no AppArmor request at all is the same as RuntimeDefault.
    let unset = label(&s, |_| {}).await?;
    ensure(unset == explicit, || {
        format!("with no AppArmor request the label is {unset:?}, with RuntimeDefault {explicit:?}")
    })?;
    Ok(format!("default profile {name}"))
}

/// `security-context/apparmor-runtime-default-denies-mount`.
pub(crate) async fn default_denies_mount(s: Arc<Scope>) -> CaseResult {
    if let Err(no) = host_apparmor() {
        return Ok(format!(
            "no AppArmor on this host ({no}): no default profile to judge"
        ));
    }
    let mount = "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m";
    let with = |t: ProfileType| {
        move |c: &mut cri::ContainerConfig| {
            sc(c).apparmor = profile(t, "");
            sc(c).capabilities = Some(cri::Capability {
                add_capabilities: vec!["SYS_ADMIN".into()],
                ..Default::default()
            });
        }
    };
    // The control: with CAP_SYS_ADMIN and no profile the mount works, so a failure below
    // is the profile's doing, not a missing capability or a seccomp filter.
    let (_, free) = s.sleeper(with(ProfileType::Unconfined)).await?;
    s.sh(&free, mount).await.map_err(|e| {
        format!("the control (Unconfined, CAP_SYS_ADMIN) could not mount either: {e}")
    })?;
    let (_, confined) = s.sleeper(with(ProfileType::RuntimeDefault)).await?;
    let (out, err, code) = s.exec(&confined, &["sh", "-c", mount], 20).await?;
    ensure(code != 0, || {
        format!("RuntimeDefault with CAP_SYS_ADMIN mounted a tmpfs: stdout {out:?} stderr {err:?}")
    })?;
    Ok(format!("mount refused: {}", err.trim()))
}

/// `security-context/apparmor-unconfined`.
pub(crate) async fn unconfined(s: Arc<Scope>) -> CaseResult {
    let l = label(&s, |c| {
        sc(c).apparmor = profile(ProfileType::Unconfined, "")
    })
    .await?;
    match host_apparmor() {
        Ok(_) => {
            ensure(l == "unconfined", || {
                format!("Unconfined: label {l:?}, expected unconfined")
            })?;
            Ok(String::new())
        }
        Err(no) => {
            ensure(unlabelled(&l), || {
                format!("no AppArmor on this host, yet the container is labelled {l:?}")
            })?;
            Ok(format!("no AppArmor on this host ({no})"))
        }
    }
}

/// `security-context/apparmor-localhost`.
pub(crate) async fn localhost(s: Arc<Scope>) -> CaseResult {
    let parser = match host_apparmor() {
        Ok(p) => p,
        Err(no) => {
            let name = format!("{}-aa", s.tag);
            let refusal = refused(&s, &name, |c| {
                sc(c).apparmor = profile(ProfileType::Localhost, &name)
            })
            .await?;
            return Ok(format!(
                "no AppArmor on this host ({no}): Localhost refused: {refusal}"
            ));
        }
    };
    let test = TestProfile::load(&parser, &s)?;
    let (_, id) = s
        .sleeper(|c| sc(c).apparmor = profile(ProfileType::Localhost, &test.name))
        .await?;
    let out = s.sh(&id, LABELS_SCRIPT).await?;
    let want = format!("{} (enforce)", test.name);
    ensure(out.lines().all(|l| l.trim() == want), || {
        format!("labels {out:?}, expected {want:?} for the container and an exec'd process")
    })?;
    // The profile is enforced, not only named: the one write it denies fails.
    let (_, _, code) = s
        .exec(&id, &["sh", "-c", &format!("echo x > {DENIED_FILE}")], 10)
        .await?;
    ensure(code != 0, || {
        format!("writing {DENIED_FILE}, which the profile denies, succeeded")
    })?;
    s.sh(&id, "echo x > /tmp/apparmor-allowed").await?;
    s.cleanup().await?;
    Ok(want)
}

/// `security-context/apparmor-deprecated-field`.
pub(crate) async fn deprecated_field(s: Arc<Scope>) -> CaseResult {
    let parser = match host_apparmor() {
        Ok(p) => p,
        Err(no) => {
            let l = label(&s, |c| set_deprecated(c, "unconfined")).await?;
            ensure(unlabelled(&l), || {
                format!("no AppArmor on this host, yet the container is labelled {l:?}")
            })?;
            let name = format!("{}-aa", s.tag);
            let refusal = refused(&s, &name, |c| {
                set_deprecated(c, &format!("localhost/{name}"))
            })
            .await?;
            return Ok(format!(
                "no AppArmor on this host ({no}): `unconfined` runs, `localhost/{name}` refused: {refusal}"
            ));
        }
    };
    let test = TestProfile::load(&parser, &s)?;
    let value = format!("localhost/{}", test.name);
    let want = format!("{} (enforce)", test.name);
    let l = label(&s, |c| set_deprecated(c, &value)).await?;
    ensure(l == want, || {
        format!("apparmor_profile {value:?} alone: label {l:?}, expected {want:?}")
    })?;
    // Both set: the structured field decides.
    let both = label(&s, |c| {
        set_deprecated(c, &value);
        sc(c).apparmor = profile(ProfileType::Unconfined, "");
    })
    .await?;
    ensure(both == "unconfined", || {
        format!(
            "apparmor Unconfined with apparmor_profile {value:?}: label {both:?}, expected unconfined (the structured field wins)"
        )
    })?;
    s.cleanup().await?;
    Ok(want)
}

/// `security-context/apparmor-unloaded-profile-refused`.
pub(crate) async fn unloaded_refused(s: Arc<Scope>) -> CaseResult {
    // Named after the run, so no profile of that name can be loaded.
    let name = format!("{}-absent", s.tag);
    let refusal = refused(&s, &name, |c| {
        sc(c).apparmor = profile(ProfileType::Localhost, &name)
    })
    .await?;
    Ok(match host_apparmor() {
        Ok(_) => refusal,
        Err(no) => format!("no AppArmor on this host ({no}): {refusal}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_as_the_kernel_writes_them() {
        assert_eq!(enforced("crid-default (enforce)"), Some("crid-default"));
        assert_eq!(
            enforced("cri-containerd.apparmor.d (enforce)"),
            Some("cri-containerd.apparmor.d")
        );
        assert_eq!(enforced("p (complain)"), None);
        assert_eq!(enforced("unconfined"), None);
        assert!(unlabelled("-") && unlabelled("unconfined"));
        assert!(!unlabelled("crid-default (enforce)"));
    }
}

//! Security context: users and groups, capabilities, privileged, read-only rootfs,
//! no_new_privs, masked and read-only paths, seccomp, AppArmor ([`apparmor`]), namespaces,
//! sysctls, and the pod's own seccomp and AppArmor profiles ([`pod_profiles`]). Each case observes the effect from inside the container through ExecSync.

mod apparmor;
mod pod_profiles;

use std::sync::Arc;
use std::time::Duration;

use crid_api::cri;

use super::container::CONTAINER_NEEDS;
use super::support::{
    SLEEP_SCRIPT, Scope, cap_eff, ctr_ns, pod_ns, pod_sc, sc, scoped, status_field,
};
use super::{Area, Case, CaseResult, ensure};
use crate::fixtures::image::{BUSYBOX, BUSYBOX_USER, LATEST, USER_NAME, USER_UID, USER_UID_GID};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
/// CAP_CHOWN, CAP_NET_BIND_SERVICE and CAP_NET_ADMIN bit numbers (linux/capability.h).
const CAP_CHOWN: u32 = 0;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_BIND_SERVICE: u32 = 10;

macro_rules! sc_clause {
    ($field:literal) => {
        concat!(
            "cri:RuntimeService.CreateContainer#config.linux.security_context.",
            $field
        )
    };
}

macro_rules! pod_sc_clause {
    ($field:literal) => {
        concat!(
            "cri:RuntimeService.RunPodSandbox#config.linux.security_context.",
            $field
        )
    };
}

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::SecurityContext
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "security-context/run-as-user",
            sc_clause!("run_as_user"),
            "run_as_user 1234 runs the process as uid 1234",
            |ctx| Box::pin(scoped(ctx, "su", run_as_user)),
        ),
        cases.required(
            "security-context/run-as-group",
            sc_clause!("run_as_group"),
            "run_as_group 5678 with run_as_user runs the process with gid 5678",
            |ctx| Box::pin(scoped(ctx, "sg", run_as_group)),
        ),
        cases.required(
            "security-context/run-as-username",
            sc_clause!("run_as_username"),
            "run_as_username crid resolves through the image's /etc/passwd to uid 1000",
            |ctx| Box::pin(scoped(ctx, "sn", run_as_username)),
        ),
        cases.required(
            "security-context/image-user",
            "oci-image:config.md#User",
            "the image's User (uid, name, uid:gid) sets the process's uid and gid when the config sets none",
            |ctx| Box::pin(scoped(ctx, "si", image_user)),
        ),
        cases.required(
            "security-context/supplemental-groups",
            sc_clause!("supplemental_groups"),
            "supplemental_groups appear in the process's groups",
            |ctx| Box::pin(scoped(ctx, "ss", supplemental_groups)),
        ),
        cases.required(
            "security-context/image-groups-merged",
            sc_clause!("supplemental_groups_policy"),
            "with the default Merge policy the user's groups from the image's /etc/group are kept",
            |ctx| Box::pin(scoped(ctx, "sm", image_groups)),
        ),
        cases.required(
            "security-context/capabilities-add",
            sc_clause!("capabilities.add_capabilities"),
            "adding NET_ADMIN sets its bit in CapEff",
            |ctx| Box::pin(scoped(ctx, "sca", caps_add)),
        ),
        cases.required(
            "security-context/capabilities-ambient",
            sc_clause!("capabilities.add_ambient_capabilities"),
            "a container running as a non-root user with NET_BIND_SERVICE in add_ambient_capabilities has its bit in CapAmb and CapEff",
            |ctx| Box::pin(scoped(ctx, "scm", caps_ambient)),
        ),
        cases.required(
            "security-context/capabilities-drop",
            sc_clause!("capabilities.drop_capabilities"),
            "dropping CHOWN clears its bit in CapEff, and chown fails",
            |ctx| Box::pin(scoped(ctx, "scd", caps_drop)),
        ),
        cases.required(
            "security-context/capabilities-drop-all",
            sc_clause!("capabilities.drop_capabilities"),
            "dropping ALL leaves CapEff empty",
            |ctx| Box::pin(scoped(ctx, "scx", caps_drop_all)),
        ),
        cases.required(
            "security-context/privileged",
            sc_clause!("privileged"),
            "a privileged container has every capability of the host's bounding set",
            |ctx| Box::pin(scoped(ctx, "sp", privileged)),
        ),
        cases.required(
            "security-context/readonly-rootfs",
            sc_clause!("readonly_rootfs"),
            "with readonly_rootfs, writing to / fails",
            |ctx| Box::pin(scoped(ctx, "sr", readonly_rootfs)),
        ),
        cases.required(
            "security-context/no-new-privs",
            sc_clause!("no_new_privs"),
            "no_new_privs sets NoNewPrivs in /proc/self/status",
            |ctx| Box::pin(scoped(ctx, "snp", no_new_privs)),
        ),
        cases.required(
            "security-context/masked-paths",
            sc_clause!("masked_paths"),
            "a masked path (/proc/version) reads as empty",
            |ctx| Box::pin(scoped(ctx, "smp", masked_paths)),
        ),
        cases.required(
            "security-context/readonly-paths",
            sc_clause!("readonly_paths"),
            "a read-only path (/etc) refuses writes while the rest of the rootfs accepts them",
            |ctx| Box::pin(scoped(ctx, "srp", readonly_paths)),
        ),
        cases.required(
            "security-context/seccomp-runtime-default",
            sc_clause!("seccomp"),
            "seccomp RuntimeDefault puts the process in seccomp filter mode (Seccomp: 2)",
            |ctx| Box::pin(scoped(ctx, "sec", seccomp_default)),
        ),
        cases.required(
            "security-context/seccomp-unconfined",
            sc_clause!("seccomp"),
            "seccomp Unconfined leaves the process without a filter (Seccomp: 0)",
            |ctx| Box::pin(scoped(ctx, "seu", seccomp_unconfined)),
        ),
        cases.required(
            "security-context/apparmor-runtime-default",
            sc_clause!("apparmor"),
            "where the host has AppArmor, RuntimeDefault (and no request at all, its equal) runs the container and its exec'd processes under the runtime's default profile in enforce mode; without AppArmor the container runs unlabelled (or is refused), and the note says so",
            |ctx| Box::pin(scoped(ctx, "aad", apparmor::runtime_default)),
        ),
        cases.optional(
            "security-context/apparmor-runtime-default-denies-mount",
            sc_clause!("apparmor"),
            "where the host has AppArmor, the runtime's default profile denies mount to a container holding CAP_SYS_ADMIN (as Docker's, containerd's and CRI-O's defaults do), while the same container unconfined can mount",
            |ctx| Box::pin(scoped(ctx, "aam", apparmor::default_denies_mount)),
        ),
        cases.required(
            "security-context/apparmor-unconfined",
            sc_clause!("apparmor"),
            "AppArmor Unconfined runs the container and its exec'd processes with the label `unconfined` (no label where the host has no AppArmor)",
            |ctx| Box::pin(scoped(ctx, "aau", apparmor::unconfined)),
        ),
        cases.required(
            "security-context/apparmor-localhost",
            sc_clause!("apparmor.localhost_ref"),
            "a Localhost profile the harness loaded with apparmor_parser labels the container and its exec'd processes `<name> (enforce)` and denies the one write it forbids; without AppArmor on the host it is refused",
            |ctx| Box::pin(scoped(ctx, "aal", apparmor::localhost)),
        ),
        cases.required(
            "security-context/apparmor-deprecated-field",
            sc_clause!("apparmor_profile"),
            "the deprecated apparmor_profile `localhost/<name>` applies that profile when the structured field is absent, and the structured field (Unconfined) wins when both are set; without AppArmor `unconfined` runs and `localhost/<name>` is refused",
            |ctx| Box::pin(scoped(ctx, "aap", apparmor::deprecated_field)),
        ),
        cases.required(
            "security-context/apparmor-unloaded-profile-refused",
            sc_clause!("apparmor.localhost_ref"),
            "CreateContainer naming a Localhost AppArmor profile that is not loaded fails with an error naming the profile or AppArmor, and leaves no container",
            |ctx| Box::pin(scoped(ctx, "aar", apparmor::unloaded_refused)),
        ),
        cases.required(
            "security-context/pod-seccomp-unconfined",
            pod_sc_clause!("seccomp"),
            "a pod sharing one PID namespace with seccomp Unconfined runs its sandbox process (PID 1 to its containers) without a filter (Seccomp: 0)",
            |ctx| Box::pin(scoped(ctx, "pscu", pod_profiles::seccomp_unconfined)),
        ),
        cases.required(
            "security-context/pod-seccomp-runtime-default",
            pod_sc_clause!("seccomp"),
            "a pod sharing one PID namespace with seccomp RuntimeDefault runs its sandbox process in filter mode (Seccomp: 2)",
            |ctx| Box::pin(scoped(ctx, "pscd", pod_profiles::seccomp_runtime_default)),
        ),
        cases.required(
            "security-context/pod-seccomp-localhost",
            pod_sc_clause!("seccomp.localhost_ref"),
            "a pod sharing one PID namespace with a Localhost seccomp profile (a file the harness writes on the host) runs its sandbox process in filter mode (Seccomp: 2)",
            |ctx| Box::pin(scoped(ctx, "pscl", pod_profiles::seccomp_localhost)),
        ),
        cases.required(
            "security-context/pod-seccomp-localhost-missing-refused",
            pod_sc_clause!("seccomp.localhost_ref"),
            "RunPodSandbox naming a Localhost seccomp profile file that does not exist is refused, naming localhost_ref or the file, and leaves no pod, whether or not the pod shares a PID namespace",
            |ctx| Box::pin(scoped(ctx, "pscm", pod_profiles::seccomp_localhost_missing)),
        ),
        cases.required(
            "security-context/pod-apparmor-runtime-default",
            pod_sc_clause!("apparmor"),
            "a pod sharing one PID namespace with AppArmor RuntimeDefault runs its sandbox process under the runtime's profile in enforce mode (unlabelled where the host has no AppArmor)",
            |ctx| Box::pin(scoped(ctx, "paad", pod_profiles::apparmor_runtime_default)),
        ),
        cases.required(
            "security-context/pod-apparmor-unconfined",
            pod_sc_clause!("apparmor"),
            "a pod sharing one PID namespace with AppArmor Unconfined runs its sandbox process with the label `unconfined` (no label where the host has no AppArmor)",
            |ctx| Box::pin(scoped(ctx, "paau", pod_profiles::apparmor_unconfined)),
        ),
        cases.required(
            "security-context/pod-apparmor-localhost",
            pod_sc_clause!("apparmor.localhost_ref"),
            "a pod's Localhost AppArmor profile that is not loaded is refused (whatever the PID namespace mode, leaving no pod); one the harness loaded labels the sandbox process `<name> (enforce)`; without AppArmor on the host any Localhost profile is refused",
            |ctx| Box::pin(scoped(ctx, "paal", pod_profiles::apparmor_localhost)),
        ),
        cases.required(
            "security-context/namespace-host-network",
            sc_clause!("namespace_options.network"),
            "network NODE puts the container in the host's network namespace (the same namespace, not only the same interface names), network POD in one of its own",
            |ctx| Box::pin(scoped(ctx, "snn", host_network)),
        ),
        cases.required(
            "security-context/namespace-host-ipc",
            sc_clause!("namespace_options.ipc"),
            "ipc NODE puts the container in the host's IPC namespace, ipc POD in one of its own",
            |ctx| Box::pin(scoped(ctx, "sni", host_ipc)),
        ),
        cases.required(
            "security-context/namespace-host-pid",
            sc_clause!("namespace_options.pid"),
            "pid NODE shows the host's PID 1 inside the container",
            |ctx| Box::pin(scoped(ctx, "snh", host_pid)),
        ),
        cases.required(
            "security-context/namespace-pid-container",
            sc_clause!("namespace_options.pid"),
            "pid CONTAINER makes the container's own process PID 1",
            |ctx| Box::pin(scoped(ctx, "snc", pid_container)),
        ),
        cases.required(
            "security-context/namespace-pid-pod",
            sc_clause!("namespace_options.pid"),
            "pid POD lets containers of one pod see each other's processes (shareProcessNamespace)",
            |ctx| Box::pin(scoped(ctx, "spp", pid_pod)),
        ),
        cases.required(
            "security-context/namespace-pid-target",
            sc_clause!("namespace_options.target_id"),
            "pid TARGET with target_id naming a running container of the pod puts the new container in that container's PID namespace (ephemeral debug containers)",
            |ctx| Box::pin(scoped(ctx, "spt", pid_target)),
        ),
        cases.optional(
            "security-context/userns-mode",
            "cri:RuntimeService.RunPodSandbox#config.linux.security_context.namespace_options.userns_options",
            "a pod asking for its own user namespace (mode POD, the kubelet's hostUsers: false) gets one where the handler reports user_namespaces, and is refused, leaving no pod, where it does not: never run silently in the host's",
            |ctx| Box::pin(scoped(ctx, "su", userns_mode)),
        ),
        cases.required(
            "security-context/sysctls",
            "cri:RuntimeService.RunPodSandbox#config.linux.sysctls",
            "a namespaced sysctl of the pod (kernel.shm_rmid_forced=1) is visible in its containers",
            |ctx| Box::pin(scoped(ctx, "sy", sysctls)),
        ),
    ]
}

fn int(v: i64) -> Option<cri::Int64Value> {
    Some(cri::Int64Value { value: v })
}

async fn ids(s: &Scope, id: &str) -> Result<(String, String), String> {
    Ok((s.sh(id, "id -u").await?, s.sh(id, "id -g").await?))
}

async fn run_as_user(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|c| sc(c).run_as_user = int(1234)).await?;
    let uid = s.sh(&id, "id -u").await?;
    ensure(uid == "1234", || format!("id -u: {uid}"))?;
    Ok(String::new())
}

async fn run_as_group(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).run_as_user = int(1234);
            sc(c).run_as_group = int(5678);
        })
        .await?;
    let got = ids(&s, &id).await?;
    ensure(got == ("1234".into(), "5678".into()), || {
        format!("uid/gid {got:?}, expected 1234/5678")
    })?;
    Ok(String::new())
}

async fn run_as_username(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|c| sc(c).run_as_username = "crid".into()).await?;
    let got = ids(&s, &id).await?;
    ensure(got == ("1000".into(), "1000".into()), || {
        format!("uid/gid {got:?}, expected 1000/1000 (crid in the image's passwd)")
    })?;
    Ok(String::new())
}

/// A sleeping container of the `busybox-user` fixture tagged `tag` (each tag sets User
/// another way); returns its id.
async fn user_container(s: &Scope, tag: &str) -> Result<String, String> {
    let image = s.pulled(BUSYBOX_USER, tag).await?;
    let (_, id, _) = s
        .started_in_new_pod(&image, &["sh", "-c", SLEEP_SCRIPT], |_| {}, |_| {})
        .await?;
    Ok(id)
}

async fn image_user(s: Arc<Scope>) -> CaseResult {
    for tag in [USER_UID, USER_NAME, USER_UID_GID] {
        let id = user_container(&s, tag).await?;
        let got = ids(&s, &id).await?;
        ensure(got == ("1000".into(), "1000".into()), || {
            format!("{BUSYBOX_USER}:{tag}: uid/gid {got:?}, expected 1000/1000")
        })?;
    }
    Ok(String::new())
}

async fn supplemental_groups(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).run_as_user = int(1234);
            sc(c).supplemental_groups = vec![4000, 4001];
        })
        .await?;
    let groups = s.sh(&id, "id -G").await?;
    let list: Vec<&str> = groups.split_whitespace().collect();
    ensure(list.contains(&"4000") && list.contains(&"4001"), || {
        format!("id -G: {groups}")
    })?;
    Ok(groups)
}

async fn image_groups(s: Arc<Scope>) -> CaseResult {
    let id = user_container(&s, USER_NAME).await?;
    let groups = s.sh(&id, "id -G").await?;
    let list: Vec<&str> = groups.split_whitespace().collect();
    ensure(list.contains(&"1001") && list.contains(&"1002"), || {
        format!("id -G: {groups}, expected 1001 and 1002 from /etc/group")
    })?;
    Ok(groups)
}

async fn cap_mask(s: &Scope, id: &str) -> Result<u64, String> {
    cap_eff(&s.sh(id, "cat /proc/self/status").await?)
}

async fn caps_add(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).capabilities = Some(cri::Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                ..Default::default()
            })
        })
        .await?;
    let m = cap_mask(&s, &id).await?;
    ensure(m & (1 << CAP_NET_ADMIN) != 0, || {
        format!("CapEff {m:016x} lacks NET_ADMIN")
    })?;
    Ok(format!("CapEff {m:016x}"))
}

async fn caps_ambient(s: Arc<Scope>) -> CaseResult {
    // A non-root process loses its effective capabilities at exec unless they are ambient.
    let (_, id) = s
        .sleeper(|c| {
            let sc = sc(c);
            sc.run_as_user = Some(cri::Int64Value { value: 1000 });
            sc.capabilities = Some(cri::Capability {
                add_capabilities: vec!["NET_BIND_SERVICE".into()],
                add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            })
        })
        .await?;
    let status = s.sh(&id, "cat /proc/1/status").await?;
    let mask = |key: &str| {
        let hex = status_field(&status, key).ok_or_else(|| format!("no {key} in {status:?}"))?;
        u64::from_str_radix(hex, 16).map_err(|e| format!("{key} {hex:?}: {e}"))
    };
    let (amb, eff) = (mask("CapAmb")?, mask("CapEff")?);
    let bit = 1 << CAP_NET_BIND_SERVICE;
    ensure(amb & bit != 0 && eff & bit != 0, || {
        format!("uid 1000 with ambient NET_BIND_SERVICE: CapAmb {amb:016x}, CapEff {eff:016x}")
    })?;
    Ok(format!("CapAmb {amb:016x}"))
}

async fn caps_drop(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).capabilities = Some(cri::Capability {
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            })
        })
        .await?;
    let m = cap_mask(&s, &id).await?;
    ensure(m & (1 << CAP_CHOWN) == 0, || {
        format!("CapEff {m:016x} still has CHOWN")
    })?;
    let (_, _, code) = s
        .exec(&id, &["sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f"], 10)
        .await?;
    ensure(code != 0, || "chown succeeded without CAP_CHOWN".into())?;
    Ok(format!("CapEff {m:016x}"))
}

async fn caps_drop_all(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).capabilities = Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            })
        })
        .await?;
    let m = cap_mask(&s, &id).await?;
    ensure(m == 0, || format!("CapEff {m:016x} after dropping ALL"))?;
    Ok(String::new())
}

async fn privileged(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s
        .busybox(
            SLEEP_SCRIPT,
            |p| pod_sc(p).privileged = true,
            |c| sc(c).privileged = true,
        )
        .await?;
    let m = cap_mask(&s, &id).await?;
    let host = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading the host's /proc/self/status: {e}"))?;
    let bnd = status_field(&host, "CapBnd")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("no CapBnd on the host")?;
    ensure(m == bnd, || {
        format!("CapEff {m:016x}, the host's bounding set is {bnd:016x}")
    })?;
    Ok(format!("CapEff {m:016x}"))
}

async fn readonly_rootfs(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|c| sc(c).readonly_rootfs = true).await?;
    let (_, _, code) = s.exec(&id, &["touch", "/probe"], 10).await?;
    ensure(code != 0, || {
        "touch /probe succeeded on a read-only rootfs".into()
    })?;
    Ok(String::new())
}

async fn no_new_privs(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|c| sc(c).no_new_privs = true).await?;
    let st = s.sh(&id, "cat /proc/self/status").await?;
    let v = status_field(&st, "NoNewPrivs");
    ensure(v == Some("1"), || format!("NoNewPrivs {v:?}"))?;
    Ok(String::new())
}

async fn masked_paths(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| sc(c).masked_paths = vec!["/proc/version".into()])
        .await?;
    let n = s.sh(&id, "wc -c < /proc/version").await?;
    ensure(n == "0", || {
        format!("/proc/version has {n} bytes, expected it masked")
    })?;
    Ok(String::new())
}

async fn readonly_paths(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| sc(c).readonly_paths = vec!["/etc".into()])
        .await?;
    let (_, _, code) = s.exec(&id, &["touch", "/etc/probe"], 10).await?;
    ensure(code != 0, || {
        "touch /etc/probe succeeded in a read-only path".into()
    })?;
    s.sh(&id, "touch /probe").await?;
    Ok(String::new())
}

async fn seccomp_mode(
    s: &Scope,
    profile: cri::security_profile::ProfileType,
) -> Result<String, String> {
    let (_, id) = s
        .sleeper(|c| {
            sc(c).seccomp = Some(cri::SecurityProfile {
                profile_type: profile as i32,
                localhost_ref: String::new(),
            })
        })
        .await?;
    let st = s.sh(&id, "cat /proc/self/status").await?;
    Ok(status_field(&st, "Seccomp").unwrap_or("").to_owned())
}

async fn seccomp_default(s: Arc<Scope>) -> CaseResult {
    let m = seccomp_mode(&s, cri::security_profile::ProfileType::RuntimeDefault).await?;
    ensure(m == "2", || format!("Seccomp: {m:?}, expected 2 (filter)"))?;
    Ok(String::new())
}

async fn seccomp_unconfined(s: Arc<Scope>) -> CaseResult {
    let m = seccomp_mode(&s, cri::security_profile::ProfileType::Unconfined).await?;
    ensure(m == "0", || format!("Seccomp: {m:?}, expected 0"))?;
    Ok(String::new())
}

/// The network namespace (`net:[inode]`) of a sleeper in a pod whose network mode is
/// NODE (`host`) or POD.
async fn net_ns(s: &Scope, host: bool) -> Result<String, String> {
    let mode = |n: &mut cri::NamespaceOption| {
        n.network = if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    let (_, id, _) = s
        .busybox(
            SLEEP_SCRIPT,
            |p| {
                mode(pod_ns(p));
                // As the kubelet does: a host-network pod shares the host's UTS namespace,
                // so it gets no hostname of its own.
                if host {
                    p.hostname.clear();
                }
            },
            |c| mode(ctr_ns(c)),
        )
        .await?;
    s.sh(&id, "readlink /proc/self/ns/net").await
}

/// Interface names cannot tell the host's namespace from a CNI one (both have `eth0`): the
/// namespace itself is compared, as the IPC case does.
async fn host_network(s: Arc<Scope>) -> CaseResult {
    let host = std::fs::read_link("/proc/self/ns/net")
        .map_err(|e| format!("reading the host's network namespace: {e}"))?
        .display()
        .to_string();
    let shared = net_ns(&s, true).await?;
    ensure(shared == host, || {
        format!("network NODE: the container is in {shared}, the host in {host}")
    })?;
    let own = net_ns(&s, false).await?;
    ensure(own != host, || format!("network POD: {own} is the host's"))?;
    Ok(format!("{shared}, the pod's own {own}"))
}

async fn ipc_ns(s: &Scope, host: bool) -> Result<String, String> {
    let mode = |n: &mut cri::NamespaceOption| {
        n.ipc = if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    let (_, id, _) = s
        .busybox(SLEEP_SCRIPT, |p| mode(pod_ns(p)), |c| mode(ctr_ns(c)))
        .await?;
    s.sh(&id, "readlink /proc/self/ns/ipc").await
}

async fn host_ipc(s: Arc<Scope>) -> CaseResult {
    let host = std::fs::read_link("/proc/self/ns/ipc")
        .map_err(|e| format!("reading the host's IPC namespace: {e}"))?
        .display()
        .to_string();
    let shared = ipc_ns(&s, true).await?;
    ensure(shared == host, || {
        format!("ipc NODE: {shared}, the host is {host}")
    })?;
    let own = ipc_ns(&s, false).await?;
    ensure(own != host, || format!("ipc POD: {own} is the host's"))?;
    Ok(String::new())
}

async fn host_pid(s: Arc<Scope>) -> CaseResult {
    let id = s.host_pid_watcher().await?;
    let inside = s.sh(&id, "cat /proc/1/stat").await?;
    let host = std::fs::read_to_string("/proc/1/stat")
        .map_err(|e| format!("reading the host's /proc/1/stat: {e}"))?;
    // Fields 1-2 (pid, comm) and 22 (start time) identify the process.
    let key = |s: &str| {
        let f: Vec<&str> = s.split_whitespace().collect();
        (
            f.first().copied().map(str::to_owned),
            f.get(1).copied().map(str::to_owned),
            f.get(21).copied().map(str::to_owned),
        )
    };
    ensure(key(&inside) == key(host.trim()), || {
        format!("PID 1 inside is {inside:?}, on the host {host:?}")
    })?;
    Ok(String::new())
}

async fn pid_container(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let cmd = s.sh(&id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
    ensure(cmd.contains("while :"), || {
        format!("PID 1 is {cmd:?}, not the container's process")
    })?;
    Ok(String::new())
}

async fn pid_pod(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let marker = format!("marker-{}", s.tag);
    let script_a = format!("trap 'exit 0' TERM; while :; do sleep 0.2; done # {marker}");
    let (pod_id, _, pod) = s
        .started_in_new_pod(
            &image,
            &["sh", "-c", &script_a],
            |p| pod_ns(p).pid = cri::NamespaceMode::Pod as i32,
            |_| {},
        )
        .await?;
    let b = s.container_config(&pod, &image, &["sh", "-c", SLEEP_SCRIPT]);
    let b_id = s.run(&pod_id, &pod, &b).await?;
    let all = s
        .sh(&b_id, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
        .await?;
    ensure(all.contains(&marker), || {
        format!("the second container does not see the first one's process: {all:?}")
    })?;
    Ok(String::new())
}

async fn pid_target(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let marker = format!("marker-{}", s.tag);
    let script_a = format!("{SLEEP_SCRIPT} # {marker}");
    // Each container of this pod has a PID namespace of its own: only target_id can join
    // the second one to the first's.
    let (pod_id, a_id, pod) = s
        .started_in_new_pod(&image, &["sh", "-c", &script_a], |_| {}, |_| {})
        .await?;
    let mut b = s.container_config(&pod, &image, &["sh", "-c", SLEEP_SCRIPT]);
    let ns = ctr_ns(&mut b);
    ns.pid = cri::NamespaceMode::Target as i32;
    ns.target_id = a_id;
    let b_id = s.run(&pod_id, &pod, &b).await?;
    // PID 1 of the target's namespace is the first container's process.
    let init = s.sh(&b_id, "tr '\\0' ' ' < /proc/1/cmdline").await?;
    ensure(init.contains(&marker), || {
        format!("PID 1 of the new container's namespace is {init:?}, not the target's process")
    })?;
    Ok(String::new())
}

async fn sysctls(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s
        .busybox(
            SLEEP_SCRIPT,
            |p| {
                p.linux
                    .get_or_insert_with(Default::default)
                    .sysctls
                    .insert("kernel.shm_rmid_forced".into(), "1".into());
            },
            |_| {},
        )
        .await?;
    let v = s.sh(&id, "cat /proc/sys/kernel/shm_rmid_forced").await?;
    ensure(v == "1", || format!("kernel.shm_rmid_forced is {v}"))?;
    Ok(String::new())
}

/// The kubelet's request for `hostUsers: false`: mode POD with one 65536-ID range.
async fn userns_mode(s: Arc<Scope>) -> CaseResult {
    let handler = s.ctx.runtime_handler.clone();
    let status = s
        .rs()
        .status(cri::StatusRequest { verbose: false })
        .await
        .map_err(|e| format!("Status: {}", super::status_text(&e)))?
        .into_inner();
    let supported = status
        .runtime_handlers
        .iter()
        .find(|h| h.name == handler)
        .and_then(|h| h.features.as_ref())
        .is_some_and(|f| f.user_namespaces);
    let range = || {
        vec![cri::IdMapping {
            host_id: 1 << 20,
            container_id: 0,
            length: 65536,
        }]
    };
    let pod_mode = || {
        Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: range(),
            gids: range(),
        })
    };
    let userns = |p: &mut cri::PodSandboxConfig| pod_ns(p).userns_options = pod_mode();
    if supported {
        let (_, id, _) = s
            .busybox(SLEEP_SCRIPT, userns, |c| {
                ctr_ns(c).userns_options = pod_mode()
            })
            .await?;
        let map = s.sh(&id, "cat /proc/self/uid_map").await?;
        let fields: Vec<&str> = map.split_whitespace().collect();
        ensure(fields.get(1) == Some(&"1048576"), || {
            format!("uid_map {map:?} does not map to the requested host range")
        })?;
        return Ok("user namespace in effect".into());
    }
    let mut config = s.pod_config();
    userns(&mut config);
    let r = s
        .rs()
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler,
        })
        .await;
    match r {
        Ok(resp) => {
            let id = resp.into_inner().pod_sandbox_id;
            // Not tracked by the scope: remove it here.
            let _ = s
                .rs()
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            Err(format!(
                "the handler reports no user namespace support, yet RunPodSandbox with userns mode POD succeeded ({id}): the pod would run in the host's user namespace"
            ))
        }
        Err(e) if e.code() == tonic::Code::Unimplemented => Err(format!(
            "RunPodSandbox answered Unimplemented: {}",
            super::status_text(&e)
        )),
        Err(e) => {
            let left = s
                .rs()
                .list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        label_selector: config.labels.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|e| format!("ListPodSandbox: {}", super::status_text(&e)))?
                .into_inner()
                .items;
            ensure(left.is_empty(), || {
                format!("the refused pod is listed: {left:?}")
            })?;
            Ok(format!("refused: {:?}", e.code()))
        }
    }
}

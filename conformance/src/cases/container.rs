//! Container lifecycle: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus fields and ListContainers filters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crid_api::cri;
use tonic::Code;

use super::support::{
    SLEEP_SCRIPT, Scope, check_verbose_info, container_state_name, drained, namespaces,
    ok_or_not_found, pod_sc, refused, refused_duplicate, scoped,
};
use super::{Area, Case, CaseResult, Needs, ensure, status_text};
use crate::fixtures::image::catalogue::IMAGE_ENV;
use crate::fixtures::image::rootfs::{IMAGE_MARKER, WHITED_OUT};
use crate::fixtures::image::{BUSYBOX, BUSYBOX_STOPSIGNAL, LATEST, PAUSE, TRAPPED_MARK};

/// Containers need root, a runtime handler and the busybox fixtures.
pub(super) const CONTAINER_NEEDS: Needs = Needs {
    root: true,
    runtime_handler: true,
    image: Some(BUSYBOX),
    not_ready_endpoint: false,
};

const CASE_TIMEOUT: Duration = Duration::from_secs(90);
const EXIT_WAIT: Duration = Duration::from_secs(20);

pub(super) fn cases() -> Vec<Case> {
    let cases = Area::Container
        .cases()
        .needs(CONTAINER_NEEDS)
        .timeout(CASE_TIMEOUT);
    vec![
        cases.required(
            "container/create-created",
            "cri:RuntimeService.CreateContainer#container_id",
            "a created container is CONTAINER_CREATED with created_at set and started_at 0",
            |ctx| Box::pin(scoped(ctx, "cc", create_created)),
        ),
        cases.required(
            "container/start-running",
            "cri:RuntimeService.StartContainer#state",
            "a started container is CONTAINER_RUNNING with started_at >= created_at",
            |ctx| Box::pin(scoped(ctx, "cs", start_running)),
        ),
        cases.required(
            "container/exit-code",
            "cri:RuntimeService.ContainerStatus#status.exit_code",
            "a container whose process exits 3 is CONTAINER_EXITED with exit_code 3 and a finished_at after its creation",
            |ctx| Box::pin(scoped(ctx, "ce", exit_code)),
        ),
        cases.optional(
            "container/exit-reason",
            "cri:RuntimeService.ContainerStatus#status.reason",
            "an exited container carries a reason (kubectl shows it), not Completed after a non-zero exit",
            |ctx| Box::pin(scoped(ctx, "cr", exit_reason)),
        ),
        cases.required(
            "container/status-image",
            "cri:RuntimeService.ContainerStatus#status.image_ref",
            "ContainerStatus names the image and an image_ref that ImageStatus resolves to the same image",
            |ctx| Box::pin(scoped(ctx, "ci", status_image)),
        ),
        cases.required(
            "container/status-log-path",
            "cri:RuntimeService.ContainerStatus#status.log_path",
            "log_path is the pod's log_directory joined with the container's log_path",
            |ctx| Box::pin(scoped(ctx, "cl", status_log_path)),
        ),
        cases.required(
            "container/status-labels-annotations",
            "cri:RuntimeService.ContainerStatus#status.labels",
            "ContainerStatus returns the config's metadata, labels and annotations",
            |ctx| Box::pin(scoped(ctx, "ca", status_labels)),
        ),
        cases.required(
            "container/mount-host-path",
            "cri:RuntimeService.CreateContainer#config.mounts",
            "a host directory mounted read-write is shared with the host; a read-only one refuses writes",
            |ctx| Box::pin(scoped(ctx, "cm", mount_host_path)),
        ),
        cases.required(
            "container/mount-recursive-read-only",
            "cri:RuntimeService.CreateContainer#config.mounts.recursive_read_only",
            "a handler Status reports with recursive_read_only_mounts makes a mount's submounts read-only too (a plain read-only mount leaves them writable); a handler without it refuses the request instead of mounting the top only",
            |ctx| Box::pin(scoped(ctx, "crro", mount_recursive_read_only)),
        ),
        cases.required(
            "container/mount-propagation",
            "cri:RuntimeService.CreateContainer#config.mounts.propagation",
            "a mount the host makes under a shared host directory after the containers started shows in the container that mounted it HOST_TO_CONTAINER and not in the one that mounted it PRIVATE",
            |ctx| Box::pin(scoped(ctx, "cmp", mount_propagation)),
        ),
        cases.optional(
            "container/status-mounts",
            "cri:RuntimeService.ContainerStatus#status.mounts",
            "ContainerStatus lists the configured mounts",
            |ctx| Box::pin(scoped(ctx, "csm", status_mounts)),
        ),
        cases.required(
            "container/env-merge",
            "oci-image:config.md#Env",
            "the container sees the image's Env and the config's envs, the config winning on conflicts",
            |ctx| Box::pin(scoped(ctx, "cv", env_merge)),
        ),
        cases.required(
            "container/command-args-workdir",
            "cri:RuntimeService.CreateContainer#config.command",
            "command replaces the image Entrypoint, args its Cmd, working_dir its WorkingDir",
            |ctx| Box::pin(scoped(ctx, "cw", command_args)),
        ),
        cases.required(
            "container/image-layers-whiteout",
            "oci-image:layer.md#whiteouts",
            "the rootfs is the image's layers applied in order: the top layer's marker is there, a whited-out file is not",
            |ctx| Box::pin(scoped(ctx, "cwo", layers_whiteout)),
        ),
        cases.required(
            "container/stop-exits",
            "cri:RuntimeService.StopContainer#timeout",
            "StopContainer of a container that exits on SIGTERM leaves it CONTAINER_EXITED with exit code 0",
            |ctx| Box::pin(scoped(ctx, "cst", stop_exits)),
        ),
        cases.required(
            "container/stop-timeout-kills",
            "cri:RuntimeService.StopContainer#timeout",
            "a container ignoring SIGTERM is killed once the grace period passes",
            |ctx| Box::pin(scoped(ctx, "ck", stop_kills)),
        ),
        cases.required(
            "container/stop-signal-from-image",
            "oci-image:config.md#StopSignal",
            "StopContainer sends the image's StopSignal (SIGUSR1), not SIGTERM: the container is EXITED with code 0",
            |ctx| Box::pin(scoped(ctx, "cg", stop_signal)),
        ),
        cases.optional(
            "container/stop-signal-field",
            "cri:RuntimeService.CreateContainer#config.stop_signal",
            "StopContainer sends the signal config.stop_signal names (SIGQUIT), over the image's and SIGTERM",
            |ctx| Box::pin(scoped(ctx, "cq", stop_signal_field)),
        ),
        cases.required(
            "container/stop-idempotent",
            "cri:RuntimeService.StopContainer#idempotent",
            "StopContainer of a stopped container succeeds",
            |ctx| Box::pin(scoped(ctx, "csi", stop_idempotent)),
        ),
        cases.required(
            "container/remove-idempotent",
            "cri:RuntimeService.RemoveContainer#idempotent",
            "RemoveContainer twice succeeds; the container is then NotFound and unlisted",
            |ctx| Box::pin(scoped(ctx, "cri", remove_idempotent)),
        ),
        cases.required(
            "container/remove-unknown-id",
            "cri:RuntimeService.RemoveContainer#idempotent",
            "RemoveContainer of an id never seen answers OK or NotFound (the kubelet treats both as removed)",
            |ctx| Box::pin(scoped(ctx, "cru", remove_unknown)),
        ),
        cases.required(
            "container/stop-unknown-id",
            "cri:RuntimeService.StopContainer#idempotent",
            "StopContainer of an id never seen succeeds: the kubelet retries stops after restarts and treats NotFound as a failure",
            |ctx| Box::pin(scoped(ctx, "csu", stop_unknown)),
        ),
        cases.required(
            "container/exit-is-init-exit",
            "cri:RuntimeService.StopContainer#timeout",
            "in a pod-shared PID namespace, a container whose init exits on SIGTERM while a child it started lives on is EXITED as soon as init exits (not at the grace period's end), and StopContainer leaves none of its processes behind",
            |ctx| Box::pin(scoped(ctx, "cei", exit_is_init_exit)),
        ),
        cases.required(
            "container/remove-running-forces",
            "cri:RuntimeService.RemoveContainer#force",
            "RemoveContainer of a running container forcibly removes it: ContainerStatus says NotFound and its processes are gone from the host",
            |ctx| Box::pin(scoped(ctx, "crf", remove_running)),
        ),
        cases.optional(
            "container/start-after-exit-refused",
            "cri:RuntimeService.StartContainer#container_id",
            "StartContainer of an exited container is refused (the kubelet creates a new attempt instead)",
            |ctx| Box::pin(scoped(ctx, "cx", start_after_exit)),
        ),
        cases.required(
            "container/create-in-unknown-pod",
            "cri:RuntimeService.CreateContainer#pod_sandbox_id",
            "CreateContainer in a pod that does not exist is refused",
            |ctx| Box::pin(scoped(ctx, "cu", create_unknown_pod)),
        ),
        cases.optional(
            "container/duplicate-name-refused",
            "cri:RuntimeService.CreateContainer#config.metadata",
            "a second CreateContainer with the metadata of a container in the same pod is refused for the name (AlreadyExists, or an error naming it), and the first container stays the only one",
            |ctx| Box::pin(scoped(ctx, "cdu", duplicate_name)),
        ),
        cases.required(
            "container/tty",
            "cri:RuntimeService.CreateContainer#config.tty",
            "with tty set the container's stdout is a terminal (kubectl run -t)",
            |ctx| Box::pin(scoped(ctx, "ctt", tty)),
        ),
        cases.required(
            "container/list-filter-id",
            "cri:RuntimeService.ListContainers#filter.id",
            "ListContainers with an id filter returns exactly that container",
            |ctx| Box::pin(scoped(ctx, "cfi", list_filter_id)),
        ),
        cases.required(
            "container/list-filter-state",
            "cri:RuntimeService.ListContainers#filter.state",
            "ListContainers with a state filter separates created, running and exited containers",
            |ctx| Box::pin(scoped(ctx, "cfs", list_filter_state)),
        ),
        cases.required(
            "container/list-filter-pod",
            "cri:RuntimeService.ListContainers#filter.pod_sandbox_id",
            "ListContainers with a pod filter returns that pod's containers only",
            |ctx| Box::pin(scoped(ctx, "cfp", list_filter_pod)),
        ),
        cases.required(
            "container/list-filter-label-selector",
            "cri:RuntimeService.ListContainers#filter.label_selector",
            "ListContainers with a label selector returns only containers carrying every selected label",
            |ctx| Box::pin(scoped(ctx, "cfl", list_filter_labels)),
        ),
        cases.optional(
            "container/stream-filters",
            "cri:RuntimeService.StreamContainers#filter",
            "StreamContainers filtered by id, by state, by pod and by label selector streams exactly the matching containers",
            |ctx| Box::pin(scoped(ctx, "csf", stream_filters)),
        ),
        cases.optional(
            "container/status-verbose",
            "cri:RuntimeService.ContainerStatus#verbose",
            "ContainerStatus returns info (JSON values) when verbose is true and none when it is false",
            |ctx| Box::pin(scoped(ctx, "cvb", status_verbose)),
        ),
        cases.required(
            "container/devices",
            "cri:RuntimeService.CreateContainer#config.devices",
            "devices put the host's /dev/loop-control and /dev/null at their container_path with the host's device numbers; permissions \"r\" lets the container open the device for reading but not for writing, \"rw\" both",
            |ctx| Box::pin(scoped(ctx, "cdv", devices)),
        ),
    ]
}

async fn status_verbose(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let ask = |verbose| {
        let s = s.clone();
        let id = id.clone();
        async move {
            s.rs()
                .container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose,
                })
                .await
                .map(|r| r.into_inner().info)
                .map_err(|e| format!("ContainerStatus verbose={verbose}: {}", status_text(&e)))
        }
    };
    check_verbose_info("ContainerStatus", ask(false).await?, ask(true).await?)
}

async fn devices(s: Arc<Scope>) -> CaseResult {
    let device = |host: &str, container: &str, permissions: &str| cri::Device {
        container_path: container.to_owned(),
        host_path: host.to_owned(),
        permissions: permissions.to_owned(),
    };
    // loop-control is none of the devices runtimes allow by default (null, zero, tty...),
    // so only the request's permissions decide how it may be opened; opening it does
    // nothing (its ioctls need CAP_SYS_ADMIN).
    let (_, id) = s
        .sleeper(|c| {
            c.devices = vec![
                device("/dev/loop-control", "/dev/crid-loop-control", "r"),
                device("/dev/null", "/dev/crid-null", "rw"),
            ]
        })
        .await?;
    // Major and minor in hex: loop-control is 10,237 and null 1,3 on every Linux.
    let numbers = s
        .sh(
            &id,
            "stat -c '%F %t,%T' /dev/crid-loop-control /dev/crid-null",
        )
        .await?;
    let want = "character special file a,ed\ncharacter special file 1,3";
    ensure(numbers == want, || {
        format!("the devices are {numbers:?}, expected {want:?}")
    })?;
    s.sh(&id, "exec 3< /dev/crid-loop-control")
        .await
        .map_err(|e| {
            format!("opening /dev/crid-loop-control (permissions r) for reading failed: {e}")
        })?;
    s.sh(&id, "echo x > /dev/crid-null")
        .await
        .map_err(|e| format!("writing /dev/crid-null (permissions rw) failed: {e}"))?;
    let (out, err, code) = s
        .exec(&id, &["sh", "-c", "exec 3> /dev/crid-loop-control"], 20)
        .await?;
    ensure(code != 0, || {
        format!(
            "opening /dev/crid-loop-control (permissions r) for writing succeeded: stdout {out:?} stderr {err:?}"
        )
    })?;
    Ok(err.trim().to_owned())
}

async fn list(s: &Scope, filter: cri::ContainerFilter) -> Result<Vec<String>, String> {
    s.rs()
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map(|r| {
            r.into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .map_err(|e| format!("ListContainers: {}", status_text(&e)))
}

async fn create_created(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s.busybox_created("true").await?;
    let st = s.container_status(&id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerCreated as i32,
        || format!("state {}", container_state_name(st.state)),
    )?;
    ensure(st.created_at > 0, || "created_at is 0".into())?;
    ensure(st.started_at == 0, || {
        format!("started_at {} before start", st.started_at)
    })?;
    Ok(String::new())
}

async fn start_running(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.running(|_| {}).await?;
    let st = s.container_status(&id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerRunning as i32,
        || format!("state {}", container_state_name(st.state)),
    )?;
    ensure(st.started_at >= st.created_at && st.started_at > 0, || {
        format!("started_at {} created_at {}", st.started_at, st.created_at)
    })?;
    ensure(st.finished_at == 0, || {
        "finished_at set while running".into()
    })?;
    Ok(String::new())
}

async fn exit_code(s: Arc<Scope>) -> CaseResult {
    let (_, st) = s.busybox_exited("exit 3", |_| {}, EXIT_WAIT).await?;
    ensure(st.exit_code == 3, || format!("exit_code {}", st.exit_code))?;
    // Not finished_at >= started_at: the spec orders neither, and runtimes take the start
    // time after the start call returns, which a fast exit can precede.
    ensure(
        st.finished_at >= st.created_at && st.finished_at > 0,
        || {
            format!(
                "finished_at {} created_at {}",
                st.finished_at, st.created_at
            )
        },
    )?;
    Ok(String::new())
}

async fn exit_reason(s: Arc<Scope>) -> CaseResult {
    let (_, st) = s.busybox_exited("exit 3", |_| {}, EXIT_WAIT).await?;
    ensure(!st.reason.is_empty(), || "reason is empty".into())?;
    // The kubelet shows the reason as the container's terminated state: `Completed` is
    // its word (and containerd's and CRI-O's) for exit 0, so a failed container must not
    // carry it.
    ensure(st.reason != "Completed", || {
        "reason Completed for exit code 3 (Completed means exit 0)".into()
    })?;
    Ok(format!("reason {:?}", st.reason))
}

async fn status_image(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.running(|_| {}).await?;
    let image = s.image(PAUSE, LATEST)?;
    let st = s.container_status(&id).await?;
    let shown = st.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    ensure(!shown.is_empty(), || "status.image is empty".into())?;
    ensure(!st.image_ref.is_empty(), || {
        "status.image_ref is empty".into()
    })?;
    let by_ref = s
        .image_status(&st.image_ref)
        .await?
        .ok_or_else(|| format!("ImageStatus({}) finds no image", st.image_ref))?;
    let by_tag = s
        .image_status(&image)
        .await?
        .ok_or_else(|| format!("ImageStatus({image}) finds no image"))?;
    ensure(by_ref.id == by_tag.id, || {
        format!(
            "image_ref {} resolves to {}, the tag to {}",
            st.image_ref, by_ref.id, by_tag.id
        )
    })?;
    Ok(format!("image {shown}, image_ref {}", st.image_ref))
}

async fn status_log_path(s: Arc<Scope>) -> CaseResult {
    let (_, id, pod) = s.busybox_created("true").await?;
    let st = s.container_status(&id).await?;
    let name = st
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let want = std::path::Path::new(&pod.log_directory).join(format!("{name}.log"));
    ensure(std::path::Path::new(&st.log_path) == want, || {
        format!("log_path {:?}, expected {}", st.log_path, want.display())
    })?;
    Ok(String::new())
}

async fn status_labels(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let mut config = s.container_config(&pod, &image, &["true"]);
    config.labels.insert("role".into(), "probe".into());
    config
        .annotations
        .insert("example.com/why".into(), "conformance".into());
    let id = s.create(&pod_id, &pod, &config).await?;
    let st = s.container_status(&id).await?;
    ensure(st.metadata == config.metadata, || {
        format!("metadata {:?} != {:?}", st.metadata, config.metadata)
    })?;
    ensure(st.labels == config.labels, || {
        format!("labels {:?} != {:?}", st.labels, config.labels)
    })?;
    ensure(st.annotations == config.annotations, || {
        format!(
            "annotations {:?} != {:?}",
            st.annotations, config.annotations
        )
    })?;
    Ok(String::new())
}

fn host_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("crid-conformance-mount-")
        .tempdir()
        .map_err(|e| format!("creating a host directory: {e}"))
}

/// Host mounts a case made, unmounted (lazily, innermost first) when dropped, pass or fail.
struct HostMounts(Vec<std::path::PathBuf>);

impl HostMounts {
    /// Runs `mount args...`; what it mounted on `target` is unmounted on drop.
    fn mount(&mut self, args: &[&str], target: &std::path::Path) -> Result<(), String> {
        let out = std::process::Command::new("mount")
            .args(args)
            .output()
            .map_err(|e| format!("running mount {args:?}: {e}"))?;
        ensure(out.status.success(), || {
            format!(
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        self.0.push(target.to_owned());
        Ok(())
    }
}

impl Drop for HostMounts {
    fn drop(&mut self) {
        for target in self.0.iter().rev() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(target)
                .output();
        }
    }
}

async fn mount_propagation(s: Arc<Scope>) -> CaseResult {
    // A host directory on a shared mount of its own, so that the host's later mounts under
    // it can propagate (runtimes refuse HOST_TO_CONTAINER from a private mount).
    let dir = host_dir()?;
    let path = dir.path().to_owned();
    let sub = path.join("sub");
    std::fs::create_dir(&sub).map_err(|e| format!("creating {}: {e}", sub.display()))?;
    let p = path.display().to_string();
    let mut mounts = HostMounts(Vec::new());
    mounts.mount(&["--bind", &p, &p], &path)?;
    mounts.mount(&["--make-shared", &p], &path)?;
    let mut ids = Vec::new();
    for propagation in [
        cri::MountPropagation::PropagationHostToContainer,
        cri::MountPropagation::PropagationPrivate,
    ] {
        let (_, id) = s
            .sleeper(|c| {
                c.mounts = vec![cri::Mount {
                    container_path: "/prop".into(),
                    host_path: p.clone(),
                    propagation: propagation as i32,
                    ..Default::default()
                }]
            })
            .await?;
        ids.push(id);
    }
    let sub_s = sub.display().to_string();
    mounts.mount(&["-t", "tmpfs", "-o", "size=1m", "crid-prop", &sub_s], &sub)?;
    let seen = |id: String| {
        let s = s.clone();
        async move {
            s.sh(&id, "grep -c ' /prop/sub ' /proc/self/mountinfo || true")
                .await
                .map(|n| n != "0")
        }
    };
    ensure(seen(ids[0].clone()).await?, || {
        "the host's new mount under the directory is missing in the HOST_TO_CONTAINER container"
            .into()
    })?;
    ensure(!seen(ids[1].clone()).await?, || {
        "the host's new mount under the directory shows in the PRIVATE container".into()
    })?;
    // The containers go first (scope cleanup), then the host mounts, then the directory.
    s.cleanup().await?;
    drop(mounts);
    drop(dir);
    Ok(String::new())
}

async fn mount_host_path(s: Arc<Scope>) -> CaseResult {
    let rw = host_dir()?;
    let ro = host_dir()?;
    std::fs::write(ro.path().join("hello"), "from-host")
        .map_err(|e| format!("writing the host file: {e}"))?;
    let (_, id) = s
        .sleeper(|c| {
            c.mounts = vec![
                cri::Mount {
                    container_path: "/rw".into(),
                    host_path: rw.path().display().to_string(),
                    ..Default::default()
                },
                cri::Mount {
                    container_path: "/ro".into(),
                    host_path: ro.path().display().to_string(),
                    readonly: true,
                    ..Default::default()
                },
            ]
        })
        .await?;
    s.sh(&id, "echo from-container > /rw/out").await?;
    let seen = std::fs::read_to_string(rw.path().join("out")).unwrap_or_default();
    ensure(seen.trim() == "from-container", || {
        format!("host sees {seen:?} in the read-write mount")
    })?;
    let read = s.sh(&id, "cat /ro/hello").await?;
    ensure(read == "from-host", || format!("container reads {read:?}"))?;
    let (_, _, code) = s.exec(&id, &["sh", "-c", "echo x > /ro/new"], 10).await?;
    ensure(code != 0, || {
        "writing into the read-only mount succeeded".into()
    })?;
    Ok(String::new())
}

async fn mount_recursive_read_only(s: Arc<Scope>) -> CaseResult {
    let status = s
        .rs()
        .status(cri::StatusRequest { verbose: false })
        .await
        .map_err(|e| format!("Status: {}", status_text(&e)))?
        .into_inner();
    let handler = &s.ctx.runtime_handler;
    let supported = status
        .runtime_handlers
        .iter()
        .find(|h| &h.name == handler)
        .and_then(|h| h.features.as_ref())
        .is_some_and(|f| f.recursive_read_only_mounts);
    let dir = host_dir()?;
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).map_err(|e| format!("creating {}: {e}", sub.display()))?;
    let mut mounts = HostMounts(Vec::new());
    let sub_s = sub.display().to_string();
    mounts.mount(&["-t", "tmpfs", "-o", "size=1m", "crid-rro", &sub_s], &sub)?;
    let mount = |recursive: bool| cri::Mount {
        container_path: "/data".into(),
        host_path: dir.path().display().to_string(),
        readonly: true,
        recursive_read_only: recursive,
        ..Default::default()
    };
    // Writes to the top of the mount and into the submount; true where they succeed.
    let writes = |id: String| {
        let s = s.clone();
        async move {
            let top = s
                .exec(&id, &["sh", "-c", "echo x > /data/top"], 10)
                .await?
                .2
                == 0;
            let sub = s
                .exec(&id, &["sh", "-c", "echo x > /data/sub/f"], 10)
                .await?
                .2
                == 0;
            Ok::<_, String>((top, sub))
        }
    };
    // The control: a plain read-only mount is read-only on top only, so the submount is
    // there and writable (otherwise the check below would pass for the wrong reason).
    let (_, plain) = s.sleeper(|c| c.mounts = vec![mount(false)]).await?;
    let (top, sub) = writes(plain).await?;
    ensure(!top && sub, || {
        format!(
            "a plain read-only mount: top writable {top}, submount writable {sub}; expected false, true"
        )
    })?;
    if !supported {
        let pod = s.pod().await?;
        let image = s.pulled(BUSYBOX, LATEST).await?;
        let mut c = s.container_config(&pod.1, &image, &["sh", "-c", SLEEP_SCRIPT]);
        c.mounts = vec![mount(true)];
        return match s.create(&pod.0, &pod.1, &c).await {
            Ok(id) => Err(format!(
                "Status reports no recursive read-only mounts for handler {handler:?}, yet CreateContainer accepted one ({id})"
            )),
            Err(e) => Ok(format!("handler without the feature; refused: {e}")),
        };
    }
    let (_, rro) = s.sleeper(|c| c.mounts = vec![mount(true)]).await?;
    let (top, sub) = writes(rro).await?;
    ensure(!top && !sub, || {
        format!("a recursive read-only mount: top writable {top}, submount writable {sub}")
    })?;
    Ok("submounts read-only".into())
}

async fn status_mounts(s: Arc<Scope>) -> CaseResult {
    let dir = host_dir()?;
    let host = dir.path().display().to_string();
    let (_, id) = s
        .sleeper(|c| {
            c.mounts = vec![cri::Mount {
                container_path: "/data".into(),
                host_path: host.clone(),
                readonly: true,
                ..Default::default()
            }]
        })
        .await?;
    let st = s.container_status(&id).await?;
    let m = st
        .mounts
        .iter()
        .find(|m| m.container_path == "/data")
        .ok_or_else(|| format!("no /data in status.mounts {:?}", st.mounts))?;
    ensure(m.host_path == host && m.readonly, || {
        format!("mount {m:?}, expected host_path {host} read-only")
    })?;
    Ok(String::new())
}

async fn env_merge(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s
        .sleeper(|c| {
            c.envs = vec![
                cri::KeyValue {
                    key: "FROM_CONFIG".into(),
                    value: "yes".into(),
                },
                cri::KeyValue {
                    key: "PATH".into(),
                    value: "/bin:/sbin:/usr/bin".into(),
                },
            ]
        })
        .await?;
    let out = s
        .sh(
            &id,
            &format!("echo \"${}|$FROM_CONFIG|$PATH\"", IMAGE_ENV.0),
        )
        .await?;
    let want = format!("{}|yes|/bin:/sbin:/usr/bin", IMAGE_ENV.1);
    ensure(out == want, || format!("got {out:?}, expected {want:?}"))?;
    Ok(String::new())
}

async fn command_args(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (_, id, _) = s
        .started_in_new_pod(
            &image,
            &["sh", "-c"],
            |_| {},
            |c| {
                c.args = vec!["pwd; echo $0-$1".into(), "zero".into(), "one".into()];
                c.working_dir = "/tmp".into();
            },
        )
        .await?;
    s.wait_state(&id, cri::ContainerState::ContainerExited, EXIT_WAIT)
        .await?;
    let st = s.container_status(&id).await?;
    let log = std::fs::read_to_string(&st.log_path)
        .map_err(|e| format!("reading {}: {e}", st.log_path))?;
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    ensure(lines == ["/tmp", "zero-one"], || {
        format!("output {lines:?}, expected [\"/tmp\", \"zero-one\"]")
    })?;
    Ok(String::new())
}

async fn layers_whiteout(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.sleeper(|_| {}).await?;
    let marker = s.sh(&id, &format!("cat {IMAGE_MARKER}")).await?;
    ensure(marker == BUSYBOX, || {
        format!("{IMAGE_MARKER} is {marker:?}")
    })?;
    let (_, _, code) = s.exec(&id, &["test", "-e", WHITED_OUT], 10).await?;
    ensure(code != 0, || format!("{WHITED_OUT} survives its whiteout"))?;
    Ok(String::new())
}

async fn stop_exits(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.running(|_| {}).await?;
    s.wait_trapped(&id).await?;
    let started = Instant::now();
    s.stop(&id, 10).await?;
    let st = s.container_status(&id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerExited as i32,
        || {
            format!(
                "state {} after StopContainer returned",
                container_state_name(st.state)
            )
        },
    )?;
    ensure(st.exit_code == 0, || {
        format!(
            "exit code {} (the pause fixture exits 0 on SIGTERM)",
            st.exit_code
        )
    })?;
    Ok(format!("stopped in {:?}", started.elapsed()))
}

async fn stop_kills(s: Arc<Scope>) -> CaseResult {
    let script = format!("trap '' TERM; touch {TRAPPED_MARK}; while :; do sleep 0.2; done");
    let (_, id, _) = s.busybox(&script, |_| {}, |_| {}).await?;
    s.wait_trapped(&id).await?;
    let started = Instant::now();
    s.stop(&id, 2).await?;
    let took = started.elapsed();
    let st = s.container_status(&id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerExited as i32,
        || {
            format!(
                "state {} after StopContainer",
                container_state_name(st.state)
            )
        },
    )?;
    ensure(took >= Duration::from_millis(1500), || {
        format!("stopped after {took:?}: the grace period was not honoured")
    })?;
    // 128 + the signal, as docker, containerd and CRI-O report it and the kubelet reads it:
    // a bare 9 could not be told from `exit 9`.
    ensure(st.exit_code == 137, || {
        format!(
            "exit code {}, expected SIGKILL's 137 (128 + 9)",
            st.exit_code
        )
    })?;
    Ok(format!("killed after {took:?}"))
}

async fn stop_signal(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX_STOPSIGNAL, LATEST).await?;
    let (_, id, _) = s.started_in_new_pod(&image, &[], |_| {}, |_| {}).await?;
    s.wait_trapped(&id).await?;
    s.stop(&id, 10).await?;
    judge_stop_signal(&s.container_status(&id).await?)
}

/// The stop-signal fixture exits 0 only on SIGUSR1; a running container also reports exit
/// code 0, so the state must say it exited.
fn judge_stop_signal(st: &cri::ContainerStatus) -> CaseResult {
    ensure(
        st.state == cri::ContainerState::ContainerExited as i32,
        || {
            format!(
                "state {} after StopContainer returned",
                container_state_name(st.state)
            )
        },
    )?;
    ensure(st.exit_code == 0, || {
        format!(
            "exit code {}: the fixture exits 0 only on SIGUSR1, so another signal was sent",
            st.exit_code
        )
    })?;
    Ok(String::new())
}

async fn stop_signal_field(s: Arc<Scope>) -> CaseResult {
    let (_, id, _) = s
        .busybox(
            &format!(
                "trap 'exit 7' QUIT; trap 'exit 3' TERM; touch {TRAPPED_MARK}; while :; do sleep 0.1; done"
            ),
            |_| {},
            |c| c.stop_signal = cri::Signal::Sigquit as i32,
        )
        .await?;
    s.wait_trapped(&id).await?;
    s.stop(&id, 10).await?;
    let st = exited_after_stop(&s, &id).await?;
    ensure(st.exit_code == 7, || {
        format!(
            "exit code {}: the container exits 7 only on SIGQUIT (3 on SIGTERM)",
            st.exit_code
        )
    })?;
    Ok(String::new())
}

async fn stop_idempotent(s: Arc<Scope>) -> CaseResult {
    let (_, id) = s.running(|_| {}).await?;
    s.stop(&id, 10).await?;
    s.stop(&id, 10)
        .await
        .map_err(|e| format!("second stop: {e}"))?;
    Ok(String::new())
}

/// Requires ContainerStatus of the removed container `id` to answer NotFound.
async fn removed_is_not_found(s: &Scope, id: &str) -> Result<(), String> {
    let r = s
        .rs()
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await;
    ensure(matches!(&r, Err(e) if e.code() == Code::NotFound), || {
        format!("ContainerStatus after remove: {r:?}, expected NotFound")
    })
}

async fn remove_idempotent(s: Arc<Scope>) -> CaseResult {
    let (pod, id) = s.running(|_| {}).await?;
    s.stop(&id, 10).await?;
    s.remove_container(&id).await?;
    s.remove_container(&id)
        .await
        .map_err(|e| format!("second remove: {e}"))?;
    removed_is_not_found(&s, &id).await?;
    let left = list(
        &s,
        cri::ContainerFilter {
            pod_sandbox_id: pod,
            ..Default::default()
        },
    )
    .await?;
    ensure(!left.contains(&id), || {
        "removed container still listed".into()
    })?;
    Ok(String::new())
}

async fn remove_running(s: Arc<Scope>) -> CaseResult {
    let watcher = s.host_pid_watcher().await?;
    let marker = s.name("victim");
    let (_, id, _) = s
        .busybox(&format!("{SLEEP_SCRIPT} # {marker}"), |_| {}, |_| {})
        .await?;
    s.wait_processes(&watcher, &marker, true).await?;
    s.remove_container(&id).await?;
    removed_is_not_found(&s, &id).await?;
    // Removed from the records is not enough: its processes must be gone.
    s.wait_processes(&watcher, &marker, false).await?;
    Ok(String::new())
}

async fn start_after_exit(s: Arc<Scope>) -> CaseResult {
    let (id, _) = s.busybox_exited("exit 0", |_| {}, EXIT_WAIT).await?;
    let r = s
        .rs()
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    let code = refused("StartContainer", r)?;
    Ok(format!("{code:?}"))
}

async fn create_unknown_pod(s: Arc<Scope>) -> CaseResult {
    let image = s.image(BUSYBOX, LATEST)?;
    let pod = s.pod_config();
    let config = s.container_config(&pod, &image, &["true"]);
    let r = s
        .rs()
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: s.name("never-created"),
            config: Some(config),
            sandbox_config: Some(pod),
        })
        .await;
    let code = refused("CreateContainer", r)?;
    Ok(format!("{code:?}"))
}

async fn duplicate_name(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let config = s.container_config(&pod, &image, &["true"]);
    let first = s.create(&pod_id, &pod, &config).await?;
    let r = s
        .rs()
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config.clone()),
            sandbox_config: Some(pod.clone()),
        })
        .await;
    if let Ok(created) = &r {
        s.track_container(&created.get_ref().container_id);
    }
    let name = config
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    let note = refused_duplicate("CreateContainer", r, name)?;
    // The first container is untouched and is the only one of that name.
    s.container_status(&first).await?;
    let listed = list(
        &s,
        cri::ContainerFilter {
            pod_sandbox_id: pod_id,
            ..Default::default()
        },
    )
    .await?;
    ensure(listed == [first.clone()], || {
        format!("the pod lists {listed:?}, expected only {first}")
    })?;
    Ok(note)
}

async fn tty(s: Arc<Scope>) -> CaseResult {
    let (_, st) = s
        .busybox_exited(
            "if [ -t 1 ]; then echo is-a-tty; else echo not-a-tty; fi",
            |c| c.tty = true,
            EXIT_WAIT,
        )
        .await?;
    let log = std::fs::read_to_string(&st.log_path)
        .map_err(|e| format!("reading {}: {e}", st.log_path))?;
    ensure(log.contains("is-a-tty"), || format!("the log says {log:?}"))?;
    Ok(String::new())
}

async fn list_filter_id(s: Arc<Scope>) -> CaseResult {
    let (pod_id, a, pod) = s.busybox_created("true").await?;
    let image = s.image(BUSYBOX, LATEST)?;
    let other = s.container_config(&pod, &image, &["true"]);
    s.create(&pod_id, &pod, &other).await?;
    let got = list(
        &s,
        cri::ContainerFilter {
            id: a.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure(got == [a.clone()], || {
        format!("expected [{a}], got {got:?}")
    })?;
    Ok(String::new())
}

async fn list_filter_state(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let created = s
        .create(&pod_id, &pod, &s.container_config(&pod, &image, &["true"]))
        .await?;
    let running = s
        .run(
            &pod_id,
            &pod,
            &s.container_config(&pod, &image, &["sh", "-c", SLEEP_SCRIPT]),
        )
        .await?;
    let exited = s
        .run(&pod_id, &pod, &s.container_config(&pod, &image, &["true"]))
        .await?;
    s.wait_state(&exited, cri::ContainerState::ContainerExited, EXIT_WAIT)
        .await?;
    for (state, want) in [
        (cri::ContainerState::ContainerCreated, &created),
        (cri::ContainerState::ContainerRunning, &running),
        (cri::ContainerState::ContainerExited, &exited),
    ] {
        let got = list(
            &s,
            cri::ContainerFilter {
                pod_sandbox_id: pod_id.clone(),
                state: Some(cri::ContainerStateValue {
                    state: state as i32,
                }),
                ..Default::default()
            },
        )
        .await?;
        ensure(got == [want.clone()], || {
            format!(
                "{} filter gave {got:?}, expected [{want}]",
                state.as_str_name()
            )
        })?;
    }
    Ok(String::new())
}

async fn list_filter_pod(s: Arc<Scope>) -> CaseResult {
    let (pod_a, a, _) = s.busybox_created("true").await?;
    let (_pod_b, _b, _) = s.busybox_created("true").await?;
    let got = list(
        &s,
        cri::ContainerFilter {
            pod_sandbox_id: pod_a.clone(),
            ..Default::default()
        },
    )
    .await?;
    ensure(got == [a.clone()], || {
        format!("pod filter gave {got:?}, expected [{a}]")
    })?;
    Ok(String::new())
}

async fn list_filter_labels(s: Arc<Scope>) -> CaseResult {
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let (pod_id, pod) = s.pod().await?;
    let mut ca = s.container_config(&pod, &image, &["true"]);
    ca.labels.insert("tier".into(), "front".into());
    ca.labels.insert("color".into(), "blue".into());
    let mut cb = s.container_config(&pod, &image, &["true"]);
    cb.labels.insert("tier".into(), "front".into());
    let a = s.create(&pod_id, &pod, &ca).await?;
    let b = s.create(&pod_id, &pod, &cb).await?;
    let select = |pairs: &[(&str, &str)]| cri::ContainerFilter {
        label_selector: s.selector(pairs),
        ..Default::default()
    };
    let mut both = list(&s, select(&[("tier", "front")])).await?;
    both.sort();
    let mut want = vec![a.clone(), b];
    want.sort();
    ensure(both == want, || {
        format!("tier=front gave {both:?}, expected {want:?}")
    })?;
    let one = list(&s, select(&[("tier", "front"), ("color", "blue")])).await?;
    ensure(one == [a.clone()], || {
        format!("tier=front,color=blue gave {one:?}, expected [{a}]")
    })?;
    Ok(String::new())
}

async fn remove_unknown(s: Arc<Scope>) -> CaseResult {
    let r = s
        .rs()
        .remove_container(cri::RemoveContainerRequest {
            container_id: s.name("never-created"),
        })
        .await;
    ok_or_not_found("RemoveContainer", r)?;
    Ok(String::new())
}

/// The container's status after StopContainer returned, which must be EXITED.
async fn exited_after_stop(s: &Scope, id: &str) -> Result<cri::ContainerStatus, String> {
    let st = s.container_status(id).await?;
    ensure(
        st.state == cri::ContainerState::ContainerExited as i32,
        || {
            format!(
                "after StopContainer the state is {}",
                container_state_name(st.state)
            )
        },
    )?;
    Ok(st)
}

async fn stop_unknown(s: Arc<Scope>) -> CaseResult {
    s.rs()
        .stop_container(cri::StopContainerRequest {
            container_id: s.name("never-created"),
            timeout: 0,
        })
        .await
        .map_err(|e| format!("StopContainer of an unknown id: {}", status_text(&e)))?;
    Ok(String::new())
}

/// The kubelet's own reproduction: `trap 'exit 0' TERM; sleep 3600 & wait` in a pod
/// sharing its PID namespace, stopped with a 10 s grace period.
async fn exit_is_init_exit(s: Arc<Scope>) -> CaseResult {
    const MARK: &str = "3599";
    let shared = |p: &mut cri::PodSandboxConfig| {
        pod_sc(p).namespace_options = Some(namespaces(cri::NamespaceMode::Pod));
    };
    let script = format!("trap 'exit 0' TERM; sleep {MARK} & wait");
    let (pod_id, id, pod) = s.busybox(&script, shared, |_| {}).await?;
    // A sibling in the same PID namespace sees every process of the pod.
    let image = s.image(BUSYBOX, LATEST)?;
    let watcher_config = s.container_config(&pod, &image, &["sleep", "3600"]);
    let watcher = s.run(&pod_id, &pod, &watcher_config).await?;
    // Exact argv match: the counting shell's own command line merely contains the mark.
    let count = format!(
        "n=0; for p in /proc/[0-9]*; do c=$(tr '\\000' ' ' < $p/cmdline 2>/dev/null); \
         case \"$c\" in 'sleep {MARK} ') n=$((n+1));; esac; done; echo $n"
    );
    let before = s.sh(&watcher, &count).await?;
    ensure(before.trim() == "1", || {
        format!("expected the container's `sleep {MARK}` child to run, counted {before}")
    })?;

    let start = Instant::now();
    s.stop(&id, 10).await?;
    let took = start.elapsed();
    let st = exited_after_stop(&s, &id).await?;
    ensure(st.exit_code == 0, || {
        format!("init exits 0 on SIGTERM, status says {}", st.exit_code)
    })?;
    // Init exits within milliseconds of SIGTERM; waiting for the child to go (or for the
    // grace period) is the defect this case is about.
    ensure(took < Duration::from_millis(1500), || {
        format!("StopContainer took {took:?}: the exit waited for a surviving child")
    })?;
    let after = s.sh(&watcher, &count).await?;
    ensure(after.trim() == "0", || {
        format!("`sleep {MARK}` of the stopped container still runs ({after} left)")
    })?;
    Ok(format!("stopped in {took:?}"))
}

async fn stream_filters(s: Arc<Scope>) -> CaseResult {
    // Container a runs in pod a and is labelled pick=a; container b is only created, in
    // pod b, and labelled pick=b.
    let image = s.pulled(BUSYBOX, LATEST).await?;
    let mut made = Vec::new();
    for v in ["a", "b"] {
        let (pod_id, pod) = s.pod().await?;
        let mut config = s.container_config(&pod, &image, &["sh", "-c", SLEEP_SCRIPT]);
        config.labels.insert("pick".into(), v.into());
        let id = if v == "a" {
            s.run(&pod_id, &pod, &config).await?
        } else {
            s.create(&pod_id, &pod, &config).await?
        };
        made.push((pod_id, id));
    }
    let (a, b) = (made[0].1.clone(), made[1].1.clone());
    let pod_b = made[1].0.clone();
    let state = |st: cri::ContainerState| Some(cri::ContainerStateValue { state: st as i32 });
    let scope = s.selector(&[]);
    for (what, filter, want) in [
        (
            "id",
            cri::ContainerFilter {
                id: a.clone(),
                ..Default::default()
            },
            &a,
        ),
        (
            "state RUNNING",
            cri::ContainerFilter {
                state: state(cri::ContainerState::ContainerRunning),
                label_selector: scope.clone(),
                ..Default::default()
            },
            &a,
        ),
        (
            "state CREATED",
            cri::ContainerFilter {
                state: state(cri::ContainerState::ContainerCreated),
                label_selector: scope.clone(),
                ..Default::default()
            },
            &b,
        ),
        (
            "pod_sandbox_id",
            cri::ContainerFilter {
                pod_sandbox_id: pod_b.clone(),
                ..Default::default()
            },
            &b,
        ),
        (
            "label_selector pick=a",
            cri::ContainerFilter {
                label_selector: s.selector(&[("pick", "a")]),
                ..Default::default()
            },
            &a,
        ),
    ] {
        let got: Vec<String> = drained(
            "StreamContainers",
            s.rs()
                .stream_containers(cri::StreamContainersRequest {
                    filter: Some(filter),
                })
                .await,
        )
        .await?
        .into_iter()
        .flat_map(|m| m.containers)
        .map(|c| c.id)
        .collect();
        ensure(got == [want.clone()], || {
            format!("filter {what} streamed {got:?}, expected [{want}]")
        })?;
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit code 0 of a container still running is not a stop by the image's signal.
    #[test]
    fn the_stop_signal_judgment_needs_an_exited_container() {
        let st = |state: cri::ContainerState, exit_code| cri::ContainerStatus {
            state: state as i32,
            exit_code,
            ..Default::default()
        };
        assert!(judge_stop_signal(&st(cri::ContainerState::ContainerExited, 0)).is_ok());
        assert!(
            judge_stop_signal(&st(cri::ContainerState::ContainerRunning, 0))
                .unwrap_err()
                .contains("CONTAINER_RUNNING")
        );
        assert!(judge_stop_signal(&st(cri::ContainerState::ContainerExited, 143)).is_err());
    }
}

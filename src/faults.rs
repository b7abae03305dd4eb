//! Named, off-by-default faults for the mutation score (issue 15): each one a plausible bug
//! at one point of behaviour, which the conformance suite must catch. A build with the
//! `faults` feature selects at most one at start (`crid --fault NAME`); without the feature
//! [`on`] is a constant `false`, so hooks compile away and release builds carry nothing.
//!
//! `crid-conformance mutate` runs the suite once per fault and records which cases caught
//! it (conformance/traceability/mutation.toml); a test below keeps that file and
//! [`Fault::ALL`] in step. New faults come first from bugs an outside suite found that the
//! harness missed (the first four).

/// The environment variable through which the daemon hands its fault to the processes it
/// starts (crid-monitor), which have no `--fault` flag of their own.
pub const ENV: &str = "CRID_FAULT";

macro_rules! faults {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $name:literal, areas [$($area:literal),+], clause $clause:literal;
    )+) => {
        /// A fault: one wrong behaviour, named, with the clause it violates.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Fault {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Fault {
            /// Every fault, in the order of the table in docs/traceability.md.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)+];

            /// The stable kebab-case name (`--fault NAME`, the recorded results).
            pub fn name(self) -> &'static str {
                match self { $(Fault::$variant => $name,)+ }
            }

            /// The harness areas whose cases should catch it (the mutation run's default
            /// selection; `--full` runs every area).
            pub fn areas(self) -> &'static [&'static str] {
                match self { $(Fault::$variant => &[$($area),+],)+ }
            }

            /// The CRI or OCI clause the fault violates.
            pub fn clause(self) -> &'static str {
                match self { $(Fault::$variant => $clause,)+ }
            }

            /// What the fault breaks, in one line (the first line of its doc comment).
            pub fn summary(self) -> &'static str {
                match self { $(Fault::$variant => faults!(@first $($doc)+),)+ }
            }
        }
    };
    (@first $first:literal $($rest:literal)*) => { $first.trim_ascii() };
}

faults! {
    /// StopContainer of an unknown ID answers NotFound instead of OK.
    /// The kubelet retries stops after restarts; api.proto: StopContainer "must not return
    /// an error if the container has already been stopped".
    StopUnknownNotFound = "stop-unknown-not-found", areas ["container"],
        clause "cri:RuntimeService.StopContainer#idempotent";
    /// ReopenContainerLog returns before the monitor has opened the new log file.
    /// The kubelet's rotation renames the file, calls ReopenContainerLog and reads the new
    /// file at once.
    ReopenLogAsync = "reopen-log-async", areas ["logs"],
        clause "cri:RuntimeService.ReopenContainerLog#container_id";
    /// A container's exit is recorded only after its output pipes close (up to 2 s).
    /// A child that outlives init holds the pipes; the container's exit is its init's exit.
    ExitWaitsForPipes = "exit-waits-for-pipes", areas ["container"],
        clause "cri:RuntimeService.StopContainer#timeout";
    /// The hugetlb probe is skipped: hugepage limits the host cannot enforce reach runc.
    /// Without a hugetlb controller runc refuses such a container, and the kubelet sets
    /// hugepage limits on every container.
    SkipHugetlbProbe = "skip-hugetlb-probe", areas ["kubelet-replay"],
        clause "cri:RuntimeService.CreateContainer#config.linux.resources.hugepage_limits";
    /// UpdateRuntimeConfig without a runtime_config never answers.
    /// A missing optional message waits on a reload that never comes: every RPC must answer.
    UpdateRuntimeConfigHangs = "update-runtime-config-hangs", areas ["api-surface"],
        clause "grpc:status-codes#UNIMPLEMENTED";
    /// Version reports a runtime API version other than v1.
    VersionWrongApi = "version-wrong-api", areas ["runtime-info"],
        clause "cri:RuntimeService.Version#runtime_api_version";
    /// Status reports RuntimeReady false on a healthy runtime.
    StatusRuntimeNotReady = "status-runtime-not-ready", areas ["runtime-info"],
        clause "cri:RuntimeService.Status#status.conditions";
    /// Status's verbose info values are plain text, not JSON.
    StatusInfoNotJson = "status-info-not-json", areas ["runtime-info"],
        clause "cri:RuntimeService.Status#info";
    /// RuntimeConfig answers a cgroup driver other than the one crid uses.
    RuntimeConfigWrongDriver = "runtime-config-wrong-driver", areas ["runtime-info"],
        clause "cri:RuntimeService.RuntimeConfig#linux.cgroup_driver";
    /// RunPodSandbox without a config answers OK (and no pod) instead of refusing it.
    RunPodWithoutConfig = "run-pod-without-config", areas ["api-surface"],
        clause "cri:RuntimeService.RunPodSandbox#config";
    /// PullImage without an image answers OK (nothing pulled) instead of refusing it.
    PullWithoutImageOk = "pull-without-image-ok", areas ["api-surface"],
        clause "cri:ImageService.PullImage#image";
    /// StopPodSandbox of an unknown ID answers NotFound instead of OK.
    StopPodUnknownNotFound = "stop-pod-unknown-not-found", areas ["pod-sandbox"],
        clause "cri:RuntimeService.StopPodSandbox#idempotent";
    /// RemovePodSandbox of an unknown ID answers NotFound instead of OK.
    RemovePodUnknownNotFound = "remove-pod-unknown-not-found", areas ["pod-sandbox"],
        clause "cri:RuntimeService.RemovePodSandbox#idempotent";
    /// A stopped pod is still reported SANDBOX_READY.
    StoppedPodReady = "stopped-pod-ready", areas ["pod-sandbox"],
        clause "cri:RuntimeService.StopPodSandbox#state";
    /// StopPodSandbox leaves the pod's containers running.
    StopPodLeavesContainers = "stop-pod-leaves-containers", areas ["pod-sandbox"],
        clause "cri:RuntimeService.StopPodSandbox#containers";
    /// PodSandboxStatus drops the pod's annotations.
    PodStatusDropsAnnotations = "pod-status-drops-annotations", areas ["pod-sandbox"],
        clause "cri:RuntimeService.PodSandboxStatus#status.labels";
    /// ListPodSandbox ignores the label selector of its filter.
    PodListIgnoresLabels = "pod-list-ignores-labels", areas ["pod-sandbox"],
        clause "cri:RuntimeService.ListPodSandbox#filter.label_selector";
    /// ListPodSandbox ignores the state of its filter.
    PodListIgnoresState = "pod-list-ignores-state", areas ["pod-sandbox"],
        clause "cri:RuntimeService.ListPodSandbox#filter.state";
    /// ContainerStatus reports the exit code modulo 128 (a signal's 137 becomes 9).
    WrongExitCode = "wrong-exit-code", areas ["container"],
        clause "cri:RuntimeService.ContainerStatus#status.exit_code";
    /// ContainerStatus reports reason Completed whatever the exit code.
    ExitReasonCompleted = "exit-reason-completed", areas ["container"],
        clause "cri:RuntimeService.ContainerStatus#status.reason";
    /// ContainerStatus drops the container's mounts.
    StatusDropsMounts = "status-drops-mounts", areas ["container"],
        clause "cri:RuntimeService.ContainerStatus#status.mounts";
    /// The container's last environment variable is dropped from the OCI spec.
    DropEnvVar = "drop-env-var", areas ["container"],
        clause "oci-image:config.md#Env";
    /// The container's working_dir is ignored (the image's is used).
    IgnoreWorkingDir = "ignore-working-dir", areas ["container"],
        clause "cri:RuntimeService.CreateContainer#config.command";
    /// StopContainer sends SIGTERM whatever the configured or the image's stop signal.
    IgnoreStopSignal = "ignore-stop-signal", areas ["container"],
        clause "oci-image:config.md#StopSignal";
    /// StopContainer sends SIGKILL at once, ignoring its timeout.
    StopKillsAtOnce = "stop-kills-at-once", areas ["container"],
        clause "cri:RuntimeService.StopContainer#timeout";
    /// RemoveContainer of an unknown ID answers NotFound instead of OK.
    RemoveUnknownNotFound = "remove-unknown-not-found", areas ["container"],
        clause "cri:RuntimeService.RemoveContainer#idempotent";
    /// ListContainers ignores the label selector of its filter.
    ContainerListIgnoresLabels = "container-list-ignores-labels", areas ["container"],
        clause "cri:RuntimeService.ListContainers#filter.label_selector";
    /// ListContainers ignores the pod of its filter.
    ContainerListIgnoresPod = "container-list-ignores-pod", areas ["container"],
        clause "cri:RuntimeService.ListContainers#filter.pod_sandbox_id";
    /// A container asking for a terminal gets none.
    IgnoreTty = "ignore-tty", areas ["container"],
        clause "cri:RuntimeService.CreateContainer#config.tty";
    /// PullImage answers the tag it was given as image_ref, not the image's ID.
    ImageRefIsTag = "image-ref-is-tag", areas ["image"],
        clause "cri:ImageService.PullImage#image_ref";
    /// ImageStatus and ListImages report only an image's first tag.
    ImageOneTag = "image-one-tag", areas ["image"],
        clause "cri:ImageService.ImageStatus#image.repo_tags";
    /// ImageStatus drops the uid of the image's user.
    ImageStatusDropsUid = "image-status-drops-uid", areas ["image"],
        clause "cri:ImageService.ImageStatus#image.uid";
    /// ImageStatus of an absent image answers NotFound instead of an unset image.
    ImageStatusAbsentNotFound = "image-status-absent-not-found", areas ["image"],
        clause "cri:ImageService.ImageStatus#image";
    /// ImageFsInfo reports no image filesystem.
    ImageFsInfoEmpty = "image-fs-info-empty", areas ["image"],
        clause "cri:ImageService.ImageFsInfo#image_filesystems";
    /// ExecSync reports exit code 0 whatever the command's.
    ExecSyncExitZero = "exec-sync-exit-zero", areas ["exec"],
        clause "cri:RuntimeService.ExecSync#exit_code";
    /// ExecSync ignores its timeout.
    ExecSyncIgnoresTimeout = "exec-sync-ignores-timeout", areas ["exec", "kubelet-replay"],
        clause "cri:RuntimeService.ExecSync#timeout";
    /// ExecSync returns the command's stderr inside its stdout, and no stderr.
    ExecSyncMergesStderr = "exec-sync-merges-stderr", areas ["exec"],
        clause "cri:RuntimeService.ExecSync#stderr";
    /// A log line longer than the monitor's buffer is written as full lines (F), not as
    /// partial ones (P) and a last full one.
    LogNoPartialTag = "log-no-partial-tag", areas ["logs"],
        clause "cri:RuntimeService.CreateContainer#config.log_path";
    /// Every log record is tagged stdout, whichever stream it came from.
    LogStreamAlwaysStdout = "log-stream-always-stdout", areas ["logs"],
        clause "cri:RuntimeService.CreateContainer#config.log_path";
    /// ReopenContainerLog of an exited container answers OK.
    ReopenExitedOk = "reopen-exited-ok", areas ["logs"],
        clause "cri:RuntimeService.ReopenContainerLog#not-running";
    /// PodSandboxStatus reports no IP for a pod on the network.
    PodIpMissing = "pod-ip-missing", areas ["networking", "kubelet-replay"],
        clause "cri:RuntimeService.PodSandboxStatus#status.network.ip";
    /// The pod's resolv.conf lacks dns_config's search domains.
    DnsSearchesDropped = "dns-searches-dropped", areas ["networking"],
        clause "cri:RuntimeService.RunPodSandbox#config.dns_config";
    /// The pod's hostname is not set in its UTS namespace.
    HostnameIgnored = "hostname-ignored", areas ["networking"],
        clause "cri:RuntimeService.RunPodSandbox#config.hostname";
    /// readonly_rootfs is ignored: the root filesystem is writable.
    IgnoreReadonlyRootfs = "ignore-readonly-rootfs", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.readonly_rootfs";
    /// run_as_group is ignored: the process runs with the user's primary group.
    IgnoreRunAsGroup = "ignore-run-as-group", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.run_as_group";
    /// drop_capabilities is ignored.
    IgnoreCapDrop = "ignore-cap-drop", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.capabilities.drop_capabilities";
    /// no_new_privs is ignored.
    IgnoreNoNewPrivs = "ignore-no-new-privs", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.no_new_privs";
    /// masked_paths are not masked.
    IgnoreMaskedPaths = "ignore-masked-paths", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.masked_paths";
    /// The RuntimeDefault seccomp profile is treated as Unconfined.
    SeccompDefaultUnconfined = "seccomp-default-unconfined", areas ["security-context"],
        clause "cri:RuntimeService.CreateContainer#config.linux.security_context.seccomp";
    /// The pod's namespaced sysctls are not set.
    SysctlsDropped = "sysctls-dropped", areas ["security-context"],
        clause "cri:RuntimeService.RunPodSandbox#config.linux.sysctls";
    /// memory_limit_in_bytes does not reach the container's cgroup.
    MemoryLimitDropped = "memory-limit-dropped", areas ["resources"],
        clause "cri:RuntimeService.CreateContainer#config.linux.resources.memory_limit_in_bytes";
    /// cpu_quota does not reach the container's cgroup.
    CpuQuotaDropped = "cpu-quota-dropped", areas ["resources"],
        clause "cri:RuntimeService.CreateContainer#config.linux.resources.cpu_quota";
    /// UpdateContainerResources answers OK without updating the container's cgroup.
    UpdateResourcesNotApplied = "update-resources-not-applied", areas ["resources"],
        clause "cri:RuntimeService.UpdateContainerResources#linux";
    /// UpdateContainerResources records a new oom_score_adj without applying it.
    UpdateOomScoreAdjIgnored = "update-oom-score-adj-ignored", areas ["resources"],
        clause "cri:RuntimeService.UpdateContainerResources#linux.oom_score_adj";
    /// cgroup v2 `unified` keys on a cgroup v1 host are dropped instead of refused.
    UnifiedOnV1Dropped = "unified-on-v1-dropped", areas ["resources"],
        clause "cri:RuntimeService.CreateContainer#config.linux.resources.unified";
    /// `cpuset_mems` is not checked against the host's memory nodes (the runtime fails late).
    CpusetMemsUnchecked = "cpuset-mems-unchecked", areas ["resources"],
        clause "cri:RuntimeService.CreateContainer#config.linux.resources.cpuset_mems";
    /// CreateContainer resolves its CDI devices but applies none of their edits.
    CdiEditsIgnored = "cdi-edits-ignored", areas ["container"],
        clause "cri:RuntimeService.CreateContainer#config.CDI_devices";
    /// ContainerStats reports no memory usage.
    StatsMemoryMissing = "stats-memory-missing", areas ["stats"],
        clause "cri:RuntimeService.ContainerStats#stats.memory";
    /// ListContainerStats ignores the ID of its filter.
    StatsFilterIgnored = "stats-filter-ignored", areas ["stats"],
        clause "cri:RuntimeService.ListContainerStats#filter.id";
    /// ContainerStats reports no writable layer usage.
    StatsWritableLayerMissing = "stats-writable-layer-missing", areas ["stats"],
        clause "cri:RuntimeService.ContainerStats#stats.writable_layer";
    /// PodSandboxStats reports no Linux stats.
    PodStatsMissing = "pod-stats-missing", areas ["stats"],
        clause "cri:RuntimeService.PodSandboxStats#stats.linux";
    /// GetContainerEvents sends a container's started event before its created event.
    EventsMisordered = "events-misordered", areas ["events"],
        clause "cri:RuntimeService.GetContainerEvents#container_event_type";
    /// GetContainerEvents sends no deleted event.
    EventsNoDeleted = "events-no-deleted", areas ["events"],
        clause "cri:RuntimeService.GetContainerEvents#container_event_type";
    /// RemoveContainer forgets the container on disk but not in memory: ContainerStatus
    /// still answers its last status, not NotFound.
    RemoveKeepsRecord = "remove-keeps-record", areas ["kubelet-replay"],
        clause "cri:RuntimeService.ContainerStatus#not-found-after-remove";
    /// A CreateContainer refused for an unknown field answers Unknown instead of
    /// InvalidArgument.
    RefusalNotInvalidArgument = "refusal-not-invalid-argument", areas ["kubelet-replay"],
        clause "cri:RuntimeService.CreateContainer#invalid-argument";
    /// RemoveContainer leaves the container's root filesystem mounted.
    LeakRootfsMount = "leak-rootfs-mount", areas ["kubelet-replay"],
        clause "cri:RuntimeService.RemoveContainer#idempotent";
    /// UpdatePodSandboxResources answers OK without recording the pod's new resources.
    /// api.proto: it "synchronously updates the PodSandboxConfig"; the kubelet's NRI
    /// plugins and VM runtimes read the recorded values.
    PodResourcesUpdateIgnored = "pod-resources-update-ignored", areas ["pod-sandbox"],
        clause "cri:RuntimeService.UpdatePodSandboxResources#resources";
    /// The pod's sandbox process runs with RuntimeDefault seccomp whatever the pod asks.
    /// cri:LinuxSandboxSecurityContext#seccomp is the sandbox process's own profile.
    PodSeccompIgnored = "pod-seccomp-ignored", areas ["security-context"],
        clause "cri:RuntimeService.RunPodSandbox#config.linux.security_context.seccomp";
}

impl Fault {
    /// The fault called `name`, if any.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// `--fault` named no fault of this build.
#[derive(Debug, thiserror::Error)]
#[error("unknown fault {name:?}; faults: {}", Fault::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownFault {
    /// What was asked for.
    pub name: String,
}

#[cfg(feature = "faults")]
static ACTIVE: std::sync::OnceLock<Fault> = std::sync::OnceLock::new();

/// Selects the fault of this process, once, at start: a name this build does not know is
/// refused. A second call keeps the first selection.
#[cfg(feature = "faults")]
pub fn select(name: &str) -> Result<Fault, UnknownFault> {
    let f = Fault::from_name(name).ok_or_else(|| UnknownFault {
        name: name.to_owned(),
    })?;
    Ok(*ACTIVE.get_or_init(|| f))
}

/// The selected fault, to hand to child processes through [`ENV`].
#[cfg(feature = "faults")]
pub fn active() -> Option<Fault> {
    ACTIVE.get().copied()
}

/// Without the feature there is never a fault to hand on.
#[cfg(not(feature = "faults"))]
pub fn active() -> Option<Fault> {
    None
}

/// Whether fault `f` is the selected one.
#[cfg(feature = "faults")]
#[inline]
pub fn on(f: Fault) -> bool {
    ACTIVE.get() == Some(&f)
}

/// Without the feature no fault is ever on, and the hooks compile away.
#[cfg(not(feature = "faults"))]
#[inline(always)]
pub const fn on(_f: Fault) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The recorded results of the last mutation run, as `crid-conformance mutate` writes
    /// them.
    const RESULTS: &str = include_str!("../conformance/traceability/mutation.toml");

    #[derive(serde::Deserialize)]
    struct Results {
        fault: Vec<Recorded>,
    }

    #[derive(serde::Deserialize)]
    struct Recorded {
        name: String,
        clause: String,
        caught_by: Vec<String>,
    }

    #[test]
    fn names_are_unique_kebab_case_and_round_trip() {
        let mut seen = BTreeSet::new();
        for f in Fault::ALL {
            let n = f.name();
            assert!(seen.insert(n), "{n} twice");
            assert!(
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n} is not kebab-case"
            );
            assert_eq!(Fault::from_name(n), Some(*f));
            assert!(!f.summary().is_empty() && !f.areas().is_empty(), "{n}");
            assert!(
                ["cri:", "oci-", "grpc:"]
                    .iter()
                    .any(|p| f.clause().starts_with(p)),
                "{n}: {}",
                f.clause()
            );
        }
        assert_eq!(Fault::from_name("no-such-fault"), None);
        assert!(
            Fault::ALL.len() >= 40,
            "the issue asks for at least 40 faults"
        );
    }

    #[test]
    fn every_fault_has_a_recorded_result_that_caught_it() {
        let results: Results = toml::from_str(RESULTS).expect("mutation.toml parses");
        let recorded: BTreeMap<&str, &Recorded> =
            results.fault.iter().map(|r| (r.name.as_str(), r)).collect();
        assert_eq!(
            recorded.len(),
            results.fault.len(),
            "a fault recorded twice"
        );
        for f in Fault::ALL {
            let r = recorded.get(f.name()).unwrap_or_else(|| {
                panic!(
                    "fault {} has no recorded result: run `crid-conformance mutate` (README)",
                    f.name()
                )
            });
            assert_eq!(
                r.clause,
                f.clause(),
                "{}: clause changed since the run",
                f.name()
            );
            assert!(
                !r.caught_by.is_empty(),
                "fault {} was caught by no case: strengthen the harness",
                f.name()
            );
        }
        for name in recorded.keys() {
            assert!(
                Fault::from_name(name).is_some(),
                "mutation.toml records {name}, which is no fault any more"
            );
        }
    }
}

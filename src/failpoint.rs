//! Crash points for the crash sweep (`tests/crash_sweep.rs`): named places in every step
//! that persists state or touches the host, where a test build of crid kills itself with
//! SIGKILL so that recovery is tested from exactly there.
//!
//! [`failpoint!`] expands to nothing unless the crate is built with the `failpoints`
//! feature, so a release build carries neither the check nor the names. A failpoint build
//! reads two variables once, at the first point it reaches:
//! - `CRID_FAILPOINT=NAME` or `NAME@N`: SIGKILL at the N-th time (default 1) `NAME` is reached;
//! - `CRID_FAILPOINT_LOG=PATH`: append every point reached to `PATH`, one name a line (how
//!   the sweep learns which points a workload passes and how often).
//!
//! Every name used in the source is listed in [`POINTS`]; a unit test holds the two equal.

/// Marks a crash point. A no-op unless crid is built with the `failpoints` feature.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::reached($name);
    };
}

/// Every crash point, grouped by the operation it interrupts. A point sits right after the
/// step it names has taken effect, so the crash leaves that step done and the next undone.
pub const POINTS: &[&str] = &[
    // PullImage
    "pull.layer-staged",
    "pull.layer-unpacked",
    "pull.blob-written",
    "pull.image-recorded",
    // RemoveImage
    "remove-image.unrecorded",
    "remove-image.layer-renamed",
    "remove-image.layer-removed",
    // RunPodSandbox
    "run-pod.recorded",
    "run-pod.shm-mounted",
    "run-pod.namespaces-pinned",
    "run-pod.cni-added",
    "run-pod.infra-rootfs-mounted",
    "run-pod.infra-created",
    "run-pod.infra-started",
    "run-pod.ready",
    // CreateContainer
    "create.recorded",
    "create.rootfs-mounted",
    "create.log-created",
    "create.runtime-created",
    "create.created",
    // StartContainer
    "start.runtime-started",
    "start.running",
    // StopContainer (and the stops of StopPodSandbox and RemovePodSandbox)
    "stop.signalled",
    "stop.exited",
    // Removal of a container's resources (RemoveContainer, RemovePodSandbox, rollbacks)
    "remove.runtime-deleted",
    "remove.rootfs-unmounted",
    "remove.unrecorded",
    // StopPodSandbox and RemovePodSandbox
    "release.infra-removed",
    "release.cni-deleted",
    "release.namespaces-unpinned",
    "stop-pod.not-ready",
    "remove-pod.dir-removed",
    "remove-pod.unrecorded",
    // Recovery at start
    "recover.pod-released",
    "recover.container-removed",
    "recover.stray-removed",
];

#[cfg(feature = "failpoints")]
mod armed {
    use std::io::Write;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Armed {
        name: Option<(String, u32)>,
        log: Option<std::path::PathBuf>,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);

    fn armed() -> &'static Armed {
        ARMED.get_or_init(|| {
            let name = std::env::var("CRID_FAILPOINT")
                .ok()
                .map(|v| match v.split_once('@') {
                    Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                    None => (v, 1),
                });
            if let Some((n, _)) = &name {
                assert!(
                    super::POINTS.contains(&n.as_str()),
                    "CRID_FAILPOINT names no crash point: {n}"
                );
            }
            Armed {
                name,
                log: std::env::var_os("CRID_FAILPOINT_LOG").map(Into::into),
            }
        })
    }

    /// Logs `name` and kills the process if it is the armed point's N-th arrival.
    pub fn reached(name: &'static str) {
        let a = armed();
        if let Some(path) = &a.log {
            // One write of a whole line with O_APPEND: lines from threads do not interleave.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(format!("{name}\n").as_bytes());
            }
        }
        if let Some((armed, n)) = &a.name
            && armed == name
            && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
        {
            // SIGKILL, as the OOM killer or a node's power does it: no destructor, no flush.
            // SAFETY: kill(2) on our own PID has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            loop {
                std::thread::park();
            }
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::reached;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every `failpoint!("...")` of the source, by name.
    fn used() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read src").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("failpoint.rs") {
                    let text = std::fs::read_to_string(&p).expect("read source");
                    for part in text.split("failpoint!(\"").skip(1) {
                        if let Some((name, _)) = part.split_once('"') {
                            out.insert(name.to_owned());
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_point_in_the_source_is_listed_once_and_every_listed_point_is_used() {
        let listed: BTreeSet<String> = super::POINTS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(listed.len(), super::POINTS.len(), "a point is listed twice");
        assert_eq!(used(), listed);
    }
}

//! OOM kills in the container's memory cgroup, as the monitor records them in the exit file.
//!
//! cgroup v1 keeps `memory.oom_control` until the runtime deletes the container, so reading
//! it when the init exits is enough. cgroup v2 under the systemd driver is different: the
//! container's scope unit, and with it the cgroup and its `memory.events`, is gone moments
//! after the last process dies (45 ms after the kill in the VM fixture's guest), often
//! before the monitor has reaped the init. So on v2 the monitor watches `memory.events`
//! while the container runs (the kernel reports every change of it to inotify) and, when the
//! cgroup is already gone at the exit of an init that died of SIGKILL, reads its parent's
//! counter, which is hierarchical on v2.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// The `oom_kill` counter of a cgroup v2 `memory.events` or v1 `memory.oom_control` file.
pub fn oom_kills(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        l.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse::<u64>().ok())
    })
}

/// Whether the memory cgroup counted an OOM kill: `oom_kill N` in cgroup v2's
/// `memory.events` or cgroup v1's `memory.oom_control`.
pub fn oom_killed(cgroup: &Path) -> bool {
    ["memory.events", "memory.oom_control"]
        .iter()
        .any(|f| oom_kills(&cgroup.join(f)).is_some_and(|n| n > 0))
}

/// A cgroup v2 memory controller watched while the container runs.
pub struct OomWatch {
    inotify: Inotify,
    /// The cgroup's `memory.events`.
    events: PathBuf,
    /// The parent's `memory.events` and its `oom_kill` when the watch started.
    parent: Option<(PathBuf, u64)>,
    /// An OOM kill was counted while the cgroup could still be read.
    seen: bool,
}

impl OomWatch {
    /// Starts watching `cgroup`; `None` where it has no `memory.events` (cgroup v1, whose
    /// counter outlives the container) or inotify refuses.
    pub fn start(cgroup: &Path) -> Option<Self> {
        let events = cgroup.join("memory.events");
        if !events.is_file() {
            return None;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        inotify.add_watch(&events, AddWatchFlags::IN_MODIFY).ok()?;
        let parent = cgroup
            .parent()
            .map(|p| p.join("memory.events"))
            .and_then(|p| oom_kills(&p).map(|n| (p, n)));
        let mut watch = OomWatch {
            inotify,
            events,
            parent,
            seen: false,
        };
        // A kill between the runtime's create and the watch.
        watch.update();
        Some(watch)
    }

    /// The descriptor to poll: readable when `memory.events` changed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Drains the notifications and reads the counter again.
    pub fn update(&mut self) {
        while self.inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
        if oom_kills(&self.events).is_some_and(|n| n > 0) {
            self.seen = true;
        }
    }

    /// At the init's exit: whether the kernel OOM-killed in the cgroup. `sigkill`: the init
    /// died of SIGKILL, which is what an OOM kill sends.
    pub fn oom_killed(&mut self, sigkill: bool) -> bool {
        self.update();
        if self.seen {
            return true;
        }
        // The cgroup went before its counter could be read: the parent's counts the kills
        // of every child. A sibling's kill in the meantime could be taken for this one's,
        // but only for an init that died of SIGKILL with its cgroup already removed.
        sigkill
            && !self.events.exists()
            && self
                .parent
                .as_ref()
                .is_some_and(|(p, before)| oom_kills(p).is_some_and(|now| now > *before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counters_are_read_for_both_cgroup_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!oom_killed(dir.path()));
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .expect("write");
        assert!(!oom_killed(dir.path()));
        std::fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("write");
        assert!(oom_killed(dir.path()));
    }

    /// The watch over ordinary files standing in for the cgroup's: a kill counted while the
    /// cgroup exists is kept after it is gone; a cgroup gone before its kill was read falls
    /// back to the parent's counter, but only for an init killed by SIGKILL.
    #[test]
    fn a_kill_is_remembered_and_a_vanished_cgroup_reads_its_parent() {
        let parent = tempfile::tempdir().expect("tempdir");
        let events = |dir: &Path, n: u64| {
            std::fs::write(
                dir.join("memory.events"),
                format!("low 0\nhigh 0\nmax 0\noom 0\noom_kill {n}\n"),
            )
            .expect("write")
        };
        events(parent.path(), 2);
        let cgroup = parent.path().join("crid-1.scope");
        std::fs::create_dir(&cgroup).expect("mkdir");
        events(&cgroup, 0);

        let mut watch = OomWatch::start(&cgroup).expect("watch");
        events(&cgroup, 1);
        watch.update();
        std::fs::remove_dir_all(&cgroup).expect("rm");
        assert!(watch.oom_killed(true));

        std::fs::create_dir(&cgroup).expect("mkdir");
        events(&cgroup, 0);
        let mut watch = OomWatch::start(&cgroup).expect("watch");
        std::fs::remove_dir_all(&cgroup).expect("rm");
        assert!(!watch.oom_killed(true), "the parent's counter did not move");
        events(parent.path(), 3);
        assert!(!watch.oom_killed(false), "not killed by SIGKILL");
        assert!(watch.oom_killed(true));

        assert!(OomWatch::start(&parent.path().join("absent")).is_none());
    }
}

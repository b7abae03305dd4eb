//! The daemon's side of exit files: learn about container exits as they happen.
//!
//! crid-monitor writes `<exit dir>/<container id>` atomically: a temp file whose name starts
//! with `.`, then a rename (see [`super::exit::write`]). inotify reports the rename
//! (`IN_MOVED_TO`); a file written in place is reported when closed (`IN_CLOSE_WRITE`). The
//! monitor's write produces both (it closes the file after the rename), so a name is reported
//! once until its file is deleted. There is no periodic polling. Exit files written before
//! the watch started are not reported: scan the directory once after calling [`watch_exits`].

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// Watches `dir` and sends the container ID (the file name) of each exit file that appears,
/// once until that file is deleted. Temp files (names starting with `.`) are ignored. When
/// inotify's queue overflows, every exit file present is sent again, so receivers must be
/// idempotent. The watch ends when the receiver is dropped or the directory is removed.
/// Needs a tokio runtime.
pub fn watch_exits(dir: &Path) -> io::Result<mpsc::UnboundedReceiver<String>> {
    let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(
        dir,
        AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ONLYDIR,
    )?;
    // SAFETY: `Watch` owns the inotify descriptor and always returns that one, open until
    // the AsyncFd (which owns the Watch) is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(Watch(inotify), Interest::READABLE) }?;
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = dir.to_path_buf();
    handle.spawn(async move {
        tokio::select! {
            () = tx.closed() => {}
            r = pump(&fd, &dir, &tx) => {
                if let Err(e) = r {
                    tracing::warn!(dir = %dir.display(), "exit file watch ended: {e}");
                }
            }
        }
    });
    Ok(rx)
}

/// `Inotify` as the raw descriptor `AsyncFd` wants.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

async fn pump(
    fd: &AsyncFd<Watch>,
    dir: &Path,
    tx: &mpsc::UnboundedSender<String>,
) -> io::Result<()> {
    // Names reported and not deleted since.
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let mut ready = fd.readable().await?;
        let events = match ready.get_inner().0.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => {
                ready.clear_ready();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                for id in present(dir)? {
                    seen.insert(id.clone());
                    let _ = tx.send(id);
                }
            }
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                // The directory is gone: nothing more can appear.
                return Ok(());
            }
            let Some(id) = event.name.as_deref().and_then(exit_id) else {
                continue;
            };
            if event
                .mask
                .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
            {
                seen.remove(&id);
            } else if seen.insert(id.clone()) && tx.send(id).is_err() {
                return Ok(());
            }
        }
    }
}

/// The container ID an exit file's name stands for; `None` for temp files.
fn exit_id(name: &OsStr) -> Option<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes[0] == b'.' {
        return None;
    }
    name.to_str().map(str::to_owned)
}

fn present(dir: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| exit_id(&e.file_name()))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The exit file of `id` in `dir`, as [`watch_exits`] expects it to be named.
pub fn exit_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::monitor::exit::{self, ExitRecord};

    async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn atomic_exit_files_are_reported_once_and_temp_files_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rx = watch_exits(dir.path()).expect("watch");
        let record = ExitRecord {
            exit_code: 0,
            exited_at_ns: 1,
            oom_killed: false,
        };
        exit::write(&exit_file(dir.path(), "c1"), &record).expect("write");
        assert_eq!(next(&mut rx).await.as_deref(), Some("c1"));
        // A file written in place is reported on close.
        std::fs::write(dir.path().join("c2"), "{}").expect("write");
        assert_eq!(next(&mut rx).await.as_deref(), Some("c2"));
        // Temp files alone produce nothing.
        std::fs::write(dir.path().join(".tmpXYZ"), "{}").expect("write");
        // Nor does a name already reported, until it is deleted.
        std::fs::write(dir.path().join("c2"), "{}").expect("rewrite");
        assert_eq!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .ok(),
            None
        );
        std::fs::remove_file(dir.path().join("c1")).expect("rm");
        exit::write(&exit_file(dir.path(), "c1"), &record).expect("write");
        assert_eq!(next(&mut rx).await.as_deref(), Some("c1"));
    }

    #[tokio::test]
    async fn the_watch_ends_with_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exits");
        std::fs::create_dir(&path).expect("mkdir");
        let mut rx = watch_exits(&path).expect("watch");
        std::fs::remove_dir(&path).expect("rmdir");
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("ends"),
            None
        );
    }

    #[test]
    fn names_map_to_ids() {
        assert_eq!(exit_id(OsStr::new("abc")).as_deref(), Some("abc"));
        assert_eq!(exit_id(OsStr::new(".tmp123")), None);
        assert_eq!(exit_id(OsStr::new("")), None);
        assert!(watch_exits(Path::new("/")).is_err(), "no runtime, no watch");
    }
}

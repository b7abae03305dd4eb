//! Thin, safe wrappers over the `*at` system calls the unpacker needs. Every call takes a
//! directory descriptor and a single name, so nothing here resolves a multi-component path.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

pub(super) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

pub(super) fn open_path(dirfd: RawFd, path: &OsStr, extra: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid C string; the returned descriptor is owned below.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | extra,
        )
    })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat2(2): opens `name` relative to `dir` with `flags`, resolved under `resolve`.
pub(super) fn openat2(
    dir: RawFd,
    name: &OsStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstr(name)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: openat2 with a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens the directory `name` directly below `dir`, refusing symlinks and escapes.
pub(super) fn open_beneath(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    openat2(
        dir.as_raw_fd(),
        name,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

pub(super) fn mkdir(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), p.as_ptr(), mode) }).map(drop)
}

pub(super) fn is_dir_at(dir: &OwnedFd, name: &OsStr) -> bool {
    lstat_at(dir, name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

pub(super) fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<libc::stat> {
    let p = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is written by fstatat on success.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            p.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded.
    Ok(unsafe { st.assume_init() })
}

pub(super) fn create_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let p = cstr(name)?;
    // SAFETY: valid descriptor and C string; the descriptor is owned by the File.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            p.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    })?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Opens `name` in `dir` for appending, creating it with `mode`; a symlink or a FIFO there
/// is refused rather than followed or waited on.
pub(super) fn open_append(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<File> {
    let p = cstr(name)?;
    // SAFETY: valid descriptor and C string; the descriptor is owned by the File.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            p.as_ptr(),
            libc::O_WRONLY
                | libc::O_APPEND
                | libc::O_CREAT
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(super) fn symlink(dir: &OwnedFd, name: &OsStr, target: &[u8]) -> io::Result<()> {
    let p = cstr(name)?;
    let t = CString::new(target)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in symlink target"))?;
    // SAFETY: valid descriptor and C strings.
    cvt(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), p.as_ptr()) }).map(drop)
}

pub(super) fn link(
    from_dir: &OwnedFd,
    from: &OsStr,
    dir: &OwnedFd,
    name: &OsStr,
) -> io::Result<()> {
    let f = cstr(from)?;
    let p = cstr(name)?;
    // SAFETY: valid descriptors and C strings; flags 0: a symlink target is linked itself.
    cvt(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            p.as_ptr(),
            0,
        )
    })
    .map(drop)
}

pub(super) fn mknod(
    dir: &OwnedFd,
    name: &OsStr,
    fmt: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), p.as_ptr(), fmt | 0o600, dev) }).map(drop)
}

pub(super) fn chmod_at(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid descriptor and C string. The entry is not a symlink (devices only).
    cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), p.as_ptr(), mode, 0) }).map(drop)
}

/// `/proc/self/fd/<dir>[/<name>]`: reaches an entry by descriptor without re-resolving the
/// layer path; the final component is not followed.
pub(super) fn fd_path(dir: &OwnedFd, name: Option<&OsStr>) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        p.push(b'/');
        p.extend_from_slice(n.as_bytes());
    }
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

pub(super) fn set_xattr_on_fd_path(
    dir: &OwnedFd,
    name: Option<&OsStr>,
    key: &str,
    value: &[u8],
) -> io::Result<()> {
    let p = fd_path(dir, name)?;
    let k = CString::new(key)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in xattr"))?;
    // SAFETY: valid C strings and buffer. With no name the magic link itself must be
    // followed to reach the directory (setxattr); with a name, lsetxattr keeps a symlink entry.
    let r = unsafe {
        if name.is_none() {
            libc::setxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        } else {
            libc::lsetxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    };
    cvt(r).map(drop)
}

pub(super) fn set_times_fd(fd: &OwnedFd, mtime: i64) -> io::Result<()> {
    let p = fd_path(fd, None)?;
    let ts = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and timespec array; the magic link is followed to the directory.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) }).map(drop)
}

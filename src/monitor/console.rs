//! A container with a terminal (cri:ContainerConfig#tty, oci-runtime:config.md#process
//! `terminal`): the runtime creates the pty and sends its master over `--console-socket`
//! (an `SCM_RIGHTS` message); the monitor then logs what the master reads as stdout.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Whether the bundle's `config.json` asks for a terminal.
pub fn wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v["process"]["terminal"] == serde_json::Value::Bool(true))
}

/// The listening console socket; removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at `path` (a stale socket there is replaced).
    pub fn bind(path: &Path) -> io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the runtime (`child`) to send the pty master. `None` when the runtime
    /// exits without sending one (its create failed) or `limit` passes.
    pub fn receive(&self, child: &mut Child, limit: Duration) -> io::Result<Option<OwnedFd>> {
        let deadline = Instant::now() + limit;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return recv_fd(&stream).map(Some),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receives one file descriptor sent with `SCM_RIGHTS` (the message body, the pty's name,
/// is ignored).
fn recv_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zero is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at buffers that live across the call, with their sizes.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CMSG_* walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            if fd >= 0 {
                return Ok(OwnedFd::from_raw_fd(fd));
            }
        }
    }
    Err(io::Error::other(
        "the console socket message carried no file descriptor",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_is_read_from_the_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!wants_terminal(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"terminal":true}}"#,
        )
        .expect("w");
        assert!(wants_terminal(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"terminal":false}}"#,
        )
        .expect("w");
        assert!(!wants_terminal(dir.path()));
    }

    #[test]
    fn a_descriptor_crosses_the_socket() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair().expect("pair");
        let (mut r, mut w) = UnixStream::pair().expect("payload");
        // Send `w` over `a` the way runc does.
        let fds = [w.as_raw_fd()];
        let mut iov = [libc::iovec {
            iov_base: b"pty".as_ptr() as *mut _,
            iov_len: 3,
        }];
        let mut control = [0u64; 8];
        // SAFETY: a test building an SCM_RIGHTS message in local buffers.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen =
                libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fds[0]);
            assert!(libc::sendmsg(a.as_raw_fd(), &msg, 0) >= 0);
        }
        let got = recv_fd(&b).expect("fd");
        let mut sent = std::fs::File::from(got);
        sent.write_all(b"through").expect("write");
        drop(sent);
        w.flush().expect("flush");
        drop(w);
        let mut buf = [0u8; 7];
        r.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"through");
    }
}

//! Unix-domain socket plumbing for the cross-process parts of the emulated backend (Linux):
//! abstract addresses, the peer's credentials (`SO_PEERCRED`), and descriptors passed with
//! `SCM_RIGHTS`. Every call is non-blocking or bounded by a deadline: a peer that stops
//! answering costs at most the caller's deadline, never a hang.
//!
//! Abstract addresses (a name starting with a NUL byte) have no file and no permissions:
//! any local user can bind, connect to or send to one. Nothing here trusts a name: callers
//! check who is at the other end (`peer_cred`) or, for datagrams, make the receiving socket
//! accept only one sender (a connected datagram socket).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Instant;

use crate::os::{cvt, poll_fds};

/// The longest abstract name (`sun_path` less the leading NUL).
pub(super) const NAME_MAX: usize = 107;

/// This process's real user id (read once: rings name their bell with it).
pub(super) fn uid() -> u32 {
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    // SAFETY: getuid has no preconditions and cannot fail.
    *UID.get_or_init(|| unsafe { libc::getuid() })
}

/// The address of abstract name `name` (without the leading NUL; at most [`NAME_MAX`]).
pub(super) fn sockaddr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    if name.len() > NAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket name too long",
        ));
    }
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] = 0: the abstract namespace.
    for (d, s) in sa.sun_path[1..].iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    Ok((sa, len as libc::socklen_t))
}

/// A new non-blocking, close-on-exec Unix socket of type `ty`.
pub(super) fn socket(ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory preconditions; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds `fd` to abstract `name`; `None` asks the kernel for a fresh unique name (autobind).
pub(super) fn bind(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> io::Result<()> {
    let (sa, len) = match name {
        Some(n) => sockaddr(n)?,
        None => {
            let (sa, _) = sockaddr(b"")?;
            (
                sa,
                std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
            )
        }
    };
    // SAFETY: sa is a live sockaddr_un of at least `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(())
}

/// Connects `fd` to abstract `name` (for a non-blocking stream socket this completes at once
/// or fails: `ECONNREFUSED` when nothing listens there, `EAGAIN` when its queue is full).
pub(super) fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (sa, len) = sockaddr(name)?;
    // SAFETY: sa is a live sockaddr_un of at least `len` bytes.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(())
}

pub(super) fn listen(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: listen(2) on a descriptor we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
    Ok(())
}

/// Takes one pending connection, if any (non-blocking, close-on-exec).
pub(super) fn accept(fd: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    // SAFETY: accept4 with null address pointers; the result is checked.
    let r = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    match cvt(r) {
        // SAFETY: a fresh descriptor owned by nobody else.
        Ok(c) => Ok(Some(unsafe { OwnedFd::from_raw_fd(c) })),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The abstract name `fd` is bound to (without the leading NUL); empty when unbound or
/// bound to a path.
pub(super) fn name_of(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: sa is a live sockaddr_un and len its size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_un).cast(),
            &mut len,
        )
    })?;
    let n = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
    let path = &sa.sun_path[..n.min(sa.sun_path.len())];
    if path.first() != Some(&0) {
        return Ok(Vec::new());
    }
    Ok(path[1..].iter().map(|c| *c as u8).collect())
}

fn int_opt(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v is a live c_int and len its size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Whether `fd` is a Unix socket of type `ty` (listening, when `listening`).
pub(super) fn is_socket(fd: BorrowedFd<'_>, ty: libc::c_int, listening: bool) -> bool {
    int_opt(fd, libc::SO_DOMAIN).ok() == Some(libc::AF_UNIX)
        && int_opt(fd, libc::SO_TYPE).ok() == Some(ty)
        && (!listening || int_opt(fd, libc::SO_ACCEPTCONN).ok() == Some(1))
}

/// The user id and process id of the other end of connected socket `fd`, as the kernel
/// recorded them when the connection was made.
pub(super) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(u32, i32)> {
    // SAFETY: an all-zero ucred is a valid value of this plain C struct.
    let mut c: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: c is a live ucred and len its size.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((c.uid, c.pid))
}

/// Most descriptors one message carries here.
const MAX_FDS: usize = 4;

/// Sends `data` and descriptors `fds` (at most four) in one message, without blocking.
pub(super) fn send_fds(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let bytes = std::mem::size_of_val(fds);
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes as u32) } as _;
        assert!(msg.msg_controllen as usize <= std::mem::size_of_val(&cbuf));
        // SAFETY: the control buffer is live, 8-aligned and large enough for one header and
        // `fds.len()` descriptors (asserted above).
        unsafe {
            let h = libc::CMSG_FIRSTHDR(&msg);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            let p = libc::CMSG_DATA(h).cast::<libc::c_int>();
            for (k, f) in fds.iter().enumerate() {
                p.add(k).write_unaligned(f.as_raw_fd());
            }
        }
    }
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = cvt(unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    })?;
    if n as usize != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Receives one message into `buf` with the descriptors it carries, waiting until
/// `deadline` at most. Returns the bytes read (0: the other end closed) and the descriptors
/// (owned: closed when dropped, also when the caller rejects them).
pub(super) fn recv_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        poll_fds(&[(fd, libc::POLLIN)], Some(left))?;
        let mut cbuf = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: msg points at live buffers of the sizes it states.
        let r = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        let n = match cvt(r) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut fds = Vec::new();
        // SAFETY: walking the control messages the kernel wrote into cbuf; each header
        // returned lies inside it.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            // SAFETY: c points at a complete header inside cbuf (see above).
            let h = unsafe { &*c };
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN is a size computation.
                let data = h.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
                // SAFETY: the header's data holds `data / 4` descriptors, inside cbuf.
                let p = unsafe { libc::CMSG_DATA(c) }.cast::<libc::c_int>();
                for k in 0..data / std::mem::size_of::<libc::c_int>() {
                    // SAFETY: in bounds (see above); each descriptor is new in this process
                    // and owned by nobody else.
                    fds.push(unsafe { OwnedFd::from_raw_fd(p.add(k).read_unaligned()) });
                }
            }
            // SAFETY: as above.
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more descriptors than expected",
            ));
        }
        return Ok((n, fds));
    }
}

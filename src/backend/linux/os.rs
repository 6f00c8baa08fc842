//! Thin wrappers over the socket, ioctl and mmap calls the Linux backends make. This is where
//! the `unsafe` of passing typed structs by pointer to the kernel lives; every caller above it
//! is safe code.

use crate::os::cvt;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Marker for plain-old-data structs the kernel may fill byte by byte: every bit pattern is a
/// valid value and there are no pointers or references inside.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers and arrays of integers.
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: all are repr(C) structs of integer fields.
unsafe impl Pod for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Pod for libc::xdp_statistics {}
// SAFETY: as above.
unsafe impl Pod for super::sys::TpacketStats {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for libc::c_int {}

/// `socket(2)`, close-on-exec.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    cvt(fd)?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` with a typed value, passing `size_of::<T>()` bytes.
pub(crate) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    setsockopt_len(fd, level, name, value, size_of::<T>())
}

/// `setsockopt(2)` passing the first `len` bytes of `value` (`len <= size_of::<T>()`).
pub(crate) fn setsockopt_len<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    len: usize,
) -> io::Result<()> {
    assert!(len <= size_of::<T>());
    // SAFETY: `value` is a live reference to at least `len` readable bytes; the kernel only
    // reads from it during the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            len as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// `getsockopt(2)` into a zeroed `T`; returns it and the length the kernel wrote.
pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the buffer is `len` writable bytes; the kernel writes at most `len` of them.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    cvt(r)?;
    // SAFETY: T is Pod, so the zeroed-then-partly-written bytes are a valid T.
    Ok((unsafe { value.assume_init() }, len as usize))
}

/// `bind(2)` with a typed socket address.
pub(crate) fn bind<T: Copy>(fd: BorrowedFd<'_>, addr: &T) -> io::Result<()> {
    // SAFETY: `addr` is a live reference of size_of::<T>() bytes, read during the call only.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`: the TX kick of AF_XDP and AF_PACKET rings.
pub(crate) fn kick(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a null buffer of length 0 and a null address are valid arguments.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    cvt(r).map(drop)
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`: the RX wakeup of AF_XDP.
pub(crate) fn wake_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a null buffer of length 0 and null address pointers are valid arguments.
    let r = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    cvt(r).map(drop)
}

/// `poll(2)` on one descriptor; returns the revents (0 on timeout).
#[cfg(test)]
pub(crate) fn poll_one(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r >= 0 {
            return Ok(p.revents);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `send(2)` of a whole buffer.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable slice for the duration of the call.
    let r = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
    cvt(r).map(|n| n as usize)
}

/// `recv(2)` into a buffer; returns the length received.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable slice for the duration of the call.
        let r = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The system's page size (4096 when `sysconf` cannot tell).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// An epoll instance (close-on-exec) watching each of `fds` for `events` (`EPOLLIN`,
/// `EPOLLOUT`, `EPOLLET`, ...). It is itself pollable: readable while a watched descriptor
/// has a pending event.
pub(crate) fn epoll_of(fds: &[BorrowedFd<'_>], events: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with an integer flag.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    cvt(ep)?;
    // SAFETY: ep is a fresh descriptor we own.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (i, fd) in fds.iter().enumerate() {
        epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_ADD, *fd, events, i)?;
    }
    Ok(ep)
}

/// Adds `fds` to `ep` (an instance from [`epoll_of`]) for `events`; on a failure none stays
/// added.
pub(crate) fn epoll_watch(ep: BorrowedFd<'_>, fds: &[OwnedFd], events: u32) -> io::Result<()> {
    for (i, fd) in fds.iter().enumerate() {
        if let Err(e) = epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd.as_fd(), events, i) {
            let _ = epoll_unwatch(ep, &fds[..i]);
            return Err(e);
        }
    }
    Ok(())
}

/// Removes `fds` from `ep` (the inverse of [`epoll_watch`]).
pub(crate) fn epoll_unwatch(ep: BorrowedFd<'_>, fds: &[OwnedFd]) -> io::Result<()> {
    let mut first = Ok(());
    for fd in fds {
        let r = epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd.as_fd(), 0, 0);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

fn epoll_ctl(
    ep: BorrowedFd<'_>,
    op: libc::c_int,
    fd: BorrowedFd<'_>,
    events: u32,
    data: usize,
) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: data as u64,
    };
    // SAFETY: both descriptors are open; `ev` is a live epoll_event read during the call
    // (ignored for EPOLL_CTL_DEL).
    let r = unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
    cvt(r).map(drop)
}

/// Takes every pending event off an epoll instance without waiting (for edge-triggered
/// watches: the next event is then a new one).
pub(crate) fn epoll_drain(ep: BorrowedFd<'_>) -> io::Result<()> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        // SAFETY: evs is a live array of evs.len() events the kernel may write.
        let r = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if (r as usize) < evs.len() {
            return Ok(());
        }
    }
}

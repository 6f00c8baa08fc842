//! System-call helpers every layer above may use: turning a negative return into the OS
//! error, and `poll(2)` over several descriptors. No other module of the crate repeats them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The result of a system call that returns a negative value on failure (`errno` set).
pub(crate) fn cvt<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Waits with `poll(2)` until one of `fds` is readable (events = POLLIN) or writable
/// (POLLOUT), per `events`, or the timeout passes. Returns the revents per descriptor.
pub(crate) fn poll_fds(
    fds: &[(BorrowedFd<'_>, libc::c_short)],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, ev)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *ev,
            revents: 0,
        })
        .collect();
    let ms = match timeout {
        None => -1,
        Some(d) => d.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    loop {
        // SAFETY: pfds is a live array of pfds.len() pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(pfds.iter().map(|p| p.revents).collect());
    }
}

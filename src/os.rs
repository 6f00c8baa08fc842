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
///
/// A timeout is rounded up to whole milliseconds (poll's unit): rounded down, the last
/// fraction of a millisecond of every wait would become a string of non-blocking polls (a
/// spin) until the deadline. Only `Duration::ZERO` polls without blocking. No allocation.
// Its users: the netmap-module backend and the cross-process emulated pipes (neither on macOS).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn poll_fds<const N: usize>(
    fds: &[(BorrowedFd<'_>, libc::c_short); N],
    timeout: Option<std::time::Duration>,
) -> io::Result<[libc::c_short; N]> {
    let mut pfds = fds.map(|(fd, ev)| pollfd(Some(fd), ev));
    poll_raw(&mut pfds, timeout)?;
    Ok(pfds.map(|p| p.revents))
}

/// [`poll_fds`] over a list of any length, when only "something happened or the time
/// passed" matters: no allocation up to 16 descriptors.
pub(crate) fn poll_list<'a>(
    fds: impl IntoIterator<Item = (BorrowedFd<'a>, libc::c_short)>,
    timeout: Option<std::time::Duration>,
) -> io::Result<()> {
    const ON_STACK: usize = 16;
    let (mut first, mut n, mut rest) = ([pollfd(None, 0); ON_STACK], 0, Vec::new());
    for (fd, ev) in fds {
        if n < ON_STACK {
            first[n] = pollfd(Some(fd), ev);
            n += 1;
        } else {
            if rest.is_empty() {
                rest.extend_from_slice(&first);
            }
            rest.push(pollfd(Some(fd), ev));
        }
    }
    if rest.is_empty() {
        poll_raw(&mut first[..n], timeout)
    } else {
        poll_raw(&mut rest, timeout)
    }
}

fn pollfd(fd: Option<BorrowedFd<'_>>, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.map_or(-1, |f| f.as_raw_fd()),
        events,
        revents: 0,
    }
}

/// One `poll(2)` over `pfds`, the timeout rounded up (`poll_ms`); a signal restarts it with
/// what is left of the timeout, so a stream of signals cannot stretch a wait.
fn poll_raw(pfds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> io::Result<()> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    let mut left = timeout;
    loop {
        let ms = left.map_or(-1, poll_ms);
        // SAFETY: pfds is a live array of pfds.len() pollfd structs.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        if let Some(d) = deadline {
            left = Some(d.saturating_duration_since(std::time::Instant::now()));
        }
    }
}

/// `poll`'s timeout argument for `d`: milliseconds, rounded up, at most `i32::MAX`.
fn poll_ms(d: std::time::Duration) -> libc::c_int {
    d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::poll_ms;
    use std::time::Duration;

    #[test]
    fn poll_timeouts_round_up_so_a_wait_never_spins() {
        assert_eq!(poll_ms(Duration::ZERO), 0);
        assert_eq!(poll_ms(Duration::from_nanos(1)), 1);
        assert_eq!(poll_ms(Duration::from_micros(999)), 1);
        assert_eq!(poll_ms(Duration::from_millis(1)), 1);
        assert_eq!(poll_ms(Duration::from_micros(1001)), 2);
        assert_eq!(poll_ms(Duration::MAX), i32::MAX);
    }
}

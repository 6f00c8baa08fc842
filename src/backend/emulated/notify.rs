//! Wake-up descriptors of the emulated backend.
//!
//! The kernel backend reports readiness through the netmap file descriptor itself. The
//! emulated backend has no such descriptor, so each registration owns two [`Notifier`]s (one
//! per direction): an `eventfd` on Linux, a non-blocking pipe elsewhere. The emulated kernel
//! signals a notifier when it delivers packets to the receiver or frees slots for the sender;
//! the descriptor is readable until the next sync clears it.
//!
//! Signals cost nothing unless someone waits: a waiter *arms* the notifier before its last
//! look at the rings, and only an armed notifier issues a `write` (and only the first signal
//! after a clear does). The emulated kernel signals while holding the link lock that the
//! waiter's sync also takes, so a signal is either seen by that sync or finds the notifier
//! armed: no wake-up is lost, and a busy sender/receiver pair makes no system call at all.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::backend::waker::Arm;
use crate::os::cvt;

/// A pollable, edge-producing wake-up flag.
#[derive(Debug)]
pub(crate) struct Notifier {
    read: OwnedFd,
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    write: OwnedFd,
    pending: AtomicBool,
    waiters: AtomicUsize,
}

#[cfg(test)]
thread_local! {
    static FAIL_NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Test hook: the next `n` notifier creations on this thread fail (as they do when the
/// process is out of descriptors).
#[cfg(test)]
pub(crate) fn fail_next_notifiers(n: usize) {
    FAIL_NEXT.with(|f| f.set(n));
}

/// Test hook: fails when [`fail_next_notifiers`] asked for it (any wake-up descriptor).
#[cfg(test)]
pub(crate) fn injected_failure() -> io::Result<()> {
    if FAIL_NEXT.with(|f| f.replace(f.get().saturating_sub(1)) > 0) {
        return Err(io::Error::other(
            "injected failure: no descriptor for a notifier",
        ));
    }
    Ok(())
}

impl Notifier {
    /// A new, clear notifier.
    pub(crate) fn new() -> io::Result<Notifier> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: eventfd has no memory preconditions; the result is checked.
            let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
            Ok(Notifier {
                // SAFETY: fd was just returned by eventfd and is owned by nobody else.
                read: unsafe { OwnedFd::from_raw_fd(fd) },
                pending: AtomicBool::new(false),
                waiters: AtomicUsize::new(0),
            })
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: fds has room for the two descriptors pipe() writes.
            cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
            // SAFETY: both descriptors were just created by pipe() and are owned by nobody.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            for fd in [&read, &write] {
                // SAFETY: fcntl on a descriptor we own.
                unsafe {
                    cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK))?;
                    cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC))?;
                }
            }
            Ok(Notifier {
                read,
                write,
                pending: AtomicBool::new(false),
                waiters: AtomicUsize::new(0),
            })
        }
    }

    /// Signals the notifier: if a waiter armed it, the descriptor becomes readable and
    /// produces an edge.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 && !self.pending.swap(true, Ordering::SeqCst) {
            self.raw_write();
        }
    }

    /// Announces a waiter: from now on signals reach the descriptor. Call before the last
    /// sync that precedes sleeping on the descriptor; pair with [`Notifier::disarm`].
    #[inline]
    pub(crate) fn arm(&self) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
    }

    /// One waiter is done; with none left, signals go back to costing nothing.
    #[inline]
    #[cfg_attr(any(not(test), miri), allow(dead_code))]
    pub(crate) fn disarm(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Clears a pending signal before a sync (the sync then sees everything signalled so far).
    ///
    /// The descriptor is drained *before* the flag is reset: a signal that lands in between
    /// finds the flag still set and writes nothing, but its delivery happened before it, so
    /// the sync that follows sees it. (Resetting first would let that signal's write be
    /// drained while the flag says "pending", and every later signal would be suppressed.)
    #[inline]
    pub(crate) fn clear(&self) {
        if self.pending.load(Ordering::SeqCst) {
            self.drain();
            self.pending.store(false, Ordering::SeqCst);
        }
    }

    fn raw_write(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd. A failure can only be
            // EAGAIN at counter saturation, when the descriptor is readable anyway.
            unsafe { libc::write(self.read.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let b = 1u8;
            // SAFETY: writes 1 byte from a live u8 to our pipe; EAGAIN means it is full, hence
            // readable, which is all a signal has to achieve.
            unsafe { libc::write(self.write.as_raw_fd(), (&b as *const u8).cast(), 1) };
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads at most buf.len() bytes into a live local buffer.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            // eventfd: one read empties the counter; pipe: read until empty.
            if n <= 0 || cfg!(any(target_os = "linux", target_os = "android")) {
                break;
            }
        }
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Arm for Notifier {
    fn arm(&self) {
        Notifier::arm(self)
    }
    fn disarm(&self) {
        Notifier::disarm(self)
    }
}

#[cfg(all(test, not(miri)))] // Miri has no poll(2)
mod tests {
    use super::*;
    use crate::os::poll_fds;
    use std::time::Duration;

    #[test]
    fn signal_makes_readable_and_clear_resets() {
        let n = Notifier::new().unwrap();
        let r = poll_fds(&[(n.as_fd(), libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        assert_eq!(r[0] & libc::POLLIN, 0);
        // Unarmed: a signal costs nothing and the descriptor stays quiet.
        n.notify();
        let r = poll_fds(&[(n.as_fd(), libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        assert_eq!(r[0] & libc::POLLIN, 0);
        n.arm();
        n.notify();
        n.notify();
        let r = poll_fds(&[(n.as_fd(), libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        assert_ne!(r[0] & libc::POLLIN, 0);
        n.clear();
        let r = poll_fds(&[(n.as_fd(), libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        assert_eq!(r[0] & libc::POLLIN, 0);
        n.notify();
        n.clear();
        n.disarm();
        let r = poll_fds(&[(n.as_fd(), libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        assert_eq!(r[0] & libc::POLLIN, 0);
    }
}

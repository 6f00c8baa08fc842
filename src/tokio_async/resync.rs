//! [`Resync`]: a safety net for waits on the netmap kernel module, and for AF_XDP TX waits
//! while the device refuses frames (Linux: a `timerfd`).
//!
//! netmap expects one thread per registration. With a multi-thread runtime the reactor's
//! `epoll_wait` runs netmap's poll on one worker while a ring's owner syncs on another. The
//! kernel serialises the two per ring by *skipping* a ring that is busy: a poll that comes
//! while the owner's `NIOCRXSYNC`/`NIOCTXSYNC` holds the ring reports nothing for it, and with
//! edge-triggered epoll that edge is gone. If the delivery that caused it landed after the
//! owner's sync looked, the owner then sleeps with work in its ring (seen in the guest: a
//! ping-pong between two tasks on two workers stalled in 1 of 6 runs).
//!
//! So a wait on the kernel under a multi-thread runtime also arms a one-shot timer before it
//! sleeps, and syncs again when the timer fires (a current-thread runtime polls on the thread
//! that syncs: no overlap, no timer). The first wait of a handle waits 1 ms; each timeout doubles it up to
//! 128 ms, and a wait that ends with work resets it. When traffic flows a wait rarely sleeps at
//! all; an idle ring wakes at most 8 times a second.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::os::cvt;

/// The first interval, after which a sleeping wait syncs again.
pub(crate) const FIRST: Duration = Duration::from_millis(1);
/// The longest interval (an idle ring's wake-ups per second: 1 / this).
pub(crate) const LONGEST: Duration = Duration::from_millis(128);

/// A one-shot timer registered with the runtime's reactor.
#[derive(Debug)]
pub(crate) struct Resync {
    fd: AsyncFd<OwnedFd>,
}

impl Resync {
    /// A disarmed timer; needs a runtime (the caller checked there is one).
    pub(crate) fn new() -> io::Result<Resync> {
        // SAFETY: timerfd_create has no memory preconditions; the result is checked.
        let raw = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and names the
        // same timer for as long as it is registered, and `as_raw_fd` returns the same number
        // every time.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Resync { fd })
    }

    /// (Re)arms the timer to fire once after `after`; an earlier expiry not yet seen is
    /// discarded (setting a timerfd resets its count).
    pub(crate) fn arm(&self, after: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos().into(),
            },
        };
        // SAFETY: `spec` is a live itimerspec; a null old-value pointer is allowed.
        cvt(unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
        Ok(())
    }

    /// Ready once the armed timer has fired (and consumes the expiry).
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live local buffer.
            let n =
                unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
            if n == 8 {
                return Poll::Ready(Ok(()));
            }
            // EAGAIN: a readiness left from an expiry that re-arming discarded.
            guard.clear_ready();
        }
    }
}

/// The interval after `d` timed out.
pub(crate) fn longer(d: Duration) -> Duration {
    (d * 2).min(LONGEST)
}

// Not under Miri, which cannot call timerfd_create (`cargo test` runs it).
#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn fires_once_after_arming_and_rearming_discards_an_old_expiry() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = Resync::new().unwrap();
            t.arm(Duration::from_millis(1)).unwrap();
            std::future::poll_fn(|cx| t.poll_expired(cx)).await.unwrap();
            // Fired, then re-armed far away: the old expiry must not count.
            t.arm(Duration::from_millis(1)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            t.arm(Duration::from_secs(3600)).unwrap();
            let again = std::future::poll_fn(|cx| match t.poll_expired(cx) {
                Poll::Pending => Poll::Ready(false),
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
            })
            .await;
            assert!(!again, "an expiry discarded by re-arming was reported");
        });
        assert_eq!(longer(FIRST), Duration::from_millis(2));
        assert_eq!(longer(LONGEST), LONGEST);
    }
}

//! [`RingWaker`]: the readiness source of one ring, for one waiter.
//!
//! A port's descriptor (the netmap fd, or an emulated registration's notifier) reports
//! readiness for all of its rings at once, and every sync of any ring of the registration may
//! consume what it reports. A task waiting for ring A must not depend on a signal that a sync
//! made for ring B can swallow, so each waiting ring handle gets a source of its own:
//!
//! - kernel: a duplicate of the netmap fd. Each duplicate is registered with the reactor on
//!   its own, so it keeps its own readiness state, and the kernel wakes every registration
//!   when a ring of the file changes; `poll` on it reports the rings' state, not a token that
//!   a sync could take away.
//! - AF_XDP / AF_PACKET: a duplicate of the ring's queue socket, which the kernel wakes when
//!   packets arrive (POLLIN) or a transmission completes (POLLOUT).
//! - emulated: a notifier of the ring alone, signalled when that ring gets packets (RX) or
//!   room (TX) and cleared only by its owner before it syncs.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::emulated::wake::Note;

/// What a ring waiter sleeps on; see the module docs.
#[derive(Debug)]
pub(crate) struct RingWaker {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A descriptor of the waiter's own whose poll state the kernel computes from the rings
    /// (POLLIN for RX, POLLOUT for TX when `writable`).
    #[cfg_attr(not(netmap_kernel), allow(dead_code))]
    Fd {
        fd: OwnedFd,
        writable: bool,
        /// Watched only while its owner waits (see [`RingWaker::socket`]).
        transient: bool,
    },
    /// The ring's own emulated notifier (reports readable).
    Note(Arc<Note>),
}

impl RingWaker {
    /// A waker over a descriptor of the waiter's own.
    #[cfg_attr(not(netmap_kernel), allow(dead_code))]
    pub(crate) fn fd(fd: OwnedFd, writable: bool) -> RingWaker {
        RingWaker {
            kind: Kind::Fd {
                fd,
                writable,
                transient: false,
            },
        }
    }

    /// A waker over a duplicate of a ring's queue socket (AF_XDP, AF_PACKET), to be watched
    /// only while its owner waits: the kernel walks a socket's watchers for every frame it
    /// frees or receives, so a watch left on while packets flow costs every packet.
    #[cfg(target_os = "linux")]
    pub(crate) fn socket(fd: OwnedFd, writable: bool) -> RingWaker {
        RingWaker {
            kind: Kind::Fd {
                fd,
                writable,
                transient: true,
            },
        }
    }

    /// Whether the waker should be watched (registered with a reactor) only while its owner
    /// waits, rather than for as long as it lives.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn transient(&self) -> bool {
        matches!(
            self.kind,
            Kind::Fd {
                transient: true,
                ..
            }
        )
    }

    /// A waker over a ring's emulated notifier.
    pub(crate) fn notifier(note: Arc<Note>) -> RingWaker {
        RingWaker {
            kind: Kind::Note(note),
        }
    }

    /// Whether readiness shows as "writable" (else as "readable").
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn reports_writable(&self) -> bool {
        matches!(self.kind, Kind::Fd { writable: true, .. })
    }

    /// Announces that the owner is about to wait: signals reach the descriptor from now on.
    /// Pair with [`disarm`](RingWaker::disarm).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn arm(&self) {
        if let Kind::Note(n) = &self.kind {
            n.arm();
        }
    }

    /// The owner stopped waiting.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn disarm(&self) {
        if let Kind::Note(n) = &self.kind {
            n.disarm();
        }
    }

    /// Clears a pending signal; call right before the sync that decides whether to sleep.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        if let Kind::Note(n) = &self.kind {
            n.clear();
        }
    }
}

impl AsFd for RingWaker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Fd { fd, .. } => fd.as_fd(),
            Kind::Note(n) => n.as_fd(),
        }
    }
}

impl AsRawFd for RingWaker {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Arm for RingWaker {
    fn arm(&self) {
        RingWaker::arm(self)
    }
    fn disarm(&self) {
        RingWaker::disarm(self)
    }
}

/// Something a waiter arms before its last look at the rings (so that a delivery after that
/// look signals it) and disarms when it stops waiting: an emulated notifier, or a ring's waker.
pub(crate) trait Arm {
    /// Signals reach the waiter from now on.
    fn arm(&self);
    /// The waiter stopped waiting.
    fn disarm(&self);
}

/// A waiter's arming, withdrawn on drop: on every return path of a blocking wait, and when an
/// async wait's future completes or is dropped.
pub(crate) struct Armed<'a, T: Arm>(&'a T);

impl<'a, T: Arm> Armed<'a, T> {
    /// Arms `t` until the guard is dropped.
    pub(crate) fn new(t: &'a T) -> Self {
        t.arm();
        Armed(t)
    }
}

impl<T: Arm> Drop for Armed<'_, T> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

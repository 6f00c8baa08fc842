//! Readiness of a Linux-driver port: the kernel sockets of its queues (one per queue for
//! AF_XDP, one for AF_PACKET), as the drivers' `RingWaker`s, `AsFd` and blocking waits see
//! them.
//!
//! - A ring waiter (Tokio) gets a duplicate of its queue's socket: `POLLIN` when the socket's
//!   RX ring has packets, `POLLOUT` when a transmission completes and frees room (the kernel
//!   wakes the socket when it frees a sent buffer).
//! - `AsFd` hands out an epoll instance over every queue socket (level-triggered `EPOLLIN`):
//!   one pollable descriptor for all queues of the port.
//! - Blocking waits `poll` the sockets themselves for reception, and use a second,
//!   edge-triggered (`EPOLLOUT | EPOLLET`) epoll instance for room: a socket's level
//!   `POLLOUT` says its kernel TX ring has room, not that the netmap ring does (the slots come
//!   back with completions), so only new wake-ups end a wait for room.
//!
//! Every watch is an entry on the socket's wait queue, and the kernel walks those entries,
//! interrupts off, for every packet it receives and every sent frame it frees (`sock_wfree` →
//! `sk_write_space`). Two permanent watches cost a sender about an eighth of its CPU on a veth
//! (`ci/peer-bench.sh`, perf: `sock_wfree` 14% against 2.5% with none). So the sockets carry
//! entries only while somebody waits: `poll`'s own last only for the call (none to add or
//! remove); the room instance watches them during a wait (two `epoll_ctl` calls per socket
//! per wait), and the reception instance once `AsFd` handed it out. A receive wait that
//! added and removed a watch, as room waits do, cost a receiver woken per packet a quarter
//! of its CPU per packet (`ci/peer-bench.sh`, `rxcpu` rows).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use super::os;
use crate::backend::wait::{wait_loop, WaitParts};
use crate::backend::{Driver, Readiness, RingWaker};
use crate::error::Error;
use crate::ring::Dir;

/// The sockets of a port's queues and the epoll instances over them.
#[derive(Debug)]
pub(crate) struct SocketSet {
    /// One duplicate per queue (owned here: the drivers keep the sockets under locks).
    socks: Vec<OwnedFd>,
    rx_ep: Watched,
    tx_ep: Watched,
}

/// An epoll instance over the sockets while it has users.
#[derive(Debug)]
struct Watched {
    ep: OwnedFd,
    events: u32,
    /// Waiters now, and whether `AsFd` handed the instance out (then it watches for good).
    users: Mutex<(usize, bool)>,
}

impl Watched {
    fn new(events: u32) -> Result<Watched, Error> {
        Ok(Watched {
            ep: os::epoll_of(&[], events).map_err(|e| ctx(e, "epoll over the queue sockets"))?,
            events,
            users: Mutex::new((0, false)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches `socks` until the guard drops (nested and concurrent users share one watch).
    fn watch<'a>(&'a self, socks: &'a [OwnedFd]) -> Result<WatchGuard<'a>, Error> {
        let mut u = self.lock();
        if u.0 == 0 && !u.1 {
            os::epoll_watch(self.ep.as_fd(), socks, self.events)
                .map_err(|e| ctx(e, "epoll over the queue sockets"))?;
        }
        u.0 += 1;
        Ok(WatchGuard { w: self, socks })
    }

    /// Watches for good (for a descriptor handed to the user).
    fn watch_for_good(&self, socks: &[OwnedFd]) -> BorrowedFd<'_> {
        let mut u = self.lock();
        if !u.1 {
            if u.0 == 0 {
                if let Err(e) = os::epoll_watch(self.ep.as_fd(), socks, self.events) {
                    tracing::warn!(error = %e, "cannot watch the queue sockets; the port's descriptor will not become readable");
                }
            }
            u.1 = true;
        }
        self.ep.as_fd()
    }
}

/// Ends a waiter's use of a [`Watched`] instance.
struct WatchGuard<'a> {
    w: &'a Watched,
    socks: &'a [OwnedFd],
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        let mut u = self.w.lock();
        u.0 -= 1;
        if u.0 == 0 && !u.1 {
            // Removing a watch of an open descriptor cannot fail but for a bad descriptor.
            let _ = os::epoll_unwatch(self.w.ep.as_fd(), self.socks);
        }
    }
}

fn ctx(e: std::io::Error, what: &str) -> Error {
    super::iface::io_context(e, what)
}

impl SocketSet {
    /// Watches the queue sockets `socks` (in ring order).
    pub(crate) fn new(socks: &[BorrowedFd<'_>]) -> Result<SocketSet, Error> {
        let socks = socks
            .iter()
            .map(|s| s.try_clone_to_owned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ctx(e, "duplicating a queue socket"))?;
        let rx_ep = Watched::new(libc::EPOLLIN as u32)?;
        let tx_ep = Watched::new((libc::EPOLLOUT | libc::EPOLLET) as u32)?;
        Ok(SocketSet {
            socks,
            rx_ep,
            tx_ep,
        })
    }

    /// A readiness source for the ring of queue position `idx` alone.
    pub(crate) fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        let s = self.socks.get(idx).ok_or(Error::InvalidRingIndex(idx))?;
        let fd = s
            .try_clone()
            .map_err(|e| ctx(e, "duplicating a queue socket for a ring waiter"))?;
        Ok(RingWaker::socket(fd, dir == Dir::Tx))
    }

    /// Asks the kernel to let these sockets drive their queues' NAPI processing while the
    /// user busy-polls (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`, `SO_BUSY_POLL_BUDGET`); what
    /// the kernel refuses (e.g. without CAP_NET_ADMIN) is logged and left out.
    pub(crate) fn prefer_busy_poll(&self, spin: Duration) {
        let usecs = spin.as_micros().min(1_000_000) as libc::c_int;
        let opts = [
            (libc::SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"),
            (libc::SO_BUSY_POLL, usecs, "SO_BUSY_POLL"),
            (libc::SO_BUSY_POLL_BUDGET, 64, "SO_BUSY_POLL_BUDGET"),
        ];
        for s in &self.socks {
            for (name, value, what) in opts {
                if let Err(e) = os::setsockopt(s.as_fd(), libc::SOL_SOCKET, name, &value) {
                    tracing::debug!(option = what, error = %e, "busy polling option refused");
                }
            }
        }
    }

    /// One descriptor, readable when some queue has received packets.
    pub(crate) fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        self.rx_ep.watch_for_good(&self.socks)
    }

    /// Sleeps until queue socket `idx` has something to read, or an error condition, or the
    /// time (`None`: no limit) passes; returns what `poll` reported (`revents`).
    pub(crate) fn sleep_readable(
        &self,
        idx: usize,
        left: Option<Duration>,
    ) -> Result<libc::c_short, Error> {
        let s = self.socks.get(idx).ok_or(Error::InvalidRingIndex(idx))?;
        crate::os::poll_fds(&[(s.as_fd(), libc::POLLIN)], left)
            .map(|[ev]| ev)
            .map_err(|e| ctx(e, "poll on a queue socket"))
    }

    /// `Driver::wait` of a driver over these sockets: syncs the wanted directions of `port`
    /// (as the netmap module's poll does) and sleeps on the sockets until `check` reports a
    /// wanted direction ready or the timeout passes (at most `port.retry_after()` at a time).
    pub(crate) fn wait(
        &self,
        port: &dyn Driver,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        // Reception: the sockets themselves, polled (poll's wait-queue entries last only for
        // the call, so no watch to add and remove). Room: the edge-triggered instance.
        let _tx = match want.writable {
            true => Some(self.tx_ep.watch(&self.socks)?),
            false => None,
        };
        let sync = || {
            if want.writable {
                // Events before this sync are covered by it; only later ones should wake us.
                os::epoll_drain(self.tx_ep.ep.as_fd()).map_err(|e| ctx(e, "epoll_wait"))?;
                port.txsync()?;
            }
            if want.readable {
                port.rxsync()?;
            }
            Ok(())
        };
        let parts = WaitParts {
            sync: &sync,
            check,
            sleep: &|left| {
                let rx = self.socks.iter().filter(|_| want.readable);
                let tx = std::iter::once(&self.tx_ep.ep).filter(|_| want.writable);
                let fds = rx.chain(tx).map(|s| (s.as_fd(), libc::POLLIN));
                crate::os::poll_list(fds, left).map_err(|e| ctx(e, "poll on the queue sockets"))
            },
            retry: &|| port.retry_after(),
        };
        wait_loop(want, timeout, parts)
    }
}

//! Readiness of a Linux-driver port: the kernel sockets of its queues (one per queue for
//! AF_XDP, one for AF_PACKET), as the drivers' `RingWaker`s, `AsFd` and blocking waits see
//! them.
//!
//! - A ring waiter (Tokio) gets a duplicate of its queue's socket: `POLLIN` when the socket's
//!   RX ring has packets, `POLLOUT` when a transmission completes and frees room (the kernel
//!   wakes the socket when it frees a sent buffer).
//! - `AsFd` hands out an epoll instance over every queue socket (level-triggered `EPOLLIN`):
//!   one pollable descriptor for all queues of the port.
//! - Blocking waits poll that instance for reception, and a second, edge-triggered
//!   (`EPOLLOUT | EPOLLET`) one for room: a socket's level `POLLOUT` says its kernel TX ring
//!   has room, not that the netmap ring does (the slots come back with completions), so only
//!   new wake-ups end a wait for room.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    rx_ep: OwnedFd,
    tx_ep: OwnedFd,
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
        let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|s| s.as_fd()).collect();
        let rx_ep = os::epoll_of(&fds, libc::EPOLLIN as u32)
            .map_err(|e| ctx(e, "epoll over the queue sockets"))?;
        let tx_ep = os::epoll_of(&fds, (libc::EPOLLOUT | libc::EPOLLET) as u32)
            .map_err(|e| ctx(e, "epoll over the queue sockets"))?;
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
        Ok(RingWaker::fd(fd, dir == Dir::Tx))
    }

    /// One descriptor, readable when some queue has received packets.
    pub(crate) fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        self.rx_ep.as_fd()
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
        let sync = || {
            if want.writable {
                // Events before this sync are covered by it; only later ones should wake us.
                os::epoll_drain(self.tx_ep.as_fd()).map_err(|e| ctx(e, "epoll_wait"))?;
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
            rx_fd: self.rx_ep.as_fd(),
            tx_fd: self.tx_ep.as_fd(),
            poll_error: &|e| ctx(e, "poll on the queue sockets"),
            retry: &|| port.retry_after(),
        };
        wait_loop(want, timeout, parts)
    }
}

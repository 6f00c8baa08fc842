//! The Tokio layer: netmap rings as `AsyncRead`/`AsyncWrite`, `Stream`/`Sink`, codec framing
//! and tracing taps.
//!
//! [`TokioNetmap`] registers the port's descriptor with [`tokio::io::unix::AsyncFd`] (the
//! netmap fd on the kernel backend; one notifier per direction on the emulated backend). A
//! task waiting for packets sleeps until the descriptor becomes readable; a task waiting for
//! room sleeps until it becomes writable. No busy polling: an idle receiver costs no CPU.
//!
//! # Readiness protocol
//!
//! Epoll in Tokio is edge-triggered, and netmap's poll handler syncs rings as a side effect.
//! Every wait therefore follows the same order: sync the ring and look for work first; only if
//! there is none, take the readiness guard, sync again, and clear readiness *only* when the
//! ring is still empty after that sync. A packet that arrives between the check and the clear
//! produces a new edge that Tokio keeps (the clear is tick-checked), so no wake-up is lost,
//! including for traffic that was already flowing when the port was opened. Waits use
//! `AsyncFd::readable()`/`writable()` futures, which allow any number of waiters, so RX and TX
//! handles of one port (and several rings) may live in different tasks.
//!
//! # Batching
//!
//! Packets are taken from and put into the ring with no system call; a sync happens when the
//! ring runs empty (RX) or full (TX), when half a ring is waiting to be released or sent, and on
//! `flush`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::ReusableBoxFuture;

use crate::error::Error;
use crate::sync::port::PortInner;
use crate::sync::Netmap;

mod framed;
mod rx;
pub mod tap;
mod tx;

pub use framed::NetmapFramed;
pub use rx::AsyncNetmapRxRing;
pub use tap::{PcapWriter, Tap};
pub use tx::AsyncNetmapTxRing;

/// One of a port's readiness descriptors. It holds the port, which owns the descriptor, so
/// the descriptor stays open for as long as this value (and the `AsyncFd` around it) lives.
#[derive(Debug)]
struct FdRef {
    port: Arc<PortInner>,
    tx: bool,
}

impl AsRawFd for FdRef {
    fn as_raw_fd(&self) -> RawFd {
        if self.tx {
            self.port.backend.tx_fd().0.as_raw_fd()
        } else {
            self.port.backend.rx_fd().as_raw_fd()
        }
    }
}

fn register(port: &Arc<PortInner>, tx: bool, interest: Interest) -> io::Result<AsyncFd<FdRef>> {
    let fd = FdRef {
        port: port.clone(),
        tx,
    };
    // SAFETY: `fd.as_raw_fd()` is a descriptor owned by the port's backend (the netmap fd or
    // an emulated notifier). `FdRef` holds the port through an Arc, so the descriptor stays
    // open and refers to the same file for as long as the AsyncFd owns the FdRef, and
    // as_raw_fd returns the same number every time (the backend never replaces it).
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

#[derive(Debug)]
enum Ready {
    /// Kernel: the netmap fd reports POLLIN for RX and POLLOUT for TX.
    Same(AsyncFd<FdRef>),
    /// Emulated: one notifier per direction, each reporting "readable".
    Split {
        rx: AsyncFd<FdRef>,
        tx: AsyncFd<FdRef>,
    },
}

/// The registration shared by a [`TokioNetmap`] and its ring handles.
#[derive(Debug)]
pub(crate) struct AsyncPort {
    ready: Ready,
    pub(crate) netmap: Netmap,
}

/// Which direction a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

impl AsyncPort {
    fn new(netmap: Netmap) -> io::Result<AsyncPort> {
        let inner = &netmap.inner;
        let ready = if inner.backend.tx_fd().1 {
            Ready::Same(register(
                inner,
                false,
                Interest::READABLE | Interest::WRITABLE,
            )?)
        } else {
            Ready::Split {
                rx: register(inner, false, Interest::READABLE)?,
                tx: register(inner, true, Interest::READABLE)?,
            }
        };
        Ok(AsyncPort { ready, netmap })
    }

    /// Whether ring `idx` in direction `dir` has work for the user (as the kernel's poll
    /// computes it: `cur != tail`, with `cur` the handle's last published cursor).
    fn ring_ready(&self, dir: Dir, idx: usize) -> bool {
        let inner = &self.netmap.inner;
        let ring = match dir {
            Dir::Rx => &inner.rx[idx],
            Dir::Tx => &inner.tx[idx],
        };
        ring.raw.load_tail() != ring.raw.load_cur()
    }

    fn sync(&self, dir: Dir) -> Result<(), Error> {
        match dir {
            Dir::Rx => self.netmap.inner.backend.rxsync(),
            Dir::Tx => self.netmap.inner.backend.txsync(),
        }
    }

    /// Sleeps until ring `idx` has work in direction `dir`. Cancel-safe: it consumes nothing.
    async fn wait_ready(self: Arc<Self>, dir: Dir, idx: usize) -> io::Result<()> {
        // Ask for signals before the sync below: a delivery after that sync finds the notifier
        // armed and produces an edge. Disarmed when this future completes or is dropped.
        let _armed = Armed::new(&self, dir);
        // Look once more now that signals are on: a delivery between the caller's last sync
        // and the arming above produced no signal, so only a sync can see it.
        self.sync(dir)?;
        if self.ring_ready(dir, idx) {
            return Ok(());
        }
        loop {
            let mut guard = match (&self.ready, dir) {
                (Ready::Same(fd), Dir::Rx) => fd.readable().await?,
                (Ready::Same(fd), Dir::Tx) => fd.writable().await?,
                (Ready::Split { rx, .. }, Dir::Rx) => rx.readable().await?,
                (Ready::Split { tx, .. }, Dir::Tx) => tx.readable().await?,
            };
            self.sync(dir)?;
            if self.ring_ready(dir, idx) {
                return Ok(());
            }
            // Still nothing after a sync: only now may readiness be cleared. If an edge came
            // in since the guard was taken, Tokio keeps the readiness and we loop at once.
            guard.clear_ready();
        }
    }
}

/// A task's request for readiness signals in one direction, withdrawn on drop.
struct Armed<'a> {
    port: &'a AsyncPort,
    dir: Dir,
}

impl<'a> Armed<'a> {
    fn new(port: &'a AsyncPort, dir: Dir) -> Self {
        port.netmap.inner.backend.set_waiting(dir == Dir::Rx, true);
        Armed { port, dir }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.port
            .netmap
            .inner
            .backend
            .set_waiting(self.dir == Dir::Rx, false);
    }
}

/// A reusable, owned wait for readiness of one ring (one allocation per handle).
pub(crate) struct Waiter {
    fut: ReusableBoxFuture<'static, io::Result<()>>,
    active: bool,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("active", &self.active)
            .finish()
    }
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            fut: ReusableBoxFuture::new(async { Ok(()) }),
            active: false,
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    pub(crate) fn start(&mut self, port: &Arc<AsyncPort>, dir: Dir, idx: usize) {
        self.fut.set(port.clone().wait_ready(dir, idx));
        self.active = true;
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(self.fut.poll(cx));
        self.active = false;
        Poll::Ready(r)
    }
}

/// An open netmap port driven by Tokio.
///
/// ```no_run
/// use netmap_rs::NetmapBuilder;
/// use netmap_rs::tokio_async::TokioNetmap;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let nm = NetmapBuilder::new("eth0").build()?;
/// let tokio_nm = TokioNetmap::new(nm)?;
/// let rx = tokio_nm.rx_ring(0)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TokioNetmap {
    port: Arc<AsyncPort>,
}

impl TokioNetmap {
    /// Registers `netmap`'s descriptor(s) with the current Tokio runtime's reactor.
    /// Must be called from within a runtime.
    pub fn new(netmap: Netmap) -> io::Result<TokioNetmap> {
        let span = tracing::debug_span!("netmap_tokio_open", port = %netmap.name());
        let _e = span.enter();
        Ok(TokioNetmap {
            port: Arc::new(AsyncPort::new(netmap)?),
        })
    }

    /// Opens `name` with default settings and registers it (see [`crate::NetmapBuilder`]).
    pub async fn open(name: &str) -> Result<TokioNetmap, Error> {
        let nm = crate::NetmapBuilder::new(name).build()?;
        Ok(TokioNetmap::new(nm)?)
    }

    /// The underlying port.
    pub fn netmap(&self) -> &Netmap {
        &self.port.netmap
    }

    /// Async handle to RX ring `ring_idx`.
    pub fn rx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapRxRing, Error> {
        let ring = self.port.netmap.rx_ring(ring_idx)?;
        Ok(AsyncNetmapRxRing::new(ring, self.port.clone()))
    }

    /// Async handle to TX ring `ring_idx`.
    pub fn tx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapTxRing, Error> {
        let ring = self.port.netmap.tx_ring(ring_idx)?;
        Ok(AsyncNetmapTxRing::new(ring, self.port.clone()))
    }

    /// Same as [`rx_ring`](TokioNetmap::rx_ring), async for source compatibility.
    pub async fn async_rx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapRxRing, Error> {
        self.rx_ring(ring_idx)
    }

    /// Same as [`tx_ring`](TokioNetmap::tx_ring), async for source compatibility.
    pub async fn async_tx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapTxRing, Error> {
        self.tx_ring(ring_idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendChoice;
    use crate::NetmapBuilder;
    use std::time::Duration;

    /// A packet delivered while nobody waits produces no signal; a wait that starts afterwards
    /// must still see it (it syncs after arming) instead of sleeping on a quiet descriptor.
    #[tokio::test]
    async fn a_wait_sees_deliveries_made_before_it_armed() {
        let open = |n: &str| {
            NetmapBuilder::new(n)
                .backend(BackendChoice::Emulated)
                .num_slots(8)
                .build()
                .unwrap()
        };
        let a = open("armrace{0");
        let b = TokioNetmap::new(open("armrace}0")).unwrap();
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"quiet").unwrap();
        tx.sync().unwrap(); // no waiter armed: no signal
        let wait = b.port.clone().wait_ready(Dir::Rx, 0);
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .expect("the wait slept on a delivery it could have seen")
            .unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.get_mut().recv().unwrap().payload(), b"quiet");
    }
}

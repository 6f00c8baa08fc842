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
//! Each async ring handle waits on a readiness source of its own ring (a duplicate of the
//! netmap fd on the kernel backend, the ring's notifier on the emulated one), registered with
//! Tokio's reactor on its own. A sync made for one ring (which, as in netmap, syncs every ring
//! of the registration) therefore never consumes a wake-up that a waiter on another ring
//! needs, and handles of several rings may live in different tasks and threads.
//!
//! On the netmap kernel module, one wrinkle remains from netmap's model (one thread per
//! registration, which also calls `poll`): the kernel's RX check reads a ring's `cur` and
//! then its `head`, and it runs not only for the owner's ioctl but for any sync or `poll` of
//! the registration — with a multi-thread runtime, also from the worker thread that runs the
//! reactor (`epoll_wait` calls netmap's poll). A check whose two loads fall on either side of
//! the owner's publication (`cur`, then `head`) sees `cur < head` and calls
//! `netmap_ring_reinit`. What it costs: a line in the kernel log, and that check skips the
//! ring once. Nothing is lost or reset — `netmap_ring_reinit` reads the ring's pointers again,
//! finds them in range and leaves them (it resets only out-of-range values); the owner
//! republishes at its next sync; the `POLLERR` that netmap's poll reports for it is treated as
//! a wake-up. The same overlap has a second effect: the kernel skips a ring that another
//! thread's sync holds, so a poll run by the reactor during the owner's sync reports nothing
//! for it, and that edge is lost. On Linux a wait on the kernel module under a multi-thread
//! runtime therefore also arms a one-shot timer (1 ms, doubling to 128 ms while nothing
//! comes) and syncs again when it fires: a lost edge costs a little latency, never a stall
//! (before it, a ping-pong between two tasks on two workers stalled in 1 of 6 guest runs;
//! with it, 0 of 10). A current-thread runtime polls on the thread that syncs and needs no
//! timer. For a clean
//! kernel log and no such delays, drive each kernel registration from one thread: a
//! current-thread runtime per registration (with
//! [`NetmapBuilder::build_per_ring`](crate::NetmapBuilder::build_per_ring) for one
//! registration per ring). The emulated, AF_XDP and AF_PACKET backends read `head` before
//! `cur` and see a valid pair at any instant.
//!
//! Epoll in Tokio is edge-triggered, and netmap's poll handler syncs rings as a side effect.
//! Every wait therefore follows the same order: arm, sync the ring and look for work first;
//! only if there is none, sleep; after a wake-up sync and look again, and clear readiness
//! *only* when the ring still lacks work after that sync. A packet that arrives between the
//! check and the clear produces a new edge that Tokio keeps (the clear is tick-checked), so
//! no wake-up is lost, including for traffic that was already flowing when the port was
//! opened. A wait knows how much it waits for (one packet, or `n` free slots for
//! [`AsyncNetmapTxRing::reserve`]) and completes only when that much is there.
//!
//! # Every ring from one task
//!
//! A multi-queue port (`xdp:eth0` over 4 queues) has a ring per queue, and the kernel spreads
//! flows over them: reading ring 0 alone sees a quarter of the traffic.
//! [`TokioNetmap::rx_port`] receives from all of them in one task, fairly
//! ([`AsyncNetmapRxPort`]); a task per ring ([`TokioNetmap::rx_ring`]) scales over cores.
//!
//! # Batching
//!
//! Packets are taken from and put into the ring with no system call; a sync happens when the
//! ring runs empty (RX) or full (TX), when a quarter of a TX ring is waiting to be sent or half
//! an RX ring waiting to be released, and on `flush`.
//!
//! # Method names shared with `AsyncWriteExt` and `SinkExt`
//!
//! [`AsyncNetmapTxRing`] implements both `AsyncWrite` and `Sink<Bytes>`, so with both
//! extension traits in scope `tx.flush()` is ambiguous. Write
//! `AsyncWriteExt::flush(&mut tx).await` or `SinkExt::<Bytes>::flush(&mut tx).await` (both
//! hand every queued packet to the kernel), or the inherent
//! [`AsyncNetmapTxRing::flush_ring`], which needs neither trait.
//!
//! # End of stream
//!
//! A netmap pipe or NIC has no "closed" state: when the peer end of a pipe goes away, a
//! receiver simply sees no more packets, so [`AsyncNetmapRxRing`]'s `Stream` (and
//! [`AsyncNetmapRxPort`]'s) never ends by itself. Bound waits with `tokio::time::timeout`, or end them with your own protocol.

use std::io;
use std::sync::Arc;

use crate::error::Error;
use crate::sync::{Dir, Netmap};
pub(crate) use wait::Waiter;

mod framed;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod resync;
mod rx;
mod rx_port;
pub mod tap;
mod tx;
mod udp;
mod udp_framed;
#[allow(unsafe_code)]
mod wait;

pub use framed::NetmapFramed;
pub use rx::AsyncNetmapRxRing;
pub use rx_port::AsyncNetmapRxPort;
pub use tap::{PcapWriter, Tap};
pub use tx::AsyncNetmapTxRing;
pub use udp::AsyncUdpPort;
pub use udp_framed::NetmapUdpFramed;

/// The port shared by a [`TokioNetmap`] and its ring handles.
#[derive(Debug)]
pub(crate) struct AsyncPort {
    pub(crate) netmap: Netmap,
}

/// The error for async use outside a Tokio runtime.
pub(crate) fn no_runtime(what: &str) -> io::Error {
    io::Error::other(format!(
        "{what} must be called within a Tokio runtime (inside #[tokio::main], a task, or \
         Runtime::enter): the ring's descriptor is registered with the runtime's reactor"
    ))
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
    /// Wraps `netmap` for use with Tokio. Must be called within a Tokio runtime (with IO
    /// enabled, as `#[tokio::main]` has it); outside one it returns an error. Each ring handle
    /// taken from it registers its ring's readiness source with that runtime's reactor.
    pub fn new(netmap: Netmap) -> io::Result<TokioNetmap> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime("TokioNetmap::new"));
        }
        tracing::debug!(port = %netmap.name(), "netmap port handed to Tokio");
        Ok(TokioNetmap {
            port: Arc::new(AsyncPort { netmap }),
        })
    }

    /// Opens `name` with default settings and registers it (see [`crate::NetmapBuilder`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it completes in its first poll (opening does not wait), so a dropped
    /// future has opened nothing.
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
        let waiter = Waiter::new(self.port.clone(), Dir::Rx, ring_idx)?;
        Ok(AsyncNetmapRxRing::new(ring, waiter))
    }

    /// Every RX ring of the port as one receiver ([`AsyncNetmapRxPort`]: a merged `Stream`
    /// and zero-copy batches, fair across rings), for one task instead of a task per ring.
    /// Fails when a ring is already taken, or when the port has no RX ring.
    pub fn rx_port(&self) -> Result<AsyncNetmapRxPort, Error> {
        let n = self.port.netmap.num_rx_rings();
        if n == 0 {
            return Err(Error::BindFail(format!(
                "{} has no RX ring to receive from (opened TX-only?): open it without /T",
                self.port.netmap.name()
            )));
        }
        let rings = (0..n)
            .map(|i| self.rx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AsyncNetmapRxPort::new(rings))
    }

    /// Async handle to TX ring `ring_idx`.
    pub fn tx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapTxRing, Error> {
        let ring = self.port.netmap.tx_ring(ring_idx)?;
        let waiter = Waiter::new(self.port.clone(), Dir::Tx, ring_idx)?;
        Ok(AsyncNetmapTxRing::new(ring, waiter))
    }

    /// Same as [`rx_ring`](TokioNetmap::rx_ring), async for source compatibility.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it completes in its first poll.
    pub async fn async_rx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapRxRing, Error> {
        self.rx_ring(ring_idx)
    }

    /// Same as [`tx_ring`](TokioNetmap::tx_ring), async for source compatibility.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it completes in its first poll.
    pub async fn async_tx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapTxRing, Error> {
        self.tx_ring(ring_idx)
    }
}

#[cfg(test)]
mod tests;

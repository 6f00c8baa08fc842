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
//! receiver simply sees no more packets, so [`AsyncNetmapRxRing`]'s `Stream` never ends by
//! itself. Bound waits with `tokio::time::timeout`, or end them with your own protocol.

use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::ReusableBoxFuture;

use crate::backend::RingWaker;
use crate::error::Error;
use crate::notify::Armed;
use crate::sync::raw::distance;
use crate::sync::Netmap;

mod framed;
#[cfg(all(feature = "sys", target_os = "linux"))]
mod resync;
mod rx;
pub mod tap;
mod tx;

pub use framed::NetmapFramed;
pub use rx::AsyncNetmapRxRing;
pub use tap::{PcapWriter, Tap};
pub use tx::AsyncNetmapTxRing;

/// The port shared by a [`TokioNetmap`] and its ring handles.
#[derive(Debug)]
pub(crate) struct AsyncPort {
    pub(crate) netmap: Netmap,
}

/// Which direction a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

/// The error for async use outside a Tokio runtime.
fn no_runtime(what: &str) -> io::Error {
    io::Error::other(format!(
        "{what} must be called within a Tokio runtime (inside #[tokio::main], a task, or \
         Runtime::enter): the ring's descriptor is registered with the runtime's reactor"
    ))
}

impl AsyncPort {
    /// Whether ring `idx` in direction `dir` has `need` packets (RX: at least one) or free
    /// slots (TX) for the user, as the kernel's poll computes it from `cur` and `tail`, with
    /// `cur` the handle's last published cursor. A tail outside the ring (written by a broken
    /// peer) counts as no work, so a corrupt ring cannot make a waiter spin.
    fn ring_ready(&self, dir: Dir, idx: usize, need: u32) -> bool {
        let inner = &self.netmap.inner;
        let raw = match dir {
            Dir::Rx => &inner.rx[idx].raw,
            Dir::Tx => &inner.tx[idx].raw,
        };
        let n = raw.num_slots();
        let (cur, tail) = (raw.load_cur(), raw.load_tail());
        if cur >= n || tail >= n {
            return false;
        }
        distance(cur, tail, n) >= need.max(1)
    }

    fn sync(&self, dir: Dir) -> Result<(), Error> {
        match dir {
            Dir::Rx => self.netmap.inner.backend.rxsync(),
            Dir::Tx => self.netmap.inner.backend.txsync(),
        }
    }
}

/// Sleeps until ring `idx` has `need` packets or free slots in direction `dir`.
/// Cancel-safe: it consumes nothing.
async fn wait_ready(
    port: Arc<AsyncPort>,
    fd: Arc<AsyncFd<RingWaker>>,
    resync: Option<Arc<Resync>>,
    dir: Dir,
    idx: usize,
    need: u32,
) -> io::Result<()> {
    let waker = fd.get_ref();
    // Ask for signals before the sync below: a delivery after that sync finds the waker
    // armed and produces an edge. Disarmed when this future completes or is dropped.
    let _armed = Armed::new(waker);
    // Look once more now that signals are on: a delivery between the caller's last sync and
    // the arming above produced no signal, so only a sync can see it.
    waker.clear();
    port.sync(dir)?;
    if port.ring_ready(dir, idx, need) {
        return Ok(());
    }
    let mut interval = FIRST_RESYNC;
    loop {
        let guard = woken(&fd, resync.as_deref(), &mut interval).await?;
        waker.clear();
        port.sync(dir)?;
        if port.ring_ready(dir, idx, need) {
            return Ok(());
        }
        // Still not enough after a sync: only now may readiness be cleared. If an edge came
        // in since the guard was taken, Tokio keeps the readiness and we loop at once.
        if let Some(mut guard) = guard {
            guard.clear_ready();
        }
    }
}

#[cfg(all(feature = "sys", target_os = "linux"))]
use resync::{Resync, FIRST as FIRST_RESYNC};

/// No safety net where the kernel backend does not exist (or has no timerfd).
#[cfg(not(all(feature = "sys", target_os = "linux")))]
#[derive(Debug)]
struct Resync;
#[cfg(not(all(feature = "sys", target_os = "linux")))]
const FIRST_RESYNC: std::time::Duration = std::time::Duration::ZERO;

/// Waits for the ring's readiness source; with a [`Resync`] timer (the kernel module), also
/// for the timer, armed to `interval` (then lengthened). `None`: the timer fired.
async fn woken<'a>(
    fd: &'a AsyncFd<RingWaker>,
    resync: Option<&Resync>,
    interval: &mut std::time::Duration,
) -> io::Result<Option<tokio::io::unix::AsyncFdReadyGuard<'a, RingWaker>>> {
    let writable = fd.get_ref().reports_writable();
    #[cfg(all(feature = "sys", target_os = "linux"))]
    if let Some(timer) = resync {
        timer.arm(*interval)?;
        return std::future::poll_fn(|cx| {
            let r = if writable {
                fd.poll_write_ready(cx)
            } else {
                fd.poll_read_ready(cx)
            };
            if let Poll::Ready(g) = r {
                return Poll::Ready(g.map(Some));
            }
            ready!(timer.poll_expired(cx))?;
            tracing::trace!("ring wait: no edge within {interval:?}; syncing again");
            *interval = resync::longer(*interval);
            Poll::Ready(Ok(None))
        })
        .await;
    }
    let _ = (resync, interval);
    Ok(Some(if writable {
        fd.writable().await?
    } else {
        fd.readable().await?
    }))
}

/// A ring handle's reusable, owned wait for readiness of its ring (one allocation per
/// handle), over the ring's own readiness source.
pub(crate) struct Waiter {
    port: Arc<AsyncPort>,
    fd: Arc<AsyncFd<RingWaker>>,
    dir: Dir,
    idx: usize,
    /// The kernel module's safety-net timer (see `resync.rs`); `None` elsewhere.
    resync: Option<Arc<Resync>>,
    fut: ReusableBoxFuture<'static, io::Result<()>>,
    active: bool,
}

/// A [`Resync`] timer for a port on the netmap kernel module (Linux) driven by a
/// multi-thread runtime, else none: on a current-thread runtime the reactor's poll runs on the
/// thread that syncs, so the two never overlap and no edge is lost that way.
fn resync_for(port: &AsyncPort) -> Result<Option<Arc<Resync>>, Error> {
    #[cfg(all(feature = "sys", target_os = "linux"))]
    if port.netmap.backend() == crate::backend::BackendKind::Kernel
        && tokio::runtime::Handle::current().runtime_flavor()
            != tokio::runtime::RuntimeFlavor::CurrentThread
    {
        return Ok(Some(Arc::new(Resync::new()?)));
    }
    let _ = port;
    Ok(None)
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("dir", &self.dir)
            .field("ring", &self.idx)
            .field("active", &self.active)
            .finish()
    }
}

impl Waiter {
    /// Registers ring `idx`'s readiness source with the current runtime's reactor.
    pub(crate) fn new(port: Arc<AsyncPort>, dir: Dir, idx: usize) -> Result<Waiter, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Io(no_runtime("taking an async ring handle")));
        }
        let waker = port.netmap.inner.backend.ring_waker(dir == Dir::Tx, idx)?;
        let interest = if waker.reports_writable() {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // SAFETY: the descriptor belongs to the RingWaker (an OwnedFd, or an eventfd owned by
        // the Arc'd notifier it holds). The AsyncFd owns the RingWaker, so the descriptor
        // stays open and names the same file for as long as it is registered, and
        // `as_raw_fd` returns the same number every time.
        let fd = unsafe { AsyncFd::register_with_interest(waker, interest) }
            .map_err(|e| Error::Io(e.into_parts().1))?;
        let resync = resync_for(&port)?;
        Ok(Waiter {
            port,
            fd: Arc::new(fd),
            resync,
            dir,
            idx,
            fut: ReusableBoxFuture::new(async { Ok(()) }),
            active: false,
        })
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Starts a wait for `need` packets (RX) or free slots (TX).
    pub(crate) fn start(&mut self, need: usize) {
        let need = u32::try_from(need).unwrap_or(u32::MAX);
        self.fut.set(wait_ready(
            self.port.clone(),
            self.fd.clone(),
            self.resync.clone(),
            self.dir,
            self.idx,
            need,
        ));
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

    /// Async handle to TX ring `ring_idx`.
    pub fn tx_ring(&self, ring_idx: usize) -> Result<AsyncNetmapTxRing, Error> {
        let ring = self.port.netmap.tx_ring(ring_idx)?;
        let waiter = Waiter::new(self.port.clone(), Dir::Tx, ring_idx)?;
        Ok(AsyncNetmapTxRing::new(ring, waiter))
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
mod tests;

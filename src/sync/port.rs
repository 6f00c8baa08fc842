//! Opening ports: [`NetmapBuilder`] and [`Netmap`].

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::abi;
use crate::backend::{self, BackendChoice, BackendKind, OpenOptions, PortStats, Readiness};
#[cfg(netmap_kernel)]
pub use crate::backend::{PoolsInfo, PortInfo};
use crate::error::Error;
use crate::port_name::PortSpec;
use crate::ring::{bind_rings, BoundRing, BoundRings};
use crate::sync::builder::NetmapBuilder;
use crate::sync::held::Held;
use crate::sync::port_inner::PortInner;
use crate::sync::ring::{RxRing, TxRing};

/// `[head, cur, tail]` of each bound ring, from [`Netmap::ring_pointers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPointers {
    /// TX rings, in port order.
    pub tx: Vec<[u32; 3]>,
    /// RX rings, in port order.
    pub rx: Vec<[u32; 3]>,
}

/// An open netmap port: one registration (one file descriptor) and its memory mapping.
///
/// Ring handles taken from it keep the mapping alive, so they may outlive the `Netmap` and
/// move to other threads.
#[derive(Debug)]
pub struct Netmap {
    pub(crate) inner: Arc<PortInner>,
}

impl Netmap {
    /// Opens `name` with default settings (same as `NetmapBuilder::new(name).build()`).
    pub fn open(name: &str) -> Result<Netmap, Error> {
        NetmapBuilder::new(name).build()
    }

    /// A builder for `name`.
    pub fn builder(name: &str) -> NetmapBuilder {
        NetmapBuilder::new(name)
    }

    pub(super) fn open_spec(
        mut spec: PortSpec,
        opts: &OpenOptions,
        choice: BackendChoice,
    ) -> Result<Netmap, Error> {
        let opened = backend::open(&spec, opts, choice)?;
        // The name says which engine it got: `eth0` opened on AF_XDP is `xdp:eth0`.
        spec.prefix = opened.backend.kind().prefix();
        let region = opened.region;
        let BoundRings { tx, rx, bufs_head } =
            bind_rings(&region, opened.if_off, opened.pool.clone(), &spec)?;
        let nbufs = tx
            .iter()
            .chain(&rx)
            .map(|b| b.raw.buf_limit())
            .max()
            .unwrap_or(0);
        let name = spec.to_string();
        tracing::debug!(port = %name, backend = %opened.backend.kind(), tx = tx.len(), rx = rx.len(), "port open");
        Ok(Netmap {
            inner: Arc::new(PortInner {
                backend: opened.backend,
                tx,
                rx,
                spec,
                name,
                mem: opened.mem,
                extra_bufs: opened.extra_bufs,
                bufs_head,
                held: Held::of(opened.mem, nbufs),
                slot_groups: opened.slot_groups,
                busy_poll: None,
                region,
            }),
        })
    }

    /// The canonical port name: the prefix of the backend the port was opened on (`netmap:`,
    /// `xdp:`, `afpacket:`), suffixes normalised.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The parsed port name.
    pub fn spec(&self) -> &PortSpec {
        &self.inner.spec
    }

    /// Which backend the port was opened on.
    pub fn backend(&self) -> BackendKind {
        self.inner.backend.kind()
    }

    /// Number of TX rings bound to this port (NIC rings first, then host rings).
    pub fn num_tx_rings(&self) -> usize {
        self.inner.tx.len()
    }

    /// Number of RX rings bound to this port (NIC rings first, then host rings).
    pub fn num_rx_rings(&self) -> usize {
        self.inner.rx.len()
    }

    /// Whether the registration includes host-stack rings (`^`, `^N` or `*`).
    pub fn is_host_if(&self) -> bool {
        self.inner.spec.rings.includes_host()
    }

    /// Handle to TX ring `index` (`0..num_tx_rings()`). At most one live handle per ring.
    pub fn tx_ring(&self, index: usize) -> Result<TxRing, Error> {
        TxRing::new(self.inner.clone(), index)
    }

    /// Handle to RX ring `index` (`0..num_rx_rings()`). At most one live handle per ring.
    pub fn rx_ring(&self, index: usize) -> Result<RxRing, Error> {
        RxRing::new(self.inner.clone(), index)
    }

    /// The memory allocator id (ports with equal ids share buffers).
    pub fn mem_id(&self) -> u16 {
        self.inner.mem.mem_id()
    }

    /// Whether buffers can be swapped between this port and `other` (zero-copy forwarding):
    /// ports of one netmap allocator, pipes of one parent, or `xdp:` ports opened on one
    /// memory with [`NetmapBuilder::share_memory_with`].
    pub fn shares_memory_with(&self, other: &Netmap) -> bool {
        self.inner.mem == other.inner.mem
    }

    /// Size of each packet buffer in bytes.
    pub fn buf_size(&self) -> usize {
        self.inner
            .tx
            .iter()
            .chain(&self.inner.rx)
            .map(|r| r.raw.buf_size() as usize)
            .next()
            .unwrap_or(0)
    }

    /// Whether the port's memory lies on huge pages (see [`NetmapBuilder::huge_pages`]).
    pub fn uses_huge_pages(&self) -> bool {
        self.inner.region.is_huge()
    }

    /// Size of the mapped memory region in bytes.
    pub fn memsize(&self) -> usize {
        self.inner.region.len()
    }

    /// Extra buffers granted by the kernel (see [`NetmapBuilder::extra_buffers`]) and the
    /// head of their list (`ni_bufs_head`). They are returned to the kernel at close.
    pub fn extra_buffers(&self) -> (u32, u32) {
        (self.inner.extra_bufs, self.inner.bufs_head)
    }

    /// Pointer to the header of bound TX ring `index` in shared memory, for code that drives
    /// rings by hand in the C style (benchmarks comparing against this crate, FFI). Reading
    /// or writing through it is `unsafe` and bypasses every check of this crate; do not mix it
    /// with a live [`TxRing`] handle of the same ring.
    pub fn raw_tx_ring_ptr(&self, index: usize) -> Option<*mut abi::NetmapRing> {
        self.inner.tx.get(index).map(|r| r.raw.ring_ptr())
    }

    /// Pointer to the header of bound RX ring `index`; see [`Netmap::raw_tx_ring_ptr`].
    pub fn raw_rx_ring_ptr(&self, index: usize) -> Option<*mut abi::NetmapRing> {
        self.inner.rx.get(index).map(|r| r.raw.ring_ptr())
    }

    /// TX sync of every bound TX ring with the heads as they are in shared memory
    /// (`NIOCTXSYNC`), for rings driven by hand. Ring handles sync with [`TxRing::sync`].
    pub fn sync_tx_published(&self) -> Result<(), Error> {
        self.inner.backend.txsync()
    }

    /// RX sync of every bound RX ring with the heads as they are in shared memory
    /// (`NIOCRXSYNC`), for rings driven by hand. Ring handles sync with [`RxRing::sync`].
    pub fn sync_rx_published(&self) -> Result<(), Error> {
        self.inner.backend.rxsync()
    }

    /// `[head, cur, tail]` of every bound ring as they are in shared memory now (for
    /// diagnostics: the handles' unpublished cursors are not included).
    pub fn ring_pointers(&self) -> RingPointers {
        let read = |rings: &[BoundRing]| {
            rings
                .iter()
                .map(|r| [r.raw.load_head(), r.raw.load_cur(), r.raw.load_tail()])
                .collect()
        };
        RingPointers {
            tx: read(&self.inner.tx),
            rx: read(&self.inner.rx),
        }
    }

    /// Current readiness without waiting, as `poll` would report it after the last sync.
    pub fn readiness(&self) -> Readiness {
        self.inner.readiness()
    }

    /// Blocks until a bound ring is ready in one of the wanted directions, or the timeout
    /// passes (`None`: no timeout). Like `poll(2)` on the netmap fd, this syncs the wanted
    /// directions with the published ring heads: sync your ring handles first so that what
    /// you consumed or filled is published. Wanting neither direction returns the readiness
    /// at once.
    ///
    /// With [`NetmapBuilder::busy_poll`], it first syncs and looks in a loop (no sleep) for
    /// up to the spin time.
    pub fn wait(&self, want: Readiness, timeout: Option<Duration>) -> Result<Readiness, Error> {
        self.inner.wait(want, timeout)
    }

    /// The spin time of [`NetmapBuilder::busy_poll`], if set.
    pub fn busy_poll(&self) -> Option<Duration> {
        self.inner.busy_poll
    }

    pub(super) fn with_busy_poll(mut self, spin: Option<Duration>) -> Netmap {
        if let Some(d) = spin {
            self.inner.backend.prefer_busy_poll(d);
            // Just opened: this handle is the only one, so the port is not shared yet.
            if let Some(inner) = Arc::get_mut(&mut self.inner) {
                inner.busy_poll = Some(d);
            }
        }
        self
    }

    /// Waits until an RX ring holds packets (see [`Netmap::wait`]); returns whether one does.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let want = Readiness {
            readable: true,
            writable: false,
        };
        Ok(self.wait(want, timeout)?.readable)
    }

    /// Whether the other end of this pipe is open right now, in this process or another:
    /// `Some(false)` means nobody is there yet (normal: netmap lets an end wait for its
    /// peer). `None` where the backend cannot tell (the kernel's ports).
    pub fn peer_present(&self) -> Option<bool> {
        self.inner.backend.peer_present()
    }

    /// What the kernel dropped or refused on this port since it was opened, summed over its
    /// queues (see [`PortStats`] for which kernel counter each field is). Fields the backend
    /// does not count are `None`: all of them on the netmap module and on emulated pipes.
    /// One `getsockopt` per queue: for a periodic report, not for the packet path.
    pub fn stats(&self) -> Result<PortStats, Error> {
        self.inner.backend.stats(None)
    }

    /// The counters of the queue behind RX ring `index` (`0..num_rx_rings()`; TX ring
    /// `index` is the same queue), where the kernel counts per queue (AF_XDP: one socket per
    /// queue). AF_PACKET has one ring: its counters are the port's.
    pub fn ring_stats(&self, index: usize) -> Result<PortStats, Error> {
        let n = self.num_rx_rings().max(self.num_tx_rings());
        if index >= n {
            return Err(Error::InvalidRingIndex(index));
        }
        self.inner.backend.stats(Some(index))
    }

    /// Waits until a TX ring has room (see [`Netmap::wait`]); returns whether one has.
    pub fn wait_writable(&self, timeout: Option<Duration>) -> Result<bool, Error> {
        let want = Readiness {
            readable: false,
            writable: true,
        };
        Ok(self.wait(want, timeout)?.writable)
    }
}

impl AsFd for Netmap {
    /// The netmap file descriptor (kernel), or the RX notifier (emulated backend), for
    /// callers that poll it themselves: it becomes readable when packets arrive. (On the
    /// emulated backend, handing it out makes every delivery signal it; the port's own waits
    /// signal only while someone waits.)
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.backend.exposed_rx_fd()
    }
}

impl AsRawFd for Netmap {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Queries a port's geometry without registering it (kernel backend only).
#[cfg(netmap_kernel)]
pub fn port_info(name: &str) -> Result<PortInfo, Error> {
    backend::port_info(&PortSpec::parse(name)?)
}

/// Queries the memory pools of the allocator `name` uses, without registering (kernel only).
#[cfg(netmap_kernel)]
pub fn pools_info(name: &str) -> Result<PoolsInfo, Error> {
    backend::pools_info(&PortSpec::parse(name)?)
}

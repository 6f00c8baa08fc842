//! [`PortInner`]: what a port and its ring handles share (the driver, the checked rings and
//! the mapping), and the hooks the Tokio layer calls on a port (its one way to the driver).

use std::sync::Arc;

#[cfg(feature = "tokio-async")]
use crate::backend::RingWaker;
use crate::backend::{Backend, MemIdentity, Readiness};
#[cfg(feature = "tokio-async")]
use crate::error::Error;
use crate::port_name::PortSpec;
use crate::region::Region;
use crate::ring::BoundRing;
#[cfg(feature = "tokio-async")]
use crate::ring::{distance, Dir};
use crate::sync::held::Held;

/// State shared by a [`Netmap`](crate::Netmap) and every ring handle taken from it. The mapping and the
/// registration live until the last of them is dropped.
#[derive(Debug)]
pub(crate) struct PortInner {
    pub(crate) backend: Backend,
    pub(crate) tx: Vec<BoundRing>,
    pub(crate) rx: Vec<BoundRing>,
    pub(crate) spec: PortSpec,
    pub(crate) name: String,
    pub(crate) mem: MemIdentity,
    pub(crate) extra_bufs: u32,
    pub(crate) bufs_head: u32,
    /// The buffers this process's handles hold in this memory (shared by every port on it).
    pub(crate) held: Arc<Held>,
    /// Rings sharing slots' buffers with another ring: `(ring offset, group)`.
    pub(crate) slot_groups: Vec<(usize, usize)>,
    /// Spin time of a blocking wait before it sleeps (`NetmapBuilder::busy_poll`).
    pub(crate) busy_poll: Option<std::time::Duration>,
    // Declared last: dropped after the backend and the ring views.
    pub(crate) region: Arc<Region>,
}

impl PortInner {
    /// [`Netmap::wait`](crate::Netmap::wait), which its ring handles call too.
    pub(crate) fn wait(
        &self,
        want: Readiness,
        timeout: Option<std::time::Duration>,
    ) -> Result<Readiness, crate::error::Error> {
        let inner = self;
        if !want.readable && !want.writable {
            // Nothing could end the wait but the timeout.
            return Ok(inner.readiness());
        }
        let mut timeout = timeout;
        if let Some(spin) = inner.busy_poll {
            let start = std::time::Instant::now();
            if let Some(r) = inner.spin(want, timeout.map_or(spin, |t| t.min(spin)))? {
                return Ok(r);
            }
            timeout = timeout.map(|t| t.saturating_sub(start.elapsed()));
            if timeout == Some(std::time::Duration::ZERO) {
                return Ok(inner.readiness());
            }
        }
        inner.backend.wait(want, timeout, &|| inner.readiness())
    }

    /// Syncs the wanted directions and looks at the rings in a loop until one is ready
    /// (`Some`) or `budget` passes (`None`): the spinning half of a busy-polling wait.
    pub(crate) fn spin(
        &self,
        want: Readiness,
        budget: std::time::Duration,
    ) -> Result<Option<Readiness>, crate::error::Error> {
        let start = std::time::Instant::now();
        loop {
            if want.writable {
                self.backend.txsync()?;
            }
            if want.readable {
                self.backend.rxsync()?;
            }
            let r = self.readiness();
            if (want.readable && r.readable) || (want.writable && r.writable) {
                return Ok(Some(r));
            }
            if start.elapsed() >= budget {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    /// Readiness as the kernel's poll computes it: `cur != tail` on some bound ring.
    pub(crate) fn readiness(&self) -> Readiness {
        let ready =
            |rings: &[BoundRing]| rings.iter().any(|r| r.raw.load_tail() != r.raw.load_cur());
        Readiness {
            readable: ready(&self.rx),
            writable: ready(&self.tx),
        }
    }
}

/// What the Tokio layer asks of a port: the one place where it reaches the driver, always
/// through the sync layer.
#[cfg(feature = "tokio-async")]
impl crate::sync::Netmap {
    /// Syncs every ring of the registration in direction `dir` (`NIOC*SYNC`) with the heads
    /// as they are published.
    #[inline]
    pub(crate) fn sync_dir(&self, dir: Dir) -> Result<(), Error> {
        match dir {
            Dir::Rx => self.inner.backend.rxsync(),
            Dir::Tx => self.inner.backend.txsync(),
        }
    }

    /// Whether ring `idx` in direction `dir` has `need` packets (RX: at least one) or free
    /// slots (TX) for the user, as the kernel's poll computes it from `cur` and `tail`, with
    /// `cur` the handle's last published cursor. A pointer outside the ring (written by a
    /// broken peer) counts as no work, so a corrupt ring cannot make a waiter spin.
    pub(crate) fn ring_ready(&self, dir: Dir, idx: usize, need: u32) -> bool {
        let list = match dir {
            Dir::Rx => &self.inner.rx,
            Dir::Tx => &self.inner.tx,
        };
        let Some(b) = list.get(idx) else {
            return false;
        };
        let n = b.raw.num_slots();
        let (cur, tail) = (b.raw.load_cur(), b.raw.load_tail());
        if cur >= n || tail >= n {
            return false;
        }
        distance(cur, tail, n) >= need.max(1)
    }

    /// How soon a waiter should sync again by itself (see `Driver::retry_after`).
    #[inline]
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        self.inner.backend.retry_after()
    }

    /// A readiness source of ring `idx` in direction `dir` alone (see [`RingWaker`]).
    pub(crate) fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        self.inner.backend.ring_waker(dir, idx)
    }
}

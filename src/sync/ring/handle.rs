//! [`Handle`]: what both ring handle types share: the view of the ring, the cursors, the
//! buffers held (see `held.rs`) and the process-wide claim on the ring; and the sync that
//! publishes the cursor and moves the tail.

use std::sync::Arc;

use crate::abi::NR_TIMESTAMP;
use crate::error::Error;
use crate::ring::{advance, distance, next, Dir, RawRing};
use crate::sync::claim::Claim;
use crate::sync::held::{Held, Mirror, NO_BUF};
use crate::sync::port_inner::PortInner;

/// Distance from the last sync to a handle's [`mark`](Handle::mark).
fn mark_gap(dir: Dir, n: u32) -> u32 {
    match dir {
        Dir::Rx => n.div_ceil(2),
        Dir::Tx => (n / 4).max(1),
    }
}

/// What both handle types share: the view, the cursors and the claim on the ring.
#[derive(Debug)]
pub(in crate::sync) struct Handle {
    pub(in crate::sync) raw: RawRing,
    pub(in crate::sync) head: u32,
    pub(in crate::sync) tail: u32,
    pub(in crate::sync) published: u32,
    /// Where the cursor stands when enough has piled up since the last sync that the Tokio
    /// layer should sync early (RX: half a ring consumed; TX: a quarter ring queued). Kept
    /// here so that every sync, whatever its path, moves it; one compare per packet.
    pub(in crate::sync) mark: u32,
    pub(in crate::sync) index: usize,
    dir: Dir,
    /// netmap's ring id and whether it is a host ring, taken from the port when the handle
    /// was made.
    pub(in crate::sync) ring_id: u16,
    pub(in crate::sync) host: bool,
    pub(in crate::sync) port: Arc<PortInner>,
    /// The buffers this handle holds: each slot of `[published, tail)` with the index it had
    /// when it entered the user's part of the ring. Views are made from it, never from the
    /// index in shared memory (see `held.rs`).
    pub(in crate::sync) mirror: Arc<Mirror>,
    pub(in crate::sync) held: Arc<Held>,
    /// RX: whether the driver leaves each packet's receive time in its slot
    /// ([`RawRing::slot_stamp`]), else the ring's `ts` stands for every packet of a sync.
    slot_stamps: bool,
    /// RX: the ring's `ts` (ns since the epoch, 0: none) when the tail last moved.
    ring_stamp: u64,
    /// This process's only handle of the ring (released on drop).
    _claim: Claim,
}

impl Handle {
    pub(in crate::sync) fn new(
        port: Arc<PortInner>,
        index: usize,
        dir: Dir,
    ) -> Result<Handle, Error> {
        let list = match dir {
            Dir::Tx => &port.tx,
            Dir::Rx => &port.rx,
        };
        let b = list.get(index).ok_or(Error::InvalidRingIndex(index))?;
        let claim = Claim::take(port.mem, b.off).ok_or(Error::RingInUse(index))?;
        let raw = b.raw.clone();
        let head = raw.load_head();
        let tail = raw.load_tail();
        if head >= raw.num_slots() || tail >= raw.num_slots() {
            return Err(Error::RingState(format!(
                "ring {index}: head {head} / tail {tail} outside 0..{}",
                raw.num_slots()
            )));
        }
        let mark = advance(head, mark_gap(dir, raw.num_slots()), raw.num_slots());
        if dir == Dir::Rx {
            // Ask the driver (netmap's or ours) to stamp the ring at each rxsync.
            raw.set_ring_flags(NR_TIMESTAMP);
        }
        let slot_stamps = dir == Dir::Rx && port.backend.slot_stamps();
        let ring_stamp = raw.load_ts();
        let (ring_id, host) = (b.ring_id, b.host);
        let held = port.held.clone();
        let group = port
            .slot_groups
            .iter()
            .find(|(off, _)| *off == b.off)
            .map_or(b.off, |&(_, g)| g);
        let mirror = held.mirror(raw.num_slots(), head, group);
        // SAFETY: [head, tail) is the user's part of the ring (tail loaded with Acquire), and
        // this handle is the process's only one of the ring (the claim above).
        unsafe { held.claim(&mirror, &raw, head, tail, tail) };
        Ok(Handle {
            raw,
            head,
            tail,
            published: head,
            mark,
            index,
            dir,
            ring_id,
            host,
            port,
            mirror,
            held,
            slot_stamps,
            ring_stamp,
            _claim: claim,
        })
    }

    /// The buffer slot `k` holds for this handle (`NO_BUF`: none).
    #[inline(always)]
    pub(in crate::sync) fn buf_of(&self, k: u32) -> u32 {
        self.mirror.buf_of(k)
    }

    /// Receive time of the packet in slot `k` (ns since the epoch, 0: none).
    ///
    /// # Safety
    /// Slot `k` is the user's (in `[head, tail)` after an Acquire load of `tail`).
    #[inline(always)]
    pub(in crate::sync) unsafe fn stamp_of(&self, k: u32) -> u64 {
        if self.slot_stamps {
            // SAFETY: per the caller's contract.
            unsafe { self.raw.slot_stamp(k) }
        } else {
            self.ring_stamp
        }
    }

    /// Claims slot `k`'s buffer again after it was refused (a TX slot cannot be skipped the
    /// way a corrupt RX slot is): what the slot names now, if it is free. Returns whether
    /// the slot holds a buffer now. Out of the hot path.
    #[cold]
    #[inline(never)]
    pub(in crate::sync) fn reclaim(&mut self, k: u32) -> bool {
        let n = self.raw.num_slots();
        // SAFETY: the callers pass a slot of the user's part of the ring (a TX slot at or
        // after the cursor, before the tail, which stays the end of the held slots).
        unsafe {
            self.held
                .claim(&self.mirror, &self.raw, k, next(k, n), self.tail)
        };
        self.buf_of(k) != NO_BUF
    }

    /// Slots between the cursor and the kernel's tail, refreshing the cached tail.
    #[inline]
    pub(in crate::sync) fn refresh(&mut self) -> u32 {
        self.load_tail();
        distance(self.head, self.tail, self.raw.num_slots())
    }

    /// Refreshes the cached tail from shared memory. A tail outside the ring (only a broken or
    /// hostile peer writes one) is ignored: the cache keeps the last good value, so the cursor
    /// never runs past the ring and no loop spins on a bogus range.
    ///
    /// Slots the tail moves over enter the user's part of the ring: their buffers are claimed
    /// (see `held.rs`). A tail that moves backwards (only a peer that breaks the protocol
    /// writes one) is ignored the same way.
    #[inline]
    pub(in crate::sync) fn load_tail(&mut self) {
        let t = self.raw.load_tail();
        if t == self.tail {
            return;
        }
        let n = self.raw.num_slots();
        if t < n && distance(self.published, t, n) > distance(self.published, self.tail, n) {
            self.claim_to(t);
        } else {
            self.ignore_tail(t);
        }
    }

    /// Claims the slots `[tail, t)` and moves the cached tail to `t`.
    #[inline(never)]
    fn claim_to(&mut self, t: u32) {
        // SAFETY: [tail, t) just entered the user's part of the ring: `t` was loaded with
        // Acquire and lies ahead of the cached tail, within the ring.
        unsafe { self.held.claim(&self.mirror, &self.raw, self.tail, t, t) };
        self.tail = t;
        if self.dir == Dir::Rx && !self.slot_stamps {
            // Stamped before the tail was published; read after its Acquire load.
            self.ring_stamp = self.raw.load_ts();
        }
    }

    #[cold]
    #[inline(never)]
    fn ignore_tail(&self, t: u32) {
        tracing::warn!(
            ring = self.index,
            tail = t,
            cached = self.tail,
            "ignoring a tail outside the ring or behind the cached one"
        );
    }

    /// Hands the slots before the cursor back (publishes `head` and `cur`) without a sync:
    /// the driver takes them at its next one.
    #[inline]
    pub(in crate::sync) fn publish(&mut self) {
        // Every view of the slots handed back has ended (this needs `&mut self`): their
        // buffers are no longer this handle's.
        self.mirror.release_to(self.head);
        self.raw.publish_head(self.head);
        self.published = self.head;
        let n = self.raw.num_slots();
        self.mark = advance(self.head, mark_gap(self.dir, n), n);
    }

    #[inline]
    pub(in crate::sync) fn sync(&mut self) -> Result<(), Error> {
        let batch = distance(self.published, self.head, self.raw.num_slots());
        let _span = tracing::trace_span!(
            "netmap_sync",
            port = %self.port.name,
            ring = self.index,
            dir = ?self.dir,
            batch
        )
        .entered();
        self.publish();
        let r = match self.dir {
            Dir::Tx => self.port.backend.txsync(),
            Dir::Rx => self.port.backend.rxsync(),
        };
        self.load_tail();
        if let Err(e) = &r {
            tracing::warn!(error = %e, ring = self.index, "sync failed");
        }
        r
    }

    /// Logs a corrupt slot that is skipped (the error value is built and dropped out of line,
    /// so a per-packet loop carries no drop code for it).
    #[cold]
    #[inline(never)]
    pub(in crate::sync) fn log_corrupt(&self, slot: u32, buf_idx: u32, len: u16) {
        drop(self.corrupt(slot, buf_idx, len));
    }

    #[cold]
    #[inline(never)]
    pub(in crate::sync) fn corrupt(&self, slot: u32, buf_idx: u32, len: u16) -> Error {
        // A slot refused when it was claimed: report the index it names in shared memory.
        let buf_idx = if buf_idx == NO_BUF {
            // SAFETY: the slot is still the user's (reported before the next sync).
            unsafe { self.raw.slot_buf_idx(slot) }
        } else {
            buf_idx
        };
        tracing::warn!(
            ring = self.index,
            slot,
            buf_idx,
            len,
            "slot holds an out-of-range buffer"
        );
        Error::CorruptSlot {
            ring: self.index,
            slot,
            buf_idx,
            len,
        }
    }
}

impl Drop for Handle {
    /// The buffers of `[published, tail)` are no longer this process's to lend.
    fn drop(&mut self) {
        self.held.forget(&self.mirror);
    }
}

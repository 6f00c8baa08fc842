//! The control area at the start of an emulated memory region: everything two processes
//! sharing the region must agree on, kept in the region itself and touched only through
//! atomics.
//!
//! ```text
//! [header 4 KiB: magic, geometry, allocator cursors and free lists]
//! [buffer bitmap: one bit per buffer, set while some slot owns it]
//! [pipe table: `max_pipes` slots of SLOT_SIZE bytes: name, geometry, ring offsets,
//!  per-link protocol words, end ownership, wake-up cells]
//! [netmap_if area][ring area][buffers]      <- the netmap layout, as before
//! ```
//!
//! The geometry is computed locally from the region length, never read back: the other
//! process may write anything here, so every offset and index read from the area is
//! bounds-checked before it is used, and a value out of range is an error, never a pointer.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::{BUF_SIZE, MAX_RINGS};
use crate::region::Region;

/// "NMRSEMU" + layout version 1.
pub(super) const MAGIC: u64 = 0x4e4d_5253_454d_5501;
const HDR: usize = 4096;
/// Bytes per pipe slot.
pub(super) const SLOT_SIZE: usize = 16384;
const IF_FREE: usize = 64;
const RING_FREE: usize = 128;
/// Bytes of the longest pipe name the table stores.
pub(super) const NAME_MAX: usize = 64;

// Header offsets.
const H_MAGIC: usize = 0;
const H_LEN: usize = 8;
const H_IF_NEXT: usize = 16;
const H_RING_NEXT: usize = 24;
const H_BUF_HINT: usize = 32;
const H_IF_FREE: usize = 64;
const H_RING_FREE: usize = H_IF_FREE + IF_FREE * 16;
const _: () = assert!(H_RING_FREE + RING_FREE * 16 <= HDR);

// Pipe slot offsets.
const S_STATE: usize = 0;
const S_NRINGS: usize = 4;
const S_NSLOTS: usize = 8;
const S_NAME_LEN: usize = 12;
const S_NAME: usize = 16;
const S_END_STATE: usize = S_NAME + NAME_MAX;
const S_END_PID: usize = S_END_STATE + 8;
const S_RING_OFF: usize = S_END_PID + 8;
const S_LINKS: usize = S_RING_OFF + 4 * MAX_RINGS as usize * 4;
const LINK_SIZE: usize = 32;
const S_CELLS: usize = S_LINKS + 2 * MAX_RINGS as usize * LINK_SIZE;
const CELL_SIZE: usize = 16;
const _: () = assert!(S_CELLS + 8 * MAX_RINGS as usize * CELL_SIZE <= SLOT_SIZE);

/// A pipe slot is free: nothing reads its other words.
pub(super) const SLOT_FREE: u32 = 0;
/// A pipe slot describes a live pipe.
pub(super) const SLOT_LIVE: u32 = 1;
/// A pipe is being built in the slot: its ring offset words name what it holds so far.
pub(super) const SLOT_BUILDING: u32 = 2;
/// A pipe is being torn down in the slot: what its words still name is being freed.
pub(super) const SLOT_DYING: u32 = 3;
/// A pipe end was never bound.
#[allow(dead_code)]
pub(super) const END_NEVER: u32 = 0;
/// A pipe end is bound (by the process in `end_pid`).
pub(super) const END_BOUND: u32 = 1;
/// A pipe end was closed cleanly.
pub(super) const END_CLOSED: u32 = 2;

/// Words of one link (one direction of one ring pair), in the slot's link table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum W {
    TxHwcur = 0,
    TxHwtail = 1,
    /// Last slot the sender may fill, released by the receiver.
    PipeTail = 2,
    RxHwcur = 3,
    RxHwtail = 4,
    /// The RX tail the receiving user was last shown.
    RxTailPub = 5,
}

/// Where things are in a region of a given length. Both processes compute the same.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) len: usize,
    bitmap_off: usize,
    bitmap_words: usize,
    slots_off: usize,
    pub(super) max_pipes: usize,
    pub(super) if_start: usize,
    pub(super) if_end: usize,
    pub(super) ring_end: usize,
    pub(super) nbufs: u32,
}

impl Geometry {
    pub(super) fn for_len(len: usize) -> Geometry {
        let max_bufs = len / BUF_SIZE as usize;
        let bitmap_words = max_bufs.div_ceil(64);
        let bitmap_off = HDR;
        let slots_off = (bitmap_off + bitmap_words * 8).next_multiple_of(4096);
        let max_pipes = (len >> 22).clamp(4, 64);
        let if_start = slots_off + max_pipes * SLOT_SIZE;
        let if_end = if_start + (len / 256).max(16 << 10);
        let ring_end = if_end + (len / 16).max(64 << 10);
        let nbufs = (len.saturating_sub(ring_end) / BUF_SIZE as usize) as u32;
        Geometry {
            len,
            bitmap_off,
            bitmap_words,
            slots_off,
            max_pipes,
            if_start,
            if_end,
            ring_end,
            nbufs,
        }
    }
}

/// Typed access to the control area of one region.
#[derive(Clone)]
pub(super) struct Ctl {
    pub(super) region: Arc<Region>,
    pub(super) g: Geometry,
}

/// The allocator of the interface and ring areas and of the buffer pool (`impl Ctl`).
mod alloc;
pub(super) use alloc::Area;

/// Test-only crash points (`crash`): kill the process at a named step of the shared
/// protocol. Compiled to nothing outside the crate's own tests.
#[cfg(test)]
pub(super) mod crash;

/// Crash point `at` (see [`crash`]): nothing outside tests.
#[inline(always)]
pub(super) fn crash_point(at: &'static str) {
    #[cfg(test)]
    crash::point(at);
    let _ = at;
}

impl Ctl {
    pub(super) fn new(region: Arc<Region>) -> Ctl {
        let g = Geometry::for_len(region.len());
        assert!(
            g.ring_end < g.len,
            "emulated memory too small for its control area"
        );
        Ctl { region, g }
    }

    /// The address of the `size`-byte, `size`-aligned word at `off` of the control area.
    #[inline(always)]
    fn word(&self, off: usize, size: usize) -> *mut u8 {
        assert!(
            off + size <= self.g.if_start,
            "control word {off} outside the area"
        );
        self.region
            .at(off, size, size)
            .expect("control word inside the region")
            .as_ptr()
    }

    /// The 32-bit word at `off` of the control area.
    #[inline(always)]
    pub(super) fn a32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: a 4-aligned word inside the region (checked by `word`), which outlives
        // `self`; words of the control area are only ever accessed atomically, by every
        // process.
        unsafe { AtomicU32::from_ptr(self.word(off, 4).cast()) }
    }

    /// The 64-bit word at `off` of the control area.
    #[inline(always)]
    pub(super) fn a64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: as for `a32`, 8-aligned.
        unsafe { AtomicU64::from_ptr(self.word(off, 8).cast()) }
    }

    /// Writes a fresh header (the creator, before anyone else can map the region).
    pub(super) fn init(&self) {
        self.a64(H_LEN).store(self.g.len as u64, Ordering::Relaxed);
        self.a64(H_IF_NEXT)
            .store(self.g.if_start as u64, Ordering::Relaxed);
        self.a64(H_RING_NEXT)
            .store(self.g.if_end as u64, Ordering::Relaxed);
        // Buffers 0 and 1 are reserved, as in the kernel.
        self.a64(self.g.bitmap_off).store(3, Ordering::Relaxed);
        self.a64(H_MAGIC).store(MAGIC, Ordering::Release);
    }

    /// Whether the header says this is a region of our layout and length.
    #[cfg_attr(not(all(target_os = "linux", not(miri))), allow(dead_code))]
    pub(super) fn valid(&self) -> bool {
        self.a64(H_MAGIC).load(Ordering::Acquire) == MAGIC
            && self.a64(H_LEN).load(Ordering::Relaxed) == self.g.len as u64
    }

    /// Offset of pipe slot `s`.
    pub(super) fn slot(&self, s: usize) -> usize {
        assert!(s < self.g.max_pipes);
        self.g.slots_off + s * SLOT_SIZE
    }

    pub(super) fn slot_state(&self, s: usize) -> &AtomicU32 {
        self.a32(self.slot(s) + S_STATE)
    }

    /// (rings, slots) as the slot says: not validated here.
    pub(super) fn slot_geometry(&self, s: usize) -> (u32, u32) {
        let o = self.slot(s);
        (
            self.a32(o + S_NRINGS).load(Ordering::Relaxed),
            self.a32(o + S_NSLOTS).load(Ordering::Relaxed),
        )
    }

    pub(super) fn set_slot_geometry(&self, s: usize, nrings: u32, nslots: u32) {
        let o = self.slot(s);
        self.a32(o + S_NRINGS).store(nrings, Ordering::Relaxed);
        self.a32(o + S_NSLOTS).store(nslots, Ordering::Relaxed);
    }

    /// Whether slot `s` is live and named `name`.
    pub(super) fn slot_named(&self, s: usize, name: &[u8]) -> bool {
        let o = self.slot(s);
        if self.slot_state(s).load(Ordering::Acquire) != SLOT_LIVE
            || self.a32(o + S_NAME_LEN).load(Ordering::Relaxed) as usize != name.len()
        {
            return false;
        }
        name.chunks(8).enumerate().all(|(k, c)| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.a64(o + S_NAME + k * 8).load(Ordering::Relaxed) == u64::from_le_bytes(b)
        })
    }

    pub(super) fn set_slot_name(&self, s: usize, name: &[u8]) {
        assert!(name.len() <= NAME_MAX);
        let o = self.slot(s);
        for k in 0..NAME_MAX / 8 {
            let mut b = [0u8; 8];
            if let Some(c) = name.chunks(8).nth(k) {
                b[..c.len()].copy_from_slice(c);
            }
            self.a64(o + S_NAME + k * 8)
                .store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.a32(o + S_NAME_LEN)
            .store(name.len() as u32, Ordering::Relaxed);
    }

    /// Ring offset word `[end][dir][ring]` of slot `s`.
    pub(super) fn ring_off(&self, s: usize, end: usize, dir: usize, i: usize) -> &AtomicU32 {
        assert!(end < 2 && dir < 2 && i < MAX_RINGS as usize);
        let k = (end * 2 + dir) * MAX_RINGS as usize + i;
        self.a32(self.slot(s) + S_RING_OFF + k * 4)
    }

    /// Word `w` of link `[sending end][ring]` of slot `s`.
    #[inline(always)]
    pub(super) fn link(&self, s: usize, end: usize, i: usize, w: W) -> &AtomicU32 {
        assert!(end < 2 && i < MAX_RINGS as usize);
        let k = end * MAX_RINGS as usize + i;
        self.a32(self.slot(s) + S_LINKS + k * LINK_SIZE + w as usize * 4)
    }

    /// State word of end `end` of slot `s` (`END_*`).
    pub(super) fn end_state(&self, s: usize, end: usize) -> &AtomicU32 {
        self.a32(self.slot(s) + S_END_STATE + end * 4)
    }

    /// The process id that bound end `end` of slot `s` last.
    pub(super) fn end_pid(&self, s: usize, end: usize) -> &AtomicU32 {
        self.a32(self.slot(s) + S_END_PID + end * 4)
    }

    /// Offset of wake-up cell `[end][dir][ring][kind]` of slot `s` (kind 0: the
    /// registration's, 1: the ring handle's).
    pub(super) fn cell(&self, s: usize, end: usize, dir: usize, i: usize, kind: usize) -> usize {
        assert!(end < 2 && dir < 2 && kind < 2 && i < MAX_RINGS as usize);
        let k = ((end * 2 + dir) * MAX_RINGS as usize + i) * 2 + kind;
        self.slot(s) + S_CELLS + k * CELL_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_compare_exactly() {
        let ctl = Ctl::new(Arc::new(Region::anonymous(1 << 20).unwrap()));
        ctl.init();
        ctl.set_slot_name(1, b"abcdefghij{1");
        ctl.slot_state(1).store(SLOT_LIVE, Ordering::Release);
        assert!(ctl.slot_named(1, b"abcdefghij{1"));
        assert!(!ctl.slot_named(1, b"abcdefghij{2"));
        assert!(!ctl.slot_named(0, b"abcdefghij{1"));
    }
}

//! Raw access to netmap rings and slots in shared memory.
//!
//! This is the one module that turns offsets in a [`Region`] into pointers to rings, slots and
//! buffers. The rules it enforces:
//!
//! - A [`RawRing`] is only built after its header, slot array and buffer pool have been
//!   checked to lie inside the region, and it keeps no reference into the region: the region
//!   is kept alive by whoever owns the `RawRing` (through an `Arc`).
//! - `head`, `cur` and `tail` are only accessed atomically: the kernel (or the emulated
//!   kernel, on another thread) reads `head`/`cur` and writes `tail` at any time.
//! - Slot contents are plain memory that belongs to exactly one party at a time under the
//!   netmap ownership rules; the slot accessors are `unsafe fn`s whose callers state why they
//!   own the slot.
//! - Every buffer index taken from a slot is bounds-checked ([`RawRing::buf_ptr`]) before a
//!   pointer to the buffer is formed, and no buffer may overlap the rings or interfaces of the
//!   port (`guard_end`).

use std::ptr::{addr_of, addr_of_mut, NonNull};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use super::interface::ring_bytes;
use crate::abi::{NetmapRing, NetmapSlot};
use crate::error::Error;
use crate::region::Region;

/// The panic for a slot index past the ring (out of line and taking the index by value, so
/// the per-packet paths store nothing for it).
#[cold]
#[inline(never)]
fn slot_out_of_range(k: u32) -> ! {
    panic!("slot index {k} outside the ring")
}

/// A checked view of one ring in a region.
#[derive(Debug, Clone)]
pub(crate) struct RawRing {
    ring: NonNull<NetmapRing>,
    num_slots: u32,
    buf_size: u32,
    /// Address of buffer 0 (may lie before the region; only indices in `min_idx..max_idx`
    /// are ever turned into pointers).
    buf_base: usize,
    region_base: NonNull<u8>,
    min_idx: u32,
    max_idx: u32,
}

// SAFETY: a RawRing is a checked pointer into a region that its owner keeps alive. Its safe
// methods only touch head/cur/tail atomically or compute bounds-checked pointers; slot access
// is `unsafe` and governed by the ring ownership protocol, not by which thread holds the view.
unsafe impl Send for RawRing {}
// SAFETY: see `Send` above: no safe method mutates non-atomic shared state.
unsafe impl Sync for RawRing {}

/// The contents of one slot, read by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SlotVal {
    pub buf_idx: u32,
    pub len: u16,
    pub flags: u16,
    pub ptr: u64,
}

impl RawRing {
    /// Builds a checked view of the ring at `ring_off` bytes into `region`.
    ///
    /// `guard_end` is the end offset of the port's own structures (interface and rings):
    /// buffers that would start below it are refused, so a buffer slice can never alias ring
    /// memory that is accessed atomically.
    pub(crate) fn new(region: &Region, ring_off: usize, guard_end: usize) -> Result<Self, Error> {
        let hdr = size_of::<NetmapRing>();
        let ring = region
            .at(ring_off, hdr, align_of::<NetmapRing>())
            .ok_or_else(|| {
                Error::BadLayout(format!(
                    "ring at offset {ring_off} lies outside the {}-byte region or is misaligned",
                    region.len()
                ))
            })?
            .cast::<NetmapRing>();
        // SAFETY: the header lies inside the region (checked above) and these fields are
        // written once by the kernel before registration returns and never changed after.
        let (num_slots, buf_size, buf_ofs) = unsafe {
            let r = ring.as_ptr();
            (
                addr_of!((*r).num_slots).read(),
                addr_of!((*r).nr_buf_size).read(),
                addr_of!((*r).buf_ofs).read(),
            )
        };
        if num_slots < 2 {
            return Err(Error::BadLayout(format!(
                "ring at {ring_off} has {num_slots} slots"
            )));
        }
        let slots_bytes = (num_slots as usize)
            .checked_mul(size_of::<NetmapSlot>())
            .ok_or_else(|| Error::BadLayout("slot array size overflows".into()))?;
        if region.at(ring_off + hdr, slots_bytes, 8).is_none() {
            return Err(Error::BadLayout(format!(
                "ring at {ring_off} with {num_slots} slots does not fit in the region"
            )));
        }
        if buf_size == 0 || buf_size > u16::MAX as u32 + 1 {
            return Err(Error::BadLayout(format!("buffer size {buf_size}")));
        }
        let base_off = (ring_off as i64)
            .checked_add(buf_ofs)
            .filter(|b| *b >= 0 && (*b as u64) <= region.len() as u64)
            .ok_or_else(|| {
                Error::BadLayout(format!("buffer pool offset {buf_ofs} leaves the region"))
            })? as usize;
        let max_idx = (region.len() - base_off) / buf_size as usize;
        let ring = RawRing {
            ring,
            num_slots,
            buf_size,
            buf_base: base_off,
            region_base: region.base(),
            min_idx: 0,
            max_idx: u32::try_from(max_idx).unwrap_or(u32::MAX),
        };
        Ok(ring.with_guard(guard_end))
    }

    /// The same view with buffers starting below `guard_end` refused. Uses the geometry this
    /// view already read and validated: shared memory is not read again, so a value that
    /// changes meanwhile cannot make two checks disagree.
    pub(crate) fn with_guard(mut self, guard_end: usize) -> RawRing {
        let bs = self.buf_size as usize;
        let min_idx = if self.buf_base >= guard_end {
            0
        } else {
            (guard_end - self.buf_base).div_ceil(bs)
        };
        let min_idx = u32::try_from(min_idx).unwrap_or(u32::MAX).max(self.min_idx);
        // An empty range stays empty (max_idx - min_idx is used as an unsigned span).
        self.max_idx = self.max_idx.max(min_idx);
        self.min_idx = min_idx;
        self
    }

    /// The same view with buffers outside `pool` (a byte range of the region: the memory's
    /// buffer pool, as its allocator laid it out) refused. A ring's `buf_ofs` is shared
    /// memory a peer can write before it is read; with this bound, whatever it said, a buffer
    /// never overlaps anything but the pool: no ring, interface or control word of any
    /// registration.
    pub(crate) fn with_pool(mut self, pool: std::ops::Range<usize>) -> RawRing {
        let bs = self.buf_size as usize;
        let lo = if self.buf_base >= pool.start {
            0
        } else {
            (pool.start - self.buf_base).div_ceil(bs)
        };
        let hi = if pool.end <= self.buf_base {
            0
        } else {
            (pool.end - self.buf_base) / bs
        };
        let lo = u32::try_from(lo).unwrap_or(u32::MAX).max(self.min_idx);
        let hi = u32::try_from(hi).unwrap_or(u32::MAX).min(self.max_idx);
        self.min_idx = lo;
        self.max_idx = hi.max(lo);
        self
    }

    /// Byte range `[start, end)` of the ring header and its slots, relative to the region.
    pub(crate) fn extent(&self) -> (usize, usize) {
        let start = self.ring.as_ptr().addr() - self.region_base.as_ptr().addr();
        (start, start + ring_bytes(self.num_slots))
    }

    /// The ring header pointer (handing it out is safe; using it is not).
    pub(crate) fn ring_ptr(&self) -> *mut NetmapRing {
        self.ring.as_ptr()
    }

    /// Number of slots.
    #[inline(always)]
    pub(crate) fn num_slots(&self) -> u32 {
        self.num_slots
    }

    /// Buffer size in bytes.
    #[inline(always)]
    pub(crate) fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// One past the largest buffer index this view accepts.
    pub(crate) fn buf_limit(&self) -> u32 {
        self.max_idx
    }

    /// Valid buffer indices for this ring's mapping.
    #[cfg(test)]
    pub(crate) fn buf_range(&self) -> std::ops::Range<u32> {
        self.min_idx..self.max_idx
    }

    #[inline(always)]
    fn atomic(&self, f: fn(*mut NetmapRing) -> *mut u32) -> &AtomicU32 {
        // SAFETY: `f` projects to one of head/cur/tail, which are 4-byte aligned u32 fields
        // inside the checked header; they are only ever accessed atomically (by us and by the
        // other party), and the region outlives `self` (held by the owner of this RawRing).
        unsafe { AtomicU32::from_ptr(f(self.ring.as_ptr())) }
    }

    fn head_ptr(r: *mut NetmapRing) -> *mut u32 {
        // SAFETY: projection only, no dereference.
        unsafe { addr_of_mut!((*r).head) }
    }
    fn cur_ptr(r: *mut NetmapRing) -> *mut u32 {
        // SAFETY: projection only, no dereference.
        unsafe { addr_of_mut!((*r).cur) }
    }
    fn tail_ptr(r: *mut NetmapRing) -> *mut u32 {
        // SAFETY: projection only, no dereference.
        unsafe { addr_of_mut!((*r).tail) }
    }

    /// Loads `head`.
    #[inline(always)]
    pub(crate) fn load_head(&self) -> u32 {
        self.atomic(Self::head_ptr).load(Ordering::Acquire)
    }
    /// Loads `cur`.
    #[inline(always)]
    pub(crate) fn load_cur(&self) -> u32 {
        self.atomic(Self::cur_ptr).load(Ordering::Acquire)
    }
    /// Loads `tail` (Acquire: slot contents written before the tail was published are
    /// visible afterwards).
    #[inline(always)]
    pub(crate) fn load_tail(&self) -> u32 {
        self.atomic(Self::tail_ptr).load(Ordering::Acquire)
    }
    /// Publishes `cur` then `head` (Release): a reader that sees the new `head` sees the new
    /// `cur` and every slot written before, and `cur` never lags behind `head`.
    #[inline(always)]
    pub(crate) fn publish_head(&self, v: u32) {
        self.atomic(Self::cur_ptr).store(v, Ordering::Release);
        self.atomic(Self::head_ptr).store(v, Ordering::Release);
    }
    /// Publishes `tail` (Release). Used by the emulated kernel only.
    #[inline(always)]
    pub(crate) fn store_tail(&self, v: u32) {
        self.atomic(Self::tail_ptr).store(v, Ordering::Release);
    }

    /// Sets `bits` in the ring's `flags` (`NR_TIMESTAMP`, ...), keeping the others.
    pub(crate) fn set_ring_flags(&self, bits: u32) {
        // SAFETY: projection only; `flags` is a 4-byte aligned u32 of the checked header.
        let p = unsafe { addr_of_mut!((*self.ring.as_ptr()).flags) };
        // SAFETY: in bounds and aligned; the other party only reads it during a sync, and
        // this crate accesses it atomically only. The region outlives `self`.
        unsafe { AtomicU32::from_ptr(p) }.fetch_or(bits, Ordering::Relaxed);
    }

    /// The ring's `flags`.
    pub(crate) fn ring_flags(&self) -> u32 {
        // SAFETY: as in `set_ring_flags`.
        let p = unsafe { addr_of_mut!((*self.ring.as_ptr()).flags) };
        // SAFETY: as in `set_ring_flags`.
        unsafe { AtomicU32::from_ptr(p) }.load(Ordering::Relaxed)
    }

    /// The two words of the ring's `ts` (seconds, microseconds) as atomics: `None` where a
    /// `timeval` is not two 64-bit words (no ring timestamps there).
    fn ts_words(&self) -> Option<(&AtomicI64, &AtomicI64)> {
        if size_of::<libc::time_t>() != 8 || size_of::<libc::suseconds_t>() != 8 {
            return None;
        }
        let r = self.ring.as_ptr();
        // SAFETY: projections only; `ts` lies in the checked header at offset 40 of a
        // 128-aligned ring, so both 8-byte words are 8-aligned. Both parties write them
        // whole (the kernel during a sync; this crate atomically only); a peer's odd value
        // only makes a wrong stamp. The region outlives `self`.
        unsafe {
            let s = addr_of_mut!((*r).ts.tv_sec).cast::<i64>();
            let u = addr_of_mut!((*r).ts.tv_usec).cast::<i64>();
            Some((AtomicI64::from_ptr(s), AtomicI64::from_ptr(u)))
        }
    }

    /// The ring's `ts` (the last sync that stamped it) in nanoseconds since the Unix epoch;
    /// 0 when unset or out of range. Two relaxed loads: a stamp written meanwhile can pair an
    /// old second with a new microsecond (a wrong stamp, never more); callers read it after
    /// the Acquire load of `tail` that a stamping driver publishes after the stamp.
    #[inline]
    pub(crate) fn load_ts(&self) -> u64 {
        let Some((s, u)) = self.ts_words() else {
            return 0;
        };
        let (s, u) = (s.load(Ordering::Relaxed), u.load(Ordering::Relaxed));
        if !(0..=i64::from(u32::MAX) * 4).contains(&s) || !(0..1_000_000).contains(&u) {
            return 0;
        }
        s as u64 * 1_000_000_000 + u as u64 * 1_000
    }

    /// Stamps the ring's `ts` with `now` (microseconds kept, as a `timeval` holds).
    pub(crate) fn store_ts(&self, now: std::time::SystemTime) {
        let Some((s, u)) = self.ts_words() else {
            return;
        };
        let d = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        s.store(d.as_secs() as i64, Ordering::Relaxed);
        u.store(i64::from(d.subsec_micros()), Ordering::Relaxed);
    }

    /// The receive time a driver left in slot `k`'s `ptr` field (nanoseconds since the
    /// Unix epoch, 0: none). Only the AF_PACKET driver writes one (`ptr` is otherwise unused
    /// on the RX rings of the crate's own drivers).
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    /// (A slot out of range reads 0 rather than panicking, so a loop that drops the value
    /// keeps no check for it.)
    #[inline(always)]
    pub(crate) unsafe fn slot_stamp(&self, k: u32) -> u64 {
        if k >= self.num_slots {
            return 0;
        }
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe { addr_of!((*s).ptr).read() }
    }

    /// The buffer indices of slots `start..start + count`, with one bounds check for the run
    /// (a run past the ring yields nothing).
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns these slots.
    #[inline(always)]
    pub(crate) unsafe fn buf_idx_run(&self, start: u32, count: u32) -> impl Iterator<Item = u32> {
        let ok = start <= self.num_slots && count <= self.num_slots - start;
        let count = if ok { count as usize } else { 0 };
        // SAFETY: the slot array of num_slots entries follows the header inside the region
        // (checked in `new`); start <= num_slots, so this points into it or one past its end.
        let first = unsafe {
            self.ring
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<NetmapRing>())
                .cast::<NetmapSlot>()
                .add(if ok { start as usize } else { 0 })
        };
        // SAFETY: i < count, so start + i < num_slots: in bounds; ownership per the caller's
        // contract.
        (0..count).map(move |i| unsafe { addr_of!((*first.add(i)).buf_idx).read() })
    }

    /// Writes slot `k`'s receive time (see [`RawRing::slot_stamp`]).
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) unsafe fn set_slot_stamp(&self, k: u32, ns: u64) {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe { addr_of_mut!((*s).ptr).write(ns) }
    }

    #[inline(always)]
    fn slot_ptr(&self, k: u32) -> *mut NetmapSlot {
        // Every index comes from cursor arithmetic that wraps at num_slots (and from head/tail
        // values checked against num_slots); the check keeps that an invariant, not a hope.
        if k >= self.num_slots {
            slot_out_of_range(k);
        }
        // SAFETY: the slot array of num_slots entries follows the header inside the region
        // (checked in `new`), and k < num_slots.
        unsafe {
            self.ring
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<NetmapRing>())
                .cast::<NetmapSlot>()
                .add(k as usize)
        }
    }

    /// Reads slot `k`.
    ///
    /// # Safety
    /// The caller owns slot `k` under the ring protocol (user: `[head, tail)` after an
    /// Acquire load of `tail`; kernel side: the complement), so nobody writes it concurrently.
    #[inline(always)]
    pub(crate) unsafe fn slot(&self, k: u32) -> SlotVal {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe {
            SlotVal {
                buf_idx: addr_of!((*s).buf_idx).read(),
                len: addr_of!((*s).len).read(),
                flags: addr_of!((*s).flags).read(),
                ptr: addr_of!((*s).ptr).read(),
            }
        }
    }

    /// Prepares slot `k` to carry a packet: checks its buffer index, then writes its length
    /// and flags and returns the buffer; or returns the out-of-range index and writes nothing.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux drivers
    pub(crate) unsafe fn fill_slot(
        &self,
        k: u32,
        len: u16,
        flags: u16,
    ) -> Result<NonNull<u8>, u32> {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        let idx = unsafe { addr_of!((*s).buf_idx).read() };
        let p = self.buf_ptr(idx).ok_or(idx)?;
        // SAFETY: as above.
        unsafe {
            addr_of_mut!((*s).len).write(len);
            addr_of_mut!((*s).flags).write(flags);
        }
        Ok(p)
    }

    /// Writes the length and flags of slot `k` and returns the pointer to buffer `idx` (an
    /// index the caller read earlier and holds, not the slot's current one); or returns `idx`
    /// and writes nothing when it is outside the buffers of this mapping.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    pub(crate) unsafe fn fill_slot_at(
        &self,
        k: u32,
        idx: u32,
        len: u16,
        flags: u16,
    ) -> Result<NonNull<u8>, u32> {
        let s = self.slot_ptr(k);
        let p = self.buf_ptr(idx).ok_or(idx)?;
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe {
            addr_of_mut!((*s).len).write(len);
            addr_of_mut!((*s).flags).write(flags);
        }
        Ok(p)
    }

    /// The buffer index slot `k` names now.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    pub(crate) unsafe fn slot_buf_idx(&self, k: u32) -> u32 {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe { addr_of!((*s).buf_idx).read() }
    }

    /// Reads the length and flags of slot `k`.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    pub(crate) unsafe fn slot_len_flags(&self, k: u32) -> (u16, u16) {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe { (addr_of!((*s).len).read(), addr_of!((*s).flags).read()) }
    }

    /// Reads buffer index, length and flags of slot `k` (not `ptr`).
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the Linux drivers
    pub(crate) unsafe fn slot_meta(&self, k: u32) -> (u32, u16, u16) {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds (slot_ptr); ownership per the caller's contract.
        unsafe {
            (
                addr_of!((*s).buf_idx).read(),
                addr_of!((*s).len).read(),
                addr_of!((*s).flags).read(),
            )
        }
    }

    /// Writes the length and flags of slot `k`.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    pub(crate) unsafe fn set_len_flags(&self, k: u32, len: u16, flags: u16) {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds; owned per the caller's contract.
        unsafe {
            addr_of_mut!((*s).len).write(len);
            addr_of_mut!((*s).flags).write(flags);
        }
    }

    /// Writes the buffer index of slot `k`.
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns slot `k`.
    #[inline(always)]
    pub(crate) unsafe fn set_buf_idx(&self, k: u32, idx: u32) {
        let s = self.slot_ptr(k);
        // SAFETY: in bounds; owned per the caller's contract.
        unsafe { addr_of_mut!((*s).buf_idx).write(idx) }
    }

    /// Copies slots `[from, from + count)` (no wrap) to the same indices of `to`, and returns
    /// the OR of their flags.
    ///
    /// # Safety
    /// The caller owns these slots in both rings (as for [`RawRing::slot`]), and `to` is a
    /// different ring.
    #[inline]
    pub(crate) unsafe fn copy_slots_to(&self, to: &RawRing, from: u32, count: u32) -> u16 {
        if count == 0 {
            return 0;
        }
        let last = from + count - 1;
        assert!(
            last < self.num_slots && last < to.num_slots,
            "slots {from}..={last} outside the ring"
        );
        let src = self.slot_ptr(from);
        let dst = to.slot_ptr(from);
        // SAFETY: both runs of `count` slots are in bounds (checked above), lie in two
        // different rings (so they do not overlap), and are owned per the caller's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, count as usize) };
        // SAFETY: as above, for the source run.
        unsafe { self.flags_or(from, count) }
    }

    /// The OR of the flags of slots `[from, from + count)` (no wrap).
    ///
    /// # Safety
    /// As for [`RawRing::slot`]: the caller owns these slots.
    #[inline]
    pub(crate) unsafe fn flags_or(&self, from: u32, count: u32) -> u16 {
        if count == 0 {
            return 0;
        }
        assert!(from + count - 1 < self.num_slots, "slots outside the ring");
        let base = self.slot_ptr(from);
        let mut acc = 0;
        for j in 0..count as usize {
            // SAFETY: in bounds (checked above); owned per the caller's contract.
            acc |= unsafe { addr_of!((*base.add(j)).flags).read() };
        }
        acc
    }

    /// Whether buffer `idx` is one of this mapping's (as [`RawRing::buf_ptr`] checks it).
    #[inline(always)]
    pub(crate) fn buf_ok(&self, idx: u32) -> bool {
        idx.wrapping_sub(self.min_idx) < self.max_idx - self.min_idx
    }

    /// Pointer to buffer `idx`, or `None` when `idx` is outside the buffers of this mapping.
    /// The whole `buf_size` bytes behind the pointer lie inside the region and above the
    /// port's rings.
    #[inline(always)]
    pub(crate) fn buf_ptr(&self, idx: u32) -> Option<NonNull<u8>> {
        // One unsigned compare for min_idx <= idx < max_idx (max_idx >= min_idx, see `new`).
        if idx.wrapping_sub(self.min_idx) >= self.max_idx - self.min_idx {
            return None;
        }
        let off = self.buf_base + idx as usize * self.buf_size as usize;
        // SAFETY: min_idx <= idx < max_idx implies guard_end <= off and
        // off + buf_size <= region.len (see `new`), so the pointer is inside the region.
        Some(unsafe { self.region_base.add(off) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_ring(region: &Region, off: usize, slots: u32, buf_size: u32, buf_ofs: i64) {
        let p = region.at(off, 256, 128).unwrap().cast::<NetmapRing>();
        // SAFETY: test-local region, no other party.
        unsafe {
            let r = p.as_ptr();
            addr_of_mut!((*r).num_slots).write(slots);
            addr_of_mut!((*r).nr_buf_size).write(buf_size);
            addr_of_mut!((*r).buf_ofs).write(buf_ofs);
        }
    }

    #[test]
    fn rejects_rings_and_buffers_outside_the_region() {
        let region = Region::anonymous(64 * 1024).unwrap();
        // Ring at 0 with 16 slots, buffers of 1024 from offset 4096.
        write_ring(&region, 0, 16, 1024, 4096);
        let r = RawRing::new(&region, 0, ring_bytes(16)).unwrap();
        assert_eq!(r.buf_range(), 0..60);
        assert!(r.buf_ptr(59).is_some());
        assert!(r.buf_ptr(60).is_none());
        assert!(r.buf_ptr(u32::MAX).is_none());
        // A guard above the buffer base excludes the low buffers.
        let r = RawRing::new(&region, 0, 4096 + 1500).unwrap();
        assert_eq!(r.buf_range().start, 2);
        // Misaligned / outside.
        assert!(RawRing::new(&region, 64, 0).is_err());
        assert!(RawRing::new(&region, 64 * 1024, 0).is_err());
        // Too many slots for the region.
        write_ring(&region, 0, 100_000, 1024, 4096);
        assert!(RawRing::new(&region, 0, 0).is_err());
        // Buffer pool before the region.
        write_ring(&region, 0, 16, 1024, -8);
        assert!(RawRing::new(&region, 0, 0).is_err());
        // Zero buffer size.
        write_ring(&region, 0, 16, 0, 4096);
        assert!(RawRing::new(&region, 0, 0).is_err());
    }
}

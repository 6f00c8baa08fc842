//! Ring handles: [`TxRing`], [`RxRing`], [`BatchReservation`], [`RxBatch`] and zero-copy
//! forwarding.
//!
//! Each handle keeps a local cursor (`head`) and a cached `tail`. Per packet it touches only
//! slot memory and the buffer; the shared `head`/`cur` are published (Release) and the `tail`
//! refreshed (Acquire) at [`sync`](TxRing::sync), or when the cache says the ring is
//! full/empty. A received frame borrows the ring, so the slot it reads cannot be handed back to
//! the kernel (which happens only at the next sync) while the frame lives.

use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::{NS_BUF_CHANGED, NS_MOREFRAG};
use crate::error::Error;
use bytes::Bytes;

use crate::sync::claim::Claim;
use crate::sync::frame::{Frame, INLINE_CAPACITY};
use crate::sync::port::PortInner;
use crate::sync::raw::{advance, distance, next, RawRing};

/// Direction of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Tx,
    Rx,
}

/// What both handle types share: the view, the cursors and the claim on the ring.
#[derive(Debug)]
struct Handle {
    raw: RawRing,
    head: u32,
    tail: u32,
    published: u32,
    index: usize,
    dir: Dir,
    port: Arc<PortInner>,
    /// This process's only handle of the ring (released on drop).
    _claim: Claim,
}

impl Handle {
    fn new(port: Arc<PortInner>, index: usize, dir: Dir) -> Result<Handle, Error> {
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
        Ok(Handle {
            raw,
            head,
            tail,
            published: head,
            index,
            dir,
            port,
            _claim: claim,
        })
    }

    fn bound(&self) -> &crate::sync::layout::BoundRing {
        match self.dir {
            Dir::Tx => &self.port.tx[self.index],
            Dir::Rx => &self.port.rx[self.index],
        }
    }

    /// Slots between the cursor and the kernel's tail, refreshing the cached tail.
    #[inline]
    fn refresh(&mut self) -> u32 {
        self.load_tail();
        distance(self.head, self.tail, self.raw.num_slots())
    }

    /// Refreshes the cached tail from shared memory. A tail outside the ring (only a broken or
    /// hostile peer writes one) is ignored: the cache keeps the last good value, so the cursor
    /// never runs past the ring and no loop spins on a bogus range.
    #[inline]
    fn load_tail(&mut self) {
        let t = self.raw.load_tail();
        if t < self.raw.num_slots() {
            self.tail = t;
        } else {
            tracing::warn!(ring = self.index, tail = t, "ignoring out-of-range tail");
        }
    }

    #[inline]
    fn sync(&mut self) -> Result<(), Error> {
        let batch = distance(self.published, self.head, self.raw.num_slots());
        let _span = tracing::trace_span!(
            "netmap_sync",
            port = %self.port.name,
            ring = self.index,
            dir = ?self.dir,
            batch
        )
        .entered();
        self.raw.publish_head(self.head);
        self.published = self.head;
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

    #[cold]
    #[inline(never)]
    fn corrupt(&self, slot: u32, buf_idx: u32, len: u16) -> Error {
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

macro_rules! common_ring_methods {
    () => {
        /// Index of the ring as the port numbers its rings (`0..num_*_rings()`).
        pub fn index(&self) -> usize {
            self.h.index
        }

        /// netmap's ring id (within the NIC or the host rings).
        pub fn ring_id(&self) -> u16 {
            self.h.bound().ring_id
        }

        /// Whether this is a host-stack ring.
        pub fn is_host(&self) -> bool {
            self.h.bound().host
        }

        /// Total number of slots in the ring.
        pub fn num_slots(&self) -> usize {
            self.h.raw.num_slots() as usize
        }

        /// Size of each buffer in bytes.
        pub fn buf_size(&self) -> usize {
            self.h.raw.buf_size() as usize
        }

        /// Whether this ring and `other` live in the same memory region (buffers can be
        /// swapped between them).
        pub fn shares_memory_with_port(&self, other: &crate::Netmap) -> bool {
            self.h.port.mem == other.inner.mem
        }
    };
}

/// Handle to a TX ring. `Send`: it can move to another thread.
#[derive(Debug)]
pub struct TxRing {
    h: Handle,
}

impl TxRing {
    pub(crate) fn new(port: Arc<PortInner>, index: usize) -> Result<TxRing, Error> {
        Ok(TxRing {
            h: Handle::new(port, index, Dir::Tx)?,
        })
    }

    common_ring_methods!();

    /// Largest packet one slot can carry.
    #[inline]
    pub fn max_payload_size(&self) -> usize {
        (self.h.raw.buf_size() as usize).min(u16::MAX as usize)
    }

    /// Free slots the user may fill now (refreshes the kernel's tail).
    pub fn space(&mut self) -> usize {
        self.h.refresh() as usize
    }

    /// Whether the cached view already shows a free slot (no shared-memory access).
    #[inline]
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn has_cached_space(&self) -> bool {
        self.h.head != self.h.tail
    }

    /// Packets written but not yet handed to the kernel by [`TxRing::sync`].
    pub fn pending(&self) -> usize {
        distance(self.h.published, self.h.head, self.h.raw.num_slots()) as usize
    }

    /// Copies `buf` into the next free slot. The packet reaches the kernel at the next
    /// [`sync`](TxRing::sync). A full ring is an error ([`Error::InsufficientSpace`]), never an
    /// overwrite; an oversize packet is [`Error::PacketTooLarge`]. Nothing is written on error.
    #[inline]
    pub fn send(&mut self, buf: &[u8]) -> Result<(), Error> {
        if buf.len() > self.max_payload_size() {
            return Err(Error::PacketTooLarge(buf.len()));
        }
        let h = &mut self.h;
        if h.head == h.tail && h.refresh() == 0 {
            tracing::trace!(ring = h.index, "tx ring full");
            return Err(Error::InsufficientSpace);
        }
        let k = h.head;
        // SAFETY: k = head is in the user's [head, tail) (tail just loaded with Acquire or
        // cached from an earlier Acquire load; the kernel only moves tail forward).
        let p = unsafe { h.raw.fill_slot(k, buf.len() as u16, 0) }
            .map_err(|idx| h.corrupt(k, idx, buf.len() as u16))?;
        // SAFETY: p points at buf_size >= buf.len() bytes inside the region (buf_ptr); the
        // slot and hence its buffer are the user's; `copy` tolerates overlap.
        unsafe { std::ptr::copy(buf.as_ptr(), p.as_ptr(), buf.len()) };
        h.head = next(k, h.raw.num_slots());
        Ok(())
    }

    /// Reserves `count` slots to fill in place. Fails with [`Error::InsufficientSpace`] when
    /// fewer are free. Dropping the reservation uncommitted sends nothing.
    pub fn reserve_batch(&mut self, count: usize) -> Result<BatchReservation<'_>, Error> {
        let free = distance(self.h.head, self.h.tail, self.h.raw.num_slots()) as usize;
        if free < count && (self.h.refresh() as usize) < count {
            return Err(Error::InsufficientSpace);
        }
        Ok(BatchReservation {
            raw: self.h.raw.clone(),
            start: self.h.head,
            count,
            filled: 0,
            max_len: self.max_payload_size(),
            ring: self,
        })
    }

    /// Hands every written packet to the kernel (`NIOCTXSYNC`) and refreshes the free space.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.h.sync()
    }
}

impl Drop for TxRing {
    /// Packets written but not synced are flushed, so dropping a handle loses nothing.
    fn drop(&mut self) {
        if self.pending() > 0 {
            let _ = self.h.sync();
        }
    }
}

/// Slots reserved on a [`TxRing`] to be filled in place and published together.
#[derive(Debug)]
pub struct BatchReservation<'a> {
    ring: &'a mut TxRing,
    /// A copy of the ring's view: the per-packet path reads only this value's fields, which
    /// the compiler keeps in registers (the ring's own fields would be reloaded after every
    /// `memcpy` the caller does into a packet).
    raw: RawRing,
    start: u32,
    count: usize,
    filled: usize,
    max_len: usize,
}

impl BatchReservation<'_> {
    /// Number of reserved slots.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no slot was reserved.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The buffer of reserved packet `index`, `len` bytes long, to write into. Slots skipped
    /// below the highest index asked for are sent empty.
    #[inline(always)]
    pub fn packet(&mut self, index: usize, len: usize) -> Result<&mut [u8], Error> {
        if index >= self.count || len > self.max_len {
            return Err(bad_packet(self.count, index, len));
        }
        let k = advance(self.start, index as u32, self.raw.num_slots());
        // SAFETY: k is one of the `count` reserved slots in the user's [head, tail).
        let p = match unsafe { self.raw.fill_slot(k, len as u16, 0) } {
            Ok(p) => p,
            Err(idx) => return Err(self.ring.h.corrupt(k, idx, len as u16)),
        };
        if index >= self.filled {
            if index > self.filled {
                empty_skipped(&self.ring.h.raw, self.start, self.filled, index);
            }
            self.filled = index + 1;
        }
        // SAFETY: p is valid for buf_size >= len bytes (buf_ptr); the buffer belongs to a slot
        // the user owns and is borrowed mutably through `self` for the slice's lifetime, and
        // no other handle can reach this slot.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }

    /// Publishes the filled packets (up to the highest index asked for) to the ring's
    /// cursor; they reach the kernel at the next sync. Returns how many were published.
    pub fn commit(self) -> usize {
        let n = self.ring.h.raw.num_slots();
        self.ring.h.head = advance(self.start, self.filled as u32, n);
        self.filled
    }
}

/// The error for a bad `packet(index, len)` call (out of line: the hot path stays small, and
/// takes no reference to the reservation, which would make it live in memory).
#[cold]
#[inline(never)]
fn bad_packet(count: usize, index: usize, len: usize) -> Error {
    if index >= count {
        Error::InvalidRingIndex(index)
    } else {
        Error::PacketTooLarge(len)
    }
}

/// Reserved slots skipped over (`filled..index`) are sent as empty packets rather than with
/// stale lengths.
#[cold]
#[inline(never)]
fn empty_skipped(raw: &RawRing, start: u32, filled: usize, index: usize) {
    for j in filled..index {
        // SAFETY: a reserved slot, the user's.
        unsafe { raw.set_len_flags(advance(start, j as u32, raw.num_slots()), 0, 0) };
    }
}

/// Handle to an RX ring. `Send`: it can move to another thread.
#[derive(Debug)]
pub struct RxRing {
    h: Handle,
}

/// A slot whose buffer index or length is out of range (turned into [`Error::CorruptSlot`]
/// out of the hot path).
#[derive(Debug, Clone, Copy)]
struct Corrupt {
    slot: u32,
    buf_idx: u32,
    len: u16,
}

/// Reads slot `k` and checks its buffer index and length.
///
/// # Safety
/// The user owns slot `k` (it lies in `[head, tail)` after an Acquire load of `tail`).
#[inline(always)]
unsafe fn read_slot(raw: &RawRing, k: u32) -> Result<RawFrame, Corrupt> {
    // SAFETY: per the caller's contract.
    let (buf_idx, len, flags) = unsafe { raw.slot_meta(k) };
    match raw.buf_ptr(buf_idx) {
        Some(ptr) if u32::from(len) <= raw.buf_size() => Ok(RawFrame {
            ptr,
            len,
            flags,
            slot: k,
        }),
        _ => Err(Corrupt {
            slot: k,
            buf_idx,
            len,
        }),
    }
}

/// A slot taken by [`RxRing::take_next`], not yet lent out as a frame.
#[derive(Debug)]
pub(crate) struct Taken(RawFrame);

/// One received slot, before it is turned into a frame.
#[derive(Debug)]
struct RawFrame {
    ptr: NonNull<u8>,
    len: u16,
    flags: u16,
    slot: u32,
}

impl RxRing {
    pub(crate) fn new(port: Arc<PortInner>, index: usize) -> Result<RxRing, Error> {
        Ok(RxRing {
            h: Handle::new(port, index, Dir::Rx)?,
        })
    }

    common_ring_methods!();

    /// Packets received and not yet consumed (refreshes the kernel's tail).
    pub fn available(&mut self) -> usize {
        self.h.refresh() as usize
    }

    /// Looks at the slot at the cursor, checking its buffer index and length, without
    /// consuming it. A corrupt slot is consumed (the cursor moves past it, so one bad slot does
    /// not stall the ring; it still goes back to the kernel at the next sync) and reported.
    /// (The error is built out of line: the hot path returns a small value.)
    #[inline(always)]
    fn peek_raw(&mut self) -> Option<Result<RawFrame, Corrupt>> {
        let h = &mut self.h;
        if h.head == h.tail && h.refresh() == 0 {
            return None;
        }
        let k = h.head;
        // SAFETY: k is in the user's [head, tail): tail was loaded with Acquire, so the
        // kernel's writes to the slot are visible and it will not write it until released.
        let r = unsafe { read_slot(&h.raw, k) };
        if r.is_err() {
            h.head = next(k, h.raw.num_slots());
        }
        Some(r)
    }

    /// Takes the next slot (see `peek_raw`).
    #[inline(always)]
    fn next_raw(&mut self) -> Option<Result<RawFrame, Corrupt>> {
        let r = self.peek_raw()?;
        if r.is_ok() {
            self.h.head = next(self.h.head, self.h.raw.num_slots());
        }
        Some(r)
    }

    #[inline]
    fn frame<'a>(&self, r: RawFrame) -> Frame<'a> {
        // SAFETY: ptr..ptr+len lies inside the region (buf_ptr, len <= buf_size). The slot is
        // the user's until the next sync, and sync needs `&mut self` — which every caller of
        // this function holds for 'a — so the buffer is neither released nor written while
        // the frame lives. The region outlives the handle (Arc in the port).
        let data = unsafe { std::slice::from_raw_parts(r.ptr.as_ptr(), r.len as usize) };
        Frame::from_slot(data, r.flags, self.h.index as u16, r.slot)
    }

    /// Takes the packet at the cursor if it is in the cached view, valid and short enough
    /// for an inline owned frame, and returns the buffer's first `INLINE_CAPACITY` bytes, its
    /// length and flags (small values the caller builds the frame from in place). Otherwise
    /// consumes nothing and returns `None` (the general path then handles the slot, including
    /// reporting a corrupt one).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn take_inline(&mut self) -> Option<(&[u8; INLINE_CAPACITY], u8, u16)> {
        let h = &mut self.h;
        if h.head == h.tail || (h.raw.buf_size() as usize) < INLINE_CAPACITY {
            return None;
        }
        let k = h.head;
        // SAFETY: k is in the user's [head, tail) (tail loaded with Acquire at a refresh).
        let (buf_idx, len, flags) = unsafe { h.raw.slot_meta(k) };
        if usize::from(len) > INLINE_CAPACITY {
            return None;
        }
        let ptr = h.raw.buf_ptr(buf_idx)?;
        h.head = next(k, h.raw.num_slots());
        // SAFETY: the buffer holds buf_size >= INLINE_CAPACITY initialized bytes inside the
        // region (buf_ptr checked the index). The slot is the user's until the next sync,
        // which needs `&mut self` (borrowed for the returned lifetime), so nobody writes the
        // buffer while the reference lives. Bytes past `len` are never exposed.
        let window = unsafe { &*ptr.as_ptr().cast::<[u8; INLINE_CAPACITY]>() };
        Some((window, len as u8, flags))
    }

    /// Takes the next packet as an owned frame: `payload()[skip..]` copied inline into the
    /// frame when it fits, else by `spill`. A corrupt slot is consumed and reported.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn take_owned(
        &mut self,
        skip: usize,
        spill: impl FnOnce(&[u8]) -> Bytes,
    ) -> Option<Result<Frame<'static>, Error>> {
        let r = match self.next_raw()? {
            Ok(r) => r,
            Err(c) => return Some(Err(self.h.corrupt(c.slot, c.buf_idx, c.len))),
        };
        Some(Ok(self.frame(r).copied(skip, spill)))
    }

    /// The next received packet, or `None` when the ring is empty (call
    /// [`sync`](RxRing::sync) to see new packets and release consumed ones). A corrupt slot
    /// is logged and skipped; use [`try_recv`](RxRing::try_recv) to see the error.
    #[inline]
    pub fn recv(&mut self) -> Option<Frame<'_>> {
        loop {
            match self.next_raw()? {
                Ok(r) => return Some(self.frame(r)),
                Err(c) => {
                    self.h.corrupt(c.slot, c.buf_idx, c.len); // logs it
                }
            }
        }
    }

    /// Like [`recv`](RxRing::recv), but returns [`Error::CorruptSlot`] for a slot whose buffer
    /// index or length is out of range.
    pub fn try_recv(&mut self) -> Result<Option<Frame<'_>>, Error> {
        match self.next_raw() {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(self.frame(r))),
            Some(Err(c)) => Err(self.h.corrupt(c.slot, c.buf_idx, c.len)),
        }
    }

    /// Fills `batch` with received frames and returns how many. The frames borrow the ring
    /// until `batch` is dropped.
    pub fn recv_batch<'a>(&'a mut self, batch: &mut [Frame<'a>]) -> usize {
        let mut n = 0;
        while n < batch.len() {
            match self.next_raw() {
                None => break,
                Some(Ok(r)) => {
                    batch[n] = self.frame(r);
                    n += 1;
                }
                Some(Err(c)) => {
                    self.h.corrupt(c.slot, c.buf_idx, c.len); // logs it
                }
            }
        }
        n
    }

    /// An iterator over at most `max` received frames, all borrowing the ring.
    pub fn batch(&mut self, max: usize) -> RxBatch<'_> {
        RxBatch::new(self, max)
    }

    /// Hands consumed slots back to the kernel (`NIOCRXSYNC`) and looks for new packets.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.h.sync()
    }

    /// The packet at the cursor without consuming it (the next `recv` returns it again).
    /// A corrupt slot is the exception: it is consumed when reported (so one bad slot cannot
    /// stall the ring), and the next call looks at the slot after it.
    pub fn peek(&mut self) -> Option<Result<Frame<'_>, Error>> {
        match self.peek_raw()? {
            Ok(r) => Some(Ok(self.frame(r))),
            Err(c) => Some(Err(self.h.corrupt(c.slot, c.buf_idx, c.len))),
        }
    }

    /// Consumes the packet at the cursor (after [`peek`](RxRing::peek)). Returns whether
    /// there was one.
    pub fn consume(&mut self) -> bool {
        match self.next_raw() {
            Some(Ok(_)) => true,
            Some(Err(c)) => {
                self.h.corrupt(c.slot, c.buf_idx, c.len); // logs it
                self.consume()
            }
            None => false,
        }
    }

    /// Takes the slot at the cursor without lending it yet: `None` when the ring is empty, the
    /// corrupt-slot error (the slot is consumed) or a [`Taken`] slot to
    /// [`lend`](RxRing::lend). Splitting the two lets an async caller loop on the first
    /// without holding a borrow of the ring.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn take_next(&mut self) -> Option<Result<Taken, Error>> {
        Some(match self.next_raw()? {
            Ok(r) => Ok(Taken(r)),
            Err(c) => Err(self.h.corrupt(c.slot, c.buf_idx, c.len)),
        })
    }

    /// The frame of a slot [`take_next`](RxRing::take_next) took from this ring.
    ///
    /// # Panics
    /// If the slot was handed back to the kernel since (a sync in between): that would be a
    /// bug in the caller, and lending the slot then would be unsound.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn lend(&mut self, t: Taken) -> Frame<'_> {
        let n = self.h.raw.num_slots();
        assert!(
            distance(self.h.published, t.0.slot, n) < distance(self.h.published, self.h.head, n),
            "lend: slot {} is no longer the user's",
            t.0.slot
        );
        self.frame(t.0)
    }

    /// The slot index at the cursor (the next packet to be taken).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn cursor(&self) -> u32 {
        self.h.head
    }

    /// Packets consumed since the last sync (not yet handed back to the kernel).
    pub fn unreleased(&self) -> usize {
        distance(self.h.published, self.h.head, self.h.raw.num_slots()) as usize
    }

    /// Whether the cached view already shows an unconsumed packet (no shared-memory access).
    #[inline]
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn has_cached(&self) -> bool {
        self.h.head != self.h.tail
    }
}

impl Drop for RxRing {
    /// Publishes the cursor, so a later handle does not see consumed packets again; they go
    /// back to the kernel at the next sync.
    fn drop(&mut self) {
        self.h.raw.publish_head(self.h.head);
    }
}

/// Frames borrowed from an [`RxRing`]; see [`RxRing::batch`]. Frames taken are consumed
/// when the iterator is dropped; until then the ring's cursor does not move, even when the
/// iterator refreshes its view of the ring (so a forgotten iterator consumes nothing: its
/// frames would be received again). Corrupt slots are skipped and logged.
#[derive(Debug)]
pub struct RxBatch<'a> {
    ring: &'a mut RxRing,
    /// Copies of the ring's view and cursor: the per-packet path reads and advances these,
    /// which the compiler keeps in registers (the ring's own fields would be reloaded after
    /// every `memcpy` the caller does out of a frame). The cursor is written back on drop.
    raw: RawRing,
    head: u32,
    tail: u32,
    left: usize,
    ring_index: u16,
}

impl<'a> RxBatch<'a> {
    fn new(ring: &'a mut RxRing, max: usize) -> Self {
        RxBatch {
            raw: ring.h.raw.clone(),
            head: ring.h.head,
            tail: ring.h.tail,
            left: max,
            ring_index: ring.h.index as u16,
            ring,
        }
    }
}

/// Refreshes the ring's cached tail; returns it. The cursor stays in the iterator until it
/// is dropped, so a forgotten iterator consumes nothing.
#[cold]
#[inline(never)]
fn refill(h: &mut Handle) -> u32 {
    h.load_tail();
    h.tail
}

impl<'a> Iterator for RxBatch<'a> {
    type Item = Frame<'a>;

    #[inline]
    fn next(&mut self) -> Option<Frame<'a>> {
        while self.left > 0 {
            if self.head == self.tail {
                self.tail = refill(&mut self.ring.h);
                if self.head == self.tail {
                    return None;
                }
            }
            self.left -= 1;
            let k = self.head;
            // A corrupt slot is consumed too (so it cannot stall the ring) and reported.
            self.head = next(k, self.raw.num_slots());
            // SAFETY: k is in the user's [head, tail) (tail loaded with Acquire at a refresh).
            match unsafe { read_slot(&self.raw, k) } {
                Ok(r) => {
                    // SAFETY: ptr..ptr+len lies inside the region (buf_ptr, len <= buf_size).
                    // The ring is mutably borrowed for 'a by this iterator, so no sync can
                    // release the slot (or let anyone write its buffer) while the frame lives.
                    let data =
                        unsafe { std::slice::from_raw_parts(r.ptr.as_ptr(), r.len as usize) };
                    return Some(Frame::from_slot(data, r.flags, self.ring_index, k));
                }
                Err(c) => {
                    self.ring.h.corrupt(c.slot, c.buf_idx, c.len); // logs it
                }
            }
        }
        None
    }
}

impl Drop for RxBatch<'_> {
    /// Writes the cursor back: frames taken are consumed (released at the next sync).
    #[inline]
    fn drop(&mut self) {
        self.ring.h.head = self.head;
    }
}

/// Moves up to `max` received packets from `rx` to `tx` without copying, by swapping the
/// buffers of the slots (`NS_BUF_CHANGED` on both). Both rings must be in the same memory
/// region ([`Error::MemoryMismatch`] otherwise). Returns how many packets moved; they reach
/// the kernel at `tx`'s next sync, and `rx`'s slots go back at its next sync.
pub fn zero_copy_forward(rx: &mut RxRing, tx: &mut TxRing, max: usize) -> Result<usize, Error> {
    forward_filtered(rx, tx, max, |_| true)
}

/// Like [`zero_copy_forward`], with a filter: packets for which `keep` returns `false` are
/// consumed from `rx` without being sent. Returns how many packets were forwarded.
pub fn forward_filtered(
    rx: &mut RxRing,
    tx: &mut TxRing,
    max: usize,
    mut keep: impl FnMut(&Frame<'_>) -> bool,
) -> Result<usize, Error> {
    if rx.h.port.mem != tx.h.port.mem || rx.h.raw.buf_size() != tx.h.raw.buf_size() {
        return Err(Error::MemoryMismatch);
    }
    let mut forwarded = 0;
    let mut seen = 0;
    while seen < max {
        let rx_n = rx.h.raw.num_slots();
        let tx_n = tx.h.raw.num_slots();
        if rx.h.head == rx.h.tail && rx.h.refresh() == 0 {
            break;
        }
        if tx.h.head == tx.h.tail && tx.h.refresh() == 0 {
            break;
        }
        let rk = rx.h.head;
        let tk = tx.h.head;
        // SAFETY: rk is in rx's user range [head, tail), tk in tx's (both just checked or
        // refreshed with Acquire), so both slots are the user's.
        let (rs, ts) = unsafe { (rx.h.raw.slot(rk), tx.h.raw.slot(tk)) };
        seen += 1;
        let rptr = match rx.h.raw.buf_ptr(rs.buf_idx) {
            Some(p) if u32::from(rs.len) <= rx.h.raw.buf_size() => p,
            _ => {
                rx.h.head = next(rk, rx_n);
                return Err(rx.h.corrupt(rk, rs.buf_idx, rs.len));
            }
        };
        if tx.h.raw.buf_ptr(ts.buf_idx).is_none() {
            return Err(tx.h.corrupt(tk, ts.buf_idx, ts.len));
        }
        let wanted = {
            // SAFETY: rptr..+len is inside the region and the rx slot is the user's; the
            // slice only lives during this call, before any swap.
            let data = unsafe { std::slice::from_raw_parts(rptr.as_ptr(), rs.len as usize) };
            keep(&Frame::from_slot(data, rs.flags, rx.h.index as u16, rk))
        };
        rx.h.head = next(rk, rx_n);
        if !wanted {
            continue;
        }
        // SAFETY: both slots are the user's (see above); the buffer indices are exchanged,
        // so each buffer still belongs to exactly one slot, and NS_BUF_CHANGED tells the
        // kernel to reload both.
        unsafe {
            tx.h.raw.set_buf_idx(tk, rs.buf_idx);
            tx.h.raw
                .set_len_flags(tk, rs.len, NS_BUF_CHANGED | (rs.flags & NS_MOREFRAG));
            rx.h.raw.set_buf_idx(rk, ts.buf_idx);
            rx.h.raw
                .set_len_flags(rk, rs.len, rs.flags | NS_BUF_CHANGED);
        }
        tx.h.head = next(tk, tx_n);
        forwarded += 1;
    }
    Ok(forwarded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendChoice;
    use crate::sync::raw::prev;
    use crate::sync::NetmapBuilder;
    use std::sync::atomic::Ordering;

    fn emu(name: &str) -> crate::Netmap {
        NetmapBuilder::new(name)
            .num_slots(8)
            .backend(BackendChoice::Emulated)
            .build()
            .unwrap()
    }

    /// Both ends of pipe `name` (8 slots) and ring 0 of each: (a, b, a's TX, b's RX).
    fn pipe_rings(name: &str) -> (crate::Netmap, crate::Netmap, TxRing, RxRing) {
        let a = emu(&format!("{name}{{0"));
        let b = emu(&format!("{name}}}0"));
        let (tx, rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
        (a, b, tx, rx)
    }

    /// A hostile peer writes an out-of-range buffer index and an oversize length into slots
    /// the receiver owns: the receiver gets errors, never an out-of-bounds slice.
    #[test]
    fn hostile_slots_give_errors_not_out_of_bounds_slices() {
        let (a, b, mut tx, mut rx) = pipe_rings("hostile");
        for p in [&b"a"[..], b"b", b"c", b"d"] {
            tx.send(p).unwrap();
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        let raw = &b.inner.rx[0].raw;
        let h = rx.h.head;
        let n = raw.num_slots();
        // SAFETY (test acting as the kernel): these slots are in the receiver's range and this
        // thread is the only one touching the ring.
        unsafe {
            raw.set_buf_idx(h, u32::MAX);
            raw.set_len_flags(advance(h, 1, n), 60000, 0);
            raw.set_buf_idx(advance(h, 2, n), raw.buf_range().end);
        }
        match rx.try_recv() {
            Err(Error::CorruptSlot { buf_idx, .. }) => assert_eq!(buf_idx, u32::MAX),
            other => panic!("expected CorruptSlot, got {other:?}"),
        }
        match rx.try_recv() {
            Err(Error::CorruptSlot { len, .. }) => assert_eq!(len, 60000),
            other => panic!("expected CorruptSlot, got {other:?}"),
        }
        // recv() skips the remaining corrupt slot (one past the last buffer) and returns the
        // good packet after it.
        assert_eq!(rx.recv().unwrap().payload(), b"d");
        assert!(rx.recv().is_none());
        // A corrupt TX slot: send fails, nothing advances.
        let traw = &a.inner.tx[0].raw;
        let th = tx.h.head;
        // SAFETY: as above, the slot is in the sender's range and this thread is alone.
        let good = unsafe { traw.slot(th) }.buf_idx;
        unsafe { traw.set_buf_idx(th, 1 << 30) };
        assert!(matches!(tx.send(b"x"), Err(Error::CorruptSlot { .. })));
        assert_eq!(tx.pending(), 0);
        unsafe { traw.set_buf_idx(th, good) };
        tx.send(b"x").unwrap();
    }

    /// A pipe delivers up to the end of the last complete packet: slots flagged
    /// NS_MOREFRAG wait for the slot that ends their packet.
    #[test]
    fn pipe_delivers_complete_packets_only() {
        let (a, _b, mut tx, mut rx) = pipe_rings("frag");
        let traw = &a.inner.tx[0].raw;
        for p in [&b"a"[..], b"b", b"c1"] {
            tx.send(p).unwrap();
        }
        let last = prev(tx.h.head, traw.num_slots());
        // SAFETY (test acting as the user): the slot is written but not yet synced, so it is
        // still in the sender's range; this thread is alone on the ring.
        unsafe { traw.set_len_flags(last, 2, NS_MOREFRAG) };
        tx.sync().unwrap();
        rx.sync().unwrap();
        assert_eq!(
            rx.available(),
            2,
            "the fragment waits for the end of its packet"
        );
        tx.send(b"c2").unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        let got: Vec<(Vec<u8>, bool)> = rx
            .batch(8)
            .map(|f| (f.payload().to_vec(), f.more_fragments()))
            .collect();
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"a".to_vec(), false),
            (b"b".to_vec(), false),
            (b"c1".to_vec(), true),
            (b"c2".to_vec(), false),
        ];
        assert_eq!(got, want);
    }

    /// Reservations fill slots in place; skipped slots go out empty, bad calls are errors
    /// that write nothing, and a batch iterator dropped early consumes only what it yielded.
    #[test]
    fn reservations_and_batches_in_place() {
        let (_a, _b, mut tx, mut rx) = pipe_rings("resv");
        let mut r = tx.reserve_batch(4).unwrap();
        r.packet(0, 1).unwrap().copy_from_slice(b"a");
        r.packet(2, 2).unwrap().copy_from_slice(b"cc");
        assert!(matches!(r.packet(4, 1), Err(Error::InvalidRingIndex(4))));
        assert!(matches!(
            r.packet(3, 1 << 20),
            Err(Error::PacketTooLarge(_))
        ));
        assert_eq!(r.commit(), 3);
        assert!(
            tx.reserve_batch(8).is_err(),
            "an 8-slot ring never has 8 free"
        );
        tx.sync().unwrap();
        rx.sync().unwrap();
        let first: Vec<Vec<u8>> = rx.batch(2).map(|f| f.payload().to_vec()).collect();
        assert_eq!(first, [b"a".to_vec(), vec![]]);
        {
            let mut it = rx.batch(8);
            assert_eq!(it.next().unwrap().payload(), b"cc");
        }
        assert!(rx.batch(8).next().is_none());
        rx.sync().unwrap();
        tx.sync().unwrap();
        assert_eq!(tx.space(), 7, "all three slots came back");
    }

    /// The owned-frame paths of the async Stream: short packets inline, longer ones through
    /// the spill copy, corrupt slots left for (and reported by) the general path.
    #[test]
    fn owned_takes_inline_spill_and_corrupt_slots() {
        let (_a, b, mut tx, mut rx) = pipe_rings("owned");
        let sizes = [0, 5, INLINE_CAPACITY, INLINE_CAPACITY + 1, 2000];
        let packets: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        for p in &packets {
            tx.send(p).unwrap();
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        let mut spilled = 0;
        for p in &packets {
            let f = match rx.take_inline() {
                Some((w, len, flags)) => {
                    assert!(p.len() <= INLINE_CAPACITY);
                    Frame::inline_window(w, len, flags, 0)
                }
                None => {
                    assert!(p.len() > INLINE_CAPACITY);
                    rx.take_owned(0, |d| {
                        spilled += 1;
                        Bytes::copy_from_slice(d)
                    })
                    .unwrap()
                    .unwrap()
                }
            };
            assert_eq!(f.payload(), &p[..]);
            assert!(!f.is_borrowed());
        }
        assert_eq!(spilled, 2);
        assert!(rx.take_inline().is_none() && rx.take_owned(0, |_| unreachable!()).is_none());

        // A corrupt slot: the inline path leaves it alone, the general path reports it and
        // moves past it.
        tx.send(b"bad").unwrap();
        tx.send(b"good").unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        let raw = &b.inner.rx[0].raw;
        // SAFETY (test acting as the kernel): the slot is in the receiver's range and this
        // thread is alone on the ring.
        let bad = rx.h.head;
        let good = unsafe { raw.slot(bad) }.buf_idx;
        unsafe { raw.set_buf_idx(bad, u32::MAX) };
        assert!(rx.take_inline().is_none());
        assert!(matches!(
            rx.take_owned(0, Bytes::copy_from_slice),
            Some(Err(Error::CorruptSlot { .. }))
        ));
        let (w, len, _) = rx.take_inline().unwrap();
        assert_eq!(&w[..len as usize], b"good");
        // Give the buffer index back so the pipe's teardown returns every buffer.
        unsafe { raw.set_buf_idx(bad, good) };
    }

    #[test]
    fn emulated_pipes_hand_out_valid_unreserved_buffers() {
        let a = emu("guard{0");
        for r in a.inner.tx.iter().chain(&a.inner.rx) {
            for k in 0..r.raw.num_slots() {
                // SAFETY: nobody else uses this port; reading only.
                let idx = unsafe { r.raw.slot(k) }.buf_idx;
                assert!(idx >= 2, "buffers 0 and 1 are reserved");
                assert!(r.raw.buf_ptr(idx).is_some());
            }
        }
    }

    /// Sender and receiver on two threads, plus a third thread that syncs the receiver's
    /// port at random moments the way the kernel's poll handler does from the epoll thread.
    /// Under Miri this checks the ring protocol for data races.
    #[test]
    fn threads_and_a_concurrent_poll_syncer_race_free() {
        let (_a, b, mut tx, mut rx) = pipe_rings("threads");
        const N: u32 = if cfg!(miri) { 40 } else { 50_000 };
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = std::thread::spawn(move || {
            let mut i = 0u32;
            while i < N {
                match tx.send(&i.to_le_bytes()) {
                    Ok(()) => i += 1,
                    Err(Error::InsufficientSpace) => {
                        tx.sync().unwrap();
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
                if i % 3 == 0 {
                    tx.sync().unwrap();
                }
            }
            tx.sync().unwrap();
        });
        let port = b.inner.clone();
        let stop = done.clone();
        let poller = std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                port.backend.rxsync().unwrap();
                let _ = port.readiness();
                std::thread::yield_now();
            }
        });
        let mut expect = 0u32;
        while expect < N {
            rx.sync().unwrap();
            for f in rx.batch(5) {
                assert_eq!(f.payload(), expect.to_le_bytes());
                expect += 1;
            }
            std::thread::yield_now();
        }
        done.store(true, Ordering::Release);
        sender.join().unwrap();
        poller.join().unwrap();
    }

    /// Zero-copy forwarding on one thread while the peers run on others.
    #[test]
    fn forwarding_thread_between_two_pipes() {
        let src = emu("fwd{1");
        let mid_in = emu("fwd}1");
        let mid_out = emu("fwd{2");
        let dst = emu("fwd}2");
        const N: u32 = if cfg!(miri) { 30 } else { 20_000 };
        let mut tx = src.tx_ring(0).unwrap();
        let mut rx = dst.rx_ring(0).unwrap();
        let mut f_rx = mid_in.rx_ring(0).unwrap();
        let mut f_tx = mid_out.tx_ring(0).unwrap();
        let sender = std::thread::spawn(move || {
            let mut i = 0u32;
            while i < N {
                if tx.send(&i.to_le_bytes()).is_ok() {
                    i += 1;
                } else {
                    tx.sync().unwrap();
                    std::thread::yield_now();
                }
            }
            tx.sync().unwrap();
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let fwd = std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                f_rx.sync().unwrap();
                zero_copy_forward(&mut f_rx, &mut f_tx, 16).unwrap();
                f_tx.sync().unwrap();
                std::thread::yield_now();
            }
        });
        let mut expect = 0u32;
        while expect < N {
            rx.sync().unwrap();
            while let Some(f) = rx.recv() {
                assert_eq!(f.payload(), expect.to_le_bytes());
                expect += 1;
            }
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
        sender.join().unwrap();
        fwd.join().unwrap();
    }
}

//! Ring handles: [`TxRing`] and [`RxRing`], one packet at a time (the batch forms are in
//! `batch.rs`, forwarding in `forward.rs`, packets over several slots in `chain.rs`).
//!
//! Each handle keeps a local cursor (`head`) and a cached `tail`. Per packet it touches only
//! slot memory and the buffer; the shared `head`/`cur` are published (Release) and the `tail`
//! refreshed (Acquire) at [`sync`](TxRing::sync), or when the cache says the ring is
//! full/empty. A received frame borrows the ring, so the slot it reads cannot be handed back to
//! the kernel (which happens only at the next sync) while the frame lives.
//!
//! Both directions publish `cur` then `head`, equal, as netmap's own applications do: `cur`
//! is what the kernel's poll compares with `tail`, so a ring with unconsumed packets still
//! reads as ready. (netmap's RX check, run by any thread's sync or poll of the registration,
//! loads `cur` then `head`; caught between the two stores it logs `netmap_ring_reinit` and
//! skips the ring once, finding the pointers valid on its re-read: see `tokio_async`.)

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::error::Error;
use bytes::Bytes;

use crate::ring::{distance, next, Dir, RawRing};
use crate::sync::frame::{Frame, INLINE_CAPACITY};
use crate::sync::port_inner::PortInner;

mod chain;
mod each;
mod handle;

pub(super) use handle::Handle;

macro_rules! common_ring_methods {
    () => {
        /// Index of the ring as the port numbers its rings (`0..num_*_rings()`).
        pub fn index(&self) -> usize {
            self.h.index
        }

        /// netmap's ring id (within the NIC or the host rings).
        pub fn ring_id(&self) -> u16 {
            self.h.ring_id
        }

        /// Whether this is a host-stack ring.
        pub fn is_host(&self) -> bool {
            self.h.host
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
    pub(super) h: Handle,
    /// Most bytes one slot carries: the buffer, or less where the driver says so.
    payload: usize,
    /// Packets committed through reservations since the handle was taken (from its first
    /// cursor on, in ring order): once this reaches `num_slots`, every slot's buffer holds
    /// something this handle wrote.
    pub(super) written: u64,
}

impl TxRing {
    pub(crate) fn new(port: Arc<PortInner>, index: usize) -> Result<TxRing, Error> {
        let h = Handle::new(port, index, Dir::Tx)?;
        let buf = (h.raw.buf_size() as usize).min(u16::MAX as usize);
        let payload = h.port.backend.slot_payload().map_or(buf, |p| p.min(buf));
        Ok(TxRing {
            h,
            payload,
            written: 0,
        })
    }

    common_ring_methods!();

    /// Largest packet one slot can carry: the buffer size, or less where the backend sends
    /// less from one buffer (AF_XDP: 1792 bytes, a UMEM frame after the kernel's headroom).
    #[inline]
    pub fn max_payload_size(&self) -> usize {
        self.payload
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

    /// Whether a quarter ring has been queued one packet at a time since the last sync (the
    /// cursor is at the mark; a batch that jumps past it is not seen, and flushes anyway).
    #[inline]
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn at_sync_mark(&self) -> bool {
        self.h.head == self.h.mark
    }

    /// Copies `buf` into the next free slot. The packet reaches the kernel at the next
    /// [`sync`](TxRing::sync). A packet longer than one buffer
    /// ([`max_payload_size`](TxRing::max_payload_size)) takes
    /// [`slots_for`](TxRing::slots_for)`(len)` slots, chained with `NS_MOREFRAG` as netmap
    /// describes such packets, up to [`max_packet_size`](TxRing::max_packet_size). A ring
    /// without room for the whole packet is an error ([`Error::InsufficientSpace`]), never an
    /// overwrite; a longer packet is [`Error::PacketTooLarge`]. Nothing is written on error.
    #[inline(always)]
    pub fn send(&mut self, buf: &[u8]) -> Result<(), Error> {
        if buf.len() > self.max_payload_size() {
            return self.send_chain(buf);
        }
        let h = &mut self.h;
        if h.head == h.tail && h.refresh() == 0 {
            tracing::trace!(ring = h.index, "tx ring full");
            return Err(Error::InsufficientSpace);
        }
        let k = h.head;
        // SAFETY: k = head is in the user's [head, tail) (tail just loaded with Acquire or
        // cached from an earlier Acquire load; the kernel only moves tail forward).
        let p = match unsafe { h.raw.fill_slot_at(k, h.buf_of(k), buf.len() as u16, 0) } {
            Ok(p) => p,
            Err(idx) => {
                if !h.reclaim(k) {
                    return Err(h.corrupt(k, idx, buf.len() as u16));
                }
                // SAFETY: as above.
                unsafe { h.raw.fill_slot_at(k, h.buf_of(k), buf.len() as u16, 0) }
                    .map_err(|idx| h.corrupt(k, idx, buf.len() as u16))?
            }
        };
        // SAFETY: p points at buf_size >= buf.len() bytes inside the region (buf_ptr); the
        // slot and hence its buffer are the user's, and the buffer is this handle's claim,
        // held by no other handle (`held.rs`), so no frame of this process views it; `copy`
        // tolerates overlap with `buf`.
        unsafe { std::ptr::copy(buf.as_ptr(), p.as_ptr(), buf.len()) };
        h.head = next(k, h.raw.num_slots());
        Ok(())
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

/// Handle to an RX ring. `Send`: it can move to another thread.
#[derive(Debug)]
pub struct RxRing {
    pub(super) h: Handle,
    /// The handle's shadow (`held.rs`), beside the handle so that a batch can borrow it and
    /// the handle at once.
    pub(super) shadow: Arc<[AtomicU32]>,
}

/// A slot whose buffer index or length is out of range (turned into [`Error::CorruptSlot`]
/// out of the hot path).
#[derive(Debug, Clone, Copy)]
pub(super) struct Corrupt {
    pub(super) slot: u32,
    pub(super) buf_idx: u32,
    pub(super) len: u16,
}

/// Reads slot `k`'s length and flags and checks them with `buf_idx`, the buffer the slot
/// holds for this handle (its shadow; see `held.rs`).
///
/// # Safety
/// The user owns slot `k` (it lies in `[head, tail)` after an Acquire load of `tail`).
#[inline(always)]
pub(super) unsafe fn read_slot(raw: &RawRing, k: u32, buf_idx: u32) -> Result<RawFrame, Corrupt> {
    // SAFETY: per the caller's contract.
    let (len, flags) = unsafe { raw.slot_len_flags(k) };
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
pub(super) struct RawFrame {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: u16,
    pub(super) flags: u16,
    pub(super) slot: u32,
}

impl RxRing {
    pub(crate) fn new(port: Arc<PortInner>, index: usize) -> Result<RxRing, Error> {
        let h = Handle::new(port, index, Dir::Rx)?;
        Ok(RxRing {
            shadow: h.mirror.shadow(),
            h,
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
        let r = unsafe { read_slot(&h.raw, k, h.buf_of(k)) };
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
        // this function holds for 'a — so the buffer is not released while the frame lives.
        // The buffer is this handle's claim (its shadow), held by no other handle of this
        // process (`held.rs`), so no `&mut` view or write of ours meets it; a peer writing
        // its bytes only changes what the frame reads. The region outlives the handle.
        let data = unsafe { std::slice::from_raw_parts(r.ptr.as_ptr(), r.len as usize) };
        // SAFETY: the slot is the user's (as above).
        let stamp = unsafe { self.h.stamp_of(r.slot) };
        Frame::from_slot(data, r.flags, self.h.index as u16, r.slot).stamped(stamp)
    }

    /// Takes the packet at the cursor if it is in the cached view, valid and short enough
    /// for an inline owned frame, and returns the buffer's first `INLINE_CAPACITY` bytes, its
    /// length, flags and receive time (small values the caller builds the frame from in place). Otherwise
    /// consumes nothing and returns `None` (the general path then handles the slot, including
    /// reporting a corrupt one).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn take_inline(&mut self) -> Option<(&[u8; INLINE_CAPACITY], u8, u16, u64)> {
        let h = &mut self.h;
        if h.head == h.tail || (h.raw.buf_size() as usize) < INLINE_CAPACITY {
            return None;
        }
        let k = h.head;
        // SAFETY: k is in the user's [head, tail) (tail loaded with Acquire at a refresh).
        let (len, flags) = unsafe { h.raw.slot_len_flags(k) };
        let buf_idx = h.buf_of(k);
        if usize::from(len) > INLINE_CAPACITY || flags & crate::abi::NS_MOREFRAG != 0 {
            return None;
        }
        let ptr = h.raw.buf_ptr(buf_idx)?;
        // SAFETY: k is the user's (as above).
        let stamp = unsafe { h.stamp_of(k) };
        h.head = next(k, h.raw.num_slots());
        // SAFETY: the buffer holds buf_size >= INLINE_CAPACITY initialized bytes inside the
        // region (buf_ptr checked the index). The slot is the user's until the next sync,
        // which needs `&mut self` (borrowed for the returned lifetime), and the buffer is this
        // handle's claim, held by no other handle here (`held.rs`), so nothing of ours writes
        // it while the reference lives. Bytes past `len` are never exposed.
        let window = unsafe { &*ptr.as_ptr().cast::<[u8; INLINE_CAPACITY]>() };
        Some((window, len as u8, flags, stamp))
    }

    /// Takes the next packet as an owned frame: `payload()[skip..]` copied inline into the
    /// frame when it fits, else by `spill`; a packet over several slots (`NS_MOREFRAG`) is
    /// gathered whole (`chain.rs`). A corrupt slot or a cut chain is consumed and reported.
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
        let more = r.flags & crate::abi::NS_MOREFRAG != 0;
        let mut f = self.frame(r).copied(skip, spill);
        if more {
            // The rest of the chain, appended out of line (the one-slot path stays as it was).
            f = match self.finish_chain(f) {
                Ok(f) => f,
                Err(e) => return Some(Err(e)),
            };
        }
        Some(Ok(f))
    }

    /// The next received packet, or `None` when the ring is empty (call
    /// [`sync`](RxRing::sync) to see new packets and release consumed ones). A corrupt slot
    /// is logged and skipped; use [`try_recv`](RxRing::try_recv) to see the error.
    #[inline(always)]
    pub fn recv(&mut self) -> Option<Frame<'_>> {
        loop {
            match self.next_raw()? {
                Ok(r) => return Some(self.frame(r)),
                Err(c) => {
                    self.h.log_corrupt(c.slot, c.buf_idx, c.len);
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
                    self.h.log_corrupt(c.slot, c.buf_idx, c.len);
                }
            }
        }
        n
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
                self.h.log_corrupt(c.slot, c.buf_idx, c.len);
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

    /// Whether half a ring has been consumed one packet at a time since the last sync (the
    /// cursor is at the mark; [`unreleased`](Self::unreleased) is the exact count).
    #[inline]
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn at_release_mark(&self) -> bool {
        self.h.head == self.h.mark
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

#[cfg(test)]
mod tests;

//! Batch paths: [`BatchReservation`] (TX slots filled in place) and [`RxBatch`] (RX frames
//! borrowed from the ring).

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use crate::abi::NS_BUF_CHANGED;
use crate::error::Error;
use crate::ring::{advance, distance, next, RawRing};
use crate::sync::frame::Frame;
use crate::sync::held::{buf_at, buf_in};
use crate::sync::ring::{read_slot, Handle, RxRing, TxRing};

impl TxRing {
    /// Reserves `count` slots to fill in place. Fails with [`Error::InsufficientSpace`] when
    /// fewer are free. Dropping the reservation uncommitted sends nothing.
    pub fn reserve_batch(&mut self, count: usize) -> Result<BatchReservation<'_>, Error> {
        let free = distance(self.h.head, self.h.tail, self.h.raw.num_slots()) as usize;
        if free < count && (self.h.refresh() as usize) < count {
            return Err(Error::InsufficientSpace);
        }
        Ok(BatchReservation::new(self, count))
    }
}

impl RxRing {
    /// An iterator over at most `max` received frames, all borrowing the ring.
    pub fn batch(&mut self, max: usize) -> RxBatch<'_> {
        RxBatch::new(self, max)
    }
}

/// Slots reserved on a [`TxRing`] to be filled in place and published together.
#[derive(Debug)]
#[must_use = "a reservation sends nothing until it is filled and committed"]
pub struct BatchReservation<'a> {
    ring: &'a mut TxRing,
    /// A copy of the ring's view: the per-packet path reads only this value's fields, which
    /// the compiler keeps in registers (the ring's own fields would be reloaded after every
    /// `memcpy` the caller does into a packet).
    raw: RawRing,
    /// The buffers the handle holds, by slot (its shadow, see `held.rs`), read here without
    /// going through the handle.
    shadow: Arc<[AtomicU32]>,
    start: u32,
    count: usize,
    filled: usize,
    max_len: usize,
}

impl<'a> BatchReservation<'a> {
    pub(super) fn new(ring: &'a mut TxRing, count: usize) -> Self {
        BatchReservation {
            raw: ring.h.raw.clone(),
            shadow: ring.h.mirror.shadow(),
            start: ring.h.head,
            count,
            filled: 0,
            max_len: ring.max_payload_size(),
            ring,
        }
    }

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
        // The buffer this handle claimed for the slot (see `held.rs`).
        let idx = buf_in(&self.shadow, k);
        // SAFETY: k is one of the `count` reserved slots in the user's [head, tail).
        let p = match unsafe { self.raw.fill_slot_at(k, idx, len as u16, 0) } {
            Ok(p) => p,
            Err(idx) => {
                if !self.ring.h.reclaim(k) {
                    return Err(self.ring.h.corrupt(k, idx, len as u16));
                }
                // SAFETY: as above.
                unsafe {
                    self.raw
                        .fill_slot_at(k, buf_in(&self.shadow, k), len as u16, 0)
                }
                .map_err(|idx| self.ring.h.corrupt(k, idx, len as u16))?
            }
        };
        if index >= self.filled {
            if index > self.filled {
                empty_skipped(&self.ring.h.raw, self.start, self.filled, index);
            }
            self.filled = index + 1;
        }
        // SAFETY: p is valid for buf_size >= len bytes (buf_ptr); the buffer belongs to a slot
        // the user owns and is borrowed mutably through `self` for the slice's lifetime. It
        // is the buffer this handle claimed for the slot (its shadow), which no other handle
        // of this process holds (`held.rs`): whatever a peer writes into the slot, no other
        // view of these bytes exists here.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }

    /// Fills the reserved slots in order, from the first one no `packet` or `fill` call has
    /// reached yet: `f(index, buf)` writes packet `index` into `buf`, the slot's whole buffer
    /// ([`max_payload_size`](TxRing::max_payload_size) bytes), and returns the packet's
    /// length. Returns how many packets this call filled.
    ///
    /// The cheapest way to fill a batch: per packet, one check of the slot's buffer index
    /// and one of the returned length. It stops at a length larger than the buffer
    /// ([`Error::PacketTooLarge`]) or a slot with an out-of-range buffer
    /// ([`Error::CorruptSlot`]), leaving that slot and the following ones unfilled (the
    /// packets before it are filled and go out at `commit`).
    ///
    /// ```no_run
    /// # let nm = netmap_rs::NetmapBuilder::new("x{1").build()?;
    /// # let mut tx = nm.tx_ring(0)?;
    /// let frame = [0u8; 60];
    /// let mut r = tx.reserve_batch(64)?;
    /// r.fill(|_, buf| {
    ///     buf[..frame.len()].copy_from_slice(&frame);
    ///     frame.len()
    /// })?;
    /// r.commit();
    /// tx.sync()?;
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    #[inline]
    pub fn fill(&mut self, mut f: impl FnMut(usize, &mut [u8]) -> usize) -> Result<usize, Error> {
        self.fill_slots::<false>(|i, buf, _| f(i, buf))
    }

    /// Like [`fill`](BatchReservation::fill), for a sender that writes the same bytes again
    /// and again (C `pkt-gen`'s default): `f(index, buf, changed)` also learns whether the
    /// buffer may hold anything other than what this handle last wrote into that slot:
    /// `changed` is true until this handle has filled every slot of the ring once through
    /// reservations, and whenever the slot carries `NS_BUF_CHANGED` (the kernel, e.g. a netmap
    /// pipe or a NIC driver, put another buffer there). When it is false, `f` may leave the
    /// bytes as they are and return only the length. A hint for speed, not for safety: `buf`
    /// is always a valid buffer of the slot.
    #[inline]
    pub fn fill_reused(
        &mut self,
        f: impl FnMut(usize, &mut [u8], bool) -> usize,
    ) -> Result<usize, Error> {
        self.fill_slots::<true>(f)
    }

    /// The loop of [`fill`](Self::fill) (`REUSED` false: `changed` is always true and no
    /// slot flags are read, so `fill` pays nothing for it) and of
    /// [`fill_reused`](Self::fill_reused).
    #[inline(always)]
    fn fill_slots<const REUSED: bool>(
        &mut self,
        mut f: impl FnMut(usize, &mut [u8], bool) -> usize,
    ) -> Result<usize, Error> {
        let (raw, shadow) = (&self.raw, &self.shadow);
        let (n, max) = (raw.num_slots(), self.max_len);
        let first = self.filled;
        let fresh_until = u64::from(n).saturating_sub(self.ring.written) as usize;
        let mut k = advance(self.start, first as u32, n);
        for i in first..self.count {
            if k >= n {
                // Never (the cursor wraps at n); said once here, the compiler drops the
                // shadow's and the slot's own checks of the same thing below.
                self.filled = i;
                return Err(slot_outside(k, n));
            }
            // `fill` reads only the buffer index; `fill_reused` also the flags.
            // The buffer this handle holds in the slot (see `held.rs`), never the index the
            // slot says now.
            // SAFETY: the shadow is the handle's, as long as its ring (`Held::mirror`).
            let idx = unsafe { buf_at(shadow, k, n) };
            let p = raw.buf_ptr(idx).ok_or(idx);
            let flags = if REUSED {
                // SAFETY: k is one of the `count` reserved slots in the user's [head, tail).
                unsafe { raw.slot_len_flags(k) }.1
            } else {
                0
            };
            let p = match p {
                Ok(p) => p,
                Err(idx) => {
                    // A slot refused when it was claimed may name a free buffer by now.
                    match Some(())
                        .filter(|_| self.ring.h.reclaim(k))
                        .and_then(|_| raw.buf_ptr(buf_in(shadow, k)))
                    {
                        Some(p) => p,
                        None => {
                            self.filled = i;
                            return Err(self.ring.h.corrupt(k, idx, 0));
                        }
                    }
                }
            };
            let changed = !REUSED || i < fresh_until || flags & NS_BUF_CHANGED != 0;
            // SAFETY: p is valid for buf_size >= max bytes (buf_ptr); the buffer belongs to a
            // slot the user owns, and the slice lives only during this call of `f` (a second
            // slot of this ring naming the same buffer gets its slice after this one is gone).
            // No other handle of this process holds the buffer (the shadow, `held.rs`), so
            // no other view of it exists.
            let len = f(
                i,
                unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), max) },
                changed,
            );
            if len > max {
                self.filled = i;
                return Err(Error::PacketTooLarge(len));
            }
            // SAFETY: as above, the slot is the user's.
            unsafe { raw.set_len_flags(k, len as u16, 0) };
            k = next(k, n);
        }
        self.filled = self.count;
        Ok(self.count - first)
    }

    /// Publishes the filled packets (up to the highest index asked for) to the ring's
    /// cursor; they reach the kernel at the next sync. Returns how many were published.
    pub fn commit(self) -> usize {
        let n = self.ring.h.raw.num_slots();
        self.ring.h.head = advance(self.start, self.filled as u32, n);
        self.ring.written += self.filled as u64;
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

/// The error for a cursor outside the ring (never made: cursors wrap at the ring's size).
#[cold]
#[inline(never)]
fn slot_outside(k: u32, n: u32) -> Error {
    Error::RingState(format!("slot {k} outside a ring of {n}"))
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

/// Frames borrowed from an [`RxRing`]; see [`RxRing::batch`]. Frames taken are consumed
/// when the iterator is dropped; until then the ring's cursor does not move, even when the
/// iterator refreshes its view of the ring (so a forgotten iterator consumes nothing: its
/// frames would be received again). Corrupt slots are skipped and logged.
#[derive(Debug)]
pub struct RxBatch<'a> {
    h: &'a mut Handle,
    /// Copies of the ring's view and cursor: the per-packet path reads and advances these,
    /// which the compiler keeps in registers (the ring's own fields would be reloaded after
    /// every `memcpy` the caller does out of a frame). The cursor is written back on drop.
    raw: RawRing,
    /// The handle's shadow (as in [`BatchReservation`]).
    shadow: &'a [AtomicU32],
    head: u32,
    /// Packets in view (between `head` and the last tail seen) still to be yielded; the
    /// per-packet path counts this down and never compares against the tail.
    ready: u32,
    /// How many more the caller allows beyond `ready`.
    left: usize,
    ring_index: u16,
}

impl<'a> RxBatch<'a> {
    #[inline]
    pub(super) fn new(ring: &'a mut RxRing, max: usize) -> Self {
        let RxRing { h, shadow } = ring;
        let n = h.raw.num_slots();
        let ready = (distance(h.head, h.tail, n) as usize).min(max);
        RxBatch {
            raw: h.raw.clone(),
            shadow,
            head: h.head,
            ready: ready as u32,
            left: max - ready,
            ring_index: h.index as u16,
            h,
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
        loop {
            if self.ready == 0 {
                // The view is used up: look at the ring's tail once more (no system call).
                if self.left == 0 {
                    return None;
                }
                let tail = refill(self.h);
                let r = (distance(self.head, tail, self.raw.num_slots()) as usize).min(self.left);
                if r == 0 {
                    return None;
                }
                self.ready = r as u32;
                self.left -= r;
            }
            self.ready -= 1;
            let k = self.head;
            // A corrupt slot is consumed too (so it cannot stall the ring) and reported.
            self.head = next(k, self.raw.num_slots());
            // SAFETY: the shadow is the handle's, as long as its ring (`Held::mirror`).
            let idx = unsafe { buf_at(self.shadow, k, self.raw.num_slots()) };
            // SAFETY: k is in the user's [head, tail) (tail loaded with Acquire at a refresh;
            // `ready` never exceeds the distance from the cursor to that tail).
            match unsafe { read_slot(&self.raw, k, idx) } {
                Ok(r) => {
                    // SAFETY: ptr..ptr+len lies inside the region (buf_ptr, len <= buf_size).
                    // The ring is mutably borrowed for 'a by this iterator, so no sync can
                    // release the slot while the frame lives, and the buffer is this handle's
                    // claim (shadow), held by no other handle here (`held.rs`): no `&mut` view
                    // of it can exist while the frame lives. (A peer writing its bytes only
                    // changes what the frame reads.)
                    let data =
                        unsafe { std::slice::from_raw_parts(r.ptr.as_ptr(), r.len as usize) };
                    // SAFETY: k is the user's (as above).
                    let stamp = unsafe { self.h.stamp_of(k) };
                    return Some(
                        Frame::from_slot(data, r.flags, self.ring_index, k).stamped(stamp),
                    );
                }
                Err(c) => {
                    self.h.log_corrupt(c.slot, c.buf_idx, c.len);
                }
            }
        }
    }
}

impl Drop for RxBatch<'_> {
    /// Writes the cursor back: frames taken are consumed (released at the next sync).
    #[inline]
    fn drop(&mut self) {
        self.h.head = self.head;
    }
}

//! Packets longer than one buffer: chains of slots, every slot but the last flagged
//! `NS_MOREFRAG`, as netmap describes them.
//!
//! - [`TxRing::send`] splits a packet longer than a buffer over the fewest slots, all or
//!   nothing (a chain is published whole or not at all).
//! - [`RxRing::recv_packet`] (and the owned paths built on [`RxRing::take_owned`], such as the
//!   Tokio `Stream`) gather a chain into one owned frame; a one-slot packet is lent as
//!   [`RxRing::recv`] lends it. `recv`, batches and `recv_batch` keep lending one slot at a
//!   time: [`Frame::more_fragments`] says the packet goes on in the next slot.
//!
//! A chain comes from the peer (the kernel, a driver, another process): the walk never goes
//! past the tail in view, so a chain that does not end there (only a broken or hostile peer
//! publishes one; every backend of this crate publishes whole packets) is consumed and
//! reported as [`Error::TruncatedPacket`], never waited for: it cannot wedge the ring.
//! These paths run only for chains: the one-slot paths pay one compare each (`send`: the
//! length against a buffer, which it already made; the owned RX paths: the flag).

use bytes::Bytes;

use super::{read_slot, RawFrame, RxRing, TxRing};
use crate::abi::NS_MOREFRAG;
use crate::error::Error;
use crate::ring::{distance, next};
use crate::sync::frame::Frame;

/// Largest packet [`TxRing::send`] takes, whatever the ring: the largest IP datagram.
const MAX_PACKET: usize = 65_535;

impl TxRing {
    /// Largest packet [`send`](TxRing::send) takes: 65,535 bytes, or fewer when the ring has
    /// fewer slots than such a packet needs. Packets longer than
    /// [`max_payload_size`](TxRing::max_payload_size) go out as a chain of slots
    /// (`NS_MOREFRAG`); whether the port's interface takes them is the driver's word at sync
    /// ([`Error::FrameOverMtu`] over the MTU).
    pub fn max_packet_size(&self) -> usize {
        let per = self.max_payload_size();
        let slots = self.num_slots().saturating_sub(1).max(1);
        per.saturating_mul(slots).min(MAX_PACKET).max(per)
    }

    /// Slots [`send`](TxRing::send) takes for a packet of `len` bytes (at least one).
    pub fn slots_for(&self, len: usize) -> usize {
        len.div_ceil(self.max_payload_size().max(1)).max(1)
    }

    /// `send` for a packet longer than one buffer: the fewest slots, each full but the last,
    /// `NS_MOREFRAG` on all but the last. Nothing is published on error.
    #[cold]
    #[inline(never)]
    pub(super) fn send_chain(&mut self, buf: &[u8]) -> Result<(), Error> {
        if buf.len() > self.max_packet_size() {
            return Err(Error::PacketTooLarge(buf.len()));
        }
        let per = self.max_payload_size();
        let count = self.slots_for(buf.len());
        let h = &mut self.h;
        let n = h.raw.num_slots();
        if (distance(h.head, h.tail, n) as usize) < count && (h.refresh() as usize) < count {
            tracing::trace!(ring = h.index, count, "tx ring has no room for the chain");
            return Err(Error::InsufficientSpace);
        }
        let mut k = h.head;
        for (i, part) in buf.chunks(per).enumerate() {
            let flags = if i + 1 < count { NS_MOREFRAG } else { 0 };
            let len = part.len() as u16;
            // SAFETY: k is one of `count` slots from the cursor, all in the user's
            // [head, tail) (checked above; the kernel only moves tail forward).
            let p = match unsafe { h.raw.fill_slot_at(k, h.buf_of(k), len, flags) } {
                Ok(p) => p,
                Err(idx) => {
                    if !h.reclaim(k) {
                        return Err(h.corrupt(k, idx, len));
                    }
                    // SAFETY: as above.
                    unsafe { h.raw.fill_slot_at(k, h.buf_of(k), len, flags) }
                        .map_err(|idx| h.corrupt(k, idx, len))?
                }
            };
            // SAFETY: p points at buf_size >= part.len() bytes inside the region (buf_ptr);
            // the slot and its buffer are the user's and the buffer is this handle's claim,
            // held by no other handle (`held.rs`), so no frame of this process views it;
            // `copy` tolerates overlap with `buf`.
            unsafe { std::ptr::copy(part.as_ptr(), p.as_ptr(), part.len()) };
            k = next(k, n);
        }
        // Published only now: an error above leaves the cursor, so nothing of the chain goes out.
        h.head = k;
        Ok(())
    }
}

impl RxRing {
    /// The next whole packet, or `None` when the ring is empty. A packet in one slot is lent
    /// as [`recv`](RxRing::recv) lends it (zero copy); one spread over slots (`NS_MOREFRAG`)
    /// is gathered into an owned frame (one copy), its slots consumed. A corrupt slot or a
    /// chain cut short is logged and skipped; [`try_recv_packet`](Self::try_recv_packet)
    /// returns them.
    pub fn recv_packet(&mut self) -> Option<Frame<'_>> {
        loop {
            match self.next_raw()? {
                Ok(r) if r.flags & NS_MOREFRAG == 0 => return Some(self.frame(r)),
                Ok(r) => {
                    if let Ok(f) = self.gather(r) {
                        return Some(f);
                    }
                }
                Err(c) => self.h.log_corrupt(c.slot, c.buf_idx, c.len),
            }
        }
    }

    /// Like [`recv_packet`](Self::recv_packet), but returns [`Error::CorruptSlot`] and
    /// [`Error::TruncatedPacket`] (the slots concerned are consumed, so the next call goes on).
    pub fn try_recv_packet(&mut self) -> Result<Option<Frame<'_>>, Error> {
        match self.next_raw() {
            None => Ok(None),
            Some(Ok(r)) if r.flags & NS_MOREFRAG == 0 => Ok(Some(self.frame(r))),
            Some(Ok(r)) => self.gather(r).map(Some),
            Some(Err(c)) => Err(self.h.corrupt(c.slot, c.buf_idx, c.len)),
        }
    }

    /// The owned path's chain: `first` holds the first fragment's bytes (already copied, the
    /// cursor past its slot); the rest of the packet is gathered after them.
    #[cold]
    #[inline(never)]
    pub(super) fn finish_chain(&mut self, first: Frame<'static>) -> Result<Frame<'static>, Error> {
        let all = self.gather_from(first.payload().to_vec())?;
        Ok(Frame::gathered(Bytes::from(all), &first))
    }

    /// Gathers the packet whose first fragment `first` was just taken (the cursor is past it)
    /// into an owned frame. Every fragment read is consumed. The walk stops at the tail in
    /// view (refreshed once when reached): a chain that has not ended there is
    /// [`Error::TruncatedPacket`]. A corrupt fragment ends the walk with
    /// [`Error::CorruptSlot`], after the rest of its chain (in view) is consumed too.
    #[cold]
    #[inline(never)]
    pub(super) fn gather(&mut self, first: RawFrame) -> Result<Frame<'static>, Error> {
        let head = self.frame(first).into_owned();
        self.finish_chain(head)
    }

    /// Appends the fragments after the cursor to `data` (the bytes of the packet's first
    /// fragment, whose slot is just before the cursor) up to the slot that ends the packet;
    /// see [`gather`](Self::gather).
    fn gather_from(&mut self, mut data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let ring = self.h.index;
        let n = self.h.raw.num_slots();
        let first = crate::ring::prev(self.h.head, n);
        loop {
            let h = &mut self.h;
            if h.head == h.tail && h.refresh() == 0 {
                tracing::warn!(
                    ring,
                    slot = first,
                    len = data.len(),
                    "packet cut short: NS_MOREFRAG on the last slot in view; consumed"
                );
                return Err(Error::TruncatedPacket {
                    ring,
                    slot: first,
                    len: data.len(),
                });
            }
            let k = h.head;
            // SAFETY: k is in the user's [head, tail) (tail loaded with Acquire).
            let r = unsafe { read_slot(&h.raw, k, h.buf_of(k)) };
            h.head = next(k, n);
            match r {
                Ok(r) => {
                    data.extend_from_slice(bytes_of(&r));
                    if r.flags & NS_MOREFRAG == 0 {
                        return Ok(data);
                    }
                }
                Err(c) => {
                    // SAFETY: as above: slot k (consumed, not yet released) is the user's.
                    let (_, flags) = unsafe { h.raw.slot_len_flags(k) };
                    if flags & NS_MOREFRAG != 0 {
                        self.skip_chain();
                    }
                    return Err(self.h.corrupt(c.slot, c.buf_idx, c.len));
                }
            }
        }
    }

    /// Consumes the slots in view up to and including the next one without `NS_MOREFRAG`.
    #[cold]
    fn skip_chain(&mut self) {
        let h = &mut self.h;
        let n = h.raw.num_slots();
        while h.head != h.tail {
            let k = h.head;
            // SAFETY: k is in the user's [head, tail).
            let (_, flags) = unsafe { h.raw.slot_len_flags(k) };
            h.head = next(k, n);
            if flags & NS_MOREFRAG == 0 {
                break;
            }
        }
    }
}

/// The bytes of a slot just read (to be copied at once).
fn bytes_of(r: &RawFrame) -> &[u8] {
    // SAFETY: ptr..ptr+len lies inside the region (buf_ptr, len <= buf_size); the slot is
    // the user's until the next sync, which needs the ring mutably, and every caller copies
    // the bytes before it returns (the borrow ends with `r`). The buffer is the handle's
    // claim, held by no other handle of this process (`held.rs`); a peer writing its bytes
    // only changes what is copied.
    unsafe { std::slice::from_raw_parts(r.ptr.as_ptr(), usize::from(r.len)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendChoice;
    use crate::sync::NetmapBuilder;

    /// Both ends of emulated pipe `name` with 8-slot rings, and ring 0 of each.
    fn pipe(name: &str) -> (crate::Netmap, crate::Netmap, TxRing, RxRing) {
        let open = |n: String| {
            NetmapBuilder::new(&n)
                .num_slots(8)
                .backend(BackendChoice::Emulated)
                .build()
                .unwrap()
        };
        let a = open(format!("{name}{{0"));
        let b = open(format!("{name}}}0"));
        let (tx, rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
        (a, b, tx, rx)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A packet longer than a buffer goes out as the fewest slots, `NS_MOREFRAG` on all but
    /// the last; `recv_packet` gathers it whole, `recv` shows the fragments.
    #[test]
    fn long_packets_travel_as_chains_and_arrive_whole() {
        let (_a, _b, mut tx, mut rx) = pipe("chain");
        let per = tx.max_payload_size();
        assert_eq!(
            (tx.slots_for(0), tx.slots_for(per), tx.slots_for(per + 1)),
            (1, 1, 2)
        );
        let big = pattern(2 * per + 100);
        tx.send(&big).unwrap();
        tx.send(b"after").unwrap();
        assert_eq!(
            tx.pending(),
            4,
            "three slots for the chain, one for the short packet"
        );
        tx.sync().unwrap();
        rx.sync().unwrap();
        let f = rx.recv_packet().unwrap();
        assert_eq!(f.payload(), &big[..]);
        assert!(!f.more_fragments() && !f.is_borrowed());
        assert_eq!(f.ring_index(), 0);
        let f = rx.recv_packet().unwrap();
        assert_eq!((f.payload(), f.is_borrowed()), (&b"after"[..], true));
        assert!(rx.recv_packet().is_none());
        rx.sync().unwrap();

        // The slot view: three fragments, then the end.
        let exact = pattern(per);
        tx.sync().unwrap();
        tx.send(&big).unwrap();
        tx.send(&exact).unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        let frags: Vec<(usize, bool)> =
            std::iter::from_fn(|| rx.recv().map(|f| (f.len(), f.more_fragments()))).collect();
        assert_eq!(
            frags,
            [(per, true), (per, true), (100, false), (per, false)],
            "a packet of exactly one buffer takes one slot"
        );
    }

    /// A chain is published whole or not at all; a packet longer than the ring can ever
    /// hold is refused; nothing is written on error.
    #[test]
    fn chains_are_all_or_nothing() {
        let (_a, _b, mut tx, mut rx) = pipe("chainfull");
        let per = tx.max_payload_size();
        assert_eq!(tx.max_packet_size(), 7 * per, "8 slots, one always empty");
        assert!(matches!(
            tx.send(&pattern(7 * per + 1)),
            Err(Error::PacketTooLarge(n)) if n == 7 * per + 1
        ));
        for i in 0..4u8 {
            tx.send(&[i]).unwrap();
        }
        let four = pattern(3 * per + 1);
        assert!(matches!(tx.send(&four), Err(Error::InsufficientSpace)));
        assert_eq!(tx.pending(), 4, "nothing of the refused chain was queued");
        let three = pattern(3 * per);
        tx.send(&three).unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        for i in 0..4u8 {
            assert_eq!(rx.recv_packet().unwrap().payload(), &[i]);
        }
        assert_eq!(rx.recv_packet().unwrap().payload(), &three[..]);
        rx.sync().unwrap();
        tx.sync().unwrap();
        tx.send(&four).unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        assert_eq!(rx.try_recv_packet().unwrap().unwrap().payload(), &four[..]);
    }

    /// A chain cut short in view (a hostile peer flags the last slot `NS_MOREFRAG`) is
    /// consumed and reported, never waited for, and the next packet follows; a corrupt
    /// fragment ends its chain the same way.
    #[test]
    fn cut_or_corrupt_chains_are_consumed_and_reported() {
        let (_a, b, mut tx, mut rx) = pipe("chaincut");
        for p in [&b"a"[..], b"bb"] {
            tx.send(p).unwrap();
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        let raw = &b.inner.rx[0].raw;
        let last = crate::ring::prev(rx.h.tail, raw.num_slots());
        // SAFETY: (test acting as a hostile peer): the slot is in the receiver's view and
        // this thread is alone on the ring; a peer may write any slot field at any time.
        unsafe { raw.set_len_flags(last, 2, NS_MOREFRAG) };
        assert_eq!(rx.try_recv_packet().unwrap().unwrap().payload(), b"a");
        assert!(matches!(
            rx.try_recv_packet(),
            Err(Error::TruncatedPacket {
                ring: 0,
                len: 2,
                ..
            })
        ));
        assert!(
            rx.try_recv_packet().unwrap().is_none(),
            "the cut chain was consumed"
        );
        rx.sync().unwrap();
        tx.sync().unwrap();

        // A chain whose middle fragment names a buffer outside the pool.
        let per = tx.max_payload_size();
        tx.send(&pattern(3 * per)).unwrap();
        tx.send(b"next").unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        let mid = crate::ring::next(rx.h.head, raw.num_slots());
        // SAFETY: as above; a length over the buffer size makes the slot corrupt.
        unsafe { raw.set_len_flags(mid, u16::MAX, NS_MOREFRAG) };
        assert!(matches!(
            rx.try_recv_packet(),
            Err(Error::CorruptSlot { .. })
        ));
        assert_eq!(
            rx.recv_packet().unwrap().payload(),
            b"next",
            "the rest of the corrupt chain was skipped"
        );
    }
}

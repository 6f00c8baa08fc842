//! The syncs of one AF_XDP queue: netmap TX slots to TX descriptors and completions back
//! (`txsync`), RX descriptors to netmap RX slots and released buffers to the fill ring
//! (`rxsync`). See the module above for the protocol.

use super::chain::Step;
use super::*;
use crate::abi::NS_MOREFRAG;
use crate::backend::linux::ringmem::whole_packets_end;
use crate::backend::linux::sys::XDP_PKT_CONTD;

/// Most bytes one descriptor (one slot) carries: a UMEM frame after the XDP headroom.
const ONE_FRAME: usize = (BUF_SIZE as u64 - HEADROOM) as usize;

/// UMEM address where buffer `idx` starts.
pub(super) fn buf_addr(idx: u32) -> u64 {
    u64::from(idx) * u64::from(BUF_SIZE) + HEADROOM
}

/// UMEM address of frame `idx` (for the fill ring).
pub(super) fn frame_addr(idx: u32) -> u64 {
    u64::from(idx) * u64::from(BUF_SIZE)
}

impl Port {
    pub(super) fn txsync_queue(
        &self,
        pos: usize,
        q: &XdpQueue,
        busy: &mut bool,
    ) -> Result<(), Error> {
        let ring = &q.tx;
        let n = ring.num_slots();
        let mut guard = lock(&q.txs);
        let side = &mut *guard;
        let tail = tx_tail(&side.st, n);
        let head = ring.load_head();
        let cur = ring.load_cur();
        if !in_cyclic_range(side.st.hwcur, head, tail, n) || !in_cyclic_range(head, cur, tail, n) {
            return Err(Error::RingState(format!(
                "xdp:{} tx ring {pos}: head {head} / cur {cur} outside [{}, {tail}]",
                self.ifname, side.st.hwcur
            )));
        }
        reap(side, ring, n)?;
        let mut refused = None;
        side.st.descs.clear();
        // SAFETY: slots [hwcur, head) were released by the user; the queue lock is held.
        let end = unsafe { whole_packets_end(ring, side.st.hwcur, head) };
        let mut k = side.st.hwcur;
        while k != end {
            // SAFETY: slots [hwcur, head) were released by the user
            // (Acquire load of head) and are the driver's until the tail passes them again;
            // the queue lock is held.
            let (idx, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & (NS_MOREFRAG | NS_BUF_CHANGED) != 0 {
                if flags & NS_MOREFRAG != 0 {
                    // A packet over several slots (out of line: the one-slot path stays as
                    // it was).
                    k = self.tx_chain(pos, ring, &mut side.st, k, end, &mut refused);
                    continue;
                }
                // SAFETY: as above.
                unsafe { ring.set_len_flags(k, len, flags & !NS_BUF_CHANGED) };
            }
            let why = if idx >= self.nbufs {
                Some(Error::CorruptSlot {
                    ring: pos,
                    slot: k,
                    buf_idx: idx,
                    len,
                })
            } else if usize::from(len) > self.max_slot {
                Some(Error::FrameOverMtu {
                    len: len.into(),
                    max: self.max_slot,
                })
            } else {
                None
            };
            side.st.inflight.push_back(why.is_none());
            match why {
                None => side.st.descs.push(XdpDesc {
                    addr: buf_addr(idx),
                    len: len.into(),
                    options: 0,
                }),
                Some(e) => {
                    tracing::warn!(interface = %self.ifname, slot = k, error = %e, "TX slot not sent");
                    refused.get_or_insert(e);
                }
            }
            k = next(k, n);
        }
        side.st.hwcur = end;
        if !side.st.descs.is_empty() {
            // In flight never exceeds n - 1 < the TX ring size, so every descriptor fits.
            let put = side.xsk.tx.produce(&side.st.descs)?;
            if put != side.st.descs.len() {
                return Err(Error::BadLayout(format!(
                    "xdp:{}: the AF_XDP TX ring took {put} of {} descriptors although the \
                     slots in flight fit in it",
                    self.ifname,
                    side.st.descs.len()
                )));
            }
        }
        if !side.st.inflight.is_empty() {
            *busy |= side.xsk.kick_tx()?;
            reap(side, ring, n)?;
        }
        ring.store_tail(tx_tail(&side.st, n));
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The TX packet whose first slot `k` carries `NS_MOREFRAG`: its slots up to the one that
    /// ends it (or `end`, for a chain filling the ring, which never ends) become descriptors
    /// with `XDP_PKT_CONTD` on all but the last, or are refused together (a slot outside the
    /// pool or over a frame, the whole over the MTU, more slots than `max_frags`, no end).
    /// Returns the slot after the packet.
    #[cold]
    #[inline(never)]
    fn tx_chain(
        &self,
        pos: usize,
        ring: &RawRing,
        st: &mut TxState,
        mut k: u32,
        end: u32,
        refused: &mut Option<Error>,
    ) -> u32 {
        let n = ring.num_slots();
        let first = st.descs.len();
        let (mut total, mut slots, mut why, mut more) = (0usize, 0usize, None, true);
        while k != end && more {
            // SAFETY: slots [hwcur, head) are the driver's; the queue lock is held.
            let (idx, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & NS_BUF_CHANGED != 0 {
                // SAFETY: as above.
                unsafe { ring.set_len_flags(k, len, flags & !NS_BUF_CHANGED) };
            }
            more = flags & NS_MOREFRAG != 0;
            if idx >= self.nbufs && why.is_none() {
                why = Some(Error::CorruptSlot {
                    ring: pos,
                    slot: k,
                    buf_idx: idx,
                    len,
                });
            }
            if usize::from(len) > ONE_FRAME && why.is_none() {
                // One descriptor takes at most a UMEM frame after the headroom.
                why = Some(Error::FrameOverMtu {
                    len: len.into(),
                    max: ONE_FRAME,
                });
            }
            st.descs.push(XdpDesc {
                addr: buf_addr(idx),
                len: len.into(),
                options: if more { XDP_PKT_CONTD } else { 0 },
            });
            total += usize::from(len);
            slots += 1;
            k = next(k, n);
        }
        if why.is_none() && total > self.max_frame {
            why = Some(Error::FrameOverMtu {
                len: total,
                max: self.max_frame,
            });
        }
        if why.is_none() && (slots > self.max_frags || more) {
            why = Some(Error::TooManyFragments {
                slots,
                max: self.max_frags,
            });
        }
        let sent = why.is_none();
        for _ in 0..slots {
            st.inflight.push_back(sent);
        }
        if let Some(e) = why {
            tracing::warn!(interface = %self.ifname, slot = k, slots, error = %e, "TX packet not sent");
            st.descs.truncate(first);
            refused.get_or_insert(e);
        }
        k
    }

    pub(super) fn rxsync_queue(&self, q: &XdpQueue) -> Result<(), Error> {
        let ring = &q.rx;
        let n = ring.num_slots();
        let mut guard = lock(&q.rxs);
        let side = &mut *guard;
        let head = ring.load_head();
        let cur = ring.load_cur();
        let hwtail = side.st.asm.hwtail;
        if !in_cyclic_range(side.st.hwcur, head, hwtail, n)
            || !in_cyclic_range(head, cur, hwtail, n)
        {
            return Err(Error::RingState(format!(
                "xdp:{} rx ring of queue {}: head {head} / cur {cur} outside [{}, {hwtail}]",
                self.ifname, q.id, side.st.hwcur
            )));
        }
        // Released slots: their buffers (swapped in or not) go back to the fill ring.
        let mut k = side.st.hwcur;
        while k != head {
            // SAFETY: slots [hwcur, head) were released by the user (Acquire load of head);
            // the queue lock is held.
            let (idx, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & NS_BUF_CHANGED != 0 {
                // SAFETY: as above.
                unsafe { ring.set_len_flags(k, len, flags & !NS_BUF_CHANGED) };
            }
            if idx < self.nbufs {
                side.st.refill.push(frame_addr(idx));
            } else {
                tracing::warn!(
                    interface = %self.ifname, slot = k, buf_idx = idx,
                    "released RX slot holds a buffer outside the pool; not given to the kernel"
                );
            }
            k = next(k, n);
        }
        side.st.hwcur = head;
        refill(side)?;
        let room = (n - 1 - distance(head, side.st.asm.written, n)) as usize;
        let room = room.min(side.st.descs.len());
        if room > 0 {
            let got = side.xsk.rx.consume(&mut side.st.descs[..room])?;
            // Back from the kernel (the memory's record of who holds which buffer).
            for d in &side.st.descs[..got] {
                side.st.lent.remove((d.addr / u64::from(BUF_SIZE)) as u32);
            }
            let mut i = 0;
            while i < got {
                if side.st.asm.idle() {
                    // The common case, as before multi-buffer: whole one-frame packets.
                    let mut tail = side.st.asm.hwtail;
                    while i < got {
                        let d = side.st.descs[i];
                        if d.options != 0 || d.addr % u64::from(BUF_SIZE) != HEADROOM {
                            break;
                        }
                        let idx = (d.addr / u64::from(BUF_SIZE)) as u32;
                        // SAFETY: slot `tail` lies in [hwtail, hwcur - 1): not yet shown to
                        // the user; the queue lock is held. The descriptor was checked to
                        // lie in one frame.
                        unsafe {
                            ring.set_buf_idx(tail, idx);
                            ring.set_len_flags(tail, d.len as u16, 0);
                        }
                        tail = next(tail, n);
                        i += 1;
                    }
                    side.st.asm.show_to(tail);
                    if i == got {
                        break;
                    }
                }
                // A fragment, a packet being dropped, or one the ring cannot show.
                let d = side.st.descs[i];
                i += 1;
                let within = d.addr % u64::from(BUF_SIZE);
                // Not where netmap buffer idx starts: cannot be shown without a copy.
                let ok = within == HEADROOM;
                if !ok {
                    tracing::warn!(
                        interface = %self.ifname, addr = d.addr,
                        "AF_XDP RX packet not at the XDP headroom; dropped"
                    );
                }
                let contd = d.options & XDP_PKT_CONTD != 0;
                let (step, back) = side.st.asm.step(contd, ok, n);
                if let Some((from, to)) = back {
                    give_back(ring, from, to, n, &mut side.st.refill);
                }
                match step {
                    Step::Refill => side.st.refill.push(d.addr - within),
                    Step::Slot { k, flags } => {
                        let idx = (d.addr / u64::from(BUF_SIZE)) as u32;
                        // SAFETY: slot k lies in [hwtail, hwcur - 1): not yet shown to the
                        // user (room was counted from the last slot written); the queue
                        // lock is held. The descriptor was checked to lie in one frame.
                        unsafe {
                            ring.set_buf_idx(k, idx);
                            ring.set_len_flags(k, d.len as u16, flags);
                        }
                    }
                }
            }
            if let Some((from, to)) = side.st.asm.stuck(n) {
                tracing::warn!(
                    interface = %self.ifname, slots = distance(from, to, n),
                    "AF_XDP RX packet longer than the ring can show; dropped"
                );
                give_back(ring, from, to, n, &mut side.st.refill);
            }
            refill(side)?;
        }
        side.xsk.wake_rx()?;
        ring.store_tail(side.st.asm.hwtail);
        Ok(())
    }
}

/// Puts the frames of RX slots `[from, to)` (written, never shown) back on the fill list.
fn give_back(ring: &RawRing, from: u32, to: u32, n: u32, refill: &mut Vec<u64>) {
    let mut k = from;
    while k != to {
        // SAFETY: the slots lie past the tail shown to the user (the driver wrote them and
        // has not published them); the queue lock is held.
        let idx = unsafe { ring.slot_buf_idx(k) };
        refill.push(frame_addr(idx));
        k = next(k, n);
    }
}

/// The user's TX tail: the slot before the oldest one in flight.
fn tx_tail(tx: &TxState, n: u32) -> u32 {
    let oldest = distance(tx.inflight.len() as u32, tx.hwcur, n);
    prev(oldest, n)
}

/// Takes completed frames and gives them to the oldest in-flight slots, in order.
pub(super) fn reap(side: &mut TxSide, ring: &RawRing, n: u32) -> Result<(), Error> {
    loop {
        let got = side.xsk.comp.consume(&mut side.st.comp)?;
        side.st.done.extend(
            side.st.comp[..got]
                .iter()
                .map(|&a| (a / u64::from(BUF_SIZE)) as u32),
        );
        if got < side.st.comp.len() {
            break;
        }
    }
    while let Some(&sent) = side.st.inflight.front() {
        let oldest = distance(side.st.inflight.len() as u32, side.st.hwcur, n);
        if sent {
            let Some(frame) = side.st.done.pop() else {
                break;
            };
            // SAFETY: the oldest in-flight slot is outside the user's [head, tail); the
            // queue lock is held.
            unsafe { ring.set_buf_idx(oldest, frame) };
        }
        side.st.inflight.pop_front();
    }
    if !side.st.done.is_empty() {
        let extra = side.st.done.len();
        side.st.done.clear();
        return Err(Error::BadLayout(format!(
            "the AF_XDP completion ring returned {extra} frame(s) more than were in flight"
        )));
    }
    Ok(())
}

/// Puts waiting frames on the fill ring (all fit in normal operation).
fn refill(side: &mut RxSide) -> Result<(), Error> {
    if side.st.refill.is_empty() {
        return Ok(());
    }
    let put = side.xsk.fill.produce(&side.st.refill)?;
    for &a in &side.st.refill[..put] {
        side.st.lent.insert((a / u64::from(BUF_SIZE)) as u32);
    }
    side.st.refill.drain(..put);
    Ok(())
}

//! The syncs of one AF_XDP queue: netmap TX slots to TX descriptors and completions back
//! (`txsync`), RX descriptors to netmap RX slots and released buffers to the fill ring
//! (`rxsync`). See the module above for the protocol.

use super::*;

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
        let mut k = side.st.hwcur;
        while k != head {
            // SAFETY: slots [hwcur, head) were released by the user
            // (Acquire load of head) and are the driver's until the tail passes them again;
            // the queue lock is held.
            let (idx, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & NS_BUF_CHANGED != 0 {
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
            } else if usize::from(len) > self.max_frame {
                Some(Error::FrameOverMtu {
                    len: len.into(),
                    max: self.max_frame,
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
        side.st.hwcur = head;
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

    pub(super) fn rxsync_queue(&self, q: &XdpQueue) -> Result<(), Error> {
        let ring = &q.rx;
        let n = ring.num_slots();
        let mut guard = lock(&q.rxs);
        let side = &mut *guard;
        let head = ring.load_head();
        let cur = ring.load_cur();
        let hwtail = side.st.hwtail;
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
        let room = (n - 1 - distance(head, hwtail, n)) as usize;
        let room = room.min(side.st.descs.len());
        if room > 0 {
            let got = side.xsk.rx.consume(&mut side.st.descs[..room])?;
            let mut tail = hwtail;
            for i in 0..got {
                let d = side.st.descs[i];
                let within = d.addr % u64::from(BUF_SIZE);
                if within != HEADROOM {
                    // Not where netmap buffer idx starts: cannot be shown without a copy.
                    tracing::warn!(
                        interface = %self.ifname, addr = d.addr,
                        "AF_XDP RX packet not at the XDP headroom; dropped"
                    );
                    side.st.refill.push(d.addr - within);
                    continue;
                }
                let idx = (d.addr / u64::from(BUF_SIZE)) as u32;
                // SAFETY: slot `tail` lies in [hwtail, hwcur - 1): not yet shown to the user;
                // the queue lock is held. The descriptor was checked to lie in one frame.
                unsafe {
                    ring.set_buf_idx(tail, idx);
                    ring.set_len_flags(tail, d.len as u16, 0);
                }
                tail = next(tail, n);
            }
            side.st.hwtail = tail;
            refill(side)?;
        }
        side.xsk.wake_rx()?;
        ring.store_tail(side.st.hwtail);
        Ok(())
    }
}

/// The user's TX tail: the slot before the oldest one in flight.
fn tx_tail(tx: &TxState, n: u32) -> u32 {
    let oldest = distance(tx.inflight.len() as u32, tx.hwcur, n);
    prev(oldest, n)
}

/// Takes completed frames and gives them to the oldest in-flight slots, in order.
fn reap(side: &mut TxSide, ring: &RawRing, n: u32) -> Result<(), Error> {
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
    side.st.refill.drain(..put);
    Ok(())
}

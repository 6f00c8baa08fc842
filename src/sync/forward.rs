//! Zero-copy forwarding between rings that share memory: [`zero_copy_forward`] and
//! [`forward_filtered`].

use crate::abi::{NS_BUF_CHANGED, NS_MOREFRAG};
use crate::error::Error;
use crate::ring::next;
use std::sync::Arc;

use crate::sync::frame::Frame;
use crate::sync::held::{Held, Mirror};
use crate::sync::ring::{RxRing, TxRing};

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
    // Both handles' held buffers live in one table (same memory): the swaps below move
    // buffers between them, recorded in batches.
    let mut moves = Moves {
        held: rx.h.held.clone(),
        rx: rx.h.mirror.clone(),
        tx: tx.h.mirror.clone(),
        swaps: [(0, 0, 0, 0); MOVES],
        n: 0,
    };
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
        let (mut rs, mut ts) = unsafe { (rx.h.raw.slot(rk), tx.h.raw.slot(tk)) };
        // The buffers the two handles hold in these slots, not what the slots say now.
        (rs.buf_idx, ts.buf_idx) = (rx.h.buf_of(rk), tx.h.buf_of(tk));
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
        // Each handle now holds the other's buffer (the table follows in `moves`).
        moves.push((rk, rs.buf_idx, tk, ts.buf_idx));
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

/// Buffer swaps between an RX handle and a TX handle not yet written into their memory's
/// table of held buffers and their shadows: written every `MOVES` swaps and when dropped (on
/// every return path). Until then both handles still show the old buffers in the swapped
/// slots, which they hold: anyone else trying to claim them is refused, and neither slot is
/// lent again before the sync that releases it.
struct Moves {
    held: Arc<Held>,
    rx: Arc<Mirror>,
    tx: Arc<Mirror>,
    swaps: [(u32, u32, u32, u32); MOVES],
    n: usize,
}

const MOVES: usize = 64;

impl Moves {
    /// Records that the buffer of RX slot `rk` went to TX slot `tk`, and the other way.
    #[inline]
    fn push(&mut self, swap: (u32, u32, u32, u32)) {
        self.swaps[self.n] = swap;
        self.n += 1;
        if self.n == MOVES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.held.swapped(&self.rx, &self.tx, &self.swaps[..self.n]);
            self.n = 0;
        }
    }
}

impl Drop for Moves {
    fn drop(&mut self) {
        self.flush();
    }
}

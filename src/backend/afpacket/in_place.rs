//! Reception in place: the packets of an RX ring handed to a callback where the kernel put
//! them (its `TPACKET_V3` blocks or `TPACKET_V2` frames), with no copy into slots
//! ([`Driver::rx_in_place`](crate::backend::Driver::rx_in_place), behind
//! `RxRing::for_each_frame`).
//!
//! The walk is rxsync's ([`PacketSocket::rx_drain`](super::tpacket::PacketSocket::rx_drain)):
//! each block (frame) goes back to the kernel after the call for its last packet, and the
//! callback's `&[u8]` cannot outlive its call. The queue's lock is held across the callbacks,
//! so the thread running them must not take it again (a sync, wait or statistics read of the
//! same socket from inside the callback): [`Port::state`] refuses that with an error instead
//! of blocking for ever. The other threads wait for the callbacks to end.

use std::cell::RefCell;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{dropped_cut, lock, Port, Queue, State};
use crate::backend::InPlace;
use crate::error::Error;

thread_local! {
    /// The queues (their addresses) whose packets this thread is handing to callbacks in
    /// place: more than one when a callback receives from another ring in place.
    static LENDING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn lent_here(q: &Queue) -> bool {
    let me = q as *const Queue as usize;
    LENDING.with(|l| l.borrow().contains(&me))
}

/// Marks a queue as lent by this thread until dropped (also when a callback panics).
struct Lending;

impl Lending {
    fn enter(q: &Queue) -> Lending {
        LENDING.with(|l| l.borrow_mut().push(q as *const Queue as usize));
        Lending
    }
}

impl Drop for Lending {
    fn drop(&mut self) {
        LENDING.with(|l| l.borrow_mut().pop());
    }
}

impl Port {
    /// The state of queue `i`, locked. Refused on a thread that is handing this queue's
    /// packets to a callback (it holds the lock: taking it again would never return).
    pub(super) fn state(&self, i: usize) -> Result<MutexGuard<'_, State>, Error> {
        let q = &self.queues[i];
        if lent_here(q) {
            return Err(Error::PortBusy(format!(
                "afpacket:{} ring {i}: synced, waited on or read from inside a callback of \
                 RxRing::for_each_frame on the same ring, which holds the ring's socket \
                 meanwhile; do that after for_each_frame returns",
                self.ifname
            )));
        }
        Ok(lock(&q.state))
    }

    /// [`Driver::rx_in_place`](crate::backend::Driver::rx_in_place) of ring pair `i`.
    pub(super) fn rx_in_place_one<F: FnMut(&[u8], u64)>(
        &self,
        i: usize,
        tail: u32,
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<InPlace, Error> {
        if i >= self.queues.len() {
            return Err(Error::InvalidRingIndex(i));
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        loop {
            {
                let mut guard = self.state(i)?;
                let st = &mut *guard;
                if st.rx_hwtail != tail {
                    return Ok(InPlace::SlotsFirst);
                }
                let _lent = Lending::enter(&self.queues[i]);
                let (ifname, truncated) = (&self.ifname, &mut st.rx_truncated);
                let mut handed = 0;
                let got = st.sock.rx_drain(max, |data, wire_len, stamp_ns| {
                    if wire_len as usize > data.len() {
                        // Cut by the kernel: a frame is delivered whole or not at all.
                        dropped_cut(ifname, truncated, wire_len, data.len());
                        return;
                    }
                    f(data, stamp_ns);
                    handed += 1;
                });
                match got {
                    // The bad frame or block went back to the kernel unread; what came
                    // before it was handed over.
                    Err(e) if handed == 0 => return Err(e),
                    Err(e) => {
                        tracing::warn!(interface = %self.ifname, error = %e, "AF_PACKET frame skipped");
                        return Ok(InPlace::Handed(handed));
                    }
                    Ok(_) if handed > 0 => return Ok(InPlace::Handed(handed)),
                    Ok(_) => {}
                }
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(InPlace::Handed(0)),
                },
                None => None,
            };
            self.socks.sleep_readable(i, left)?;
        }
    }
}

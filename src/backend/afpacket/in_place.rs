//! Reception in place: the packets of an RX ring handed to a callback where the kernel put
//! them (its `TPACKET_V3` blocks or `TPACKET_V2` frames), with no copy into slots
//! ([`Driver::rx_in_place`](crate::backend::Driver::rx_in_place), behind
//! `RxRing::for_each_frame`).
//!
//! The walk is rxsync's ([`RxWalk::drain`]): each block (frame) goes back to the kernel
//! after the call for its last packet, and the callback's `&[u8]` cannot outlive its call.
//! The walk is taken out of the queue's state for the calls ([`PacketSocket::lend_rx`]), so
//! no lock is held while user code runs: the callback, and any other thread, may sync, wait
//! on or read the statistics of any ring of the port (an rxsync meanwhile finds no walk and
//! leaves this queue's packets to the reader in place). A packet counts as taken before the
//! callback sees it, and the walk goes back to the queue however the call ends ([`Lent`]),
//! so a callback that panics costs no packet and repeats none.
//!
//! [`PacketSocket::lend_rx`]: super::tpacket::PacketSocket::lend_rx

use std::time::{Duration, Instant};

use super::tpacket::RxWalk;
use super::{dropped_cut, lock, Port, Queue};
use crate::backend::wait::time_left;
use crate::backend::InPlace;
use crate::error::Error;

/// Longest sleep on the socket before the reader looks at the ring again: packets another
/// thread's rxsync copied into this ring's slots, between the reader's look and its sleep,
/// wake no socket (rare: only a sync of the whole port from another thread does it).
const RECHECK: Duration = Duration::from_millis(200);

impl Port {
    /// [`Driver::rx_in_place`](crate::backend::Driver::rx_in_place) of ring pair `i`.
    pub(super) fn rx_in_place_one<F: FnMut(&[u8], u64)>(
        &self,
        i: usize,
        tail: u32,
        max: usize,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<InPlace, Error> {
        let q = self.queues.get(i).ok_or(Error::InvalidRingIndex(i))?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        loop {
            let walk = {
                let mut st = lock(&q.state);
                if st.rx_hwtail != tail {
                    return Ok(InPlace::SlotsFirst);
                }
                match st.sock.lend_rx() {
                    Some(w) => w,
                    // Another reader in place of this queue: one handle per ring makes that
                    // impossible, but nothing here depends on it.
                    None => return Ok(InPlace::Handed(0)),
                }
            };
            let got = self.walk(
                Lent {
                    q,
                    walk: Some(walk),
                    cut: 0,
                },
                max,
                &mut f,
            );
            match got {
                // The bad frame or block went back to the kernel unread (with packets before
                // it, `walk` logged it and counts those).
                Err(e) => return Err(e),
                Ok(n) if n > 0 => return Ok(InPlace::Handed(n)),
                Ok(_) => {}
            }
            let Some(left) = time_left(deadline) else {
                return Ok(InPlace::Handed(0));
            };
            let ev = self
                .socks
                .sleep_readable(i, Some(left.map_or(RECHECK, |l| l.min(RECHECK))))?;
            if ev & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                // Reported at once for ever (the interface went down, say): not a sleep.
                return Err(lock(&q.state).sock.take_error("waiting for packets"));
            }
        }
    }

    /// Walks the lent walk (no lock held) handing up to `max` packets to `f`: returns how
    /// many `f` got (or the walk's error). `lent` puts the walk back when it ends, also when
    /// `f` panics (the packet it panicked on counts as taken: see `Blocks::drain`).
    fn walk<F: FnMut(&[u8], u64)>(
        &self,
        mut lent: Lent<'_>,
        max: u32,
        f: &mut F,
    ) -> Result<usize, Error> {
        let Lent { walk, cut, .. } = &mut lent;
        let Some(walk) = walk.as_mut() else {
            return Ok(0);
        };
        let mut handed = 0usize;
        let got = walk.drain(max, |data, wire_len, stamp_ns| {
            if wire_len as usize > data.len() {
                // Cut by the kernel: a frame is delivered whole or not at all.
                dropped_cut(&self.ifname, cut, wire_len, data.len());
                return true;
            }
            handed += 1;
            f(data, stamp_ns);
            true
        });
        match got {
            Err(e) if handed == 0 => Err(e),
            Err(e) => {
                tracing::warn!(interface = %self.ifname, error = %e, "AF_PACKET frame skipped");
                Ok(handed)
            }
            Ok(_) => Ok(handed),
        }
    }
}

/// A queue's RX walk, lent to a reader in place: put back (with the count of frames the
/// kernel cut) when dropped, also while a callback's panic unwinds.
struct Lent<'q> {
    q: &'q Queue,
    walk: Option<RxWalk>,
    cut: u64,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.q.state);
        if let Some(w) = self.walk.take() {
            st.sock.return_rx(w);
        }
        st.rx_truncated += self.cut;
    }
}

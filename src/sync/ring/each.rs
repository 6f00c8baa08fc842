//! [`RxRing::for_each_frame`]: received frames handed to a callback, each for the length of
//! its call. That short life lets a driver lend its own receive memory: on `afpacket:` the
//! frames are read where the kernel put them, and each block (frame) of the kernel's ring goes
//! back to it as soon as the call for its last packet returns.

use std::time::{Duration, Instant};

use super::RxRing;
use crate::backend::{InPlace, Readiness};
use crate::error::Error;
use crate::sync::batch::RxBatch;
use crate::sync::frame::Frame;

impl RxRing {
    /// Hands up to `max` received frames to `f`, in order, and returns how many it got,
    /// waiting up to `timeout` for the first (`None`: no limit; `Some(Duration::ZERO)`: no
    /// wait). Each frame lives for its call only ([`Frame::into_owned`] keeps one).
    ///
    /// - **`afpacket:` ports**: the frames are read in place in the kernel's receive ring (its
    ///   `TPACKET_V3` blocks with [`NetmapBuilder::block_timeout`](crate::NetmapBuilder::block_timeout),
    ///   else its `TPACKET_V2` frames): no copy into a slot and no sync. Each block (frame) goes
    ///   back to the kernel after the call for its last packet, and a wait sleeps on this ring's
    ///   socket alone. Packets a sync already put in the ring's slots come first.
    /// - **Every other backend**: the frames come from the ring's slots. When none is left,
    ///   the ring is synced (releasing what was consumed) and, if still empty, the port waited
    ///   on as [`Netmap::wait_readable`](crate::Netmap::wait_readable) does; the call may then
    ///   return 0 before the timeout when another ring of the port got packets. Consumed slots
    ///   go back at the ring's next sync.
    ///
    /// With [`NetmapBuilder::busy_poll`](crate::NetmapBuilder::busy_poll) the wait first spins.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn main() -> Result<(), netmap_rs::Error> {
    /// let nm = netmap_rs::NetmapBuilder::new("afpacket:eth0")
    ///     .block_timeout(Duration::from_millis(1))
    ///     .build()?;
    /// let mut rx = nm.rx_ring(0)?;
    /// let (mut packets, mut bytes) = (0u64, 0u64);
    /// while packets < 1_000_000 {
    ///     packets += rx.for_each_frame(512, Some(Duration::from_secs(1)), |frame| {
    ///         bytes += frame.len() as u64;
    ///     })? as u64;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// `f` may use the port meanwhile (send, sync, wait, read statistics), from this thread or
    /// another. On `afpacket:` a panic in `f` ends the call after that frame (the frames
    /// before it, and it, are consumed) and goes on unwinding.
    ///
    /// A packet over several slots (`NS_MOREFRAG`, from slots only) comes one slot at a
    /// time, as from [`RxRing::batch`]: see [`Frame::more_fragments`].
    ///
    /// # Errors
    /// Those of a sync or a wait of the port; on `afpacket:`, [`Error::InterfaceDown`] when
    /// the interface goes down while the call waits.
    pub fn for_each_frame(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(Frame<'_>),
    ) -> Result<usize, Error> {
        if max == 0 {
            return Ok(0);
        }
        let now = Instant::now();
        let deadline = timeout.and_then(|t| now.checked_add(t));
        // Busy polling: spin until this instant (`None`: a spin too long to add to now, as
        // `busy_poll(Duration::MAX)`, spins for ever).
        let spin_end = self.h.port.busy_poll.map(|s| now.checked_add(s));
        let ring = self.h.index as u16;
        loop {
            let n = self.each_slot(max, &mut f);
            if n > 0 {
                return Ok(n);
            }
            let now = Instant::now();
            let left = deadline.map(|d| d.saturating_duration_since(now));
            let spinning = match spin_end {
                None => false,
                Some(None) => true,
                Some(Some(end)) => now < end,
            };
            let wait = if spinning { Some(Duration::ZERO) } else { left };
            if self.h.head != self.h.published {
                // Slots read above go back now: no rxsync will come from this loop, and
                // until then the port would look readable to every wait.
                self.h.publish();
            }
            let (port, index, tail) = (&self.h.port, self.h.index, self.h.tail);
            match port
                .backend
                .rx_in_place(index, tail, max, wait, |data, stamp| {
                    f(Frame::in_place(data, ring, stamp))
                })? {
                InPlace::Handed(0) if spinning && left != Some(Duration::ZERO) => {}
                InPlace::Handed(k) => return Ok(k),
                // An rxsync (another thread's wait) put packets in the slots meanwhile.
                InPlace::SlotsFirst => {
                    let seen = self.h.tail;
                    self.h.load_tail();
                    if self.h.tail == seen {
                        // The driver's tail is one this handle refuses (only a raw write
                        // can put one there): say so rather than ask again for ever.
                        return Err(Error::RingState(format!(
                            "rx ring {}: the tail in shared memory is not the one the driver \
                             wrote (a raw write through the ring pointer?); reopen the port",
                            self.h.index
                        )));
                    }
                }
                InPlace::Unsupported => return self.each_after_wait(max, left, f),
            }
        }
    }

    /// Whether [`RxRing::for_each_frame`] reads packets in place (the driver lends its own
    /// receive memory) rather than from slots.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn lends_in_place(&self) -> bool {
        self.h.port.backend.lends_in_place()
    }

    /// The slots' path of [`RxRing::for_each_frame`], once the slots seen so far are used
    /// up: sync, wait if still empty, hand over what came.
    fn each_after_wait(
        &mut self,
        max: usize,
        left: Option<Duration>,
        mut f: impl FnMut(Frame<'_>),
    ) -> Result<usize, Error> {
        self.h.sync()?;
        let n = self.each_slot(max, &mut f);
        if n > 0 || left == Some(Duration::ZERO) {
            return Ok(n);
        }
        let want = Readiness {
            readable: true,
            writable: false,
        };
        self.h.port.wait(want, left)?;
        self.h.load_tail();
        Ok(self.each_slot(max, &mut f))
    }

    /// Hands `f` the frames in the slots seen so far (up to `max`; consumed).
    #[inline]
    fn each_slot(&mut self, max: usize, f: &mut impl FnMut(Frame<'_>)) -> usize {
        let mut n = 0;
        for frame in RxBatch::new(self, max) {
            f(frame);
            n += 1;
        }
        n
    }
}

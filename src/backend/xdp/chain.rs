//! Packets over several UMEM frames (AF_XDP multi-buffer, `XDP_USE_SG`): the kernel marks
//! every descriptor of a packet but the last with `XDP_PKT_CONTD`, netmap every slot but the
//! last with `NS_MOREFRAG`; one descriptor is one slot, in order, both ways.
//!
//! - RX ([`RxAssembly`]): descriptors become slots as they come, but the tail shown to the
//!   user stops after the last whole packet; the slots of a packet still arriving wait,
//!   unseen, for the rest (the kernel posts a packet's descriptors together; a batch bounded
//!   by the ring's room can still end inside one). A packet that can never be shown whole
//!   (its fragments already fill every slot the ring can show) or that has a fragment the
//!   ring cannot show is dropped whole: its frames go back to the fill ring, the rest of it
//!   too as it arrives, and the next packet follows.
//! - TX ([`MAX_TX_FRAGS`], `queue.rs`): only whole packets are handed over, all their
//!   descriptors in one publication of the producer index; a chain the user has not ended
//!   waits for its last slot, unless it fills the ring (it could never end: refused whole).

use crate::abi::NS_MOREFRAG;
use crate::ring::{distance, next};

/// Most descriptors one packet may take on TX. The kernel's copy mode takes a packet of at
/// most `MAX_SKB_FRAGS + 1` descriptors (17 + 1 in the default configuration) and drops
/// longer ones without completing their frames, which would strand the slots: a chain over
/// this limit is refused before it reaches the kernel. 17 frames of 1792 bytes hold 30464
/// bytes, more than any jumbo frame.
pub(super) const MAX_TX_FRAGS: usize = 17;

/// Where one received descriptor goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Into slot `k`, with these slot flags.
    Slot { k: u32, flags: u16 },
    /// Back to the fill ring (part of a dropped packet).
    Refill,
}

/// The RX side's progress through packets that span descriptors.
#[derive(Debug, Default)]
pub(super) struct RxAssembly {
    /// End of the last whole packet: the tail the user sees.
    pub(super) hwtail: u32,
    /// End of the slots written: `[hwtail, written)` holds the packet still arriving.
    pub(super) written: u32,
    /// The rest of a dropped packet is still arriving: its frames go back to the fill ring.
    dropping: bool,
}

impl RxAssembly {
    /// Whether no packet is in progress (none arriving, none being dropped): a descriptor
    /// without `XDP_PKT_CONTD` is then a whole packet for the next slot.
    pub(super) fn idle(&self) -> bool {
        self.written == self.hwtail && !self.dropping
    }

    /// Whole one-slot packets were written up to `tail` while [`idle`](Self::idle).
    pub(super) fn show_to(&mut self, tail: u32) {
        self.written = tail;
        self.hwtail = tail;
    }

    /// Where the next descriptor goes (`contd`: `XDP_PKT_CONTD`; `ok`: the ring can show its
    /// frame). Also returns the slots `[from, to)` whose frames go back to the fill ring: the
    /// part of a packet already written when a fragment of it cannot be shown. The caller
    /// makes room for the slot first (`n - 1` minus the slots written and not released).
    pub(super) fn step(&mut self, contd: bool, ok: bool, n: u32) -> (Step, Option<(u32, u32)>) {
        if self.dropping {
            self.dropping = contd;
            return (Step::Refill, None);
        }
        if !ok {
            self.dropping = contd;
            return (Step::Refill, self.unwrite());
        }
        let k = self.written;
        self.written = next(k, n);
        if !contd {
            self.hwtail = self.written;
        }
        let flags = if contd { NS_MOREFRAG } else { 0 };
        (Step::Slot { k, flags }, None)
    }

    /// After a batch: a packet still arriving whose fragments fill every slot the ring can
    /// show (`n - 1`) can never be shown whole. It is dropped (the slots to give back are
    /// returned), and the rest of it as it comes.
    pub(super) fn stuck(&mut self, n: u32) -> Option<(u32, u32)> {
        if distance(self.hwtail, self.written, n) < n - 1 {
            return None;
        }
        self.dropping = true;
        self.unwrite()
    }

    /// Forgets the slots of the packet still arriving; returns them if there were any.
    fn unwrite(&mut self) -> Option<(u32, u32)> {
        let r = (self.written != self.hwtail).then_some((self.hwtail, self.written));
        self.written = self.hwtail;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps taken, slot ranges given back, final (hwtail, written).
    type Outcome = (Vec<Step>, Vec<(u32, u32)>, (u32, u32));

    /// Feeds `(contd, ok)` descriptors to a fresh assembly over `n` slots.
    fn run(n: u32, descs: &[(bool, bool)]) -> Outcome {
        let mut a = RxAssembly::default();
        let (mut steps, mut back) = (Vec::new(), Vec::new());
        for &(contd, ok) in descs {
            let (s, b) = a.step(contd, ok, n);
            steps.push(s);
            back.extend(b);
        }
        back.extend(a.stuck(n));
        (steps, back, (a.hwtail, a.written))
    }

    const MORE: (bool, bool) = (true, true);
    const LAST: (bool, bool) = (false, true);

    #[test]
    fn whole_packets_are_shown_and_a_packet_still_arriving_waits() {
        let (steps, back, ends) = run(8, &[LAST, MORE, MORE, LAST, MORE]);
        assert_eq!(
            steps,
            [
                Step::Slot { k: 0, flags: 0 },
                Step::Slot {
                    k: 1,
                    flags: NS_MOREFRAG
                },
                Step::Slot {
                    k: 2,
                    flags: NS_MOREFRAG
                },
                Step::Slot { k: 3, flags: 0 },
                Step::Slot {
                    k: 4,
                    flags: NS_MOREFRAG
                },
            ]
        );
        assert!(back.is_empty());
        assert_eq!(
            ends,
            (4, 5),
            "slot 4 waits, unseen, for the rest of its packet"
        );
    }

    #[test]
    fn a_fragment_that_cannot_be_shown_drops_its_whole_packet() {
        // Packet 1: two good fragments, a bad one, one more; packet 2 whole.
        let (steps, back, ends) = run(8, &[MORE, MORE, (true, false), MORE, LAST, LAST]);
        assert_eq!(back, [(0, 2)], "the fragments already written go back");
        assert_eq!(steps[2..5], [Step::Refill; 3]);
        assert_eq!(steps[5], Step::Slot { k: 0, flags: 0 });
        assert_eq!(ends, (1, 1));
        // A bad last fragment: nothing follows to drop.
        let (steps, back, ends) = run(8, &[MORE, (false, false), LAST]);
        assert_eq!(
            (back, steps[2], ends),
            (vec![(0, 1)], Step::Slot { k: 0, flags: 0 }, (1, 1))
        );
    }

    #[test]
    fn a_packet_filling_the_ring_is_dropped_not_waited_for() {
        // 4 slots show at most 3: a packet of 5 fragments can never be shown.
        let (_, back, ends) = run(4, &[LAST, MORE, MORE]);
        assert_eq!(
            (back.as_slice(), ends),
            (&[][..], (1, 3)),
            "2 of 3 slots: it may end"
        );
        let mut a = RxAssembly::default();
        for _ in 0..3 {
            a.step(true, true, 4);
        }
        assert_eq!(a.stuck(4), Some((0, 3)));
        assert_eq!((a.hwtail, a.written), (0, 0));
        // The rest of it goes back too; the packet after it is shown.
        assert_eq!(a.step(true, true, 4).0, Step::Refill);
        assert_eq!(a.step(false, true, 4).0, Step::Refill);
        assert_eq!(a.step(false, true, 4).0, Step::Slot { k: 0, flags: 0 });
        assert_eq!(a.stuck(4), None);
    }
}

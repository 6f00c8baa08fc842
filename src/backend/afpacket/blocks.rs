//! The `TPACKET_V3` RX ring: blocks of packets. The kernel fills a block with packets of
//! variable size and hands the whole block over (`block_status & TP_STATUS_USER`) when it is
//! full or when its retire timeout passes, with one wake-up; the user walks its packets
//! (`tp_next_offset`) and gives the block back (`TP_STATUS_KERNEL`) after the last one.
//!
//! The driver copies every packet into a netmap slot anyway, so a block is given back as soon
//! as its last packet is copied (at the drop of that packet's [`RxFrame`]): the kernel gets its
//! blocks back within one rxsync, and a slot never points into kernel memory. (Zero copy would
//! keep each block until the user released every slot of it, and a slot buffer of a netmap
//! ring cannot be a window into a kernel block.) An rxsync that runs out of ring room stops
//! mid-block and carries on from there at the next.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use super::tpacket::{word_at, RxFrame};
use crate::backend::linux::sys;
use crate::error::Error;
use crate::region::Region;

/// Smallest block: 64 KiB, over 400 minimum-size packets per hand-over.
pub(crate) const MIN_BLOCK: usize = 64 << 10;

/// The walk over the RX ring's blocks.
#[derive(Debug)]
pub(crate) struct Blocks {
    size: usize,
    count: u32,
    /// The block being read (or the next to look at).
    cur: u32,
    /// Packets of `cur` not read yet (0: `cur` not started).
    left: u32,
    /// Offset in `cur` of the next packet.
    off: usize,
}

impl Blocks {
    pub(crate) fn new(size: usize, count: u32) -> Blocks {
        Blocks {
            size,
            count,
            cur: 0,
            left: 0,
            off: 0,
        }
    }

    /// The next packet, if the kernel has handed its block over. The frame of a block's last
    /// packet gives the block back when dropped. `ring_off`: the ring's offset in `map`.
    pub(crate) fn next<'a>(
        &mut self,
        map: &'a Region,
        ring_off: usize,
    ) -> Result<Option<RxFrame<'a>>, Error> {
        let base: NonNull<u8> = map
            .at(ring_off + self.cur as usize * self.size, self.size, 16)
            .expect("block inside the ring mapping by construction");
        let status = word_at(base, sys::BLOCK_STATUS_OFFSET);
        if self.left == 0 {
            if status.load(Ordering::Acquire) & sys::TP_STATUS_USER == 0 {
                return Ok(None);
            }
            // SAFETY: the block is ours (TP_STATUS_USER, acquired above) and its header lies
            // inside it (u32 fields at 4-aligned offsets of a 16-aligned block).
            let (n, first) = unsafe {
                (
                    base.as_ptr()
                        .add(sys::BLOCK_NUM_PKTS_OFFSET)
                        .cast::<u32>()
                        .read(),
                    base.as_ptr()
                        .add(sys::BLOCK_FIRST_PKT_OFFSET)
                        .cast::<u32>()
                        .read(),
                )
            };
            if n == 0 {
                self.give_back(status);
                return Ok(None);
            }
            (self.left, self.off) = (n, first as usize);
        }
        let off = self.off;
        let hdr_len = std::mem::size_of::<libc::tpacket3_hdr>();
        let size = self.size;
        let bad = |what: String| {
            Error::BadLayout(format!(
                "AF_PACKET RX block: {what} leaves the {size}-byte block; the block was given \
                 back unread"
            ))
        };
        if off % 4 != 0 || off + hdr_len > self.size {
            self.give_back(status);
            return Err(bad(format!("a packet header at {off}")));
        }
        // SAFETY: the block is ours (its status was acquired with TP_STATUS_USER when it was
        // started, and it is given back only after its last packet); the header lies inside
        // it (checked) at a 4-aligned offset, and tpacket3_hdr needs 4.
        let h = unsafe {
            base.as_ptr()
                .add(off)
                .cast::<libc::tpacket3_hdr>()
                .read_unaligned()
        };
        let (mac, snap) = (usize::from(h.tp_mac), h.tp_snaplen as usize);
        if mac < hdr_len || off + mac + snap > self.size {
            self.give_back(status);
            return Err(bad(format!("data at {off} + {mac} of {snap} bytes")));
        }
        self.left -= 1;
        self.off = off + h.tp_next_offset as usize;
        let release = if self.left == 0 {
            self.cur = (self.cur + 1) % self.count;
            Some(status)
        } else {
            None
        };
        // SAFETY: [off + mac, off + mac + snap) lies inside the block (checked), which the
        // kernel does not write until its status is stored back, after the last packet's
        // frame is dropped; the frame borrows the socket (and the mapping) mutably.
        let data = unsafe { std::slice::from_raw_parts(base.as_ptr().add(off + mac), snap) };
        Ok(Some(RxFrame {
            data,
            release,
            wire_len: h.tp_len,
            stamp_ns: u64::from(h.tp_sec) * 1_000_000_000 + u64::from(h.tp_nsec),
        }))
    }

    /// Gives block `cur` back to the kernel (unread packets and all) and moves to the next.
    fn give_back(&mut self, status: &std::sync::atomic::AtomicU32) {
        status.store(sys::TP_STATUS_KERNEL, Ordering::Release);
        self.left = 0;
        self.cur = (self.cur + 1) % self.count;
    }
}

//! The `TPACKET_V3` RX ring: blocks of packets. The kernel fills a block with packets of
//! variable size and hands the whole block over (`block_status & TP_STATUS_USER`) when it is
//! full or when its retire timeout passes, with one wake-up; the user walks its packets
//! (`tp_next_offset`) and gives the block back (`TP_STATUS_KERNEL`) after the last one.
//!
//! The driver copies every packet into a netmap slot anyway, so a block is given back as soon
//! as its last packet is copied (rxsync's loop, [`Blocks::drain`], gives it back after the call
//! for its last packet; [`Blocks::next`], at the drop of that packet's [`RxFrame`]): the kernel gets its
//! blocks back within one rxsync, and a slot never points into kernel memory. (Zero copy would
//! keep each block until the user released every slot of it, and a slot buffer of a netmap
//! ring cannot be a window into a kernel block.) An rxsync that runs out of ring room stops
//! mid-block and carries on from there at the next.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::tpacket::{word_at, RxFrame};
use crate::backend::linux::sys;
use crate::error::Error;
use crate::region::Region;

/// Smallest block: 64 KiB, over 400 minimum-size packets per hand-over.
pub(crate) const MIN_BLOCK: usize = 64 << 10;

/// Where a packet lies in its block, and what its header says.
struct Packet {
    /// Offset of its bytes in the block, and their length.
    data: usize,
    len: usize,
    wire_len: u32,
    stamp_ns: u64,
}

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
        let base = self.base(map, ring_off);
        let status = word_at(base, sys::BLOCK_STATUS_OFFSET);
        if !self.start(base, status) {
            return Ok(None);
        }
        let p = self.packet(base, status)?;
        let release = (self.left == 0).then(|| {
            self.cur = (self.cur + 1) % self.count;
            status
        });
        // SAFETY: the packet's bytes lie inside the block (checked by `packet`), which the
        // kernel does not write until its status is stored back, after the last packet's
        // frame is dropped; the frame borrows the mapping.
        let data = unsafe { std::slice::from_raw_parts(base.as_ptr().add(p.data), p.len) };
        Ok(Some(RxFrame {
            data,
            release,
            wire_len: p.wire_len,
            stamp_ns: p.stamp_ns,
        }))
    }

    /// Hands up to `max` packets of the blocks the kernel has handed over to `f` (bytes,
    /// length on the wire, receive time in ns), in order, and gives each block back after
    /// its last packet. Returns how many packets `f` got; stops at a packet whose header
    /// leaves its block (that block is given back unread, and the error returned).
    ///
    /// The receive loop of rxsync: one bounds check of the block per block, one of the header
    /// and data per packet, and no frame value per packet (`next` is for the rest).
    #[inline]
    pub(crate) fn drain(
        &mut self,
        map: &Region,
        ring_off: usize,
        max: u32,
        mut f: impl FnMut(&[u8], u32, u64),
    ) -> Result<u32, Error> {
        let mut done = 0;
        while done < max {
            let base = self.base(map, ring_off);
            let status = word_at(base, sys::BLOCK_STATUS_OFFSET);
            if !self.start(base, status) {
                break;
            }
            while self.left > 0 && done < max {
                let p = self.packet(base, status)?;
                // SAFETY: as in `next`; the slice lives only during this call of `f`, and the
                // block is given back after the call for its last packet.
                f(
                    unsafe { std::slice::from_raw_parts(base.as_ptr().add(p.data), p.len) },
                    p.wire_len,
                    p.stamp_ns,
                );
                done += 1;
            }
            if self.left == 0 {
                self.give_back(status);
            }
        }
        Ok(done)
    }

    /// Block `cur`.
    #[inline]
    fn base(&self, map: &Region, ring_off: usize) -> NonNull<u8> {
        map.at(ring_off + self.cur as usize * self.size, self.size, 16)
            .expect("block inside the ring mapping by construction")
    }

    /// Whether block `cur` (at `base`) has packets to read: one being read, or one the kernel
    /// handed over (then its packet count and first offset are taken; an empty one is given
    /// back).
    #[inline]
    fn start(&mut self, base: NonNull<u8>, status: &AtomicU32) -> bool {
        if self.left > 0 {
            return true;
        }
        if status.load(Ordering::Acquire) & sys::TP_STATUS_USER == 0 {
            return false;
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
            return false;
        }
        (self.left, self.off) = (n, first as usize);
        true
    }

    /// Reads the header of the next packet of block `cur` (started, `left > 0`), checks that
    /// it and the packet's bytes lie inside the block, and moves past it. A header that
    /// leaves the block gives the block back unread.
    #[inline]
    fn packet(&mut self, base: NonNull<u8>, status: &AtomicU32) -> Result<Packet, Error> {
        let off = self.off;
        let hdr_len = std::mem::size_of::<libc::tpacket3_hdr>();
        if off % 4 != 0 || off + hdr_len > self.size {
            self.give_back(status);
            return Err(self.bad(format!("a packet header at {off}")));
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
            return Err(self.bad(format!("data at {off} + {mac} of {snap} bytes")));
        }
        self.left -= 1;
        self.off = off + h.tp_next_offset as usize;
        Ok(Packet {
            data: off + mac,
            len: snap,
            wire_len: h.tp_len,
            stamp_ns: u64::from(h.tp_sec) * 1_000_000_000 + u64::from(h.tp_nsec),
        })
    }

    #[cold]
    fn bad(&self, what: String) -> Error {
        Error::BadLayout(format!(
            "AF_PACKET RX block: {what} leaves the {}-byte block; the block was given back \
             unread",
            self.size
        ))
    }

    /// Gives block `cur` back to the kernel (unread packets and all) and moves to the next.
    fn give_back(&mut self, status: &AtomicU32) {
        status.store(sys::TP_STATUS_KERNEL, Ordering::Release);
        self.left = 0;
        self.cur = (self.cur + 1) % self.count;
    }
}

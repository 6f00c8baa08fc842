//! The `TPACKET_V3` RX ring: blocks of packets. The kernel fills a block with packets of
//! variable size and hands the whole block over (`block_status & TP_STATUS_USER`) when it is
//! full or when its retire timeout passes, with one wake-up; the user walks its packets
//! (`tp_next_offset`) and gives the block back (`TP_STATUS_KERNEL`) after the last one.
//!
//! A block is given back as soon as its last packet has been handed on: [`Blocks::drain`]
//! gives it back after the call for its last packet, whether that call copies the packet into
//! a netmap slot (rxsync) or hands it to the user's callback in place
//! (`RxRing::for_each_frame`, whose frames cannot outlive the call); [`Blocks::next`] at the
//! drop of that packet's [`RxFrame`]. So the kernel gets its blocks back within one rxsync or
//! one call, and a slot never points into kernel memory (a slot buffer of a netmap ring
//! cannot be a window into a kernel block). An rxsync that runs out of ring room, or a call
//! that reaches its `max`, stops mid-block and carries on from there at the next.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::tpacket::{word_at, RxFrame};
use crate::backend::linux::sys;
use crate::error::Error;
use crate::region::Region;

/// Smallest block: 64 KiB, over 400 minimum-size packets per hand-over.
pub(crate) const MIN_BLOCK: usize = 64 << 10;
/// How long the RX ring's blocks last when each is retired by its timeout (few packets).
const HOLDS: u32 = 64;

/// Blocks the RX ring's memory (that of its `TPACKET_V2` frames) is split into at a block
/// retire timeout of `timeout_ms` (unless that makes them smaller than [`MIN_BLOCK`]): enough
/// for [`HOLDS`] ms of timeouts, 4 to 64. Under light load the kernel retires a block at every
/// timeout, however few packets it holds, so the count is how long a reader may stall without
/// a drop (64 blocks of 64 KiB at 1 ms). Under load each hand-over is a wake-up, so at longer
/// timeouts the blocks grow (4 of 1 MiB from 16 ms on, at the default ring size): an
/// in-place reader of 450,000 packets at 150 kpps on veth, 60 ms timeout, made 1016 `poll`
/// calls with 64 KiB blocks and 110 with 1 MiB blocks (`strace -c -f`; netring's 4 MiB
/// blocks: 63), and the wake-ups had been a third of its CPU time (`perf record`).
pub(crate) fn rx_blocks(timeout_ms: u32) -> usize {
    (HOLDS / timeout_ms.max(1)).clamp(4, 64) as usize
}

/// How far ahead of the packet being read the walk asks for the block's bytes.
const PREFETCH_AHEAD: usize = 512;

/// Asks the CPU to bring the cache line at `p` in (a hint: no read, no fault, any address).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: a prefetch reads nothing into the program and cannot fault, whatever `p` is.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = p;
}

/// Where a packet lies in its block, and what its header says.
struct Packet {
    /// Offset of its bytes in the block, and their length.
    data: usize,
    len: usize,
    wire_len: u32,
    stamp_ns: u64,
}

/// What of a packet leaves its block: its header (at this offset), or its bytes (header
/// offset, `tp_mac`, `tp_snaplen`).
enum Leaves {
    Header(usize),
    Data(usize, usize, usize),
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

/// A run over the started block `cur` in [`Blocks::drain`]: the position, kept here (in
/// registers) during the run and stored back when it ends, by return or by unwinding, and
/// the block given back if the run took its last packet.
struct Run<'b> {
    blocks: &'b mut Blocks,
    status: &'b AtomicU32,
    left: u32,
    off: usize,
}

impl Drop for Run<'_> {
    #[inline]
    fn drop(&mut self) {
        (self.blocks.left, self.blocks.off) = (self.left, self.off);
        if self.left == 0 {
            self.blocks.give_back(self.status);
        }
    }
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
    /// length on the wire, receive time in ns), in order, until `f` returns `false` (after
    /// that packet), and gives each block back after its last packet. Returns how many
    /// packets `f` got; stops at a packet whose header leaves its block (that block is given
    /// back unread, and the error returned).
    ///
    /// The receive loop of rxsync and of reading in place: one bounds check of the block per
    /// block, one of the header and data per packet, the walk's position in registers, and
    /// no frame value per packet (`next` is for the rest). A packet counts as taken before
    /// `f` sees it, so if `f` unwinds (a reader in place runs user code) the walk resumes
    /// after it, and a block it ended is given back ([`Run`]'s drop).
    #[inline]
    pub(crate) fn drain(
        &mut self,
        map: &Region,
        ring_off: usize,
        max: u32,
        mut f: impl FnMut(&[u8], u32, u64) -> bool,
    ) -> Result<u32, Error> {
        let mut done = 0;
        while done < max {
            let base = self.base(map, ring_off);
            let status = word_at(base, sys::BLOCK_STATUS_OFFSET);
            if !self.start(base, status) {
                break;
            }
            let take = self.left.min(max - done);
            let mut run = Run {
                left: self.left,
                off: self.off,
                blocks: self,
                status,
            };
            let mut go = true;
            for _ in 0..take {
                prefetch(
                    base.as_ptr()
                        .wrapping_add(run.off)
                        .wrapping_add(PREFETCH_AHEAD),
                );
                let (p, next) = match run.blocks.header(base, run.off) {
                    Ok(h) => h,
                    Err(w) => {
                        // Given back unread by the run's end.
                        run.left = 0;
                        drop(run);
                        return Err(self.bad(w));
                    }
                };
                (run.off, run.left) = (next, run.left - 1);
                done += 1;
                // SAFETY: as in `next`: the bytes lie inside the block (checked by `header`);
                // the slice lives only during this call of `f`, and the block is given back
                // after the call for its last packet (when `run` ends).
                go = f(
                    unsafe { std::slice::from_raw_parts(base.as_ptr().add(p.data), p.len) },
                    p.wire_len,
                    p.stamp_ns,
                );
                if !go {
                    break;
                }
            }
            drop(run);
            if !go {
                break;
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

    /// The packet whose header is at `off` of the block at `base` (started), and the offset
    /// of the next header, if the header and the packet's bytes lie inside the block; else
    /// what leaves it (for [`Blocks::fail`]).
    #[inline(always)]
    fn header(&self, base: NonNull<u8>, off: usize) -> Result<(Packet, usize), Leaves> {
        const HDR: usize = std::mem::size_of::<libc::tpacket3_hdr>();
        // Sums in u64: `off` and the header's fields come from the kernel, and their sum
        // could wrap in a 32-bit usize (on 64-bit targets this is the usize arithmetic).
        let (at, size) = (off as u64, self.size as u64);
        if off % 4 != 0 || at + HDR as u64 > size {
            return Err(Leaves::Header(off));
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
        if mac < HDR || at + mac as u64 + snap as u64 > size {
            return Err(Leaves::Data(off, mac, snap));
        }
        let p = Packet {
            data: off + mac,
            len: snap,
            wire_len: h.tp_len,
            stamp_ns: u64::from(h.tp_sec) * 1_000_000_000 + u64::from(h.tp_nsec),
        };
        // Wrapping (32-bit): wherever it lands, the check above bounds the next header.
        Ok((p, off.wrapping_add(h.tp_next_offset as usize)))
    }

    /// Reads the header of the next packet of block `cur` (started, `left > 0`), checks that
    /// it and the packet's bytes lie inside the block, and moves past it. A header that
    /// leaves the block gives the block back unread.
    #[inline]
    fn packet(&mut self, base: NonNull<u8>, status: &AtomicU32) -> Result<Packet, Error> {
        let (p, next) = self
            .header(base, self.off)
            .map_err(|w| self.fail(status, w))?;
        self.left -= 1;
        self.off = next;
        Ok(p)
    }

    /// Gives block `cur` back unread and says why (a header or packet leaving the block).
    #[cold]
    #[inline(never)]
    fn fail(&mut self, status: &AtomicU32, what: Leaves) -> Error {
        self.give_back(status);
        self.bad(what)
    }

    /// What leaves the block, as an error (the block was given back).
    #[cold]
    #[inline(never)]
    fn bad(&self, what: Leaves) -> Error {
        let what = match what {
            Leaves::Header(off) => format!("a packet header at {off}"),
            Leaves::Data(off, mac, snap) => format!("data at {off} + {mac} of {snap} bytes"),
        };
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

#[cfg(test)]
mod tests {
    //! The walk over blocks laid out by hand as the kernel lays them out (a block header, then
    //! packet headers chained by `tp_next_offset`), including ones a broken kernel could hand
    //! over: nothing is read outside its block, and a bad block is given back.
    use super::*;

    const SIZE: usize = 4096;
    const HDR: usize = std::mem::size_of::<libc::tpacket3_hdr>();
    const MAC: usize = 64;

    /// Writes a block of `pkts` (payload byte, length, next offset; `None`: the next 16-byte
    /// boundary) at block `b` of `map` and hands it over (TP_STATUS_USER).
    fn block(map: &Region, b: usize, pkts: &[(u8, usize, Option<u32>)]) {
        let base = map.at(b * SIZE, SIZE, 16).unwrap().as_ptr();
        let mut off = 48;
        // SAFETY: every write lies inside block `b` of the two-block mapping (headers start
        // below SIZE - MAC in these tests, bytes are cut at the block's end), which no other
        // thread touches; headers are 16-aligned.
        unsafe {
            base.add(sys::BLOCK_NUM_PKTS_OFFSET)
                .cast::<u32>()
                .write(pkts.len() as u32);
            base.add(sys::BLOCK_FIRST_PKT_OFFSET)
                .cast::<u32>()
                .write(off as u32);
            for &(byte, len, next) in pkts {
                let step = (MAC + len).next_multiple_of(16);
                let mut h: libc::tpacket3_hdr = std::mem::zeroed();
                h.tp_next_offset = next.unwrap_or(step as u32);
                h.tp_sec = 2;
                h.tp_nsec = 5;
                h.tp_snaplen = len as u32;
                h.tp_len = len as u32;
                h.tp_mac = MAC as u16;
                base.add(off).cast::<libc::tpacket3_hdr>().write(h);
                // A length that leaves the block is written only up to its end.
                std::ptr::write_bytes(base.add(off + MAC), byte, len.min(SIZE - off - MAC));
                off += step;
            }
        }
        word_at(NonNull::new(base).unwrap(), sys::BLOCK_STATUS_OFFSET)
            .store(sys::TP_STATUS_USER, Ordering::Release);
    }

    fn status(map: &Region, b: usize) -> u32 {
        word_at(
            map.at(b * SIZE, SIZE, 16).unwrap(),
            sys::BLOCK_STATUS_OFFSET,
        )
        .load(Ordering::Acquire)
    }

    /// What `drain` handed over of a packet: its (uniform) byte, length and stamp.
    type Got = (u8, usize, u64);

    fn drain(blocks: &mut Blocks, map: &Region, max: u32) -> (Vec<Got>, Result<u32, Error>) {
        drain_until(blocks, map, max, u8::MAX)
    }

    /// As `drain`, asking the walk to stop after the packet whose byte is `stop`.
    fn drain_until(
        blocks: &mut Blocks,
        map: &Region,
        max: u32,
        stop: u8,
    ) -> (Vec<Got>, Result<u32, Error>) {
        let mut got = Vec::new();
        let r = blocks.drain(map, 0, max, |d, wire, ns| {
            assert!(d.iter().all(|&x| x == d[0]), "one packet's bytes");
            assert_eq!(wire as usize, d.len());
            got.push((d[0], d.len(), ns));
            d[0] != stop
        });
        (got, r)
    }

    /// The ring holds 64 ms of block timeouts (a reader may stall that long under light load
    /// without a drop), in 4 to 64 blocks.
    #[test]
    fn the_block_count_covers_64_ms_of_timeouts() {
        let counts: Vec<_> = [1, 2, 4, 16, 60, 1000].map(rx_blocks).to_vec();
        assert_eq!(counts, [64, 32, 16, 4, 4, 4]);
        assert_eq!(rx_blocks(0), 64);
    }

    /// A callback that asks to stop (a reader in place whose callback panicked) ends the walk
    /// after its packet: that packet is consumed, the next walk starts after it, and a block
    /// whose last packet it was is given back.
    #[test]
    fn a_stop_ends_the_walk_after_that_packet_and_gives_back_a_finished_block() {
        let map = Region::anonymous(2 * SIZE).unwrap();
        let mut blocks = Blocks::new(SIZE, 2);
        block(&map, 0, &[(1, 60, None), (2, 60, None), (3, 60, None)]);
        block(&map, 1, &[(4, 60, None)]);
        let (got, r) = drain_until(&mut blocks, &map, 64, 2);
        assert_eq!((r.unwrap(), got.len()), (2, 2));
        assert_eq!(
            status(&map, 0),
            sys::TP_STATUS_USER,
            "block 0 still has packet 3"
        );
        let (got, r) = drain_until(&mut blocks, &map, 64, 3);
        assert_eq!(r.unwrap(), 1);
        assert_eq!(got[0].0, 3);
        assert_eq!(
            status(&map, 0),
            sys::TP_STATUS_KERNEL,
            "finished block kept"
        );
        assert_eq!(
            status(&map, 1),
            sys::TP_STATUS_USER,
            "the walk went past the stop"
        );
        let (got, r) = drain(&mut blocks, &map, 64);
        assert_eq!((r.unwrap(), got[0].0), (1, 4));
    }

    #[test]
    fn drain_walks_handed_over_blocks_in_order_and_gives_each_back_after_its_last_packet() {
        assert_eq!(HDR % 4, 0);
        let map = Region::anonymous(2 * SIZE).unwrap();
        let mut blocks = Blocks::new(SIZE, 2);
        block(&map, 0, &[(1, 60, None), (2, 100, None), (3, 60, None)]);
        // At most two: the block stays ours, the walk stops mid-block.
        let (got, r) = drain(&mut blocks, &map, 2);
        assert_eq!(r.unwrap(), 2);
        assert_eq!(got, vec![(1, 60, 2_000_000_005), (2, 100, 2_000_000_005)]);
        assert_eq!(status(&map, 0), sys::TP_STATUS_USER, "given back too early");
        // The rest, then nothing: block 1 is still the kernel's.
        let (got, r) = drain(&mut blocks, &map, 64);
        assert_eq!(r.unwrap(), 1);
        assert_eq!(got, vec![(3, 60, 2_000_000_005)]);
        assert_eq!(status(&map, 0), sys::TP_STATUS_KERNEL, "not given back");
        block(&map, 1, &[(4, 70, None)]);
        block(&map, 0, &[(5, 80, None)]);
        let (got, r) = drain(&mut blocks, &map, 64);
        assert_eq!(r.unwrap(), 2, "block 1, then block 0 again");
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!((status(&map, 0), status(&map, 1)), (0, 0));
    }

    #[test]
    fn a_packet_leaving_its_block_stops_the_walk_with_an_error_and_the_block_is_given_back() {
        let map = Region::anonymous(2 * SIZE).unwrap();
        let mut blocks = Blocks::new(SIZE, 2);
        // The second header would lie past the block's end.
        block(&map, 0, &[(1, 60, Some(SIZE as u32)), (2, 60, None)]);
        block(&map, 1, &[(3, 60, None)]);
        let (got, r) = drain(&mut blocks, &map, 64);
        assert_eq!(got.len(), 1);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("leaves the 4096-byte block"), "{e}");
        assert_eq!(status(&map, 0), sys::TP_STATUS_KERNEL, "bad block kept");
        // The walk goes on with the next block.
        let (got, r) = drain(&mut blocks, &map, 64);
        assert_eq!((got.len(), r.unwrap()), (1, 1));
        assert_eq!(got[0].0, 3);
        // Data running past the end: nothing delivered from that packet.
        block(&map, 0, &[(4, SIZE - 100, None)]);
        let (got, r) = drain(&mut blocks, &map, 64);
        assert!(got.is_empty());
        assert!(r.unwrap_err().to_string().contains("data at 48 + 64"));
        assert_eq!(status(&map, 0), sys::TP_STATUS_KERNEL);
    }
}

//! The netmap side of the Linux drivers: one region per port holding a `netmap_if`, a TX and
//! an RX netmap ring per bound queue, and a buffer pool, laid out as the kernel module lays
//! out its memory, so the ring, frame and Tokio code above sees netmap rings. The drivers
//! (`backend::xdp`, `backend::afpacket`) move packets between these rings and the kernel's.
//!
//! Layout: interface at 0, rings from 128-byte aligned offsets after it, the pool from the
//! next page boundary. Buffer `i` starts `buf_shift + i * BUF_SIZE` bytes into the pool: the
//! AF_XDP driver registers the pool as its UMEM and shifts the buffers by the kernel's XDP
//! headroom, so that frame `i` of the UMEM receives its packet exactly where netmap buffer `i`
//! begins.
//!
//! Also here: the two places where the drivers copy packet bytes between a slot's buffer and
//! a kernel frame (AF_PACKET), each through a bounds-checked buffer pointer.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use crate::backend::MemIdentity;
use crate::error::Error;
use crate::region::Region;
use crate::ring::{if_bytes, init_ring, ring_bytes, write_if, RawRing, RingInit};

/// Buffer size of the Linux drivers' pools: netmap's default, and an AF_XDP frame size.
pub(crate) const BUF_SIZE: u32 = 2048;
/// Default slots per ring.
pub(crate) const DEFAULT_SLOTS: u32 = 1024;
/// Fewest and most slots per ring.
pub(crate) const SLOTS: std::ops::RangeInclusive<u32> = 64..=16384;

/// What to build.
#[derive(Debug, Clone)]
pub(crate) struct MemPlan<'a> {
    /// Name written into the interface (`ni_name`).
    pub name: &'a str,
    /// Queues the interface has (ring count the `netmap_if` reports per direction).
    pub queues: u32,
    /// Queues bound to this port, each with a TX and an RX ring.
    pub bound: &'a [u32],
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// Buffers in the pool.
    pub nbufs: u32,
    /// Offset of buffer 0 from the page-aligned pool start.
    pub buf_shift: usize,
    /// Whether the interface lists the TX rings (`false` for an RX-only port, `/R`).
    pub expose_tx: bool,
    /// Whether the interface lists the RX rings (`false` for a TX-only port, `/T`).
    pub expose_rx: bool,
    /// Put the region on huge pages if the system has them (see [`super::huge`]).
    pub huge_pages: bool,
}

/// A built region and checked views of its rings (`tx[i]`/`rx[i]` belong to `bound[i]`).
#[derive(Debug)]
pub(crate) struct RingMem {
    pub region: Arc<Region>,
    pub tx: Vec<RawRing>,
    pub rx: Vec<RawRing>,
    /// Page-aligned offset of the pool in the region.
    pub pool_off: usize,
    /// Length of the pool (`nbufs` times the buffer size).
    pub pool_len: usize,
    /// Where buffer 0 starts in the pool.
    pub buf_shift: usize,
    pub identity: MemIdentity,
}

impl RingMem {
    /// Byte range of the buffers in the region (the pool, shifted by `buf_shift`).
    pub(crate) fn buffers(&self) -> std::ops::Range<usize> {
        self.pool_off..self.pool_off + self.pool_len + self.buf_shift
    }
}

/// Checks the requested slot count (0: the default).
pub(crate) fn slots(requested: u32, what: &str) -> Result<u32, Error> {
    let n = if requested == 0 {
        DEFAULT_SLOTS
    } else {
        requested
    };
    if !SLOTS.contains(&n) {
        return Err(Error::BindFail(format!(
            "{n} {what} slots per ring requested; the AF_XDP and AF_PACKET drivers take {}..={} \
             (0 for the default {DEFAULT_SLOTS})",
            SLOTS.start(),
            SLOTS.end()
        )));
    }
    Ok(n)
}

fn next_mem_id() -> u16 {
    // Shown to users as the port's memory id; identity itself compares region addresses.
    static NEXT: AtomicU16 = AtomicU16::new(0x8000);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    id.max(0x8000)
}

impl MemPlan<'_> {
    /// Bytes of this plan's `netmap_if` and rings, laid out from a 128-byte aligned start
    /// (a multiple of 128).
    pub(crate) fn meta_bytes(&self) -> usize {
        let mut off = if_bytes(2 * self.queues as usize).next_multiple_of(128);
        for _ in self.bound {
            off = (off + ring_bytes(self.tx_slots)).next_multiple_of(128);
            off = (off + ring_bytes(self.rx_slots)).next_multiple_of(128);
        }
        off
    }
}

impl RingMem {
    /// Lays out the region of `plan` with buffers of `buf_size` bytes (a multiple of 64;
    /// [`BUF_SIZE`] on AF_XDP, AF_PACKET sizes them for jumbo frames). TX rings start with
    /// `tail = n - 1` (all slots free), RX rings with `tail = 0`; every slot's buffer index is
    /// 0 until the driver assigns buffers.
    pub(crate) fn build_sized(plan: &MemPlan<'_>, buf_size: u32) -> Result<RingMem, Error> {
        Self::build_with_arena(plan, plan.meta_bytes(), buf_size)
    }

    /// As [`build_sized`](Self::build_sized), with `arena` bytes (at least
    /// `plan.meta_bytes()`) before the pool for the interfaces and rings of this port and of
    /// ports opened later on the same memory ([`lay_out`]); `plan`'s own are at offset 0.
    pub(crate) fn build_with_arena(
        plan: &MemPlan<'_>,
        arena: usize,
        buf_size: u32,
    ) -> Result<RingMem, Error> {
        debug_assert!(buf_size >= 64 && buf_size % 64 == 0);
        let page = super::os::page_size();
        let pool_off = arena.max(plan.meta_bytes()).next_multiple_of(page);
        let pool_len = plan.nbufs as usize * buf_size as usize;
        // The last buffer ends buf_shift bytes past the pool.
        let region = super::huge::region(
            plan.name,
            pool_off + pool_len + plan.buf_shift,
            plan.huge_pages,
        )?;
        // SAFETY: the region is fresh: nobody else can reach any of it yet.
        let (tx, rx) = unsafe { lay_out(&region, 0, plan, pool_off, buf_size) }?;
        let identity = MemIdentity::Linux {
            mem_id: next_mem_id(),
            base: region.base().as_ptr() as usize,
        };
        Ok(RingMem {
            region,
            tx,
            rx,
            pool_off,
            pool_len,
            buf_shift: plan.buf_shift,
            identity,
        })
    }
}

/// Writes `plan`'s `netmap_if` at `at` and its rings after it (`plan.meta_bytes()` bytes in
/// all), the rings' buffers being the `buf_size`-byte buffers of the pool at `pool_off`
/// (shifted by `plan.buf_shift`), and returns checked views of the rings (`tx[i]`/`rx[i]`
/// belong to `plan.bound[i]`).
///
/// # Safety
/// `at..at + plan.meta_bytes()` must be the caller's alone: no ring handle, driver or other
/// thread reads or writes it until this returns.
pub(crate) unsafe fn lay_out(
    region: &Region,
    at: usize,
    plan: &MemPlan<'_>,
    pool_off: usize,
    buf_size: u32,
) -> Result<(Vec<RawRing>, Vec<RawRing>), Error> {
    let nq = plan.queues as usize;
    let end = at + plan.meta_bytes();
    if at % 128 != 0 || end > pool_off || pool_off > region.len() {
        return Err(Error::BadLayout(format!(
            "ring area {at}..{end} is misaligned or overlaps the pool at {pool_off}"
        )));
    }
    let mut off = at + if_bytes(2 * nq).next_multiple_of(128);
    let mut ring_offs = Vec::with_capacity(plan.bound.len());
    for _ in plan.bound {
        let tx = off;
        off = (off + ring_bytes(plan.tx_slots)).next_multiple_of(128);
        let rx = off;
        off = (off + ring_bytes(plan.rx_slots)).next_multiple_of(128);
        ring_offs.push((tx, rx));
    }
    let buf_base = pool_off + plan.buf_shift;
    // `ring_ofs[]` of a netmap_if are relative to the interface.
    let mut ofs = vec![0isize; 2 * nq];
    for (&q, &(tx, rx)) in plan.bound.iter().zip(&ring_offs) {
        for (off, dir, n, tail) in [
            (tx, 0, plan.tx_slots, plan.tx_slots - 1),
            (rx, 1, plan.rx_slots, 0),
        ] {
            let g = RingInit {
                num_slots: n,
                buf_size,
                buf_ofs: buf_base as i64 - off as i64,
                ringid: q as u16,
                dir,
                tail,
            };
            // SAFETY: the ring area lies inside the caller's area (checked above against
            // the pool start), is 128-byte aligned and is the caller's alone.
            unsafe { init_ring(region, off, g) };
        }
        if plan.expose_tx {
            ofs[q as usize] = (tx - at) as isize;
        }
        if plan.expose_rx {
            ofs[nq + q as usize] = (rx - at) as isize;
        }
    }
    // SAFETY: the interface area (at, if_bytes bytes) is in the caller's area.
    unsafe {
        write_if(
            region,
            at,
            plan.name,
            [plan.queues, plan.queues, 0, 0],
            &ofs,
        )
    };
    let mut tx = Vec::new();
    let mut rx = Vec::new();
    for &(t, r) in &ring_offs {
        tx.push(RawRing::new(region, t, pool_off)?);
        rx.push(RawRing::new(region, r, pool_off)?);
    }
    Ok((tx, rx))
}

/// Copies `data` into the buffer of slot `k` and sets the slot's length (flags cleared).
/// Returns `Err(buf_idx)`, writing nothing, when the slot's buffer index is outside the pool.
///
/// # Safety
/// The caller owns slot `k` on the kernel side of the ring (outside the user's
/// `[head, tail)`), under the driver's lock for the ring.
pub(crate) unsafe fn write_slot(ring: &RawRing, k: u32, data: &[u8]) -> Result<(), u32> {
    let len = data
        .len()
        .min(ring.buf_size() as usize)
        .min(u16::MAX as usize);
    // SAFETY: slot ownership per the caller's contract.
    let p = unsafe { ring.fill_slot(k, len as u16, 0) }?;
    // SAFETY: p is valid for buf_size >= len bytes inside the region (buf_ptr checked the
    // index); the buffer belongs to the kernel-side slot k, so the user does not access it;
    // `data` is not region memory reachable through a Rust reference.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), len) };
    Ok(())
}

/// Runs `f` over the first `len` bytes (the slot's length) of slot `k`'s buffer; `Err(buf_idx)`
/// when the slot's buffer index is outside the pool. `len` is clamped to the buffer size.
///
/// # Safety
/// As for [`write_slot`]: the caller owns slot `k` on the kernel side of the ring.
pub(crate) unsafe fn with_slot_data<T>(
    ring: &RawRing,
    k: u32,
    f: impl FnOnce(&[u8], u16) -> T,
) -> Result<T, u32> {
    // SAFETY: slot ownership per the caller's contract.
    let (idx, len, flags) = unsafe { ring.slot_meta(k) };
    let p = ring.buf_ptr(idx).ok_or(idx)?;
    let len = (len as usize).min(ring.buf_size() as usize);
    // SAFETY: p..p+len lies inside the region (buf_ptr, len <= buf_size). The buffer belongs
    // to the kernel-side slot k: the user released it and does not touch it until the tail
    // passes it again, which happens only after `f` returns.
    let data = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    Ok(f(data, flags))
}

/// The end of the last whole packet in the TX slots `[from, head)`: a chain the user has not
/// ended yet (`NS_MOREFRAG` on the slot before `head`) waits for its last slot, unless it
/// fills the ring (`n - 1` slots: it can never end), which is handed on (up to `head`) for
/// the caller to refuse. One flag read when the slot before `head` ends a packet.
///
/// # Safety
/// The slots `[from, head)` are the driver's (released by the user, the ring's lock held).
pub(crate) unsafe fn whole_packets_end(ring: &RawRing, from: u32, head: u32) -> u32 {
    let n = ring.num_slots();
    let mut k = head;
    while k != from {
        let p = crate::ring::prev(k, n);
        // SAFETY: p lies in [from, head), the driver's per the caller's contract.
        let (_, flags) = unsafe { ring.slot_len_flags(p) };
        if flags & crate::abi::NS_MOREFRAG == 0 {
            return k;
        }
        k = p;
    }
    if crate::ring::distance(from, head, n) == n - 1 {
        head
    } else {
        from
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::bind_rings;

    #[test]
    fn layout_binds_the_queues_it_was_given_and_buffers_start_after_the_rings() {
        let plan = MemPlan {
            name: "t0",
            queues: 4,
            bound: &[2],
            tx_slots: 64,
            rx_slots: 128,
            nbufs: 256,
            buf_shift: 256,
            expose_tx: true,
            expose_rx: true,
            huge_pages: false,
        };
        let m = RingMem::build_sized(&plan, BUF_SIZE).unwrap();
        assert_eq!(m.pool_off % super::super::os::page_size(), 0);
        let b = bind_rings(&m.region, 0, m.buffers(), &"t0").unwrap();
        assert_eq!((b.tx.len(), b.rx.len()), (1, 1));
        assert_eq!((b.tx[0].ring_id, b.rx[0].ring_id), (2, 2));
        assert_eq!(b.tx[0].raw.num_slots(), 64);
        assert_eq!(b.rx[0].raw.num_slots(), 128);
        assert_eq!(b.tx[0].raw.load_tail(), 63);
        // Buffer i sits buf_shift bytes into pool frame i; the last one is the last valid.
        let p0 = b.tx[0].raw.buf_ptr(0).unwrap().as_ptr() as usize;
        assert_eq!(p0 - m.region.base().as_ptr() as usize, m.pool_off + 256);
        assert!(b.tx[0].raw.buf_ptr(255).is_some());
        assert!(b.tx[0].raw.buf_ptr(256).is_none());
        assert!(slots(10, "tx").is_err());
        assert_eq!(slots(0, "tx").unwrap(), DEFAULT_SLOTS);
    }
}

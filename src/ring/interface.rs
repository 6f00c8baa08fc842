//! The `netmap_if` of a registration: reading it (with its `ring_ofs[]`) and, for the
//! drivers that build their own memory, writing it and laying out fresh rings, as the
//! kernel's allocator does at registration.

use std::ptr::addr_of;
use std::ptr::addr_of_mut;

use crate::abi::{NetmapIf, NetmapRing, NetmapSlot, RING_OFS_ENTRY, RING_OFS_START};
use crate::error::Error;
use crate::region::Region;

/// What a `netmap_if` says about the rings of a registration.
#[derive(Debug, Clone)]
pub(crate) struct IfInfo {
    pub tx_rings: u32,
    pub rx_rings: u32,
    pub host_tx_rings: u32,
    pub host_rx_rings: u32,
    pub bufs_head: u32,
    /// `ring_ofs[]`: NIC tx, host tx, NIC rx, host rx (relative to the interface).
    pub ring_ofs: Vec<isize>,
}

/// Reads the `netmap_if` at `if_off` and its `ring_ofs[]` array, checking that it fits.
pub(crate) fn read_if(region: &Region, if_off: usize) -> Result<IfInfo, Error> {
    let p = region
        .at(if_off, size_of::<NetmapIf>(), align_of::<NetmapIf>())
        .ok_or_else(|| Error::BadLayout(format!("netmap_if at {if_off} is outside the region")))?
        .cast::<NetmapIf>();
    // SAFETY: the header lies in the region; the kernel writes these fields before the
    // registration returns and does not change them (ni_bufs_head is only ours to change).
    let (tx, rx, htx, hrx, bufs_head) = unsafe {
        let p = p.as_ptr();
        (
            addr_of!((*p).ni_tx_rings).read(),
            addr_of!((*p).ni_rx_rings).read(),
            addr_of!((*p).ni_host_tx_rings).read(),
            addr_of!((*p).ni_host_rx_rings).read(),
            addr_of!((*p).ni_bufs_head).read(),
        )
    };
    let n = [tx, rx, htx, hrx]
        .iter()
        .try_fold(0usize, |acc, &x| acc.checked_add(x as usize))
        .filter(|n| *n <= 65536)
        .ok_or_else(|| Error::BadLayout("implausible ring counts in netmap_if".into()))?;
    let arr = region
        .at(
            if_off + RING_OFS_START,
            n * RING_OFS_ENTRY,
            align_of::<isize>(),
        )
        .ok_or_else(|| Error::BadLayout("ring_ofs[] runs past the region".into()))?
        .cast::<isize>();
    let ring_ofs = (0..n)
        // SAFETY: n entries fit in the region (checked above); written before registration.
        .map(|i| unsafe { arr.as_ptr().add(i).read() })
        .collect();
    Ok(IfInfo {
        tx_rings: tx,
        rx_rings: rx,
        host_tx_rings: htx,
        host_rx_rings: hrx,
        bufs_head,
        ring_ofs,
    })
}

/// The constant fields of a ring header, as the kernel writes them at registration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingInit {
    pub num_slots: u32,
    pub buf_size: u32,
    pub buf_ofs: i64,
    pub ringid: u16,
    pub dir: u16,
    pub tail: u32,
}

/// Lays out a fresh ring header (and zeroed slots) at `off`, as the kernel does at
/// registration: `head = cur = 0`, `tail = g.tail`.
///
/// # Safety
/// `off .. off + ring_bytes(g.num_slots)` must lie in the region, be 128-byte aligned, and be
/// owned by the caller: no `RawRing` over it is in use by anyone else yet.
pub(crate) unsafe fn init_ring(region: &Region, off: usize, g: RingInit) {
    let RingInit {
        num_slots,
        buf_size,
        buf_ofs,
        ringid,
        dir,
        tail,
    } = g;
    let p = region
        .at(off, ring_bytes(num_slots), align_of::<NetmapRing>())
        .expect("init_ring: caller passed a ring outside the region");
    // SAFETY: in bounds and aligned (checked above); exclusively owned per the contract.
    unsafe {
        std::ptr::write_bytes(p.as_ptr(), 0, ring_bytes(num_slots));
        let r = p.as_ptr().cast::<NetmapRing>();
        addr_of_mut!((*r).buf_ofs).write(buf_ofs);
        addr_of_mut!((*r).num_slots).write(num_slots);
        addr_of_mut!((*r).nr_buf_size).write(buf_size);
        addr_of_mut!((*r).ringid).write(ringid);
        addr_of_mut!((*r).dir).write(dir);
        addr_of_mut!((*r).tail).write(tail);
    }
}

/// Writes a `netmap_if` with its `ring_ofs[]` at `off`.
///
/// # Safety
/// `off .. off + if_bytes(ring_ofs.len())` must lie in the region, be 8-byte aligned and be
/// owned by the caller (not yet handed to any user).
pub(crate) unsafe fn write_if(
    region: &Region,
    off: usize,
    name: &str,
    counts: [u32; 4],
    ring_ofs: &[isize],
) {
    let size = if_bytes(ring_ofs.len());
    let p = region
        .at(off, size, align_of::<NetmapIf>())
        .expect("write_if: caller passed an interface outside the region");
    // SAFETY: in bounds and aligned (checked above); exclusively owned per the contract.
    unsafe {
        std::ptr::write_bytes(p.as_ptr(), 0, size);
        let i = p.as_ptr().cast::<NetmapIf>();
        let name_ptr = addr_of_mut!((*i).ni_name).cast::<u8>();
        for (k, b) in name.bytes().take(crate::abi::IFNAMSIZ - 1).enumerate() {
            name_ptr.add(k).write(b);
        }
        addr_of_mut!((*i).ni_version).write(crate::abi::NETMAP_API as u32);
        addr_of_mut!((*i).ni_tx_rings).write(counts[0]);
        addr_of_mut!((*i).ni_rx_rings).write(counts[1]);
        addr_of_mut!((*i).ni_host_tx_rings).write(counts[2]);
        addr_of_mut!((*i).ni_host_rx_rings).write(counts[3]);
        let arr = p.as_ptr().add(RING_OFS_START).cast::<isize>();
        for (k, o) in ring_ofs.iter().enumerate() {
            arr.add(k).write(*o);
        }
    }
}

/// Byte size of a `netmap_if` with `n` ring offsets.
pub(crate) fn if_bytes(n: usize) -> usize {
    RING_OFS_START + n * RING_OFS_ENTRY
}

/// Byte size of a ring with `num_slots` slots.
pub(crate) fn ring_bytes(num_slots: u32) -> usize {
    size_of::<NetmapRing>() + num_slots as usize * size_of::<NetmapSlot>()
}

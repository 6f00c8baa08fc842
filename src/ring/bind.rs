//! Locating and validating a registration's rings in its memory region.

use std::fmt::Display;

use super::interface::{if_bytes, read_if};
use super::raw::RawRing;
use crate::error::Error;
use crate::region::Region;

/// One ring bound to a registration.
#[derive(Debug)]
pub(crate) struct BoundRing {
    pub(crate) raw: RawRing,
    /// Offset of the ring header in the memory region: with the memory's identity, it names
    /// the ring process-wide (a user handle claims it by that pair).
    pub(crate) off: usize,
    pub(crate) host: bool,
    pub(crate) ring_id: u16,
}

/// The rings a `netmap_if` binds, checked.
#[derive(Debug)]
pub(crate) struct BoundRings {
    pub(crate) tx: Vec<BoundRing>,
    pub(crate) rx: Vec<BoundRing>,
    pub(crate) bufs_head: u32,
}

/// Reads the `netmap_if` at `if_off` and builds a checked view of every ring it binds: each
/// ring's geometry is read from shared memory once; rings may overlap neither the interface
/// nor each other, and buffers may overlap neither.
///
/// `pool` is the byte range of the memory's buffer pool: buffers outside it are refused
/// (see [`RawRing::with_pool`]).
pub(crate) fn bind_rings(
    region: &Region,
    if_off: usize,
    pool: std::ops::Range<usize>,
    spec: &dyn Display,
) -> Result<BoundRings, Error> {
    let info = read_if(region, if_off)?;
    let ntx = (info.tx_rings + info.host_tx_rings) as usize;
    let nrx = (info.rx_rings + info.host_rx_rings) as usize;
    if info.ring_ofs.len() != ntx + nrx {
        return Err(Error::BadLayout("ring_ofs[] length mismatch".into()));
    }
    // Offsets of the rings bound to this registration (ring_ofs 0 = not bound: never
    // dereferenced).
    let locate = |k: usize| -> Result<Option<usize>, Error> {
        let o = info.ring_ofs[k];
        if o == 0 {
            return Ok(None);
        }
        let abs = (if_off as isize)
            .checked_add(o)
            .filter(|a| *a >= 0)
            .ok_or_else(|| Error::BadLayout(format!("ring_ofs[{k}] = {o} leaves the region")))?;
        Ok(Some(abs as usize))
    };
    let mut tx_offs = Vec::new();
    for k in 0..ntx {
        if let Some(off) = locate(k)? {
            let host = k >= info.tx_rings as usize;
            let id = if host { k - info.tx_rings as usize } else { k };
            tx_offs.push((off, host, id as u16));
        }
    }
    let mut rx_offs = Vec::new();
    for k in 0..nrx {
        if let Some(off) = locate(ntx + k)? {
            let host = k >= info.rx_rings as usize;
            let id = if host { k - info.rx_rings as usize } else { k };
            rx_offs.push((off, host, id as u16));
        }
    }
    // Each ring's geometry is read from shared memory once; everything below uses that
    // validated copy. Rings may not overlap the interface or each other, and buffers may
    // not overlap either (the guard).
    let if_end = if_off + if_bytes(ntx + nrx);
    let view = |list: &[(usize, bool, u16)]| -> Result<Vec<RawRing>, Error> {
        list.iter()
            .map(|&(off, _, _)| RawRing::new(region, off, 0))
            .collect()
    };
    let (tx_views, rx_views) = (view(&tx_offs)?, view(&rx_offs)?);
    let mut extents: Vec<(usize, usize)> = tx_views
        .iter()
        .chain(&rx_views)
        .map(RawRing::extent)
        .collect();
    extents.push((if_off, if_end));
    extents.sort_unstable();
    if let Some(w) = extents.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(Error::BadLayout(format!(
            "{spec}: rings or interface overlap in shared memory ({}..{} and {}..{})",
            w[0].0, w[0].1, w[1].0, w[1].1
        )));
    }
    let guard = extents.iter().map(|e| e.1).max().unwrap_or(if_end);
    let bind = |list: Vec<(usize, bool, u16)>, views: Vec<RawRing>| -> Vec<BoundRing> {
        list.into_iter()
            .zip(views)
            .map(|((off, host, ring_id), raw)| BoundRing {
                raw: raw.with_guard(guard).with_pool(pool.clone()),
                off,
                host,
                ring_id,
            })
            .collect()
    };
    let tx = bind(tx_offs, tx_views);
    let rx = bind(rx_offs, rx_views);
    if tx.is_empty() && rx.is_empty() {
        return Err(Error::BadLayout(format!("{spec}: no ring is bound")));
    }
    Ok(BoundRings {
        tx,
        rx,
        bufs_head: info.bufs_head,
    })
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::ring::{init_ring, ring_bytes, write_if, RingInit};

    /// An interface at 512 binding one TX and one RX ring at `tx_off` and `rx_off` (8 slots,
    /// buffers of 2048 from offset 32 KiB).
    fn layout(region: &Region, tx_off: usize, rx_off: usize) {
        let if_off = 512;
        for (off, dir) in [(tx_off, 0), (rx_off, 1)] {
            let g = RingInit {
                num_slots: 8,
                buf_size: 2048,
                buf_ofs: 32768 - off as i64,
                ringid: 0,
                dir,
                tail: 0,
            };
            // SAFETY: test-local region; the areas lie inside it and are 128-byte aligned;
            // when they overlap, the later write simply wins (plain bytes, one thread).
            unsafe { init_ring(region, off, g) };
        }
        let rel = |off: usize| off as isize - if_off as isize;
        let ofs = [rel(tx_off), 0, rel(rx_off), 0];
        // SAFETY: test-local region, nobody else reads it yet.
        unsafe { write_if(region, if_off, "t", [1, 1, 1, 1], &ofs) };
    }

    #[test]
    fn rings_that_overlap_each_other_or_the_interface_are_refused() {
        let region = Region::anonymous(64 * 1024).unwrap();
        let r = ring_bytes(8).next_multiple_of(128);
        layout(&region, 1024, 1024 + r);
        let b = bind_rings(&region, 512, 0..region.len(), &"ok").unwrap();
        assert_eq!((b.tx.len(), b.rx.len()), (1, 1));
        // Buffers start above the highest ring.
        let lowest = b.tx[0].raw.buf_ptr(0);
        assert!(lowest.is_some(), "buffer 0 at 32 KiB lies above both rings");
        // RX ring starting inside the TX ring's slots.
        layout(&region, 1024, 1024 + 128);
        let e = bind_rings(&region, 512, 0..region.len(), &"overlap").unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
        // A ring whose slots run over the interface (at 512).
        layout(&region, 1024, 384);
        let e = bind_rings(&region, 512, 0..region.len(), &"on the interface").unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
    }
}

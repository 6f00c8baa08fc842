//! The netmap pipe protocol between the two ends of an emulated pipe.

use std::sync::{Arc, Mutex};

use super::memory::EmuMem;
use super::{lock, BUF_SIZE, RX, TX};
use crate::abi::{NS_BUF_CHANGED, NS_MOREFRAG};
use crate::error::Error;
use crate::notify::Notifier;
use crate::sync::raw::{distance, in_cyclic_range, init_ring, next, prev, runs, RawRing, RingInit};

/// Whom to signal when one side of a link has news: the registration's notifier (what the
/// netmap fd is to the kernel backend) and the ring's own notifier (an async ring handle's),
/// each when present. A notifier nobody armed costs one atomic load.
#[derive(Default)]
pub(super) struct Wake {
    pub(super) port: Option<Arc<Notifier>>,
    pub(super) ring: Option<Arc<Notifier>>,
}

impl Wake {
    #[inline]
    fn notify(&self) {
        if let Some(n) = &self.port {
            n.notify();
        }
        if let Some(n) = &self.ring {
            n.notify();
        }
    }
}

/// Kernel-side state of one direction of one ring pair: TX ring `i` of the sending end and RX
/// ring `i` of the receiving end. Guarded by a mutex, like the kernel's kring lock.
pub(super) struct Link {
    pub(super) tx_hwcur: u32,
    pub(super) tx_hwtail: u32,
    /// Last slot the sender may fill, as released by the receiver (`prev(rx_hwcur)`).
    pipe_tail: u32,
    pub(super) rx_hwcur: u32,
    pub(super) rx_hwtail: u32,
    /// The RX tail the receiving user was last shown.
    pub(super) rx_tail_pub: u32,
    /// Signalled when packets are delivered to the receiving end.
    pub(super) rx_wake: Wake,
    /// Signalled when the receiver frees slots for the sending end.
    pub(super) tx_wake: Wake,
}

pub(super) struct Bindings {
    /// `[end][TX/RX][ring]`: bound by some registration.
    pub(super) rings: [[Vec<bool>; 2]; 2],
    pub(super) exclusive: [bool; 2],
}

pub(super) struct Pipe {
    pub(super) mem: Arc<EmuMem>,
    /// Master end's name, for messages.
    pub(super) name: String,
    pub(super) nrings: usize,
    pub(super) nslots: u32,
    /// `[end][TX/RX][ring]` offsets in the region.
    pub(super) ring_off: [[Vec<usize>; 2]; 2],
    pub(super) raw: [[Vec<RawRing>; 2]; 2],
    /// `links[sending end][ring]`.
    pub(super) links: [Vec<Mutex<Link>>; 2],
    pub(super) bound: Mutex<Bindings>,
}

impl Pipe {
    pub(super) fn create(
        mem: Arc<EmuMem>,
        name: String,
        nrings: usize,
        nslots: u32,
    ) -> Result<Pipe, Error> {
        let mut ring_off: [[Vec<usize>; 2]; 2] = Default::default();
        let mut raw: [[Vec<RawRing>; 2]; 2] = Default::default();
        let mut links: [Vec<Mutex<Link>>; 2] = Default::default();
        let mut allocated: Vec<usize> = Vec::new();
        let mut bufs_taken: Vec<u32> = Vec::new();
        let result = (|| {
            for offs in ring_off.iter_mut() {
                for dir in [TX, RX] {
                    for _ in 0..nrings {
                        let off = mem.alloc_ring(nslots)?;
                        allocated.push(off);
                        offs[dir].push(off);
                    }
                }
            }
            // Initialise every ring, then give TX ring i of end e and RX ring i of the other
            // end the same buffers.
            let buf_base = mem.ring_end;
            for (e, end_links) in links.iter_mut().enumerate() {
                let pairs = ring_off[e][TX].iter().zip(&ring_off[1 - e][RX]);
                for (i, (&tx_off, &rx_off)) in pairs.enumerate() {
                    let geometry = |off: usize, dir: u16, tail: u32| RingInit {
                        num_slots: nslots,
                        buf_size: BUF_SIZE,
                        buf_ofs: buf_base as i64 - off as i64,
                        ringid: i as u16,
                        dir,
                        tail,
                    };
                    // SAFETY: both ring areas were just allocated for this pipe; nobody else
                    // can reach them until the pipe is published in the registry.
                    unsafe {
                        init_ring(&mem.region, tx_off, geometry(tx_off, 0, nslots - 1));
                        init_ring(&mem.region, rx_off, geometry(rx_off, 1, 0));
                    }
                    let bufs = mem.alloc_bufs(nslots as usize)?;
                    bufs_taken.extend_from_slice(&bufs);
                    let guard = mem.ring_end;
                    let txr = RawRing::new(&mem.region, tx_off, guard)?;
                    let rxr = RawRing::new(&mem.region, rx_off, guard)?;
                    for (k, b) in bufs.iter().enumerate() {
                        // SAFETY: fresh rings owned by this constructor (see above).
                        unsafe {
                            txr.set_buf_idx(k as u32, *b);
                            rxr.set_buf_idx(k as u32, *b);
                        }
                    }
                    end_links.push(Mutex::new(Link {
                        tx_hwcur: 0,
                        tx_hwtail: nslots - 1,
                        pipe_tail: nslots - 1,
                        rx_hwcur: 0,
                        rx_hwtail: 0,
                        rx_tail_pub: 0,
                        rx_wake: Wake::default(),
                        tx_wake: Wake::default(),
                    }));
                }
            }
            for e in 0..2 {
                for dir in [TX, RX] {
                    for &off in &ring_off[e][dir] {
                        raw[e][dir].push(RawRing::new(&mem.region, off, mem.ring_end)?);
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for off in allocated {
                mem.free_ring(off, nslots);
            }
            mem.free_bufs(bufs_taken);
            return Err(e);
        }
        Ok(Pipe {
            mem,
            name,
            nrings,
            nslots,
            ring_off,
            raw,
            links,
            bound: Mutex::new(Bindings {
                rings: [
                    [vec![false; nrings], vec![false; nrings]],
                    [vec![false; nrings], vec![false; nrings]],
                ],
                exclusive: [false; 2],
            }),
        })
    }

    pub(super) fn txsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let n = self.nslots;
        let tx = &self.raw[end][TX][i];
        let rx = &self.raw[1 - end][RX][i];
        let mut l = lock(&self.links[end][i]);
        let head = tx.load_head();
        let cur = tx.load_cur();
        if !in_cyclic_range(l.tx_hwcur, head, l.tx_hwtail, n)
            || !in_cyclic_range(head, cur, l.tx_hwtail, n)
        {
            return Err(Error::RingState(format!(
                "{}: tx ring {i}: head {head} / cur {cur} outside [{}, {}]",
                self.name, l.tx_hwcur, l.tx_hwtail
            )));
        }
        // SAFETY (both blocks): TX slots in [hwcur, head) were released by the user, whose
        // Release store of head we loaded with Acquire; they are the kernel side's until the
        // tail passes them again. The same RX slots lie in [rx_hwtail, pipe limit): not yet
        // shown to the receiving user (its tail is at most rx_hwtail). The link lock
        // serialises us with the receiver's rxsync.
        //
        // TX slot k and RX slot k hold the same buffer whenever the slot is on the sending
        // side (swaps are propagated back at rxsync), so whole slots are copied; a swapped-in
        // buffer (NS_BUF_CHANGED) travels with them.
        let mut flags = 0;
        for (start, count) in runs(l.tx_hwcur, head, n) {
            flags |= unsafe { tx.copy_slots_to(rx, start, count) };
        }
        if flags & NS_BUF_CHANGED != 0 {
            let mut k = l.tx_hwcur;
            while k != head {
                // SAFETY: as above.
                unsafe {
                    let ts = tx.slot(k);
                    let f = ts.flags & !NS_BUF_CHANGED;
                    tx.set_len_flags(k, ts.len, f);
                    rx.set_len_flags(k, ts.len, f);
                }
                k = next(k, n);
            }
        }
        // Packets are delivered up to the end of the last complete one (a slot without
        // NS_MOREFRAG); usually that is the last slot.
        let mut complete = None;
        if flags & NS_MOREFRAG == 0 {
            complete = (head != l.tx_hwcur).then_some(head);
        } else {
            let mut k = head;
            while k != l.tx_hwcur {
                let p = prev(k, n);
                // SAFETY: as above.
                if unsafe { tx.slot(p) }.flags & NS_MOREFRAG == 0 {
                    complete = Some(k);
                    break;
                }
                k = p;
            }
        }
        l.tx_hwcur = head;
        let mut delivered = false;
        if let Some(nk) = complete {
            if nk != l.rx_hwtail {
                l.rx_hwtail = nk;
                delivered = true;
            }
        }
        l.tx_hwtail = l.pipe_tail;
        tx.store_tail(l.tx_hwtail);
        if delivered {
            l.rx_wake.notify();
        }
        Ok(())
    }

    pub(super) fn rxsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let n = self.nslots;
        let rx = &self.raw[end][RX][i];
        let tx = &self.raw[1 - end][TX][i];
        let mut l = lock(&self.links[1 - end][i]);
        let head = rx.load_head();
        let cur = rx.load_cur();
        if !in_cyclic_range(l.rx_hwcur, head, l.rx_tail_pub, n)
            || !in_cyclic_range(head, cur, l.rx_tail_pub, n)
        {
            return Err(Error::RingState(format!(
                "{}: rx ring {i}: head {head} / cur {cur} outside [{}, {}]",
                self.name, l.rx_hwcur, l.rx_tail_pub
            )));
        }
        // SAFETY (all blocks): RX slots in [rx_hwcur, head) were released by the receiving
        // user (Acquire load of head). The same TX slots are not the sending user's: its tail
        // is at most prev(rx_hwcur), so [rx_hwcur, head) lies outside its [head, tail). The
        // link lock is held.
        let mut flags = 0;
        for (start, count) in runs(l.rx_hwcur, head, n) {
            flags |= unsafe { rx.flags_or(start, count) };
        }
        let mut k = if flags & NS_BUF_CHANGED != 0 {
            l.rx_hwcur
        } else {
            head
        };
        while k != head {
            // SAFETY: as above.
            unsafe {
                let rs = rx.slot(k);
                if rs.flags & NS_BUF_CHANGED != 0 {
                    tx.set_buf_idx(k, rs.buf_idx);
                    rx.set_len_flags(k, rs.len, rs.flags & !NS_BUF_CHANGED);
                }
            }
            k = next(k, n);
        }
        let released = head != l.rx_hwcur;
        if released {
            l.rx_hwcur = head;
            l.pipe_tail = prev(head, n);
        }
        l.rx_tail_pub = l.rx_hwtail;
        rx.store_tail(l.rx_hwtail);
        if released {
            l.tx_wake.notify();
        }
        Ok(())
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Give every buffer back: a slot's buffer is the RX copy while the receiver holds it
        // (it may have been swapped), the TX copy otherwise.
        let mut bufs = Vec::new();
        for e in 0..2 {
            for i in 0..self.nrings {
                let l = lock(&self.links[e][i]);
                let tx = &self.raw[e][TX][i];
                let rx = &self.raw[1 - e][RX][i];
                for k in 0..self.nslots {
                    let held = distance(l.rx_hwcur, k, self.nslots)
                        < distance(l.rx_hwcur, l.rx_hwtail, self.nslots);
                    // SAFETY: the pipe is being dropped: no registration (and so no user or
                    // other thread) can reach its rings any more.
                    let b = unsafe {
                        if held {
                            rx.slot(k).buf_idx
                        } else {
                            tx.slot(k).buf_idx
                        }
                    };
                    bufs.push(b);
                }
            }
        }
        // A slot may hold anything a hostile write left there: only buffers the memory has
        // handed out are taken back, each once (see `EmuMem::free_bufs`).
        let refused = self.mem.free_bufs(bufs);
        if refused > 0 {
            tracing::warn!(
                pipe = %self.name,
                refused,
                "pipe teardown: slots held buffer indices that were out of range or repeated; \
                 they were not returned to the pool"
            );
        }
        for e in 0..2 {
            for dir in [TX, RX] {
                for &off in &self.ring_off[e][dir] {
                    self.mem.free_ring(off, self.nslots);
                }
            }
        }
    }
}

//! The pipe table in the control area: finding a pipe another process may have built,
//! building one (rings, buffers, protocol words), and tearing it down when its last user,
//! in any process, is gone. All of it runs under the memory lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ctl::{Ctl, SLOT_FREE, SLOT_LIVE, W};
use super::memory::{EmuMem, MemGuard};
use super::pipe::{Bindings, Pipe};
use super::{BUF_SIZE, MAX_RINGS, MAX_SLOTS, RX, TX};
use crate::error::Error;
use crate::ring::{distance, init_ring, ring_bytes, RawRing, RingInit};

/// The rings of slot `s` as the control area describes them, checked: ring count and size
/// within the backend's limits, every ring inside the ring area, aligned, of that size.
type Views = (usize, u32, [[Vec<usize>; 2]; 2], [[Vec<RawRing>; 2]; 2]);

fn views(ctl: &Ctl, s: usize) -> Result<Views, Error> {
    let (nr, ns) = ctl.slot_geometry(s);
    if !(1..=MAX_RINGS as u32).contains(&nr) || !(4..=MAX_SLOTS).contains(&ns) {
        return Err(Error::BadLayout(format!(
            "pipe slot {s}: {nr} rings of {ns} slots"
        )));
    }
    let mut offs: [[Vec<usize>; 2]; 2] = Default::default();
    let mut raws: [[Vec<RawRing>; 2]; 2] = Default::default();
    let size = ring_bytes(ns);
    for e in 0..2 {
        for dir in [TX, RX] {
            for i in 0..nr as usize {
                let off = ctl.ring_off(s, e, dir, i).load(Ordering::Relaxed) as usize;
                if off < ctl.g.if_end || off % 128 != 0 || off + size > ctl.g.ring_end {
                    return Err(Error::BadLayout(format!(
                        "pipe slot {s}: ring offset {off} outside the ring area"
                    )));
                }
                let r = RawRing::new(&ctl.region, off, ctl.g.ring_end)?;
                if r.num_slots() != ns || r.buf_size() != BUF_SIZE {
                    return Err(Error::BadLayout(format!(
                        "pipe slot {s}: ring at {off} has {} slots, the pipe {ns}",
                        r.num_slots()
                    )));
                }
                offs[e][dir].push(off);
                raws[e][dir].push(r);
            }
        }
    }
    Ok((nr as usize, ns, offs, raws))
}

/// Builds pipe `name` in free slot `s`: rings, buffers, link words. Under the memory lock.
fn create(g: &MemGuard<'_>, s: usize, name: &str, nrings: usize, nslots: u32) -> Result<(), Error> {
    let ctl = g.ctl();
    let mut allocated: Vec<usize> = Vec::new();
    let mut bufs_taken: Vec<u32> = Vec::new();
    let result = (|| {
        for e in 0..2 {
            for dir in [TX, RX] {
                for i in 0..nrings {
                    let off = g.alloc_ring(nslots)?;
                    allocated.push(off);
                    ctl.ring_off(s, e, dir, i)
                        .store(off as u32, Ordering::Relaxed);
                }
            }
        }
        let buf_base = ctl.g.ring_end;
        for e in 0..2 {
            for i in 0..nrings {
                let tx_off = ctl.ring_off(s, e, TX, i).load(Ordering::Relaxed) as usize;
                let rx_off = ctl.ring_off(s, 1 - e, RX, i).load(Ordering::Relaxed) as usize;
                let geometry = |off: usize, dir: u16, tail: u32| RingInit {
                    num_slots: nslots,
                    buf_size: BUF_SIZE,
                    buf_ofs: buf_base as i64 - off as i64,
                    ringid: i as u16,
                    dir,
                    tail,
                };
                // SAFETY: both ring areas were just allocated for this pipe under the memory
                // lock; no registration can reach them until the slot is marked live.
                unsafe {
                    init_ring(&ctl.region, tx_off, geometry(tx_off, 0, nslots - 1));
                    init_ring(&ctl.region, rx_off, geometry(rx_off, 1, 0));
                }
                let bufs = g.alloc_bufs(nslots as usize)?;
                bufs_taken.extend_from_slice(&bufs);
                let txr = RawRing::new(&ctl.region, tx_off, buf_base)?;
                let rxr = RawRing::new(&ctl.region, rx_off, buf_base)?;
                for (k, b) in bufs.iter().enumerate() {
                    // SAFETY: fresh rings owned by this constructor (see above).
                    unsafe {
                        txr.set_buf_idx(k as u32, *b);
                        rxr.set_buf_idx(k as u32, *b);
                    }
                }
                for (w, v) in [
                    (W::TxHwcur, 0),
                    (W::TxHwtail, nslots - 1),
                    (W::PipeTail, nslots - 1),
                    (W::RxHwcur, 0),
                    (W::RxHwtail, 0),
                    (W::RxTailPub, 0),
                ] {
                    ctl.link(s, e, i, w).store(v, Ordering::Relaxed);
                }
                for dir in [TX, RX] {
                    for kind in 0..2 {
                        super::wake::Cell::new(ctl, ctl.cell(s, e, dir, i, kind)).install(0);
                    }
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for off in allocated {
            g.free_ring(off, nslots);
        }
        g.free_bufs(bufs_taken);
        return Err(e);
    }
    for e in 0..2 {
        ctl.end_state(s, e).store(0, Ordering::Relaxed);
        ctl.end_pid(s, e).store(0, Ordering::Relaxed);
    }
    ctl.set_slot_name(s, name.as_bytes());
    ctl.set_slot_geometry(s, nrings as u32, nslots);
    ctl.slot_state(s).store(SLOT_LIVE, Ordering::Release);
    Ok(())
}

/// Returns every buffer and ring of slot `s` to the memory and frees the slot. Under the
/// memory lock, when no process uses the pipe any more.
fn teardown(g: &MemGuard<'_>, s: usize, name: &str) {
    let ctl = g.ctl();
    let Ok((_, n, offs, raw)) = views(ctl, s) else {
        // Unusable geometry (a hostile or torn write): leak its rings rather than guess.
        ctl.slot_state(s).store(SLOT_FREE, Ordering::Release);
        return;
    };
    // A slot's buffer is the RX copy while the receiver holds it (it may have been swapped),
    // the TX copy otherwise.
    let mut bufs = Vec::new();
    for e in 0..2 {
        for (i, (tx, rx)) in raw[e][TX].iter().zip(&raw[1 - e][RX]).enumerate() {
            let w = |x| ctl.link(s, e, i, x).load(Ordering::Relaxed);
            let (hwcur, hwtail) = (w(W::RxHwcur).min(n - 1), w(W::RxHwtail).min(n - 1));
            for k in 0..n {
                let held = distance(hwcur, k, n) < distance(hwcur, hwtail, n);
                // SAFETY: no registration of any process uses the pipe any more (the caller
                // holds its users lock alone), so nobody writes these slots.
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
    // handed out are taken back, each once.
    let refused = g.free_bufs(bufs);
    if refused > 0 {
        tracing::warn!(
            pipe = %name,
            refused,
            "pipe teardown: slots held buffer indices that were out of range or repeated; \
             they were not returned to the pool"
        );
    }
    for list in offs.iter().flatten() {
        for &off in list {
            g.free_ring(off, n);
        }
    }
    ctl.slot_state(s).store(SLOT_FREE, Ordering::Release);
}

impl Pipe {
    /// Finds pipe `name` in the memory's table (another process may have made it), or builds
    /// it. A pipe whose users all died is rebuilt, never trusted.
    pub(super) fn attach(
        mem: Arc<EmuMem>,
        name: String,
        nrings: usize,
        nslots: u32,
    ) -> Result<Pipe, Error> {
        let mut g = mem.locked();
        let ctl = &mem.ctl;
        let found = (0..ctl.g.max_pipes).find(|&s| ctl.slot_named(s, name.as_bytes()));
        let slot = match found {
            Some(s) if Self::join_users(&mut g, s)? => s,
            Some(s) => {
                tracing::warn!(pipe = %name, "rebuilding a pipe whose users are gone");
                teardown(&g, s, &name);
                if let Err(e) = create(&g, s, &name, nrings, nslots) {
                    Self::leave_users(&mut g, s);
                    return Err(e);
                }
                s
            }
            None => {
                if name.len() > super::ctl::NAME_MAX {
                    return Err(Error::BindFail(format!(
                        "{name}: pipe names of the emulated backend have at most {} bytes",
                        super::ctl::NAME_MAX
                    )));
                }
                let s = (0..ctl.g.max_pipes)
                    .find(|&s| ctl.slot_state(s).load(Ordering::Acquire) == SLOT_FREE)
                    .ok_or_else(|| {
                        Error::BindFail(format!(
                            "{name}: the emulated memory of this parent name has {} pipes \
                             already; close some, or use another parent name",
                            ctl.g.max_pipes
                        ))
                    })?;
                Self::join_users(&mut g, s)?;
                if let Err(e) = create(&g, s, &name, nrings, nslots) {
                    Self::leave_users(&mut g, s);
                    return Err(e);
                }
                s
            }
        };
        let (nrings, nslots, ring_off, raw) = match views(ctl, slot) {
            Ok(v) => v,
            Err(e) => {
                Self::leave_users(&mut g, slot);
                return Err(e);
            }
        };
        drop(g);
        let per = || (0..nrings).map(|_| Mutex::new(())).collect::<Vec<_>>();
        Ok(Pipe {
            mem,
            slot,
            name,
            nrings,
            nslots,
            ring_off,
            raw,
            klock: [[per(), per()], [per(), per()]],
            bound: Mutex::new(Bindings {
                rings: [
                    [vec![false; nrings], vec![false; nrings]],
                    [vec![false; nrings], vec![false; nrings]],
                ],
                exclusive: [false; 2],
            }),
            peer_gone: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    /// Becomes a user of slot `s`; `false` when nobody else uses it (stale, or new). A view
    /// of this process still being dropped counts as a user: the slot stays as it is.
    fn join_users(g: &mut MemGuard<'_>, s: usize) -> Result<bool, Error> {
        let n = *g.local_users(s);
        *g.local_users(s) = n + 1;
        if n > 0 {
            return Ok(true);
        }
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = g.shm() {
            let at = super::shm::pipe_users(s);
            let r = shm
                .lock(at, libc::F_RDLCK, false)
                .and_then(|()| shm.others_hold(at));
            if r.is_err() {
                *g.local_users(s) = 0;
            }
            return Ok(r?);
        }
        Ok(false)
    }

    /// Stops using slot `s`; `true` when nobody uses it any more (the caller tears it down).
    fn leave_users(g: &mut MemGuard<'_>, s: usize) -> bool {
        let n = g.local_users(s).saturating_sub(1);
        *g.local_users(s) = n;
        if n > 0 {
            return false;
        }
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = g.shm() {
            let at = super::shm::pipe_users(s);
            shm.unlock(at);
            // The last user (no other lock holder) tears the pipe down.
            let alone = matches!(shm.try_lock(at), Ok(true));
            if alone {
                shm.unlock(at);
            }
            return alone;
        }
        true
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let mut g = self.mem.locked();
        if Self::leave_users(&mut g, self.slot) {
            teardown(&g, self.slot, &self.name);
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

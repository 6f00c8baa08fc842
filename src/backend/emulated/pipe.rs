//! The netmap pipe protocol between the two ends of an emulated pipe.
//!
//! The protocol state lives in the pipe's slot of the control area (see [`super::ctl`]), so
//! the two ends may be in different processes. It needs no lock shared by the two sides:
//! each word of a link has one writer. The sending side writes `tx_hwcur`, `tx_hwtail` and
//! `rx_hwtail` (after copying the slots it hands over: Release); the receiving side writes
//! `rx_hwcur`, `rx_tail_pub` and `pipe_tail` (after propagating swapped buffers back:
//! Release). Each side reads the other's word with Acquire. The slots each side touches are
//! disjoint (see the SAFETY comments), so a process killed in the middle of a sync leaves
//! nothing locked and nothing half-visible. Threads of one process syncing the same ring are
//! serialised by a process-local mutex per ring side (the kernel's kring lock).
//!
//! Every word read from the control area is checked against the ring size before use: the
//! other process may have written anything there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ctl::{Ctl, END_BOUND, END_CLOSED, SLOT_FREE, SLOT_LIVE, W};
use super::memory::{EmuMem, MemGuard};
use super::wake::signal;
use super::{lock, BUF_SIZE, MAX_RINGS, MAX_SLOTS, RX, TX};
use crate::abi::{NS_BUF_CHANGED, NS_MOREFRAG};
use crate::error::Error;
use crate::sync::raw::{
    distance, in_cyclic_range, init_ring, next, prev, ring_bytes, runs, RawRing, RingInit,
};

pub(super) struct Bindings {
    /// `[end][TX/RX][ring]`: bound by some registration of this process.
    pub(super) rings: [[Vec<bool>; 2]; 2],
    pub(super) exclusive: [bool; 2],
}

impl Bindings {
    pub(super) fn any(&self, end: usize) -> bool {
        self.rings[end].iter().flatten().any(|x| *x)
    }
}

/// This process's view of one pipe.
pub(super) struct Pipe {
    pub(super) mem: Arc<EmuMem>,
    /// The pipe's slot in the control area.
    pub(super) slot: usize,
    /// Master end's name, for messages.
    pub(super) name: String,
    pub(super) nrings: usize,
    pub(super) nslots: u32,
    /// `[end][TX/RX][ring]` offsets in the region.
    pub(super) ring_off: [[Vec<usize>; 2]; 2],
    pub(super) raw: [[Vec<RawRing>; 2]; 2],
    /// Process-local kring locks, `[end][TX/RX][ring]`.
    klock: [[Vec<Mutex<()>>; 2]; 2],
    pub(super) bound: Mutex<Bindings>,
    /// Per end: its peer (another process) was killed while bound. Set by the watcher.
    pub(super) peer_gone: [AtomicBool; 2],
}

fn corrupt(name: &str, what: &str) -> Error {
    Error::RingState(format!(
        "{name}: the shared pipe state holds {what} out of range (written by another process?)"
    ))
}

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
    let Ok((nr, n, offs, raw)) = views(ctl, s) else {
        // Unusable geometry (a hostile or torn write): leak its rings rather than guess.
        ctl.slot_state(s).store(SLOT_FREE, Ordering::Release);
        return;
    };
    // A slot's buffer is the RX copy while the receiver holds it (it may have been swapped),
    // the TX copy otherwise.
    let mut bufs = Vec::new();
    for e in 0..2 {
        for i in 0..nr {
            let w = |x| ctl.link(s, e, i, x).load(Ordering::Relaxed);
            let (hwcur, hwtail) = (w(W::RxHwcur).min(n - 1), w(W::RxHwtail).min(n - 1));
            let (tx, rx) = (&raw[e][TX][i], &raw[1 - e][RX][i]);
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

    #[inline(always)]
    fn w(&self, end: usize, i: usize, w: W) -> &std::sync::atomic::AtomicU32 {
        self.mem.ctl.link(self.slot, end, i, w)
    }

    /// Signals both cells (registration, ring handle) of ring `i` of `end`, direction `dir`.
    #[inline]
    fn wake(&self, end: usize, dir: usize, i: usize) {
        let ctl = &self.mem.ctl;
        signal(ctl, ctl.cell(self.slot, end, dir, i, 0));
        signal(ctl, ctl.cell(self.slot, end, dir, i, 1));
    }

    pub(super) fn txsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let _k = lock(&self.klock[end][TX][i]);
        if self.peer_gone[end].load(Ordering::Relaxed) {
            return Err(Error::PeerGone(format!(
                "{}: the receiving end's process was killed while it had the pipe open; \
                 what is sent can no longer be delivered",
                self.name
            )));
        }
        let n = self.nslots;
        let tx = &self.raw[end][TX][i];
        let rx = &self.raw[1 - end][RX][i];
        let hwcur = self.w(end, i, W::TxHwcur).load(Ordering::Relaxed);
        let hwtail = self.w(end, i, W::TxHwtail).load(Ordering::Relaxed);
        let rx_hwtail = self.w(end, i, W::RxHwtail).load(Ordering::Relaxed);
        if hwcur >= n || hwtail >= n || rx_hwtail >= n {
            return Err(corrupt(&self.name, "a tx index"));
        }
        let head = tx.load_head();
        let cur = tx.load_cur();
        if !in_cyclic_range(hwcur, head, hwtail, n) || !in_cyclic_range(head, cur, hwtail, n) {
            return Err(Error::RingState(format!(
                "{}: tx ring {i}: head {head} / cur {cur} outside [{hwcur}, {hwtail}]",
                self.name
            )));
        }
        // SAFETY (all blocks): TX slots in [hwcur, head) were released by the user, whose
        // Release store of head we loaded with Acquire; they are the kernel side's until the
        // tail passes them again. The same RX slots lie in [rx_hwtail, pipe limit): not yet
        // shown to the receiving user (its tail is at most rx_hwtail), and outside the
        // [rx_hwcur, rx head) the receiving side works on. The kring lock serialises us with
        // other syncs of this ring side in this process.
        //
        // TX slot k and RX slot k hold the same buffer whenever the slot is on the sending
        // side (swaps are propagated back at rxsync), so whole slots are copied; a swapped-in
        // buffer (NS_BUF_CHANGED) travels with them.
        let mut flags = 0;
        for (start, count) in runs(hwcur, head, n) {
            flags |= unsafe { tx.copy_slots_to(rx, start, count) };
        }
        if flags & NS_BUF_CHANGED != 0 {
            let mut k = hwcur;
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
            complete = (head != hwcur).then_some(head);
        } else {
            let mut k = head;
            while k != hwcur {
                let p = prev(k, n);
                // SAFETY: as above.
                if unsafe { tx.slot(p) }.flags & NS_MOREFRAG == 0 {
                    complete = Some(k);
                    break;
                }
                k = p;
            }
        }
        self.w(end, i, W::TxHwcur).store(head, Ordering::Relaxed);
        let delivered = complete.is_some_and(|nk| nk != rx_hwtail);
        if let Some(nk) = complete.filter(|_| delivered) {
            // Release: the slots copied above are visible to whoever sees the new tail.
            self.w(end, i, W::RxHwtail).store(nk, Ordering::Release);
        }
        let tail = self.w(end, i, W::PipeTail).load(Ordering::Acquire);
        if tail >= n {
            return Err(corrupt(&self.name, "the pipe tail"));
        }
        self.w(end, i, W::TxHwtail).store(tail, Ordering::Relaxed);
        tx.store_tail(tail);
        if delivered {
            self.wake(1 - end, RX, i);
        }
        Ok(())
    }

    pub(super) fn rxsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let _k = lock(&self.klock[end][RX][i]);
        let n = self.nslots;
        let rx = &self.raw[end][RX][i];
        let tx = &self.raw[1 - end][TX][i];
        let s = 1 - end;
        let hwcur = self.w(s, i, W::RxHwcur).load(Ordering::Relaxed);
        let tail_pub = self.w(s, i, W::RxTailPub).load(Ordering::Relaxed);
        if hwcur >= n || tail_pub >= n {
            return Err(corrupt(&self.name, "an rx index"));
        }
        let head = rx.load_head();
        let cur = rx.load_cur();
        if !in_cyclic_range(hwcur, head, tail_pub, n) || !in_cyclic_range(head, cur, tail_pub, n) {
            return Err(Error::RingState(format!(
                "{}: rx ring {i}: head {head} / cur {cur} outside [{hwcur}, {tail_pub}]",
                self.name
            )));
        }
        // SAFETY (all blocks): RX slots in [hwcur, head) were released by the receiving
        // user (Acquire load of head). The same TX slots are not the sending user's: its tail
        // is at most prev(hwcur), so [hwcur, head) lies outside its [head, tail), and outside
        // the [tx_hwcur, tx head) the sending side copies. The kring lock is held.
        let mut flags = 0;
        for (start, count) in runs(hwcur, head, n) {
            flags |= unsafe { rx.flags_or(start, count) };
        }
        let mut k = if flags & NS_BUF_CHANGED != 0 {
            hwcur
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
        let released = head != hwcur;
        if released {
            self.w(s, i, W::RxHwcur).store(head, Ordering::Relaxed);
            // Release: the buffer swaps above are visible to the sender with the room.
            self.w(s, i, W::PipeTail)
                .store(prev(head, n), Ordering::Release);
        }
        // Read before the tail: once the sender is known dead, its last tail is final.
        let gone = self.peer_gone[end].load(Ordering::Acquire);
        let hwtail = self.w(s, i, W::RxHwtail).load(Ordering::Acquire);
        if hwtail >= n {
            return Err(corrupt(&self.name, "the rx tail"));
        }
        self.w(s, i, W::RxTailPub).store(hwtail, Ordering::Relaxed);
        rx.store_tail(hwtail);
        if released {
            self.wake(s, TX, i);
        }
        if gone && head == hwtail {
            return Err(Error::PeerGone(format!(
                "{}: the sending end's process was killed; every packet it sent was received",
                self.name
            )));
        }
        Ok(())
    }

    /// Owns end `end` machine-wide (first local registration of the end), or returns the pid
    /// of the live process that does.
    pub(super) fn claim_end(&self, end: usize) -> Result<(), u32> {
        let ctl = &self.mem.ctl;
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = self.mem.shm() {
            let at = super::shm::end_owner(self.slot, end);
            if !matches!(shm.try_lock(at), Ok(true)) {
                return Err(ctl.end_pid(self.slot, end).load(Ordering::Relaxed));
            }
        }
        ctl.end_pid(self.slot, end)
            .store(std::process::id(), Ordering::Relaxed);
        ctl.end_state(self.slot, end)
            .store(END_BOUND, Ordering::Release);
        Ok(())
    }

    /// The last local registration of `end` is gone: the end is closed, cleanly.
    pub(super) fn release_end(&self, end: usize) {
        let ctl = &self.mem.ctl;
        ctl.end_state(self.slot, end)
            .store(END_CLOSED, Ordering::Release);
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = self.mem.shm() {
            shm.unlock(super::shm::end_owner(self.slot, end));
        }
    }

    /// As the kernel does when rings are (re)bound: user pointers from the kernel side's.
    pub(super) fn reset_user_pointers(&self, end: usize, tx: &[usize], rx: &[usize]) {
        let n = self.nslots;
        for &i in tx {
            let _k = lock(&self.klock[end][TX][i]);
            let r = &self.raw[end][TX][i];
            r.publish_head(
                self.w(end, i, W::TxHwcur)
                    .load(Ordering::Relaxed)
                    .min(n - 1),
            );
            r.store_tail(
                self.w(end, i, W::TxHwtail)
                    .load(Ordering::Relaxed)
                    .min(n - 1),
            );
        }
        for &i in rx {
            let _k = lock(&self.klock[end][RX][i]);
            let r = &self.raw[end][RX][i];
            let s = 1 - end;
            r.publish_head(self.w(s, i, W::RxHwcur).load(Ordering::Relaxed).min(n - 1));
            let tail = self.w(s, i, W::RxHwtail).load(Ordering::Acquire).min(n - 1);
            self.w(s, i, W::RxTailPub).store(tail, Ordering::Relaxed);
            r.store_tail(tail);
        }
    }

    /// The other end of `end` is bound right now (by this process or a live other one).
    pub(super) fn peer_bound(&self, end: usize) -> bool {
        let o = 1 - end;
        if lock(&self.bound).any(o) {
            return true;
        }
        let ctl = &self.mem.ctl;
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = self.mem.shm() {
            return ctl.end_state(self.slot, o).load(Ordering::Acquire) == END_BOUND
                && shm
                    .others_hold(super::shm::end_owner(self.slot, o))
                    .unwrap_or(false);
        }
        let _ = ctl;
        false
    }

    /// Whether the peer of `end` was killed while bound: its state says bound by another
    /// process, and nobody holds its owner lock (the kernel dropped it with the process).
    pub(super) fn peer_crashed(&self, end: usize) -> bool {
        let o = 1 - end;
        let ctl = &self.mem.ctl;
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(shm) = self.mem.shm() {
            return ctl.end_state(self.slot, o).load(Ordering::Acquire) == END_BOUND
                && ctl.end_pid(self.slot, o).load(Ordering::Relaxed) != std::process::id()
                && !shm
                    .others_hold(super::shm::end_owner(self.slot, o))
                    .unwrap_or(true);
        }
        let _ = (ctl, o);
        false
    }

    /// Wakes every waiter of end `end` (after its peer was found gone).
    pub(super) fn wake_end(&self, end: usize) {
        for dir in [TX, RX] {
            for i in 0..self.nrings {
                self.wake(end, dir, i);
            }
        }
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

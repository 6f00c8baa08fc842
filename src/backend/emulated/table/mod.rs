//! The pipe table in the control area: finding a pipe another process may have built,
//! building one (rings, buffers, protocol words), and tearing it down when its last user,
//! in any process, is gone. All of it runs under the memory lock.
//!
//! Crash consistency. A process may be killed at any instruction, and the memory lock goes
//! with it (`flock`), so a table operation can be left half done. The next process to open
//! a pipe finishes it ([`recover`]) before it allocates anything:
//!
//! - A slot's state says what its other words mean: `FREE` (nothing), `BUILDING` (its ring
//!   offset words name the rings taken so far, their slots the buffers), `LIVE`, `DYING`
//!   (what its words still name is being given back).
//! - Build records before it takes: a ring is zeroed and its offset written into the slot
//!   before the allocator hands it out, buffer indices are written into the ring slots before
//!   their bits are set. Freeing takes back only what the allocator has handed out
//!   ([`Ctl::free_area`], [`Ctl::free_bufs`] refuse anything else), so tearing down a
//!   half-built slot gives back exactly what it took.
//! - Teardown marks the slot `DYING` before it frees anything and `FREE` after. Freeing
//!   again what was freed is refused, and nothing is allocated between a crash and the redo,
//!   so a redo gives back exactly the rest.
//! - A `LIVE` slot that no process uses any more (its users were killed) is torn down the
//!   same way.
//!
//! So no crash leaves a ring or buffer named by two live pipes, and none leaks rings or
//! buffers. What a crash does leak: the `netmap_if` of each registration of the killed
//! process (it is not in the table), until the memory object goes with its last user.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ctl::{crash_point, Area, Ctl, SLOT_BUILDING, SLOT_DYING, SLOT_FREE, SLOT_LIVE, W};
use super::memory::{EmuMem, MemGuard};
use super::pipe::{Bindings, Pipe};
use super::{lock, BUF_SIZE, MAX_RINGS, MAX_SLOTS, RX, TX};
use crate::error::Error;
use crate::ring::{distance, init_ring, ring_bytes, RawRing, RingInit};

/// The ring bytes the live pipe views of this process use: (mapping base, slot, start, end).
/// The shared table and allocator may say anything (another process may write them), so a
/// build never initialises, and an attach never views, bytes that a view of another slot in
/// this process uses: this process's threads could otherwise write plainly over a ring
/// another of its threads syncs. Touched at open and close only.
static LOCAL_RINGS: Mutex<Vec<(usize, usize, usize, usize)>> = Mutex::new(Vec::new());

/// Whether bytes `off..end` of the mapping at `base` overlap a ring of a live view of this
/// process that is not of slot `s`.
fn used_here(base: usize, s: usize, off: usize, end: usize) -> bool {
    lock(&LOCAL_RINGS)
        .iter()
        .any(|&(b, slot, o, e)| b == base && slot != s && o < end && off < e)
}

fn in_use_here() -> Error {
    Error::BadLayout(
        "the emulated memory's table names a ring a pipe of this process uses (written by \
         another process?)"
            .into(),
    )
}

/// Rings of a slot, `[end][TX/RX][ring]`: offset and checked view.
pub(super) type Rings = [[Vec<Option<(usize, RawRing)>>; 2]; 2];

/// The ring `[end][dir][i]` of slot `s` of `ns` slots, checked: `None` when the slot names
/// none (offset 0), an error when it names something other than such a ring inside the ring
/// area.
fn ring_at(
    ctl: &Ctl,
    s: usize,
    (e, dir, i): (usize, usize, usize),
    ns: u32,
) -> Result<Option<(usize, RawRing)>, Error> {
    let off = ctl.ring_off(s, e, dir, i).load(Ordering::Relaxed) as usize;
    if off == 0 {
        return Ok(None);
    }
    let size = ring_bytes(ns);
    let end = off.saturating_add(size);
    if off < ctl.g.if_end || off % 128 != 0 || end > ctl.g.ring_end {
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
    Ok(Some((off, r)))
}

/// The geometry of slot `s`, when within the backend's limits.
pub(super) fn geometry(ctl: &Ctl, s: usize) -> Result<(usize, u32), Error> {
    let (nr, ns) = ctl.slot_geometry(s);
    if !(1..=MAX_RINGS as u32).contains(&nr) || !(4..=MAX_SLOTS).contains(&ns) {
        return Err(Error::BadLayout(format!(
            "pipe slot {s}: {nr} rings of {ns} slots"
        )));
    }
    Ok((nr as usize, ns))
}

/// The rings slot `s` names, each checked (see [`ring_at`]); one that is unusable is left
/// out, with the error, when `lenient` (teardown), fails the call otherwise.
pub(super) fn rings(ctl: &Ctl, s: usize, lenient: bool) -> Result<(usize, u32, Rings), Error> {
    let (nr, ns) = geometry(ctl, s)?;
    let mut out: Rings = Default::default();
    for (e, dirs) in out.iter_mut().enumerate() {
        for (dir, list) in dirs.iter_mut().enumerate() {
            for i in 0..nr {
                let r = match ring_at(ctl, s, (e, dir, i), ns) {
                    Ok(None) if !lenient => {
                        return Err(Error::BadLayout(format!(
                            "pipe slot {s}: a ring is missing"
                        )))
                    }
                    Err(err) if !lenient => return Err(err),
                    Ok(r) => r,
                    Err(err) => {
                        tracing::warn!(slot = s, %err, "pipe teardown: ring left allocated");
                        None
                    }
                };
                list.push(r);
            }
        }
    }
    Ok((nr, ns, out))
}

/// The buffer each slot of the links of slot `s` owns. A slot's buffer is the RX copy while
/// the receiver holds it (it may have been swapped), the TX copy otherwise. Links with a
/// ring missing own none.
pub(super) fn owned_bufs(ctl: &Ctl, s: usize, n: u32, rings: &Rings) -> Vec<u32> {
    let mut bufs = Vec::new();
    for e in 0..2 {
        for (i, (tx, rx)) in rings[e][TX].iter().zip(&rings[1 - e][RX]).enumerate() {
            let (Some((_, tx)), Some((_, rx))) = (tx, rx) else {
                continue;
            };
            let w = |x| ctl.link(s, e, i, x).load(Ordering::Relaxed);
            let (hwcur, hwtail) = (w(W::RxHwcur).min(n - 1), w(W::RxHwtail).min(n - 1));
            for k in 0..n {
                let held = distance(hwcur, k, n) < distance(hwcur, hwtail, n);
                // SAFETY: the slot is not live (or its users are all idle, for a test's
                // audit): no registration of any process writes these ring slots.
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
    bufs
}

fn no_room(what: &str) -> Error {
    Error::BindFail(format!(
        "emulated netmap memory has no room for {what}: use fewer or smaller rings, close \
         unused pipes, or raise NETMAP_RS_EMU_MEM_MB (default 256)"
    ))
}

fn moved() -> Error {
    Error::BadLayout(
        "the emulated memory's allocator changed under its lock (written by another process?)"
            .into(),
    )
}

/// Sets every ring offset word of slot `s` to 0 (no ring).
fn clear_rings(ctl: &Ctl, s: usize) {
    for e in 0..2 {
        for dir in [TX, RX] {
            for i in 0..MAX_RINGS as usize {
                ctl.ring_off(s, e, dir, i).store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Builds pipe `name` in free slot `s`: rings, buffers, link words. Under the memory lock.
/// On failure everything taken is given back and the slot is free again.
fn create(g: &MemGuard<'_>, s: usize, name: &str, nrings: usize, nslots: u32) -> Result<(), Error> {
    let ctl = g.ctl();
    // While the slot is free nobody reads these words: clear what a teardown of this build
    // could otherwise take for ours.
    clear_rings(ctl, s);
    for e in 0..2 {
        ctl.end_state(s, e).store(0, Ordering::Relaxed);
        ctl.end_pid(s, e).store(0, Ordering::Relaxed);
    }
    ctl.set_slot_name(s, name.as_bytes());
    ctl.set_slot_geometry(s, nrings as u32, nslots);
    ctl.slot_state(s).store(SLOT_BUILDING, Ordering::Release);
    crash_point("build.building");
    if let Err(e) = build(g, s, nrings, nslots) {
        teardown(g, s, name, true);
        return Err(e);
    }
    crash_point("build.built");
    ctl.slot_state(s).store(SLOT_LIVE, Ordering::Release);
    Ok(())
}

/// The rings and links of a slot being built: each resource is recorded in the slot (or in
/// a ring the slot records) before the allocator hands it out.
fn build(g: &MemGuard<'_>, s: usize, nrings: usize, nslots: u32) -> Result<(), Error> {
    let ctl = g.ctl();
    let buf_base = ctl.g.ring_end;
    let size = ring_bytes(nslots);
    // The offsets taken, kept here: the slot's words may be rewritten meanwhile.
    let mut offs: [[Vec<usize>; 2]; 2] = Default::default();
    for (e, dirs) in offs.iter_mut().enumerate() {
        for (dir, taken_here) in dirs.iter_mut().enumerate() {
            for i in 0..nrings {
                let off = ctl
                    .pick_area(Area::Ring, size, 128)
                    .ok_or_else(|| no_room("another ring"))?;
                let word = u32::try_from(off).map_err(|_| no_room("a ring below 4 GiB"))?;
                if used_here(ctl.region.base().as_ptr() as usize, s, off, off + size) {
                    return Err(in_use_here());
                }
                crash_point("build.ring_picked");
                let init = RingInit {
                    num_slots: nslots,
                    buf_size: BUF_SIZE,
                    buf_ofs: buf_base as i64 - off as i64,
                    ringid: i as u16,
                    dir: dir as u16,
                    tail: if dir == TX { nslots - 1 } else { 0 },
                };
                // SAFETY: `pick_area` returned bytes inside the ring area that the allocator
                // has not handed out (we hold its lock): no pipe of any process names them,
                // so no view uses them.
                unsafe { init_ring(&ctl.region, off, init) };
                ctl.ring_off(s, e, dir, i).store(word, Ordering::Relaxed);
                crash_point("build.ring_recorded");
                let taken = g.alloc_ring(nslots);
                if taken.as_ref().ok() != Some(&off) {
                    // Not ours after all: the teardown must not give it back.
                    ctl.ring_off(s, e, dir, i).store(0, Ordering::Relaxed);
                    if let Ok(t) = taken {
                        g.free_ring(t, nslots);
                    }
                    return Err(taken.err().unwrap_or_else(moved));
                }
                taken_here.push(off);
                crash_point("build.ring_taken");
            }
        }
    }
    for e in 0..2 {
        let pairs = offs[e][TX].iter().zip(&offs[1 - e][RX]);
        for (i, (&tx_off, &rx_off)) in pairs.enumerate() {
            let txr = RawRing::new(&ctl.region, tx_off, buf_base)?;
            let rxr = RawRing::new(&ctl.region, rx_off, buf_base)?;
            // Before any buffer: a teardown then reads the link as holding nothing.
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
            let bufs = ctl
                .pick_bufs(nslots as usize)
                .ok_or_else(|| no_room(&format!("{nslots} more buffers")))?;
            for (k, b) in bufs.iter().enumerate() {
                // SAFETY: rings of this slot, zeroed above; the slot is not live, so no
                // registration of any process uses them.
                unsafe {
                    txr.set_buf_idx(k as u32, *b);
                    rxr.set_buf_idx(k as u32, *b);
                }
            }
            crash_point("build.bufs_recorded");
            let taken = g.alloc_bufs(nslots as usize);
            if taken.as_ref().ok() != Some(&bufs) {
                for k in 0..nslots {
                    // SAFETY: as above. Not ours after all: the teardown must not give
                    // them back.
                    unsafe {
                        txr.set_buf_idx(k, 0);
                        rxr.set_buf_idx(k, 0);
                    }
                }
                return Err(match taken {
                    Ok(t) => {
                        g.free_bufs(t);
                        moved()
                    }
                    Err(e) => e,
                });
            }
            crash_point("build.bufs_taken");
            for dir in [TX, RX] {
                for kind in 0..2 {
                    super::wake::Cell::new(ctl, ctl.cell(s, e, dir, i, kind)).install(0);
                }
            }
        }
    }
    Ok(())
}

/// Gives back every buffer and ring slot `s` names and frees the slot. Under the memory
/// lock, when no process uses the pipe any more. `redo`: the slot was left half built or
/// half torn down, so some of what it names was never taken or is already back.
fn teardown(g: &MemGuard<'_>, s: usize, name: &str, redo: bool) {
    let ctl = g.ctl();
    ctl.slot_state(s).store(SLOT_DYING, Ordering::Release);
    crash_point("teardown.dying");
    match rings(ctl, s, true) {
        Ok((_, ns, mut rings)) => {
            // Never what a view of another slot in this process uses (a hostile table).
            let base = ctl.region.base().as_ptr() as usize;
            for r in rings.iter_mut().flatten().flatten() {
                if r.as_ref()
                    .is_some_and(|r| used_here(base, s, r.0, r.0 + ring_bytes(ns)))
                {
                    tracing::warn!(pipe = %name, "pipe teardown: a ring in use here left alone");
                    *r = None;
                }
            }
            // A slot may hold anything a hostile write left there: only buffers the memory
            // has handed out are taken back, each once.
            let refused = g.free_bufs(owned_bufs(ctl, s, ns, &rings));
            if refused > 0 && !redo {
                tracing::warn!(
                    pipe = %name,
                    refused,
                    "pipe teardown: slots held buffer indices that were out of range or \
                     repeated; they were not returned to the pool"
                );
            }
            crash_point("teardown.bufs_freed");
            // From the highest down: the newest pipe's rings go back to the cursor.
            let mut offs: Vec<usize> = rings
                .iter()
                .flatten()
                .flatten()
                .flatten()
                .map(|r| r.0)
                .collect();
            offs.sort_unstable_by(|a, b| b.cmp(a));
            for off in offs {
                g.free_ring(off, ns);
                crash_point("teardown.ring_freed");
            }
        }
        // Unusable geometry (a hostile or torn write): leak its rings rather than guess.
        Err(err) => tracing::warn!(pipe = %name, %err, "pipe teardown: rings left allocated"),
    }
    clear_rings(ctl, s);
    crash_point("teardown.cleared");
    ctl.slot_state(s).store(SLOT_FREE, Ordering::Release);
}

/// Whether no view of any process uses slot `s`.
fn unused(g: &mut MemGuard<'_>, s: usize) -> bool {
    if *g.local_users(s) > 0 {
        return false;
    }
    #[cfg(all(target_os = "linux", not(miri)))]
    if let Some(shm) = g.shm() {
        return matches!(shm.others_hold(super::shm::pipe_users(s)), Ok(false));
    }
    true
}

/// Finishes what killed processes left in the table: a slot half built or half torn down is
/// torn down (again), and so is a live pipe nobody uses any more. Under the memory lock,
/// before anything is allocated.
fn recover(g: &mut MemGuard<'_>) {
    let ctl = g.ctl().clone();
    for s in 0..ctl.g.max_pipes {
        let state = ctl.slot_state(s).load(Ordering::Acquire);
        if !matches!(state, SLOT_BUILDING | SLOT_DYING | SLOT_LIVE) || !unused(g, s) {
            continue;
        }
        let redo = state != SLOT_LIVE;
        if redo {
            tracing::warn!(
                slot = s,
                "finishing a pipe build or teardown a killed process left"
            );
        } else {
            tracing::warn!(slot = s, "tearing down a pipe whose users are all gone");
        }
        teardown(g, s, &format!("slot {s}"), redo);
    }
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
        recover(&mut g);
        let ctl = &mem.ctl;
        let found = (0..ctl.g.max_pipes).find(|&s| ctl.slot_named(s, name.as_bytes()));
        let slot = match found {
            Some(s) if Self::join_users(&mut g, s)? => s,
            Some(s) => {
                tracing::warn!(pipe = %name, "rebuilding a pipe whose users are gone");
                teardown(&g, s, &name, false);
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
        crash_point("table.attached");
        let (nrings, nslots, rings) = match rings(ctl, slot, false) {
            Ok(v) => v,
            Err(e) => {
                Self::leave_users(&mut g, slot);
                return Err(e);
            }
        };
        let base = mem.region.base().as_ptr() as usize;
        let size = ring_bytes(nslots);
        let overlap = rings.iter().flatten().flatten().flatten();
        if overlap
            .clone()
            .any(|r| used_here(base, slot, r.0, r.0 + size))
        {
            Self::leave_users(&mut g, slot);
            return Err(in_use_here());
        }
        lock(&LOCAL_RINGS).extend(overlap.map(|r| (base, slot, r.0, r.0 + size)));
        let mut ring_off: [[Vec<usize>; 2]; 2] = Default::default();
        let mut raw: [[Vec<RawRing>; 2]; 2] = Default::default();
        for (e, dirs) in rings.into_iter().enumerate() {
            for (dir, list) in dirs.into_iter().enumerate() {
                // Not lenient: every ring is there.
                for (off, r) in list.into_iter().flatten() {
                    ring_off[e][dir].push(off);
                    raw[e][dir].push(r);
                }
            }
        }
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
        let base = self.mem.region.base().as_ptr() as usize;
        let mut local = lock(&LOCAL_RINGS);
        for &off in self.ring_off.iter().flatten().flatten() {
            let mine =
                |r: &(usize, usize, usize, usize)| r.0 == base && r.1 == self.slot && r.2 == off;
            if let Some(k) = local.iter().position(mine) {
                local.swap_remove(k);
            }
        }
        drop(local);
        let mut g = self.mem.locked();
        if Self::leave_users(&mut g, self.slot) {
            crash_point("table.last_user_left");
            teardown(&g, self.slot, &self.name, false);
        }
    }
}

#[cfg(test)]
mod tests;

//! Test-only crash points: the process kills itself (`SIGKILL`, as `kill -9` or the OOM
//! killer would: no unwinding, no destructors; the kernel drops its locks) at a named step of
//! the protocol it shares with other processes, so a test can check what every survivor finds
//! after a crash at that step (`crash_tests`, with [`audit`]: what a consistent memory is).
//!
//! A new step: name it in [`POINTS`] (or take a name from [`RESERVED`]), call
//! `super::ctl::crash_point("<name>")` there (any module of the emulated backend), and give it
//! a case in `crash_tests` (the test fails while a point has none).
//!
//! Armed by `NETMAP_RS_CRASH_AT=<point>[:<n>]` (the `n`-th time the point is reached, 1 by
//! default), read once. Only the crate's own test builds have this module: elsewhere
//! [`super::crash_point`] is an empty inline function, so the per-packet paths that name
//! points pay nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::super::memory::EmuMem;
use super::super::table::{owned_bufs, rings};
use super::{Area, RING_FREE, SLOT_FREE, SLOT_LIVE};
use crate::ring::ring_bytes;

/// The environment variable that arms a point.
pub(super) const ENV: &str = "NETMAP_RS_CRASH_AT";

/// Every point, in the order a pipe's life reaches them.
pub(super) const POINTS: &[&str] = &[
    // Building a pipe (table.rs): slot claimed, each ring chosen / recorded / taken, each
    // link's buffers recorded / taken, built, attached (the users lock held).
    "build.building",
    "build.ring_picked",
    "build.ring_recorded",
    "build.ring_taken",
    "build.bufs_recorded",
    "build.bufs_taken",
    "build.built",
    "table.attached",
    // The allocator (alloc.rs): an area taken, a free entry half written, one buffer bit
    // set, one cleared.
    "ctl.commit",
    "ctl.free_area.entry",
    "ctl.mark_bufs",
    "ctl.free_bufs",
    // End ownership and the link words (pipe.rs).
    "pipe.end.claimed",
    "pipe.tx.copied",
    "pipe.tx.hwcur",
    "pipe.tx.delivered",
    "pipe.rx.swapped",
    "pipe.rx.hwcur",
    "pipe.rx.released",
    "pipe.end.closed",
    // Tearing a pipe down (table.rs): the last user gone, the slot dying, buffers given back,
    // each ring given back, the slot's words cleared.
    "table.last_user_left",
    "teardown.dying",
    "teardown.bufs_freed",
    "teardown.ring_freed",
    "teardown.cleared",
];

/// Names kept for steps in files other people own, to be placed there with
/// `super::ctl::crash_point(..)` and given a case in `crash_tests`: the shared memory made
/// and sealed (shm.rs), its rendezvous name bound, a joiner given the memory, a joiner
/// serving the name (rendezvous.rs).
pub(super) const RESERVED: &[&str] = &[
    "shm.created",
    "rendezvous.bound",
    "rendezvous.handed_over",
    "rendezvous.joined",
];

fn armed() -> Option<&'static (String, u64)> {
    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var(ENV).ok()?;
            match v.split_once(':') {
                Some((at, n)) => Some((at.to_string(), n.parse().ok()?)),
                None => Some((v, 1)),
            }
        })
        .as_ref()
}

/// Kills the process here if point `at` is armed and reached for the armed time.
pub(super) fn point(at: &'static str) {
    debug_assert!(
        POINTS.contains(&at) || RESERVED.contains(&at),
        "unknown crash point {at}"
    );
    let Some((name, nth)) = armed() else {
        return;
    };
    static HITS: AtomicU64 = AtomicU64::new(0);
    if name == at && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
        // SAFETY: getpid and kill have no memory preconditions; SIGKILL cannot be caught.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort();
    }
}

/// The memory of parent name `parent` in this process, if open.
pub(in super::super) fn memory(parent: &str) -> Option<Arc<EmuMem>> {
    let reg = super::super::lock(super::super::registry());
    reg.mems.get(parent).and_then(Weak::upgrade)
}

/// What [`audit`] counted.
#[derive(Debug, PartialEq, Eq)]
pub(in super::super) struct Audit {
    /// Live pipes.
    pub(in super::super) live: usize,
    /// Buffers they own.
    pub(in super::super) bufs: usize,
}

/// Checks the table and allocator of `mem` as every process must find them between
/// operations, whatever process was killed where: no slot left half built or half torn
/// down, every live slot well formed, no ring byte or buffer owned by two live slots (nor
/// twice by one), every owned buffer marked in use, and nothing else marked or allocated
/// (no leak) in the buffer pool and the ring area. Takes the memory lock; every pipe must
/// be idle (no sync running, no zero-copy swap pending).
pub(in super::super) fn audit(mem: &EmuMem) -> Result<Audit, String> {
    let g = mem.locked();
    let ctl = g.ctl();
    if !ctl.valid() {
        return Err("the header (magic, length) was overwritten".into());
    }
    let (mut ranges, mut owned, mut live) = (Vec::new(), Vec::new(), 0);
    for s in 0..ctl.g.max_pipes {
        match ctl.slot_state(s).load(Ordering::Acquire) {
            SLOT_FREE => continue,
            SLOT_LIVE => live += 1,
            other => return Err(format!("slot {s} left in state {other}")),
        }
        let (_, ns, r) = rings(ctl, s, false).map_err(|e| format!("live slot {s}: {e}"))?;
        let size = ring_bytes(ns).next_multiple_of(128);
        for (off, _) in r.iter().flatten().flatten().flatten() {
            ranges.push((*off, *off + size, s));
        }
        owned.extend(owned_bufs(ctl, s, ns, &r).into_iter().map(|b| (b, s)));
    }
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format!(
            "slots {} and {} share ring bytes: {w:?}",
            w[0].2, w[1].2
        ));
    }
    owned.sort_unstable();
    if let Some(w) = owned.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "buffer {} owned by slots {} and {}",
            w[0].0, w[0].1, w[1].1
        ));
    }
    if let Some((b, s)) = owned.iter().find(|(b, _)| !ctl.buf_in_use(*b)) {
        return Err(format!("slot {s} owns buffer {b}, free in the bitmap"));
    }
    let marked = (2..ctl.g.nbufs).filter(|b| ctl.buf_in_use(*b)).count();
    if marked != owned.len() {
        return Err(format!(
            "{marked} buffers marked in use, {} owned by live pipes",
            owned.len()
        ));
    }
    let cursor = ctl
        .cursor(Area::Ring)
        .ok_or("ring cursor outside its area")?;
    let mut free = Vec::new();
    for k in 0..RING_FREE {
        if let Some((off, sz)) = ctl.free_entry(Area::Ring, k) {
            let (off, sz) = (off as usize, sz as usize);
            if off < ctl.g.if_end || off + sz > cursor {
                return Err(format!("free ring entry {off}+{sz} outside {cursor}"));
            }
            free.push((off, off + sz, usize::MAX));
        }
    }
    let in_use: usize = ranges.iter().map(|r| r.1 - r.0).sum();
    let freed: usize = free.iter().map(|r| r.1 - r.0).sum();
    ranges.extend(free);
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format!("a free ring entry overlaps a ring: {w:?}"));
    }
    let taken = cursor - ctl.g.if_end - freed;
    if taken != in_use {
        return Err(format!(
            "{taken} ring bytes allocated, {in_use} used by live pipes"
        ));
    }
    Ok(Audit {
        live,
        bufs: owned.len(),
    })
}

#[cfg(all(target_os = "linux", not(miri)))]
mod tests;

//! Test-only crash points: the process kills itself (`SIGKILL`, as `kill -9` or the OOM
//! killer would: no unwinding, no destructors; the kernel drops its locks) at a named step of
//! the protocol it shares with other processes, so a test can check what every survivor finds
//! after a crash at that step (`crash_tests`).
//!
//! Armed by `NETMAP_RS_CRASH_AT=<point>[:<n>]` (the `n`-th time the point is reached, 1 by
//! default), read once. Only the crate's own test builds have this module: elsewhere
//! [`super::crash_point`] is an empty inline function, so the per-packet paths that name
//! points pay nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::super::memory::EmuMem;

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
/// `super::crash_point(..)` and given a case in `crash_tests`: the shared object's creation,
/// naming, stale-object replacement and removal by its last user (shm.rs).
pub(super) const RESERVED: &[&str] = &[
    "shm.created",
    "shm.published",
    "shm.stale_unlinked",
    "shm.last_unlinked",
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

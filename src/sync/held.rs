//! Which buffers this process's ring handles hold: the defence against two live views of
//! one buffer.
//!
//! A slot's buffer index lives in shared memory. A peer process that maps the same memory (an
//! emulated pipe's other process, another registration of a netmap allocator) may write any
//! value there at any time, for example the index of a buffer this process has lent out as a
//! `Frame` (`&[u8]`) through another ring. Lending it again through a `BatchReservation`
//! (`&mut [u8]`) would give safe code two views of one buffer, one of them mutable: undefined
//! behaviour, whatever the bytes are.
//!
//! So a handle never lends a buffer by the index the slot says *now*. When slots enter the
//! user's part of a ring (the tail moves), the handle reads each slot's index once and
//! *claims* the buffer in the [`Held`] table of its memory: the claim succeeds when no other
//! handle of this process holds that buffer, and the index is kept in the handle's private
//! *shadow* of the ring; otherwise the slot is marked as holding no buffer and is reported as
//! corrupt when reached. Views are made from the shadow only, so what a peer writes into a
//! slot afterwards changes nothing here. When slots leave the user's part (`head` is
//! published at a sync, or the handle is dropped), their buffers are released; every view of
//! them has ended by then (a sync and a drop need `&mut` of the handle the views borrow).
//!
//! A handle holds the slots `[published head, tail)`: every buffer this process may still
//! have a view of, or may lend. The legitimate movements keep the invariant "one buffer, at
//! most one holder": the kernel (or the emulated kernel) hands a buffer to a ring only after
//! the ring that had it published it, and the one user-side move, a zero-copy swap between
//! two rings, updates both holders at once.
//!
//! Cost: the table is touched once per slot per lap, in the sync that hands the slot over
//! (under one mutex per memory, taken once per sync): no atomic operation per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::backend::MemIdentity;
use crate::ring::{next, RawRing};

/// A shadow entry for a slot that holds no buffer (its index was out of range or held by
/// another handle): reaching it is reported as a corrupt slot.
pub(crate) const NO_BUF: u32 = u32::MAX;

/// The buffers of one memory held by handles of this process.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Buffer index -> token of the handle holding it (0: none). Grows on demand, up to the
    /// largest index a ring of the memory accepts.
    table: Mutex<Vec<u32>>,
}

/// The table, locked.
pub(crate) type Table<'a> = MutexGuard<'a, Vec<u32>>;

impl Held {
    /// The table of memory `mem`, shared by every port of this process on it.
    pub(crate) fn of(mem: MemIdentity) -> Arc<Held> {
        static ALL: OnceLock<Mutex<HashMap<MemIdentity, Weak<Held>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(h) = all.get(&mem).and_then(Weak::upgrade) {
            return h;
        }
        let h = Arc::new(Held::default());
        all.insert(mem, Arc::downgrade(&h));
        h
    }

    /// Locks the table (once per sync).
    pub(crate) fn lock(&self) -> Table<'_> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fresh holder token (never 0, never reused while the process lives long enough to make
/// four billion ring handles).
pub(crate) fn new_token() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let t = NEXT.fetch_add(1, Ordering::Relaxed);
        if t != 0 {
            return t;
        }
    }
}

/// Claims the buffers of slots `[from, to)` of `raw` for `token`, recording each in
/// `shadow` (`NO_BUF` where the index is outside the ring's buffers or held by another
/// handle).
///
/// # Safety
/// The caller's handle owns these slots (they just entered the user's part of the ring, after
/// an Acquire load of `tail`), so nobody else of this process reads or writes them.
pub(crate) unsafe fn claim(
    table: &mut Table<'_>,
    token: u32,
    raw: &RawRing,
    shadow: &mut [u32],
    from: u32,
    to: u32,
) {
    let n = raw.num_slots();
    let mut k = from;
    while k != to {
        // SAFETY: per the caller's contract, slot k is the user's.
        let idx = unsafe { raw.slot_buf_idx(k) };
        let e = if raw.buf_ptr(idx).is_some() {
            let i = idx as usize;
            if i >= table.len() {
                table.resize(i + 1, 0);
            }
            &mut table[i]
        } else {
            shadow[k as usize] = NO_BUF;
            k = next(k, n);
            continue;
        };
        if *e == 0 || *e == token {
            *e = token;
            shadow[k as usize] = idx;
        } else {
            shadow[k as usize] = NO_BUF;
            tracing::warn!(
                slot = k,
                buf_idx = idx,
                "slot names a buffer another ring of this process holds: refused"
            );
        }
        k = next(k, n);
    }
}

/// Releases the buffers that slots `[from, to)` hold for `token`.
pub(crate) fn release(table: &mut Table<'_>, token: u32, shadow: &[u32], from: u32, to: u32) {
    let n = shadow.len() as u32;
    let mut k = from;
    while k != to {
        let idx = shadow[k as usize];
        if let Some(e) = table.get_mut(idx as usize) {
            if *e == token {
                *e = 0;
            }
        }
        k = next(k, n);
    }
}

/// Moves buffer `idx` to `token` (a zero-copy swap between two handles of the memory, both
/// holding their slot). Returns whether the buffer was the caller's to move.
pub(crate) fn transfer(table: &mut Table<'_>, idx: u32, from: u32, to: u32) -> bool {
    match table.get_mut(idx as usize) {
        Some(e) if *e == from => {
            *e = to;
            true
        }
        _ => false,
    }
}

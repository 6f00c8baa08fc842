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
//! So a handle never lends a buffer by the index the slot says *at the time of the view*.
//! When slots enter the user's part of its ring (the tail moves over them), the handle reads
//! each slot's index once, records it in its *shadow* of the ring and makes sure no other
//! handle of this process holds that buffer; views are made from the shadow only. A slot
//! whose buffer another handle holds (or whose index is out of range) is recorded as
//! holding [`NO_BUF`] and reported as corrupt when reached. A handle *holds* the buffers of
//! its slots in `[published head, tail)`: every buffer this process may still have a view
//! of, or may lend; slots leave at a sync (every view has ended: a sync needs `&mut` of the
//! handle the views borrow) or when the handle is dropped.
//!
//! The memory's [`Held`] table records, per buffer, which handle (and slot) claimed it last.
//! It is sticky: releasing slots only moves the handle's published `lo` mark, so a ring
//! whose buffers stay in their slots lap after lap (NIC rings, a pipe end whose peer is in
//! another process) pays per packet a few loads and compares, and no write, lock or atomic
//! read-modify-write. Taking a buffer another handle claimed last happens under the table's
//! mutex (once per sync), and checks that the other handle does not hold it now.
//!
//! Two handles on two threads, one taking a buffer (slow path) while the other re-confirms
//! its own claim (fast path), are ordered as in Dekker's algorithm: the fast path publishes
//! its new `hi` and then (after a `SeqCst` fence) reads the table; the slow path writes the
//! table and then (after a fence) reads the other's `lo`/`hi` and shadow. At least one of
//! them sees the other, so they never both hold the buffer (both may refuse it: that needs a
//! peer that broke the protocol).

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::backend::MemIdentity;
use crate::ring::{distance, next, RawRing};

/// A shadow entry for a slot that holds no buffer (its index was out of range or held by
/// another handle): reaching it is reported as a corrupt slot.
pub(crate) const NO_BUF: u32 = u32::MAX;

/// The buffers of one memory claimed by handles of this process.
#[derive(Debug)]
pub(crate) struct Held {
    /// Buffer index -> `token << 32 | slot` of the handle that claimed it last (0: none).
    table: Box<[AtomicU64]>,
    /// The live handles' mirrors by token; its lock serialises the slow paths.
    holders: Mutex<HashMap<u32, Weak<Mirror>>>,
}

/// What other handles read of a handle: the slots it holds and the buffers in them.
#[derive(Debug)]
pub(crate) struct Mirror {
    token: u32,
    /// The held slots are `[lo, hi)`: `lo` is the handle's published head, `hi` its tail.
    lo: AtomicU32,
    hi: AtomicU32,
    /// The buffer index each held slot was found with (`NO_BUF`: none).
    shadow: Box<[AtomicU32]>,
}

impl Held {
    /// The table of memory `mem` (buffers `0..nbufs`), shared by every port of this process
    /// on it. (Every port of one memory has the same buffers; an index past the table of a
    /// memory opened first is refused like an out-of-range one.)
    pub(crate) fn of(mem: MemIdentity, nbufs: u32) -> Arc<Held> {
        static ALL: OnceLock<Mutex<HashMap<MemIdentity, Weak<Held>>>> = OnceLock::new();
        let mut all = lock(ALL.get_or_init(Default::default));
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(h) = all.get(&mem).and_then(Weak::upgrade) {
            return h;
        }
        let h = Arc::new(Held {
            table: (0..nbufs).map(|_| AtomicU64::new(0)).collect(),
            holders: Mutex::new(HashMap::new()),
        });
        all.insert(mem, Arc::downgrade(&h));
        h
    }

    /// A new handle's mirror, for a ring of `n` slots holding nothing yet.
    pub(crate) fn mirror(&self, n: u32, at: u32) -> Arc<Mirror> {
        let m = Arc::new(Mirror {
            token: new_token(),
            lo: AtomicU32::new(at),
            hi: AtomicU32::new(at),
            shadow: (0..n).map(|_| AtomicU32::new(NO_BUF)).collect(),
        });
        lock(&self.holders).insert(m.token, Arc::downgrade(&m));
        m
    }

    /// Forgets a dropped handle (its claims in the table are then free for the taking).
    pub(crate) fn forget(&self, m: &Mirror) {
        m.lo.store(m.hi.load(Ordering::Relaxed), Ordering::Release);
        lock(&self.holders).remove(&m.token);
    }

    /// Claims the buffers of slots `[from, to)` of `raw` (they just entered the user's part
    /// of the ring of `m`, or are claimed again) and sets `m`'s `hi` to `hi` (the handle's
    /// tail, at or past `to`).
    ///
    /// # Safety
    /// The caller's handle owns these slots (after an Acquire load of the tail), so nobody
    /// else of this process reads or writes them.
    #[inline]
    pub(crate) unsafe fn claim(&self, m: &Mirror, raw: &RawRing, from: u32, to: u32, hi: u32) {
        let n = raw.num_slots();
        let mut changed = false;
        // Pass 1: a slot whose index differs from its shadow holds nothing until resolved
        // below, so no other handle sees it holding its old buffer.
        let mut k = from;
        while k != to {
            // SAFETY: per the caller's contract, slot k is the user's.
            let idx = unsafe { raw.slot_buf_idx(k) };
            let s = &m.shadow[k as usize];
            if idx != s.load(Ordering::Relaxed) {
                s.store(NO_BUF, Ordering::Relaxed);
                changed = true;
            }
            k = next(k, n);
        }
        m.hi.store(hi, Ordering::Release);
        fence(Ordering::SeqCst);
        // Pass 2: every unchanged slot must still be this handle's claim in the table.
        let key = key(m.token, 0);
        if !changed {
            let mut k = from;
            while k != to {
                let idx = m.shadow[k as usize].load(Ordering::Relaxed);
                let mine = self
                    .table
                    .get(idx as usize)
                    .is_some_and(|e| e.load(Ordering::Relaxed) == key | k as u64);
                if !mine {
                    changed = true;
                    break;
                }
                k = next(k, n);
            }
        }
        if changed {
            // SAFETY: as for this function.
            unsafe { self.take(m, raw, from, to) };
        }
    }

    /// The slow path of [`claim`](Self::claim): under the lock, every slot of `[from, to)`
    /// gets the buffer it names now if no other live handle holds it.
    ///
    /// # Safety
    /// As for [`claim`](Self::claim).
    #[cold]
    #[inline(never)]
    unsafe fn take(&self, m: &Mirror, raw: &RawRing, from: u32, to: u32) {
        let n = raw.num_slots();
        let holders = lock(&self.holders);
        let key = key(m.token, 0);
        // Write the claims first; check the previous holders after one fence (Dekker).
        let mut contested = Vec::new();
        let mut k = from;
        while k != to {
            // SAFETY: per the caller's contract, slot k is the user's.
            let idx = unsafe { raw.slot_buf_idx(k) };
            let s = &m.shadow[k as usize];
            match self.table.get(idx as usize) {
                Some(e) if raw.buf_ptr(idx).is_some() => {
                    let prev = e.load(Ordering::Relaxed);
                    let other = (prev >> 32) as u32;
                    if other != 0 && other != m.token {
                        contested.push((k, idx, prev));
                    }
                    e.store(key | k as u64, Ordering::Relaxed);
                    s.store(idx, Ordering::Relaxed);
                }
                _ => s.store(NO_BUF, Ordering::Relaxed),
            }
            k = next(k, n);
        }
        if contested.is_empty() {
            return;
        }
        fence(Ordering::SeqCst);
        let mut last: Option<(u32, Option<Arc<Mirror>>)> = None;
        for (k, idx, prev) in contested {
            let (other, slot) = ((prev >> 32) as u32, prev as u32);
            if last.as_ref().is_none_or(|(t, _)| *t != other) {
                last = Some((other, holders.get(&other).and_then(Weak::upgrade)));
            }
            let Some((_, Some(o))) = &last else { continue };
            if o.holds(slot, idx) {
                // The other handle keeps it, and stays its claimant in the table (so a later
                // claim of ours is checked against it again).
                self.table[idx as usize].store(prev, Ordering::Relaxed);
                m.shadow[k as usize].store(NO_BUF, Ordering::Relaxed);
                tracing::warn!(
                    slot = k,
                    buf_idx = idx,
                    "slot names a buffer another ring of this process holds: refused"
                );
            }
        }
    }

    /// Records zero-copy swaps between two handles of this memory, both borrowed by the
    /// caller and holding the slots: for each `(rk, r, tk, t)`, buffer `r` moved from slot
    /// `rk` of `rx` to slot `tk` of `tx`, and `t` the other way. Under the lock, so no slow
    /// path sees half a swap.
    pub(crate) fn swapped(&self, rx: &Mirror, tx: &Mirror, swaps: &[(u32, u32, u32, u32)]) {
        let _serialised = lock(&self.holders);
        for &(rk, r, tk, t) in swaps {
            for (idx, to, k) in [(r, tx, tk), (t, rx, rk)] {
                if let Some(e) = self.table.get(idx as usize) {
                    e.store(key(to.token, k), Ordering::Relaxed);
                }
                to.shadow[k as usize].store(idx, Ordering::Relaxed);
            }
        }
    }
}

impl Mirror {
    /// Marks the slots before `lo` as given back (their views have ended).
    #[inline]
    pub(crate) fn release_to(&self, lo: u32) {
        self.lo.store(lo, Ordering::Release);
    }

    /// The buffer slot `k` holds (`NO_BUF`: none).
    #[inline(always)]
    pub(crate) fn buf_of(&self, k: u32) -> u32 {
        self.shadow[k as usize].load(Ordering::Relaxed)
    }

    /// Whether slot `k` is held and holds buffer `idx`.
    fn holds(&self, k: u32, idx: u32) -> bool {
        let n = self.shadow.len() as u32;
        let (lo, hi) = (
            self.lo.load(Ordering::Acquire),
            self.hi.load(Ordering::Acquire),
        );
        k < n
            && lo < n
            && hi < n
            && distance(lo, k, n) < distance(lo, hi, n)
            && self.shadow[k as usize].load(Ordering::Relaxed) == idx
    }
}

fn key(token: u32, k: u32) -> u64 {
    (u64::from(token) << 32) | u64::from(k)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh holder token (never 0; not reused before four billion handles).
fn new_token() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    loop {
        let t = NEXT.fetch_add(1, Ordering::Relaxed);
        if t != 0 {
            return t;
        }
    }
}

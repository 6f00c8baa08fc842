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
//! One table per memory, not per port: every port of this process on a memory shares it
//! ([`Held::of`] by [`MemIdentity`]), so the defence covers buffers moving between ports as
//! well as between rings: two `xdp:` ports opened on one UMEM
//! (`NetmapBuilder::share_memory_with`), a pipe's two ends, ports of one netmap allocator.
//!
//! The memory's [`Held`] table records, per buffer, which handle (and slot) claimed it last.
//! It is sticky: releasing slots only moves the handle's published `lo` mark, so a ring
//! whose buffers stay in their slots lap after lap pays per packet a few loads and compares,
//! and no lock or atomic read-modify-write. Taking a buffer another handle claimed last
//! happens under the table's mutex (once per sync) and checks that the other handle does not
//! hold it now. While a handle is the only one on its memory in this process (one ring per
//! process, as a packet generator or a single-queue service has it), nothing can conflict
//! with it: its claims fill its shadow alone, and the table is built from that shadow when
//! a second handle comes.
//!
//! Two handles on two threads, one taking a buffer (slow path) while the other re-confirms
//! its own claim (fast path), are ordered as in Dekker's algorithm: the fast path publishes
//! its new `hi` and then (after a `SeqCst` fence) reads the table; the slow path writes the
//! table and then (after a fence) reads the other's `lo`/`hi` and shadow. At least one of
//! them sees the other, so they never both hold the buffer (both may refuse it: that needs a
//! peer that broke the protocol).

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::backend::MemIdentity;
use crate::ring::{distance, runs, RawRing};

/// A shadow entry for a slot that holds no buffer (its index was out of range or held by
/// another handle): reaching it is reported as a corrupt slot.
pub(crate) const NO_BUF: u32 = u32::MAX;

/// The buffers of one memory claimed by handles of this process.
#[derive(Debug)]
pub(crate) struct Held {
    /// Buffer index -> `token << 32 | slot` of the handle that claimed it last (0: none).
    table: Box<[AtomicU64]>,
    /// The live handles' mirrors; its lock serialises the slow paths.
    holders: Mutex<Registry>,
    /// Batches that wrote the table (see `claim`).
    writes: AtomicU64,
    /// Whether a second handle ever lived on this memory. Until then the one handle cannot
    /// meet itself in a conflict, and its claims only fill its shadow (`solo`); the table is
    /// built from that shadow when the second handle comes.
    shared: AtomicBool,
}

/// The live handles of a memory, by token, and the tokens of slot groups.
#[derive(Debug, Default)]
struct Registry {
    by_token: HashMap<u32, Vec<Weak<Mirror>>>,
    by_group: HashMap<usize, u32>,
}

impl Registry {
    fn prune(&mut self) {
        self.by_token.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
        let live = &self.by_token;
        self.by_group.retain(|_, t| live.contains_key(t));
    }
}

/// What other handles read of a handle: the slots it holds and the buffers in them.
#[derive(Debug)]
pub(crate) struct Mirror {
    token: u32,
    /// The held slots are `[lo, hi)`: `lo` is the handle's published head, `hi` its tail.
    lo: AtomicU32,
    hi: AtomicU32,
    /// The buffer index each held slot was found with (`NO_BUF`: none). Shared with the
    /// owner's batches ([`Mirror::shadow`]), which read it without going through the mirror.
    shadow: Arc<[AtomicU32]>,
    /// Scratch of the owner's claims: the previous claimant of a slot's buffer when it was
    /// another handle (0: none), for the slow path.
    prev: Box<[AtomicU64]>,
    /// The other ring of this process that shares this ring's buffers slot for slot (the
    /// peer end of an in-process emulated pipe), if open: the two share a token, and may
    /// never hold the same slot at once.
    partner: Mutex<Weak<Mirror>>,
    /// Whether a partner was ever linked (read without the lock on the claim path).
    partnered: AtomicBool,
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
            holders: Mutex::new(Registry::default()),
            shared: AtomicBool::new(false),
            writes: AtomicU64::new(0),
        });
        all.insert(mem, Arc::downgrade(&h));
        h
    }

    /// A new handle's mirror, for a ring of `n` slots holding nothing yet. `group` names the
    /// ring's buffers: two rings with the same group share them slot for slot (the two ends
    /// of a pipe's direction, in the emulated backend); any other ring passes a value of its
    /// own (its offset).
    pub(crate) fn mirror(&self, n: u32, at: u32, group: usize) -> Arc<Mirror> {
        let mut reg = lock(&self.holders);
        reg.prune();
        let (token, partner) = match reg.by_group.get(&group) {
            Some(&t) => {
                let p = reg
                    .by_token
                    .get(&t)
                    .and_then(|v| v.iter().find_map(Weak::upgrade));
                (t, p)
            }
            None => (new_token(), None),
        };
        let m = Arc::new(Mirror {
            token,
            lo: AtomicU32::new(at),
            hi: AtomicU32::new(at),
            shadow: (0..n).map(|_| AtomicU32::new(NO_BUF)).collect(),
            prev: (0..n).map(|_| AtomicU64::new(0)).collect(),
            partner: Mutex::new(Weak::new()),
            partnered: AtomicBool::new(partner.is_some()),
        });
        if let Some(p) = &partner {
            *lock(&p.partner) = Arc::downgrade(&m);
            *lock(&m.partner) = Arc::downgrade(p);
            p.partnered.store(true, Ordering::SeqCst);
        }
        if !reg.by_token.is_empty() && !self.shared.load(Ordering::Relaxed) {
            // The first other handle: from now on claims go through the table. Record what
            // the handles that claimed alone hold (their claims after this see `shared`, or
            // this sees their new `hi`: Dekker, as in `claim`).
            self.shared.store(true, Ordering::SeqCst);
            self.writes.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            for o in reg.by_token.values().flatten().filter_map(Weak::upgrade) {
                let n = o.shadow.len() as u32;
                let (lo, hi) = (o.lo.load(Ordering::Acquire), o.hi.load(Ordering::Acquire));
                if lo >= n || hi >= n {
                    continue;
                }
                let mut k = lo;
                while k != hi {
                    let idx = o.shadow[k as usize].load(Ordering::Relaxed);
                    if let Some(e) = self.table.get(idx as usize) {
                        e.store(key(o.token, k), Ordering::Relaxed);
                    }
                    k = if k + 1 == n { 0 } else { k + 1 };
                }
            }
        }
        reg.by_group.insert(group, token);
        reg.by_token
            .entry(token)
            .or_default()
            .push(Arc::downgrade(&m));
        m
    }

    /// Forgets a dropped handle (its claims in the table are then free for the taking).
    pub(crate) fn forget(&self, m: &Mirror) {
        m.lo.store(m.hi.load(Ordering::Relaxed), Ordering::Release);
        let mut reg = lock(&self.holders);
        if let Some(v) = reg.by_token.get_mut(&m.token) {
            v.retain(|w| !std::ptr::eq(w.as_ptr(), m));
        }
        reg.prune();
    }

    /// Claims the buffers of slots `[from, to)` of `raw` (they just entered the user's part
    /// of the ring of `m`, or are claimed again) and sets `m`'s `hi` to `hi` (the handle's
    /// tail, at or past `to`).
    ///
    /// Pass 1 records each slot's buffer in the shadow and the table (writing only what
    /// changed), before `hi` covers the slot: until then no other handle takes the slot for
    /// held, so nobody sees a stale shadow as held. Then `hi`, a fence, and pass 2 checks
    /// every claim is still this handle's in the table (a slow path elsewhere may have
    /// written it meanwhile: Dekker, see the module docs). Buffers whose last claimant was
    /// another live handle are checked against that handle's held slots, under the lock.
    ///
    /// # Safety
    /// The caller's handle owns these slots (after an Acquire load of the tail), so nobody
    /// else of this process reads or writes them.
    #[inline]
    pub(crate) unsafe fn claim(&self, m: &Mirror, raw: &RawRing, from: u32, to: u32, hi: u32) {
        if !self.shared.load(Ordering::Relaxed) {
            // SAFETY: as for this function.
            if unsafe { self.claim_solo(m, raw, from, to, hi) } {
                return;
            }
        }
        let n = raw.num_slots();
        let key = key(m.token, 0);
        let partnered = m.partnered.load(Ordering::Relaxed);
        let mut contested = false;
        // Writers of the table count themselves in `writes` before their first write of a
        // batch: a batch that wrote nothing, during which nobody wrote, needs no pass 2.
        let writes0 = self.writes.load(Ordering::Acquire);
        let mut wrote = false;
        for (start, count) in runs(from, to, n) {
            let (a, b) = (start as usize, (start + count) as usize);
            let (Some(shadow), Some(prev)) = (m.shadow.get(a..b), m.prev.get(a..b)) else {
                continue;
            };
            // SAFETY: per the caller's contract, the run's slots are the user's.
            let idxs = unsafe { raw.buf_idx_run(start, count) };
            for (((s, p), idx), k) in shadow.iter().zip(prev).zip(idxs).zip(start..) {
                let mine = key | u64::from(k);
                let Some(e) = self.table.get(idx as usize) else {
                    s.store(NO_BUF, Ordering::Relaxed);
                    continue;
                };
                let was = e.load(Ordering::Relaxed);
                if was == mine && s.load(Ordering::Relaxed) == idx {
                    continue; // in its slot since the last lap, and still ours
                }
                if !raw.buf_ok(idx) {
                    s.store(NO_BUF, Ordering::Relaxed);
                    continue;
                }
                if !wrote {
                    wrote = true;
                    self.writes.fetch_add(1, Ordering::SeqCst);
                }
                // Claimed last by another handle (or, in a group, maybe by the partner): the
                // slow path checks that one. (Cleared otherwise: no stale claimant is ever
                // checked.)
                let other = was != 0 && (was >> 32 != key >> 32 || partnered);
                p.store(if other { was } else { 0 }, Ordering::Relaxed);
                contested |= other;
                e.store(mine, Ordering::Relaxed);
                s.store(idx, Ordering::Relaxed);
            }
        }
        m.hi.store(hi, Ordering::Release);
        fence(Ordering::SeqCst);
        let mut lost = false;
        if wrote || self.writes.load(Ordering::Relaxed) != writes0 {
            for (start, count) in runs(from, to, n) {
                for k in start..start + count {
                    let idx = m.shadow[k as usize].load(Ordering::Relaxed);
                    lost |= idx != NO_BUF
                        && self
                            .table
                            .get(idx as usize)
                            .is_none_or(|e| e.load(Ordering::Relaxed) != key | u64::from(k));
                }
            }
        }
        if contested || lost {
            self.settle(m, n, from, to);
        }
        // The ring sharing these slots' buffers must not hold any of them (Dekker again:
        // each stores its `hi`, fences, then reads the other's range).
        if partnered {
            let partner = lock(&m.partner).upgrade();
            if let Some(p) = partner {
                self.keep_apart(m, &p, n, from, to);
            }
        }
    }

    /// Refuses the slots of `[from, to)` that `p` (the ring sharing them) holds.
    #[cold]
    #[inline(never)]
    fn keep_apart(&self, m: &Mirror, p: &Mirror, n: u32, from: u32, to: u32) {
        let (plo, phi) = (p.lo.load(Ordering::Acquire), p.hi.load(Ordering::Acquire));
        if plo >= n || phi >= n || plo == phi {
            return;
        }
        // The claimed run and the partner's held run, as offsets from `from`: disjoint in
        // every legitimate exchange (one end gets slots back only after the other gave them).
        let (len, span) = (distance(from, to, n), distance(plo, phi, n));
        let start = distance(from, plo, n);
        let overlap = start < len || distance(plo, from, n) < span;
        if !overlap {
            return;
        }
        let mut k = from;
        while k != to {
            if distance(plo, k, n) < span {
                m.shadow[k as usize].store(NO_BUF, Ordering::Relaxed);
                tracing::warn!(
                    slot = k,
                    "slot held by the other end of the pipe in this process: refused"
                );
            }
            k = if k + 1 == n { 0 } else { k + 1 };
        }
    }

    /// [`claim`](Self::claim) while this is the memory's only handle: the shadow alone.
    /// Returns `false` when a second handle came meanwhile (the caller then claims the
    /// slots through the table).
    ///
    /// # Safety
    /// As for [`claim`](Self::claim).
    #[inline]
    unsafe fn claim_solo(&self, m: &Mirror, raw: &RawRing, from: u32, to: u32, hi: u32) -> bool {
        let n = raw.num_slots();
        for (start, count) in runs(from, to, n) {
            let Some(shadow) = m.shadow.get(start as usize..(start + count) as usize) else {
                continue;
            };
            // SAFETY: per the caller's contract, the run's slots are the user's. (An index out
            // of range is kept as it is: every view checks its index and refuses it.)
            for (s, idx) in shadow.iter().zip(unsafe { raw.buf_idx_run(start, count) }) {
                s.store(idx, Ordering::Relaxed);
            }
        }
        m.hi.store(hi, Ordering::Release);
        fence(Ordering::SeqCst);
        !self.shared.load(Ordering::Relaxed)
    }

    /// The slow path of [`claim`](Self::claim), under the lock: a slot whose table entry is
    /// no longer this handle's lost its buffer to another claim; a buffer whose previous
    /// claimant is a live handle that still holds it goes back to that handle.
    #[cold]
    #[inline(never)]
    fn settle(&self, m: &Mirror, n: u32, from: u32, to: u32) {
        let reg = lock(&self.holders);
        let key = key(m.token, 0);
        // The previous claimant last looked at, with its held range (read once: a handle
        // releases and claims only in its own syncs, and its claims wait for this lock).
        let mut last_token = 0;
        let mut last: Vec<(Arc<Mirror>, u32, u32)> = Vec::new();
        let mut k = from;
        while k != to {
            let ks = k as usize;
            let idx = m.shadow[ks].load(Ordering::Relaxed);
            let prev = m.prev[ks].load(Ordering::Relaxed);
            let mine = key | u64::from(k);
            let mut refuse = false;
            if prev != 0 {
                m.prev[ks].store(0, Ordering::Relaxed);
            }
            if let Some(e) = self.table.get(idx as usize) {
                if e.load(Ordering::Relaxed) != mine {
                    refuse = true; // another claim won the race (pass 2 of `claim`)
                } else if prev != 0 {
                    let other = (prev >> 32) as u32;
                    if other != last_token {
                        last_token = other;
                        // The handles that may hold it: the other token's, or (the group's
                        // own token, another slot) this ring's partner.
                        last = reg
                            .by_token
                            .get(&other)
                            .into_iter()
                            .flatten()
                            .filter_map(Weak::upgrade)
                            .filter(|o| !std::ptr::eq(&**o, m))
                            .map(|o| {
                                let lo = o.lo.load(Ordering::Acquire);
                                let hi = o.hi.load(Ordering::Acquire);
                                (o, lo, hi)
                            })
                            .collect();
                    }
                    if last
                        .iter()
                        .any(|(o, lo, hi)| o.holds_in(*lo, *hi, prev as u32, idx))
                    {
                        // The other handle keeps it, and stays its claimant.
                        self.writes.fetch_add(1, Ordering::SeqCst);
                        e.store(prev, Ordering::Relaxed);
                        refuse = true;
                    }
                }
            }
            if refuse {
                m.shadow[ks].store(NO_BUF, Ordering::Relaxed);
                tracing::warn!(
                    slot = k,
                    buf_idx = idx,
                    "slot names a buffer another ring of this process holds: refused"
                );
            }
            k = if k + 1 == n { 0 } else { k + 1 };
        }
    }

    /// Records zero-copy swaps between two handles of this memory, both borrowed by the
    /// caller and holding the slots: for each `(rk, r, tk, t)`, buffer `r` moved from slot
    /// `rk` of `rx` to slot `tk` of `tx`, and `t` the other way. Under the lock, so no slow
    /// path sees half a swap.
    pub(crate) fn swapped(&self, rx: &Mirror, tx: &Mirror, swaps: &[(u32, u32, u32, u32)]) {
        let _serialised = lock(&self.holders);
        self.writes.fetch_add(1, Ordering::SeqCst);
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
        buf_in(&self.shadow, k)
    }

    /// The shadow itself, for a batch to read without going through the mirror
    /// ([`buf_in`]): its entries are what the handle holds until its next sync, which
    /// needs the handle (and so ends the batch).
    pub(crate) fn shadow(&self) -> Arc<[AtomicU32]> {
        self.shadow.clone()
    }

    /// Whether slot `k` is in the held slots `[lo, hi)` (read by the caller) and holds
    /// buffer `idx`.
    #[inline]
    fn holds_in(&self, lo: u32, hi: u32, k: u32, idx: u32) -> bool {
        let n = self.shadow.len() as u32;
        k < n
            && lo < n
            && hi < n
            && distance(lo, k, n) < distance(lo, hi, n)
            && self.shadow[k as usize].load(Ordering::Relaxed) == idx
    }
}

/// The buffer slot `k` holds in `shadow` (a [`Mirror::shadow`]; `NO_BUF`: none, or `k`
/// outside the ring).
#[inline(always)]
pub(crate) fn buf_in(shadow: &[AtomicU32], k: u32) -> u32 {
    shadow
        .get(k as usize)
        .map_or(NO_BUF, |s| s.load(Ordering::Relaxed))
}

/// [`buf_in`] for a loop that also reads slot `k` of a ring of `n` slots: the one compare
/// `k < n` serves both (the compiler merges it with the slot's own bounds check).
///
/// # Safety
/// `shadow` is at least `n` entries long: the shadow of the ring of `n` slots whose slot
/// `k` the caller reads (`Held::mirror` made it as long as the ring).
#[inline(always)]
pub(crate) unsafe fn buf_at(shadow: &[AtomicU32], k: u32, n: u32) -> u32 {
    debug_assert!(shadow.len() >= n as usize);
    if k < n {
        // SAFETY: k < n <= shadow.len(), per the caller's contract.
        unsafe { shadow.get_unchecked(k as usize) }.load(Ordering::Relaxed)
    } else {
        NO_BUF
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

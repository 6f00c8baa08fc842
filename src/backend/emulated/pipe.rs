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

use super::ctl::{crash_point, END_BOUND, END_CLOSED, W};
use super::memory::EmuMem;
use super::wake::signal;
use super::{lock, RX, TX};
use crate::abi::{NR_TIMESTAMP, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::error::Error;
use crate::ring::{in_cyclic_range, next, prev, runs, RawRing};

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
    pub(super) klock: [[Vec<Mutex<()>>; 2]; 2],
    pub(super) bound: Mutex<Bindings>,
    /// Per end: its peer (another process) was killed while bound. Set by the watcher.
    pub(super) peer_gone: [AtomicBool; 2],
}

fn corrupt(name: &str, what: &str) -> Error {
    Error::RingState(format!(
        "{name}: the shared pipe state holds {what} out of range (written by another process?)"
    ))
}

impl Pipe {
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
            // SAFETY: see above: these slots are between the two users' ranges.
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
        crash_point("pipe.tx.copied");
        self.w(end, i, W::TxHwcur).store(head, Ordering::Relaxed);
        crash_point("pipe.tx.hwcur");
        let delivered = complete.is_some_and(|nk| nk != rx_hwtail);
        if let Some(nk) = complete.filter(|_| delivered) {
            // Release: the slots copied above are visible to whoever sees the new tail.
            self.w(end, i, W::RxHwtail).store(nk, Ordering::Release);
        }
        crash_point("pipe.tx.delivered");
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
            // SAFETY: see above: released RX slots, outside the sender's range.
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
        crash_point("pipe.rx.swapped");
        if released {
            self.w(s, i, W::RxHwcur).store(head, Ordering::Relaxed);
            crash_point("pipe.rx.hwcur");
            // Release: the buffer swaps above are visible to the sender with the room.
            self.w(s, i, W::PipeTail)
                .store(prev(head, n), Ordering::Release);
            crash_point("pipe.rx.released");
        }
        // Read before the tail: once the sender is known dead, its last tail is final.
        let gone = self.peer_gone[end].load(Ordering::Acquire);
        let hwtail = self.w(s, i, W::RxHwtail).load(Ordering::Acquire);
        if hwtail >= n {
            return Err(corrupt(&self.name, "the rx tail"));
        }
        // As netmap's rxsync does (`NR_TIMESTAMP`), before the tail publishes the packets.
        // (Miri's isolation has no wall clock: no stamps there.)
        if hwtail != tail_pub && rx.ring_flags() & NR_TIMESTAMP != 0 && !cfg!(miri) {
            rx.store_ts(std::time::SystemTime::now());
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
        crash_point("pipe.end.claimed");
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
        crash_point("pipe.end.closed");
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

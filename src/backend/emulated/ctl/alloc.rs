//! The allocator in the control area: the interface and ring areas (a cursor and a free list
//! each) and the buffer pool (a bitmap), in the header of [`super`].
//!
//! Every process allocates from it, under the memory lock, and any of them may have written
//! anything into it: every offset read from the header is checked, with checked arithmetic,
//! to lie inside its area before it is handed out, so the allocator never places anything
//! over the control area or outside the region. Freeing takes back only what is allocated
//! (an area below the cursor overlapping no free entry, a buffer whose bit is set), so a
//! teardown redone after a crash, or one reading hostile words, frees nothing twice.
//!
//! Allocation can be split in two, for crash consistency (see `table`): [`Ctl::pick_area`]
//! and [`Ctl::pick_bufs`] say what would be handed out without taking it (a pure function of
//! the header), the caller records it, then allocates it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    crash_point, Ctl, H_BUF_HINT, H_IF_FREE, H_IF_NEXT, H_RING_FREE, H_RING_NEXT, IF_FREE,
    RING_FREE,
};

/// Which area allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in super::super) enum Area {
    If,
    Ring,
}

/// Where a [`Pick`] comes from.
#[derive(Clone, Copy, Debug)]
enum From {
    /// Free-list entry `k`.
    Entry(usize),
    /// The cursor, which moves to this offset.
    Cursor(usize),
}

/// An area chosen by [`Ctl::pick`], not yet taken.
#[derive(Clone, Copy, Debug)]
struct Pick {
    a: Area,
    off: usize,
    from: From,
}

impl Ctl {
    fn area(&self, a: Area) -> (usize, usize, usize, usize, usize) {
        // (cursor word, free list, entries, start, end)
        match a {
            Area::If => (
                H_IF_NEXT,
                H_IF_FREE,
                IF_FREE,
                self.g.if_start,
                self.g.if_end,
            ),
            Area::Ring => (
                H_RING_NEXT,
                H_RING_FREE,
                RING_FREE,
                self.g.if_end,
                self.g.ring_end,
            ),
        }
    }

    /// The area's cursor as an offset, when it lies inside the area (`start..=end`); a
    /// cursor below the start reads as the start. `None`: a value no allocation could have
    /// left there (a hostile or torn write), so nothing is allocated from or freed to it.
    pub(super) fn cursor(&self, a: Area) -> Option<usize> {
        let (next_w, _, _, start, end) = self.area(a);
        let c = usize::try_from(self.a64(next_w).load(Ordering::Relaxed)).ok()?;
        (c <= end).then_some(c.max(start))
    }

    /// Free entry `k` of an area's list: `(offset, bytes)` as stored (unchecked), or `None`
    /// when the entry is unused.
    pub(super) fn free_entry(&self, a: Area, k: usize) -> Option<(u64, u64)> {
        let (_, list, _, _, _) = self.area(a);
        let e = list + k * 16;
        let sz = self.a64(e + 8).load(Ordering::Relaxed);
        (sz != 0).then(|| (self.a64(e).load(Ordering::Relaxed), sz))
    }

    /// Where [`Ctl::alloc_area`] would place `size` bytes (rounded up to `align`) now,
    /// without taking them: a pure function of the header, so a caller holding the memory
    /// lock can record the offset where teardown finds it before allocating it. Every
    /// offset read from the header is checked, with checked arithmetic, to lie inside the
    /// area: what is returned always does.
    pub(in super::super) fn pick_area(&self, a: Area, size: usize, align: usize) -> Option<usize> {
        self.pick(a, size, align).map(|p| p.off)
    }

    fn pick(&self, a: Area, size: usize, align: usize) -> Option<Pick> {
        let (_, _, n, start, end) = self.area(a);
        let size = size.checked_next_multiple_of(align)?;
        let cursor = self.cursor(a)?;
        for k in 0..n {
            let Some((off, sz)) = self.free_entry(a, k) else {
                continue;
            };
            if sz != size as u64 {
                continue;
            }
            // A free entry is only trusted when it lies inside the allocated part of the area.
            let ok = usize::try_from(off).ok().filter(|&off| {
                off >= start
                    && off % align == 0
                    && off.checked_add(size).is_some_and(|e| e <= cursor)
            });
            if let Some(off) = ok {
                return Some(Pick {
                    a,
                    off,
                    from: From::Entry(k),
                });
            }
        }
        let off = cursor.checked_next_multiple_of(align)?;
        let next = off.checked_add(size)?;
        if off < start || next > end {
            return None;
        }
        Some(Pick {
            a,
            off,
            from: From::Cursor(next),
        })
    }

    /// Takes what [`Ctl::pick`] chose. Under the same hold of the memory lock.
    fn commit(&self, p: Pick) {
        let (next_w, list, _, _, _) = self.area(p.a);
        match p.from {
            From::Entry(k) => self.a64(list + k * 16 + 8).store(0, Ordering::Relaxed),
            From::Cursor(next) => self.a64(next_w).store(next as u64, Ordering::Relaxed),
        }
        crash_point("ctl.commit");
    }

    /// Allocates `size` bytes (rounded up to `align`) in an area. Under the memory lock.
    pub(in super::super) fn alloc_area(&self, a: Area, size: usize, align: usize) -> Option<usize> {
        let p = self.pick(a, size, align)?;
        let off = p.off;
        self.commit(p);
        Some(off)
    }

    /// Returns an area to its allocator. Only what is allocated is taken back: inside the
    /// area, aligned, below the cursor and overlapping no free entry; so freeing twice (a
    /// teardown redone after a crash) or freeing what a hostile write named is refused
    /// (`false`). The topmost area lowers the cursor (free a pipe's areas from the highest
    /// down), others go to the free list (leaked, `false`, when it is full). Each step is one
    /// store that makes the area free, so a crash leaves it allocated or free, never half.
    /// Under the memory lock.
    pub(in super::super) fn free_area(
        &self,
        a: Area,
        off: usize,
        size: usize,
        align: usize,
    ) -> bool {
        let (next_w, list, n, start, _) = self.area(a);
        let Some(size) = size.checked_next_multiple_of(align) else {
            return false;
        };
        let Some(cursor) = self.cursor(a) else {
            return false;
        };
        let Some(top) = off.checked_add(size) else {
            return false;
        };
        if off < start || off % align != 0 || top > cursor {
            return false;
        }
        let overlaps = |k| {
            self.free_entry(a, k)
                .is_some_and(|(eo, es)| eo < top as u64 && (off as u64) < eo.saturating_add(es))
        };
        if (0..n).any(overlaps) {
            return false;
        }
        if top == cursor {
            // The topmost area: one store gives it back.
            self.a64(next_w).store(off as u64, Ordering::Relaxed);
            return true;
        }
        for k in 0..n {
            let e = list + k * 16;
            if self.a64(e + 8).load(Ordering::Relaxed) == 0 {
                self.a64(e).store(off as u64, Ordering::Relaxed);
                // An entry is used once its size is set: a crash before leaves it unused.
                crash_point("ctl.free_area.entry");
                self.a64(e + 8).store(size as u64, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    fn bit(&self, b: u32) -> (&AtomicU64, u64) {
        let w = self.a64(self.g.bitmap_off + (b / 64) as usize * 8);
        (w, 1u64 << (b % 64))
    }

    /// Whether buffer `b` is marked in use (`false` for an index outside the pool).
    #[cfg(test)]
    pub(in super::super) fn buf_in_use(&self, b: u32) -> bool {
        if b >= self.g.nbufs {
            return false;
        }
        let (w, m) = self.bit(b);
        w.load(Ordering::Relaxed) & m != 0
    }

    /// The `n` buffer indices [`Ctl::alloc_bufs`] would hand out now, not marked: a pure
    /// function of the bitmap and hint (see [`Ctl::pick_area`]); `None` when fewer are free.
    /// Never the reserved buffers 0 and 1, nor an index past the pool, whatever the bitmap
    /// says. Under the memory lock.
    pub(in super::super) fn pick_bufs(&self, n: usize) -> Option<Vec<u32>> {
        let words = self.g.bitmap_words;
        let hint = (self.a64(H_BUF_HINT).load(Ordering::Relaxed) as usize).min(words);
        let mut out = Vec::with_capacity(n);
        for k in 0..words {
            if out.len() == n {
                break;
            }
            let wi = (hint + k) % words;
            let w = self.a64(self.g.bitmap_off + wi * 8);
            let mut v = w.load(Ordering::Relaxed);
            while v != u64::MAX && out.len() < n {
                let bit = (!v).trailing_zeros();
                let b = (wi * 64) as u32 + bit;
                v |= 1 << bit;
                if b >= self.g.nbufs {
                    // Bits past the last buffer stay clear and are never handed out.
                    break;
                }
                if b >= 2 {
                    out.push(b);
                }
            }
        }
        (out.len() == n).then_some(out)
    }

    /// Marks buffers in use (and where the next search starts).
    fn mark_bufs(&self, bufs: &[u32]) {
        for &b in bufs {
            let (w, m) = self.bit(b);
            w.fetch_or(m, Ordering::Relaxed);
            crash_point("ctl.mark_bufs");
        }
        let last = bufs.last().map_or(0, |b| *b as usize / 64);
        self.a64(H_BUF_HINT).store(last as u64, Ordering::Relaxed);
    }

    /// `n` free buffer indices, marked in use; `None` when fewer are free. Under the lock.
    pub(in super::super) fn alloc_bufs(&self, n: usize) -> Option<Vec<u32>> {
        let out = self.pick_bufs(n)?;
        self.mark_bufs(&out);
        Some(out)
    }

    /// Gives buffers back: only indices currently in use, each once (see `EmuMem::free_bufs`).
    /// Returns how many were refused. Under the lock.
    pub(in super::super) fn free_bufs(&self, bufs: impl IntoIterator<Item = u32>) -> usize {
        let mut refused = 0;
        for b in bufs {
            if !(2..self.g.nbufs).contains(&b) {
                refused += 1;
                continue;
            }
            let (w, m) = self.bit(b);
            if w.fetch_and(!m, Ordering::Relaxed) & m == 0 {
                refused += 1;
            }
            crash_point("ctl.free_bufs");
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::super::{Ctl, H_IF_NEXT, H_RING_FREE, H_RING_NEXT};
    use super::Area;
    use crate::region::Region;

    fn ctl() -> Ctl {
        let ctl = Ctl::new(Arc::new(Region::anonymous(1 << 20).unwrap()));
        ctl.init();
        ctl
    }

    #[test]
    fn allocator_in_the_control_area_hands_out_each_buffer_once() {
        let ctl = ctl();
        assert!(ctl.valid());
        let a = ctl.alloc_bufs(100).unwrap();
        assert!(a.iter().all(|b| *b >= 2 && *b < ctl.g.nbufs));
        let b = ctl.alloc_bufs(10).unwrap();
        assert!(b.iter().all(|x| !a.contains(x)));
        // Freed once; a second free, a reserved and a foreign index are refused.
        assert_eq!(ctl.free_bufs(a.iter().copied()), 0);
        assert_eq!(ctl.free_bufs([a[0], 0, 1, u32::MAX]), 4);
        assert!(ctl.alloc_bufs(ctl.g.nbufs as usize).is_none());
        let r1 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        let r2 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        assert!(r2 >= r1 + 1024 && r1 >= ctl.g.if_end);
        ctl.free_area(Area::Ring, r1, 1000, 128);
        assert_eq!(ctl.alloc_area(Area::Ring, 1000, 128), Some(r1));
        // A free entry pointing outside the area (a hostile write) is not used.
        ctl.free_area(Area::Ring, 8, 1000, 128);
        let r3 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        assert!(r3 >= ctl.g.if_end);
    }

    /// A hostile cursor (near the top of the address space, or past its area) never makes
    /// the allocator hand out an offset outside the area: the next `netmap_if` or ring would
    /// otherwise land over the control area (offset 0: the magic; or live link words).
    #[test]
    fn hostile_cursors_never_place_an_area_outside_it() {
        let ctl = ctl();
        for (a, cursor_word) in [(Area::If, H_IF_NEXT), (Area::Ring, H_RING_NEXT)] {
            let (_, _, _, start, end) = ctl.area(a);
            for bad in [
                u64::MAX - 10,
                u64::MAX,
                1 << 63,
                end as u64 + 1,
                (end - 64) as u64,
            ] {
                ctl.a64(cursor_word).store(bad, Ordering::Relaxed);
                if let Some(off) = ctl.alloc_area(a, 1000, 128) {
                    assert!(
                        off >= start && off + 1024 <= end,
                        "cursor {bad:#x}: area at {off} outside {start}..{end}"
                    );
                }
            }
        }
        assert!(ctl.valid(), "the header was overwritten");
    }

    /// Freeing takes back only what is allocated, once: a second free (a teardown redone
    /// after a crash), an area above the cursor or outside the area, and one overlapping a
    /// free entry are refused, so nothing is ever handed out twice.
    #[test]
    fn areas_are_freed_once_and_only_when_allocated() {
        let ctl = ctl();
        let r1 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        let r2 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        let r3 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        assert!(ctl.free_area(Area::Ring, r1, 1000, 128));
        assert!(!ctl.free_area(Area::Ring, r1, 1000, 128), "freed twice");
        assert!(
            !ctl.free_area(Area::Ring, r1 + 128, 1000, 128),
            "overlaps a free entry"
        );
        assert!(
            !ctl.free_area(Area::Ring, r3 + 1024, 1000, 128),
            "above the cursor"
        );
        assert!(!ctl.free_area(Area::Ring, 0, 1000, 128), "outside the area");
        assert!(
            !ctl.free_area(Area::Ring, usize::MAX - 100, 1000, 128),
            "overflows"
        );
        // The topmost area lowers the cursor.
        assert!(ctl.free_area(Area::Ring, r3, 1000, 128));
        assert!(ctl.free_area(Area::Ring, r2, 1000, 128));
        assert_eq!(ctl.cursor(Area::Ring), Some(r2));
        assert!(
            !ctl.free_area(Area::Ring, r2, 1000, 128),
            "freed twice, above the cursor"
        );
        assert_eq!(
            ctl.alloc_area(Area::Ring, 1000, 128),
            Some(r1),
            "the free entry first"
        );
        assert_eq!(ctl.alloc_area(Area::Ring, 1000, 128), Some(r2));
    }

    /// Free entries a hostile process wrote (outside the area, above the cursor, misaligned,
    /// wrapping) are never handed out and never stop the allocator.
    #[test]
    fn hostile_free_entries_are_skipped() {
        let ctl = ctl();
        let r1 = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
        let (start, end) = (ctl.g.if_end as u64, ctl.g.ring_end as u64);
        let bad = [
            0,
            8,
            start + 1,
            end,
            u64::MAX - 100,
            u64::MAX,
            r1 as u64 + 4096,
        ];
        for (k, off) in bad.iter().enumerate() {
            ctl.a64(H_RING_FREE + k * 16).store(*off, Ordering::Relaxed);
            ctl.a64(H_RING_FREE + k * 16 + 8)
                .store(1024, Ordering::Relaxed);
        }
        for _ in 0..4 {
            let off = ctl.alloc_area(Area::Ring, 1000, 128).unwrap();
            assert!(
                off > r1 && off % 128 == 0 && off as u64 + 1024 <= end,
                "{off}"
            );
        }
    }

    /// The reserved buffers 0 and 1 are never handed out, whatever the bitmap says.
    #[test]
    fn reserved_buffers_are_never_handed_out() {
        let ctl = ctl();
        ctl.a64(ctl.g.bitmap_off).store(0, Ordering::Relaxed);
        let got = ctl.alloc_bufs(10).unwrap();
        assert!(got.iter().all(|b| *b >= 2), "{got:?}");
        assert_eq!(ctl.pick_bufs(ctl.g.nbufs as usize - 1), None);
    }
}

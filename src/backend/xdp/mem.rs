//! The memory of `xdp:` ports: one region holding an arena for the ports' `netmap_if`s and
//! rings, then the buffer pool, registered with the kernel as one UMEM. A port opens a new
//! memory ([`XdpMem::create`], with room for `ports` ports of its size) or joins the memory of
//! another port ([`XdpMem::join`], `NetmapBuilder::share_memory_with`): then buffer `i` is
//! the same buffer on both, so buffers swap between their rings (`zero_copy_forward`).
//!
//! Buffers are partitioned, never lent twice: each port takes the buffers it needs (its TX
//! slots, its fill rings) from the free list at open, and gives back at close the buffers it
//! holds then, whichever they are (swaps exchange buffers between ports one for one, so a
//! port always holds as many as it took). A buffer is given back only if it is lent out, so
//! an index that turns up twice at a close is freed once. Interfaces and rings come from the
//! arena, first fit, and go back to it at close.
//!
//! Lifetime: the memory lives while a port or a builder names it (`Arc`); the kernel's UMEM
//! lives while a socket on it is open (each socket holds it), so the ports close in any order.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use super::xsk::Umem;
use crate::backend::linux::ringmem::{lay_out, MemPlan, RingMem, BUF_SIZE};
use crate::backend::MemIdentity;
use crate::error::Error;
use crate::region::Region;
use crate::ring::RawRing;

/// A set of buffer indices (one bit each).
#[derive(Debug, Clone, Default)]
pub(crate) struct BufSet {
    words: Vec<u64>,
    n: u32,
}

impl BufSet {
    /// An empty set for indices below `n`.
    pub(crate) fn new(n: u32) -> BufSet {
        BufSet {
            words: vec![0; (n as usize).div_ceil(64)],
            n,
        }
    }

    /// Adds `i` (ignored when out of range); returns whether it was absent.
    #[inline]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        if i >= self.n {
            return false;
        }
        let w = &mut self.words[i as usize / 64];
        let bit = 1u64 << (i % 64);
        let was = *w & bit == 0;
        *w |= bit;
        was
    }

    /// Removes `i`; returns whether it was present.
    #[inline]
    pub(crate) fn remove(&mut self, i: u32) -> bool {
        if i >= self.n {
            return false;
        }
        let w = &mut self.words[i as usize / 64];
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        was
    }

    /// The members, in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| (k * 64 + b) as u32)
        })
    }
}

/// One memory shared by the `xdp:` ports opened on it.
#[derive(Debug)]
pub(crate) struct XdpMem {
    pub(crate) region: Arc<Region>,
    pub(crate) identity: MemIdentity,
    pub(crate) umem: Umem,
    /// Byte range of the buffers in the region.
    pub(crate) pool: Range<usize>,
    /// Buffers in the pool.
    pub(crate) nbufs: u32,
    pool_off: usize,
    /// The port that created it, for messages.
    first: String,
    alloc: Mutex<Alloc>,
}

#[derive(Debug)]
struct Alloc {
    /// Free byte ranges of the arena, sorted and merged.
    arena: Vec<Range<usize>>,
    /// Buffers no port holds (popped from the end).
    free: Vec<u32>,
    /// Buffers some port holds.
    lent: BufSet,
}

/// A port's part of an [`XdpMem`]: its interface and rings (the arena range `area`), and the
/// number of buffers it took. Dropped after the port's sockets closed, it gives back the
/// arena range and the buffers the port recorded in [`give_back`](Share::give_back).
#[derive(Debug)]
pub(crate) struct Share {
    pub(crate) mem: Arc<XdpMem>,
    pub(crate) area: Range<usize>,
    pub(crate) taken: u32,
    back: Vec<u32>,
}

/// What opening on a memory yields: the share, checked views of the rings (`tx[i]`/`rx[i]`
/// belong to `plan.bound[i]`) and the port's buffers.
#[derive(Debug)]
pub(crate) struct Carved {
    pub(crate) share: Share,
    pub(crate) tx: Vec<RawRing>,
    pub(crate) rx: Vec<RawRing>,
    pub(crate) bufs: Vec<u32>,
}

fn lock(m: &Mutex<Alloc>) -> MutexGuard<'_, Alloc> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl XdpMem {
    /// A memory for `plan` (whose `nbufs` is what one port of its shape takes) with room
    /// for `ports` such ports, and `plan`'s port carved from it.
    pub(crate) fn create(plan: &MemPlan<'_>, ports: u32, first: &str) -> Result<Carved, Error> {
        let ports = ports.max(1);
        let total = plan
            .nbufs
            .checked_mul(ports)
            .and_then(|t| t.checked_next_multiple_of(2))
            .filter(|t| u64::from(*t) * u64::from(BUF_SIZE) < (1 << 40))
            .ok_or_else(|| {
                Error::BindFail(format!(
                    "memory for {ports} ports of {} buffers is too large",
                    plan.nbufs
                ))
            })?;
        let meta = plan.meta_bytes();
        let whole = MemPlan {
            nbufs: total,
            ..plan.clone()
        };
        let mem = RingMem::build_with_arena(&whole, meta * ports as usize, BUF_SIZE)?;
        let umem = Umem::new(mem.region.clone(), mem.pool_off, mem.pool_len, BUF_SIZE)?;
        let mut lent = BufSet::new(total);
        let bufs: Vec<u32> = (0..plan.nbufs).collect();
        for &b in &bufs {
            lent.insert(b);
        }
        let mem_arc = Arc::new(XdpMem {
            identity: mem.identity,
            pool: mem.buffers(),
            nbufs: total,
            pool_off: mem.pool_off,
            first: first.to_string(),
            alloc: Mutex::new(Alloc {
                arena: std::iter::once(meta..mem.pool_off)
                    .filter(|r| !r.is_empty())
                    .collect(),
                free: (plan.nbufs..total).rev().collect(),
                lent,
            }),
            region: mem.region,
            umem,
        });
        Ok(Carved {
            share: Share {
                mem: mem_arc,
                area: 0..meta,
                taken: plan.nbufs,
                back: Vec::new(),
            },
            tx: mem.tx,
            rx: mem.rx,
            bufs,
        })
    }

    /// Carves `plan`'s port (interface, rings, `plan.nbufs` buffers) from this memory.
    /// [`Error::MemoryExhausted`] when the arena or the free buffers are short.
    pub(crate) fn join(self: &Arc<Self>, plan: &MemPlan<'_>, port: &str) -> Result<Carved, Error> {
        let meta = plan.meta_bytes();
        let mut a = lock(&self.alloc);
        let short = |what: String| {
            Error::MemoryExhausted(format!(
                "{port} needs {what} in the memory of {} (mem id {})",
                self.first,
                self.identity.mem_id()
            ))
        };
        if (a.free.len() as u64) < u64::from(plan.nbufs) {
            return Err(short(format!(
                "{} buffers ({} TX slots and {} per RX slot per queue), {} are free",
                plan.nbufs,
                plan.tx_slots,
                super::RX_DEPTH,
                a.free.len()
            )));
        }
        let Some(pos) = a.arena.iter().position(|r| r.len() >= meta) else {
            let largest = a.arena.iter().map(|r| r.len()).max().unwrap_or(0);
            return Err(short(format!(
                "{meta} bytes for its interface and rings, the largest free space is {largest}"
            )));
        };
        let at = a.arena[pos].start;
        // SAFETY: `at..at + meta` was free in the arena: no port's interface or rings are
        // there, so no handle or driver reads or writes it; the allocator lock is held, so
        // no other open carves it meanwhile.
        let (tx, rx) = unsafe { lay_out(&self.region, at, plan, self.pool_off, BUF_SIZE) }?;
        a.arena[pos].start += meta;
        if a.arena[pos].is_empty() {
            a.arena.remove(pos);
        }
        let split = a.free.len() - plan.nbufs as usize;
        let bufs: Vec<u32> = a.free.drain(split..).rev().collect();
        for &b in &bufs {
            a.lent.insert(b);
        }
        Ok(Carved {
            share: Share {
                mem: self.clone(),
                area: at..at + meta,
                taken: plan.nbufs,
                back: Vec::new(),
            },
            tx,
            rx,
            bufs,
        })
    }

    /// Buffers no port holds now.
    #[cfg(test)]
    pub(crate) fn free_buffers(&self) -> usize {
        lock(&self.alloc).free.len()
    }
}

impl Share {
    /// Records the buffers the port holds, given back when the share drops (after the
    /// port's sockets closed: the kernel then writes none of them any more).
    pub(crate) fn give_back(&mut self, bufs: Vec<u32>) {
        self.back = bufs;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut a = lock(&self.mem.alloc);
        let mut returned = 0u32;
        for &b in &self.back {
            // Freed once, and only if lent: a corrupt or duplicate index frees nothing.
            if a.lent.remove(b) {
                a.free.push(b);
                returned += 1;
            }
        }
        if returned != self.taken {
            tracing::warn!(
                mem_id = self.mem.identity.mem_id(),
                taken = self.taken,
                returned,
                "xdp port closed holding fewer buffers than it took (frames never completed \
                 by the kernel, or a slot's index overwritten); the difference stays out of \
                 use until the memory is freed"
            );
        }
        // The arena range, merged with its neighbours.
        let r = self.area.clone();
        let pos = a.arena.partition_point(|x| x.start < r.start);
        a.arena.insert(pos, r);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(a.arena.len());
        for x in a.arena.drain(..) {
            match merged.last_mut() {
                Some(l) if l.end == x.start => l.end = x.end,
                _ => merged.push(x),
            }
        }
        a.arena = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(bound: &[u32]) -> MemPlan<'_> {
        MemPlan {
            name: "t0",
            queues: 2,
            bound,
            tx_slots: 64,
            rx_slots: 64,
            nbufs: 192 * bound.len() as u32,
            buf_shift: 256,
            expose_tx: true,
            expose_rx: true,
            huge_pages: false,
        }
    }

    fn set(v: &[u32]) -> std::collections::BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn ports_on_one_memory_get_disjoint_buffers_and_rings_until_it_is_full() {
        let first = XdpMem::create(&plan(&[0]), 3, "xdp:t0").unwrap();
        let mem = first.share.mem.clone();
        assert_eq!(mem.nbufs, 3 * 192);
        assert_eq!(first.bufs, (0..192).collect::<Vec<_>>());
        let second = mem.join(&plan(&[1]), "xdp:t1").unwrap();
        let third = mem.join(&plan(&[0]), "xdp:t2").unwrap();
        let all: Vec<u32> = [&first.bufs, &second.bufs, &third.bufs]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(set(&all).len(), all.len(), "no buffer lent twice");
        assert!(all.iter().all(|&b| b < mem.nbufs));
        assert_eq!(mem.free_buffers(), 0);
        // Each port's interface and rings lie in its own part of the arena.
        let areas = [&first.share.area, &second.share.area, &third.share.area];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.end <= mem.pool_off);
            for b in &areas[i + 1..] {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{a:?} and {b:?} overlap"
                );
            }
        }
        // Every ring of every port takes the buffers of the whole pool (swaps cross ports).
        for r in first.tx.iter().chain(&third.rx) {
            assert!(r.buf_ptr(mem.nbufs - 1).is_some());
            assert!(r.buf_ptr(mem.nbufs).is_none());
        }
        let full = mem.join(&plan(&[1]), "xdp:t3").unwrap_err();
        assert!(matches!(full, Error::MemoryExhausted(_)), "{full}");
        let msg = full.to_string();
        assert!(
            msg.contains("xdp:t3") && msg.contains("memory_for_ports"),
            "{msg}"
        );
    }

    #[test]
    fn a_closing_port_gives_back_what_it_holds_once_and_its_rings_are_reused() {
        let first = XdpMem::create(&plan(&[0]), 2, "xdp:t0").unwrap();
        let mem = first.share.mem.clone();
        let mut second = mem.join(&plan(&[1]), "xdp:t1").unwrap();
        let area = second.share.area.clone();
        let second_5 = second.bufs[5];
        // After a swap the second port holds a buffer the first took (and the first holds
        // the second's buffer 5): it gives back what it holds, each buffer once (a
        // duplicate and an index outside the pool free nothing).
        let mut held = second.bufs.clone();
        held.swap(0, 1);
        held[5] = first.bufs[7];
        held.push(held[3]);
        held.push(u32::MAX);
        second.share.give_back(held);
        drop(second);
        assert_eq!(
            mem.free_buffers(),
            192,
            "192 distinct lent buffers came back"
        );
        // The next port gets those buffers and the freed ring area: the one the first port
        // gave in the swap, none the first port holds now.
        let third = mem.join(&plan(&[1]), "xdp:t2").unwrap();
        assert_eq!(third.share.area.start, area.start);
        let got = set(&third.bufs);
        assert!(got.contains(&first.bufs[7]));
        assert!(!got.contains(&second_5));
        let first_holds = set(&first.bufs);
        assert_eq!(got.iter().filter(|b| first_holds.contains(b)).count(), 1);
        assert!(mem.join(&plan(&[1]), "xdp:t3").is_err());
    }

    #[test]
    fn bufset_inserts_removes_and_lists_once() {
        let mut s = BufSet::new(130);
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(129));
        assert!(!s.insert(130), "out of range is never a member");
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 129]);
        assert!(s.remove(3));
        assert!(!s.remove(3));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![129]);
    }
}

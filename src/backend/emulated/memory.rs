//! Emulated netmap memory: one region per parent name, with an interface area, a ring area
//! and a buffer pool.

use std::sync::{Arc, Mutex};

use super::{lock, BUF_SIZE};
use crate::error::Error;
use crate::region::Region;
use crate::sync::raw::ring_bytes;

pub(super) struct EmuMem {
    pub(super) region: Arc<Region>,
    pub(super) id: u16,
    if_end: usize,
    pub(super) ring_end: usize,
    nbufs: u32,
    alloc: Mutex<MemAlloc>,
}

#[derive(Default)]
struct MemAlloc {
    if_next: usize,
    if_free: Vec<(usize, usize)>,
    ring_next: usize,
    ring_free: Vec<(usize, usize)>,
    buf_next: u32,
    buf_free: Vec<u32>,
    /// One bit per buffer below `buf_next`: set while some ring slot owns it. Frees are
    /// checked against it, so a buffer index that a hostile write left in a slot can never
    /// enter the free list twice (or at all, when it was never handed out).
    in_use: Vec<u64>,
}

impl MemAlloc {
    fn mark(&mut self, b: u32, used: bool) -> bool {
        let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
        if self.in_use.len() <= w {
            self.in_use.resize(w + 1, 0);
        }
        let was = self.in_use[w] & bit != 0;
        if used {
            self.in_use[w] |= bit;
        } else {
            self.in_use[w] &= !bit;
        }
        was
    }
}

fn memory_size() -> usize {
    if cfg!(miri) {
        return 1 << 20;
    }
    std::env::var("NETMAP_RS_EMU_MEM_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|mb| (4..=65536).contains(mb))
        .map(|mb| mb << 20)
        .unwrap_or(256 << 20)
}

impl EmuMem {
    pub(super) fn new(id: u16) -> Result<EmuMem, Error> {
        let len = memory_size();
        let region = Region::anonymous(len)?;
        let if_end = (len / 256).max(16 << 10);
        let ring_end = if_end + (len / 16).max(64 << 10);
        let nbufs = ((len - ring_end) / BUF_SIZE as usize) as u32;
        Ok(EmuMem {
            region: Arc::new(region),
            id,
            if_end,
            ring_end,
            nbufs,
            alloc: Mutex::new(MemAlloc {
                if_next: 0,
                ring_next: if_end,
                // Buffers 0 and 1 are reserved, as in the kernel.
                buf_next: 2,
                ..Default::default()
            }),
        })
    }

    fn exhausted(what: &str) -> Error {
        Error::BindFail(format!(
            "emulated netmap memory has no room for {what}: use fewer or smaller rings, close \
             unused pipes, or raise NETMAP_RS_EMU_MEM_MB (default 256)"
        ))
    }

    fn alloc_area(
        free: &mut Vec<(usize, usize)>,
        next: &mut usize,
        end: usize,
        size: usize,
        align: usize,
    ) -> Option<usize> {
        let size = size.next_multiple_of(align);
        if let Some(pos) = free.iter().position(|&(_, s)| s == size) {
            return Some(free.swap_remove(pos).0);
        }
        let off = next.next_multiple_of(align);
        if off + size > end {
            return None;
        }
        *next = off + size;
        Some(off)
    }

    pub(super) fn alloc_if(&self, size: usize) -> Result<usize, Error> {
        let mut a = lock(&self.alloc);
        let a = &mut *a;
        Self::alloc_area(&mut a.if_free, &mut a.if_next, self.if_end, size, 64)
            .ok_or_else(|| Self::exhausted("another interface"))
    }

    pub(super) fn free_if(&self, off: usize, size: usize) {
        lock(&self.alloc)
            .if_free
            .push((off, size.next_multiple_of(64)));
    }

    pub(super) fn alloc_ring(&self, num_slots: u32) -> Result<usize, Error> {
        let mut a = lock(&self.alloc);
        let a = &mut *a;
        Self::alloc_area(
            &mut a.ring_free,
            &mut a.ring_next,
            self.ring_end,
            ring_bytes(num_slots),
            128,
        )
        .ok_or_else(|| Self::exhausted("another ring"))
    }

    pub(super) fn free_ring(&self, off: usize, num_slots: u32) {
        lock(&self.alloc)
            .ring_free
            .push((off, ring_bytes(num_slots).next_multiple_of(128)));
    }

    pub(super) fn alloc_bufs(&self, n: usize) -> Result<Vec<u32>, Error> {
        let mut a = lock(&self.alloc);
        let fresh = (self.nbufs - a.buf_next) as usize;
        if a.buf_free.len() + fresh < n {
            return Err(Self::exhausted(&format!("{n} more buffers")));
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let b = match a.buf_free.pop() {
                Some(b) => b,
                None => {
                    a.buf_next += 1;
                    a.buf_next - 1
                }
            };
            a.mark(b, true);
            out.push(b);
        }
        Ok(out)
    }

    /// Gives buffers back to the pool. Only indices that are currently handed out are taken
    /// back, each once: an index that is out of range, reserved, already free or repeated
    /// (what a hostile write into a slot leaves behind) is ignored. Returns how many were
    /// refused.
    pub(super) fn free_bufs(&self, bufs: impl IntoIterator<Item = u32>) -> usize {
        let mut a = lock(&self.alloc);
        let mut refused = 0;
        for b in bufs {
            if b >= 2 && b < a.buf_next && a.mark(b, false) {
                a.buf_free.push(b);
            } else {
                refused += 1;
            }
        }
        refused
    }
}

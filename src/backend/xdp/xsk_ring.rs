//! The four AF_XDP rings as mapped from the socket: single-producer/single-consumer arrays with
//! `u32` producer and consumer indices shared with the kernel (Acquire loads of the other
//! side's index, Release stores of ours). Everything read from the kernel's side (indices and
//! descriptors) is checked before use: an index that claims more entries than the ring holds,
//! or a descriptor pointing outside the UMEM or across a frame boundary, is reported as
//! [`Error::BadLayout`] and not consumed.

use std::io;
use std::mem::size_of;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::backend::linux::sys::{self, XdpDesc};
use crate::error::Error;
use crate::region::Region;

/// UMEM geometry the rings validate addresses against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UmemGeometry {
    /// UMEM length in bytes.
    pub len: u64,
    /// Frame (chunk) size in bytes, a power of two.
    pub frame_size: u32,
}

impl UmemGeometry {
    /// Whether `[addr, addr + len)` lies inside one frame of the UMEM.
    pub(crate) fn contains(&self, addr: u64, len: u32) -> bool {
        let fs = self.frame_size as u64;
        addr < self.len && (addr % fs) + len as u64 <= fs
    }
}

/// Which ring (for mapping offsets and messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingKind {
    /// User → kernel: free frames for reception.
    Fill,
    /// Kernel → user: frames whose transmission finished.
    Completion,
    /// Kernel → user: received packets.
    Rx,
    /// User → kernel: packets to send.
    Tx,
}

impl RingKind {
    fn pgoff(self) -> i64 {
        match self {
            RingKind::Fill => sys::XDP_UMEM_PGOFF_FILL_RING,
            RingKind::Completion => sys::XDP_UMEM_PGOFF_COMPLETION_RING,
            RingKind::Rx => sys::XDP_PGOFF_RX_RING,
            RingKind::Tx => sys::XDP_PGOFF_TX_RING,
        }
    }

    fn offsets(self, o: &libc::xdp_mmap_offsets) -> libc::xdp_ring_offset {
        match self {
            RingKind::Fill => o.fr,
            RingKind::Completion => o.cr,
            RingKind::Rx => o.rx,
            RingKind::Tx => o.tx,
        }
    }
}

/// One mapped ring: the mapping and typed pointers into it.
#[derive(Debug)]
struct Mapped<T> {
    kind: RingKind,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    // Last: the pointers above point into it.
    _map: Region,
}

// SAFETY: the pointers target the owned mapping; the ring protocol (one user-side owner,
// atomics for shared indices) is upheld by `&mut self` on every operation.
unsafe impl<T: Send> Send for Mapped<T> {}

impl<T: Copy> Mapped<T> {
    fn new(
        fd: BorrowedFd<'_>,
        kind: RingKind,
        offsets: &libc::xdp_mmap_offsets,
        size: u32,
    ) -> io::Result<Mapped<T>> {
        let off = kind.offsets(offsets);
        let bytes = (size as usize)
            .checked_mul(size_of::<T>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))?;
        let len = off.desc as usize + bytes;
        let map = Region::map_fd(fd, len, kind.pgoff(), true)?;
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "XDP mmap offsets outside the ring mapping",
            )
        };
        let producer = map.at(off.producer as usize, 4, 4).ok_or_else(bad)?.cast();
        let consumer = map.at(off.consumer as usize, 4, 4).ok_or_else(bad)?.cast();
        let flags = map.at(off.flags as usize, 4, 4).ok_or_else(bad)?.cast();
        let descs = map
            .at(off.desc as usize, bytes, std::mem::align_of::<T>())
            .ok_or_else(bad)?
            .cast();
        Ok(Mapped {
            kind,
            producer,
            consumer,
            flags,
            descs,
            size,
            _map: map,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (checked in new), alive as long as the mapping; the
        // kernel accesses it atomically as well.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer().
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> u32 {
        // SAFETY: as for producer().
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed)
    }

    fn read(&self, idx: u32) -> T {
        // SAFETY: idx & (size - 1) < size entries, all inside the mapping (checked in new);
        // the entry is owned by the user side between the consumer and producer indices.
        unsafe {
            self.descs
                .as_ptr()
                .add((idx & (self.size - 1)) as usize)
                .read()
        }
    }

    fn write(&mut self, idx: u32, v: T) {
        // SAFETY: as in read(); the entry is owned by the user side until the producer index
        // is released past it.
        unsafe {
            self.descs
                .as_ptr()
                .add((idx & (self.size - 1)) as usize)
                .write(v)
        }
    }

    fn corrupt(&self, what: String) -> Error {
        Error::BadLayout(format!("AF_XDP {:?} ring: {what}", self.kind))
    }
}

/// A ring the user produces into (fill, TX).
#[derive(Debug)]
struct ProdRing<T> {
    m: Mapped<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    fn new(m: Mapped<T>) -> Self {
        let cached_prod = m.producer().load(Ordering::Relaxed);
        let cached_cons = m.consumer().load(Ordering::Acquire);
        ProdRing {
            m,
            cached_prod,
            cached_cons,
        }
    }

    /// Free entries, refreshing the consumer index from the kernel.
    fn free(&mut self) -> Result<u32, Error> {
        self.cached_cons = self.m.consumer().load(Ordering::Acquire);
        let used = self.cached_prod.wrapping_sub(self.cached_cons);
        if used > self.m.size {
            return Err(self.m.corrupt(format!(
                "consumer index {} is not within {} entries behind producer {}",
                self.cached_cons, self.m.size, self.cached_prod
            )));
        }
        Ok(self.m.size - used)
    }

    /// Writes as many of `items` as fit and publishes them; returns how many.
    fn push(&mut self, items: &[T]) -> Result<usize, Error> {
        let n = (self.free()? as usize).min(items.len());
        for (i, &v) in items[..n].iter().enumerate() {
            self.m.write(self.cached_prod.wrapping_add(i as u32), v);
        }
        self.cached_prod = self.cached_prod.wrapping_add(n as u32);
        self.m.producer().store(self.cached_prod, Ordering::Release);
        Ok(n)
    }

    /// Entries published and not yet consumed by the kernel.
    fn pending(&mut self) -> Result<u32, Error> {
        Ok(self.m.size - self.free()?)
    }
}

/// A ring the user consumes from (RX, completion).
#[derive(Debug)]
struct ConsRing<T> {
    m: Mapped<T>,
    cached_cons: u32,
}

impl<T: Copy> ConsRing<T> {
    fn new(m: Mapped<T>) -> Self {
        let cached_cons = m.consumer().load(Ordering::Relaxed);
        ConsRing { m, cached_cons }
    }

    /// Copies out up to `out.len()` entries that pass `valid`, then releases them to the
    /// kernel. An invalid entry stops the batch; if it is the first one, it is an error and the
    /// ring is not advanced.
    fn pop(&mut self, out: &mut [T], valid: impl Fn(&T) -> Option<String>) -> Result<usize, Error> {
        let prod = self.m.producer().load(Ordering::Acquire);
        let avail = prod.wrapping_sub(self.cached_cons);
        if avail > self.m.size {
            return Err(self.m.corrupt(format!(
                "producer index {prod} is more than {} entries ahead of consumer {}",
                self.m.size, self.cached_cons
            )));
        }
        let want = (avail as usize).min(out.len());
        let mut n = 0;
        while n < want {
            let idx = self.cached_cons.wrapping_add(n as u32);
            let v = self.m.read(idx);
            if let Some(why) = valid(&v) {
                if n == 0 {
                    return Err(self.m.corrupt(format!("entry at index {idx}: {why}")));
                }
                break;
            }
            out[n] = v;
            n += 1;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n as u32);
        self.m.consumer().store(self.cached_cons, Ordering::Release);
        Ok(n)
    }
}

fn bad_input(msg: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

/// Fill ring: hands free UMEM frames (frame-aligned addresses) to the kernel for reception.
#[derive(Debug)]
pub(crate) struct XskFillRing {
    ring: ProdRing<u64>,
    geom: UmemGeometry,
}

/// Completion ring: returns the addresses of frames whose transmission finished.
#[derive(Debug)]
pub(crate) struct XskCompRing {
    ring: ConsRing<u64>,
    geom: UmemGeometry,
}

/// RX ring: received packets as UMEM descriptors.
#[derive(Debug)]
pub(crate) struct XskRxRing {
    ring: ConsRing<XdpDesc>,
    geom: UmemGeometry,
}

/// TX ring: packets to send as UMEM descriptors.
#[derive(Debug)]
pub(crate) struct XskTxRing {
    ring: ProdRing<XdpDesc>,
    geom: UmemGeometry,
    max_frame: usize,
}

impl XskFillRing {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
        geom: UmemGeometry,
    ) -> io::Result<Self> {
        Ok(XskFillRing {
            ring: ProdRing::new(Mapped::new(fd, RingKind::Fill, off, size)?),
            geom,
        })
    }

    /// Gives frames to the kernel; returns how many fit. Each address must be the start of a
    /// frame inside the UMEM.
    pub(crate) fn produce(&mut self, addrs: &[u64]) -> Result<usize, Error> {
        let fs = self.geom.frame_size as u64;
        if let Some(a) = addrs.iter().find(|&&a| a >= self.geom.len || a % fs != 0) {
            return Err(bad_input(format!(
                "fill address {a:#x} is not a frame start inside the UMEM ({} bytes, frames of {fs})",
                self.geom.len
            )));
        }
        self.ring.push(addrs)
    }

    /// Whether the kernel asks for a wakeup (`poll`/`recvfrom`) to take frames from it.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ring.m.flags() & sys::XDP_RING_NEED_WAKEUP != 0
    }
}

impl XskCompRing {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
        geom: UmemGeometry,
    ) -> io::Result<Self> {
        Ok(XskCompRing {
            ring: ConsRing::new(Mapped::new(fd, RingKind::Completion, off, size)?),
            geom,
        })
    }

    /// Takes addresses of transmitted frames (each checked to lie inside the UMEM).
    pub(crate) fn consume(&mut self, out: &mut [u64]) -> Result<usize, Error> {
        let len = self.geom.len;
        self.ring.pop(out, |&a| {
            (a >= len).then(|| format!("address {a:#x} outside the UMEM ({len} bytes)"))
        })
    }
}

impl XskRxRing {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
        geom: UmemGeometry,
    ) -> io::Result<Self> {
        Ok(XskRxRing {
            ring: ConsRing::new(Mapped::new(fd, RingKind::Rx, off, size)?),
            geom,
        })
    }

    /// Takes received descriptors (each checked to lie within one UMEM frame).
    pub(crate) fn consume(&mut self, out: &mut [XdpDesc]) -> Result<usize, Error> {
        let g = self.geom;
        self.ring.pop(out, |d| {
            (!g.contains(d.addr, d.len)).then(|| {
                format!(
                    "descriptor addr {:#x} len {} is not inside one {}-byte frame of the \
                     {}-byte UMEM",
                    d.addr, d.len, g.frame_size, g.len
                )
            })
        })
    }
}

impl XskTxRing {
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_mmap_offsets,
        size: u32,
        geom: UmemGeometry,
        max_frame: usize,
    ) -> io::Result<Self> {
        Ok(XskTxRing {
            ring: ProdRing::new(Mapped::new(fd, RingKind::Tx, off, size)?),
            geom,
            max_frame,
        })
    }

    /// Queues descriptors for sending; returns how many fit. Errors: a frame longer than the
    /// interface takes ([`Error::FrameOverMtu`]) or a descriptor outside one UMEM frame.
    pub(crate) fn produce(&mut self, descs: &[XdpDesc]) -> Result<usize, Error> {
        for d in descs {
            if d.len as usize > self.max_frame {
                return Err(Error::FrameOverMtu {
                    len: d.len as usize,
                    max: self.max_frame,
                });
            }
            if !self.geom.contains(d.addr, d.len) {
                return Err(bad_input(format!(
                    "TX descriptor addr {:#x} len {} is not inside one frame of the UMEM",
                    d.addr, d.len
                )));
            }
        }
        self.ring.push(descs)
    }

    /// Descriptors queued and not yet taken by the kernel.
    pub(crate) fn pending(&mut self) -> Result<u32, Error> {
        self.ring.pending()
    }

    /// Whether the kernel asks for a `sendto` kick to send what was queued.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ring.m.flags() & sys::XDP_RING_NEED_WAKEUP != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_cross_frame_and_out_of_range() {
        let g = UmemGeometry {
            len: 4 * 2048,
            frame_size: 2048,
        };
        assert!(g.contains(0, 2048));
        assert!(g.contains(2048 + 256, 1792));
        assert!(!g.contains(2048 + 256, 1793));
        assert!(!g.contains(4 * 2048, 0));
        assert!(!g.contains(u64::MAX, 1));
    }
}

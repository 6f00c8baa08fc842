//! The UMEM: a caller-provided, page-aligned range of a [`Region`] cut into frames of 2048
//! or 4096 bytes; frame `i` starts at UMEM address `i * frame_size`. (Behind netmap rings the
//! UMEM is the netmap buffer pool and the frame index is the netmap buffer index relative to
//! the UMEM start.) The first socket on a UMEM registers it (`XDP_UMEM_REG`); later sockets,
//! for other queues or interfaces, bind with `XDP_SHARED_UMEM` to it while it is open.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
#[cfg(test)]
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::xsk_ring::UmemGeometry;
use crate::backend::linux::os;
use crate::backend::linux::sys;
use crate::backend::linux::{os_error, CAPS_RAW};
use crate::error::Error;
use crate::region::Region;

/// Frame memory shared by AF_XDP sockets. Cheap to clone (one registration).
#[derive(Debug, Clone)]
pub(crate) struct Umem {
    pub(super) inner: Arc<UmemInner>,
}

#[derive(Debug)]
pub(super) struct UmemInner {
    region: Arc<Region>,
    offset: usize,
    len: usize,
    frame_size: u32,
    /// The sockets bound on the UMEM (the one that registered it and those sharing it):
    /// (fd, ifindex, queue). Its lock is held while a socket is set up, so two sockets
    /// never both register the memory.
    sockets: Mutex<Vec<(Weak<OwnedFd>, u32, u32)>>,
}

/// The sockets bound on a [`Umem`], locked (see [`Umem::sockets`]).
pub(super) struct UmemSockets<'a>(MutexGuard<'a, Vec<(Weak<OwnedFd>, u32, u32)>>);

impl UmemSockets<'_> {
    /// A live socket on the UMEM that a new socket for queue `queue` of interface `ifindex`
    /// binds to with `XDP_SHARED_UMEM` (any of them: the kernel's UMEM lives while one
    /// does), or `None` when none is open (the new socket registers the memory). `Err(())`
    /// when that queue already has a socket on this UMEM.
    pub(super) fn share_fd(
        &mut self,
        ifindex: u32,
        queue: u32,
    ) -> Result<Option<Arc<OwnedFd>>, ()> {
        self.0.retain(|(w, _, _)| w.strong_count() > 0);
        if self.0.iter().any(|&(_, i, q)| (i, q) == (ifindex, queue)) {
            return Err(());
        }
        Ok(self.0.iter().find_map(|(w, _, _)| w.upgrade()))
    }

    /// Records a socket bound on the UMEM.
    pub(super) fn add(&mut self, fd: &Arc<OwnedFd>, ifindex: u32, queue: u32) {
        self.0.push((Arc::downgrade(fd), ifindex, queue));
    }
}

pub(super) fn invalid(msg: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

impl Umem {
    /// A UMEM over `len` bytes of `region` at `offset`. `offset` must be page-aligned, `len` a
    /// non-zero multiple of `frame_size`, and `frame_size` 2048 or 4096 (a power of two between
    /// 2048 and the page size).
    pub(crate) fn new(
        region: Arc<Region>,
        offset: usize,
        len: usize,
        frame_size: u32,
    ) -> Result<Umem, Error> {
        let fs = frame_size as usize;
        if !frame_size.is_power_of_two() || fs < 2048 || fs > os::page_size() {
            return Err(invalid(format!(
                "UMEM frame size {frame_size} must be a power of two from 2048 to the page size"
            )));
        }
        if len == 0 || len % fs != 0 || offset % os::page_size() != 0 {
            return Err(invalid(format!(
                "UMEM range (offset {offset}, length {len}) must start on a page and hold a \
                 whole number of {frame_size}-byte frames"
            )));
        }
        if region.at(offset, len, 1).is_none() {
            return Err(invalid(format!(
                "UMEM range (offset {offset}, length {len}) is outside the {}-byte region",
                region.len()
            )));
        }
        Ok(Umem {
            inner: Arc::new(UmemInner {
                region,
                offset,
                len,
                frame_size,
                sockets: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The sockets bound on it, locked until the guard drops.
    pub(super) fn sockets(&self) -> UmemSockets<'_> {
        UmemSockets(self.inner.sockets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Frame size in bytes.
    pub(crate) fn frame_size(&self) -> u32 {
        self.inner.frame_size
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.inner.len
    }

    /// Number of frames.
    #[cfg(test)]
    pub(crate) fn frames(&self) -> u32 {
        (self.inner.len / self.inner.frame_size as usize) as u32
    }

    /// UMEM address of frame `index`.
    #[cfg(test)]
    pub(crate) fn frame_addr(&self, index: u32) -> u64 {
        index as u64 * self.inner.frame_size as u64
    }

    pub(crate) fn geometry(&self) -> UmemGeometry {
        UmemGeometry {
            len: self.inner.len as u64,
            frame_size: self.inner.frame_size,
        }
    }

    /// Pointer to `len` bytes at UMEM address `addr`, if they lie within one frame.
    #[cfg(test)]
    pub(crate) fn ptr(&self, addr: u64, len: usize) -> Option<NonNull<u8>> {
        let len32 = u32::try_from(len).ok()?;
        if !self.geometry().contains(addr, len32) {
            return None;
        }
        self.inner
            .region
            .at(self.inner.offset + addr as usize, len, 1)
    }

    /// Copies `data` into the UMEM at `addr` (within one frame). The caller must own the frame
    /// (not on a fill or TX ring).
    #[cfg(test)]
    pub(crate) fn write(&self, addr: u64, data: &[u8]) -> Result<(), Error> {
        let p = self.ptr(addr, data.len()).ok_or_else(|| {
            invalid(format!(
                "write of {} bytes at UMEM address {addr:#x} leaves its frame",
                data.len()
            ))
        })?;
        // SAFETY: p..p+len is inside the region (checked by ptr()); the region stays mapped
        // while self holds its Arc; `data` cannot overlap the region through a Rust reference
        // because no reference to region memory is ever handed out.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p.as_ptr(), data.len()) };
        Ok(())
    }

    /// Copies `out.len()` bytes from the UMEM at `addr` (within one frame). The caller must own
    /// the frame (taken from the RX or completion ring).
    #[cfg(test)]
    pub(crate) fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), Error> {
        let p = self.ptr(addr, out.len()).ok_or_else(|| {
            invalid(format!(
                "read of {} bytes at UMEM address {addr:#x} leaves its frame",
                out.len()
            ))
        })?;
        // SAFETY: as in write(), reversed.
        unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    fn base_addr(&self) -> u64 {
        self.inner.region.base().as_ptr() as u64 + self.inner.offset as u64
    }
}

pub(super) fn umem_reg(fd: BorrowedFd<'_>, umem: &Umem) -> Result<(), Error> {
    let reg = libc::xdp_umem_reg {
        addr: umem.base_addr(),
        len: umem.len() as u64,
        chunk_size: umem.frame_size(),
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    let try_sizes = |fd| {
        // The full 32-byte form first (tx_metadata_len zero: older kernels read it as padding),
        // the 24-byte form of 4.18..5.3 on EINVAL.
        match os::setsockopt(fd, sys::SOL_XDP, sys::XDP_UMEM_REG, &reg) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => os::setsockopt_len(
                fd,
                sys::SOL_XDP,
                sys::XDP_UMEM_REG,
                &reg,
                sys::XDP_UMEM_REG_V1_SIZE,
            )
            .map_err(|_| e),
            r => r,
        }
    };
    let r = match try_sizes(fd) {
        // The pinned pages are charged to RLIMIT_MEMLOCK without CAP_IPC_LOCK.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS) | Some(libc::ENOMEM) | Some(libc::EPERM)
            ) && super::bpf::raise_memlock() =>
        {
            try_sizes(fd)
        }
        r => r,
    };
    r.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => crate::backend::linux::iface::io_context(
            e,
            "registering the UMEM (XDP_UMEM_REG): locked-memory limit too low; raise \
             RLIMIT_MEMLOCK (ulimit -l unlimited) or grant CAP_IPC_LOCK",
        ),
        _ => os_error(e, "registering the UMEM (XDP_UMEM_REG)", CAPS_RAW, ""),
    })
}

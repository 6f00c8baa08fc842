//! The memory region shared between the user and the kernel (or the emulated kernel).
//!
//! A [`Region`] is either a `mmap` of `/dev/netmap` or an anonymous, zeroed, page-aligned
//! allocation used by the emulated backend. It is only ever handed out as a raw base pointer
//! plus a length: no Rust reference to the region as a whole exists, because the other party
//! writes parts of it concurrently.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A mapped memory region. Unmapped (or freed) when dropped.
#[derive(Debug)]
pub(crate) struct Region {
    base: NonNull<u8>,
    len: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// `mmap`ed; `munmap` on drop.
    #[cfg_attr(miri, allow(dead_code))]
    Mapped,
    /// `mmap`ed on huge pages (`MAP_HUGETLB`, Linux; `len` is a multiple of the huge page
    /// size); `munmap` on drop.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    HugeMapped,
    /// Allocated with the global allocator with this alignment (Miri only).
    #[cfg_attr(not(miri), allow(dead_code))]
    Heap(usize),
}

// SAFETY: the region is plain memory owned by this value; all access to its contents goes
// through raw pointers under the ring ownership protocol (atomics on head/cur/tail), so sharing
// the handle between threads cannot by itself create a data race.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` exposes no interior data by reference.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of `fd` (a `/dev/netmap` descriptor) read-write and shared.
    #[cfg_attr(not(netmap_kernel), allow(dead_code))]
    pub(crate) fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Region> {
        Self::map_fd(fd, len, 0, false)
    }

    /// Maps `len` bytes of `fd` at `offset` read-write and shared: the netmap memory, or a
    /// packet socket's rings (AF_XDP, AF_PACKET), which `populate` pre-faults
    /// (`MAP_POPULATE`, Linux).
    #[cfg_attr(
        not(any(target_os = "linux", all(feature = "sys", target_os = "freebsd"))),
        allow(dead_code)
    )]
    pub(crate) fn map_fd(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: i64,
        populate: bool,
    ) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a memory mapping of size 0 was asked for",
            ));
        }
        #[cfg(target_os = "linux")]
        let extra = if populate { libc::MAP_POPULATE } else { 0 };
        #[cfg(not(target_os = "linux"))]
        let extra = {
            let _ = populate;
            0
        };
        // SAFETY: mmap with a null hint has no preconditions on our address space; we check
        // MAP_FAILED before using the result. The fd stays open for the duration of the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | extra,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            base: NonNull::new(p.cast()).expect("mmap returned null without MAP_FAILED"),
            len,
            kind: Kind::Mapped,
        })
    }

    /// An anonymous zeroed region of `len` bytes, aligned to 4096. Pages are committed lazily
    /// by the OS (outside Miri), so a large reservation costs only what is touched.
    pub(crate) fn anonymous(len: usize) -> io::Result<Region> {
        assert!(len > 0);
        #[cfg(not(miri))]
        {
            // SAFETY: anonymous private mapping, null hint; result checked for MAP_FAILED.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANON,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Region {
                base: NonNull::new(p.cast()).expect("mmap returned null"),
                len,
                kind: Kind::Mapped,
            })
        }
        #[cfg(miri)]
        {
            let align = 4096;
            let layout = std::alloc::Layout::from_size_align(len, align)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            // SAFETY: layout has non-zero size (asserted above).
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            let base =
                NonNull::new(p).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
            Ok(Region {
                base,
                len,
                kind: Kind::Heap(align),
            })
        }
    }

    /// An anonymous zeroed region of at least `len` bytes on huge pages (`MAP_HUGETLB`), its
    /// length rounded up to whole huge pages of `huge_page` bytes. The pages are reserved at
    /// once: `ENOMEM` when the pool (`/proc/sys/vm/nr_hugepages`) lacks them, so a later touch
    /// never faults for want of one.
    /// (Under Miri: `Unsupported`, and the caller falls back to [`anonymous`](Self::anonymous).)
    #[cfg(target_os = "linux")]
    pub(crate) fn anonymous_huge(len: usize, huge_page: usize) -> io::Result<Region> {
        assert!(len > 0 && huge_page.is_power_of_two());
        if cfg!(miri) {
            return Err(io::ErrorKind::Unsupported.into());
        }
        let len = len.next_multiple_of(huge_page);
        // SAFETY: anonymous private mapping, null hint; result checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON | libc::MAP_HUGETLB,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            base: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
            kind: Kind::HugeMapped,
        })
    }

    /// Whether the region lies on huge pages.
    pub(crate) fn is_huge(&self) -> bool {
        matches!(self.kind, Kind::HugeMapped)
    }

    /// Base address of the region.
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the region in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Pointer to `offset` within the region, if `offset + size` fits and `offset` is aligned
    /// to `align`.
    #[inline]
    pub(crate) fn at(&self, offset: usize, size: usize, align: usize) -> Option<NonNull<u8>> {
        let end = offset.checked_add(size)?;
        if end > self.len || offset % align != 0 {
            return None;
        }
        // SAFETY: offset + size <= len, so the result stays inside the allocation (offset may
        // equal len only when size is 0, which is one-past-the-end and allowed).
        Some(unsafe { self.base.add(offset) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match self.kind {
            Kind::Mapped | Kind::HugeMapped => {
                // SAFETY: base/len are exactly what mmap returned (a huge mapping's len is
                // whole huge pages, as munmap needs); nothing references the
                // region any more (every user holds the Region alive through an Arc).
                unsafe {
                    libc::munmap(self.base.as_ptr().cast(), self.len);
                }
            }
            Kind::Heap(align) => {
                // SAFETY: allocated in `anonymous` with this exact layout.
                unsafe {
                    std::alloc::dealloc(
                        self.base.as_ptr(),
                        std::alloc::Layout::from_size_align_unchecked(self.len, align),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_checks_bounds_and_alignment() {
        let r = Region::anonymous(8192).unwrap();
        assert_eq!(r.len(), 8192);
        assert!(r.at(0, 8192, 4096).is_some());
        assert!(r.at(1, 8191, 1).is_some());
        assert!(r.at(1, 8192, 1).is_none());
        assert!(r.at(4, 4, 8).is_none());
        assert!(r.at(usize::MAX, 2, 1).is_none());
        assert_eq!(r.base().as_ptr() as usize % 4096, 0);
    }
}

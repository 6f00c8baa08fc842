//! Emulated netmap memory: one region per parent name, with a control area ([`super::ctl`]),
//! an interface area, a ring area and a buffer pool. On Linux the region is a shared memory
//! object other processes of the user map too ([`super::shm`]); elsewhere, under Miri, or
//! with `NETMAP_RS_EMU_SHARED=0`, an anonymous private mapping.
//!
//! The allocator's state lives in the control area, so every process allocates from the same
//! pool; it is only touched under [`EmuMem::locked`] (a process-local mutex plus, when shared,
//! `flock` on the object), and every value read from it is bounds-checked.

use std::sync::{Arc, Mutex, MutexGuard};

use super::ctl::{Area, Ctl};
use super::lock;
use crate::error::Error;
use crate::region::Region;
use crate::ring::ring_bytes;

#[cfg(all(target_os = "linux", not(miri)))]
pub(super) use super::shm::ShmFile;

/// Stand-in where memory is never shared.
#[cfg(not(all(target_os = "linux", not(miri))))]
pub(super) struct ShmFile;

pub(super) struct EmuMem {
    pub(super) region: Arc<Region>,
    pub(super) ctl: Ctl,
    pub(super) id: u16,
    /// The memory lock; holds how many live `Pipe` views of this process use each slot.
    alloc: Mutex<Vec<u32>>,
    /// The shared object, when the memory is shared (taken on drop).
    shm: Option<ShmFile>,
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

/// The memory lock, held: allocation and the pipe table.
pub(super) struct MemGuard<'a> {
    mem: &'a EmuMem,
    local: MutexGuard<'a, Vec<u32>>,
}

impl Drop for MemGuard<'_> {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(s) = &self.mem.shm {
            s.unlock_alloc();
        }
    }
}

impl EmuMem {
    /// The memory of parent name `parent`: the shared object when sharing is on (joined when
    /// another process has it, created otherwise), else a private region.
    pub(super) fn new(id: u16, parent: &str) -> Result<EmuMem, Error> {
        let len = memory_size();
        #[cfg(all(target_os = "linux", not(miri)))]
        if super::shm::enabled() {
            let path = super::shm::path_for(parent);
            if std::path::Path::new(&path).exists() || super::shm::room_for(len) {
                return Self::shared(id, &path, len);
            }
            tracing::warn!(
                path,
                len,
                "not enough room in /dev/shm for shared emulated memory: this parent's pipes \
                 stay private to the process (lower NETMAP_RS_EMU_MEM_MB to share them)"
            );
        }
        let _ = parent;
        let region = Arc::new(Region::anonymous(len)?);
        let ctl = Ctl::new(region.clone());
        ctl.init();
        Ok(Self::with(region, ctl, id, None))
    }

    /// Creates or joins the shared object at `path`.
    #[cfg(all(target_os = "linux", not(miri)))]
    fn shared(id: u16, path: &str, len: usize) -> Result<EmuMem, Error> {
        use super::shm::Opened;
        let init = |region: &Arc<Region>| Ctl::new(region.clone()).init();
        match ShmFile::open_or_create(path, len, &init)? {
            Opened::Created(shm, region) => {
                tracing::debug!(path, "created shared emulated memory");
                let ctl = Ctl::new(region.clone());
                Ok(Self::with(region, ctl, id, Some(shm)))
            }
            Opened::Joined(shm, region) => {
                let ctl = Ctl::new(region.clone());
                if !ctl.valid() {
                    return Err(Error::BadLayout(format!(
                        "{path} does not hold an emulated netmap memory of this version; \
                         remove it, or set NETMAP_RS_EMU_NS to use other names"
                    )));
                }
                tracing::debug!(path, "joined shared emulated memory");
                Ok(Self::with(region, ctl, id, Some(shm)))
            }
        }
    }

    fn with(region: Arc<Region>, ctl: Ctl, id: u16, shm: Option<ShmFile>) -> EmuMem {
        EmuMem {
            alloc: Mutex::new(vec![0; ctl.g.max_pipes]),
            region,
            ctl,
            id,
            shm,
        }
    }

    /// The shared object, when this memory is shared between processes.
    pub(super) fn shm(&self) -> Option<&ShmFile> {
        self.shm.as_ref()
    }

    /// Takes the memory lock.
    pub(super) fn locked(&self) -> MemGuard<'_> {
        let g = lock(&self.alloc);
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(s) = &self.shm {
            s.lock_alloc();
        }
        MemGuard {
            mem: self,
            local: g,
        }
    }

    fn exhausted(what: &str) -> Error {
        Error::BindFail(format!(
            "emulated netmap memory has no room for {what}: use fewer or smaller rings, close \
             unused pipes, or raise NETMAP_RS_EMU_MEM_MB (default 256)"
        ))
    }

    pub(super) fn alloc_if(&self, size: usize) -> Result<usize, Error> {
        self.locked().alloc_if(size)
    }

    pub(super) fn free_if(&self, off: usize, size: usize) {
        let _g = self.locked();
        self.ctl.free_area(Area::If, off, size, 64);
    }
}

impl MemGuard<'_> {
    pub(super) fn ctl(&self) -> &Ctl {
        &self.mem.ctl
    }

    /// The shared object, when the memory is shared.
    #[cfg_attr(not(all(target_os = "linux", not(miri))), allow(dead_code))]
    pub(super) fn shm(&self) -> Option<&ShmFile> {
        self.mem.shm.as_ref()
    }

    /// How many live pipe views of this process use slot `s`.
    pub(super) fn local_users(&mut self, s: usize) -> &mut u32 {
        &mut self.local[s]
    }

    pub(super) fn alloc_if(&self, size: usize) -> Result<usize, Error> {
        self.mem
            .ctl
            .alloc_area(Area::If, size, 64)
            .ok_or_else(|| EmuMem::exhausted("another interface"))
    }

    pub(super) fn alloc_ring(&self, num_slots: u32) -> Result<usize, Error> {
        self.mem
            .ctl
            .alloc_area(Area::Ring, ring_bytes(num_slots), 128)
            .ok_or_else(|| EmuMem::exhausted("another ring"))
    }

    pub(super) fn free_ring(&self, off: usize, num_slots: u32) {
        self.mem
            .ctl
            .free_area(Area::Ring, off, ring_bytes(num_slots), 128);
    }

    pub(super) fn alloc_bufs(&self, n: usize) -> Result<Vec<u32>, Error> {
        self.mem
            .ctl
            .alloc_bufs(n)
            .ok_or_else(|| EmuMem::exhausted(&format!("{n} more buffers")))
    }

    /// Gives buffers back to the pool. Only indices that are currently handed out are taken
    /// back, each once: an index that is out of range, reserved, already free or repeated
    /// (what a hostile write into a slot leaves behind) is ignored. Returns how many were
    /// refused.
    pub(super) fn free_bufs(&self, bufs: impl IntoIterator<Item = u32>) -> usize {
        self.mem.ctl.free_bufs(bufs)
    }
}

impl Drop for EmuMem {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(s) = self.shm.take() {
            s.close();
        }
    }
}

//! Emulated netmap memory: one region per parent name, with a control area ([`super::ctl`]),
//! an interface area, a ring area and a buffer pool. On Linux the region is an unnamed shared
//! memory object other processes of the user map too ([`super::shm`], found through
//! [`super::rendezvous`]); elsewhere, under Miri, or with `NETMAP_RS_EMU_SHARED=0`, an
//! anonymous private mapping.
//!
//! The allocator's state lives in the control area, so every process allocates from the same
//! pool; it is only touched under the memory lock ([`EmuMem::hold`]), and every value read
//! from it is bounds-checked.
//!
//! The memory lock is re-entrant per thread (a thread holding it may take it again, as
//! `Pipe::attach` and `Pipe`'s drop do inside the backend's own hold) and, when the memory is
//! shared, also excludes other processes (`flock`). Taking it is bounded by a deadline: a
//! process stopped while holding it (SIGSTOP, a debugger) makes [`EmuMem::hold`] fail with
//! [`Error::PortBusy`] after [`PEER_TIMEOUT`], never wait for good. The backend takes it
//! before any step that needs it, with that deadline, so the unbounded fallback in
//! [`EmuMem::locked`] is never reached from the backend.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Instant;

use super::ctl::{Area, Ctl};
use super::{lock, PEER_TIMEOUT};
use crate::error::Error;
use crate::region::Region;
use crate::ring::ring_bytes;

#[cfg(all(target_os = "linux", not(miri)))]
use super::rendezvous::{Link, Server};
#[cfg(all(target_os = "linux", not(miri)))]
pub(super) use super::shm::ShmFile;
use super::wake::Ringer;

/// Stand-in where memory is never shared.
#[cfg(not(all(target_os = "linux", not(miri))))]
pub(super) struct ShmFile;

pub(super) struct EmuMem {
    pub(super) region: Arc<Region>,
    pub(super) ctl: Ctl,
    pub(super) id: u16,
    /// The parent name, for messages.
    parent: String,
    /// How many live `Pipe` views of this process use each slot (touched under the lock).
    alloc: Mutex<Vec<u32>>,
    /// Which thread of this process holds the memory lock, and how many times.
    owner: Mutex<Owner>,
    freed: Condvar,
    /// The shared object and its rendezvous, when the memory is shared.
    #[cfg(all(target_os = "linux", not(miri)))]
    link: Option<Arc<Link>>,
    /// Serves the rendezvous name from this process (stopped on drop).
    #[cfg(all(target_os = "linux", not(miri)))]
    server: Option<Server>,
}

#[derive(Default)]
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
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

/// The memory lock, held by this thread (re-entrant; released on drop).
pub(super) struct Hold<'a> {
    mem: &'a EmuMem,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut o = lock(&self.mem.owner);
        o.depth = o.depth.saturating_sub(1);
        if o.depth == 0 {
            #[cfg(all(target_os = "linux", not(miri)))]
            if let Some(l) = &self.mem.link {
                l.shm.unlock_alloc();
            }
            o.thread = None;
            self.mem.freed.notify_all();
        }
    }
}

/// The memory lock, held, with the process-local bookkeeping: allocation and the pipe table.
pub(super) struct MemGuard<'a> {
    mem: &'a EmuMem,
    local: MutexGuard<'a, Vec<u32>>,
    _hold: Hold<'a>,
}

impl EmuMem {
    /// The memory of parent name `parent`: the shared object when sharing is on (joined when
    /// another process has it, created otherwise), else a private region. Joining waits for
    /// other processes at most [`PEER_TIMEOUT`].
    pub(super) fn new(id: u16, parent: &str) -> Result<EmuMem, Error> {
        let len = memory_size();
        #[cfg(all(target_os = "linux", not(miri)))]
        if super::shm::enabled() {
            return Self::shared(id, parent, len);
        }
        let region = Arc::new(Region::anonymous(len)?);
        let ctl = Ctl::new(region.clone());
        ctl.init();
        Ok(EmuMem {
            alloc: Mutex::new(vec![0; ctl.g.max_pipes]),
            region,
            ctl,
            id,
            parent: parent.to_string(),
            owner: Mutex::default(),
            freed: Condvar::new(),
            #[cfg(all(target_os = "linux", not(miri)))]
            link: None,
            #[cfg(all(target_os = "linux", not(miri)))]
            server: None,
        })
    }

    /// Creates or joins the shared memory of `parent`, and serves its name from here on.
    #[cfg(all(target_os = "linux", not(miri)))]
    fn shared(id: u16, parent: &str, len: usize) -> Result<EmuMem, Error> {
        let init = |region: &Arc<Region>| Ctl::new(region.clone()).init();
        let found = super::rendezvous::join_or_create(parent, len, &init)?;
        let ctl = Ctl::new(found.region.clone());
        if !ctl.valid() {
            return Err(Error::BadLayout(format!(
                "{parent}: the shared emulated memory another process of this user handed over \
                 is not an emulated netmap memory of this version (another netmap-rs \
                 version?); set NETMAP_RS_EMU_NS to keep the two apart"
            )));
        }
        tracing::debug!(
            parent,
            created = found.created,
            "shared emulated memory {}",
            if found.created { "created" } else { "joined" }
        );
        let server = Server::start(found.link.clone())?;
        super::wake::register_ringer(found.region.base().as_ptr() as usize, &found.link.ringer);
        Ok(EmuMem {
            alloc: Mutex::new(vec![0; ctl.g.max_pipes]),
            region: found.region,
            ctl,
            id,
            parent: parent.to_string(),
            owner: Mutex::default(),
            freed: Condvar::new(),
            link: Some(found.link),
            server: Some(server),
        })
    }

    /// The shared object, when this memory is shared between processes.
    pub(super) fn shm(&self) -> Option<&ShmFile> {
        #[cfg(all(target_os = "linux", not(miri)))]
        return self.link.as_deref().map(|l| &l.shm);
        #[cfg(not(all(target_os = "linux", not(miri))))]
        None
    }

    /// The ringer of a shared memory (its bells accept datagrams from it alone).
    pub(super) fn ringer(&self) -> Option<&Arc<Ringer>> {
        #[cfg(all(target_os = "linux", not(miri)))]
        return self.link.as_deref().map(|l| &l.ringer);
        #[cfg(not(all(target_os = "linux", not(miri))))]
        None
    }

    /// Takes the memory lock, waiting until `deadline` at most (for another thread of this
    /// process, and for another process when shared). Re-entrant: a thread that holds it
    /// gets it again at once.
    pub(super) fn hold(&self, deadline: Instant) -> Result<Hold<'_>, Error> {
        let me = std::thread::current().id();
        let mut o = lock(&self.owner);
        if o.thread == Some(me) {
            o.depth += 1;
            return Ok(Hold { mem: self });
        }
        while o.thread.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.busy("another thread of this process"));
            }
            o = self
                .freed
                .wait_timeout(o, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        o.thread = Some(me);
        o.depth = 1;
        drop(o);
        let hold = Hold { mem: self };
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(l) = &self.link {
            // Dropping `hold` on failure gives the local ownership back (and unlocks nothing
            // we do not hold: LOCK_UN of a lock we lack is a no-op).
            match l.shm.lock_alloc(deadline) {
                Ok(true) => {}
                Ok(false) => return Err(self.busy("another process")),
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(hold)
    }

    fn busy(&self, who: &str) -> Error {
        Error::PortBusy(format!(
            "{}: the lock of its emulated memory is held by {who} and was not released within \
             {PEER_TIMEOUT:?} (a process stopped with SIGSTOP or in a debugger?); resume or end \
             it, then retry",
            self.parent
        ))
    }

    /// Takes the memory lock for the pipe table and the allocator. The backend holds it
    /// already whenever this is called (re-entrant: immediate); otherwise it waits up to
    /// [`PEER_TIMEOUT`] and then, logging an error, for as long as it takes.
    pub(super) fn locked(&self) -> MemGuard<'_> {
        let hold = match self.hold(Instant::now() + PEER_TIMEOUT) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "emulated memory lock taken without a deadline");
                loop {
                    if let Ok(h) = self.hold(Instant::now() + PEER_TIMEOUT) {
                        break h;
                    }
                }
            }
        };
        MemGuard {
            mem: self,
            local: lock(&self.alloc),
            _hold: hold,
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
        self.mem.shm()
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
        // Stop serving the name first (the server thread holds the link too), then forget
        // the ringer; the descriptors close with the last reference to the link.
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(server) = self.server.take() {
            drop(server);
            super::wake::forget_ringer(self.region.base().as_ptr() as usize);
        }
    }
}

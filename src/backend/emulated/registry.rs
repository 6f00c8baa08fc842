//! This process's table of emulated memories (one per parent name) and pipes, and how
//! references to them are taken and given back.
//!
//! Lock order: the watcher's quiet lock, then a memory's lock ([`EmuMem::hold`]), then the
//! registry mutex. The registry mutex is never held across a wait on another process: a
//! memory is joined or created ([`find_mem`]) outside it, and the last reference to a pipe is
//! given back ([`release_pipe`]) under the memory lock, taken with a deadline (or by the
//! reaper), never under the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::memory::EmuMem;
use super::pipe::Pipe;
use super::{lock, reaper, PEER_TIMEOUT};
use crate::error::Error;

pub(super) struct Registry {
    pub(super) mems: HashMap<String, Weak<EmuMem>>,
    pub(super) pipes: HashMap<String, Weak<Pipe>>,
    next_mem_id: u16,
}

pub(super) fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            mems: HashMap::new(),
            pipes: HashMap::new(),
            next_mem_id: 1,
        })
    })
}

impl Registry {
    /// A memory id that no live memory has (ids wrap at 65535; a live one is never reused).
    fn free_mem_id(&mut self) -> Result<u16, Error> {
        for _ in 0..u16::MAX {
            let id = self.next_mem_id;
            self.next_mem_id = self.next_mem_id.wrapping_add(1).max(1);
            let taken = self
                .mems
                .values()
                .filter_map(Weak::upgrade)
                .any(|m| m.id == id);
            if !taken {
                return Ok(id);
            }
        }
        Err(Error::BindFail(
            "all 65535 emulated memory ids are in use: close pipes of other parent names".into(),
        ))
    }
}

/// Test hook: the id the next new memory will try first.
#[cfg(test)]
pub(crate) fn set_next_mem_id(id: u16) {
    lock(registry()).next_mem_id = id;
}

/// Finds the memory of parent name `parent` in the registry, or joins or creates it. The
/// registry lock is not held while another process is asked for the memory (bounded by
/// [`PEER_TIMEOUT`]); two threads racing here both end up with the same memory.
pub(super) fn find_mem(parent: &str) -> Result<Arc<EmuMem>, Error> {
    let id = {
        let mut reg = lock(registry());
        reg.mems.retain(|_, w| w.strong_count() > 0);
        if let Some(m) = reg.mems.get(parent).and_then(Weak::upgrade) {
            return Ok(m);
        }
        reg.free_mem_id()?
    };
    let m = Arc::new(EmuMem::new(id, parent)?);
    let mut reg = lock(registry());
    if let Some(other) = reg.mems.get(parent).and_then(Weak::upgrade) {
        drop(reg);
        return Ok(other); // `m` (the same shared memory, or a private one) goes
    }
    reg.mems.insert(parent.to_string(), Arc::downgrade(&m));
    Ok(m)
}

/// Finds or creates the pipe `master_name` in memory `mem`. The caller holds the memory lock.
pub(super) fn find_pipe(
    mem: &Arc<EmuMem>,
    master_name: &str,
    nrings: usize,
    nslots: u32,
) -> Result<Arc<Pipe>, Error> {
    let mut reg = lock(registry());
    // Forget pipes whose last user is gone.
    reg.pipes.retain(|_, w| w.strong_count() > 0);
    if let Some(p) = reg.pipes.get(master_name).and_then(Weak::upgrade) {
        if Arc::ptr_eq(&p.mem, mem) {
            return Ok(p);
        }
    }
    let p = Arc::new(Pipe::attach(
        mem.clone(),
        master_name.to_string(),
        nrings,
        nslots,
    )?);
    reg.pipes
        .insert(master_name.to_string(), Arc::downgrade(&p));
    Ok(p)
}

/// Drops a reference to a pipe. The last one tears the pipe's local view down (and the pipe,
/// when no other process uses it) under the memory lock: taken here with a deadline, or by
/// the reaper when another process keeps it longer.
pub(super) fn release_pipe(p: Arc<Pipe>) {
    let mem = p.mem.clone();
    let Some(p) = Arc::into_inner(p) else {
        return;
    };
    let e = match mem.hold(Instant::now() + PEER_TIMEOUT) {
        Ok(h) => {
            drop(p);
            drop(h);
            return;
        }
        Err(e) => e,
    };
    tracing::warn!(error = %e, "closing an emulated pipe is deferred");
    reaper::defer(mem, Box::new(move || drop(p)));
}

/// A pipe reference of `open` that goes through [`release_pipe`] on every return path.
pub(super) struct PipeRef(pub(super) Option<Arc<Pipe>>);

impl std::ops::Deref for PipeRef {
    type Target = Arc<Pipe>;
    fn deref(&self) -> &Arc<Pipe> {
        self.0.as_ref().expect("set until dropped")
    }
}

impl Drop for PipeRef {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            release_pipe(p);
        }
    }
}

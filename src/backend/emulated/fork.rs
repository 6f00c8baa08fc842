//! What a child made by `fork()` (without `exec`) inherits of the cross-process emulated
//! backend, and why it must not keep it.
//!
//! A forked child gets copies of every descriptor, sharing the parent's open file
//! descriptions. Liveness rests on those descriptions ([`super::shm`]: a process's locks go
//! when its description closes), and so does the rendezvous name ([`super::rendezvous`]: the
//! name lives while someone holds the listening socket). A child that keeps the parent's
//! copies would make a killed parent look alive to its peers for as long as the child lives,
//! and keep a parent name bound that nobody serves. (`exec` closes them: all are
//! close-on-exec.)
//!
//! So the descriptors that carry those (the memory's description, the listening socket, the
//! ringer) are listed here, and a `pthread_atfork` child handler points each of them at a
//! placeholder (an empty `memfd` of our own) with `dup3`, which is async-signal-safe. The
//! child's copies of ports then fail or do nothing when used (their mapping stays valid:
//! no undefined behaviour), and the parent's liveness and names are its own again.
//!
//! Bounds: up to [`SLOTS`] descriptors are protected at once (three per shared memory of the
//! process); past that, a warning says the fork guarantee does not hold for the rest. A fork
//! racing with the creation of a shared memory may let one child keep a description of it.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

/// How many descriptors can be protected at once.
pub(super) const SLOTS: usize = 96;

static FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
static PLACEHOLDER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn in_child() {
    let p = PLACEHOLDER.load(Ordering::Relaxed);
    if p < 0 {
        return;
    }
    for s in &FDS {
        let fd = s.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: dup3 is async-signal-safe and touches only the descriptor table; `fd`
            // is a descriptor the parent had open at the fork, so the child has it too.
            unsafe { libc::dup3(p, fd, libc::O_CLOEXEC) };
        }
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let name = c"netmap-rs-forked";
        // SAFETY: name is a valid C string; the result is checked.
        let p = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if p < 0 {
            tracing::warn!(
                "memfd_create failed: a child forked without exec keeps this process's \
                 emulated pipe state alive"
            );
            return;
        }
        PLACEHOLDER.store(p, Ordering::Relaxed);
        // SAFETY: registers a handler with no captured state; it lives for the program.
        let r = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if r != 0 {
            tracing::warn!("pthread_atfork failed ({r}): forked children are not covered");
        }
    });
}

/// Points `fd` elsewhere in children forked from now on (until [`release`]).
pub(super) fn protect(fd: RawFd) {
    install();
    for s in &FDS {
        if s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
    tracing::warn!(
        fd,
        "more than {SLOTS} shared emulated descriptors: a child forked without exec keeps \
         this one alive"
    );
}

/// Stops protecting `fd`: call before closing it (its number may be reused).
pub(super) fn release(fd: RawFd) {
    for s in &FDS {
        if s.compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

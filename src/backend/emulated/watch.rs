//! The watcher: a thread, running while this process has one end of a shared pipe open
//! (the other end being another process's, or nobody's yet), that looks
//! every [`WATCH_PERIOD`] for peers killed while their end was open, marks the survivor's
//! end ([`Pipe::peer_gone`]) and wakes its waiters, which then sync and see
//! [`Error::PeerGone`](crate::Error::PeerGone).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::pipe::Pipe;
use super::{lock, registry, release_pipe, WATCH_PERIOD};

/// Held by the watcher while it holds references to pipes, and by a closing port while it
/// drops its own: the port's reference is then never the second-to-last one, so the pipe
/// (and its shared object) is torn down by the closing thread, before `drop` returns.
static QUIET: Mutex<()> = Mutex::new(());

/// Waits until the watcher holds no pipe; keeps it from taking any while held.
pub(super) fn quiet() -> MutexGuard<'static, ()> {
    lock(&QUIET)
}

/// Whether exactly one end of the pipe is open in this process: only then can its peer be
/// another process. (With both ends here, neither can die alone; with none, nobody waits.)
fn one_end_here(p: &Pipe) -> bool {
    let b = lock(&p.bound);
    b.any(0) != b.any(1)
}

/// Starts the watcher thread unless it runs. Called whenever an end is opened or closed
/// here (a pipe may then need watching); the thread ends when no pipe does.
pub(super) fn ensure() {
    static RUNNING: AtomicBool = AtomicBool::new(false);
    let _reg = lock(registry());
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("netmap-rs-emu-watch".into())
        .spawn(|| loop {
            std::thread::sleep(WATCH_PERIOD);
            let _q = quiet();
            // References are taken under the registry lock and dropped after it (through
            // `release_pipe`, bounded): a last reference never waits for the memory lock
            // while the registry is held.
            let (pipes, others): (Vec<Arc<Pipe>>, Vec<Arc<Pipe>>) = {
                let reg = lock(registry());
                let (live, others): (Vec<_>, Vec<_>) = reg
                    .pipes
                    .values()
                    .filter_map(Weak::upgrade)
                    .partition(|p| p.mem.shm().is_some() && one_end_here(p));
                if live.is_empty() {
                    // Decided under the registry lock, where `ensure` looks.
                    RUNNING.store(false, Ordering::Release);
                    drop(reg);
                    others.into_iter().for_each(release_pipe);
                    return;
                }
                (live, others)
            };
            others.into_iter().for_each(release_pipe);
            for p in pipes {
                for end in 0..2 {
                    // Decided under the bindings lock, as `bind` claims an end under it: an
                    // end this process just took is never marked gone with a stale look.
                    let b = lock(&p.bound);
                    if !b.any(end) {
                        continue;
                    }
                    let gone = !b.any(1 - end) && p.peer_crashed(end);
                    let changed = p.peer_gone[end].swap(gone, Ordering::AcqRel) != gone;
                    drop(b);
                    if changed && gone {
                        tracing::warn!(pipe = %p.name, end, "the peer process of a pipe end was killed");
                        p.wake_end(end);
                    }
                }
                release_pipe(p);
            }
        });
    if spawned.is_err() {
        RUNNING.store(false, Ordering::Release);
    }
}

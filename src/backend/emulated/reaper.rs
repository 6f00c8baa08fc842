//! The reaper: finishes closing what a port's drop could not, because the memory lock was
//! held by another process past [`PEER_TIMEOUT`] (a process stopped with SIGSTOP, or in a
//! debugger, while it allocated).
//!
//! `drop` cannot fail and must not wait without bound, so the part of a close that needs the
//! lock (returning the port's interface area, tearing down a pipe nobody uses any more) is
//! handed to this thread. It waits for the lock in rounds of [`PEER_TIMEOUT`], then does the
//! work. Until then the pipe stays as it is: its rings are not reused, and this process keeps
//! the memory mapped. When the holder resumes or dies, the work is done; if this process ends
//! first, nothing is lost either (the memory goes with its last user). Jobs run one at a time,
//! in order.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::memory::EmuMem;
use super::{lock, PEER_TIMEOUT};

type Job = (Arc<EmuMem>, Box<dyn FnOnce() + Send>);

/// Runs `job` under `mem`'s lock, in the reaper thread, as soon as the lock can be had.
pub(super) fn defer(mem: Arc<EmuMem>, job: Box<dyn FnOnce() + Send>) {
    static TX: Mutex<Option<Sender<Job>>> = Mutex::new(None);
    let mut tx = lock(&TX);
    if tx.is_none() {
        let (s, r) = channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("netmap-rs-emu-reap".into())
            .spawn(move || {
                for (mem, job) in r {
                    run(&mem, job);
                }
            });
        if spawned.is_ok() {
            *tx = Some(s);
        }
    }
    let job = match tx.as_ref() {
        Some(s) => match s.send((mem, job)) {
            Ok(()) => return,
            Err(e) => e.0,
        },
        None => (mem, job),
    };
    drop(tx);
    // No thread: do it here (the lock wait is then this caller's).
    run(&job.0, job.1);
}

fn run(mem: &EmuMem, job: Box<dyn FnOnce() + Send>) {
    let mut rounds = 0u32;
    loop {
        match mem.hold(Instant::now() + PEER_TIMEOUT) {
            Ok(h) => {
                job();
                drop(h);
                if rounds > 0 {
                    tracing::info!(rounds, "a deferred close of an emulated port completed");
                }
                return;
            }
            Err(e) => {
                rounds += 1;
                if rounds.is_power_of_two() {
                    tracing::warn!(error = %e, rounds, "a deferred close still waits for the memory lock");
                }
            }
        }
    }
}

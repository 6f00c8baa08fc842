//! What the long-running examples share: stopping cleanly on Ctrl-C (SIGINT) and SIGTERM.
//!
//! The first signal sets a flag the example's loops check: they leave, the example drops
//! its ports and prints what it counted (as C `pkt-gen` does). A second signal ends the
//! process at once (exit status 130), in case a loop is stuck.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[allow(dead_code)] // not every example polls a flag
/// A flag set by the first SIGINT or SIGTERM. The handlers are installed before this
/// returns, so a signal that comes right after is never lost.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready, installed) = std::sync::mpsc::channel();
    // A thread of its own with a runtime of its own: callable from sync code and from
    // inside another runtime alike.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the signal watcher");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let _ = ready.send(());
            for n in 0.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n > 0 {
                    eprintln!("second signal: exiting now");
                    std::process::exit(130);
                }
                eprintln!("signal: stopping (again to exit at once)");
                flag.store(true, Ordering::Relaxed);
            }
        })
    });
    installed.recv().expect("signal watcher started");
    stop
}

/// Whether the flag is set.
#[allow(dead_code)] // not every example polls it this way
pub fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Completes at the first SIGINT or SIGTERM (for async examples: race it with the work).
#[allow(dead_code)] // not every example waits this way
pub async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("signal: stopping");
}

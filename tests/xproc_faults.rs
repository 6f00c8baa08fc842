//! Emulated pipes across processes that misbehave: killed (nothing may be left behind),
//! forked without `exec` (a killed parent must still be seen gone), frozen with SIGSTOP
//! (nothing may wait on them past the bound), and processes coming and going while others
//! join (the memory never splits). The other processes are this test binary run again (see
//! `common/xproc.rs`).

#![cfg(target_os = "linux")]

#[path = "common/xproc.rs"]
mod xp;

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use xp::*;

/// The other process (see `common/xproc.rs`).
#[test]
fn child() {
    xp::child();
}

/// Defect 10: a process killed while it holds a port leaves nothing behind: no `/dev/shm`
/// object, no socket name.
#[test]
fn a_killed_process_leaves_nothing_behind() {
    if !shared() {
        return;
    }
    let parent = unique("kill");
    let mut c = spawn("hold", &format!("{parent}{{1"));
    c.line("READY");
    let pid = c.pid();
    c.kill();
    assert_nothing_left(&parent, pid);
}

/// Defect 10: neither does one that ends normally while a thread it never joined holds one.
#[test]
fn a_process_ending_with_an_unjoined_port_leaves_nothing_behind() {
    if !shared() {
        return;
    }
    let parent = unique("exit");
    let mut c = spawn("exit-with-thread", &format!("{parent}{{1"));
    c.line("READY");
    let pid = c.pid();
    assert!(c.0.wait().unwrap().success());
    assert_nothing_left(&parent, pid);
}

fn assert_nothing_left(parent: &str, pid: i32) {
    // Socket names go when the kernel has closed the dead process's descriptors; give it a
    // moment (in-flight descriptors are collected asynchronously).
    let t0 = Instant::now();
    loop {
        let files = shm_entries(parent);
        let names: Vec<_> = abstract_names()
            .into_iter()
            .filter(|n| {
                n.contains(&format!(".{parent}."))
                    || n.starts_with(&format!("netmap-rs.{}.bell.{pid:x}.", uid()))
            })
            .collect();
        if files.is_empty() && names.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < BOUND,
            "left behind by a process that is gone: files {files:?}, socket names {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Defect 4: a process that found the object stale, and has not replaced it yet, must not
/// make a joiner map the doomed object. Here this test plays that process by hand: it opens
/// what a killed run left (or a junk object when nothing was left), holds the users lock of
/// the old design on it, lets a child join, then replaces the object and opens the other
/// end. The two ends must meet.
#[test]
fn a_joiner_never_maps_an_object_that_is_being_replaced() {
    if !shared() {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let parent = unique("stale");
    let path = format!("/dev/shm/netmap-rs.{}.{parent}", uid());
    let mut dead = spawn("hold", &format!("{parent}{{9"));
    dead.line("READY");
    dead.kill();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .unwrap();
    if f.metadata().unwrap().len() == 0 {
        f.set_len(4096).unwrap();
    }
    // The old design's users lock: a read lock on byte 1 << 40 (F_OFD_SETLK).
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_start = 1 << 40;
    fl.l_len = 1;
    // SAFETY: fcntl with a live flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) },
        0
    );
    let mut joiner = spawn("recv-one", &format!("{parent}}}1"));
    joiner.line("READY");
    // Now replace: the stale object goes, its lock with it.
    let _ = std::fs::remove_file(&path);
    drop(f);
    let me = open(&format!("{parent}{{1"));
    let t0 = Instant::now();
    while me.peer_present() != Some(true) && t0.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        me.peer_present(),
        Some(true),
        "the joiner's end is not visible: it mapped another memory"
    );
    let mut tx = me.tx_ring(0).unwrap();
    tx.send(&[42; LEN]).unwrap();
    tx.sync().unwrap();
    assert_eq!(joiner.line("GOT"), "GOT 42", "the joiner received nothing");
    drop((tx, me));
    let _ = std::fs::remove_file(&path);
}

/// The fork question: a child made by `fork()` without `exec` inherits the parent's
/// descriptors. Killing the parent must still show it gone to its peer.
#[test]
fn a_killed_process_is_seen_gone_even_when_it_forked() {
    if !shared() {
        return;
    }
    let parent = unique("fork");
    let nm = open(&format!("{parent}{{1"));
    let mut c = spawn("fork-hold", &format!("{parent}}}1"));
    let grandchild: i32 = c.line("READY").split(' ').nth(1).unwrap().parse().unwrap();
    let _g = Pid(grandchild);
    assert_eq!(nm.peer_present(), Some(true));
    c.kill();
    let mut tx = nm.tx_ring(0).unwrap();
    let t0 = Instant::now();
    let err = loop {
        if let Err(e) = tx.sync() {
            break e;
        }
        assert!(
            t0.elapsed() < BOUND,
            "the killed peer is still seen alive (its forked child holds its descriptors)"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(matches!(err, Error::PeerGone(_)), "{err}");
    assert_eq!(nm.peer_present(), Some(false));
    // The forked child keeps no name alive: once this side closes, a new pair starts afresh.
    drop((tx, nm));
    let (a, b) = (open(&format!("{parent}{{1")), open(&format!("{parent}}}1")));
    one_frame(&a, &b).unwrap();
}

/// Defect 8: another user who pre-creates the old object's path (a file, or a symlink) or
/// binds the first rendezvous name (handing out a memfd of its own) blocks nothing: the
/// Defect 8: with every candidate name taken by another user, the open fails at once, saying
/// Defect 5: another user can neither wake nor inject into our wake-up sockets, nor fetch
/// our memory: its datagrams are refused, a wait stays asleep, and a descriptor handed out
/// Defect 7 (the process side; the memory lock held by a frozen process is in the crate's
/// unit tests): a peer stopped with SIGSTOP for 5 s holds up nothing here for longer than
/// the bound: sending, receiving, opening and closing carry on.
#[test]
fn a_frozen_peer_holds_up_nothing() {
    if !shared() {
        return;
    }
    let parent = unique("frz");
    let me = open(&format!("{parent}{{1"));
    let mut c = spawn("echo", &format!("{parent}}}1"));
    c.line("READY");
    c.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    let (done, ops) = mpsc::channel();
    let name = parent.clone();
    let me = std::sync::Arc::new(me);
    let me2 = me.clone();
    std::thread::spawn(move || {
        let step = |what: &str, t: Instant| done.send((what.to_string(), t.elapsed())).unwrap();
        let t = Instant::now();
        let mut tx = me2.tx_ring(0).unwrap();
        while tx.space() > 0 {
            tx.send(&[1; LEN]).unwrap();
        }
        tx.sync().unwrap();
        let _ = me2.wait_writable(Some(Duration::from_millis(200)));
        step("send", t);
        let t = Instant::now();
        let mut rx = me2.rx_ring(0).unwrap();
        rx.sync().unwrap();
        let _ = me2.wait_readable(Some(Duration::from_millis(200)));
        step("receive", t);
        let t = Instant::now();
        let other = try_open(&format!("{name}{{2"));
        step("open", t);
        let t = Instant::now();
        drop(other);
        step("close", t);
        let t = Instant::now();
        drop(tx);
        drop(rx);
        drop(me2);
        step("close the frozen peer's pipe", t);
    });
    for _ in 0..5 {
        let (what, took) = ops
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("an operation blocked on the frozen peer"));
        eprintln!("{what}: {took:?}");
        assert!(took < BOUND, "{what} took {took:?}");
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(frozen.elapsed()));
    c.signal(libc::SIGCONT);
    drop(me);
}

/// Processes joining while the last other user leaves always meet: the memory is handed from
/// a live user or made afresh, never mapped from a user that is going away. Each round, this
/// process makes the memory, a child joins it, this process closes (the child is then its
/// only user and serves it), reopens, and sends: the child must receive.
#[test]
fn a_memory_passes_from_user_to_user_without_splitting() {
    if !shared() {
        return;
    }
    let parent = unique("pass");
    for round in 0..8 {
        let me = open(&format!("{parent}{{1"));
        let mut c = spawn("recv-one", &format!("{parent}}}1"));
        c.line("READY");
        drop(me);
        let me = open(&format!("{parent}{{1"));
        assert_eq!(me.peer_present(), Some(true), "round {round}: split");
        let mut tx = me.tx_ring(0).unwrap();
        tx.send(&[round; LEN]).unwrap();
        tx.sync().unwrap();
        assert_eq!(c.line("GOT"), format!("GOT {round}"), "round {round}");
        drop(tx);
        drop(me);
        drop(c);
    }
}

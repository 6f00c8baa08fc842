//! Emulated pipes across processes and another user (uid 65534, run through `setpriv`; see
//! `common/xproc.rs`): it must fail to squat our names, to read our memory, and to inject into
//! or wake our wake-up sockets. These tests print SKIPPED and pass where another user cannot
//! be arranged (not root, no `setpriv`).

#![cfg(target_os = "linux")]

#[path = "common/xproc.rs"]
mod xp;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use xp::*;

/// The other process (see `common/xproc.rs`).
#[test]
fn child() {
    xp::child();
}

/// pipes work, between two processes, and nothing of the squatter's is used.
#[test]
fn another_user_cannot_squat_a_parent_name() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("sq");
    let mut s = foreign.spawn("foreign-squat", &parent);
    s.line("READY");
    let cleanup = |p: &str| {
        let _ = std::fs::remove_file(format!("/dev/shm/netmap-rs.{}.{p}", uid()));
    };
    for p in [parent.clone(), format!("{parent}2")] {
        let me = try_open(&format!("{p}{{1"));
        let r = me.and_then(|me| {
            let mut c = spawn("recv-one", &format!("{p}}}1"));
            c.line("READY");
            let mut tx = me.tx_ring(0).unwrap();
            tx.send(&[9; LEN])?;
            tx.sync()?;
            Ok(c.line("GOT"))
        });
        cleanup(&p);
        assert_eq!(r.unwrap(), "GOT 9", "{p}: the pipe across processes failed");
    }
}

/// why and what to do.
#[test]
fn a_parent_name_squatted_everywhere_fails_with_cause_and_fix() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("sqa");
    let mut s = foreign.spawn("foreign-squat-all", &parent);
    s.line("READY");
    let t0 = Instant::now();
    let e = try_open(&format!("{parent}{{1")).unwrap_err();
    assert!(t0.elapsed() < BOUND);
    let m = e.to_string();
    assert!(
        m.contains("another user") && m.contains("NETMAP_RS_EMU_NS"),
        "{m}"
    );
}

/// through `AsFd` does not become (or stay) readable.
#[test]
fn another_user_cannot_wake_inject_or_read() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("wk");
    let a = open(&format!("{parent}{{1"));
    let b = open(&format!("{parent}}}1"));
    let fd = b.as_fd();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert!(!readable(fd));
    let mut r = foreign.spawn("foreign-ring", &parent);
    let rang = r.line("RANG");
    let (tried, sent): (usize, usize) = {
        let mut w = rang.split(' ').skip(1).map(|x| x.parse().unwrap());
        (w.next().unwrap(), w.next().unwrap())
    };
    assert!(tried > 0, "found none of our wake-up sockets");
    rx.sync().unwrap();
    assert!(
        !readable(fd),
        "a foreign datagram keeps the descriptor readable"
    );
    let cpu = thread_cpu();
    let t0 = Instant::now();
    assert!(!b.wait_readable(Some(Duration::from_secs(1))).unwrap());
    let (wall, spent) = (t0.elapsed(), thread_cpu() - cpu);
    assert!(
        spent < wall / 2,
        "a 1 s wait used {spent:?} of CPU: spinning on foreign datagrams"
    );
    assert_eq!(
        sent, 0,
        "another user's datagrams reached {sent} of {tried} sockets"
    );
    let mut f = foreign.spawn("foreign-fetch", &parent);
    let fetched = f.line("FETCHED");
    assert!(
        fetched.ends_with(" 0"),
        "another user got descriptors: {fetched}"
    );
    // And the pipe still works.
    drop(rx);
    one_frame(&a, &b).unwrap();
}

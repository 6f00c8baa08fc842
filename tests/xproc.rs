//! Emulated pipes across processes: this test binary re-runs itself as the peer process
//! (`NETMAP_RS_XPROC_ROLE` selects what the child does; the `child` test is the entry).
//!
//! Frames carry a sequence number and a pattern derived from it; every receiver checks both.
//! `NETMAP_RS_XPROC_FRAMES` sets the frames per direction of the exchange tests (default
//! 200,000, a few seconds in a debug build; the 10M: run
//! `NETMAP_RS_XPROC_FRAMES=10000000 cargo test --release --test xproc`).

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netmap_rs::backend::BackendChoice;
use netmap_rs::prelude::*;

const ROLE: &str = "NETMAP_RS_XPROC_ROLE";
const NAME: &str = "NETMAP_RS_XPROC_NAME";
const COUNT: &str = "NETMAP_RS_XPROC_COUNT";
const LEN: usize = 64;

fn frames() -> u64 {
    std::env::var("NETMAP_RS_XPROC_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn open(name: &str) -> Netmap {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .build()
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// Whether emulated memory is shared here; the tests print SKIPPED and pass where it is not
/// (no `/dev/shm`, as in some minimal guests, or sharing turned off).
fn shared() -> bool {
    let on = std::path::Path::new("/dev/shm").is_dir()
        && std::env::var("NETMAP_RS_EMU_SHARED").map_or(true, |v| v != "0");
    if !on {
        eprintln!(
            "SKIPPED: emulated memory is not shared here (no /dev/shm or NETMAP_RS_EMU_SHARED=0)"
        );
    }
    on
}

/// A name no other test (or run) uses.
fn unique(tag: &str) -> String {
    format!("xp{tag}{}", std::process::id())
}

fn shm_path(parent: &str) -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    format!("/dev/shm/netmap-rs.{uid}.{parent}")
}

fn fill(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (k, b) in buf[8..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(k as u8);
    }
}

/// Checks a frame against the next expected sequence number.
fn check(p: &[u8], next: &mut u64) {
    assert_eq!(p.len(), LEN, "frame {next}: length");
    let seq = u64::from_le_bytes(p[..8].try_into().unwrap());
    assert_eq!(seq, *next, "lost or reordered frames");
    for (k, b) in p[8..].iter().enumerate() {
        assert_eq!(
            *b,
            (seq as u8).wrapping_add(k as u8),
            "frame {seq}: payload"
        );
    }
    *next += 1;
}

fn send_all(nm: &Netmap, mut tx: TxRing, n: u64, drain: bool) -> Result<(), Error> {
    let mut sent = 0;
    while sent < n {
        let k = tx.space().min(256).min((n - sent) as usize);
        if k == 0 {
            tx.sync()?;
            if tx.space() == 0 {
                nm.wait_writable(Some(Duration::from_millis(200)))?;
            }
            continue;
        }
        let mut r = tx.reserve_batch(k)?;
        for i in 0..k {
            fill(r.packet(i, LEN)?, sent + i as u64);
        }
        r.commit();
        tx.sync()?;
        sent += k as u64;
    }
    // Until the peer has taken everything.
    while drain && tx.space() + 1 < tx.num_slots() {
        tx.sync()?;
        nm.wait_writable(Some(Duration::from_millis(200)))?;
    }
    Ok(())
}

fn recv_all(nm: &Netmap, mut rx: RxRing, n: u64) -> Result<u64, Error> {
    let mut next = 0;
    while next < n {
        rx.sync()?;
        let mut got = 0;
        for f in rx.batch(256) {
            check(f.payload(), &mut next);
            got += 1;
        }
        if got == 0 {
            nm.wait_readable(Some(Duration::from_millis(200)))?;
        }
    }
    rx.sync()?;
    Ok(next)
}

/// Sends and receives `n` frames each way on one port, in two threads.
fn exchange_sync(name: &str, n: u64) -> u64 {
    let nm = std::sync::Arc::new(open(name));
    let (tx, rx) = (nm.tx_ring(0).unwrap(), nm.rx_ring(0).unwrap());
    let nm2 = nm.clone();
    let t = std::thread::spawn(move || send_all(&nm2, tx, n, true).unwrap());
    let got = recv_all(&nm, rx, n).unwrap();
    t.join().unwrap();
    got
}

/// The same through the Tokio layer: a sending and a receiving future on one runtime.
fn exchange_tokio(name: &str, n: u64) -> u64 {
    use netmap_rs::tokio_async::TokioNetmap;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nm = TokioNetmap::new(open(name)).unwrap();
        let mut tx = nm.tx_ring(0).unwrap();
        let mut rx = nm.rx_ring(0).unwrap();
        let send = async move {
            let mut sent = 0u64;
            while sent < n {
                let k = 256.min((n - sent) as usize);
                let mut r = tx.reserve(k).await.unwrap();
                for i in 0..k {
                    fill(r.packet(i, LEN).unwrap(), sent + i as u64);
                }
                r.commit();
                tx.flush_ring().await.unwrap();
                sent += k as u64;
            }
            tx
        };
        let recv = async move {
            let mut next = 0u64;
            while next < n {
                let batch = rx.recv_batch(256).await.unwrap();
                for f in batch {
                    check(f.payload(), &mut next);
                }
            }
            rx.get_mut().sync().unwrap();
            next
        };
        let (tx, got) = tokio::join!(send, recv);
        // Keep the port open until the peer has taken everything.
        let mut tx = tx;
        while tx.get_mut().space() + 1 < tx.get_ref().num_slots() {
            tx.get_mut().sync().unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        got
    })
}

/// The peer process: what it does is chosen by the parent.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).unwrap();
    let n: u64 = std::env::var(COUNT).unwrap().parse().unwrap();
    match role.as_str() {
        "exchange-sync" => println!("RESULT {}", exchange_sync(&name, n)),
        "exchange-tokio" => println!("RESULT {}", exchange_tokio(&name, n)),
        "hold" => {
            let _nm = open(&name);
            println!("READY");
            std::thread::sleep(Duration::from_secs(60));
        }
        "recv-forever" => {
            let nm = open(&name);
            let mut rx = nm.rx_ring(0).unwrap();
            println!("READY");
            let mut next = 0;
            loop {
                rx.sync().unwrap();
                for f in rx.batch(64) {
                    check(f.payload(), &mut next);
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        "send-then-hang" => {
            let nm = open(&name);
            let tx = nm.tx_ring(0).unwrap();
            send_all(&nm, tx, n, false).unwrap();
            println!("SENT {n}");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, name: &str, n: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(ROLE, role)
        .env(NAME, name)
        .env(COUNT, n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line starting with `prefix`; returns it.
fn wait_line(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut r = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("child ended before printing {prefix:?}");
        }
        // libtest may print "test child ... " on the same line first.
        if let Some(at) = line.find(prefix) {
            return line[at..].trim().to_string();
        }
    }
}

fn exchange(tag: &str, child_role: &str) {
    if !shared() {
        return;
    }
    let parent = unique(tag);
    let n = frames();
    let mut c = spawn(child_role, &format!("{parent}}}1"), n);
    let t0 = Instant::now();
    let got = exchange_sync(&format!("{parent}{{1"), n);
    let line = wait_line(&mut c, "RESULT");
    assert!(c.wait().unwrap().success());
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{n} frames each way in {secs:.2} s ({:.2} Mpps each way)",
        n as f64 / secs / 1e6
    );
    assert_eq!(got, n, "this process: 0 lost, 0 reordered");
    assert_eq!(line, format!("RESULT {n}"), "the other process");
    assert!(
        !std::path::Path::new(&shm_path(&parent)).exists(),
        "left behind"
    );
}

#[test]
fn two_processes_exchange_sequence_checked_frames_both_ways() {
    exchange("s", "exchange-sync");
}

#[test]
fn two_processes_exchange_through_the_tokio_layer_in_one() {
    exchange("t", "exchange-tokio");
}

#[test]
fn an_end_held_by_another_process_is_busy() {
    if !shared() {
        return;
    }
    let parent = unique("b");
    let mut c = spawn("hold", &format!("{parent}}}1"), 0);
    wait_line(&mut c, "READY");
    let e = NetmapBuilder::new(&format!("{parent}}}1"))
        .backend(BackendChoice::Emulated)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "{e}");
    assert!(e.to_string().contains("another process"), "{e}");
    // The other end is free, and sees its peer.
    let me = open(&format!("{parent}{{1"));
    assert_eq!(me.peer_present(), Some(true));
    c.kill().unwrap();
    c.wait().unwrap();
    drop(me);
    assert!(!std::path::Path::new(&shm_path(&parent)).exists());
}

#[test]
fn killing_the_receiver_fails_the_sender_within_a_second_and_leaves_nothing() {
    if !shared() {
        return;
    }
    let parent = unique("kr");
    let nm = open(&format!("{parent}{{1"));
    assert_eq!(nm.peer_present(), Some(false), "no peer yet");
    let mut c = spawn("recv-forever", &format!("{parent}}}1"), 0);
    wait_line(&mut c, "READY");
    assert_eq!(nm.peer_present(), Some(true));
    let mut tx = nm.tx_ring(0).unwrap();
    let mut seq = 0;
    // Traffic flows.
    let t0 = Instant::now();
    while seq < 5000 && t0.elapsed() < Duration::from_secs(10) {
        let k = tx.space().min(64);
        if let Ok(mut r) = tx.reserve_batch(k) {
            for i in 0..r.len() {
                fill(r.packet(i, LEN).unwrap(), seq + i as u64);
            }
            seq += r.len() as u64;
            r.commit();
        }
        tx.sync().unwrap();
    }
    assert!(seq >= 5000, "the receiver took only {seq} frames");
    c.kill().unwrap();
    c.wait().unwrap();
    let killed = Instant::now();
    let err = loop {
        match tx.sync() {
            Err(e) => break e,
            Ok(()) => {
                if tx.space() == 0 {
                    match nm.wait_writable(Some(Duration::from_millis(50))) {
                        Err(e) => break e,
                        Ok(_) => continue,
                    }
                }
                let k = tx.space().min(64);
                let mut r = tx.reserve_batch(k).unwrap();
                for i in 0..r.len() {
                    fill(r.packet(i, LEN).unwrap(), seq + i as u64);
                }
                seq += r.len() as u64;
                r.commit();
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no error after 5 s"
        );
    };
    let waited = killed.elapsed();
    eprintln!("sender saw the receiver gone {waited:?} after the kill: {err}");
    assert!(matches!(err, Error::PeerGone(_)), "{err}");
    assert!(err.to_string().contains("receiving end"), "{err}");
    assert!(
        waited < Duration::from_secs(1),
        "the sender learned after {waited:?}"
    );
    drop(tx);
    drop(nm);
    assert!(
        !std::path::Path::new(&shm_path(&parent)).exists(),
        "left behind"
    );
}

#[test]
fn killing_the_sender_lets_the_receiver_drain_then_end() {
    if !shared() {
        return;
    }
    let parent = unique("ks");
    let nm = open(&format!("{parent}}}1"));
    let mut rx = nm.rx_ring(0).unwrap();
    let n = 3000;
    let mut c = spawn("send-then-hang", &format!("{parent}{{1"), n);
    let mut next = 0;
    // Take part of the stream while the sender runs (it can then hand over the rest, which
    // fits in the ring), the rest after it was killed.
    while next < n - 500 {
        rx.sync().unwrap();
        for f in rx.batch(64) {
            check(f.payload(), &mut next);
        }
        nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
    }
    wait_line(&mut c, "SENT");
    c.kill().unwrap();
    c.wait().unwrap();
    let killed = Instant::now();
    let err = loop {
        match rx.sync() {
            Err(e) => break e,
            Ok(()) => {
                for f in rx.batch(64) {
                    check(f.payload(), &mut next);
                }
                if let Err(e) = nm.wait_readable(Some(Duration::from_millis(50))) {
                    break e;
                }
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no end after 5 s"
        );
    };
    eprintln!(
        "receiver saw the end {:?} after the kill: {err}",
        killed.elapsed()
    );
    assert!(matches!(err, Error::PeerGone(_)), "{err}");
    assert_eq!(
        next, n,
        "every frame sent before the kill was received, in order"
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    drop(rx);
    drop(nm);
    assert!(
        !std::path::Path::new(&shm_path(&parent)).exists(),
        "left behind"
    );
}

/// What an older version left in `/dev/shm` (it named its memory there) is neither read nor
/// in the way: the memory has no name now.
#[test]
fn a_leftover_object_in_dev_shm_is_ignored() {
    if !shared() {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let parent = unique("st");
    let path = shm_path(&parent);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::fs::write(&path, vec![0xa5; 4096]).unwrap();
    let (a, b) = (open(&format!("{parent}{{1")), open(&format!("{parent}}}1")));
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&[7; LEN]).unwrap();
    tx.sync().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), &[7; LEN]);
    drop((tx, rx, a, b));
    assert_eq!(std::fs::read(&path).unwrap(), vec![0xa5; 4096], "touched");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_pipe_whose_users_were_killed_is_rebuilt_and_its_end_can_be_reopened() {
    if !shared() {
        return;
    }
    let parent = unique("rb");
    // Keeps the memory alive while the pipe's only user is killed.
    let keep = open(&format!("{parent}{{9"));
    let mut c = spawn("hold", &format!("{parent}{{1"), 0);
    wait_line(&mut c, "READY");
    assert!(matches!(
        NetmapBuilder::new(&format!("{parent}{{1"))
            .backend(BackendChoice::Emulated)
            .build()
            .unwrap_err(),
        Error::PortBusy(_)
    ));
    c.kill().unwrap();
    c.wait().unwrap();
    // The killed process's end is free again, and the pipe works end to end.
    let (a, b) = (open(&format!("{parent}{{1")), open(&format!("{parent}}}1")));
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let (mut seq, mut next) = (0u64, 0u64);
    while next < 3000 {
        let mut buf = [0u8; LEN];
        while seq < 3000 {
            fill(&mut buf, seq);
            if tx.send(&buf).is_err() {
                break;
            }
            seq += 1;
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        for f in rx.batch(256) {
            check(f.payload(), &mut next);
        }
    }
    drop((tx, rx, a, b, keep));
    assert!(
        !std::path::Path::new(&shm_path(&parent)).exists(),
        "left behind"
    );
}

#[test]
fn killing_the_sender_ends_a_tokio_receiver_after_the_drain() {
    if !shared() {
        return;
    }
    use netmap_rs::tokio_async::TokioNetmap;
    let parent = unique("kt");
    let n = 3000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nm = TokioNetmap::new(open(&format!("{parent}}}1"))).unwrap();
        let mut rx = nm.rx_ring(0).unwrap();
        let mut c = spawn("send-then-hang", &format!("{parent}{{1"), n);
        let mut next = 0;
        while next < n - 500 {
            for f in rx.recv_batch(64).await.unwrap() {
                check(f.payload(), &mut next);
            }
        }
        // Blocking here is fine: nothing else runs on this runtime.
        wait_line(&mut c, "SENT");
        c.kill().unwrap();
        c.wait().unwrap();
        let killed = Instant::now();
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv_batch(64)).await {
                Ok(Ok(batch)) => {
                    for f in batch {
                        check(f.payload(), &mut next);
                    }
                }
                Ok(Err(e)) => break e,
                Err(_) => panic!("no end 5 s after the kill"),
            }
        };
        eprintln!(
            "tokio receiver saw the end {:?} after the kill: {err}",
            killed.elapsed()
        );
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
        assert!(err.to_string().contains("peer gone"), "{err}");
        assert_eq!(
            next, n,
            "every frame sent before the kill was received, in order"
        );
        assert!(killed.elapsed() < Duration::from_secs(1));
    });
    assert!(
        !std::path::Path::new(&shm_path(&parent)).exists(),
        "left behind"
    );
}

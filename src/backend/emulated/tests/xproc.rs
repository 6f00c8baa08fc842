//! Cross-process tests that need the backend's insides: a peer process frozen while it holds
//! the memory lock. The lib test binary runs itself as the peer (`NETMAP_RS_EMU_TEST_ROLE`
//! selects what it does; the `child` test is the entry), which then takes the lock through
//! the same call the backend uses and is stopped with SIGSTOP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::super::{lock, registry};
use crate::backend::BackendChoice;
use crate::{Netmap, NetmapBuilder};

const ROLE: &str = "NETMAP_RS_EMU_TEST_ROLE";
const NAME: &str = "NETMAP_RS_EMU_TEST_NAME";
/// The documented bound of a cross-process wait (`PEER_TIMEOUT`, 2 s) plus room for a loaded
/// machine.
const BOUND: Duration = Duration::from_secs(4);

fn open(name: &str) -> Result<Netmap, crate::Error> {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(64)
        .build()
}

fn shared() -> bool {
    let on = std::path::Path::new("/dev/shm").is_dir()
        && std::env::var("NETMAP_RS_EMU_SHARED").map_or(true, |v| v != "0");
    if !on {
        eprintln!("SKIPPED: emulated memory is not shared here");
    }
    on
}

/// The peer process.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).unwrap();
    match role.as_str() {
        "hold-lock" => {
            let _nm = open(&format!("{name}}}1")).unwrap();
            let mem = lock(registry())
                .mems
                .get(&name)
                .and_then(std::sync::Weak::upgrade)
                .unwrap();
            let _g = mem.locked();
            println!("READY");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Kills the child (resuming it first) on drop, so a failing test leaves nothing running.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGCONT) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Defect 7: a peer stopped while it holds the memory lock blocks neither closing nor opening
/// here for longer than the bound (before: `drop(port)` returned only when the holder died),
/// nor sending and receiving; once it resumes, everything works again.
#[test]
fn a_peer_frozen_holding_the_memory_lock_blocks_nothing_beyond_the_bound() {
    if !shared() {
        return;
    }
    let parent = format!("frzlk{}", std::process::id());
    let first = open(&format!("{parent}{{1")).unwrap();
    let (a, b) = (
        open(&format!("{parent}{{2")).unwrap(),
        open(&format!("{parent}}}2")).unwrap(),
    );
    let mut kid = Kid(Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backend::emulated::tests::xproc::child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ROLE, "hold-lock")
        .env(NAME, &parent)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let mut line = String::new();
    let mut out = BufReader::new(kid.0.stdout.take().unwrap());
    while !line.contains("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(kid.0.id() as i32, libc::SIGSTOP) };
    let frozen = Instant::now();
    let (done, ops) = mpsc::channel();
    let name = parent.clone();
    std::thread::spawn(move || {
        let step = |what: &str, t: Instant| {
            let _ = done.send((what.to_string(), t.elapsed()));
        };
        let t = Instant::now();
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(&[3; 60]).unwrap();
        tx.sync().unwrap();
        step("send", t);
        let t = Instant::now();
        let mut rx = b.rx_ring(0).unwrap();
        rx.sync().unwrap();
        assert_eq!(rx.recv().unwrap().payload(), &[3; 60]);
        step("receive", t);
        let t = Instant::now();
        drop(first);
        step("close", t);
        let t = Instant::now();
        let r = open(&format!("{name}{{3"));
        step("open", t);
        eprintln!(
            "open while the lock holder is frozen: {:?}",
            r.as_ref().err()
        );
        drop((tx, rx, a, b, r));
    });
    for _ in 0..4 {
        let (what, took) = ops
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("an operation blocked on the frozen lock holder"));
        eprintln!("{what}: {took:?}");
        assert!(took < BOUND, "{what} took {took:?}");
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(frozen.elapsed()));
    drop(kid);
    // The holder is gone: the memory works again.
    let (c, d) = (
        open(&format!("{parent}{{1")).unwrap(),
        open(&format!("{parent}}}1")).unwrap(),
    );
    let mut tx = c.tx_ring(0).unwrap();
    tx.send(&[4; 60]).unwrap();
    tx.sync().unwrap();
    let mut rx = d.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), &[4; 60]);
}

/// Defect 5, from inside: a datagram that reaches a bell without a pending flag (a confused
/// or hostile process of the same memory sends it through the memory's ringer) wakes a wait
/// once at most: the wait does not spin, and a descriptor taken through `AsFd` is readable
/// only until the next sync.
#[test]
fn a_stray_datagram_from_the_memory_wakes_a_wait_once_at_most() {
    use std::os::fd::{AsFd, AsRawFd};
    if !shared() {
        return;
    }
    let parent = format!("stray{}", std::process::id());
    let a = open(&format!("{parent}{{1")).unwrap();
    let b = open(&format!("{parent}}}1")).unwrap();
    let fd = b.as_fd();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    let mem = lock(registry())
        .mems
        .get(&parent)
        .and_then(std::sync::Weak::upgrade)
        .unwrap();
    let ringer = mem.ringer().unwrap().clone();
    let prefix = format!(
        "netmap-rs.{}.bell.{:x}.",
        super::super::unix::uid(),
        std::process::id()
    );
    let names: Vec<String> = std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@'))
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    let mut sent = 0;
    for n in &names {
        let (sa, len) = super::super::unix::sockaddr(n.as_bytes()).unwrap();
        // SAFETY: one byte from a live array to a live address of `len` bytes.
        let r = unsafe {
            libc::sendto(
                ringer.fd().as_raw_fd(),
                [1u8].as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        sent += usize::from(r == 1);
    }
    assert!(
        sent > 0,
        "no bell of this memory took a datagram from its ringer"
    );
    let readable = || {
        let r = crate::os::poll_fds(&[(fd, libc::POLLIN)], Some(Duration::ZERO)).unwrap();
        r[0] & libc::POLLIN != 0
    };
    assert!(readable(), "the stray datagram did not arrive");
    rx.sync().unwrap();
    assert!(
        !readable(),
        "a stray datagram keeps the descriptor readable"
    );
    let cpu = || {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into a live rusage.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    // Again, and wait with it queued on the registration's bells.
    for n in &names {
        let (sa, len) = super::super::unix::sockaddr(n.as_bytes()).unwrap();
        // SAFETY: as above.
        unsafe {
            libc::sendto(
                ringer.fd().as_raw_fd(),
                [1u8].as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
    }
    let (c0, t0) = (cpu(), Instant::now());
    assert!(!b.wait_readable(Some(Duration::from_secs(1))).unwrap());
    let (spent, wall) = (cpu() - c0, t0.elapsed());
    assert!(spent < wall / 2, "a 1 s wait used {spent:?} of CPU");
    drop((rx, a));
}

//! Which epoll watches a port's queue sockets carry, and when. The kernel walks a socket's
//! wait-queue entries, interrupts off, for every frame it receives or frees, so a watch that
//! outlives its wait costs every packet; adding and removing one costs two `epoll_ctl` per
//! wait. Blocking receive waits poll the sockets themselves (no watch); async rings watch
//! their socket only while a wait sleeps (`tokio_layer`).

use std::net::SocketAddrV4;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::ports::{ns_udp, PREFIXES};
use super::sockets::PATIENCE;
use super::testnet::{require_net, VethPair};
use crate::ring::Dir;
use crate::sync::NetmapBuilder;

/// The socket inode behind `/proc/self/fd/NAME`, if that descriptor is a socket.
fn socket_inode(path: &std::path::Path) -> Option<u64> {
    let link = std::fs::read_link(path).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The socket inode behind `fd`.
fn inode_of(fd: BorrowedFd<'_>) -> u64 {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    socket_inode(path.as_ref()).unwrap_or_else(|| panic!("{path} is not a socket"))
}

/// The socket inode behind each of this process's descriptors that is a socket.
#[cfg(feature = "tokio-async")]
pub(super) fn socket_inodes() -> std::collections::HashMap<String, u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let ino = socket_inode(&e.path())?;
            Some((e.file_name().to_string_lossy().into_owned(), ino))
        })
        .collect()
}

/// How many watches this process's epoll instances hold on the file with inode `ino` (the
/// `tfd:` lines of their fdinfo; an instance behind two descriptors counts once).
pub(super) fn watches_of(ino: u64) -> usize {
    let mut lines = std::collections::HashSet::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_epoll = std::fs::read_link(e.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]");
        let info = format!("/proc/self/fdinfo/{}", e.file_name().to_string_lossy());
        let Some(info) = is_epoll
            .then(|| std::fs::read_to_string(info).ok())
            .flatten()
        else {
            continue;
        };
        lines.extend(
            info.lines()
                .filter(|l| l.starts_with("tfd:"))
                .filter(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("ino:"))
                        .is_some_and(|h| u64::from_str_radix(h, 16) == Ok(ino))
                })
                .map(str::to_owned),
        );
    }
    lines.len()
}

/// A blocking receive wait sleeps in `poll` on the queue sockets: while it sleeps, no epoll
/// instance watches them (before, the wait added a watch and removed it after, two system
/// calls per wait: per packet at a low rate).
#[test]
fn blocking_receive_waits_sleep_without_an_epoll_watch() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let nm = NetmapBuilder::new(&format!("{prefix}:{}", pair.a))
            .build()
            .unwrap();
        // The queue socket: a ring waker is a duplicate of it.
        let waker = nm.inner.backend.ring_waker(Dir::Rx, 0).unwrap();
        let ino = inode_of(waker.as_fd());
        drop(waker);
        let (started, done) = (Arc::new(Barrier::new(2)), Arc::new(AtomicBool::new(false)));
        let waiter = {
            let (started, done) = (started.clone(), done.clone());
            std::thread::spawn(move || {
                started.wait();
                let r = nm.wait_readable(Some(PATIENCE));
                done.store(true, Ordering::Release);
                r
            })
        };
        started.wait();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !done.load(Ordering::Acquire),
            "{prefix}: the wait ended with nothing to receive"
        );
        assert_eq!(
            watches_of(ino),
            0,
            "{prefix}: watched while a blocking wait sleeps"
        );
        ns_udp(&pair, 0)
            .send_to(b"wake", SocketAddrV4::new(pair.ip_a, 9))
            .unwrap();
        let readable = waiter.join().unwrap().unwrap();
        assert!(readable, "{prefix}: the wait did not end readable");
    }
}

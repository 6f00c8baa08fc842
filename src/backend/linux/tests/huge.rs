//! `NetmapBuilder::huge_pages` on both Linux drivers (issue 22.7): with huge pages reserved
//! (`/proc/sys/vm/nr_hugepages` = 64, restored after, also on failure) the region lies on
//! them and packets flow both ways; with none, the port opens on ordinary pages and works
//! the same; without the call, ordinary pages.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{ends_a_to_b, ns_udp, PREFIXES};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::sync::{Netmap, NetmapBuilder};

const NR: &str = "/proc/sys/vm/nr_hugepages";

/// The huge page reservation, put back as it was when dropped.
struct Reservation(String);

impl Reservation {
    fn save() -> Reservation {
        Reservation(std::fs::read_to_string(NR).expect("read nr_hugepages"))
    }

    /// Asks for `n` pages; returns how many the kernel reserved (fewer when memory is short).
    fn set(&self, n: u32) -> u64 {
        std::fs::write(NR, n.to_string()).expect("write nr_hugepages");
        meminfo("HugePages_Total")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::write(NR, self.0.trim());
    }
}

fn meminfo(key: &str) -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/meminfo"))
}

fn open(prefix: &str, ifname: &str, huge: bool) -> Netmap {
    NetmapBuilder::new(&format!("{prefix}:{ifname}"))
        .num_slots(256)
        .huge_pages(huge)
        .build()
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
}

/// One datagram from the namespace arrives through the RX ring, one frame from the TX ring
/// reaches a socket in the namespace.
fn both_ways(prefix: &str, pair: &VethPair, nm: &Netmap) {
    let tx = ns_udp(pair, 0);
    tx.send_to(b"to the port", SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    let mut rx = nm.rx_ring(0).unwrap();
    let deadline = Instant::now() + PATIENCE;
    'found: loop {
        assert!(Instant::now() < deadline, "{prefix}: nothing received");
        nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if parse_udp(f.payload()).is_some_and(|(_, p)| p == b"to the port") {
                break 'found;
            }
        }
    }
    let sink = ns_udp(pair, 9000);
    let mut t = nm.tx_ring(0).unwrap();
    t.send(&udp_frame(&ends_a_to_b(pair, 9000), b"from the port"))
        .unwrap();
    t.sync().unwrap();
    let mut buf = [0u8; 64];
    let n = sink
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{prefix}: sent frame never arrived: {e}"));
    assert_eq!(&buf[..n], b"from the port", "{prefix}");
}

#[test]
fn the_pool_lies_on_huge_pages_when_reserved_and_falls_back_when_not() {
    require_net!();
    let pair = VethPair::new();
    let saved = Reservation::save();
    // On: 64 pages reserved (128 MiB on 2 MiB pages).
    let got = saved.set(64);
    assert!(
        got >= 8,
        "the kernel reserved only {got} huge pages (memory short?)"
    );
    for (prefix, _) in PREFIXES {
        let free = meminfo("HugePages_Free");
        let nm = open(prefix, &pair.a, true);
        assert!(
            nm.uses_huge_pages(),
            "{prefix}: pages were free, pool not on them"
        );
        let used = free - meminfo("HugePages_Free") + meminfo("HugePages_Rsvd");
        assert!(used > 0, "{prefix}: no huge page taken or reserved");
        both_ways(prefix, &pair, &nm);
        eprintln!("{prefix}: on huge pages, {} bytes", nm.memsize());
        drop(nm);
        // Without the call, ordinary pages even though huge ones are free.
        assert!(!open(prefix, &pair.a, false).uses_huge_pages(), "{prefix}");
    }
    // Off: none reserved; asking for them opens on ordinary pages and works.
    assert_eq!(
        saved.set(0),
        0,
        "huge pages still in use after the ports closed"
    );
    for (prefix, _) in PREFIXES {
        let nm = open(prefix, &pair.a, true);
        assert!(!nm.uses_huge_pages(), "{prefix}");
        both_ways(prefix, &pair, &nm);
    }
}

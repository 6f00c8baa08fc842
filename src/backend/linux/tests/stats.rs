//! `Netmap::stats` on both Linux drivers: the kernel's drop counters move when a receiver
//! does not keep up, and are reported through the public API (issue 22.1).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{bulk_lock, ns_udp, PREFIXES};
use super::sockets::PATIENCE;
use super::testnet::{require_net, VethPair};
use crate::backend::BackendKind;
use crate::sync::NetmapBuilder;

/// Datagrams the namespace sends at a port whose rings hold 2 × 64 frames.
const FLOOD: usize = 3000;

/// A port with 64-slot rings that nobody reads while the namespace peer sends `FLOOD`
/// datagrams: the kernel drops what finds no room and counts it (AF_PACKET `tp_drops`,
/// AF_XDP `rx_dropped` with `rx_fill_ring_empty_descs`). Counters only grow, and what is
/// then read plus what was counted lost is at most what was sent.
#[test]
fn drops_of_a_receiver_that_does_not_read_show_in_stats() {
    require_net!();
    let _bulk = bulk_lock();
    for (prefix, kind) in PREFIXES {
        let pair = VethPair::new();
        let nm = NetmapBuilder::new(&format!("{prefix}:{}", pair.a))
            .num_slots(64)
            .build()
            .unwrap_or_else(|e| panic!("{prefix}: {e}"));
        let before = nm.stats().unwrap();
        assert_eq!(before.rx_lost(), Some(0), "{prefix}: {before}");
        let tx = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        for _ in 0..FLOOD {
            tx.send_to(&[7u8; 100], to).unwrap();
        }
        // The kernel counts as its softirq runs: look until the count settles above 0.
        let deadline = Instant::now() + PATIENCE;
        let mut st = nm.stats().unwrap();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let again = nm.stats().unwrap();
            let settled = again == st && st.rx_lost().unwrap() > 0;
            st = again;
            if settled || Instant::now() > deadline {
                break;
            }
        }
        eprintln!("{prefix}: {st}");
        let lost = st.rx_lost().unwrap();
        assert!(
            lost > 0,
            "{prefix}: {FLOOD} datagrams at an unread ring, none counted lost ({st})"
        );
        match kind {
            BackendKind::AfPacket => {
                assert!(st.rx_ring_full.unwrap() > 0, "{prefix}: {st}");
                assert!(st.rx_packets.unwrap() >= st.rx_ring_full.unwrap(), "{st}");
                assert_eq!(st.rx_dropped, None, "AF_PACKET has no rx_dropped");
                assert_eq!(st.rx_truncated, Some(0));
            }
            _ => {
                assert!(st.rx_fill_empty.unwrap() > 0, "{prefix}: {st}");
                assert_eq!(st.rx_packets, None, "AF_XDP does not count packets");
                assert_eq!(st.rx_truncated, None);
            }
        }
        // Now read what the rings hold.
        let mut rx = nm.rx_ring(0).unwrap();
        let mut got = 0usize;
        while nm.wait_readable(Some(Duration::from_millis(200))).unwrap() {
            rx.sync().unwrap();
            got += rx.batch(usize::MAX).count();
            rx.sync().unwrap();
        }
        assert!(got > 0, "{prefix}: nothing delivered");
        let after = nm.stats().unwrap();
        assert!(
            after.rx_lost().unwrap() >= lost,
            "{prefix}: a counter went back"
        );
        assert!(
            got as u64 + after.rx_lost().unwrap() <= FLOOD as u64,
            "{prefix}: {got} read + {after} lost > {FLOOD} sent"
        );
        // One queue here: the ring's counters are the port's.
        assert_eq!(nm.ring_stats(0).unwrap(), nm.stats().unwrap(), "{prefix}");
        assert!(nm.ring_stats(nm.num_rx_rings()).is_err());
    }
}

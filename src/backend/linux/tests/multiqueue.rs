//! Every ring of a multi-queue `xdp:` port from one task (issue 22.6): a veth pair with 4
//! queues, datagrams to 64 ports from a socket in the namespace (the kernel spreads the flows
//! over the queues), all counted by the Tokio layer's port-level receive.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::ports::{bulk_lock, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, VethPair};
use crate::sync::NetmapBuilder;
use crate::tokio_async::TokioNetmap;

const QUEUES: u32 = 4;
/// Datagrams sent, half received in batches, half through the merged `Stream`.
const N: usize = 40_000;
const PORTS: u16 = 64;
/// Datagrams in flight at most: the veth's per-queue ring (256) never overflows.
const WINDOW: usize = 128;

/// Sends `N` datagrams from the namespace to `a`'s ports 7000..7064, at most `WINDOW` ahead
/// of `received`.
fn ns_sender(pair: &VethPair, received: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    let tx = ns_udp(pair, 0);
    let ip_a = pair.ip_a;
    std::thread::spawn(move || {
        for i in 0..N {
            let deadline = Instant::now() + PATIENCE;
            while i >= received.load(Ordering::Acquire) + WINDOW {
                assert!(Instant::now() < deadline, "receiver stalled at {i} of {N}");
                std::thread::sleep(Duration::from_micros(50));
            }
            let to = SocketAddrV4::new(ip_a, 7000 + (i % PORTS as usize) as u16);
            tx.send_to(&(i as u32).to_be_bytes(), to).unwrap();
        }
    })
}

/// Whether `f` is one of the test's datagrams.
fn ours(f: &[u8]) -> bool {
    parse_udp(f).is_some_and(|(e, _)| (7000..7000 + PORTS).contains(&e.dst_port))
}

/// `TokioNetmap::rx_port` on `xdp:` over 4 queues, in one task: every datagram is counted
/// (half by `recv_batch`, half by the merged `Stream`), and more than one ring delivered
/// (else the spread this test is about did not happen). Before: ring 0 alone saw a quarter.
/// Then the per-queue counters sum to the port's.
#[test]
fn one_task_receives_every_queue_of_a_four_queue_port() {
    require_net!();
    let _bulk = bulk_lock();
    let pair = VethPair::with_queues(QUEUES);
    let nm = NetmapBuilder::new(&format!("xdp:{}", pair.a))
        .build()
        .unwrap();
    assert_eq!(nm.num_rx_rings(), QUEUES as usize, "one ring per queue");
    let received = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let per_ring = rt.block_on(async {
        let tnm = TokioNetmap::new(nm).unwrap();
        let mut rx = tnm.rx_port().unwrap();
        assert!(
            tnm.rx_ring(0).is_err(),
            "the rings are taken by the port receiver"
        );
        let sender = ns_sender(&pair, received.clone());
        let mut per_ring = [0usize; QUEUES as usize];
        let deadline = Instant::now() + PATIENCE * 2;
        let mut got = 0;
        while got < N / 2 {
            assert!(Instant::now() < deadline, "only {got} of {N} arrived");
            let batch = tokio::time::timeout(PATIENCE, rx.recv_batch(64))
                .await
                .unwrap_or_else(|_| panic!("nothing for {PATIENCE:?} at {got}"))
                .unwrap();
            for f in batch {
                if ours(f.payload()) {
                    per_ring[f.ring_index()] += 1;
                    got += 1;
                }
            }
            received.store(got, Ordering::Release);
        }
        while got < N {
            let f = tokio::time::timeout(PATIENCE, rx.next())
                .await
                .unwrap_or_else(|_| panic!("nothing for {PATIENCE:?} at {got}"))
                .expect("the stream does not end")
                .unwrap();
            if ours(f.payload()) {
                per_ring[f.ring_index()] += 1;
                got += 1;
                received.store(got, Ordering::Release);
            }
        }
        sender.join().unwrap();
        assert_eq!(got, N);
        let total = tnm.netmap().stats().unwrap();
        let sum = (0..QUEUES as usize)
            .map(|i| tnm.netmap().ring_stats(i).unwrap())
            .reduce(|a, b| a.merge(&b))
            .unwrap();
        assert_eq!(sum, total, "per-queue counters sum to the port's");
        assert_eq!(total.rx_lost(), Some(0), "nothing lost: {total}");
        per_ring
    });
    eprintln!("datagrams per ring: {per_ring:?}");
    let busy = per_ring.iter().filter(|&&c| c > 0).count();
    assert!(
        busy > 1,
        "all {N} datagrams came on one queue ({per_ring:?}): the kernel did not spread them, \
         so this test proves nothing"
    );
}

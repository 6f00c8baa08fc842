//! Many rings on one `afpacket:` port (issue 22.5): `num_rx_rings(n)` opens `n` AF_PACKET
//! sockets in one `PACKET_FANOUT` group, ring `i` being socket `i`.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ports::{bulk_lock, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, VethPair};
use crate::backend::FanoutMode;
use crate::sync::{Netmap, NetmapBuilder};

const RINGS: usize = 4;
const PORTS: u16 = 64;
/// Datagrams in flight at most (the veth's backlog never overflows).
const WINDOW: usize = 128;

/// Sends `n` datagrams (payload: the sequence number) from the namespace to `a`'s ports
/// 7000..7064, at most `WINDOW` ahead of `received`.
fn ns_sender(pair: &VethPair, n: usize, received: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    let tx = ns_udp(pair, 0);
    let ip_a = pair.ip_a;
    std::thread::spawn(move || {
        for i in 0..n {
            let deadline = Instant::now() + PATIENCE;
            while i >= received.load(Ordering::Acquire) + WINDOW {
                assert!(Instant::now() < deadline, "receiver stalled at {i} of {n}");
                std::thread::sleep(Duration::from_micros(50));
            }
            let to = SocketAddrV4::new(ip_a, 7000 + (i % PORTS as usize) as u16);
            tx.send_to(&(i as u32).to_be_bytes(), to).unwrap();
        }
    })
}

/// Receives the `n` datagrams of [`ns_sender`] on the RX rings of `ports` (ring `r` of
/// port `p`, numbered in order), checking each flow's order per ring; returns the count per
/// ring and the ring(s) each flow used.
fn receive_all(ports: &[Netmap], n: usize, received: &AtomicUsize) -> (Vec<usize>, Vec<usize>) {
    let mut rings: Vec<_> = ports
        .iter()
        .flat_map(|nm| (0..nm.num_rx_rings()).map(move |i| nm.rx_ring(i).unwrap()))
        .collect();
    let mut per_ring = vec![0usize; rings.len()];
    // (ring, flow) -> last sequence number seen.
    let mut last: HashMap<(usize, u16), u32> = HashMap::new();
    let mut flow_ring: HashMap<u16, usize> = HashMap::new();
    let deadline = Instant::now() + PATIENCE * 4;
    let mut got = 0;
    while got < n {
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} arrived ({per_ring:?})"
        );
        for nm in ports {
            nm.wait_readable(Some(Duration::from_millis(5))).unwrap();
        }
        for (r, rx) in rings.iter_mut().enumerate() {
            rx.sync().unwrap();
            while let Some(f) = rx.recv() {
                let Some((e, p)) = parse_udp(f.payload()) else {
                    continue;
                };
                if !(7000..7000 + PORTS).contains(&e.dst_port) || p.len() != 4 {
                    continue;
                }
                let seq = u32::from_be_bytes(p.try_into().unwrap());
                if let Some(prev) = last.insert((r, e.dst_port), seq) {
                    assert!(
                        seq > prev,
                        "ring {r}, flow {}: {seq} after {prev}",
                        e.dst_port
                    );
                }
                let first = *flow_ring.entry(e.dst_port).or_insert(r);
                assert_eq!(first, r, "flow {} moved from ring {first}", e.dst_port);
                per_ring[r] += 1;
                got += 1;
            }
        }
        received.store(got, Ordering::Release);
    }
    let flows_per_ring = (0..rings.len())
        .map(|r| flow_ring.values().filter(|&&x| x == r).count())
        .collect();
    (per_ring, flows_per_ring)
}

/// A 4-ring `afpacket:` port with hash fanout: 8,000 datagrams over 64 flows, every one
/// counted across the rings, more than one ring used, each flow on one ring and in order.
#[test]
fn hash_fanout_spreads_flows_over_four_rings() {
    require_net!();
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .num_rx_rings(RINGS)
        .fanout(FanoutMode::Hash)
        .build()
        .unwrap();
    assert_eq!(nm.num_rx_rings(), RINGS, "one RX ring per socket");
    assert_eq!(nm.num_tx_rings(), RINGS, "one TX ring per socket");
    const N: usize = 8_000;
    let received = Arc::new(AtomicUsize::new(0));
    let sender = ns_sender(&pair, N, received.clone());
    let (per_ring, flows) = receive_all(std::slice::from_ref(&nm), N, &received);
    sender.join().expect("namespace sender");
    eprintln!(
        "afpacket hash fanout: {N} datagrams per ring {per_ring:?}, flows per ring {flows:?}"
    );
    assert_eq!(per_ring.iter().sum::<usize>(), N);
    assert!(
        per_ring.iter().filter(|&&c| c > 0).count() > 1,
        "one ring got everything: {per_ring:?}"
    );
    assert_eq!(flows.iter().sum::<usize>(), PORTS as usize);
    let st = nm.stats().unwrap();
    assert!(st.rx_packets.unwrap() >= N as u64, "{st:?}");
}

/// `build_per_ring` on a 2-ring fanout port: two registrations named `afpacket:IF-0` and
/// `-1`, one socket each, in one group: together they see every datagram.
#[test]
fn per_ring_registrations_share_one_group() {
    require_net!();
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let ports = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .num_rx_rings(2)
        .build_per_ring()
        .unwrap();
    assert_eq!(ports.len(), 2);
    for (i, nm) in ports.iter().enumerate() {
        assert_eq!(nm.name(), format!("afpacket:{}-{i}", pair.a));
        assert_eq!(nm.num_rx_rings(), 1);
    }
    const N: usize = 4_000;
    let received = Arc::new(AtomicUsize::new(0));
    let sender = ns_sender(&pair, N, received.clone());
    let (per_ring, _) = receive_all(&ports, N, &received);
    sender.join().expect("namespace sender");
    eprintln!("afpacket per-ring fanout: {N} datagrams per registration {per_ring:?}");
    assert_eq!(per_ring.iter().sum::<usize>(), N);
    assert!(per_ring.iter().all(|&c| c > 0), "{per_ring:?}");
}

/// Ring counts a fanout port cannot have, and a fanout mode on another backend, fail with
/// the cause and the fix; one ring without a fanout call is one socket as before.
#[test]
fn bad_fanout_requests_are_refused() {
    require_net!();
    let pair = VethPair::new();
    let name = format!("afpacket:{}", pair.a);
    let e = NetmapBuilder::new(&name)
        .num_rx_rings(300)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at most 256"), "{e}");
    let e = NetmapBuilder::new(&name)
        .num_tx_rings(2)
        .num_rx_rings(3)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("same number"), "{e}");
    let e = NetmapBuilder::new(&format!("xdp:{}", pair.a))
        .fanout(FanoutMode::Cpu)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("drop the fanout() call"), "{e}");
    let one = NetmapBuilder::new(&name).build().unwrap();
    assert_eq!((one.num_tx_rings(), one.num_rx_rings()), (1, 1));
    let ports = NetmapBuilder::new(&name).build_per_ring().unwrap();
    assert_eq!(ports.len(), 1);
}

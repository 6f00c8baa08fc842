//! The bridge's ring work on emulated pipes of one parent (one memory, as a NIC port and
//! its host rings are): frames that are not ours go to the "host" ring in their order, zero
//! copy at the front of a ring and copied between our datagrams; what the "host" sends goes
//! out on the "NIC"; a full ring drops and counts. (On the kernel module with real host
//! rings: `tests/udp_host_rings.rs`.)

use std::net::{IpAddr, SocketAddr};

use super::bridge::{foreign_to_host, host_to_nic, split};
use super::endpoint::{Endpoint, UdpBatch};
use super::{Local, UdpStats};
use crate::sync::{RxRing, TxRing};
use crate::wire::{Addressing, MacAddr};
use crate::{Netmap, NetmapBuilder};

const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn open(name: &str) -> Netmap {
    NetmapBuilder::new(name).num_slots(64).build().unwrap()
}

/// A non-UDP frame (ARP's ethertype) carrying `tag`.
fn arp(tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&PEER.0);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14] = tag;
    f
}

/// A UDP frame from the peer to 10.1.0.1:`port` carrying `payload`.
fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let a = Addressing {
        src_mac: PEER,
        dst_mac: US,
        vlan: None,
        src: "10.1.0.2:9000".parse().unwrap(),
        dst: SocketAddr::new("10.1.0.1".parse::<IpAddr>().unwrap(), port),
        hop_limit: 64,
    };
    let mut f = vec![0u8; a.header_len() + payload.len()];
    a.emit_with(&mut f, payload).unwrap();
    f
}

/// Sends `frames` on `tx` (the ring sees the slots its peer freed at its own sync).
fn send_all(tx: &mut TxRing, frames: &[Vec<u8>]) {
    tx.sync().unwrap();
    for f in frames {
        tx.send(f).unwrap();
    }
    tx.sync().unwrap();
}

fn drain(rx: &mut RxRing) -> Vec<Vec<u8>> {
    rx.sync().unwrap();
    let got = rx.batch(usize::MAX).map(|f| f.payload().to_vec()).collect();
    rx.sync().unwrap();
    got
}

fn endpoint() -> Endpoint {
    Endpoint::new(Local::new(5000).mac(US).ip("10.1.0.1".parse().unwrap()))
}

#[test]
fn frames_not_ours_reach_the_host_ring_in_order() {
    // Pipe 1 is the wire: the peer sends on br{1, we receive on br}1. Pipe 2 is the host
    // stack: we send on br{2, the host receives on br}2.
    let (wire_peer, wire_us) = (open("bra{1"), open("bra}1"));
    let (host_us, host_stack) = (open("bra{2"), open("bra}2"));
    assert!(wire_us.shares_memory_with(&host_us));
    // arp, ours, foreign UDP, ours, arp: the front one is moved, the others copied.
    let sent = [
        arp(1),
        udp(5000, b"one"),
        udp(5001, b"other"),
        udp(5000, b"two"),
        arp(2),
    ];
    send_all(&mut wire_peer.tx_ring(0).unwrap(), &sent);

    let mut rx = wire_us.rx_ring(0).unwrap();
    let mut host = host_us.tx_ring(0).unwrap();
    let mut ep = endpoint();
    rx.sync().unwrap();
    assert!(foreign_to_host(&mut rx, &mut host, &mut ep).unwrap());
    assert_eq!(ep.stats.to_host, 1, "the front frame, moved");
    let got: Vec<Vec<u8>> = UdpBatch {
        frames: rx.batch(64),
        endpoint: &mut ep,
        host: Some(&mut host),
    }
    .map(|d| d.payload().to_vec())
    .collect();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(rx.available(), 0);
    host.sync().unwrap();
    let seen = drain(&mut host_stack.rx_ring(0).unwrap());
    assert_eq!(seen, [arp(1), udp(5001, b"other"), arp(2)]);
    assert_eq!(
        ep.stats,
        UdpStats {
            delivered: 2,
            not_ours: 3,
            to_host: 3,
            ..UdpStats::default()
        }
    );

    // A ring of foreign frames only: all moved, nothing for the endpoint.
    send_all(&mut wire_peer.tx_ring(0).unwrap(), &[arp(3), udp(53, b"x")]);
    rx.sync().unwrap();
    assert!(!foreign_to_host(&mut rx, &mut host, &mut ep).unwrap());
    rx.sync().unwrap();
    let seen = drain(&mut host_stack.rx_ring(0).unwrap());
    assert_eq!(seen, [arp(3), udp(53, b"x")]);
    assert_eq!(ep.stats.to_host, 5);
    assert_eq!(ep.stats.delivered, 2);
}

#[test]
fn what_the_host_sends_goes_out_and_a_full_ring_drops_counted() {
    let (wire_peer, wire_us) = (open("brb{1"), open("brb}1"));
    let (host_us, host_stack) = (open("brb{2"), open("brb}2"));
    let mut nic = wire_us.tx_ring(0).unwrap();
    let mut host_rx = host_us.rx_ring(0).unwrap();
    let mut host_tx = host_stack.tx_ring(0).unwrap();
    let mut peer_rx = wire_peer.rx_ring(0).unwrap();
    let mut stats = UdpStats::default();

    let frames: Vec<Vec<u8>> = (0..10).map(arp).collect();
    send_all(&mut host_tx, &frames);
    host_rx.sync().unwrap();
    host_to_nic(&mut host_rx, &mut nic, &mut stats).unwrap();
    assert_eq!(stats.from_host, 10);
    assert_eq!(drain(&mut peer_rx), frames);

    // The peer stops reading: the NIC ring fills (63 usable slots of 64), the rest of what
    // the host sends is dropped and counted, not left to spin on.
    let mut total = 0u64;
    for round in 0..3u8 {
        let frames: Vec<Vec<u8>> = (0..40).map(|i| arp(round * 40 + i)).collect();
        send_all(&mut host_tx, &frames);
        host_rx.sync().unwrap();
        host_to_nic(&mut host_rx, &mut nic, &mut stats).unwrap();
        total += 40;
        assert_eq!(host_rx.available(), 0, "nothing left behind");
    }
    assert_eq!(stats.from_host + stats.bridge_dropped, 10 + total);
    assert!(stats.bridge_dropped > 0, "{stats:?}");
    assert_eq!(
        drain(&mut peer_rx).len() as u64,
        stats.from_host - 10,
        "every frame counted as sent went out"
    );
}

#[test]
fn a_port_without_host_rings_is_not_bridged() {
    let p = open("brc{1");
    let rx = vec![p.rx_ring(0).unwrap()];
    let tx = vec![p.tx_ring(0).unwrap()];
    let (rx, tx, bridge) = split(rx, tx);
    assert!(bridge.is_none());
    assert_eq!((rx.len(), tx.len()), (1, 1));
}

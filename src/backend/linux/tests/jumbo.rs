//! Jumbo frames on `afpacket:` (issue 22.3): on a veth at MTU 9000 the port sizes its kernel
//! frames and slot buffers from the MTU, and a 9014-byte frame goes out to a UDP socket in the
//! namespace, which sends it back, whole, both ways.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{ends_a_to_b, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::backend::afpacket::frame_size_for;
use crate::sync::NetmapBuilder;

#[test]
fn afpacket_carries_a_9000_byte_mtu_frame_both_ways() {
    require_net!();
    let pair = VethPair::new();
    pair.set_mtu(9000).unwrap();
    let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .build()
        .unwrap_or_else(|e| panic!("afpacket at MTU 9000: {e}"));
    let (mut tx, mut rx) = (nm.tx_ring(0).unwrap(), nm.rx_ring(0).unwrap());
    assert_eq!(rx.buf_size(), 16384, "slot buffers sized from the MTU");
    assert!(tx.max_payload_size() >= 9014);
    // IPv4 + UDP headers fill the rest of the 9000-byte MTU.
    let payload: Vec<u8> = (0..9000 - 28).map(|i| (i * 7 % 251) as u8).collect();
    let echo = ns_udp(&pair, 9000);
    let frame = udp_frame(&ends_a_to_b(&pair, 9000), &payload);
    assert_eq!(frame.len(), 9014);
    tx.send(&frame).unwrap();
    tx.sync().unwrap();
    // The namespace receives it whole and sends it back to `a`, port 7000.
    let mut buf = vec![0u8; 16384];
    let (n, _) = echo
        .recv_from(&mut buf)
        .expect("the jumbo frame reached the namespace");
    assert_eq!(&buf[..n], &payload[..], "received whole in the namespace");
    echo.send_to(&buf[..n], SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut back = None;
    while back.is_none() && Instant::now() < deadline {
        if !nm.wait_readable(Some(Duration::from_millis(50))).unwrap() {
            continue;
        }
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if let Some((e, p)) = parse_udp(f.payload()) {
                if e.dst_port == 7000 {
                    back = Some((f.len(), p.to_vec()));
                }
            }
        }
    }
    let (len, p) = back.expect("the jumbo frame came back to the port");
    assert_eq!(len, 9014);
    assert_eq!(p, payload, "received whole on the port");
    assert_eq!(nm.stats().unwrap().rx_truncated, Some(0));
}

#[test]
fn afpacket_frame_size_follows_the_mtu() {
    assert_eq!(frame_size_for(1514), 2048);
    assert_eq!(frame_size_for(1982), 2048);
    assert_eq!(frame_size_for(1983), 4096);
    assert_eq!(frame_size_for(9014), 16384);
    assert_eq!(frame_size_for(65549), 65536);
}

//! `afpacket:` receive on `TPACKET_V3` blocks (issue 19.2): a block of hundreds of packets
//! read through a ring smaller than the block (rxsyncs that stop mid-block and carry on),
//! and the `TPACKET_V2` mode (`block_timeout(Duration::ZERO)`) still both ways.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{ends_a_to_b, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::sync::{Netmap, NetmapBuilder};

/// Receives UDP payloads to port 7000 on ring 0 until `n` arrived or `PATIENCE` passed.
fn receive(nm: &Netmap, n: usize) -> Vec<Vec<u8>> {
    let mut rx = nm.rx_ring(0).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < n && Instant::now() < deadline {
        if !nm.wait_readable(Some(Duration::from_millis(50))).unwrap() {
            continue;
        }
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if let Some((e, p)) = parse_udp(f.payload()) {
                if e.dst_port == 7000 {
                    got.push(p.to_vec());
                }
            }
        }
    }
    got
}

fn datagram(i: usize) -> Vec<u8> {
    format!("block {i:05}").into_bytes()
}

/// 300 datagrams sent at once land in one or two 64 KiB blocks; a 64-slot ring takes them
/// over several rxsyncs, each stopping mid-block: all arrive, in order, none dropped.
#[test]
fn afpacket_reads_a_block_larger_than_its_ring_over_several_syncs() {
    require_net!();
    let pair = VethPair::new();
    let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .num_slots(64)
        .block_timeout(Duration::from_millis(2))
        .build()
        .unwrap();
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    for i in 0..300 {
        tx.send_to(&datagram(i), to).unwrap();
    }
    let got = receive(&nm, 300);
    let want: Vec<Vec<u8>> = (0..300).map(datagram).collect();
    assert_eq!(got, want, "every datagram, in order");
    let st = nm.stats().unwrap();
    assert_eq!(st.rx_ring_full, Some(0), "{st}");
    assert_eq!(st.rx_freeze, Some(0), "V3 counts queue freezes: {st}");
}

/// `Duration::ZERO`: `TPACKET_V2` frames, with the same behaviour both ways (and stamps).
#[test]
fn afpacket_without_blocks_still_carries_frames_both_ways() {
    require_net!();
    let pair = VethPair::new();
    let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .block_timeout(Duration::ZERO)
        .build()
        .unwrap();
    let sink = ns_udp(&pair, 9000);
    let mut t = nm.tx_ring(0).unwrap();
    t.send(&udp_frame(&ends_a_to_b(&pair, 9000), b"v2 out"))
        .unwrap();
    t.sync().unwrap();
    let mut buf = [0u8; 64];
    let n = sink
        .recv(&mut buf)
        .expect("the V2 frame reached the namespace");
    assert_eq!(&buf[..n], b"v2 out");
    sink.send_to(b"v2 in", SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    assert_eq!(receive(&nm, 1), vec![b"v2 in".to_vec()]);
    assert_eq!(
        nm.stats().unwrap().rx_freeze,
        None,
        "V2 has no queue freezes"
    );
}

#[test]
fn block_timeouts_round_up_to_whole_milliseconds() {
    use crate::backend::afpacket::block_timeout_ms;
    assert_eq!(block_timeout_ms(Duration::ZERO), 0);
    assert_eq!(block_timeout_ms(Duration::from_nanos(1)), 1);
    assert_eq!(block_timeout_ms(Duration::from_millis(1)), 1);
    assert_eq!(block_timeout_ms(Duration::from_micros(1500)), 2);
    assert_eq!(block_timeout_ms(Duration::MAX), u32::MAX);
}

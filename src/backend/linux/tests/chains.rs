//! Slot chains (`NS_MOREFRAG`) on the Linux drivers (issue 22.3). Jumbo frames on `xdp:`: a
//! veth pair at MTU 9000, 8900-byte UDP datagrams both ways between the port and a socket in
//! the namespace, through the sync API and the Tokio layer; the frames travel as multi-buffer
//! descriptors (`XDP_PKT_CONTD`) and as slot chains. Chains a user publishes badly never
//! wedge the TX ring; `afpacket:` gathers a chain into one frame. (`afpacket:`'s own jumbo
//! frames, one slot each: `jumbo`.)

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::ports::{bulk_lock, ends_a_to_b, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::abi::NS_MOREFRAG;
use crate::error::Error;
use crate::ring::next;
use crate::sync::{Netmap, NetmapBuilder};

/// UDP payload of the test datagrams: 8900 + 28 bytes of headers fit an MTU of 9000.
const BIG: usize = 8900;

fn big_payload(seed: u8) -> Vec<u8> {
    (0..BIG)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A veth pair at MTU 9000 and `xdp:` on its `a` end (the MTU is set first: a native-mode
/// program would otherwise have to allow the change).
fn jumbo_port(slots: u32) -> (VethPair, Netmap) {
    let pair = VethPair::new();
    pair.set_mtu(9000).expect("MTU 9000 on the veth pair");
    let nm = NetmapBuilder::new(&format!("xdp:{}", pair.a))
        .num_slots(slots)
        .build()
        .unwrap_or_else(|e| panic!("xdp:{} at MTU 9000: {e}", pair.a));
    (pair, nm)
}

/// A UDP socket in the namespace that sends with "don't fragment" (a datagram over the path
/// MTU fails instead of leaving in IP fragments).
fn ns_sender(pair: &VethPair) -> UdpSocket {
    let s = ns_udp(pair, 0);
    let on: libc::c_int = libc::IP_PMTUDISC_DO;
    crate::backend::linux::os::setsockopt(
        std::os::fd::AsFd::as_fd(&s),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &on,
    )
    .unwrap();
    s
}

/// Waits for a UDP datagram to port 7000 on ring 0 with `recv_packet`; returns the frame's
/// length and payload.
fn receive_big(nm: &Netmap) -> (usize, Vec<u8>) {
    let mut rx = nm.rx_ring(0).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no datagram arrived");
        nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.try_recv_packet().unwrap() {
            assert!(!f.more_fragments());
            if let Some((e, p)) = parse_udp(f.payload()) {
                if e.dst_port == 7000 {
                    return (f.len(), p.to_vec());
                }
            }
        }
    }
}

/// 8900-byte datagrams both ways through the sync API: the namespace's socket to the RX ring
/// (`recv_packet` gathers the chain) and `TxRing::send` (which splits it) to the socket.
#[test]
fn xdp_carries_9000_byte_frames_both_ways() {
    require_net!();
    let _bulk = bulk_lock();
    let (pair, nm) = jumbo_port(0);
    let ns = ns_sender(&pair);
    let sent = big_payload(1);
    ns.send_to(&sent, SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    let (len, got) = receive_big(&nm);
    assert_eq!(len, 14 + 28 + BIG);
    assert_eq!(got, sent, "the frame arrived whole");

    let sink = ns_udp(&pair, 9000);
    let mut tx = nm.tx_ring(0).unwrap();
    let back = big_payload(2);
    let frame = udp_frame(&ends_a_to_b(&pair, 9000), &back);
    assert!(
        frame.len() > tx.max_payload_size(),
        "the frame needs a chain"
    );
    assert_eq!(
        tx.slots_for(frame.len()),
        5,
        "8942 bytes in 1792-byte buffers"
    );
    tx.send(&frame).unwrap();
    tx.sync().unwrap();
    let mut buf = vec![0u8; 16384];
    let (n, _) = sink
        .recv_from(&mut buf)
        .expect("the datagram reaches the namespace");
    assert_eq!(&buf[..n], &back[..]);
}

/// The same through the Tokio layer: the `Stream` yields the whole frame, the `Sink` sends
/// one.
#[cfg(feature = "tokio-async")]
#[test]
fn xdp_carries_9000_byte_frames_through_tokio() {
    use bytes::Bytes;
    use futures::{SinkExt, StreamExt};
    require_net!();
    let _bulk = bulk_lock();
    let (pair, nm) = jumbo_port(0);
    let ns = ns_sender(&pair);
    let sink = ns_udp(&pair, 9000);
    let sent = big_payload(3);
    let back = big_payload(4);
    let frame = Bytes::from(udp_frame(&ends_a_to_b(&pair, 9000), &back));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = crate::tokio_async::TokioNetmap::new(nm).unwrap();
        let mut rx = port.rx_ring(0).unwrap();
        let mut tx = port.tx_ring(0).unwrap();
        ns.send_to(&sent, SocketAddrV4::new(pair.ip_a, 7000))
            .unwrap();
        let got = tokio::time::timeout(PATIENCE, async {
            loop {
                let f = rx.next().await.unwrap().unwrap();
                if let Some((e, p)) = parse_udp(f.payload()) {
                    if e.dst_port == 7000 {
                        break p.to_vec();
                    }
                }
            }
        })
        .await
        .expect("the Stream yields the datagram");
        assert_eq!(got, sent);
        tx.send(frame).await.unwrap();
        SinkExt::<Bytes>::flush(&mut tx).await.unwrap();
    });
    let mut buf = vec![0u8; 16384];
    let (n, _) = sink
        .recv_from(&mut buf)
        .expect("the datagram reaches the namespace");
    assert_eq!(&buf[..n], &back[..]);
}

/// Chains a user publishes badly (slot flags written by hand, as a buggy or hostile user of
/// the raw rings would): one not ended yet waits for its last slot and then goes out whole;
/// one that fills the ring can never end and is refused whole ([`Error::TooManyFragments`]),
/// its slots returned, and the ring goes on.
#[test]
fn unended_tx_chains_wait_or_are_refused_never_wedge() {
    require_net!();
    let _bulk = bulk_lock();
    let (pair, nm) = jumbo_port(64);
    let sink = ns_udp(&pair, 9000);
    let mut tx = nm.tx_ring(0).unwrap();
    let raw = nm.inner.tx[0].raw.clone();
    let n = raw.num_slots();
    let frame = udp_frame(&ends_a_to_b(&pair, 9000), &big_payload(5));
    // Two slots of a 3-slot chain, the first flagged by send; the second's flag set by hand.
    let per = tx.max_payload_size();
    assert_eq!(tx.pending(), 0);
    let first = raw.load_head();
    tx.send(&frame[..2 * per]).unwrap();
    // SAFETY: (test acting as the user of the raw ring) the slots are written, not yet
    // synced: the user's; this thread is alone on the ring.
    unsafe { raw.set_len_flags(next(first, n), per as u16, NS_MOREFRAG) };
    tx.sync().unwrap();
    let mut buf = vec![0u8; 16384];
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(sink.recv_from(&mut buf).is_err(), "half a packet was sent");
    tx.send(&frame[2 * per..]).unwrap();
    tx.sync().unwrap();
    sink.set_read_timeout(Some(PATIENCE)).unwrap();
    let (got, _) = sink
        .recv_from(&mut buf)
        .expect("the ended chain goes out whole");
    assert_eq!(&buf[..got], &frame[42..]);

    // A chain over every slot the ring has (n - 1), never ended.
    assert_eq!(tx.pending(), 0);
    let start = raw.load_head();
    let mut r = tx.reserve_batch(n as usize - 1).unwrap();
    r.fill(|_, buf| {
        buf[..60].fill(0xab);
        60
    })
    .unwrap();
    r.commit();
    let mut k = start;
    for _ in 0..n - 1 {
        // SAFETY: as above.
        unsafe { raw.set_len_flags(k, 60, NS_MOREFRAG) };
        k = next(k, n);
    }
    match tx.sync() {
        Err(Error::TooManyFragments { slots, max }) => {
            assert_eq!((slots, max), (n as usize - 1, 17));
        }
        r => panic!("a chain filling the ring: {r:?}"),
    }
    let deadline = Instant::now() + PATIENCE;
    while tx.space() < n as usize - 1 {
        assert!(
            Instant::now() < deadline,
            "the refused slots did not come back"
        );
        tx.sync().unwrap();
    }
    tx.send(&frame).unwrap();
    tx.sync().unwrap();
    let (got, _) = sink.recv_from(&mut buf).expect("the ring goes on");
    assert_eq!(&buf[..got], &frame[42..]);
}

/// `afpacket:` copies every packet into a kernel frame anyway: a chain of slots (written by
/// hand here; `send` chains only packets over a 2048-byte buffer, longer than this port's
/// MTU) is gathered into one frame, and a chain over the MTU is refused whole.
#[test]
fn afpacket_gathers_a_chain_into_one_frame() {
    require_net!();
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let sink = ns_udp(&pair, 9000);
    let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .build()
        .unwrap();
    let mut tx = nm.tx_ring(0).unwrap();
    let raw = nm.inner.tx[0].raw.clone();
    let n = raw.num_slots();
    let frame = udp_frame(&ends_a_to_b(&pair, 9000), &big_payload(6)[..1400]);
    let over = udp_frame(&ends_a_to_b(&pair, 9000), &big_payload(7)[..1800]);
    assert_eq!(tx.pending(), 0);
    let mut k = raw.load_head();
    for (packet, parts) in [(&over, 2), (&frame, 3)] {
        let per = packet.len().div_ceil(parts);
        for (i, part) in packet.chunks(per).enumerate() {
            tx.send(part).unwrap();
            if i + 1 < parts {
                // SAFETY: (test acting as the user of the raw ring) the slot is written,
                // not yet synced: the user's; this thread is alone on the ring.
                unsafe { raw.set_len_flags(k, part.len() as u16, NS_MOREFRAG) };
            }
            k = next(k, n);
        }
    }
    assert!(matches!(
        tx.sync(),
        Err(Error::FrameOverMtu { len, .. }) if len == over.len()
    ));
    let mut buf = vec![0u8; 4096];
    let (got, _) = sink
        .recv_from(&mut buf)
        .expect("the chain arrives as one datagram");
    assert_eq!(&buf[..got], &frame[42..]);
}

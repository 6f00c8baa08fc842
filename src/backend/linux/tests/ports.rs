//! The AF_XDP and AF_PACKET drivers behind netmap rings, through the public API, on a veth
//! pair with its peer in a namespace (root; skipped with a message elsewhere).

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, UdpEnds, VethPair};
use crate::backend::{BackendChoice, BackendKind};
use crate::error::Error;
use crate::sync::{Netmap, NetmapBuilder};

/// Frames per direction in the bulk tests.
const BULK: usize = 100_000;
/// Frames in flight before the sender waits for the receiver (a rate the path carries
/// without loss: socket buffers never overflow).
const WINDOW: usize = 128;

/// Serialises the bulk tests: all veth pairs share the per-CPU receive backlog
/// (`netdev_max_backlog`), so several 100,000-frame runs at once could overflow it, and a
/// drop there would be the neighbours' doing, not the path's.
pub(super) fn bulk_lock() -> std::sync::MutexGuard<'static, ()> {
    static L: std::sync::Mutex<()> = std::sync::Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) const PREFIXES: [(&str, BackendKind); 2] = [
    ("xdp", BackendKind::Xdp),
    ("afpacket", BackendKind::AfPacket),
];

/// A payload that names its sequence number and varies in length (18..=81 bytes).
pub(super) fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("seq {i:08} ").into_bytes();
    p.extend((0..(i % 64)).map(|k| (k as u8) ^ (i as u8)));
    p
}

pub(super) fn ends_a_to_b(pair: &VethPair, dst_port: u16) -> UdpEnds {
    UdpEnds {
        src_mac: pair.mac_a,
        dst_mac: pair.mac_b,
        src_ip: pair.ip_a,
        dst_ip: pair.ip_b,
        src_port: 40000,
        dst_port,
    }
}

/// A UDP socket bound in the namespace on `b`'s address, with a large receive buffer.
pub(super) fn ns_udp(pair: &VethPair, port: u16) -> UdpSocket {
    let addr = SocketAddrV4::new(pair.ip_b, port);
    let s = pair.in_ns(move || UdpSocket::bind(addr).expect("bind UDP in namespace"));
    let big: libc::c_int = 8 << 20;
    let _ = crate::backend::linux::os::setsockopt(
        std::os::fd::AsFd::as_fd(&s),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &big,
    );
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn open(prefix: &str, ifname: &str) -> Netmap {
    let nm = NetmapBuilder::new(&format!("{prefix}:{ifname}"))
        .build()
        .unwrap_or_else(|e| panic!("{prefix}:{ifname}: {e}"));
    eprintln!("{} on {}", nm.name(), nm.backend());
    nm
}

/// Frames sent through the port's TX ring reach a plain UDP socket in the namespace:
/// byte-exact, in order, all of them.
fn tx_to_namespace(prefix: &str, kind: BackendKind) {
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let rx = ns_udp(&pair, 9000);
    let nm = open(prefix, &pair.a);
    assert_eq!(nm.backend(), kind);
    assert_eq!(nm.name(), format!("{prefix}:{}", pair.a));
    let ends = ends_a_to_b(&pair, 9000);
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for i in 0..BULK {
            let n = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {BULK} never arrived: {e}"));
            assert_eq!(
                &buf[..n],
                &payload(i)[..],
                "datagram {i} differs or is out of order"
            );
            counter.store(i + 1, Ordering::Release);
        }
    });
    let mut tx = nm.tx_ring(0).unwrap();
    let start = Instant::now();
    let mut frame = Vec::new();
    for i in 0..BULK {
        let deadline = Instant::now() + PATIENCE;
        while i >= received.load(Ordering::Acquire) + WINDOW {
            assert!(Instant::now() < deadline, "receiver stalled at {i}");
            std::thread::yield_now();
        }
        frame.clear();
        frame.extend_from_slice(&udp_frame(&ends, &payload(i)));
        loop {
            match tx.send(&frame) {
                Ok(()) => break,
                Err(Error::InsufficientSpace) => {
                    tx.sync().unwrap();
                    assert!(Instant::now() < deadline, "TX ring stayed full at {i}");
                    nm.wait_writable(Some(Duration::from_millis(10))).unwrap();
                }
                Err(e) => panic!("send {i}: {e}"),
            }
        }
        if i % 32 == 31 {
            tx.sync().unwrap();
        }
    }
    tx.sync().unwrap();
    reader.join().expect("namespace reader");
    eprintln!("{prefix}: {BULK} frames out in {:?}", start.elapsed());
    assert_eq!(received.load(Ordering::Acquire), BULK);
}

/// Datagrams sent from the namespace arrive on the port's RX ring as frames: byte-exact, in
/// order, all of them.
fn rx_from_namespace(prefix: &str, kind: BackendKind) {
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let nm = open(prefix, &pair.a);
    assert_eq!(nm.backend(), kind);
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let sender = std::thread::spawn(move || {
        for i in 0..BULK {
            let deadline = Instant::now() + PATIENCE;
            while i >= counter.load(Ordering::Acquire) + WINDOW {
                assert!(Instant::now() < deadline, "port stopped receiving at {i}");
                std::thread::yield_now();
            }
            tx.send_to(&payload(i), to).unwrap();
        }
    });
    let mut rx = nm.rx_ring(0).unwrap();
    let (mac_a, mac_b) = (pair.mac_a, pair.mac_b);
    let mut next = 0usize;
    let mut other = 0usize;
    let deadline = Instant::now() + PATIENCE * 2;
    while next < BULK {
        assert!(
            Instant::now() < deadline,
            "only {next} of {BULK} frames arrived"
        );
        if !nm.wait_readable(Some(Duration::from_millis(100))).unwrap() {
            continue;
        }
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            match parse_udp(f.payload()) {
                Some((e, p)) if e.dst_port == 7000 && e.dst_mac == mac_a && e.src_mac == mac_b => {
                    assert_eq!(
                        p,
                        &payload(next)[..],
                        "frame {next} differs or is out of order"
                    );
                    next += 1;
                }
                _ => other += 1,
            }
        }
        received.store(next, Ordering::Release);
    }
    sender.join().expect("namespace sender");
    eprintln!("{prefix}: {BULK} frames in ({other} unrelated)");
}

#[test]
fn xdp_tx_reaches_a_udp_socket_in_the_namespace() {
    require_net!();
    tx_to_namespace(PREFIXES[0].0, PREFIXES[0].1);
}

#[test]
fn afpacket_tx_reaches_a_udp_socket_in_the_namespace() {
    require_net!();
    tx_to_namespace(PREFIXES[1].0, PREFIXES[1].1);
}

#[test]
fn xdp_rx_gets_every_datagram_from_the_namespace() {
    require_net!();
    rx_from_namespace(PREFIXES[0].0, PREFIXES[0].1);
}

#[test]
fn afpacket_rx_gets_every_datagram_from_the_namespace() {
    require_net!();
    rx_from_namespace(PREFIXES[1].0, PREFIXES[1].1);
}

/// A frame longer than the interface takes is refused with FrameOverMtu by the sync; the
/// frames around it are sent.
#[test]
fn oversize_frames_are_refused_and_the_rest_sent() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let rx = ns_udp(&pair, 9002);
        let nm = open(prefix, &pair.a);
        let ends = ends_a_to_b(&pair, 9002);
        let mut tx = nm.tx_ring(0).unwrap();
        tx.send(&udp_frame(&ends, b"before")).unwrap();
        tx.send(&udp_frame(&ends, &[7u8; 1600])).unwrap();
        tx.send(&udp_frame(&ends, b"after")).unwrap();
        let e = tx.sync().unwrap_err();
        assert!(
            matches!(e, Error::FrameOverMtu { len: 1642, max } if max <= 1514),
            "{prefix}: {e}"
        );
        assert!(e.to_string().contains("MTU"), "{e}");
        let mut buf = [0u8; 2048];
        for want in [&b"before"[..], b"after"] {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want, "{prefix}");
        }
        // The ring goes on: the refused slot is free again.
        tx.send(&udp_frame(&ends, b"again")).unwrap();
        tx.sync().unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"again", "{prefix}");
    }
}

/// Bare names: without /dev/netmap the choice falls to AF_XDP, or to what the builder says;
/// the name reports the engine. Host rings without the module name it.
#[test]
fn bare_names_pick_a_backend_and_say_which() {
    require_net!();
    let pair = VethPair::new();
    if !crate::backend::kernel_available() {
        let nm = NetmapBuilder::new(&pair.a)
            .backend(BackendChoice::Auto)
            .build()
            .unwrap();
        assert_eq!(nm.backend(), BackendKind::Xdp);
        assert_eq!(nm.name(), format!("xdp:{}", pair.a));
        assert_eq!(nm.backend().to_string(), "AF_XDP");
    }
    let nm = NetmapBuilder::new(&pair.a)
        .backend(BackendChoice::AfPacket)
        .build()
        .unwrap();
    assert_eq!(nm.backend(), BackendKind::AfPacket);
    assert_eq!(nm.name(), format!("afpacket:{}", pair.a));
    drop(nm);
    let e = NetmapBuilder::new(&format!("{}^", pair.a))
        .backend(BackendChoice::Xdp)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("netmap"), "{e}");
    let e = Netmap::open(&format!("afpacket:{}^", pair.a)).unwrap_err();
    assert!(e.to_string().contains("netmap kernel module"), "{e}");
}

/// Buffer swaps on an `xdp:` port: a reflector moves every received frame to the TX ring of
/// the same port with `zero_copy_forward` (the RX slot gets the TX slot's buffer and the other
/// way round, `NS_BUF_CHANGED` on both). The frames go back out unchanged, byte for byte, and
/// the swapped buffers keep circulating (the fill ring gets the TX buffers, the TX ring the
/// received ones) over several times the ring size.
#[test]
fn xdp_zero_copy_reflector_sends_back_what_it_receives() {
    require_net!();
    let _bulk = bulk_lock();
    let pair = VethPair::new();
    let nm = open("xdp", &pair.a);
    let (mut rx, mut tx) = (nm.rx_ring(0).unwrap(), nm.tx_ring(0).unwrap());
    // A packet socket on the peer sees the reflected frames (addressed to `a`, from `b`);
    // it ignores what the peer sends itself.
    let b = pair.b.clone();
    let mut tap = pair.in_ns(move || {
        crate::backend::afpacket::tpacket::PacketSocket::new(
            &b,
            &crate::backend::afpacket::tpacket::PacketConfig::default(),
        )
        .unwrap()
    });
    let out = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7002);
    let n = 5 * 1024;
    let (mut sent, mut seen, mut reflected) = (0usize, 0usize, 0usize);
    let deadline = Instant::now() + PATIENCE;
    while seen < n {
        assert!(Instant::now() < deadline, "{seen} of {n} frames came back");
        while sent < n && sent < seen + 64 {
            out.send_to(&payload(sent), to).unwrap();
            sent += 1;
        }
        rx.sync().unwrap();
        reflected += crate::sync::zero_copy_forward(&mut rx, &mut tx, 256).unwrap();
        tx.sync().unwrap();
        while let Some(f) = tap.rx_next().unwrap() {
            if let Some((e, p)) = parse_udp(&f) {
                if e.dst_port == 7002 && e.dst_mac == pair.mac_a && e.src_mac == pair.mac_b {
                    assert_eq!(p, &payload(seen)[..], "reflected frame {seen}");
                    seen += 1;
                }
            }
        }
    }
    assert_eq!(reflected, n, "frames other than the test's were reflected");
    // The port still sends and receives normally after the swaps.
    let rxu = ns_udp(&pair, 9003);
    tx.send(&udp_frame(&ends_a_to_b(&pair, 9003), b"after swaps"))
        .unwrap();
    tx.sync().unwrap();
    let mut buf = [0u8; 64];
    let len = rxu.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"after swaps");
}

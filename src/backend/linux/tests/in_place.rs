//! `RxRing::for_each_frame` on `afpacket:`: packets read in place in the kernel's ring (its
//! `TPACKET_V3` blocks, or `TPACKET_V2` frames), after those a sync already put in slots;
//! the port usable while a callback runs; a panicking callback.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{ends_a_to_b, ns_udp};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::sync::{Netmap, NetmapBuilder, RxRing};

fn datagram(i: usize) -> Vec<u8> {
    format!("in place {i:04}").into_bytes()
}

/// Reads UDP payloads to port 7000 with `for_each_frame` until `n` came or `PATIENCE`
/// passed: each with whether it came from a slot and whether it had a receive time.
fn each(rx: &mut RxRing, n: usize) -> Vec<(Vec<u8>, bool, bool)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < n && Instant::now() < deadline {
        rx.for_each_frame(64, Some(Duration::from_millis(50)), |f| {
            if let Some((e, p)) = parse_udp(f.payload()) {
                if e.dst_port == 7000 {
                    let from_slot = f.slot_index().is_some();
                    got.push((p.to_vec(), from_slot, f.timestamp().is_some()));
                }
            }
        })
        .unwrap();
    }
    got
}

fn port(pair: &VethPair, block_timeout: Duration) -> Netmap {
    NetmapBuilder::new(&format!("afpacket:{}", pair.a))
        .num_slots(64)
        .block_timeout(block_timeout)
        .build()
        .unwrap()
}

/// On blocks and on frames: every datagram, in order, none through a slot (nothing synced,
/// so nothing was copied), each with the kernel's receive time; rounds of more packets than
/// the ring has slots and one call takes, five rounds wrapping the kernel's ring (4 blocks
/// of 64 KiB, 128 frames) several times, so blocks and frames must have gone back.
#[test]
fn for_each_frame_reads_afpacket_packets_in_place_in_order() {
    require_net!();
    for (timeout, per_round) in [(Duration::from_millis(2), 400), (Duration::ZERO, 100)] {
        let pair = VethPair::new();
        let nm = port(&pair, timeout);
        let mut rx = nm.rx_ring(0).unwrap();
        let tx = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        for round in 0..5 {
            let first = round * per_round;
            for i in first..first + per_round {
                tx.send_to(&datagram(i), to).unwrap();
            }
            let got = each(&mut rx, per_round);
            let want: Vec<_> = (first..first + per_round)
                .map(|i| (datagram(i), false, true))
                .collect();
            assert!(
                got == want,
                "block timeout {timeout:?}, round {round}: {} of {per_round}, first {:?}",
                got.len(),
                got.first()
            );
        }
        assert_eq!(rx.available(), 0, "no slot was filled");
        assert_eq!(nm.stats().unwrap().rx_ring_full, Some(0));
    }
}

/// Packets a sync put in the ring's slots are handed over first, then the kernel's.
#[test]
fn for_each_frame_hands_over_slots_before_packets_in_place() {
    require_net!();
    let pair = VethPair::new();
    let nm = port(&pair, Duration::from_millis(1));
    let mut rx = nm.rx_ring(0).unwrap();
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    for i in 0..5 {
        tx.send_to(&datagram(i), to).unwrap();
    }
    // The port's wait copies what came into slots (the ring handle itself looks at nothing).
    let deadline = Instant::now() + PATIENCE;
    while !nm.wait_readable(Some(Duration::from_millis(50))).unwrap() {
        assert!(Instant::now() < deadline, "the first datagrams never came");
    }
    for i in 5..10 {
        tx.send_to(&datagram(i), to).unwrap();
    }
    let got = each(&mut rx, 10);
    let want: Vec<_> = (0..10).map(|i| (datagram(i), i < 5, true)).collect();
    assert_eq!(got, want);
}

/// While a callback runs, the port stays usable: from the callback itself (send and sync on
/// the same socket, wait, statistics) and from another thread, which the callback waits for
/// (a lock held across callbacks made both hang).
#[test]
fn the_port_stays_usable_while_a_for_each_frame_callback_runs() {
    require_net!();
    let pair = VethPair::new();
    let nm = port(&pair, Duration::from_millis(1));
    let mut rx = nm.rx_ring(0).unwrap();
    let mut txr = nm.tx_ring(0).unwrap();
    let sink = ns_udp(&pair, 9000);
    let tx = ns_udp(&pair, 0);
    tx.send_to(b"x", SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut calls = 0;
    std::thread::scope(|s| {
        let deadline = Instant::now() + PATIENCE;
        while calls == 0 && Instant::now() < deadline {
            rx.for_each_frame(1, Some(Duration::from_millis(50)), |_| {
                calls += 1;
                nm.wait_readable(Some(Duration::ZERO)).unwrap();
                nm.stats().unwrap();
                let frame = udp_frame(&ends_a_to_b(&pair, 9000), b"from the callback");
                txr.send(&frame).unwrap();
                txr.sync().unwrap();
                let (nm, done_tx) = (&nm, done_tx.clone());
                s.spawn(move || {
                    nm.stats().unwrap();
                    nm.wait_readable(Some(Duration::ZERO)).unwrap();
                    done_tx.send(()).unwrap();
                });
                done_rx
                    .recv_timeout(PATIENCE)
                    .expect("another thread used the port while the callback ran");
            })
            .unwrap();
        }
    });
    assert_eq!(calls, 1, "a packet came");
    let mut buf = [0u8; 64];
    let n = sink.recv(&mut buf).expect("the callback's frame went out");
    assert_eq!(&buf[..n], b"from the callback");
}

/// A callback that panics ends the call after its frame; the panic reaches the caller, the
/// port stays usable, and the next calls go on with the next frame: every datagram handed
/// over exactly once.
#[test]
fn a_panicking_callback_loses_and_repeats_no_packet() {
    require_net!();
    for timeout in [Duration::from_millis(1), Duration::ZERO] {
        let pair = VethPair::new();
        let nm = port(&pair, timeout);
        let mut rx = nm.rx_ring(0).unwrap();
        let tx = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        for i in 0..20 {
            tx.send_to(&datagram(i), to).unwrap();
        }
        let mut seen = Vec::new();
        let mut panics = 0;
        let deadline = Instant::now() + PATIENCE;
        while seen.len() < 20 && Instant::now() < deadline {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rx.for_each_frame(64, Some(Duration::from_millis(50)), |f| {
                    if let Some((e, p)) = parse_udp(f.payload()) {
                        if e.dst_port == 7000 {
                            seen.push(p.to_vec());
                            if seen.len() % 7 == 3 {
                                panic!("callback panics at datagram {}", seen.len() - 1);
                            }
                        }
                    }
                })
            }));
            match r {
                Ok(r) => {
                    r.unwrap();
                }
                Err(_) => panics += 1,
            }
        }
        let want: Vec<_> = (0..20).map(datagram).collect();
        assert!(seen == want, "{timeout:?}: {} seen, {seen:?}", seen.len());
        assert_eq!(panics, 3, "{timeout:?}");
        nm.wait_readable(Some(Duration::ZERO)).unwrap();
        nm.stats().unwrap();
    }
}

/// The async `for_each_frame` on `afpacket:`: it sleeps on the ring's socket (the datagrams
/// come after it started waiting), then reads every datagram in place, in order, none
/// through a slot: its wait does not sync, which would copy them into slots.
#[cfg(feature = "tokio-async")]
#[test]
fn async_for_each_frame_waits_on_the_socket_and_reads_in_place() {
    require_net!();
    let pair = VethPair::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let nm = {
        let _in = rt.enter();
        crate::tokio_async::TokioNetmap::new(port(&pair, Duration::from_millis(1))).unwrap()
    };
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..300 {
            tx.send_to(&datagram(i), to).unwrap();
        }
    });
    let got = rt.block_on(async {
        let mut rx = nm.rx_ring(0).unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while got.len() < 300 {
            let each = rx.for_each_frame(64, |f| {
                if let Some((e, p)) = parse_udp(f.payload()) {
                    if e.dst_port == 7000 {
                        got.push((p.to_vec(), f.slot_index().is_some()));
                    }
                }
            });
            match tokio::time::timeout_at(deadline, each).await {
                Ok(r) => assert!(r.unwrap() > 0, "a wait ends with frames"),
                Err(_) => break,
            }
        }
        got
    });
    sender.join().unwrap();
    let want: Vec<_> = (0..300).map(|i| (datagram(i), false)).collect();
    assert!(got == want, "{} of 300, first {:?}", got.len(), got.first());
}

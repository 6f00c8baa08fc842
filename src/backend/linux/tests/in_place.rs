//! `RxRing::for_each_frame` on `afpacket:`: packets read in place in the kernel's ring (its
//! `TPACKET_V3` blocks, or `TPACKET_V2` frames), after those a sync already put in slots,
//! and the refusal of a sync of the same socket from inside the callback.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::ns_udp;
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, VethPair};
use crate::error::Error;
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
/// so nothing was copied), each with the kernel's receive time; more packets than the ring
/// has slots, and than one call takes (on frames, fewer than the kernel's 128 frames, all
/// sent before the first is read).
#[test]
fn for_each_frame_reads_afpacket_packets_in_place_in_order() {
    require_net!();
    for (timeout, n) in [(Duration::from_millis(2), 300), (Duration::ZERO, 100)] {
        let pair = VethPair::new();
        let nm = port(&pair, timeout);
        let mut rx = nm.rx_ring(0).unwrap();
        let tx = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        for i in 0..n {
            tx.send_to(&datagram(i), to).unwrap();
        }
        let got = each(&mut rx, n);
        let want: Vec<_> = (0..n).map(|i| (datagram(i), false, true)).collect();
        assert!(
            got == want,
            "block timeout {timeout:?}: {} of {n}, first {:?}",
            got.len(),
            got.first()
        );
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
    // The wait's rxsync copies what came into slots.
    let deadline = Instant::now() + PATIENCE;
    while rx.available() < 5 && Instant::now() < deadline {
        nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
    }
    for i in 5..10 {
        tx.send_to(&datagram(i), to).unwrap();
    }
    let got = each(&mut rx, 10);
    let want: Vec<_> = (0..10).map(|i| (datagram(i), i < 5, true)).collect();
    assert_eq!(got, want);
}

/// A callback that syncs, waits on or reads the statistics of the port whose socket it is
/// reading gets an error naming the cause (the call would otherwise never return); after the
/// call the same work succeeds.
#[test]
fn afpacket_socket_work_inside_a_for_each_frame_callback_is_refused() {
    require_net!();
    let pair = VethPair::new();
    let nm = port(&pair, Duration::from_millis(1));
    let mut rx = nm.rx_ring(0).unwrap();
    let mut txr = nm.tx_ring(0).unwrap();
    let tx = ns_udp(&pair, 0);
    tx.send_to(b"x", SocketAddrV4::new(pair.ip_a, 7000))
        .unwrap();
    let mut errors = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while errors.is_empty() && Instant::now() < deadline {
        rx.for_each_frame(1, Some(Duration::from_millis(50)), |_| {
            errors.push(nm.wait_readable(Some(Duration::ZERO)).map(drop));
            errors.push(nm.stats().map(drop));
            errors.push(txr.sync());
        })
        .unwrap();
    }
    assert_eq!(errors.len(), 3, "a packet came");
    for e in errors {
        match e {
            Err(Error::PortBusy(m)) => assert!(m.contains("for_each_frame"), "{m}"),
            other => panic!("expected PortBusy, got {other:?}"),
        }
    }
    nm.wait_readable(Some(Duration::ZERO)).unwrap();
    nm.stats().unwrap();
    txr.sync().unwrap();
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

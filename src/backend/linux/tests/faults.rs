//! Faults on live interfaces (issue 18): an MTU beyond what a port receives whole, raised
//! while the port is open, and the interface set down or deleted while traffic flows. Each
//! ends in a clear error or carrying on: never a hang, a panic, a frame delivered cut or a
//! program left attached.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::ports::{ns_udp, PREFIXES};
use super::sockets::{detached_soon, PATIENCE};
use super::testnet::{parse_udp, require_net, VethPair};
use crate::backend::linux::iface::Interface;
use crate::error::Error;
use crate::sync::{Netmap, NetmapBuilder};

fn open(prefix: &str, ifname: &str) -> Result<Netmap, Error> {
    NetmapBuilder::new(&format!("{prefix}:{ifname}")).build()
}

/// Receives on ring 0 until `done` says so or `PATIENCE` passes; returns the UDP payloads
/// (to port 7000) seen, in order.
fn receive_until(nm: &Netmap, done: impl Fn(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
    let mut rx = nm.rx_ring(0).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !done(&got) && Instant::now() < deadline {
        if !nm.wait_readable(Some(Duration::from_millis(50))).unwrap() {
            continue;
        }
        rx.sync().unwrap();
        while let Some(f) = rx.recv_packet() {
            if let Some((e, p)) = parse_udp(f.payload()) {
                if e.dst_port == 7000 {
                    got.push(p.to_vec());
                }
            }
            // Every frame delivered is whole: a cut one would not parse as its length says,
            // and AF_PACKET's cut frames were exactly 1982 bytes.
            assert_ne!(f.len(), 1982, "a frame was delivered cut");
        }
    }
    got
}

/// Issue 18.9 / 22.3: on a veth at MTU 4000 `afpacket:` sizes its frames from the MTU and
/// opens; `xdp:` opens where the kernel has AF_XDP multi-buffer (6.6+: frames over a UMEM
/// frame arrive as slot chains) and elsewhere refuses, naming the MTU and the largest frame it
/// receives whole (before: it dropped such frames without a word).
#[test]
fn an_mtu_beyond_what_a_port_receives_whole_is_refused_at_open() {
    require_net!();
    let pair = VethPair::new();
    pair.set_mtu(4000).unwrap();
    drop(open("afpacket", &pair.a).expect("afpacket sizes its frames from the MTU"));
    let r = open("xdp", &pair.a);
    if multi_buffer_kernel() {
        drop(r.unwrap_or_else(|e| panic!("xdp: multi-buffer kernel, MTU 4000: {e}")));
    } else {
        let e = r.unwrap_err();
        match &e {
            Error::MtuTooLarge {
                interface,
                mtu: 4000,
                max_frame,
            } if *interface == pair.a && *max_frame < 4014 => {}
            _ => panic!("xdp: {e}"),
        }
        assert!(e.to_string().contains("mtu"), "xdp: {e}");
        // Nothing was left attached by the refused open.
        assert!(detached_soon(Interface::lookup(&pair.a).unwrap().index));
    }
    // At an MTU they can take, both open.
    pair.set_mtu(1500).unwrap();
    for (prefix, _) in PREFIXES {
        open(prefix, &pair.a).unwrap_or_else(|e| panic!("{prefix}: {e}"));
    }
}

/// Whether the running kernel has AF_XDP multi-buffer (`XDP_USE_SG`, Linux 6.6).
fn multi_buffer_kernel() -> bool {
    // SAFETY: uname fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates `release`.
    let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

/// The MTU raised while a port is open: a frame longer than a slot is never delivered cut
/// (AF_PACKET drops and counts it; AF_XDP with multi-buffer delivers it whole as a slot
/// chain, without it the kernel drops it), and the frames after it arrive. An MTU change the
/// kernel refuses (native XDP bounds a veth's MTU) is a pass.
#[test]
fn an_mtu_raised_while_open_never_delivers_a_frame_cut() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let nm = open(prefix, &pair.a).unwrap();
        if let Err(why) = pair.set_mtu(4000) {
            eprintln!("{prefix}: the kernel refused the MTU change ({why}): nothing to test");
            continue;
        }
        let tx = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        tx.send_to(&[1u8; 3000], to).unwrap();
        tx.send_to(b"after", to).unwrap();
        let got = receive_until(&nm, |g| g.iter().any(|p| p == b"after"));
        let st = nm.stats().unwrap();
        eprintln!("{prefix}: {st}");
        if prefix == "xdp" && multi_buffer_kernel() {
            assert_eq!(got, vec![vec![1u8; 3000], b"after".to_vec()], "{prefix}");
            assert_eq!(st.rx_dropped, Some(0), "{prefix}: {st}");
            continue;
        }
        assert_eq!(got, vec![b"after".to_vec()], "{prefix}");
        // Counted where the user sees it: AF_PACKET's drop by this crate (`rx_truncated`),
        // AF_XDP's by the kernel (`rx_dropped`: longer than a UMEM frame).
        let counted = match prefix {
            "afpacket" => st.rx_truncated,
            _ => st.rx_dropped,
        };
        assert_eq!(
            counted,
            Some(1),
            "{prefix}: the cut frame was not counted ({st})"
        );
    }
}

/// The interface set down, then deleted, while a port is open and traffic flows: syncs and
/// waits return (an error or nothing), never hang or panic; the port closes cleanly and the
/// redirect program goes with the interface.
#[test]
fn an_interface_set_down_or_deleted_under_a_port_ends_in_errors_not_hangs() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let nm = open(prefix, &pair.a).unwrap();
        let tx_sock = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        for _ in 0..100 {
            let _ = tx_sock.send_to(b"flow", to);
        }
        let mut rx = nm.rx_ring(0).unwrap();
        let mut tx = nm.tx_ring(0).unwrap();
        let frame = [0u8; 60];
        for step in ["down", "deleted"] {
            if step == "down" {
                pair.set_a_down();
            } else {
                pair.delete();
            }
            let start = Instant::now();
            for _ in 0..50 {
                let _ = tx_sock.send_to(b"flow", to);
                let _ = tx.send(&frame);
                let _ = tx.sync();
                let _ = rx.sync();
                while rx.recv().is_some() {}
                let _ = nm.wait_readable(Some(Duration::from_millis(10)));
                let _ = nm.wait_writable(Some(Duration::from_millis(10)));
            }
            assert!(
                start.elapsed() < PATIENCE,
                "{prefix}: interface {step}: syncs and waits took {:?}",
                start.elapsed()
            );
        }
        drop((rx, tx, nm));
    }
}

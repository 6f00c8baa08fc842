//! A quick TX-rate comparison on a veth pair (root; skipped with a message elsewhere). Run
//! `NETMAP_RS_TX_FRAMES=1000000 cargo test --release --lib tx_rate -- --nocapture` for figures.

use std::time::Instant;

use super::sockets::{reap, umem, PATIENCE};
use super::testnet::{require_net, VethPair};
use crate::backend::afpacket::tpacket::{PacketConfig, PacketSocket};
use crate::backend::linux::{os, sys};
use crate::backend::xdp::xsk::{XskConfig, XskSocket};

/// Raw TX loops over the same veth pair: AF_XDP (copy mode) and AF_PACKET `TPACKET_V2`, 60-byte
/// frames the peer drops (unknown ethertype). Prints frames/s; asserts every frame was
/// accounted for (completion ring / status words).
#[test]
fn tx_rate_xsk_vs_afpacket() {
    require_net!();
    let _bulk = super::ports::bulk_lock();
    let frames: usize = std::env::var("NETMAP_RS_TX_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pair = VethPair::new();
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&pair.mac_b);
    f[6..12].copy_from_slice(&pair.mac_a);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());

    // AF_XDP: no program needed for TX.
    let umem = umem();
    let mut xsk = XskSocket::new(&pair.a, 0, &umem, &XskConfig::default()).unwrap();
    let mut free: Vec<u64> = (0..umem.frames()).map(|i| umem.frame_addr(i)).collect();
    for &a in &free {
        umem.write(a, &f).unwrap();
    }
    let t = Instant::now();
    let (mut sent, mut done) = (0usize, 0usize);
    let mut batch = Vec::with_capacity(64);
    let deadline = Instant::now() + PATIENCE * 3;
    while done < frames {
        assert!(
            Instant::now() < deadline,
            "XSK TX stalled at {done}/{frames}"
        );
        batch.clear();
        while batch.len() < 64 && sent + batch.len() < frames {
            match free.pop() {
                Some(addr) => batch.push(sys::XdpDesc {
                    addr,
                    len: 60,
                    options: 0,
                }),
                None => break,
            }
        }
        let n = xsk.tx.produce(&batch).unwrap();
        free.extend(batch[n..].iter().map(|d| d.addr));
        sent += n;
        xsk.kick_tx().unwrap();
        done += reap(&mut xsk, &mut free);
    }
    let xsk_rate = frames as f64 / t.elapsed().as_secs_f64();
    assert_eq!(xsk.statistics().unwrap().tx_invalid_descs, 0);
    drop(xsk);

    let mut ps = PacketSocket::new(&pair.a, &PacketConfig::default()).unwrap();
    let t = Instant::now();
    let mut sent = 0;
    let deadline = Instant::now() + PATIENCE * 3;
    while sent < frames {
        assert!(
            Instant::now() < deadline,
            "AF_PACKET TX stalled at {sent}/{frames}"
        );
        let mut queued = 0;
        while sent < frames && queued < 64 && ps.send(&f).unwrap() {
            sent += 1;
            queued += 1;
        }
        ps.kick().unwrap();
        if queued == 0 {
            os::poll_one(ps.fd(), libc::POLLOUT, 10).unwrap();
        }
    }
    while ps.tx_in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "AF_PACKET TX frames never came back"
        );
        ps.kick().unwrap();
    }
    let pkt_rate = frames as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "TX {frames} x 60 B on veth: AF_XDP copy mode {:.3} Mpps, AF_PACKET TPACKET_V2 {:.3} Mpps, ratio {:.2}",
        xsk_rate / 1e6,
        pkt_rate / 1e6,
        xsk_rate / pkt_rate
    );
}

//! Receive timestamps on the Linux drivers (issue 22.2): `afpacket:` frames carry the
//! kernel's per-packet stamp, increasing and on the host clock, also once copied out and
//! written by a tap; `xdp:` frames carry none.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant, SystemTime};

use super::ports::ns_udp;
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, VethPair};
use crate::sync::Frame;
use crate::sync::{Netmap, NetmapBuilder};

/// Sends `n` datagrams to port 7000 of `a` from the namespace, 200 µs apart (so that each
/// gets a later kernel stamp than the one before), and returns the frames that carry them,
/// copied out, in order.
fn receive_datagrams(pair: &VethPair, nm: &Netmap, n: usize) -> Vec<Frame<'static>> {
    let tx = ns_udp(pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    for i in 0..n {
        tx.send_to(format!("stamp {i}").as_bytes(), to).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut rx = nm.rx_ring(0).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < n && Instant::now() < deadline {
        if !nm.wait_readable(Some(Duration::from_millis(50))).unwrap() {
            continue;
        }
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            if matches!(parse_udp(f.payload()), Some((e, _)) if e.dst_port == 7000) {
                got.push(f.into_owned());
            }
        }
    }
    assert_eq!(got.len(), n, "datagrams received");
    got
}

#[test]
fn afpacket_frames_carry_increasing_kernel_timestamps_on_the_host_clock() {
    require_net!();
    // Blocks (the default, TPACKET_V3) and frames (TPACKET_V2).
    for timeout in [Duration::from_millis(1), crate::DEFAULT_BLOCK_TIMEOUT] {
        let pair = VethPair::new();
        let nm = NetmapBuilder::new(&format!("afpacket:{}", pair.a))
            .block_timeout(timeout)
            .build()
            .unwrap();
        stamps_of(&pair, &nm);
    }
}

fn stamps_of(pair: &VethPair, nm: &Netmap) {
    let before = SystemTime::now();
    let frames = receive_datagrams(pair, nm, 20);
    let after = SystemTime::now();
    let stamps: Vec<SystemTime> = frames
        .iter()
        .map(|f| f.timestamp().expect("an afpacket frame has a timestamp"))
        .collect();
    let bound = Duration::from_secs(1);
    for (i, t) in stamps.iter().enumerate() {
        assert!(
            *t + bound >= before && *t <= after + bound,
            "frame {i}: stamp {t:?} outside [{before:?}, {after:?}] ± 1 s"
        );
    }
    for (i, w) in stamps.windows(2).enumerate() {
        assert!(
            w[1] > w[0],
            "stamps {i} and {} do not increase: {w:?}",
            i + 1
        );
    }
    #[cfg(feature = "tokio-async")]
    {
        use crate::tokio_async::tap::NANO_MAGIC;
        use crate::tokio_async::Tap;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamps.pcap");
        let mut tap = Tap::recorder("stamps").with_pcap(&path).unwrap();
        for f in &frames {
            tap.record(f).unwrap();
        }
        drop(tap);
        let data = std::fs::read(&path).unwrap();
        let word = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
        assert_eq!(word(0), NANO_MAGIC);
        let mut off = 24;
        for (f, t) in frames.iter().zip(&stamps) {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            assert_eq!(
                (word(off), word(off + 4)),
                (d.as_secs() as u32, d.subsec_nanos()),
                "the pcap record carries the frame's stamp"
            );
            assert_eq!(&data[off + 16..off + 16 + f.len()], f.payload());
            off += 16 + f.len();
        }
        assert_eq!(off, data.len());
    }
}

#[test]
fn xdp_frames_have_no_timestamp() {
    require_net!();
    let pair = VethPair::new();
    let nm = NetmapBuilder::new(&format!("xdp:{}", pair.a))
        .build()
        .unwrap();
    for f in receive_datagrams(&pair, &nm, 3) {
        assert_eq!(f.timestamp(), None);
    }
}

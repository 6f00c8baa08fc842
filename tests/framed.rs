//! `NetmapFramed`: a failed packet never reaches into the next one; access to the rings;
//! taps over framing and over batches.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::{NetmapFramed, Tap, TokioNetmap};
use tokio_util::codec::{LinesCodec, LinesCodecError};

fn pair(name: &str, slots: u32) -> (TokioNetmap, TokioNetmap) {
    let (a, b) = common::pipe(name, slots);
    (TokioNetmap::new(a).unwrap(), TokioNetmap::new(b).unwrap())
}

/// `LinesCodec` keeps discarding up to the next newline after a line over its limit; with
/// per-packet framing that state must not swallow the next packet.
#[tokio::test]
async fn a_decode_error_does_not_eat_the_next_packet() {
    let (a, b) = pair("frlines", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let long = "x".repeat(100);
    let packets = ["alpha", "beta", &long, "gamma", "two\nlines", "delta"];
    for p in packets {
        tx.send(Bytes::copy_from_slice(p.as_bytes())).await.unwrap();
    }
    let mut rx = NetmapFramed::rx_only(b.rx_ring(0).unwrap(), LinesCodec::new_with_max_length(32));
    let mut got = Vec::new();
    for _ in 0..7 {
        let next = tokio::time::timeout(Duration::from_secs(2), rx.next());
        let item = next
            .await
            .unwrap_or_else(|_| panic!("lost an item; got {got:?}"));
        got.push(match item.unwrap() {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => "<too long>".to_string(),
            Err(e) => panic!("unexpected error {e}"),
        });
    }
    let want = [
        "alpha",
        "beta",
        "<too long>",
        "gamma",
        "two",
        "lines",
        "delta",
    ];
    assert_eq!(got, want);
}

/// The same after `codec_mut` reconfigured the codec: the restored state is the new one.
#[tokio::test]
async fn the_codec_restored_after_an_error_keeps_codec_mut_changes() {
    let (a, b) = pair("frreconf", 64);
    let mut tx = NetmapFramed::tx_only(a.tx_ring(0).unwrap(), LinesCodec::new());
    let mut rx = NetmapFramed::rx_only(b.rx_ring(0).unwrap(), LinesCodec::new());
    tx.send("warm up".to_string()).await.unwrap();
    assert_eq!(rx.next().await.unwrap().unwrap(), "warm up");
    *rx.codec_mut() = LinesCodec::new_with_max_length(4);
    for line in ["toolong", "ok", "again-too-long", "fine"] {
        tx.send(line.to_string()).await.unwrap();
    }
    assert!(rx.next().await.unwrap().is_err());
    assert_eq!(rx.next().await.unwrap().unwrap(), "ok");
    assert!(rx.next().await.unwrap().is_err());
    assert_eq!(rx.next().await.unwrap().unwrap(), "fine");
}

#[tokio::test]
async fn get_ref_and_get_mut_reach_the_rings() {
    let (a, b) = pair("frparts", 64);
    let mut framed = NetmapFramed::new(
        b.rx_ring(0).unwrap(),
        b.tx_ring(0).unwrap(),
        LinesCodec::new(),
    );
    let (rx, tx) = framed.get_ref();
    assert_eq!(
        (rx.unwrap().get_ref().index(), tx.unwrap().get_ref().index()),
        (0, 0)
    );
    let mut a_tx = a.tx_ring(0).unwrap();
    a_tx.send(Bytes::from_static(b"raw")).await.unwrap();
    a_tx.send(Bytes::from_static(b"decoded")).await.unwrap();
    // A packet taken directly from the ring bypasses the codec and nothing else is lost.
    let (rx, _) = framed.get_mut();
    let raw = rx.unwrap().next().await.unwrap().unwrap();
    assert_eq!(raw.payload(), b"raw");
    assert_eq!(framed.next().await.unwrap().unwrap(), "decoded");
    let only_rx = NetmapFramed::rx_only(a.rx_ring(0).unwrap(), LinesCodec::new());
    assert!(only_rx.get_ref().1.is_none());
}

#[tokio::test]
async fn a_tap_on_framing_records_packets_both_ways() {
    let (a, b) = pair("frtap", 64);
    let dir = tempfile::tempdir().unwrap();
    let (tx_pcap, rx_pcap) = (dir.path().join("tx.pcap"), dir.path().join("rx.pcap"));
    let tx_tap = Tap::recorder("frtap{0").with_pcap(&tx_pcap).unwrap();
    let rx_tap = Tap::recorder("frtap}0").with_pcap(&rx_pcap).unwrap();
    let mut tx = NetmapFramed::tx_only(a.tx_ring(0).unwrap(), LinesCodec::new()).with_tap(tx_tap);
    let mut rx = NetmapFramed::rx_only(b.rx_ring(0).unwrap(), LinesCodec::new()).with_tap(rx_tap);
    for line in ["one", "two", "three"] {
        tx.send(line.to_string()).await.unwrap();
    }
    for want in ["one", "two", "three"] {
        assert_eq!(rx.next().await.unwrap().unwrap(), want);
    }
    for (framed_tap, path) in [(tx.tap_mut(), &tx_pcap), (rx.tap_mut(), &rx_pcap)] {
        let tap = framed_tap.unwrap();
        assert_eq!(tap.frames_seen(), 3);
        tap.flush().unwrap();
        let want: Vec<Vec<u8>> = ["one\n", "two\n", "three\n"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(common::pcap_packets(&std::fs::read(path).unwrap()), want);
    }
}

#[tokio::test]
async fn a_recorder_tap_records_a_zero_copy_batch() {
    let (a, b) = pair("frbatch", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 60 + i as usize]).collect();
    for p in &packets {
        tx.feed(Bytes::from(p.clone())).await.unwrap();
    }
    SinkExt::<Bytes>::flush(&mut tx).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.pcap");
    let mut tap = Tap::recorder("frbatch}0").with_pcap(&path).unwrap();
    let mut n = 0;
    while n < packets.len() {
        for frame in rx.recv_batch(4).await.unwrap() {
            assert!(frame.is_borrowed());
            tap.record(&frame).unwrap();
            n += 1;
        }
    }
    assert_eq!(tap.frames_seen(), 10);
    tap.flush().unwrap();
    assert_eq!(
        common::pcap_packets(&std::fs::read(&path).unwrap()),
        packets
    );
}

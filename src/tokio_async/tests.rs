//! Unit tests of the readiness protocol (emulated backend).

use super::*;
use crate::backend::BackendChoice;
use crate::NetmapBuilder;
use std::future::poll_fn;
use std::time::Duration;

fn open(name: &str, rings: usize, slots: u32) -> Netmap {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_tx_rings(rings)
        .num_rx_rings(rings)
        .num_slots(slots)
        .build()
        .unwrap()
}

/// A packet delivered while nobody waits produces no signal; a wait that starts afterwards
/// must still see it (it syncs after arming) instead of sleeping on a quiet descriptor.
#[tokio::test]
async fn a_wait_sees_deliveries_made_before_it_armed() {
    let a = open("armrace{0", 1, 8);
    let b = TokioNetmap::new(open("armrace}0", 1, 8)).unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"quiet").unwrap();
    tx.sync().unwrap(); // no waiter armed: no signal
    let mut rx = b.rx_ring(0).unwrap();
    let mut w = Waiter::new(b.port.clone(), Dir::Rx, 0).unwrap();
    w.start(1);
    tokio::time::timeout(Duration::from_secs(2), poll_fn(|cx| w.poll(cx)))
        .await
        .expect("the wait slept on a delivery it could have seen")
        .unwrap();
    assert_eq!(rx.get_mut().recv().unwrap().payload(), b"quiet");
}

/// `rx_port` over a 3-ring pipe: a ring with one packet is not starved by a ring with many
/// (`recv_batch` moves to the next ready ring each call; the `Stream` after 64 frames), a
/// packet sent later to an idle ring wakes the one waiting task, and every packet arrives.
/// (Not under Miri: its emulated memory, 1 MiB, holds far fewer than the 3,072 buffers of
/// the rings this needs to put more than 64 frames ahead of the late one.)
#[cfg(not(miri))]
#[tokio::test]
async fn the_port_receiver_serves_every_ring_in_turn() {
    use futures::StreamExt;
    let a = open("rxport{0", 3, 512);
    let b = TokioNetmap::new(open("rxport}0", 3, 512)).unwrap();
    let mut txs: Vec<_> = (0..3).map(|i| a.tx_ring(i).unwrap()).collect();
    for k in 0..300u32 {
        txs[0].send(&k.to_be_bytes()).unwrap();
    }
    txs[2].send(b"two").unwrap();
    for t in &mut txs {
        t.sync().unwrap();
    }
    let mut rx = b.rx_port().unwrap();
    assert!(b.rx_ring(1).is_err(), "the port receiver holds every ring");
    // Batches: ring 0, then ring 2 (ring 1 is empty), then ring 0 again.
    let rings: Vec<usize> = {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let batch = rx.recv_batch(16).await.unwrap();
            let idx: Vec<usize> = batch.map(|f| f.ring_index()).collect();
            seen.push(idx[0]);
        }
        seen
    };
    assert_eq!(
        rings,
        [0, 2, 0],
        "a ring with packets waits at most N calls"
    );
    // The Stream: ring 0's remaining 268 frames; ring 2's late packet comes within 64 + 1.
    txs[2].send(b"late").unwrap();
    txs[2].sync().unwrap();
    let mut late_at = None;
    for n in 0..269 {
        let f = rx.next().await.unwrap().unwrap();
        if f.ring_index() == 2 {
            assert_eq!(f.payload(), b"late");
            late_at = Some(n);
        }
    }
    let late_at = late_at.expect("every packet arrives");
    assert!(
        late_at <= 64,
        "ring 2 waited {late_at} frames behind ring 0"
    );
    // Idle: a packet on ring 1 wakes the task waiting on all three.
    let wait = tokio::spawn(async move { rx.recv_batch(8).await.map(|b| b.count()) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    txs[1].send(b"one").unwrap();
    txs[1].sync().unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), wait)
        .await
        .expect("a packet on ring 1 did not wake the port receiver")
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
}

/// Packets longer than a buffer through the Tokio layer: the `Sink` holds an item whose
/// chain does not fit yet and sends it once the receiver frees slots, the `Stream` yields
/// whole packets, `AsyncWrite`/`AsyncRead` move a chain as one packet (a small read buffer
/// continues the same packet, never the next one).
#[tokio::test]
async fn chains_travel_whole_through_sink_stream_write_and_read() {
    use bytes::Bytes;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = TokioNetmap::new(open("tchain{0", 1, 8)).unwrap();
    let b = TokioNetmap::new(open("tchain}0", 1, 8)).unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let per = tx.max_payload_size();
    assert_eq!(tx.max_packet_size(), 7 * per);
    let item = |n: usize, seed: u8| -> Bytes {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect::<Vec<u8>>()
            .into()
    };
    // 3 + 1 + 4 slots: the last chain finds 3 free and is held until the receiver reads.
    let items = vec![
        item(2 * per + 9, 3),
        item(5, 5),
        item(4 * per - 1, 7),
        item(60, 11),
    ];
    let want = items.clone();
    let sender = tokio::spawn(async move {
        for it in items {
            tx.send(it).await.unwrap();
        }
        SinkExt::<Bytes>::flush(&mut tx).await.unwrap();
        tx
    });
    for w in &want {
        let f = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .expect("a packet arrives")
            .unwrap()
            .unwrap();
        assert_eq!(f.payload(), &w[..]);
        assert!(!f.more_fragments());
    }
    let mut tx = sender.await.unwrap();

    let long = item(3 * per + 100, 13);
    assert_eq!(
        tx.write(&long).await.unwrap(),
        long.len(),
        "one write, one chain"
    );
    tx.write_all(b"tail").await.unwrap();
    AsyncWriteExt::flush(&mut tx).await.unwrap();
    let mut got = vec![0u8; 2 * long.len()];
    let n = rx.read(&mut got).await.unwrap();
    assert_eq!(&got[..n], &long[..], "a whole chain in one read");
    let n = rx.read(&mut got).await.unwrap();
    assert_eq!(&got[..n], b"tail");

    tx.write_all(&long).await.unwrap();
    tx.write_all(b"next").await.unwrap();
    AsyncWriteExt::flush(&mut tx).await.unwrap();
    let mut small = [0u8; 1000];
    let mut back = Vec::new();
    while back.len() < long.len() {
        let n = rx.read(&mut small).await.unwrap();
        assert!(
            n > 0 && back.len() + n <= long.len(),
            "never past the packet's end"
        );
        back.extend_from_slice(&small[..n]);
    }
    assert_eq!(back, &long[..]);
    let n = rx.read(&mut small).await.unwrap();
    assert_eq!(&small[..n], b"next");
}

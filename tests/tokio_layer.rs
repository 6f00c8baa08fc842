//! The Tokio layer over netmap pipes (emulated backend unless a netmap module is loaded).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::{NetmapFramed, Tap, TokioNetmap};
use netmap_rs::NetmapBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{
    Decoder, Encoder, FramedRead, FramedWrite, LengthDelimitedCodec, LinesCodec,
};

mod common;

fn pair(name: &str, slots: u32) -> (TokioNetmap, TokioNetmap) {
    let (a, b) = common::pipe(name, slots);
    (TokioNetmap::new(a).unwrap(), TokioNetmap::new(b).unwrap())
}

fn seq(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().unwrap())
}

#[tokio::test]
async fn read_write_round_trip() {
    let (a, b) = pair("rw", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    tx.write_all(b"hello async netmap").await.unwrap();
    tx.flush_ring().await.unwrap();
    let mut buf = [0u8; 2048];
    let n = rx.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello async netmap");
}

#[tokio::test]
async fn small_buffers_continue_the_same_packet_and_never_mix_packets() {
    let (a, b) = pair("partial", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let p1: Vec<u8> = (0..100u8).collect();
    let p2 = vec![0xee; 7];
    tx.write_all(&p1).await.unwrap();
    tx.write_all(&p2).await.unwrap();
    tx.flush_ring().await.unwrap();
    let mut buf = [0u8; 30];
    let mut sizes = Vec::new();
    let mut got = Vec::new();
    while got.len() < 107 {
        let n = rx.read(&mut buf).await.unwrap();
        sizes.push(n);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        sizes,
        vec![30, 30, 30, 10, 7],
        "one read never spans two packets"
    );
    assert_eq!(&got[..100], &p1[..]);
    assert_eq!(&got[100..], &p2[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_to_stream_with_a_slow_receiver_loses_nothing() {
    let (a, b) = pair("slow", 32);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    const N: u64 = 20_000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let mut p = BytesMut::with_capacity(64);
            p.extend_from_slice(&i.to_le_bytes());
            p.resize(60, 0xab);
            tx.feed(p.freeze()).await.unwrap();
        }
        tx.flush_ring().await.unwrap();
        tx.close().await.unwrap();
    });
    let mut expect = 0u64;
    while expect < N {
        let f = rx.next().await.unwrap().unwrap();
        assert_eq!(
            seq(f.payload()),
            expect,
            "ordered, nothing lost or duplicated"
        );
        assert_eq!(f.len(), 60);
        expect += 1;
        if expect % 2000 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await; // slow receiver
        }
    }
    sender.await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(50), rx.next())
        .await
        .is_err());
}

/// Packets of every size class (empty, inline-sized, just over, full-sized) come out of the
/// Stream intact and in order, and a Stream item after a partial `AsyncRead` is the rest of
/// that packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_items_of_every_size_are_intact() {
    let (a, b) = pair("sizes", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let inline = netmap_rs::Frame::INLINE_CAPACITY;
    let sizes: Vec<usize> = (0..3000)
        .map(|i| [0, 1, 9, 60, inline, inline + 1, 1500, 2048][i % 8] + (i / 8) % 3)
        .map(|n| n.min(tx.max_payload_size()))
        .collect();
    let payload = |i: usize, n: usize| -> Vec<u8> { (0..n).map(|j| (i * 31 + j) as u8).collect() };
    let sent = sizes.clone();
    let sender = tokio::spawn(async move {
        for (i, &n) in sent.iter().enumerate() {
            tx.feed(Bytes::from(payload(i, n))).await.unwrap();
        }
        SinkExt::<Bytes>::flush(&mut tx).await.unwrap();
        tx
    });
    for (i, &n) in sizes.iter().enumerate() {
        let want = payload(i, n);
        if i % 5 == 4 && n > 3 {
            // Read the first 3 bytes through AsyncRead, then the rest as a Stream item.
            let mut head = [0u8; 3];
            rx.read_exact(&mut head).await.unwrap();
            assert_eq!(head, want[..3]);
            let f = rx.next().await.unwrap().unwrap();
            assert_eq!(f.payload(), &want[3..], "rest of packet {i}");
        } else {
            let f = rx.next().await.unwrap().unwrap();
            assert_eq!(f.len(), n, "packet {i}");
            assert_eq!(f.payload(), &want[..], "packet {i}");
        }
    }
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn sink_applies_back_pressure_instead_of_dropping() {
    let (a, b) = pair("bpsink", 16);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    for i in 0..15u64 {
        tx.feed(Bytes::copy_from_slice(&i.to_le_bytes()))
            .await
            .unwrap();
    }
    tx.flush_ring().await.unwrap();
    // The ring is full: the next send must wait, not fail and not drop.
    let blocked = tokio::time::timeout(
        Duration::from_millis(100),
        tx.send(Bytes::from_static(b"waits")),
    )
    .await;
    assert!(
        blocked.is_err(),
        "poll_ready must be pending on a full ring"
    );
    let recv = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 16 {
            got.push(rx.next().await.unwrap().unwrap().payload().to_vec());
        }
        got
    });
    tx.send(Bytes::from_static(b"waits")).await.unwrap();
    let got = recv.await.unwrap();
    for (i, p) in got[..15].iter().enumerate() {
        assert_eq!(seq(p), i as u64);
    }
    assert_eq!(got[15], b"waits");
}

/// Counts polls of the inner future, to show an idle wait does not spin.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_receiver_sleeps_then_wakes() {
    let (a, b) = pair("idle", 64);
    let mut rx = b.rx_ring(0).unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    let waiter = tokio::spawn(async move {
        let fut = CountPolls {
            inner: Box::pin(async move {
                let mut buf = [0u8; 64];
                let n = rx.read(&mut buf).await.unwrap();
                buf[..n].to_vec()
            }),
            polls: p2,
        };
        fut.await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_polls = polls.load(Ordering::Relaxed);
    // On the kernel module a wait also syncs when its safety-net timer fires (1 ms, doubling
    // to 128 ms: 8 expiries in the first 255 ms, then 8 a second); busy polling would be
    // thousands.
    let timer_wakeups = if std::env::var("NETMAP_RS_BACKEND").as_deref() == Ok("kernel") {
        9
    } else {
        0
    };
    assert!(
        idle_polls <= 2 + timer_wakeups,
        "an idle receiver was polled {idle_polls} times: busy polling"
    );
    let mut tx = a.tx_ring(0).unwrap();
    tx.write_all(b"wake up").await.unwrap();
    tx.flush_ring().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("receiver was not woken")
        .unwrap();
    assert_eq!(got, b"wake up");
}

#[tokio::test]
async fn traffic_already_flowing_at_open_is_received() {
    // The sender fills the ring before the receiver is registered with the reactor.
    let a = NetmapBuilder::new("early{0").num_slots(64).build().unwrap();
    let b = NetmapBuilder::new("early}0").num_slots(64).build().unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    for i in 0..63u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    tx.sync().unwrap();
    let b = TokioNetmap::new(b).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    for i in 0..63u64 {
        let f = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .expect("receiver stalled on traffic present at open")
            .unwrap()
            .unwrap();
        assert_eq!(seq(f.payload()), i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_receives_lose_nothing() {
    let (a, b) = pair("cancel", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    const N: u64 = 3000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Bytes::copy_from_slice(&i.to_le_bytes()))
                .await
                .unwrap();
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut expect = 0u64;
    let mut timeouts = 0;
    while expect < N {
        // A very short timeout drops the recv future often, mid-wait.
        match tokio::time::timeout(Duration::from_micros(200), rx.recv()).await {
            Ok(f) => {
                assert_eq!(seq(f.unwrap().payload()), expect);
                expect += 1;
            }
            Err(_) => timeouts += 1,
        }
    }
    sender.await.unwrap();
    assert!(timeouts > 0, "the test should have cancelled some waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rx_and_tx_of_one_port_in_different_tasks() {
    // Echo: b's RX and TX live in two tasks, connected by a channel.
    let (a, b) = pair("echo", 64);
    let mut b_rx = b.rx_ring(0).unwrap();
    let mut b_tx = b.tx_ring(0).unwrap();
    let (ch_tx, mut ch_rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        while let Some(f) = b_rx.next().await {
            if ch_tx.send(f.unwrap().into_bytes()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(p) = ch_rx.recv().await {
            b_tx.send(p).await.unwrap();
        }
    });
    let mut a_tx = a.tx_ring(0).unwrap();
    let mut a_rx = a.rx_ring(0).unwrap();
    for i in 0..500u64 {
        a_tx.send(Bytes::copy_from_slice(&i.to_le_bytes()))
            .await
            .unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), a_rx.next())
            .await
            .expect("echo stalled")
            .unwrap()
            .unwrap();
        assert_eq!(seq(f.payload()), i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_stream_framing_length_delimited_end_to_end() {
    let (a, b) = pair("ld", 64);
    let mut w = FramedWrite::new(a.tx_ring(0).unwrap(), LengthDelimitedCodec::new());
    let mut r = FramedRead::new(b.rx_ring(0).unwrap(), LengthDelimitedCodec::new());
    let sizes: Vec<usize> = (0..300).map(|i| (i * 37) % 6000 + 1).collect();
    let expect = sizes.clone();
    let writer = tokio::spawn(async move {
        for (i, s) in sizes.into_iter().enumerate() {
            w.send(Bytes::from(vec![i as u8; s])).await.unwrap();
        }
    });
    for (i, s) in expect.into_iter().enumerate() {
        let frame = r.next().await.unwrap().unwrap();
        assert_eq!(frame.len(), s, "frame {i}");
        assert!(frame.iter().all(|b| *b == i as u8));
    }
    writer.await.unwrap();
}

/// Fails to encode items that contain "bad", after writing part of them.
#[derive(Clone)]
struct Picky;

impl Encoder<String> for Picky {
    type Error = std::io::Error;
    fn encode(&mut self, item: String, dst: &mut BytesMut) -> Result<(), Self::Error> {
        dst.extend_from_slice(b"PARTIAL");
        if item.contains("bad") {
            return Err(std::io::Error::other("picky"));
        }
        dst.clear();
        dst.extend_from_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for Picky {
    type Item = String;
    type Error = std::io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, Self::Error> {
        if src.is_empty() {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&src.split()).into_owned()))
    }
}

#[tokio::test]
async fn per_packet_codec_framing_and_failed_items_do_not_corrupt_the_next() {
    let (a, b) = pair("codec", 64);
    let mut tx = NetmapFramed::tx_only(a.tx_ring(0).unwrap(), Picky);
    let mut rx = NetmapFramed::rx_only(b.rx_ring(0).unwrap(), Picky);
    tx.send("first".to_string()).await.unwrap();
    assert!(tx.send("bad one".to_string()).await.is_err());
    tx.send("second".to_string()).await.unwrap();
    // An item too large for one packet is an error for that item only.
    assert!(tx.send("x".repeat(5000)).await.is_err());
    tx.send("third".to_string()).await.unwrap();
    for want in ["first", "second", "third"] {
        assert_eq!(rx.next().await.unwrap().unwrap(), want);
    }

    // A codec yielding several items per packet, and nothing carried across packets.
    let (a, b) = pair("lines", 64);
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(Bytes::from_static(b"one\ntwo\n")).await.unwrap();
    tx.send(Bytes::from_static(b"three")).await.unwrap();
    let mut rx = NetmapFramed::rx_only(b.rx_ring(0).unwrap(), LinesCodec::new());
    for want in ["one", "two", "three"] {
        assert_eq!(rx.next().await.unwrap().unwrap(), want);
    }
}

#[tokio::test]
async fn zero_copy_batches_and_async_reservations() {
    let (a, b) = pair("zc", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let mut total = 0u64;
    for round in 0..20u64 {
        {
            let mut r = tx.reserve(16).await.unwrap();
            for i in 0..16 {
                r.packet(i, 8)
                    .unwrap()
                    .copy_from_slice(&(round * 16 + i as u64).to_le_bytes());
            }
            r.commit();
        }
        tx.flush_ring().await.unwrap();
        let mut got = 0;
        while got < 16 {
            for f in rx.recv_batch(8).await.unwrap() {
                assert!(f.is_borrowed());
                assert_eq!(seq(f.payload()), total);
                total += 1;
                got += 1;
            }
        }
    }
    assert_eq!(total, 320);
    assert!(
        tx.reserve(64).await.is_err(),
        "more than a ring can ever hold"
    );
}

#[tokio::test]
async fn tap_records_a_pcap_that_reads_back() {
    let (a, b) = pair("tap", 64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tap.pcap");
    let mut tx = a.tx_ring(0).unwrap();
    let mut tap = Tap::new(b.rx_ring(0).unwrap(), "tap}0")
        .with_pcap(&path)
        .unwrap();
    let packets: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + i as usize]).collect();
    for p in &packets {
        tx.send(Bytes::from(p.clone())).await.unwrap();
    }
    for p in &packets {
        assert_eq!(tap.next().await.unwrap().unwrap().payload(), &p[..]);
    }
    assert_eq!(tap.frames_seen(), 5);
    tap.flush().unwrap();
    let recorded = common::pcap_packets(&std::fs::read(&path).unwrap());
    assert_eq!(recorded, packets);
}

#[tokio::test]
async fn open_by_name_and_errors_convert_to_io() {
    let nm = TokioNetmap::open("byname{0").await.unwrap();
    assert_eq!(nm.netmap().num_rx_rings(), 1);
    let _rx = nm.rx_ring(0).unwrap();
    assert!(nm.rx_ring(0).is_err(), "one live handle per ring");
    let mut tx = nm.tx_ring(0).unwrap();
    let too_big = vec![0u8; tx.max_packet_size() + 1];
    let e = tx.send(Bytes::from(too_big)).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    // A write longer than one packet is a short write of one packet (a chain of slots).
    let long = vec![1u8; tx.max_packet_size() + 100];
    let n = tx.write(&long).await.unwrap();
    assert_eq!(n, tx.max_packet_size());
}

/// Many short waits in both directions between two tasks on two worker threads: every wait
/// crosses the window between a task's last sync and its sleep, where a lost wake-up would
/// stall the exchange for good. On the kernel module too: there the reactor's poll and a
/// task's sync run on different workers, and the kernel skips a ring the other holds (an edge
/// lost; the wait's resync timer recovers it: it stalled in 1 of 6 guest runs without). The
/// kernel log is bracketed: netmap's RX check may race a publication there (log-only).
#[test]
fn ping_pong_between_tasks_never_stalls() {
    let _log = common::KernelLogBracket::new("ping-pong between tasks on 2 workers");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(ping_pong_between_tasks());
}

async fn ping_pong_between_tasks() {
    let (a, b) = pair("stress", 8);
    let (mut a_tx, mut a_rx) = (a.tx_ring(0).unwrap(), a.rx_ring(0).unwrap());
    let (mut b_tx, mut b_rx) = (b.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    const N: u64 = 20_000;
    let ponger = tokio::spawn(async move {
        for _ in 0..N {
            let f = b_rx.next().await.unwrap().unwrap();
            b_tx.send(f.into_bytes()).await.unwrap();
        }
    });
    for i in 0..N {
        a_tx.send(Bytes::copy_from_slice(&i.to_le_bytes()))
            .await
            .unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), a_rx.next())
            .await
            .unwrap_or_else(|_| panic!("stalled at round trip {i}"))
            .unwrap()
            .unwrap();
        assert_eq!(seq(f.payload()), i);
    }
    ponger.await.unwrap();
}

/// The async `for_each_frame` over slots (a pipe lends nothing in place): it waits for the
/// first packet, then hands over what came, each frame for one call.
#[tokio::test]
async fn for_each_frame_waits_then_hands_over_frames_from_slots() {
    let (a, b) = pair("each", 64);
    let mut rx = b.rx_ring(0).unwrap();
    let send = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut tx = a.tx_ring(0).unwrap();
        for p in [&b"one"[..], b"two", b"three"] {
            tx.send_packet(p).await.unwrap();
        }
        tx.flush_ring().await.unwrap();
    };
    let recv = async {
        let mut got = Vec::new();
        while got.len() < 3 {
            rx.for_each_frame(8, |f| {
                assert!(f.slot_index().is_some(), "a slot's frame");
                got.push(f.payload().to_vec());
            })
            .await
            .unwrap();
        }
        got
    };
    let (_, got) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(send, recv) })
            .await
            .expect("the frames came");
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
}

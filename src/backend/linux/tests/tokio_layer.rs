//! The Tokio layer over `xdp:` and `afpacket:` ports on a veth pair (root; skipped with a
//! message elsewhere): `Sink`/`Stream`, `AsyncWrite`/`AsyncRead`, and an idle receiver that
//! sleeps in the reactor.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ports::{bulk_lock, ends_a_to_b, ns_udp, payload, PREFIXES};
use super::sockets::PATIENCE;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use super::watches::{socket_inodes, watches_of};
use crate::sync::NetmapBuilder;
use crate::tokio_async::TokioNetmap;

const N: usize = 5_000;
const WINDOW: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn port(prefix: &str, ifname: &str) -> TokioNetmap {
    let nm = NetmapBuilder::new(&format!("{prefix}:{ifname}"))
        .build()
        .unwrap();
    TokioNetmap::new(nm).unwrap()
}

/// Waits (in the runtime) until `count` reaches `at_least`.
async fn catch_up(count: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + PATIENCE;
    while count.load(Ordering::Acquire) < at_least {
        assert!(
            Instant::now() < deadline,
            "the other side stalled before {at_least}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Counts datagrams arriving in the namespace, checking each is the next payload.
fn ns_reader(
    pair: &VethPair,
    port: u16,
    n: usize,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let rx = ns_udp(pair, port);
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for i in 0..n {
            let len = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("datagram {i} of {n} never arrived: {e}"));
            assert_eq!(&buf[..len], &payload(i)[..], "datagram {i}");
            c.store(i + 1, Ordering::Release);
        }
    });
    (count, h)
}

/// Sends datagrams from the namespace, at most WINDOW ahead of `received`.
fn ns_writer(pair: &VethPair, n: usize, received: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    let tx = ns_udp(pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7001);
    std::thread::spawn(move || {
        for i in 0..n {
            let deadline = Instant::now() + PATIENCE;
            while i >= received.load(Ordering::Acquire) + WINDOW {
                assert!(Instant::now() < deadline, "port stopped receiving at {i}");
                std::thread::yield_now();
            }
            tx.send_to(&payload(i), to).unwrap();
        }
    })
}

/// `Some(i)` when `frame` is the namespace's datagram carrying `payload(i)` for our port.
fn expect_payload(pair: &VethPair, frame: &[u8], i: usize) -> bool {
    match parse_udp(frame) {
        Some((e, p)) if e.dst_port == 7001 && e.dst_mac == pair.mac_a => {
            assert_eq!(p, &payload(i)[..], "frame {i} differs or is out of order");
            true
        }
        _ => false,
    }
}

#[test]
fn sink_and_stream_over_both_backends() {
    require_net!();
    let _bulk = bulk_lock();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let (sent, reader) = ns_reader(&pair, 9100, N);
        let received = Arc::new(AtomicUsize::new(0));
        let writer = runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            // Only once the port is open: earlier datagrams would go to the stack.
            let writer = ns_writer(&pair, N, received.clone());
            let mut sink = nm.tx_ring(0).unwrap();
            let mut stream = nm.rx_ring(0).unwrap();
            let ends = ends_a_to_b(&pair, 9100);
            let send = async {
                for w in (0..N).step_by(WINDOW) {
                    for i in w..(w + WINDOW).min(N) {
                        sink.feed(Bytes::from(udp_frame(&ends, &payload(i))))
                            .await
                            .unwrap();
                    }
                    SinkExt::flush(&mut sink).await.unwrap();
                    catch_up(&sent, (w + WINDOW).min(N)).await;
                }
            };
            let recv = async {
                let mut next = 0;
                while next < N {
                    let f = tokio::time::timeout(PATIENCE, stream.next())
                        .await
                        .unwrap_or_else(|_| panic!("{prefix}: frame {next} never came"))
                        .expect("stream ended")
                        .unwrap();
                    if expect_payload(&pair, f.payload(), next) {
                        next += 1;
                        received.store(next, Ordering::Release);
                    }
                }
            };
            tokio::join!(send, recv);
            writer
        });
        reader.join().expect("namespace reader");
        writer.join().expect("namespace writer");
        eprintln!("{prefix}: Sink {N} out, Stream {N} in");
    }
}

#[test]
fn async_write_and_read_over_both_backends() {
    require_net!();
    let _bulk = bulk_lock();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let n = 1000;
        let (sent, reader) = ns_reader(&pair, 9101, n);
        let received = Arc::new(AtomicUsize::new(0));
        let writer = runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            let writer = ns_writer(&pair, n, received.clone());
            let mut w = nm.tx_ring(0).unwrap();
            let mut r = nm.rx_ring(0).unwrap();
            let ends = ends_a_to_b(&pair, 9101);
            for i in 0..n {
                w.write_all(&udp_frame(&ends, &payload(i))).await.unwrap();
                if i % 64 == 63 || i == n - 1 {
                    AsyncWriteExt::flush(&mut w).await.unwrap();
                    catch_up(&sent, i + 1).await;
                }
            }
            let mut buf = vec![0u8; 2048];
            let mut next = 0;
            while next < n {
                let len = tokio::time::timeout(PATIENCE, r.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("{prefix}: read {next} timed out"))
                    .unwrap();
                if expect_payload(&pair, &buf[..len], next) {
                    next += 1;
                    received.store(next, Ordering::Release);
                }
            }
            writer
        });
        reader.join().expect("namespace reader");
        writer.join().expect("namespace writer");
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live timespec the call writes.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A receiver with nothing to receive sleeps in the reactor: under 1% of a core over a
/// second (the runtime and the waiting task share this thread).
#[test]
fn idle_receiver_uses_no_cpu() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            let mut rx = nm.rx_ring(0).unwrap();
            let cpu = thread_cpu();
            let r = tokio::time::timeout(Duration::from_secs(1), rx.next()).await;
            let used = thread_cpu() - cpu;
            assert!(r.is_err(), "{prefix}: a frame arrived on an idle link");
            eprintln!("{prefix}: idle receiver used {used:?} of CPU in 1 s");
            assert!(
                used < Duration::from_millis(10),
                "{prefix}: {used:?} in 1 s"
            );
        });
    }
}

/// A sender that outruns the wire fills the ring, sleeps until completions free slots, and
/// gets every frame out (60-byte frames of an unassigned ethertype, which the peer drops).
#[test]
fn a_full_sink_sleeps_until_completions_free_room() {
    require_net!();
    let _bulk = bulk_lock();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&pair.mac_b);
        f[6..12].copy_from_slice(&pair.mac_a);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        let frame = Bytes::from(f);
        let n = 20_000;
        runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            let mut sink = nm.tx_ring(0).unwrap();
            let t = Instant::now();
            let all = async {
                for _ in 0..n {
                    sink.feed(frame.clone()).await.unwrap();
                }
                SinkExt::flush(&mut sink).await.unwrap();
            };
            tokio::time::timeout(PATIENCE, all)
                .await
                .unwrap_or_else(|_| panic!("{prefix}: the sink stalled"));
            eprintln!(
                "{prefix}: {n} frames through a full sink in {:?}",
                t.elapsed()
            );
        });
    }
}

/// Issue 18, suspected and settled: a kick the kernel answers "busy" (EBUSY/ENOBUFS, a full
/// device queue) leaves frames on the AF_XDP TX ring, and with nothing in flight no
/// completion might wake a waiter. A full ring's `writable()` (and a blocking
/// `wait_writable`) must still get room. Five kicks are made to report busy (the hook stands
/// in for the device). In copy mode the kernel's poll handler transmits by itself
/// (`xsk_poll` calls the generic xmit), so the waiter is not stranded even without the
/// driver's retry (`Driver::retry_after`), which is there for drivers whose poll does not.
#[test]
fn a_busy_kick_does_not_leave_a_tx_waiter_asleep() {
    use crate::backend::xdp::xsk::busy_hook;
    require_net!();
    let pair = VethPair::new();
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&pair.mac_b);
    f[6..12].copy_from_slice(&pair.mac_a);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    // The blocking wait, then the Tokio one, on one port (reopening a queue right after a
    // close can find it still bound for a moment).
    let nm = NetmapBuilder::new(&format!("xdp:{}", pair.a))
        .build()
        .unwrap();
    let mut tx = nm.tx_ring(0).unwrap();
    busy_hook::set(&pair.a, 5);
    while tx.send(&f).is_ok() {}
    tx.sync().unwrap();
    assert!(
        nm.wait_writable(Some(PATIENCE)).unwrap(),
        "the blocking wait slept with frames unsent"
    );
    drop(tx);
    runtime().block_on(async {
        let nm = TokioNetmap::new(nm).unwrap();
        let mut tx = nm.tx_ring(0).unwrap();
        // Wait for the frames of the blocking part to leave, then fill the ring again.
        tx.writable().await.unwrap();
        busy_hook::set(&pair.a, 5);
        while tx.get_mut().send(&f).is_ok() {}
        tx.flush_ring().await.unwrap();
        tokio::select! {
            biased;
            _ = tokio::time::sleep(PATIENCE) => panic!("the TX waiter slept with frames unsent"),
            r = tx.writable() => r.unwrap(),
        }
    });
}

/// Issue 18, faults on live interfaces through the Tokio layer: the interface set down, then
/// deleted, while a port is open and traffic flows. Every wait returns (an error, a frame,
/// or the guard's timeout) and the port closes: no hang, no panic.
#[test]
fn an_interface_set_down_or_deleted_under_async_rings_ends_in_errors_not_hangs() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        let sock = ns_udp(&pair, 0);
        let to = SocketAddrV4::new(pair.ip_a, 7000);
        runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            let mut rx = nm.rx_ring(0).unwrap();
            let mut tx = nm.tx_ring(0).unwrap();
            let frame = Bytes::from(vec![0u8; 60]);
            for step in ["down", "deleted"] {
                if step == "down" {
                    pair.set_a_down();
                } else {
                    pair.delete();
                }
                let start = Instant::now();
                for _ in 0..20 {
                    let _ = sock.send_to(b"flow", to);
                    let _ = tokio::time::timeout(Duration::from_millis(20), rx.next()).await;
                    let _ = tokio::time::timeout(Duration::from_millis(20), tx.send(frame.clone()))
                        .await;
                    let _ = tokio::time::timeout(Duration::from_millis(20), tx.flush_ring()).await;
                }
                assert!(
                    start.elapsed() < PATIENCE,
                    "{prefix}: interface {step}: waits took {:?}",
                    start.elapsed()
                );
            }
        });
    }
}

/// The kernel walks a socket's watchers for every frame it receives or frees, so an async
/// ring watches its queue socket only while a wait sleeps (as the blocking waits do): not
/// before its first wait, and not after a wait has ended.
#[test]
fn async_rings_watch_their_socket_only_while_they_wait() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let pair = VethPair::new();
        runtime().block_on(async {
            let nm = port(prefix, &pair.a);
            let before = socket_inodes();
            let mut rx = nm.rx_ring(0).unwrap();
            // The ring's waker: a new descriptor on a socket the port already had.
            let ino = socket_inodes()
                .into_iter()
                .filter(|(fd, _)| !before.contains_key(fd))
                .map(|(_, ino)| ino)
                .find(|ino| before.values().any(|b| b == ino))
                .expect("the ring's waker duplicates a queue socket");
            assert_eq!(watches_of(ino), 0, "{prefix}: watched before any wait");
            let mut next = rx.next();
            assert!(futures::poll!(&mut next).is_pending());
            assert_eq!(watches_of(ino), 1, "{prefix}: not watched while waiting");
            ns_udp(&pair, 0)
                .send_to(b"wake", SocketAddrV4::new(pair.ip_a, 9))
                .unwrap();
            let frame = tokio::time::timeout(PATIENCE, next).await;
            assert!(matches!(frame, Ok(Some(Ok(_)))), "{prefix}: no frame");
            assert_eq!(watches_of(ino), 0, "{prefix}: still watched after the wait");
        });
    }
}

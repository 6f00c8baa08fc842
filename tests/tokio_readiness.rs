//! Regression tests of the Tokio layer's readiness: waits that know how many slots they need,
//! waiters on one ring that a sync of another ring cannot starve, corrupt slots at every
//! async entry point, and multi-ring stress with one task per ring and direction.
//!
//! Each test runs its runtime on a thread of its own and fails (instead of hanging) when
//! that thread does not finish in time: the defects these tests pin down spun or slept
//! forever.

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use netmap_rs::abi::{NetmapRing, NetmapSlot};
use netmap_rs::tokio_async::TokioNetmap;
use netmap_rs::{BackendChoice, Error, Netmap, NetmapBuilder};
use tokio::io::AsyncReadExt;

mod common;
use common::KernelLogBracket;

/// Runs `f` on a fresh runtime (`workers` = 0: current thread) on another thread; panics
/// with `what` if it has not finished within `secs` seconds.
fn within<F>(secs: u64, workers: usize, what: &str, f: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = if workers == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(workers);
            b
        }
        .enable_all()
        .build()
        .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(f)));
        let _ = done.send(r.is_ok());
    });
    match finished.recv_timeout(Duration::from_secs(secs)) {
        Ok(true) => {}
        Ok(false) => panic!("{what}: the test body panicked (see above)"),
        Err(_) => panic!("{what}: not done after {secs} s (a wait spun or slept forever)"),
    }
}

fn open(name: &str, rings: usize, slots: u32) -> Netmap {
    NetmapBuilder::new(name)
        .num_tx_rings(rings)
        .num_rx_rings(rings)
        .num_slots(slots)
        .build()
        .unwrap()
}

/// Issue 13.1: `reserve(n)` with fewer than `n` (but at least one) free slots must sleep,
/// not spin inside one poll, and complete once the receiver frees enough.
#[test]
fn reserve_n_sleeps_until_n_slots_are_free() {
    within(20, 0, "reserve(4) with 2 free slots", async {
        let a = TokioNetmap::new(open("resn{0", 1, 8)).unwrap();
        let b = TokioNetmap::new(open("resn}0", 1, 8)).unwrap();
        let mut tx = a.tx_ring(0).unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        for i in 0..5u8 {
            tx.get_mut().send(&[i; 60]).unwrap();
        }
        tx.flush_ring().await.unwrap();
        assert_eq!(tx.get_mut().space(), 2);
        let drain = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut got = 0;
            while got < 5 {
                let batch = rx.recv_batch(64).await.unwrap();
                got += batch.count();
            }
            rx.get_mut().sync().unwrap();
            got
        });
        let start = std::time::Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(5), tx.reserve(4))
            .await
            .expect("reserve(4) never completed");
        assert_eq!(res.unwrap().len(), 4);
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "completed before the drain"
        );
        assert_eq!(drain.await.unwrap(), 5);
    });
}

/// Issue 18.6: a cancelled `reserve(n)` leaves its wait (for `n` slots) in the handle; a
/// later `writable()` (one slot) must wait for one slot, not for the old `n`. On an 8-slot
/// ring with one slot freed, `writable()` stayed pending for good.
#[test]
fn writable_after_a_cancelled_reserve_waits_for_one_slot() {
    within(20, 0, "writable() after a cancelled reserve(4)", async {
        let a = TokioNetmap::new(open("rescan{0", 1, 8)).unwrap();
        let b = TokioNetmap::new(open("rescan}0", 1, 8)).unwrap();
        let mut tx = a.tx_ring(0).unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        // Fill the ring: 7 slots (one always stays empty).
        for i in 0..7u8 {
            tx.get_mut().send(&[i; 60]).unwrap();
        }
        tx.flush_ring().await.unwrap();
        assert_eq!(tx.get_mut().space(), 0);
        // reserve(4) gives up: its wait for 4 slots stays behind.
        let cancelled = tokio::time::timeout(Duration::from_millis(20), tx.reserve(4))
            .await
            .is_err();
        assert!(cancelled, "the ring was full");
        // The receiver frees exactly one slot.
        let f = rx.recv().await.unwrap();
        assert_eq!(f[0], 0);
        drop(f);
        rx.get_mut().sync().unwrap();
        // One slot is free: writable() must see it.
        // (A hang guard that is checked first: `timeout` would poll the wait once more when
        // it fires, and that poll's own sync would hide the lost wake-up.)
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_secs(3)) => {
                panic!("writable() still pending after 3 s with a free slot")
            }
            r = tx.writable() => r.unwrap(),
        }
        assert!(tx.get_mut().space() >= 1);
    });
}

/// `reserve(n)` for more than a ring can ever hold is an error, not a wait.
#[test]
fn reserve_more_than_the_ring_holds_is_an_error() {
    within(20, 0, "reserve(8) on an 8-slot ring", async {
        let a = TokioNetmap::new(open("resbig{0", 1, 8)).unwrap();
        let _b = open("resbig}0", 1, 8);
        let mut tx = a.tx_ring(0).unwrap();
        let e = tx.reserve(8).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    });
}

/// Issue 13.2 (RX): a sync made for ring 1 must not consume the wake-up of a task waiting
/// on ring 0 of the same registration.
#[test]
fn a_sync_for_another_ring_does_not_swallow_an_rx_wakeup() {
    within(20, 0, "rx waiter on ring 0", async {
        let a = TokioNetmap::new(open("lostrx}0", 2, 16)).unwrap();
        let b = open("lostrx{0", 2, 16);
        let mut rx0 = a.rx_ring(0).unwrap();
        let mut rx1 = a.rx_ring(1).unwrap();
        let waiter = tokio::spawn(async move { rx0.recv().await.unwrap().payload().to_vec() });
        tokio::time::sleep(Duration::from_millis(50)).await; // the waiter is asleep
        let mut tx0 = b.tx_ring(0).unwrap();
        tx0.send(b"for ring 0").unwrap();
        tx0.sync().unwrap();
        // Ring 1's wait syncs every ring of the registration before it sleeps.
        assert!(rx1.readable().now_or_never().is_none());
        let got = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the ring-0 waiter was never woken")
            .unwrap();
        assert_eq!(got, b"for ring 0");
    });
}

/// Issue 13.2 (TX): the same for a sender waiting for room on ring 0.
#[test]
fn a_sync_for_another_ring_does_not_swallow_a_tx_wakeup() {
    within(20, 0, "tx waiter on ring 0", async {
        let a = TokioNetmap::new(open("losttx{0", 2, 8)).unwrap();
        let b = open("losttx}0", 2, 8);
        let mut tx0 = a.tx_ring(0).unwrap();
        let mut tx1 = a.tx_ring(1).unwrap();
        for tx in [tx0.get_mut(), tx1.get_mut()] {
            while tx.send(&[7; 60]).is_ok() {}
            tx.sync().unwrap();
        }
        let waiter = tokio::spawn(async move {
            tx0.writable().await.unwrap();
            tx0.get_mut().space()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut rx0 = b.rx_ring(0).unwrap();
        rx0.sync().unwrap();
        while rx0.recv().is_some() {}
        rx0.sync().unwrap(); // frees ring 0's slots: signals the waiter
        assert!(tx1.writable().now_or_never().is_none()); // ring 1 is still full
        let space = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the ring-0 sender was never woken")
            .unwrap();
        assert!(space > 0);
    });
}

/// Writes `buf_idx = u32::MAX` into TX slot `k` of `port`'s ring 0.
fn corrupt_tx_slot(port: &Netmap, k: usize) {
    let ring: *mut NetmapRing = port.raw_tx_ring_ptr(0).unwrap();
    // SAFETY: slot k (< num_slots) of TX ring 0 lies after the 256-byte header; it is in
    // the user's [head, tail) and not yet synced, and nothing else touches it in this test.
    unsafe { (*ring.add(1).cast::<NetmapSlot>().add(k)).buf_idx = u32::MAX };
}

/// A pipe (emulated: the kernel would reset a ring with a bad buffer index) whose receiver
/// sees "first", a corrupt slot, then "second".
fn corrupt_pipe(name: &str) -> (Netmap, TokioNetmap) {
    let open = |n: String| {
        NetmapBuilder::new(&n)
            .backend(BackendChoice::Emulated)
            .num_slots(16)
            .build()
            .unwrap()
    };
    let a = open(format!("{name}{{0"));
    let b = TokioNetmap::new(open(format!("{name}}}0"))).unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"first").unwrap();
    tx.send(b"bad").unwrap();
    corrupt_tx_slot(&a, 1);
    tx.send(b"second").unwrap();
    tx.sync().unwrap();
    drop(tx);
    (a, b)
}

fn is_corrupt(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::CorruptSlot { .. }))
        || e.to_string().contains("out-of-range")
        || e.to_string().contains("corrupt")
}

/// Issue 13.3: every async entry point reports a corrupt slot (or skips it, for batches)
/// without panicking, and the next good packet still arrives.
#[test]
fn corrupt_slots_at_every_async_entry_point() {
    within(20, 0, "corrupt slots", async {
        // recv
        let (_a, b) = corrupt_pipe("corrupt_recv");
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.recv().await.unwrap().payload(), b"first");
        let e = rx.recv().await.map(|f| f.len()).unwrap_err();
        assert!(is_corrupt(&e), "{e}");
        assert_eq!(rx.recv().await.unwrap().payload(), b"second");
        // Stream
        let (_a, b) = corrupt_pipe("corrupt_stream");
        let mut rx = b.rx_ring(0).unwrap();
        assert_eq!(rx.next().await.unwrap().unwrap().payload(), b"first");
        let e = rx.next().await.unwrap().unwrap_err();
        assert!(is_corrupt(&e), "{e}");
        assert_eq!(rx.next().await.unwrap().unwrap().payload(), b"second");
        // AsyncRead
        let (_a, b) = corrupt_pipe("corrupt_read");
        let mut rx = b.rx_ring(0).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"first");
        let e = rx.read(&mut buf).await.unwrap_err();
        assert!(is_corrupt(&e), "{e}");
        let n = rx.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"second");
        // recv_batch: skips the corrupt slot
        let (_a, b) = corrupt_pipe("corrupt_batch");
        let mut rx = b.rx_ring(0).unwrap();
        let got: Vec<Vec<u8>> = rx
            .recv_batch(8)
            .await
            .unwrap()
            .map(|f| f.payload().to_vec())
            .collect();
        assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
    });
}

/// A partial `AsyncRead`, then the rest of that packet taken through `get_mut()`: the next
/// read returns the whole next packet (the partial offset belongs to the first packet).
#[test]
fn partial_read_then_sync_recv_does_not_cut_the_next_packet() {
    within(20, 0, "partial read", async {
        let a = open("partial{0", 1, 16);
        let b = TokioNetmap::new(open("partial}0", 1, 16)).unwrap();
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"abcdef").unwrap();
        tx.send(b"ghij").unwrap();
        tx.sync().unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        let mut two = [0u8; 2];
        rx.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        assert_eq!(rx.get_mut().recv().unwrap().payload(), b"abcdef");
        let mut buf = [0u8; 16];
        let n = rx.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ghij");
    });
}

/// `TokioNetmap::new` outside a runtime is an error, not a panic.
#[test]
fn tokio_netmap_outside_a_runtime_is_an_error() {
    let nm = open("nort{0", 1, 8);
    let e = TokioNetmap::new(nm).unwrap_err();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
}

/// A wait abandoned by a timeout stays active in the handle. Packets consumed after it must
/// still go back to the sender before the handle sleeps on it again, or a sender waiting
/// for those slots and a receiver waiting for its packets wait for each other. (Seen in the
/// guest while RX rings published `cur` ahead of `head`, which let the old wait find its
/// ring "not ready": C `pkt-gen` waited a second for `pkt_gen --async -f rx` to exit. The
/// handle now hands back before sleeping on any wait it did not start just now.)
#[test]
fn consumed_slots_are_released_before_sleeping_on_an_abandoned_wait() {
    within(20, 0, "release under an abandoned wait", async {
        let a = TokioNetmap::new(open("relw{0", 1, 8)).unwrap();
        let b = TokioNetmap::new(open("relw}0", 1, 8)).unwrap();
        let mut tx = a.tx_ring(0).unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        // The receiver waits, and gives up: its wait stays behind in the handle.
        let timed_out = tokio::time::timeout(Duration::from_millis(20), rx.recv_batch(8))
            .await
            .is_err();
        assert!(timed_out, "nothing was sent yet");
        // Three packets arrive; another sync of the registration brings them into view
        // without completing the old wait (on the kernel, any poll of the registration's
        // descriptor does this, the reactor's included); the receiver consumes them (fewer
        // than half the ring, so no early release is due).
        let mut r = tx.reserve(3).await.unwrap();
        for i in 0..3 {
            r.packet(i, 60).unwrap()[0] = i as u8;
        }
        r.commit();
        tx.flush_ring().await.unwrap();
        assert!(b.netmap().wait_readable(Some(Duration::ZERO)).unwrap());
        assert_eq!(rx.recv_batch(8).await.unwrap().count(), 3);
        // The receiver waits for more; the sender needs 5 free slots, which exist only once
        // those 3 are back. The receiver's next wait must hand them back before it sleeps.
        let receiver = tokio::spawn(async move {
            let n = rx.recv_batch(8).await.unwrap().count();
            (rx, n)
        });
        let mut r = tx.reserve(5).await.unwrap();
        for i in 0..5 {
            r.packet(i, 60).unwrap()[0] = 100 + i as u8;
        }
        r.commit();
        tx.flush_ring().await.unwrap();
        let (_rx, n) = receiver.await.unwrap();
        assert!(n >= 1, "the receiver woke with packets");
    });
}

const RINGS: usize = 4;

/// Rounds of the stress tests: fewer on the kernel module, which the test suite meets inside
/// a software-emulated guest where every packet costs far more.
fn rounds() -> usize {
    match std::env::var("NETMAP_RS_BACKEND").as_deref() {
        Ok("kernel") => 3,
        _ => 40,
    }
}

/// Worker threads of the stress runtimes: 2 on every backend. On the kernel module the
/// reactor's poll and the tasks' syncs then overlap as in a `#[tokio::main]` service: a lost
/// edge is recovered by the wait's resync timer, and netmap's RX check may log a race (the
/// stress tests bracket the kernel log; see `netmap_rs::tokio_async`).
fn workers() -> usize {
    2
}

/// One sender and one receiver task per ring of a 4-ring pipe on 2 workers, `per_ring`
/// sequence-checked packets each, with `Sink`/`Stream` (`batch` false) or with
/// `reserve(n)`/`recv_batch` (`batch` true).
async fn four_rings(name: String, per_ring: u64, slots: u32, batch: bool) {
    let a = TokioNetmap::new(open(&format!("{name}{{0"), RINGS, slots)).unwrap();
    let b = TokioNetmap::new(open(&format!("{name}}}0"), RINGS, slots)).unwrap();
    let mut tasks = Vec::new();
    for r in 0..RINGS {
        let mut tx = a.tx_ring(r).unwrap();
        let mut rx = b.rx_ring(r).unwrap();
        tasks.push(tokio::spawn(async move {
            if batch {
                let mut seq = 0u64;
                while seq < per_ring {
                    let n = (slots as u64 / 4).min(per_ring - seq) as usize;
                    let mut res = tx.reserve(n).await.unwrap();
                    for i in 0..n {
                        res.packet(i, 60).unwrap()[..8].copy_from_slice(&seq.to_le_bytes());
                        seq += 1;
                    }
                    res.commit();
                    tx.flush_ring().await.unwrap();
                }
            } else {
                for seq in 0..per_ring {
                    let mut p = vec![r as u8; 60];
                    p[..8].copy_from_slice(&seq.to_le_bytes());
                    tx.feed(Bytes::from(p)).await.unwrap();
                }
                SinkExt::<Bytes>::flush(&mut tx).await.unwrap();
            }
            0u64
        }));
        tasks.push(tokio::spawn(async move {
            let mut want = 0u64;
            while want < per_ring {
                if batch {
                    for f in rx.recv_batch(256).await.unwrap() {
                        let got = u64::from_le_bytes(f.payload()[..8].try_into().unwrap());
                        assert_eq!(got, want, "ring {r}");
                        want += 1;
                    }
                } else {
                    let f = rx.next().await.unwrap().unwrap();
                    let got = u64::from_le_bytes(f.payload()[..8].try_into().unwrap());
                    assert_eq!(got, want, "ring {r}");
                    want += 1;
                }
            }
            want
        }));
    }
    let mut received = 0;
    for t in tasks {
        received += t.await.unwrap();
    }
    assert_eq!(received, per_ring * RINGS as u64);
}

/// Issue 13 in real use: one task per ring and direction on a 4-ring pipe, 2 workers, many
/// rounds; none may stall (it did in about 1 of 15 runs with `Sink`/`Stream`).
#[test]
fn four_ring_pipe_with_a_task_per_ring_never_stalls_stream_sink() {
    let _log = KernelLogBracket::new("4-ring Sink/Stream stress on 2 workers");
    within(120, workers(), "4-ring Sink/Stream stress", async {
        for round in 0..rounds() {
            four_rings(format!("stress_s{round}_"), 5_000, 64, false).await;
        }
    });
}

/// The same with `reserve(n)` and `recv_batch` (stalled in 6 of 9 runs, or spun at 100%
/// CPU for `reserve(256)`).
#[test]
fn four_ring_pipe_with_a_task_per_ring_never_stalls_batches() {
    let _log = KernelLogBracket::new("4-ring batch stress on 2 workers");
    within(120, workers(), "4-ring batch stress", async {
        for round in 0..rounds() {
            four_rings(format!("stress_b{round}_"), 20_000, 64, true).await;
        }
        four_rings(
            "stress_big_".into(),
            10_000 * rounds() as u64 / 4,
            1024,
            true,
        )
        .await;
    });
}

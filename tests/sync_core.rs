//! The synchronous core on netmap pipes: runs on the emulated backend when no netmap module is
//! loaded, and on the kernel's pipes when one is (NETMAP_RS_BACKEND picks otherwise).

use std::collections::VecDeque;
use std::time::Duration;

use netmap_rs::prelude::*;
use netmap_rs::{forward_filtered, Error};
use proptest::prelude::*;

mod common;
use common::{pipe, KernelLogBracket};

#[test]
fn packets_cross_at_sync_and_not_before() {
    let (a, b) = pipe("cross", 64);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    assert_eq!(tx.pending(), 2);
    rx.sync().unwrap();
    assert!(
        rx.recv().is_none(),
        "nothing reaches the peer before txsync"
    );
    tx.sync().unwrap();
    assert_eq!(tx.pending(), 0);
    assert!(
        rx.recv().is_none(),
        "the receiver sees packets only after its own sync"
    );
    rx.sync().unwrap();
    assert_eq!(rx.available(), 2);
    assert_eq!(rx.recv().unwrap().payload(), b"one");
    let f = rx.recv().unwrap();
    assert_eq!(f.payload(), b"two");
    assert_eq!(f.ring_index(), 0);
    assert!(rx.recv().is_none());
    // And the other direction.
    let mut tx2 = b.tx_ring(0).unwrap();
    let mut rx2 = a.rx_ring(0).unwrap();
    tx2.send(b"back").unwrap();
    tx2.sync().unwrap();
    rx2.sync().unwrap();
    assert_eq!(rx2.recv().unwrap().payload(), b"back");
}

#[test]
fn indices_wrap_at_num_slots() {
    let (a, b) = pipe("wrap", 8);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    assert_eq!(tx.num_slots(), 8);
    let mut next_rx = 0u32;
    for i in 0..1000u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        if i % 3 == 2 {
            tx.sync().unwrap();
            rx.sync().unwrap();
            while let Some(f) = rx.recv() {
                assert_eq!(f.payload(), next_rx.to_le_bytes());
                next_rx += 1;
            }
            rx.sync().unwrap();
            tx.sync().unwrap();
        }
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    while let Some(f) = rx.recv() {
        assert_eq!(f.payload(), next_rx.to_le_bytes());
        next_rx += 1;
    }
    assert_eq!(next_rx, 1000);
}

#[test]
fn back_pressure_full_ring_is_an_error_never_an_overwrite() {
    let (a, b) = pipe("bp", 16);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    let mut sent = 0u32;
    while tx.send(&sent.to_le_bytes()).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 15, "one slot always stays empty");
    assert!(matches!(tx.send(b"x"), Err(Error::InsufficientSpace)));
    tx.sync().unwrap();
    // The receiver has not released anything: still no room.
    assert_eq!(tx.space(), 0);
    assert!(tx.send(b"x").is_err());
    rx.sync().unwrap();
    for i in 0..5u32 {
        assert_eq!(rx.recv().unwrap().payload(), i.to_le_bytes());
    }
    // Consumed but not yet released: the sender still sees no room after its sync.
    tx.sync().unwrap();
    assert_eq!(tx.space(), 0);
    rx.sync().unwrap();
    tx.sync().unwrap();
    assert_eq!(tx.space(), 5);
    for i in 0..5u32 {
        tx.send(&(100 + i).to_le_bytes()).unwrap();
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    let got: Vec<u32> = rx
        .batch(usize::MAX)
        .map(|f| u32::from_le_bytes(f.payload().try_into().unwrap()))
        .collect();
    let want: Vec<u32> = (5..15).chain(100..105).collect();
    assert_eq!(got, want, "order kept across back-pressure, nothing lost");
}

#[test]
fn batch_reservation_commit_and_abandon() {
    let (a, b) = pipe("batch", 32);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    {
        let mut r = tx.reserve_batch(4).unwrap();
        assert_eq!(r.len(), 4);
        assert!(matches!(r.packet(4, 10), Err(Error::InvalidRingIndex(4))));
        assert!(matches!(
            r.packet(0, 4096),
            Err(Error::PacketTooLarge(4096))
        ));
        // Dropped without commit: nothing is sent.
        r.packet(0, 3).unwrap().copy_from_slice(b"abc");
    }
    assert_eq!(tx.pending(), 0);
    let mut r = tx.reserve_batch(4).unwrap();
    for i in 0..3 {
        r.packet(i, 2).unwrap().copy_from_slice(&[i as u8, 0xaa]);
    }
    assert_eq!(r.commit(), 3);
    // A reservation larger than the free space fails and reserves nothing.
    assert!(matches!(
        tx.reserve_batch(32),
        Err(Error::InsufficientSpace)
    ));
    // Skipped slots go out empty.
    let mut r = tx.reserve_batch(3).unwrap();
    r.packet(2, 1).unwrap()[0] = 9;
    assert_eq!(r.commit(), 3);
    tx.sync().unwrap();
    rx.sync().unwrap();
    let mut frames: [Frame; 8] = Default::default();
    let n = rx.recv_batch(&mut frames);
    assert_eq!(n, 6);
    assert_eq!(frames[0].payload(), &[0, 0xaa]);
    assert_eq!(frames[2].payload(), &[2, 0xaa]);
    assert!(frames[3].is_empty() && frames[4].is_empty());
    assert_eq!(frames[5].payload(), &[9]);
}

#[test]
fn ring_handles_are_unique_and_indices_checked() {
    let (a, _b) = pipe("uniq", 16);
    assert_eq!(a.num_tx_rings(), 1);
    assert_eq!(a.num_rx_rings(), 1);
    assert!(!a.is_host_if());
    let t = a.tx_ring(0).unwrap();
    assert!(matches!(a.tx_ring(0), Err(Error::RingInUse(0))));
    assert!(matches!(a.tx_ring(1), Err(Error::InvalidRingIndex(1))));
    assert!(matches!(a.rx_ring(7), Err(Error::InvalidRingIndex(7))));
    drop(t);
    let _t = a.tx_ring(0).unwrap();
}

#[test]
fn oversize_packet_is_refused_and_nothing_written() {
    let (a, _b) = pipe("big", 16);
    let mut tx = a.tx_ring(0).unwrap();
    let max = tx.max_packet_size();
    assert!(tx.max_payload_size() >= 1500);
    assert!(matches!(
        tx.send(&vec![0; max + 1]),
        Err(Error::PacketTooLarge(n)) if n == max + 1
    ));
    assert_eq!(tx.pending(), 0);
    tx.send(&vec![7; tx.max_payload_size()]).unwrap();
    assert_eq!(tx.pending(), 1);
}

#[test]
fn bad_names_and_missing_ports_give_clear_errors() {
    let e = NetmapBuilder::new("eth0/q").build().unwrap_err();
    assert!(matches!(e, Error::InvalidPortName { .. }), "{e}");
    let e = NetmapBuilder::new("").build().unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    if !netmap_rs::backend::kernel_available() {
        // netmap: names need the module (a bare name would fall to AF_XDP or AF_PACKET on
        // Linux, on an interface that does not exist here).
        let e = NetmapBuilder::new("netmap:nmrsnone0")
            .backend(BackendChoice::Auto)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::ModuleNotLoaded), "{e}");
        assert!(e.to_string().contains("modprobe netmap"));
        let e = NetmapBuilder::new("nmrsnone0")
            .backend(BackendChoice::Auto)
            .build()
            .unwrap_err();
        if cfg!(target_os = "linux") {
            assert!(matches!(e, Error::NoSuchInterface { .. }), "{e}");
        } else {
            assert!(matches!(e, Error::ModuleNotLoaded), "{e}");
        }
        let e = NetmapBuilder::new("vale0:p1")
            .backend(BackendChoice::Emulated)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::FallbackUnsupported(_)), "{e}");
    }
    // A ring that the pipe does not have (on whichever backend this run uses).
    let e = NetmapBuilder::new("rng{0-5").build().unwrap_err();
    assert!(matches!(e, Error::BindFail(_)), "{e}");
    assert!(e.to_string().contains("ring 5"), "{e}");
}

#[test]
fn exclusive_and_busy_pipe_ends() {
    // On whichever backend this run uses: the kernel refuses a second registration of rings
    // held with /x just as the emulated backend does.
    let _a = NetmapBuilder::new("busy{0/x").build().unwrap();
    let e = NetmapBuilder::new("busy{0").build().unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "{e}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn handles_move_to_threads_and_outlive_the_port() {
    let (a, b) = pipe("thr", 256);
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    const N: u64 = 200_000;
    let sender = std::thread::spawn(move || {
        let mut i = 0u64;
        while i < N {
            match tx.send(&i.to_le_bytes()) {
                Ok(()) => i += 1,
                Err(Error::InsufficientSpace) => {
                    tx.sync().unwrap();
                    if tx.space() == 0 {
                        a.wait_writable(Some(Duration::from_millis(50))).unwrap();
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        tx.sync().unwrap();
        // `a` (the Netmap) was moved in and dropped here; `tx` still works until dropped.
    });
    let receiver = std::thread::spawn(move || {
        let mut expect = 0u64;
        while expect < N {
            rx.sync().unwrap();
            let mut got = false;
            for f in rx.batch(64) {
                assert_eq!(f.payload(), expect.to_le_bytes());
                expect += 1;
                got = true;
            }
            if !got {
                rx.sync().unwrap();
                b.wait_readable(Some(Duration::from_millis(50))).unwrap();
            }
        }
        expect
    });
    sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), N);
}

#[test]
fn wait_times_out_then_wakes() {
    let (a, b) = pipe("wait", 16);
    let mut rx = b.rx_ring(0).unwrap();
    assert!(!b.wait_readable(Some(Duration::from_millis(20))).unwrap());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"wake").unwrap();
        tx.sync().unwrap();
        a
    });
    assert!(b.wait_readable(Some(Duration::from_secs(10))).unwrap());
    assert_eq!(rx.recv().unwrap().payload(), b"wake");
    drop(t.join().unwrap());
    // A timeout too long to add to now is no timeout (it panicked in the deadline sum);
    // wanting nothing returns at once (it slept until the timeout, for ever with none).
    let (a, b) = pipe("wait2", 16);
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"now").unwrap();
    tx.sync().unwrap();
    assert!(b.wait_readable(Some(Duration::MAX)).unwrap());
    let start = std::time::Instant::now();
    let r = b.wait(Readiness::default(), None).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(r.readable && r.writable, "{r:?}");
}

#[test]
fn dropped_rx_handle_does_not_replay_and_dropped_tx_flushes() {
    let (a, b) = pipe("drops", 16);
    {
        let mut tx = a.tx_ring(0).unwrap();
        tx.send(b"1").unwrap();
        tx.send(b"2").unwrap();
        // dropped unsynced: flushed
    }
    {
        let mut rx = b.rx_ring(0).unwrap();
        rx.sync().unwrap();
        assert_eq!(rx.recv().unwrap().payload(), b"1");
    }
    let mut rx = b.rx_ring(0).unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"2");
    assert!(rx.recv().is_none());
}

#[test]
fn zero_copy_forward_between_pipes_of_one_parent() {
    // a{1 -> a}1 forwards into a{2 -> a}2, swapping buffers; same parent = same memory.
    let (p1m, p1s) = (Netmap::open("zc{1").unwrap(), Netmap::open("zc}1").unwrap());
    let (p2m, p2s) = (Netmap::open("zc{2").unwrap(), Netmap::open("zc}2").unwrap());
    assert!(p1s.shares_memory_with(&p2m));
    let mut src = p1m.tx_ring(0).unwrap();
    let mut mid_rx = p1s.rx_ring(0).unwrap();
    let mut mid_tx = p2m.tx_ring(0).unwrap();
    let mut dst = p2s.rx_ring(0).unwrap();
    for round in 0..50u32 {
        for i in 0..20u32 {
            src.send(&(round * 100 + i).to_le_bytes()).unwrap();
        }
        src.sync().unwrap();
        mid_rx.sync().unwrap();
        let n = forward_filtered(&mut mid_rx, &mut mid_tx, usize::MAX, |f| {
            // drop odd packets
            u32::from_le_bytes(f.payload().try_into().unwrap()) % 2 == 0
        })
        .unwrap();
        assert_eq!(n, 10);
        mid_tx.sync().unwrap();
        mid_rx.sync().unwrap();
        dst.sync().unwrap();
        let got: Vec<u32> = dst
            .batch(100)
            .map(|f| u32::from_le_bytes(f.payload().try_into().unwrap()))
            .collect();
        let want: Vec<u32> = (0..20)
            .filter(|i| i % 2 == 0)
            .map(|i| round * 100 + i)
            .collect();
        assert_eq!(got, want);
        dst.sync().unwrap();
    }
    // Different parents: different memory, no swap.
    let other = Netmap::open("zcother{1").unwrap();
    let mut other_tx = other.tx_ring(0).unwrap();
    assert!(matches!(
        netmap_rs::zero_copy_forward(&mut mid_rx, &mut other_tx, 1),
        Err(Error::MemoryMismatch)
    ));
}

#[test]
fn one_fd_per_ring_for_thread_per_ring() {
    let masters = NetmapBuilder::new("tpr{0")
        .num_tx_rings(4)
        .num_rx_rings(4)
        .num_slots(64)
        .build_per_ring()
        .unwrap();
    assert_eq!(masters.len(), 4);
    let slave = NetmapBuilder::new("tpr}0").build().unwrap();
    assert_eq!(slave.num_rx_rings(), 4);
    let handles: Vec<_> = masters
        .into_iter()
        .enumerate()
        .map(|(i, port)| {
            std::thread::spawn(move || {
                assert_eq!(port.num_tx_rings(), 1);
                let mut tx = port.tx_ring(0).unwrap();
                assert_eq!(tx.ring_id() as usize, i);
                for k in 0..10u8 {
                    tx.send(&[i as u8, k]).unwrap();
                }
                tx.sync().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for i in 0..4 {
        let mut rx = slave.rx_ring(i).unwrap();
        rx.sync().unwrap();
        let got: Vec<Vec<u8>> = rx.batch(100).map(|f| f.payload().to_vec()).collect();
        assert_eq!(got.len(), 10, "ring {i}");
        assert!(got
            .iter()
            .enumerate()
            .all(|(k, p)| p == &[i as u8, k as u8]));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Send(usize, u16),
    TxSync,
    RxSync,
    Recv(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..20, 0u16..300).prop_map(|(n, len)| Op::Send(n, len)),
        Just(Op::TxSync),
        Just(Op::RxSync),
        (1usize..20).prop_map(Op::Recv),
    ]
}

static PROP_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random send/sync/recv sequences against a model queue: order kept, nothing lost or
    /// duplicated, never more than num_slots - 1 packets held, everything delivered at the end.
    #[test]
    fn random_ops_match_a_model_queue(ops in proptest::collection::vec(op(), 1..120), slots in 4u32..40) {
        let id = PROP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (a, b) = pipe(&format!("prop{id}x"), slots);
        let mut tx = a.tx_ring(0).unwrap();
        let mut rx = b.rx_ring(0).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u32;
        // Exact model of netmap pipe back-pressure: the sender may hold num_slots - 1 slots
        // beyond what the receiver had released (rx sync) as of the sender's last sync.
        let (mut consumed, mut released, mut tx_knows) = (0u32, 0u32, 0u32);
        for op in ops {
            match op {
                Op::Send(n, len) => for _ in 0..n {
                    let mut p = seq.to_le_bytes().to_vec();
                    p.resize(4 + len as usize, seq as u8);
                    let room = seq - tx_knows < slots - 1;
                    match tx.send(&p) {
                        Ok(()) => {
                            prop_assert!(room, "send succeeded on a full ring");
                            model.push_back(p);
                            seq += 1;
                        }
                        Err(Error::InsufficientSpace) => {
                            prop_assert!(!room, "ring reported full with room left");
                            break;
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                },
                Op::TxSync => { tx.sync().unwrap(); tx_knows = released; }
                Op::RxSync => { rx.sync().unwrap(); released += consumed; consumed = 0; }
                Op::Recv(n) => for _ in 0..n {
                    match rx.recv() {
                        Some(f) => {
                            let want = model.pop_front();
                            prop_assert_eq!(Some(f.payload().to_vec()), want);
                            consumed += 1;
                        }
                        None => break,
                    }
                },
            }
            prop_assert!(model.len() < slots as usize, "more packets held than the ring has");
        }
        // Drain: everything sent arrives, in order.
        for _ in 0..3 {
            tx.sync().unwrap();
            rx.sync().unwrap();
            while let Some(f) = rx.recv() {
                let want = model.pop_front();
                prop_assert_eq!(Some(f.payload().to_vec()), want);
            }
        }
        prop_assert!(model.is_empty(), "{} packets never arrived", model.len());
    }
}

#[test]
fn the_exposed_fd_becomes_readable_on_delivery() {
    use std::os::fd::AsRawFd;
    let (a, b) = pipe("exposed", 16);
    let fd = b.as_raw_fd();
    let poll = |ms: i32| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        p.revents & libc::POLLIN != 0
    };
    assert!(!poll(0), "nothing sent yet");
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"x").unwrap();
    tx.sync().unwrap();
    assert!(poll(5000), "a delivery makes the descriptor readable");
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"x");
}

/// One thread per RX ring of a single registration, each syncing its own ring, while one
/// thread per TX ring sends sequence-numbered packets. On the netmap module every sync (an
/// `NIOCRXSYNC` on the shared descriptor) also checks the other threads' rings, reading
/// `cur` then `head`; two loads on either side of a ring owner's publication see `cur <
/// head` and log `netmap_ring_reinit`. The pointers are in range on the kernel's re-read, so
/// nothing is reset; the ring's owner republishes at its next sync.
/// Every packet must arrive, in order. On the kernel the test brackets itself with lines in
/// the kernel log, so `ci/kernel-tests.sh` can tell those expected lines from any other.
#[test]
fn rx_rings_of_one_registration_on_their_own_threads_lose_nothing() {
    let _log = KernelLogBracket::new("rx threads on one registration");
    const RINGS: usize = 4;
    let per_ring: u64 = match std::env::var("NETMAP_RS_RXTHREADS_PER_RING") {
        Ok(n) => n.parse().expect("NETMAP_RS_RXTHREADS_PER_RING: a number"),
        Err(_) => 200_000,
    };
    let open = |n: &str| {
        NetmapBuilder::new(n)
            .num_tx_rings(RINGS)
            .num_rx_rings(RINGS)
            .num_slots(64)
            .build()
            .unwrap()
    };
    let (a, b) = (open("rxthreads{0"), open("rxthreads}0"));
    let mut threads = Vec::new();
    for r in 0..RINGS {
        let mut tx = a.tx_ring(r).unwrap();
        threads.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            while seq < per_ring {
                match tx.send(&seq.to_le_bytes()) {
                    Ok(()) => seq += 1,
                    Err(Error::InsufficientSpace) => {
                        tx.sync().unwrap();
                        if tx.space() == 0 {
                            std::thread::yield_now();
                        }
                    }
                    Err(e) => panic!("ring {r}: {e}"),
                }
            }
            tx.sync().unwrap();
            seq
        }));
        let mut rx = b.rx_ring(r).unwrap();
        threads.push(std::thread::spawn(move || {
            let mut want = 0u64;
            let give_up = std::time::Instant::now() + Duration::from_secs(120);
            while want < per_ring {
                assert!(
                    std::time::Instant::now() < give_up,
                    "ring {r}: stalled at {want} of {per_ring}"
                );
                rx.sync().unwrap();
                if rx.available() == 0 {
                    std::thread::yield_now();
                }
                while let Some(f) = rx.recv() {
                    let got = u64::from_le_bytes(f.payload()[..8].try_into().unwrap());
                    assert_eq!(got, want, "ring {r}: lost or reordered");
                    want += 1;
                }
            }
            want
        }));
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), per_ring);
    }
}

/// `for_each_frame` on a backend without memory of its own to lend (an emulated pipe): the
/// frames come from slots, a sync fetches more once they are used up, and a wait sleeps
/// until the first comes.
#[test]
fn for_each_frame_reads_slots_syncs_and_waits_where_nothing_is_lent() {
    let (a, b) = pipe("each", 16);
    let mut rx = b.rx_ring(0).unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    for p in [&b"one"[..], b"two", b"three"] {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let mut got = Vec::new();
    let n = rx
        .for_each_frame(2, Some(Duration::ZERO), |f| {
            assert!(f.slot_index().is_some(), "a slot's frame");
            got.push(f.payload().to_vec());
        })
        .unwrap();
    assert_eq!(n, 2, "at most max");
    let n = rx
        .for_each_frame(8, None, |f| got.push(f.payload().to_vec()))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    let start = std::time::Instant::now();
    let n = rx
        .for_each_frame(8, Some(Duration::from_millis(20)), |_| {})
        .unwrap();
    assert_eq!(n, 0, "nothing came");
    assert!(start.elapsed() >= Duration::from_millis(15), "it waited");
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        tx.send(b"late").unwrap();
        tx.sync().unwrap();
        (a, tx)
    });
    let mut late = Vec::new();
    let n = rx
        .for_each_frame(8, Some(Duration::from_secs(10)), |f| {
            late.push(f.payload().to_vec())
        })
        .unwrap();
    assert_eq!((n, late), (1, vec![b"late".to_vec()]));
    assert_eq!(
        rx.for_each_frame(0, None, |_| {}).unwrap(),
        0,
        "max 0 returns at once"
    );
    drop(t.join().unwrap());
}

use super::*;
use crate::abi::NS_MOREFRAG;
use crate::backend::BackendChoice;
use crate::ring::advance;
use crate::ring::prev;
use crate::sync::forward::zero_copy_forward;
use crate::sync::NetmapBuilder;
use bytes::Bytes;
use std::sync::atomic::Ordering;

fn emu(name: &str) -> crate::Netmap {
    NetmapBuilder::new(name)
        .num_slots(8)
        .backend(BackendChoice::Emulated)
        .build()
        .unwrap()
}

/// Both ends of pipe `name` (8 slots) and ring 0 of each: (a, b, a's TX, b's RX).
fn pipe_rings(name: &str) -> (crate::Netmap, crate::Netmap, TxRing, RxRing) {
    let a = emu(&format!("{name}{{0"));
    let b = emu(&format!("{name}}}0"));
    let (tx, rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    (a, b, tx, rx)
}

/// A hostile peer writes an out-of-range buffer index and an oversize length into slots
/// before they reach the receiver: the receiver gets errors, never an out-of-bounds slice.
/// An index written after the slot reached the user changes nothing (the handle lends the
/// buffer it claimed).
#[test]
fn hostile_slots_give_errors_not_out_of_bounds_slices() {
    let (a, b, mut tx, mut rx) = pipe_rings("hostile");
    for p in [&b"a"[..], b"b", b"c", b"d"] {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    let raw = &b.inner.rx[0].raw;
    let h = rx.h.head;
    let n = raw.num_slots();
    // SAFETY: (test acting as a hostile peer): the slots were delivered but the receiver's
    // tail has not moved over them yet; this thread is the only one touching the ring.
    unsafe {
        raw.set_buf_idx(h, u32::MAX);
        raw.set_len_flags(advance(h, 1, n), 60000, 0);
        raw.set_buf_idx(advance(h, 2, n), raw.buf_range().end);
    }
    rx.sync().unwrap();
    match rx.try_recv() {
        Err(Error::CorruptSlot { buf_idx, .. }) => assert_eq!(buf_idx, u32::MAX),
        other => panic!("expected CorruptSlot, got {other:?}"),
    }
    match rx.try_recv() {
        Err(Error::CorruptSlot { len, .. }) => assert_eq!(len, 60000),
        other => panic!("expected CorruptSlot, got {other:?}"),
    }
    // recv() skips the remaining corrupt slot (one past the last buffer) and returns the
    // good packet after it.
    assert_eq!(rx.recv().unwrap().payload(), b"d");
    assert!(rx.recv().is_none());
    // Rewritten after the receiver claimed it, a slot's index is not what it lends.
    tx.send(b"e").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let k = rx.h.head;
    // SAFETY: (test acting as a hostile peer) this thread is alone on the ring.
    let good = unsafe { raw.slot(k) }.buf_idx;
    // SAFETY: as above.
    unsafe { raw.set_buf_idx(k, u32::MAX) };
    assert_eq!(rx.recv().unwrap().payload(), b"e");
    // SAFETY: as above (the pipe's teardown finds the buffer in its slot again).
    unsafe { raw.set_buf_idx(k, good) };
    // A corrupt TX slot: send fails, nothing advances; once the slot names a free buffer
    // again, it is claimed and used.
    let traw = &a.inner.tx[0].raw;
    drop(tx);
    let th = traw.load_head();
    // SAFETY: (test acting as a hostile peer) no handle of the ring exists.
    let good = unsafe { traw.slot(th) }.buf_idx;
    // SAFETY: as above.
    unsafe { traw.set_buf_idx(th, 1 << 30) };
    let mut tx = a.tx_ring(0).unwrap();
    assert!(matches!(tx.send(b"x"), Err(Error::CorruptSlot { .. })));
    assert_eq!(tx.pending(), 0);
    // SAFETY: as above; this thread is alone on the ring.
    unsafe { traw.set_buf_idx(th, good) };
    tx.send(b"x").unwrap();
}

/// A pipe delivers up to the end of the last complete packet: slots flagged
/// NS_MOREFRAG wait for the slot that ends their packet.
#[test]
fn pipe_delivers_complete_packets_only() {
    let (a, _b, mut tx, mut rx) = pipe_rings("frag");
    let traw = &a.inner.tx[0].raw;
    for p in [&b"a"[..], b"b", b"c1"] {
        tx.send(p).unwrap();
    }
    let last = prev(tx.h.head, traw.num_slots());
    // SAFETY: (test acting as the user): the slot is written but not yet synced, so it is
    // still in the sender's range; this thread is alone on the ring.
    unsafe { traw.set_len_flags(last, 2, NS_MOREFRAG) };
    tx.sync().unwrap();
    rx.sync().unwrap();
    assert_eq!(
        rx.available(),
        2,
        "the fragment waits for the end of its packet"
    );
    tx.send(b"c2").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let got: Vec<(Vec<u8>, bool)> = rx
        .batch(8)
        .map(|f| (f.payload().to_vec(), f.more_fragments()))
        .collect();
    let want: Vec<(Vec<u8>, bool)> = vec![
        (b"a".to_vec(), false),
        (b"b".to_vec(), false),
        (b"c1".to_vec(), true),
        (b"c2".to_vec(), false),
    ];
    assert_eq!(got, want);
}

/// Reservations fill slots in place; skipped slots go out empty, bad calls are errors
/// that write nothing, and a batch iterator dropped early consumes only what it yielded.
#[test]
fn reservations_and_batches_in_place() {
    let (_a, _b, mut tx, mut rx) = pipe_rings("resv");
    let mut r = tx.reserve_batch(4).unwrap();
    r.packet(0, 1).unwrap().copy_from_slice(b"a");
    r.packet(2, 2).unwrap().copy_from_slice(b"cc");
    assert!(matches!(r.packet(4, 1), Err(Error::InvalidRingIndex(4))));
    assert!(matches!(
        r.packet(3, 1 << 20),
        Err(Error::PacketTooLarge(_))
    ));
    assert_eq!(r.commit(), 3);
    assert!(
        tx.reserve_batch(8).is_err(),
        "an 8-slot ring never has 8 free"
    );
    tx.sync().unwrap();
    rx.sync().unwrap();
    let first: Vec<Vec<u8>> = rx.batch(2).map(|f| f.payload().to_vec()).collect();
    assert_eq!(first, [b"a".to_vec(), vec![]]);
    {
        let mut it = rx.batch(8);
        assert_eq!(it.next().unwrap().payload(), b"cc");
    }
    assert!(rx.batch(8).next().is_none());
    rx.sync().unwrap();
    tx.sync().unwrap();
    assert_eq!(tx.space(), 7, "all three slots came back");
}

/// `fill` writes every reserved slot from the first unfilled one, and stops at an oversize
/// length or a corrupt slot, keeping the packets before it.
#[test]
fn fill_writes_in_order_and_stops_at_bad_slots() {
    let (a, _b, mut tx, mut rx) = pipe_rings("fill");
    let mut r = tx.reserve_batch(3).unwrap();
    r.packet(0, 1).unwrap().copy_from_slice(b"a");
    let n = r
        .fill(|i, buf| {
            buf[..2].copy_from_slice(&[b'0' + i as u8; 2]);
            2
        })
        .unwrap();
    assert_eq!((n, r.commit()), (2, 3));
    let mut r = tx.reserve_batch(2).unwrap();
    assert!(matches!(
        r.fill(|_, buf| buf.len() + 1),
        Err(Error::PacketTooLarge(_))
    ));
    // A corrupt buffer index in the second slot (written before the handle claimed it):
    // the first packet is kept.
    let traw = &a.inner.tx[0].raw;
    drop(tx); // sends what was committed
    let k = advance(traw.load_head(), 1, traw.num_slots());
    // SAFETY: (test acting as a hostile peer): no handle of the ring exists; alone on it.
    let good = unsafe { traw.slot(k) }.buf_idx;
    // SAFETY: as above.
    unsafe { traw.set_buf_idx(k, u32::MAX) };
    let mut tx = a.tx_ring(0).unwrap();
    let mut r = tx.reserve_batch(2).unwrap();
    let err = r.fill(|_, buf| {
        buf[0] = b'z';
        1
    });
    assert!(matches!(err, Err(Error::CorruptSlot { .. })));
    assert_eq!(r.commit(), 1);
    // SAFETY: as above; the slot is still not handed to the kernel (it was not committed).
    unsafe { traw.set_buf_idx(k, good) };
    tx.sync().unwrap();
    rx.sync().unwrap();
    let got: Vec<Vec<u8>> = rx.batch(8).map(|f| f.payload().to_vec()).collect();
    assert_eq!(got, [&b"a"[..], b"11", b"22", b"z"]);
}

/// `fill_reused` reports every slot as changed until the handle has filled the whole ring
/// once, then only slots the kernel flagged with `NS_BUF_CHANGED`.
#[test]
fn fill_reused_reports_fresh_and_changed_buffers() {
    let (a, _b, mut tx, mut rx) = pipe_rings("reuse");
    let n = tx.num_slots();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut r = tx.reserve_batch(n / 2).unwrap();
        r.fill_reused(|_, buf, changed| {
            seen.push(changed);
            if changed {
                buf[..3].copy_from_slice(b"abc");
            }
            3
        })
        .unwrap();
        r.commit();
        tx.sync().unwrap();
        rx.sync().unwrap();
        for f in rx.batch(n) {
            assert_eq!(f.payload(), b"abc");
        }
        rx.sync().unwrap();
        tx.sync().unwrap();
    }
    assert!(seen[..n].iter().all(|c| *c), "the first lap is all fresh");
    // The emulated pipe swaps buffers and flags them: still changed after the first lap.
    let flagged = {
        let traw = &a.inner.tx[0].raw;
        // SAFETY: (test): reading the flags of a slot this thread owns, alone on the ring.
        unsafe { traw.slot(tx.h.head) }.flags & crate::abi::NS_BUF_CHANGED != 0
    };
    assert_eq!(seen[n..].iter().all(|c| *c), flagged);
}

/// The owned-frame paths of the async Stream: short packets inline, longer ones through
/// the spill copy, corrupt slots left for (and reported by) the general path.
#[test]
fn owned_takes_inline_spill_and_corrupt_slots() {
    let (_a, b, mut tx, mut rx) = pipe_rings("owned");
    let sizes = [0, 5, INLINE_CAPACITY, INLINE_CAPACITY + 1, 2000];
    let packets: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
        .collect();
    for p in &packets {
        tx.send(p).unwrap();
    }
    tx.sync().unwrap();
    rx.sync().unwrap();
    let mut spilled = 0;
    for p in &packets {
        let f = match rx.take_inline() {
            Some((w, len, flags, _)) => {
                assert!(p.len() <= INLINE_CAPACITY);
                Frame::inline_window(w, len, flags, 0, 0)
            }
            None => {
                assert!(p.len() > INLINE_CAPACITY);
                rx.take_owned(0, |d| {
                    spilled += 1;
                    Bytes::copy_from_slice(d)
                })
                .unwrap()
                .unwrap()
            }
        };
        assert_eq!(f.payload(), &p[..]);
        assert!(!f.is_borrowed());
    }
    assert_eq!(spilled, 2);
    assert!(rx.take_inline().is_none() && rx.take_owned(0, |_| unreachable!()).is_none());

    // A corrupt slot: the inline path leaves it alone, the general path reports it and
    // moves past it.
    tx.send(b"bad").unwrap();
    tx.send(b"good").unwrap();
    tx.sync().unwrap();
    let raw = &b.inner.rx[0].raw;
    // SAFETY: (test acting as a hostile peer): the slot was delivered, the receiver's tail
    // has not moved over it yet, and this thread is alone on the ring.
    let bad = rx.h.head;
    // SAFETY: as said above.
    let good = unsafe { raw.slot(bad) }.buf_idx;
    // SAFETY: as said above.
    unsafe { raw.set_buf_idx(bad, u32::MAX) };
    rx.sync().unwrap();
    assert!(rx.take_inline().is_none());
    assert!(matches!(
        rx.take_owned(0, Bytes::copy_from_slice),
        Some(Err(Error::CorruptSlot { .. }))
    ));
    let (w, len, _, _) = rx.take_inline().unwrap();
    assert_eq!(&w[..len as usize], b"good");
    // Give the buffer index back so the pipe's teardown returns every buffer.
    // SAFETY: as above; this thread is still alone on the ring.
    unsafe { raw.set_buf_idx(bad, good) };
}

#[test]
fn emulated_pipes_hand_out_valid_unreserved_buffers() {
    let a = emu("guard{0");
    for r in a.inner.tx.iter().chain(&a.inner.rx) {
        for k in 0..r.raw.num_slots() {
            // SAFETY: nobody else uses this port; reading only.
            let idx = unsafe { r.raw.slot(k) }.buf_idx;
            assert!(idx >= 2, "buffers 0 and 1 are reserved");
            assert!(r.raw.buf_ptr(idx).is_some());
        }
    }
}

/// Sender and receiver on two threads, plus a third thread that syncs the receiver's
/// port at random moments the way the kernel's poll handler does from the epoll thread.
/// Under Miri this checks the ring protocol for data races.
#[test]
fn threads_and_a_concurrent_poll_syncer_race_free() {
    let (_a, b, mut tx, mut rx) = pipe_rings("threads");
    const N: u32 = if cfg!(miri) { 40 } else { 50_000 };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = std::thread::spawn(move || {
        let mut i = 0u32;
        while i < N {
            match tx.send(&i.to_le_bytes()) {
                Ok(()) => i += 1,
                Err(Error::InsufficientSpace) => {
                    tx.sync().unwrap();
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
            if i % 3 == 0 {
                tx.sync().unwrap();
            }
        }
        tx.sync().unwrap();
    });
    let port = b.inner.clone();
    let stop = done.clone();
    let poller = std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            port.backend.rxsync().unwrap();
            let _ = port.readiness();
            std::thread::yield_now();
        }
    });
    let mut expect = 0u32;
    while expect < N {
        rx.sync().unwrap();
        for f in rx.batch(5) {
            assert_eq!(f.payload(), expect.to_le_bytes());
            expect += 1;
        }
        std::thread::yield_now();
    }
    done.store(true, Ordering::Release);
    sender.join().unwrap();
    poller.join().unwrap();
}

/// Zero-copy forwarding on one thread while the peers run on others.
#[test]
fn forwarding_thread_between_two_pipes() {
    let src = emu("fwd{1");
    let mid_in = emu("fwd}1");
    let mid_out = emu("fwd{2");
    let dst = emu("fwd}2");
    const N: u32 = if cfg!(miri) { 30 } else { 20_000 };
    let mut tx = src.tx_ring(0).unwrap();
    let mut rx = dst.rx_ring(0).unwrap();
    let mut f_rx = mid_in.rx_ring(0).unwrap();
    let mut f_tx = mid_out.tx_ring(0).unwrap();
    let sender = std::thread::spawn(move || {
        let mut i = 0u32;
        while i < N {
            if tx.send(&i.to_le_bytes()).is_ok() {
                i += 1;
            } else {
                tx.sync().unwrap();
                std::thread::yield_now();
            }
        }
        tx.sync().unwrap();
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let fwd = std::thread::spawn(move || {
        while !stop2.load(Ordering::Acquire) {
            f_rx.sync().unwrap();
            zero_copy_forward(&mut f_rx, &mut f_tx, 16).unwrap();
            f_tx.sync().unwrap();
            std::thread::yield_now();
        }
    });
    let mut expect = 0u32;
    while expect < N {
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            assert_eq!(f.payload(), expect.to_le_bytes());
            expect += 1;
        }
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    sender.join().unwrap();
    fwd.join().unwrap();
}

/// Issue 18.1 under Miri: a peer points a TX slot of another pipe of the same memory at the
/// buffer of a frame this process is reading; taking that slot must not make a `&mut [u8]`
/// over the frame's bytes (Miri reports the aliasing if it does).
#[test]
fn a_slot_naming_a_lent_buffer_is_refused() {
    let (_a, b, mut tx, mut rx) = pipe_rings("alias");
    let c = emu("alias{1");
    let _d = emu("alias}1");
    tx.send(b"hello").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let x = rx.h.buf_of(rx.h.head);
    let frame = rx.recv().unwrap();
    let traw = &c.inner.tx[0].raw;
    let k = traw.load_head();
    // SAFETY: (test acting as a hostile peer) no handle of that ring exists yet.
    let own = unsafe { traw.slot(k) }.buf_idx;
    // SAFETY: as above.
    unsafe { traw.set_buf_idx(k, x) };
    let mut tx2 = c.tx_ring(0).unwrap();
    let mut r = tx2.reserve_batch(1).unwrap();
    match r.packet(0, 16) {
        Err(Error::CorruptSlot { buf_idx, .. }) => assert_eq!(buf_idx, x),
        Err(e) => panic!("unexpected error {e}"),
        Ok(buf) => {
            buf[0] = b'H';
            panic!("two views of buffer {x}");
        }
    }
    drop(r);
    assert!(matches!(tx2.send(b"zz"), Err(Error::CorruptSlot { .. })));
    assert_eq!(frame.payload(), b"hello");
    drop(frame);
    // SAFETY: as above; the slot gets its own buffer back for the teardown.
    unsafe { traw.set_buf_idx(k, own) };
    let _ = b;
}

/// Emulated pipes stamp the RX ring at the rxsync that delivers packets (`NR_TIMESTAMP`, as
/// netmap does): every frame of that sync carries it, on the host clock, later syncs later.
#[test]
fn emulated_frames_carry_the_stamp_of_the_rxsync_that_delivered_them() {
    use std::time::{Duration, SystemTime};
    let (_a, _b, mut tx, mut rx) = pipe_rings("stamps");
    if cfg!(miri) {
        // No wall clock under Miri's isolation: the pipe does not stamp.
        tx.send(b"x").unwrap();
        tx.sync().unwrap();
        rx.sync().unwrap();
        assert_eq!(rx.recv().map(|f| f.timestamp()), Some(None));
        return;
    }
    let mut last = None;
    for round in 0..3u8 {
        let before = SystemTime::now() - Duration::from_micros(1); // ts keeps microseconds
        tx.send(&[round]).unwrap();
        tx.send(&[round, round]).unwrap();
        tx.sync().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        rx.sync().unwrap();
        let after = SystemTime::now();
        let mut stamps = Vec::new();
        while let Some(f) = rx.recv() {
            stamps.push(f.timestamp().expect("an emulated frame has a timestamp"));
        }
        assert_eq!(stamps.len(), 2);
        assert_eq!(stamps[0], stamps[1], "one stamp per rxsync");
        assert!(stamps[0] >= before && stamps[0] <= after, "{stamps:?}");
        assert!(
            last < Some(stamps[0]),
            "round {round}: {last:?} then {stamps:?}"
        );
        last = Some(stamps[0]);
    }
}

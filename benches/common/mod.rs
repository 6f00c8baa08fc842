//! The workloads shared by the criterion benchmarks (`rings.rs`) and the instruction-count
//! harness (`instr.rs`): each moves `iters` batches of `BATCH` packets.

#![allow(dead_code)] // each bench target uses a subset

use std::hint::black_box;
use std::ptr::{addr_of, addr_of_mut};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::abi::{NetmapRing, NetmapSlot};
use netmap_rs::tokio_async::{AsyncNetmapRxRing, AsyncNetmapTxRing};
use netmap_rs::{BackendChoice, Netmap, NetmapBuilder};

pub const BATCH: usize = 256;
pub const SIZES: [usize; 2] = [64, 1500];

pub fn pipe(name: &str) -> (Netmap, Netmap) {
    let open = |n: String| {
        NetmapBuilder::new(&n)
            .backend(BackendChoice::Emulated)
            .num_slots(1024)
            .build()
            .unwrap()
    };
    (open(format!("{name}{{0")), open(format!("{name}}}0")))
}

/// Wraps a loop of `iters` iterations as criterion's `iter_custom` wants it.
pub fn timed(mut f: impl FnMut(u64)) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let t = std::time::Instant::now();
        f(iters);
        t.elapsed()
    }
}

/// The safe sync batch path.
pub fn safe_batch(a: &Netmap, b: &Netmap, len: usize, iters: u64, src: &[u8], dst: &mut [u8]) {
    safe_batch_with(a, b, len, iters, src, |p| copy_out(dst, p));
    black_box(&dst);
}

/// The safe batch path, each received packet handed to `consume`.
#[inline(always)]
pub fn safe_batch_with(
    a: &Netmap,
    b: &Netmap,
    len: usize,
    iters: u64,
    src: &[u8],
    mut consume: impl FnMut(&[u8]),
) {
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    for _ in 0..iters {
        let mut r = tx.reserve_batch(BATCH).unwrap();
        for i in 0..BATCH {
            r.packet(i, len).unwrap().copy_from_slice(&src[..len]);
        }
        r.commit();
        tx.sync().unwrap();
        rx.sync().unwrap();
        for f in rx.batch(BATCH) {
            consume(f.payload());
        }
    }
    rx.sync().unwrap();
}

/// A consumer that copies the packet out (as into an application buffer). Callers pass
/// `dst` to `black_box` when done, so the copies cannot be optimised away.
#[inline(always)]
pub fn copy_out(dst: &mut [u8], p: &[u8]) {
    dst[..p.len()].copy_from_slice(p);
}

/// A consumer that reads the packet where it is: its first 8 bytes (a header field, say a
/// sequence number), folded into `acc` (which callers pass to `black_box` when done).
#[inline(always)]
pub fn read_in_place(acc: &mut u64, p: &[u8]) {
    *acc = acc.rotate_left(1) ^ u64::from_le_bytes(p[..8].try_into().unwrap());
}

/// The same ring work done by hand through raw pointers, as a C program would.
pub fn raw_batch(a: &Netmap, b: &Netmap, len: usize, iters: u64, src: &[u8], dst: &mut [u8]) {
    let txr = a.raw_tx_ring_ptr(0).unwrap();
    let rxr = b.raw_rx_ring_ptr(0).unwrap();
    // SAFETY: benchmark-only C-style access. No ring handle of these rings is alive, the
    // pipe's buffers are inside the mapping the Netmaps keep alive, and the ring protocol is
    // followed (write slots in [head, tail), then publish cur and head; read after tail).
    unsafe {
        let slots = |r: *mut NetmapRing| r.cast::<u8>().add(256).cast::<NetmapSlot>();
        let buf = |r: *mut NetmapRing, idx: u32| {
            r.cast::<u8>()
                .offset(*addr_of!((*r).buf_ofs) as isize)
                .add(idx as usize * *addr_of!((*r).nr_buf_size) as usize)
        };
        let n = *addr_of!((*txr).num_slots);
        let rn = *addr_of!((*rxr).num_slots);
        for _ in 0..iters {
            let mut head = addr_of!((*txr).head).read_volatile();
            for _ in 0..BATCH {
                let s = slots(txr).add(head as usize);
                std::ptr::copy_nonoverlapping(src.as_ptr(), buf(txr, (*s).buf_idx), len);
                (*s).len = len as u16;
                (*s).flags = 0;
                head = if head + 1 == n { 0 } else { head + 1 };
            }
            addr_of_mut!((*txr).cur).write_volatile(head);
            addr_of_mut!((*txr).head).write_volatile(head);
            a.sync_tx_published().unwrap();
            b.sync_rx_published().unwrap();
            let mut rh = addr_of!((*rxr).head).read_volatile();
            let tail = addr_of!((*rxr).tail).read_volatile();
            while rh != tail {
                let s = slots(rxr).add(rh as usize);
                let l = (*s).len as usize;
                std::ptr::copy_nonoverlapping(buf(rxr, (*s).buf_idx), dst.as_mut_ptr(), l);
                rh = if rh + 1 == rn { 0 } else { rh + 1 };
            }
            addr_of_mut!((*rxr).cur).write_volatile(rh);
            addr_of_mut!((*rxr).head).write_volatile(rh);
            black_box(&dst);
        }
        b.sync_rx_published().unwrap();
    }
}

/// What a user would write instead in one process: a channel of owned `Vec<u8>` packets.
pub fn crossbeam_batch(
    tx: &crossbeam_channel::Sender<Vec<u8>>,
    rx: &crossbeam_channel::Receiver<Vec<u8>>,
    len: usize,
    iters: u64,
    src: &[u8],
    mut consume: impl FnMut(&[u8]),
) {
    for _ in 0..iters {
        for _ in 0..BATCH {
            tx.send(src[..len].to_vec()).unwrap();
        }
        for _ in 0..BATCH {
            consume(&rx.recv().unwrap());
        }
    }
}

pub fn single(a: &Netmap, b: &Netmap, len: usize, iters: u64, src: &[u8], dst: &mut [u8]) {
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    for _ in 0..iters {
        for _ in 0..BATCH {
            tx.send(&src[..len]).unwrap();
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            dst[..f.len()].copy_from_slice(f.payload());
        }
        black_box(&dst);
    }
    rx.sync().unwrap();
}

/// The sync counterpart of [`sink_stream`], with the same item types: each item is a clone of
/// `payload` sent with `send(&Bytes)`, each received packet an owned frame (`recv()` +
/// `into_owned()`); one sync per batch on each side, as the async path's flush and empty ring
/// do.
pub fn sync_items(a: &Netmap, b: &Netmap, payload: &Bytes, iters: u64) {
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    for _ in 0..iters {
        for _ in 0..BATCH {
            let item = black_box(payload.clone());
            tx.send(&item).unwrap();
        }
        tx.sync().unwrap();
        rx.sync().unwrap();
        for _ in 0..BATCH {
            let f = rx.recv().unwrap().into_owned();
            black_box(f.payload());
        }
    }
    rx.sync().unwrap();
}

/// Sink<Bytes> → pipe → Stream<Frame>, one item at a time; every item is a clone of `payload`.
pub async fn sink_stream(
    tx: &mut AsyncNetmapTxRing,
    rx: &mut AsyncNetmapRxRing,
    payload: &Bytes,
    iters: u64,
) {
    for _ in 0..iters {
        for _ in 0..BATCH {
            tx.feed(payload.clone()).await.unwrap();
        }
        SinkExt::<Bytes>::flush(tx).await.unwrap();
        for _ in 0..BATCH {
            let f = rx.next().await.unwrap().unwrap();
            black_box(f.payload());
        }
    }
}

/// Async reservations and zero-copy batches.
pub async fn async_batch(
    tx: &mut AsyncNetmapTxRing,
    rx: &mut AsyncNetmapRxRing,
    len: usize,
    iters: u64,
    src: &[u8],
    dst: &mut [u8],
) {
    for _ in 0..iters {
        let mut r = tx.reserve(BATCH).await.unwrap();
        for i in 0..BATCH {
            r.packet(i, len).unwrap().copy_from_slice(&src[..len]);
        }
        r.commit();
        tx.flush_ring().await.unwrap();
        let mut got = 0;
        while got < BATCH {
            for f in rx.recv_batch(BATCH - got).await.unwrap() {
                dst[..f.len()].copy_from_slice(f.payload());
                got += 1;
            }
        }
        black_box(&dst);
    }
}

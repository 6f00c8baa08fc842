//! kernel_loop: the library's batch path doing what `ci/bench/nmloop.c` does, for the side-by-side
//! figures of `ci/kernel-bench.sh` (real netmap in the QEMU guest). Not a Criterion bench:
//!
//!     kernel_loop tx|rx PORT COUNT LEN
//!
//! TX fills up to 512 reserved slots in place (`BatchReservation::fill`) with a template of
//! the frame length and syncs
//! once per burst; RX syncs once per burst and reads the first 8 bytes of each frame, and stops
//! after COUNT packets or 1 s without traffic once the first packet came (its rate runs from
//! the first packet to the last), as the C loop does. Prints
//! `kernel_loop tx: N packets in T s, X Mpps, S syscalls`, S counting syncs and waits.

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

const BURST: usize = 512;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, port, count, len] = args.as_slice() else {
        eprintln!("usage: kernel_loop tx|rx PORT COUNT LEN");
        std::process::exit(2);
    };
    let tx_side = dir == "tx";
    let count: u64 = count.parse().expect("COUNT");
    let len: usize = len.parse().expect("LEN");
    let nm = NetmapBuilder::new(port).build()?;
    let mut template = [0u8; 2048];
    for (i, b) in template.iter_mut().enumerate() {
        *b = i as u8;
    }
    template[..6].fill(0xff);
    let (mut done, mut syscalls, mut sink) = (0u64, 0u64, 0u64);
    let mut t0 = None;
    let mut t1 = None;
    if tx_side {
        let mut tx = nm.tx_ring(0)?;
        while done < count {
            let n = tx.space().min(BURST).min((count - done) as usize);
            if n == 0 {
                nm.wait_writable(Some(Duration::from_secs(1)))?;
                syscalls += 1;
                continue;
            }
            t0.get_or_insert_with(Instant::now);
            let mut batch = tx.reserve_batch(n)?;
            let tpl = &template[..len];
            tx_burst(&mut batch, tpl)?;
            done += batch.commit() as u64;
            tx.sync()?;
            syscalls += 1;
        }
        // Wait until the peer took everything, as the C loop does.
        while tx.space() + 1 < tx.num_slots() {
            tx.sync()?;
            syscalls += 1;
        }
    } else {
        let mut rx = nm.rx_ring(0)?;
        while done < count {
            if rx.available() == 0 {
                let ready = nm.wait_readable(Some(Duration::from_secs(1)))?;
                syscalls += 1;
                if !ready && done > 0 {
                    break;
                }
                continue;
            }
            t0.get_or_insert_with(Instant::now);
            let (k, s) = rx_burst(&mut rx);
            done += k;
            sink = sink.wrapping_add(s);
            rx.sync()?;
            syscalls += 1;
            t1 = Some(Instant::now());
        }
    }
    let end = t1.unwrap_or_else(Instant::now);
    let t = t0.map_or(0.0, |t| (end - t).as_secs_f64()).max(1e-9);
    println!(
        "kernel_loop {dir}: {done} packets in {t:.3} s, {:.3} Mpps, {syscalls} syscalls ({})",
        done as f64 / t / 1e6,
        sink & 1
    );
    Ok(())
}

/// One TX burst: every reserved slot gets the template. (A function of its own, like the C
/// loop's body, so the per-packet loop's state stays in registers rather than competing with
/// everything `main` keeps alive.)
#[inline(never)]
fn tx_burst(batch: &mut BatchReservation<'_>, tpl: &[u8]) -> Result<usize, Error> {
    let len = tpl.len();
    batch.fill(|_, buf| {
        buf[..len].copy_from_slice(tpl);
        len
    })
}

/// One RX burst: reads the first 8 bytes and the length of up to `BURST` frames; returns how
/// many it read and their sum.
#[inline(never)]
fn rx_burst(rx: &mut RxRing) -> (u64, u64) {
    let (mut k, mut sink) = (0u64, 0u64);
    for f in rx.batch(BURST) {
        let p = f.payload();
        sink = sink.wrapping_add(u64::from_le_bytes(p[..8].try_into().unwrap()));
        sink = sink.wrapping_add(p.len() as u64);
        k += 1;
    }
    (k, sink)
}

//! sliding_window_arq: reliable, ordered delivery over a lossy netmap pipe with a
//! selective-repeat sliding window: sequence numbers, cumulative acknowledgements from the
//! receiver, and retransmission on timeout.
//!
//!     cargo run --release --example sliding_window_arq [-- MESSAGES [LOSS_PERCENT]]
//!
//! Loss is injected on both directions (data and acks) with a deterministic pseudo-random
//! generator, to show the protocol recovers. Runs on the kernel's pipes when the netmap module
//! is loaded, emulated otherwise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

const WINDOW: u64 = 64;
const RTO: Duration = Duration::from_millis(5);

struct Lossy {
    state: u64,
    percent: u64,
}

impl Lossy {
    fn drop_it(&mut self) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % 100 < self.percent
    }
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let total: u64 = args
        .next()
        .map(|s| s.parse().expect("MESSAGES"))
        .unwrap_or(20_000);
    let loss: u64 = args
        .next()
        .map(|s| s.parse().expect("LOSS_PERCENT"))
        .unwrap_or(10);
    let sender_port = NetmapBuilder::new("arq{0").build()?;
    let receiver_port = NetmapBuilder::new("arq}0").build()?;
    println!(
        "sliding_window_arq over {} ({}): {total} messages, window {WINDOW}, {loss}% loss each way",
        sender_port.name(),
        sender_port.backend()
    );

    let receiver = std::thread::spawn(move || -> Result<(u64, u64), Error> {
        let mut rx = receiver_port.rx_ring(0)?;
        let mut tx = receiver_port.tx_ring(0)?;
        let mut lossy = Lossy {
            state: 0xdead_beef,
            percent: loss,
        };
        let mut next = 0u64; // next in-order sequence number expected
        let mut held: BTreeMap<u64, Vec<u8>> = BTreeMap::new(); // out-of-order, buffered
        let mut dups = 0;
        while next < total {
            rx.sync()?;
            let mut got_any = false;
            for f in rx.batch(usize::MAX) {
                got_any = true;
                let seq = u64::from_le_bytes(f.payload()[..8].try_into().unwrap());
                if seq < next || held.contains_key(&seq) {
                    dups += 1;
                } else if seq < next + WINDOW {
                    held.insert(seq, f.payload()[8..].to_vec());
                }
            }
            // Deliver in order.
            while let Some(data) = held.remove(&next) {
                assert_eq!(
                    data,
                    format!("message {next}").into_bytes(),
                    "corrupt delivery"
                );
                next += 1;
            }
            if got_any && !lossy.drop_it() {
                // Cumulative ack: everything below `next` has arrived.
                let _ = tx.send(&next.to_le_bytes());
                tx.sync()?;
            }
            if !got_any {
                receiver_port.wait_readable(Some(Duration::from_millis(2)))?;
            }
        }
        // Keep acking the final state until the sender has seen it (or gives up).
        let end = Instant::now() + Duration::from_millis(200);
        while Instant::now() < end {
            rx.sync()?;
            if rx.batch(usize::MAX).count() > 0 {
                let _ = tx.send(&next.to_le_bytes());
                tx.sync()?;
            }
            receiver_port.wait_readable(Some(Duration::from_millis(5)))?;
        }
        Ok((next, dups))
    });

    let mut tx = sender_port.tx_ring(0)?;
    let mut rx = sender_port.rx_ring(0)?;
    let mut lossy = Lossy {
        state: 0x1234_5678,
        percent: loss,
    };
    let mut base = 0u64; // oldest unacknowledged
    let mut next = 0u64; // next new sequence number
    let mut sent_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let (mut transmissions, mut retransmissions, mut dropped) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while base < total {
        // Fill the window with new messages, and retransmit what timed out.
        let now = Instant::now();
        let mut to_send: Vec<u64> = sent_at
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > RTO)
            .map(|(s, _)| *s)
            .collect();
        retransmissions += to_send.len() as u64;
        while next < total && next < base + WINDOW {
            to_send.push(next);
            next += 1;
        }
        for seq in to_send {
            sent_at.insert(seq, now);
            transmissions += 1;
            if lossy.drop_it() {
                dropped += 1; // lost on the "wire"
                continue;
            }
            let mut p = seq.to_le_bytes().to_vec();
            p.extend_from_slice(format!("message {seq}").as_bytes());
            if tx.send(&p).is_err() {
                tx.sync()?;
                let _ = tx.send(&p);
            }
        }
        tx.sync()?;
        // Acks.
        rx.sync()?;
        let mut acked = false;
        for f in rx.batch(usize::MAX) {
            let ack = u64::from_le_bytes(f.payload()[..8].try_into().unwrap());
            if ack > base {
                base = ack;
                acked = true;
            }
        }
        sent_at.retain(|s, _| *s >= base);
        if !acked {
            sender_port.wait_readable(Some(Duration::from_millis(1)))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (delivered, dups) = receiver.join().expect("receiver panicked")?;
    assert_eq!(delivered, total);
    println!(
        "sliding_window_arq ok: {delivered} messages delivered in order in {secs:.2} s; \
         {transmissions} transmissions, {retransmissions} retransmissions, {dropped} dropped by \
         the injected loss, {dups} duplicates discarded"
    );
    Ok(())
}

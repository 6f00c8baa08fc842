//! Counting: shared counters, the receiver's sequence check, pacing and report lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

use crate::frames::parse_seq;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) pkts: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) reordered: AtomicU64,
    /// When the first packet was counted: a receiver's rate runs from there, as C pkt-gen's
    /// does, so time spent waiting for a sender to start is not counted.
    pub(crate) first: OnceLock<Instant>,
    /// When the last packet was counted (nanoseconds after `first`): a receiver's rate ends
    /// there.
    pub(crate) last_ns: AtomicU64,
    /// When the last worker finished, in nanoseconds after the run's `t0`: a sender's rate
    /// ends there (not when the reporting thread notices).
    pub(crate) end_ns: AtomicU64,
    /// Workers that have ended and closed their port (the reporting thread waits for all).
    pub(crate) ended: std::sync::atomic::AtomicUsize,
    /// The kernel's drop counters of each worker's port (`Netmap::stats`), by thread, as the
    /// worker last read them (`None` until then).
    pub(crate) kernel: Mutex<Vec<Option<PortStats>>>,
}

impl Stats {
    /// Notes that a worker finished now.
    pub(crate) fn finish(&self, t0: Instant) {
        self.end_ns
            .fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts one burst.
    pub(crate) fn record(&self, pkts: u64, bytes: u64) {
        if pkts > 0 {
            let first = *self.first.get_or_init(Instant::now);
            self.last_ns
                .fetch_max(first.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.pkts.fetch_add(pkts, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

impl Stats {
    /// The kernel counters of all workers' ports together, for the report line: `None`
    /// before every worker has read its port's once.
    pub(crate) fn kernel_total(&self) -> Option<PortStats> {
        let k = self.kernel.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = k.iter();
        let first = (*all.next()?)?;
        all.try_fold(first, |acc, s| Some(acc.merge(&(*s)?)))
    }
}

/// A worker's reader of its port's kernel counters: at most one `Netmap::stats` call per
/// report period (a few system calls), never on the packet path otherwise.
pub(crate) struct KernelCounters {
    every: Duration,
    last: Option<Instant>,
    thread: usize,
}

impl KernelCounters {
    pub(crate) fn new(report_ms: u64, thread: usize) -> Self {
        KernelCounters {
            every: Duration::from_millis(report_ms / 2),
            last: None,
            thread,
        }
    }

    /// Reads the counters when the period has passed (or `now` is set: at the end).
    pub(crate) fn poll(&mut self, nm: &Netmap, stats: &Stats, now: bool) {
        if !now && self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        // A backend without counters, or a read that failed, shows nothing.
        let Ok(st) = nm.stats() else { return };
        let mut k = stats.kernel.lock().unwrap_or_else(|e| e.into_inner());
        if k.len() <= self.thread {
            k.resize(self.thread + 1, None);
        }
        k[self.thread] = Some(st);
    }
}

/// The kernel counters for a report line, as `xdpsock` shows them: empty where the backend
/// has none (netmap module, emulated pipes).
pub(crate) fn kernel_part(k: Option<PortStats>) -> String {
    match k {
        Some(k) if k != PortStats::default() => format!(" | kernel: {k}"),
        _ => String::new(),
    }
}

/// Counts received frames one at a time (packets and bytes) and, with `--seq`, checks their
/// sequence numbers: for `RxRing::for_each_frame`'s callback.
pub(crate) struct Tally<'c> {
    pub(crate) k: u64,
    pub(crate) b: u64,
    check: Option<&'c mut SeqCheck>,
}

impl<'c> Tally<'c> {
    pub(crate) fn new(check: Option<&'c mut SeqCheck>) -> Self {
        Tally { k: 0, b: 0, check }
    }

    #[inline]
    pub(crate) fn see(&mut self, f: &Frame<'_>) {
        if let Some(check) = &mut self.check {
            if let Some((seq, _)) = parse_seq(f.payload()) {
                check.see(seq);
            }
        }
        self.k += 1;
        self.b += f.len() as u64;
    }
}

/// Counts a batch of received frames (packets and bytes, as C pkt-gen does) and, with
/// `--seq`, checks their sequence numbers.
#[inline]
pub(crate) fn account_rx<'a>(
    frames: impl Iterator<Item = Frame<'a>>,
    check: Option<&mut SeqCheck>,
) -> (u64, u64) {
    let (mut k, mut b) = (0u64, 0u64);
    match check {
        None => {
            for f in frames {
                k += 1;
                b += f.len() as u64;
            }
        }
        Some(check) => {
            for f in frames {
                if let Some((seq, _)) = parse_seq(f.payload()) {
                    check.see(seq);
                }
                k += 1;
                b += f.len() as u64;
            }
        }
    }
    (k, b)
}

/// Sequence checking per sender thread (the thread id is in the top 16 bits).
pub(crate) struct SeqCheck {
    pub(crate) next: Vec<u64>,
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
}

impl SeqCheck {
    pub(crate) fn new() -> Self {
        SeqCheck {
            next: vec![0; 256],
            lost: 0,
            reordered: 0,
        }
    }
    #[inline]
    pub(crate) fn see(&mut self, seq: u64) {
        let (t, n) = (((seq >> 48) & 0xff) as usize, seq & ((1 << 48) - 1));
        let exp = &mut self.next[t];
        if n == *exp {
            *exp += 1;
        } else if n > *exp {
            self.lost += n - *exp;
            *exp = n + 1;
        } else {
            self.reordered += 1;
            self.lost = self.lost.saturating_sub(1);
        }
    }
}

pub(crate) fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// Paces a sender to `rate` packets per second (0: unlimited), checked once per burst.
pub(crate) struct Pacer {
    pub(crate) rate: u64,
    pub(crate) start: Instant,
}

impl Pacer {
    pub(crate) fn pace(&self, sent: u64) {
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        let el = self.start.elapsed();
        if due > el {
            let gap = due - el;
            if gap > Duration::from_micros(200) {
                std::thread::sleep(gap);
            } else {
                while self.start.elapsed() < due {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

pub(crate) fn report_line(label: &str, pkts: u64, bytes: u64, events: u64, dt: Duration) -> String {
    let s = dt.as_secs_f64().max(1e-9);
    format!(
        "{label}: {:.3} Mpps ({} pkts {:.3} Gbps in {} usec) {:.2} avg_batch",
        pkts as f64 / s / 1e6,
        pkts,
        bytes as f64 * 8.0 / s / 1e9,
        dt.as_micros(),
        if events == 0 {
            0.0
        } else {
            pkts as f64 / events as f64
        }
    )
}

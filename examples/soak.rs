//! soak: pushes COUNT frames with sequence numbers through `Sink` → netmap pipe → `Stream`
//! with a deliberately slow receiver, and checks 0 lost, 0 reordered, 0 duplicated, with
//! bounded memory (reports peak RSS). Then measures the CPU an idle async receiver uses.
//!
//!     cargo run --release --example soak -- [COUNT] [IDLE_SECS]
//!     cargo run --release --example soak -- 100000000 5      # the full soak
//!
//! Emulated pipe when no netmap module is loaded.

use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::TokioNetmap;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_time() -> Duration {
    // SAFETY: rusage is a plain C struct of integers, for which all-zero bytes are valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage struct into the live local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args
        .next()
        .map(|s| s.parse().expect("COUNT"))
        .unwrap_or(10_000_000);
    let idle_secs: u64 = args
        .next()
        .map(|s| s.parse().expect("IDLE_SECS"))
        .unwrap_or(1);
    let a = TokioNetmap::open("soak{0").await?;
    let b = TokioNetmap::open("soak}0").await?;
    println!(
        "soak over {} ({}): {count} frames",
        a.netmap().name(),
        a.netmap().backend()
    );
    let mut tx = a.tx_ring(0)?;
    let mut rx = b.rx_ring(0)?;
    let stop = common::stop_on_signals();
    let rss_start = peak_rss_kib();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..count {
            let mut p = [0u8; 64];
            p[..8].copy_from_slice(&i.to_le_bytes());
            tx.feed(Bytes::copy_from_slice(&p)).await?;
        }
        tx.close().await?;
        Ok::<_, std::io::Error>(tx)
    });
    let (mut expect, mut lost, mut reordered, mut dup) = (0u64, 0u64, 0u64, 0u64);
    let mut max_seen = None::<u64>;
    while expect < count {
        if common::stopped(&stop) {
            // Ctrl-C or SIGTERM: report what was counted, drop the ports.
            sender.abort();
            println!(
                "soak stopped: {expect} of {count} frames received: lost {lost}, reordered \
                 {reordered}, duplicated {dup}"
            );
            return Ok(());
        }
        let f = rx.next().await.expect("stream ended")?;
        let seq = u64::from_le_bytes(f.payload()[..8].try_into()?);
        match max_seen {
            Some(m) if seq <= m => {
                if seq < expect {
                    dup += 1;
                } else {
                    reordered += 1;
                }
            }
            _ => {
                lost += seq.saturating_sub(expect);
                max_seen = Some(seq);
            }
        }
        expect = seq + 1;
        // The slow receiver: a pause every 65536 frames lets the ring fill up, so the sender
        // spends time in back-pressure.
        if seq % 65_536 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _tx = sender.await??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "soak: {count} frames in {secs:.1} s ({:.2} Mpps): lost {lost}, reordered {reordered}, \
         duplicated {dup}; peak RSS {} KiB (at start {rss_start} KiB)",
        count as f64 / secs / 1e6,
        peak_rss_kib()
    );
    assert_eq!((lost, reordered, dup), (0, 0, 0));

    // An idle receiver: no traffic for IDLE_SECS; the task must sleep in the reactor.
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let idle = tokio::time::timeout(Duration::from_secs(idle_secs), rx.next()).await;
    assert!(idle.is_err(), "nothing was sent, nothing may arrive");
    let used = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    println!(
        "idle receiver: {:.3}% of a core over {idle_secs} s",
        used * 100.0
    );
    println!("soak ok");
    Ok(())
}

//! Workers: one sender or receiver per thread, sync or through the Tokio layer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

use crate::cli::{Cfg, Func};
use crate::frames::*;
use crate::stats::*;

pub(crate) struct Job {
    pub(crate) cfg: Arc<Cfg>,
    pub(crate) func: Func,
    pub(crate) thread: usize,
    pub(crate) quota: u64,
    pub(crate) stats: Arc<Stats>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) t0: Instant,
    pub(crate) rtts: Vec<u64>,
}

pub(crate) fn run_sync(job: &mut Job, nm: &Netmap) -> Result<(), Error> {
    let cfg = job.cfg.clone();
    let stats = &job.stats;
    let mut left = if job.quota == 0 { u64::MAX } else { job.quota };
    let mut kc = KernelCounters::new(cfg.report_ms, job.thread);
    match job.func {
        Func::Tx => {
            let tpl = templates(&cfg);
            let mut tx = nm.tx_ring(0)?;
            let pacer = Pacer {
                rate: cfg.rate / cfg.threads as u64,
                start: Instant::now(),
            };
            let base = (job.thread as u64) << 48;
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ job.thread as u64);
            let mut n = 0u64;
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                kc.poll(nm, stats, false);
                let space = tx.space();
                if space == 0 {
                    // The last sync published everything: one poll (which syncs) waits.
                    peer_notice(nm, &cfg, job.t0);
                    nm.wait_writable(Some(Duration::from_millis(100)))?;
                    continue;
                }
                let k = space
                    .min(cfg.burst)
                    .min(left.min(usize::MAX as u64) as usize);
                let mut r = tx.reserve_batch(k)?;
                let len = fill_burst(&mut r, &tpl, &cfg, base, n, job.t0, &mut rng)?;
                r.commit();
                tx.sync()?;
                n += k as u64;
                left -= k as u64;
                stats.record(k as u64, (k * len) as u64);
                pacer.pace(n);
            }
            // As C pkt-gen does: sync until the kernel has sent everything (all slots free
            // again), or closing the port could drop what is still queued (AF_XDP and
            // AF_PACKET transmit from a sync, not on their own). Pipes drain only as their
            // reader reads, which may never happen: not waited for.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !nm.spec().is_pipe() && tx.space() + 1 < tx.num_slots() {
                if Instant::now() > deadline {
                    eprintln!(
                        "pkt_gen: {} packets still queued at exit",
                        tx.num_slots() - 1 - tx.space()
                    );
                    break;
                }
                tx.sync()?;
                std::thread::sleep(Duration::from_micros(100));
            }
            kc.poll(nm, stats, true);
        }
        Func::Rx => {
            // Every ring of the port, as C pkt-gen reads them in its one thread: a
            // multi-queue port (`xdp:eth0`) has a ring per queue and the kernel spreads
            // flows over them.
            let mut rings = all_rx_rings(nm)?;
            let mut check = cfg.seq.then(SeqCheck::new);
            let idle = Duration::from_millis(if cfg.idle_exit { 1000 } else { 100 });
            while cfg.each && left > 0 && !job.stop.load(Ordering::Relaxed) {
                // RxRing::for_each_frame: frames lent for one call each (read in place on
                // afpacket:); a single ring waits in the call itself, on its socket alone.
                kc.poll(nm, stats, false);
                let one = rings.len() == 1;
                let mut seen = 0;
                for rx in &mut rings {
                    let mut t = Tally::new(check.as_mut());
                    let want = cfg.burst.min(left.min(usize::MAX as u64) as usize);
                    rx.for_each_frame(want, Some(if one { idle } else { Duration::ZERO }), |f| {
                        t.see(&f)
                    })?;
                    if t.k > 0 {
                        left = left.saturating_sub(t.k);
                        seen += t.k;
                        stats.record(t.k, t.b);
                    }
                }
                let idle_now = seen == 0 && (one || !nm.wait_readable(Some(idle))?);
                if idle_now && cfg.idle_exit && stats.first.get().is_some() {
                    break;
                }
                if seen == 0 {
                    peer_notice(nm, &cfg, job.t0);
                }
            }
            while !cfg.each && left > 0 && !job.stop.load(Ordering::Relaxed) {
                kc.poll(nm, stats, false);
                let mut seen = 0;
                for rx in &mut rings {
                    if left == 0 {
                        break;
                    }
                    let (k, b) = account_rx(rx.batch(cfg.burst.min(left as usize)), check.as_mut());
                    if k > 0 {
                        left -= k;
                        seen += k;
                        stats.record(k, b);
                        rx.sync()?;
                    }
                }
                if seen == 0 {
                    // Everything consumed was released by the last syncs: one poll (which
                    // syncs every ring) waits, as in C pkt-gen.
                    peer_notice(nm, &cfg, job.t0);
                    if !nm.wait_readable(Some(idle))?
                        && cfg.idle_exit
                        && stats.first.get().is_some()
                    {
                        break;
                    }
                }
            }
            for rx in &mut rings {
                rx.sync()?;
            }
            kc.poll(nm, stats, true);
            if let Some(check) = check {
                stats.lost.fetch_add(check.lost, Ordering::Relaxed);
                stats
                    .reordered
                    .fetch_add(check.reordered, Ordering::Relaxed);
            }
        }
        Func::Ping => {
            let tpl = templates(&cfg);
            let mut tx = nm.tx_ring(0)?;
            // The reply may come on any queue of a multi-queue port.
            let mut rings = all_rx_rings(nm)?;
            let mut seq = 0u64;
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                let mut r = tx.reserve_batch(1)?;
                fill(r.packet(0, cfg.len)?, &tpl[0], seq, now_ns(job.t0));
                r.commit();
                tx.sync()?;
                let mut spins = 0u32;
                'reply: loop {
                    for rx in &mut rings {
                        rx.sync()?;
                        while let Some(f) = rx.recv() {
                            if let Some((s, ts)) = parse_seq(f.payload()) {
                                if s == seq {
                                    job.rtts.push(now_ns(job.t0) - ts);
                                    break 'reply;
                                }
                            }
                        }
                    }
                    if job.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    // Spin briefly (latency), then sleep in poll (CPU).
                    spins += 1;
                    if spins > 2000 {
                        nm.wait_readable(Some(Duration::from_millis(100)))?;
                    }
                }
                seq += 1;
                left -= 1;
                stats.record(1, cfg.len as u64);
            }
        }
        Func::Pong => {
            let mut tx = nm.tx_ring(0)?;
            let mut rings = all_rx_rings(nm)?;
            let mut idle = 0u32;
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                let mut k = 0u64;
                for rx in &mut rings {
                    rx.sync()?;
                    while let Some(f) = rx.recv() {
                        if tx.send(f.payload()).is_err() {
                            tx.sync()?;
                            break;
                        }
                        k += 1;
                    }
                }
                tx.sync()?;
                idle = if k == 0 { idle + 1 } else { 0 };
                if idle > 2000 {
                    nm.wait_readable(Some(Duration::from_millis(100)))?;
                }
                left = left.saturating_sub(k);
                stats.pkts.fetch_add(k, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

pub(crate) fn run_async(job: &mut Job, port: Netmap) -> Result<(), Error> {
    use netmap_rs::tokio_async::TokioNetmap;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    let cfg = job.cfg.clone();
    rt.block_on(async {
        let nm = TokioNetmap::new(port)?;
        let stats = job.stats.clone();
        let mut left = if job.quota == 0 { u64::MAX } else { job.quota };
        let mut kc = KernelCounters::new(cfg.report_ms, job.thread);
        match job.func {
            Func::Tx => {
                let tpl = templates(&cfg);
                let mut tx = nm.tx_ring(0)?;
                let base = (job.thread as u64) << 48;
                let mut n = 0u64;
                let pacer = Pacer {
                    rate: cfg.rate / cfg.threads as u64,
                    start: Instant::now(),
                };
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ job.thread as u64);
                while left > 0 && !job.stop.load(Ordering::Relaxed) {
                    kc.poll(nm.netmap(), &stats, false);
                    let want = cfg.burst.min(left.min(usize::MAX as u64) as usize);
                    // What fits, up to a burst, as the sync path and C pkt-gen send.
                    let mut r = match tokio::time::timeout(IDLE, tx.reserve_up_to(want)).await {
                        Ok(r) => r?,
                        Err(_) => {
                            peer_notice(nm.netmap(), &cfg, job.t0);
                            continue;
                        }
                    };
                    let k = r.len();
                    let len = fill_burst(&mut r, &tpl, &cfg, base, n, job.t0, &mut rng)?;
                    r.commit();
                    tx.flush_ring().await?;
                    n += k as u64;
                    left -= k as u64;
                    stats.record(k as u64, (k * len) as u64);
                    pacer.pace(n);
                }
                // Wait for the kernel to have sent everything (see run_sync).
                let pipe = nm.netmap().spec().is_pipe();
                let deadline = Instant::now() + Duration::from_secs(2);
                while !pipe && tx.get_mut().space() + 1 < tx.get_ref().num_slots() {
                    if Instant::now() > deadline {
                        break;
                    }
                    tx.get_mut().sync()?;
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                kc.poll(nm.netmap(), &stats, true);
            }
            Func::Rx => {
                // Every ring of the port from this one task, fairly (see run_sync).
                let mut rx = nm.rx_port()?;
                let mut check = cfg.seq.then(SeqCheck::new);
                while left > 0 && !job.stop.load(Ordering::Relaxed) {
                    kc.poll(nm.netmap(), &stats, false);
                    let want = cfg.burst.min(left as usize);
                    let idle_exit = cfg.idle_exit && stats.first.get().is_some();
                    let limit = if idle_exit {
                        Duration::from_secs(1)
                    } else {
                        IDLE
                    };
                    let batch = match tokio::time::timeout(limit, rx.recv_batch(want)).await {
                        Ok(b) => b?,
                        Err(_) if idle_exit => break,
                        Err(_) => {
                            peer_notice(nm.netmap(), &cfg, job.t0);
                            continue;
                        }
                    };
                    let (k, b) = account_rx(batch, check.as_mut());
                    left -= k;
                    stats.record(k, b);
                }
                for r in rx.rings_mut() {
                    r.get_mut().sync()?;
                }
                kc.poll(nm.netmap(), &stats, true);
                if let Some(check) = check {
                    stats.lost.fetch_add(check.lost, Ordering::Relaxed);
                    stats
                        .reordered
                        .fetch_add(check.reordered, Ordering::Relaxed);
                }
            }
            Func::Ping | Func::Pong => {
                return Err(Error::Io(std::io::Error::other(
                    "--async is implemented for -f tx and -f rx; run ping/pong without --async",
                )))
            }
        }
        Ok::<(), Error>(())
    })
}

/// Every RX ring of the port (one per queue on a multi-queue `xdp:` port).
fn all_rx_rings(nm: &Netmap) -> Result<Vec<RxRing>, Error> {
    (0..nm.num_rx_rings()).map(|i| nm.rx_ring(i)).collect()
}

/// How long an async wait runs before checking for a missing peer.
pub(crate) const IDLE: Duration = Duration::from_millis(250);

/// Says once, after a second of waiting, that nobody has the other end of the pipe open:
/// normal for netmap (the peer may come later), but worth knowing.
pub(crate) fn peer_notice(nm: &Netmap, cfg: &Cfg, since: Instant) {
    // Set once said, or once the peer was seen: nothing more to check.
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Relaxed) || since.elapsed() < Duration::from_secs(1) {
        return;
    }
    match (nm.peer_present(), peer_name(&cfg.port)) {
        (Some(false), Some(peer)) => {
            if !DONE.swap(true, Ordering::Relaxed) {
                println!("no peer on {peer} yet: waiting for it (start it in another terminal)");
            }
        }
        _ => DONE.store(true, Ordering::Relaxed),
    }
}

pub(crate) fn peer_name(name: &str) -> Option<String> {
    if name.contains('{') {
        Some(name.replacen('{', "}", 1))
    } else if name.contains('}') {
        Some(name.replacen('}', "{", 1))
    } else {
        None
    }
}

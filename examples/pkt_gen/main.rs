//! pkt_gen: netmap's `pkt-gen` packet generator and sink, on the public netmap-rs API.
//!
//! ```text
//! pkt_gen -i PORT -f tx|rx|ping|pong [-l LEN] [-n COUNT] [-b BURST] [-w WAIT] [-T MS]
//!         [-R RATE] [-p THREADS] [-d IP[-IP][:PORT[-PORT]]] [-s ...] [-D MAC] [-S MAC]
//!         [-W] [-z] [-Z] [--seq] [--async] [--both] [--slots N] [--huge] [--busy]
//!         [-a CPU] [--block-timeout MS] [--each]
//! ```
//!
//! - By default the work per packet is C `pkt-gen`'s: `tx` copies a prepared Ethernet/IPv4/UDP
//!   frame (checksums right) into the slot when the slot's buffer may hold something else
//!   (`BatchReservation::fill_reused`: first lap, or `NS_BUF_CHANGED`), else only sets the
//!   length; `rx` counts packets and bytes without reading the payload. `--seq` adds what C `pkt-gen` cannot do: `tx` stamps a sequence number and a
//!   timestamp into every frame (UDP checksum updated incrementally) and `rx` counts lost and
//!   reordered packets (it cannot tell a loss from a reorder otherwise); see README for its
//!   cost per packet. `ping`/`pong` measure round-trip latency (min/avg/max and percentiles).
//! - Options as in C `pkt-gen`: `-l` frame length (given twice, `-l MAX -l MIN`: a random
//!   length in `[MIN, MAX)` per burst, headers as for MAX), `-n` packets (0: forever), `-b`
//!   slots per sync (default 512), `-w` seconds to wait before starting (default 2 on a NIC,
//!   0 on VALE and pipes), `-W` a receiver exits after 1 s without traffic, `-R` packets per
//!   second (bursts cut to rate/300, as C does), `-p` one fd per ring and one thread each,
//!   `-z`/`-Z` random source/destination address and port per packet, `-d`/`-s`/`-D`/`-S`
//!   addresses. `--async` does the same work through the Tokio layer (to compare both paths).
//! - Each thread receives from every RX ring of the port it opened, as C `pkt-gen` does: on
//!   `xdp:eth0` (a ring per queue) one thread counts what the kernel spread over all queues
//!   (`--async`: the Tokio layer's `TokioNetmap::rx_port`). `-p N` opens a port per ring
//!   instead, one thread each.
//! - `--block-timeout MS` sets an `afpacket:` port's RX block retire timeout
//!   (`NetmapBuilder::block_timeout`; 0: `TPACKET_V2` frames, one wake-up per packet).
//! - `--each` makes `-f rx` read with `RxRing::for_each_frame`, each frame lent for one call:
//!   on `afpacket:` read in place in the kernel's ring, with no copy into a slot (without it,
//!   `batch` + `sync` + `wait_readable`).
//! - `-a CPU` pins thread `i` to CPU `CPU + i` (C `pkt-gen -a`): a busy poller on a core of
//!   its own, as DPDK's lcores run.
//! - `--huge` puts the port's memory on huge pages (`NetmapBuilder::huge_pages`; AF_XDP and
//!   AF_PACKET, ordinary pages with a log line when none are reserved).
//! - `--both` (pipes only) also runs the opposite function on the other end of the pipe in
//!   this process, so the tool is self-contained on the emulated backend.
//!
//! Real netmap (module loaded, as root), two terminals:
//!     pkt_gen -i 'netmap:pipe{1' -f rx          # or -i netmap:eth0
//!     pkt_gen -i 'netmap:pipe}1' -f tx -l 60 -b 512
//! Stock Linux without the module (as root), AF_XDP or AF_PACKET on a real interface:
//!     pkt_gen -i xdp:eth0 -f rx -p 4             # one thread per queue; xdp:eth0-2 is queue 2
//!     pkt_gen -i afpacket:eth0 -f tx -D MAC -S MAC -d IP:PORT -s IP:PORT
//! Emulated (no module), two terminals, as on real netmap (the pipe's memory is handed from
//! process to process; a side alone says `no peer on <other end> yet` once, after a second):
//!     cargo run --release --example pkt_gen -- -i 'pipe}1' -f rx -n 10000000
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f tx -n 10000000
//! or self-contained in one process:
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f tx -n 10000000 --both
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f ping -n 100000 --both
//!
//! The report line ends with the kernel's drop counters (`Netmap::stats`), as `xdpsock`
//! prints them, on the backends that count (AF_XDP, AF_PACKET): a receiver that loses
//! packets says so (`rx_ring_full`, `rx_dropped`, ...), and a final `Kernel counters:` line
//! gives the totals.
//!
//! The per-packet path does no allocation, formatting or system call: frames are filled in
//! place from precomputed templates (`BatchReservation::fill`), one sync per burst, and a wait
//! for room or packets is one `poll` (the sync path) as in C `pkt-gen`.

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod frames;
mod jobs;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

use cli::{parse_args, Cfg, Func};
use jobs::{peer_name, run_async, run_sync, Job};
use stats::{kernel_part, report_line, Stats};

fn open_ports(cfg: &Cfg, name: &str) -> Result<Vec<Netmap>, Error> {
    let mut b = NetmapBuilder::new(name)
        .num_tx_rings(cfg.threads)
        .num_rx_rings(cfg.threads)
        .num_slots(cfg.slots)
        .huge_pages(cfg.huge);
    if let Some(ms) = cfg.block_timeout_ms {
        b = b.block_timeout(Duration::from_millis(ms));
    }
    if cfg.busy {
        b = b.busy_poll(Duration::MAX);
    }
    if cfg.threads == 1 {
        return Ok(vec![b.build()?]);
    }
    let mut ports = b.build_per_ring()?;
    if ports.len() < cfg.threads {
        return Err(Error::BindFail(format!(
            "{name} has {} rings, {} threads asked for",
            ports.len(),
            cfg.threads
        )));
    }
    ports.truncate(cfg.threads);
    Ok(ports)
}

fn spawn_jobs(
    cfg: &Arc<Cfg>,
    func: Func,
    ports: Vec<Netmap>,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    t0: Instant,
) -> Vec<std::thread::JoinHandle<Result<Vec<u64>, Error>>> {
    let nthreads = ports.len() as u64;
    // The main thread sleeps until the next report or until a job ends (it unparks it).
    let main = std::thread::current();
    stats
        .kernel
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .resize(ports.len(), None);
    ports
        .into_iter()
        .enumerate()
        .map(|(i, port)| {
            let quota = if cfg.count == 0 {
                0
            } else {
                cfg.count / nthreads + u64::from((i as u64) < cfg.count % nthreads)
            };
            let mut job = Job {
                cfg: cfg.clone(),
                func,
                thread: i,
                quota,
                stats: stats.clone(),
                stop: stop.clone(),
                t0,
                rtts: Vec::with_capacity(if func == Func::Ping {
                    quota as usize
                } else {
                    0
                }),
            };
            let main = main.clone();
            std::thread::spawn(move || {
                if let Some(cpu) = job.cfg.cpu {
                    pin_to(cpu + i);
                }
                let r = if job.cfg.async_mode {
                    let r = run_async(&mut job, port);
                    job.stats.finish(job.t0);
                    r
                } else {
                    let r = run_sync(&mut job, &port);
                    job.stats.finish(job.t0);
                    drop(port);
                    r
                };
                job.stats.ended.fetch_add(1, Ordering::Release);
                main.unpark();
                r.map(|()| job.rtts)
            })
        })
        .collect()
}

/// Runs the calling thread on `cpu` only; says so and goes on unpinned if the kernel refuses.
#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        eprintln!("pkt_gen: -a: no CPU {cpu}; running unpinned");
        return;
    }
    // SAFETY: cpu_set_t is a plain bit array, valid all-zero; CPU_SET writes bit `cpu`
    // (checked against CPU_SETSIZE above) of the set we own, and sched_setaffinity only reads
    // `size_of::<cpu_set_t>()` bytes of it.
    let r = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r != 0 {
        eprintln!(
            "pkt_gen: -a: cannot run on CPU {cpu} ({}); running unpinned",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to(cpu: usize) {
    eprintln!("pkt_gen: -a {cpu}: pinning is implemented on Linux only; running unpinned");
}

fn main() {
    let cfg = Arc::new(parse_args());
    if let Err(e) = run(cfg) {
        eprintln!("pkt_gen: {e}");
        std::process::exit(1);
    }
}

fn run(cfg: Arc<Cfg>) -> Result<(), Error> {
    let ports = open_ports(&cfg, &cfg.port)?;
    let backend = ports[0].backend();
    println!(
        "pkt_gen {:?} on {} ({backend}), {} thread(s), len {}, burst {}{}",
        cfg.func,
        ports[0].name(),
        cfg.threads,
        cfg.len,
        cfg.burst,
        if cfg.async_mode {
            ", async (Tokio)"
        } else {
            ""
        }
    );
    // Ctrl-C or SIGTERM stops the workers; the totals are printed as at a normal end.
    let stop = common::stop_on_signals();
    let t0 = Instant::now();
    // The opposite function on the other pipe end, in-process.
    let mut peer_handles = Vec::new();
    let peer_stats = Arc::new(Stats::default());
    if cfg.both {
        let name = peer_name(&cfg.port)
            .ok_or_else(|| Error::BindFail("--both needs a pipe name (x{N or x}N)".into()))?;
        let peer_ports = open_ports(&cfg, &name)?;
        let peer_func = match cfg.func {
            Func::Tx => Func::Rx,
            Func::Rx => Func::Tx,
            Func::Ping => Func::Pong,
            Func::Pong => Func::Ping,
        };
        let mut peer_cfg = (*cfg).clone();
        peer_cfg.rate = 0;
        // `-a`: the peer's threads on the CPUs after the main jobs' ones.
        peer_cfg.cpu = cfg.cpu.map(|c| c + cfg.threads);
        peer_handles = spawn_jobs(
            &Arc::new(peer_cfg),
            peer_func,
            peer_ports,
            &peer_stats,
            &stop,
            t0,
        );
    }
    if cfg.wait > 0.0 {
        println!("Wait {} secs for link up...", cfg.wait);
        std::thread::sleep(Duration::from_secs_f64(cfg.wait));
    }
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let handles = spawn_jobs(&cfg, cfg.func, ports, &stats, &stop, t0);
    let label = match cfg.func {
        Func::Tx => "tx",
        Func::Rx => "rx",
        Func::Ping => "ping",
        Func::Pong => "pong",
    };
    let (mut last_p, mut last_b, mut last_e, mut last_t) = (0, 0, 0, Instant::now());
    let every = Duration::from_millis(cfg.report_ms);
    // Until every job has closed its port (or ended otherwise: a panic).
    while stats.ended.load(Ordering::Acquire) < handles.len()
        && !handles.iter().all(|h| h.is_finished())
    {
        // Few wake-ups: a receiver's CPU figures count this thread too.
        std::thread::park_timeout(every.saturating_sub(last_t.elapsed()));
        if last_t.elapsed() >= every {
            let (p, b, e) = (
                stats.pkts.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.events.load(Ordering::Relaxed),
            );
            println!(
                "{}{}",
                report_line(label, p - last_p, b - last_b, e - last_e, last_t.elapsed()),
                kernel_part(stats.kernel_total())
            );
            (last_p, last_b, last_e, last_t) = (p, b, e, Instant::now());
        }
    }
    let elapsed = match (cfg.func, stats.first.get()) {
        (Func::Rx, Some(_)) => Duration::from_nanos(stats.last_ns.load(Ordering::Relaxed)),
        _ => Duration::from_nanos(stats.end_ns.load(Ordering::Relaxed))
            .saturating_sub(start.duration_since(t0)),
    };
    let mut rtts = Vec::new();
    for h in handles {
        rtts.extend(h.join().expect("worker panicked")?);
    }
    if cfg.func == Func::Pong || cfg.count == 0 {
        stop.store(true, Ordering::Relaxed);
    }
    for h in peer_handles {
        rtts.extend(h.join().expect("peer worker panicked")?);
    }
    stop.store(true, Ordering::Relaxed);
    let (p, b, e) = (
        stats.pkts.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed),
        stats.events.load(Ordering::Relaxed),
    );
    let secs = elapsed.as_secs_f64().max(1e-9);
    let verb = match cfg.func {
        Func::Tx => "Sent",
        Func::Rx => "Received",
        Func::Ping => "Pinged",
        Func::Pong => "Answered",
    };
    println!(
        "{verb} {p} packets {b} bytes {e} events {} bytes each in {secs:.2} seconds.",
        cfg.len
    );
    println!(
        "Speed: {:.3} Mpps Bandwidth: {:.3} Gbps (raw {:.3} Gbps)",
        p as f64 / secs / 1e6,
        b as f64 * 8.0 / secs / 1e9,
        (b + p * 24) as f64 * 8.0 / secs / 1e9
    );
    let rx_stats = if cfg.func == Func::Rx {
        &stats
    } else {
        &peer_stats
    };
    if cfg.seq && (cfg.func == Func::Rx || (cfg.both && cfg.func == Func::Tx)) {
        println!(
            "Received {} packets: lost {} reordered {}",
            rx_stats.pkts.load(Ordering::Relaxed),
            rx_stats.lost.load(Ordering::Relaxed),
            rx_stats.reordered.load(Ordering::Relaxed)
        );
    }
    // The kernel's drop counters over the run, where the backend has them (AF_XDP,
    // AF_PACKET), as `xdpsock` prints them.
    if let Some(k) = stats.kernel_total().filter(|k| *k != PortStats::default()) {
        println!("Kernel counters: {k}");
    }
    if !rtts.is_empty() {
        rtts.sort_unstable();
        let pct = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize] as f64 / 1e3;
        let avg = rtts.iter().sum::<u64>() as f64 / rtts.len() as f64 / 1e3;
        println!(
            "RTT usec: min {:.2} avg {avg:.2} max {:.2} p50 {:.2} p90 {:.2} p99 {:.2} ({} samples)",
            pct(0.0),
            pct(1.0),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            rtts.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::*;
    use crate::frames::*;
    use crate::stats::*;

    #[test]
    fn frames_have_valid_checksums() {
        let mut c = parse_cfg_for_test();
        c.len = 60;
        for t in templates(&c) {
            let mut buf = vec![0u8; c.len];
            fill(&mut buf, &t, 0xdead_beef, 12345);
            assert_eq!(fold(sum16(&buf[14..34])), 0xffff, "IPv4 header checksum");
            let udp_len = (c.len - 34) as u32;
            let s = sum16(&buf[26..30]) + sum16(&buf[30..34]) + 17 + udp_len + sum16(&buf[34..]);
            assert_eq!(fold(s), 0xffff, "UDP checksum with pseudo-header");
            assert_eq!(parse_seq(&buf), Some((0xdead_beef, 12345)));
            // Random addresses and ports keep both checksums right.
            let mut rng = Rng(7);
            for (src, dst) in [(true, false), (false, true), (true, true)] {
                randomize(&mut buf, &mut rng, src, dst);
                assert_eq!(fold(sum16(&buf[14..34])), 0xffff, "IPv4 header checksum");
                let s =
                    sum16(&buf[26..30]) + sum16(&buf[30..34]) + 17 + udp_len + sum16(&buf[34..]);
                assert_eq!(fold(s), 0xffff, "UDP checksum after randomize");
            }
        }
    }

    fn parse_cfg_for_test() -> Cfg {
        Cfg {
            port: "x{0".into(),
            burst: 1,
            dst: parse_range("10.0.0.2-10.0.0.3:1000-1001"),
            src: parse_range("10.0.0.1:99"),
            ..Cfg::default()
        }
    }

    #[test]
    fn sequence_check_counts_loss_and_reorder() {
        let mut s = SeqCheck::new();
        for n in [0, 1, 3, 2, 4] {
            s.see(n);
        }
        assert_eq!((s.lost, s.reordered), (0, 1));
        s.see(10);
        assert_eq!(s.lost, 5);
    }
}

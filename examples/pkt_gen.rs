//! pkt_gen: netmap's `pkt-gen` packet generator and sink, on the public netmap-rs API.
//!
//! ```text
//! pkt_gen -i PORT -f tx|rx|ping|pong [-l LEN] [-n COUNT] [-b BURST] [-w WAIT] [-T MS]
//!         [-R RATE] [-p THREADS] [-d IP[-IP][:PORT[-PORT]]] [-s ...] [-D MAC] [-S MAC]
//!         [-W] [-z] [-Z] [--seq] [--async] [--both] [--slots N]
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
//! - `--both` (pipes only) also runs the opposite function on the other end of the pipe in
//!   this process, so the tool is self-contained on the emulated backend.
//!
//! Real netmap (module loaded, as root), two terminals:
//!     pkt_gen -i 'netmap:pipe{1' -f rx          # or -i netmap:eth0
//!     pkt_gen -i 'netmap:pipe}1' -f tx -l 60 -b 512
//! Stock Linux without the module (as root), AF_XDP or AF_PACKET on a real interface:
//!     pkt_gen -i xdp:eth0 -f rx -p 4             # one thread per queue; xdp:eth0-2 is queue 2
//!     pkt_gen -i afpacket:eth0 -f tx -D MAC -S MAC -d IP:PORT -s IP:PORT
//! Emulated (no module), two terminals, as on real netmap (the pipe is shared through
//! /dev/shm; a side alone says `no peer on <other end> yet` once, after a second):
//!     cargo run --release --example pkt_gen -- -i 'pipe}1' -f rx -n 10000000
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f tx -n 10000000
//! or self-contained in one process:
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f tx -n 10000000 --both
//!     cargo run --release --example pkt_gen -- -i 'pipe{1' -f ping -n 100000 --both
//!
//! The per-packet path does no allocation, formatting or system call: frames are filled in
//! place from precomputed templates (`BatchReservation::fill`), one sync per burst, and a wait
//! for room or packets is one `poll` (the sync path) as in C `pkt-gen`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

const MAGIC: u16 = 0x4e4d; // "NM"
const HDR: usize = 42; // Ethernet + IPv4 + UDP
const OFF_MAGIC: usize = HDR;
const OFF_SEQ: usize = HDR + 2;
const OFF_TS: usize = HDR + 10;
const MIN_LEN: usize = HDR + 18;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Tx,
    Rx,
    Ping,
    Pong,
}

#[derive(Debug, Clone)]
struct Range {
    ip: (Ipv4Addr, Ipv4Addr),
    port: (u16, u16),
}

#[derive(Debug, Clone)]
struct Cfg {
    port: String,
    func: Func,
    len: usize,
    count: u64,
    burst: usize,
    wait: f64,
    report_ms: u64,
    rate: u64,
    threads: usize,
    dst: Range,
    src: Range,
    dmac: [u8; 6],
    smac: [u8; 6],
    async_mode: bool,
    both: bool,
    slots: u32,
    /// `-W`: a receiver exits after 1 s without traffic (once the first packet came).
    idle_exit: bool,
    /// Second `-l`: random lengths in `[len_min, len)` (0: fixed length).
    len_min: usize,
    /// `--seq`: sequence numbers and timestamps, checked by the receiver.
    seq: bool,
    /// `-z` / `-Z`: random source / destination address and port per packet.
    rand_src: bool,
    rand_dst: bool,
}

fn die(msg: &str) -> ! {
    eprintln!("pkt_gen: {msg}");
    eprintln!(
        "usage: pkt_gen -i PORT -f tx|rx|ping|pong [-l LEN] [-n COUNT] [-b BURST] [-w WAIT] \
         [-T MS] [-R RATE] [-p THREADS] [-d IP[-IP][:PORT[-PORT]]] [-s ...] [-D MAC] [-S MAC] \
         [-W] [-z] [-Z] [--seq] [--async] [--both] [--slots N]"
    );
    std::process::exit(2)
}

fn parse_range(s: &str) -> Range {
    let (ips, ports) = s.split_once(':').unwrap_or((s, "1234"));
    let ip = |t: &str| {
        t.parse::<Ipv4Addr>()
            .unwrap_or_else(|_| die(&format!("bad IP {t}")))
    };
    let port = |t: &str| {
        t.parse::<u16>()
            .unwrap_or_else(|_| die(&format!("bad port {t}")))
    };
    let ip = match ips.split_once('-') {
        Some((a, b)) => (ip(a), ip(b)),
        None => (ip(ips), ip(ips)),
    };
    let port = match ports.split_once('-') {
        Some((a, b)) => (port(a), port(b)),
        None => (port(ports), port(ports)),
    };
    if u32::from(ip.0) > u32::from(ip.1) || port.0 > port.1 {
        die(&format!("empty range {s}"));
    }
    Range { ip, port }
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap_or_else(|_| die(&format!("bad MAC {s}"))))
        .collect();
    v.try_into()
        .unwrap_or_else(|_| die(&format!("bad MAC {s}")))
}

fn parse_args() -> Cfg {
    let mut c = Cfg {
        port: String::new(),
        func: Func::Tx,
        len: 60,
        count: 0,
        burst: 512,
        wait: 0.0,
        report_ms: 1000,
        rate: 0,
        threads: 1,
        dst: parse_range("10.0.0.2:1234"),
        src: parse_range("10.0.0.1:1234"),
        dmac: [0xff; 6],
        smac: [0x02, 0, 0, 0, 0, 1],
        async_mode: false,
        both: false,
        slots: 0,
        idle_exit: false,
        len_min: 0,
        seq: false,
        rand_src: false,
        rand_dst: false,
    };
    let (mut len_seen, mut wait_seen) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        let num = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("bad number {v}")))
        };
        match a.as_str() {
            "-i" => c.port = val(),
            "-f" => {
                c.func = match val().as_str() {
                    "tx" => Func::Tx,
                    "rx" => Func::Rx,
                    "ping" => Func::Ping,
                    "pong" => Func::Pong,
                    f => die(&format!("unknown function {f}")),
                }
            }
            "-l" if len_seen => c.len_min = num(val()) as usize,
            "-l" => {
                c.len = num(val()) as usize;
                len_seen = true;
            }
            "-n" => c.count = num(val()),
            "-b" => c.burst = num(val()).max(1) as usize,
            "-w" => {
                c.wait = val().parse().unwrap_or_else(|_| die("bad -w"));
                wait_seen = true;
            }
            "-T" => c.report_ms = num(val()).max(10),
            "-R" => c.rate = num(val()),
            "-p" => c.threads = num(val()).max(1) as usize,
            "-d" => c.dst = parse_range(&val()),
            "-s" => c.src = parse_range(&val()),
            "-D" => c.dmac = parse_mac(&val()),
            "-S" => c.smac = parse_mac(&val()),
            "--async" => c.async_mode = true,
            "--both" => c.both = true,
            "--slots" => c.slots = num(val()) as u32,
            "-W" => c.idle_exit = true,
            "-z" => c.rand_src = true,
            "-Z" => c.rand_dst = true,
            "--seq" => c.seq = true,
            _ => die(&format!("unknown option {a}")),
        }
    }
    if c.port.is_empty() {
        die("-i PORT is required");
    }
    // ping and pong carry a sequence number and a timestamp in every frame.
    let stamped = c.seq || matches!(c.func, Func::Ping | Func::Pong);
    let min = if stamped { MIN_LEN } else { HDR };
    if c.len < min || (c.len_min > 0 && (c.len_min < min || c.len_min >= c.len)) {
        die(&format!(
            "-l must be at least {min} (headers{}), a second -l below the first",
            if stamped { " and sequence number" } else { "" }
        ));
    }
    // C pkt-gen waits 2 s for the link unless told otherwise, 0 on VALE; pipes have no link.
    if !wait_seen && !c.port.contains(['{', '}']) && !c.port.starts_with("vale") {
        c.wait = 2.0;
    }
    if c.rate > 0 {
        c.burst = c.burst.min((c.rate / 300).max(1) as usize);
    }
    c
}

// ---- frames -------------------------------------------------------------------------------

fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A frame for one (src, dst) pair, with the UDP checksum's partial sum precomputed over
/// everything but the sequence number and timestamp (zero in the template).
struct Template {
    bytes: Vec<u8>,
    udp_sum: u32,
}

fn templates(c: &Cfg) -> Vec<Template> {
    let mut out = Vec::new();
    let ips = |r: &Range| (u32::from(r.ip.0)..=u32::from(r.ip.1)).map(Ipv4Addr::from);
    'outer: for sip in ips(&c.src) {
        for dip in ips(&c.dst) {
            for sp in c.src.port.0..=c.src.port.1 {
                for dp in c.dst.port.0..=c.dst.port.1 {
                    out.push(template(c, sip, dip, sp, dp));
                    if out.len() >= 4096 {
                        break 'outer;
                    }
                }
            }
        }
    }
    out
}

fn template(c: &Cfg, sip: Ipv4Addr, dip: Ipv4Addr, sp: u16, dp: u16) -> Template {
    let mut f = vec![0u8; c.len];
    f[0..6].copy_from_slice(&c.dmac);
    f[6..12].copy_from_slice(&c.smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (c.len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip.octets());
    ip[16..20].copy_from_slice(&dip.octets());
    let ck = !fold(sum16(ip));
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let udp_len = (c.len - 34) as u16;
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f[OFF_MAGIC..OFF_MAGIC + 2].copy_from_slice(&MAGIC.to_be_bytes());
    for (i, b) in f[OFF_TS + 8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // Pseudo-header + UDP header + payload, checksum field zero.
    let mut s = sum16(&sip.octets()) + sum16(&dip.octets()) + 17 + udp_len as u32;
    s += sum16(&f[34..]);
    Template {
        bytes: f,
        udp_sum: s,
    }
}

/// Fills `buf` (exactly `len` bytes) from the template with this sequence number and
/// timestamp, fixing the UDP checksum incrementally. No allocation, no system call.
#[inline(always)]
fn fill(buf: &mut [u8], t: &Template, seq: u64, ts: u64) {
    buf.copy_from_slice(&t.bytes[..buf.len()]);
    buf[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
    buf[OFF_TS..OFF_TS + 8].copy_from_slice(&ts.to_be_bytes());
    // The 16-bit words of the two big-endian numbers, summed straight from the values.
    let words = |v: u64| (v >> 48) + ((v >> 32) & 0xffff) + ((v >> 16) & 0xffff) + (v & 0xffff);
    let s = t.udp_sum + (words(seq) + words(ts)) as u32;
    let mut ck = !fold(s);
    if ck == 0 {
        ck = 0xffff;
    }
    buf[40..42].copy_from_slice(&ck.to_be_bytes());
}

fn parse_seq(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() < MIN_LEN || p[OFF_MAGIC..OFF_MAGIC + 2] != MAGIC.to_be_bytes() {
        return None;
    }
    let seq = u64::from_be_bytes(p[OFF_SEQ..OFF_SEQ + 8].try_into().ok()?);
    let ts = u64::from_be_bytes(p[OFF_TS..OFF_TS + 8].try_into().ok()?);
    Some((seq, ts))
}

/// xorshift64: the random addresses of `-z`/`-Z` and lengths of a second `-l`.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes a random source (`src`) and/or destination address and port into a filled frame,
/// fixing the IPv4 header checksum and, incrementally, the UDP checksum.
fn randomize(buf: &mut [u8], rng: &mut Rng, src: bool, dst: bool) {
    fn word(b: &[u8], off: usize) -> u32 {
        u16::from_be_bytes([b[off], b[off + 1]]) as u32
    }
    let mut s = word(buf, 40) ^ 0xffff; // the sum the checksum stands for
    for (on, ip, port) in [(src, 26, 34), (dst, 30, 36)] {
        if !on {
            continue;
        }
        for off in [ip, ip + 2, port] {
            s += word(buf, off) ^ 0xffff; // minus the old words (ones' complement)
        }
        let v = rng.next();
        buf[ip..ip + 4].copy_from_slice(&(v as u32).to_be_bytes());
        buf[port..port + 2].copy_from_slice(&((v >> 32) as u16).to_be_bytes());
        s += word(buf, ip) + word(buf, ip + 2) + word(buf, port);
    }
    let mut ck = !fold(s);
    if ck == 0 {
        ck = 0xffff;
    }
    buf[40..42].copy_from_slice(&ck.to_be_bytes());
    buf[24..26].fill(0);
    let ip = !fold(sum16(&buf[14..34]));
    buf[24..26].copy_from_slice(&ip.to_be_bytes());
}

// ---- counters and reports -----------------------------------------------------------------

#[derive(Default)]
struct Stats {
    pkts: AtomicU64,
    bytes: AtomicU64,
    events: AtomicU64,
    lost: AtomicU64,
    reordered: AtomicU64,
    /// When the first packet was counted: a receiver's rate runs from there, as C pkt-gen's
    /// does, so time spent waiting for a sender to start is not counted.
    first: OnceLock<Instant>,
    /// When the last packet was counted (nanoseconds after `first`): a receiver's rate ends
    /// there.
    last_ns: AtomicU64,
}

impl Stats {
    /// Counts one burst.
    fn record(&self, pkts: u64, bytes: u64) {
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

/// Fills the reserved slots of a burst whose first packet is number `n`; returns the frame
/// length used. By default a copy of the prepared frame per packet, as C pkt-gen does;
/// sequence numbers, timestamps and random addresses only when asked for.
fn fill_burst(
    r: &mut BatchReservation<'_>,
    tpl: &[Template],
    cfg: &Cfg,
    base: u64,
    n: u64,
    t0: Instant,
    rng: &mut Rng,
) -> Result<usize, Error> {
    // One length per burst, as C pkt-gen picks one per send_packets call.
    let len = if cfg.len_min > 0 {
        cfg.len_min + (rng.next() % (cfg.len - cfg.len_min) as u64) as usize
    } else {
        cfg.len
    };
    if tpl.len() == 1 && !cfg.seq && !cfg.rand_src && !cfg.rand_dst {
        // As C pkt-gen: the frame is copied into a slot only when its buffer may hold
        // something else (first lap, or NS_BUF_CHANGED); otherwise only the length is set.
        let frame = &tpl[0].bytes[..len];
        r.fill_reused(|_, buf, changed| {
            if changed {
                buf[..len].copy_from_slice(frame);
            }
            len
        })?;
        return Ok(len);
    }
    let ts = if cfg.seq { now_ns(t0) } else { 0 };
    r.fill(|i, buf| {
        let t = match tpl.len() {
            1 => &tpl[0],
            m => &tpl[(n as usize + i) % m],
        };
        let buf = &mut buf[..len];
        if cfg.seq {
            fill(buf, t, base | (n + i as u64), ts);
        } else {
            buf.copy_from_slice(&t.bytes[..len]);
        }
        if cfg.rand_src || cfg.rand_dst {
            randomize(buf, rng, cfg.rand_src, cfg.rand_dst);
        }
        len
    })?;
    Ok(len)
}

/// Counts a batch of received frames (packets and bytes, as C pkt-gen does) and, with
/// `--seq`, checks their sequence numbers.
#[inline]
fn account_rx<'a>(
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
struct SeqCheck {
    next: Vec<u64>,
    lost: u64,
    reordered: u64,
}

impl SeqCheck {
    fn new() -> Self {
        SeqCheck {
            next: vec![0; 256],
            lost: 0,
            reordered: 0,
        }
    }
    #[inline]
    fn see(&mut self, seq: u64) {
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

fn now_ns(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// Paces a sender to `rate` packets per second (0: unlimited), checked once per burst.
struct Pacer {
    rate: u64,
    start: Instant,
}

impl Pacer {
    fn pace(&self, sent: u64) {
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

// ---- workers --------------------------------------------------------------------------------

struct Job {
    cfg: Arc<Cfg>,
    func: Func,
    thread: usize,
    quota: u64,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    t0: Instant,
    rtts: Vec<u64>,
}

fn run_sync(job: &mut Job, nm: &Netmap) -> Result<(), Error> {
    let cfg = job.cfg.clone();
    let stats = &job.stats;
    let mut left = if job.quota == 0 { u64::MAX } else { job.quota };
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
        }
        Func::Rx => {
            let mut rx = nm.rx_ring(0)?;
            let mut check = cfg.seq.then(SeqCheck::new);
            let idle = Duration::from_millis(if cfg.idle_exit { 1000 } else { 100 });
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                let (k, b) = account_rx(rx.batch(cfg.burst.min(left as usize)), check.as_mut());
                if k == 0 {
                    // Everything consumed was released by the last sync: one poll (which
                    // syncs) waits, as in C pkt-gen.
                    peer_notice(nm, &cfg, job.t0);
                    if !nm.wait_readable(Some(idle))?
                        && cfg.idle_exit
                        && stats.first.get().is_some()
                    {
                        break;
                    }
                    continue;
                }
                left -= k;
                stats.record(k, b);
                rx.sync()?;
            }
            rx.sync()?;
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
            let mut rx = nm.rx_ring(0)?;
            let mut seq = 0u64;
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                let mut r = tx.reserve_batch(1)?;
                fill(r.packet(0, cfg.len)?, &tpl[0], seq, now_ns(job.t0));
                r.commit();
                tx.sync()?;
                let mut spins = 0u32;
                'reply: loop {
                    rx.sync()?;
                    while let Some(f) = rx.recv() {
                        if let Some((s, ts)) = parse_seq(f.payload()) {
                            if s == seq {
                                job.rtts.push(now_ns(job.t0) - ts);
                                break 'reply;
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
            let mut rx = nm.rx_ring(0)?;
            let mut idle = 0u32;
            while left > 0 && !job.stop.load(Ordering::Relaxed) {
                rx.sync()?;
                let mut k = 0u64;
                while let Some(f) = rx.recv() {
                    if tx.send(f.payload()).is_err() {
                        tx.sync()?;
                        break;
                    }
                    k += 1;
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

fn run_async(job: &mut Job, port: Netmap) -> Result<(), Error> {
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
                    tx.flush_ring().await?;
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
            }
            Func::Rx => {
                let mut rx = nm.rx_ring(0)?;
                let mut check = cfg.seq.then(SeqCheck::new);
                while left > 0 && !job.stop.load(Ordering::Relaxed) {
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
                rx.get_mut().sync()?;
                if let Some(check) = check {
                    stats.lost.fetch_add(check.lost, Ordering::Relaxed);
                    stats
                        .reordered
                        .fetch_add(check.reordered, Ordering::Relaxed);
                }
            }
            Func::Ping | Func::Pong => {
                return Err(Error::FallbackUnsupported(
                    "--async is implemented for tx and rx; use the sync path for ping/pong".into(),
                ))
            }
        }
        Ok::<(), Error>(())
    })
}

/// How long an async wait runs before checking for a missing peer.
const IDLE: Duration = Duration::from_millis(250);

/// Says once, after a second of waiting, that nobody has the other end of the pipe open:
/// normal for netmap (the peer may come later), but worth knowing.
fn peer_notice(nm: &Netmap, cfg: &Cfg, since: Instant) {
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

fn peer_name(name: &str) -> Option<String> {
    if name.contains('{') {
        Some(name.replacen('{', "}", 1))
    } else if name.contains('}') {
        Some(name.replacen('}', "{", 1))
    } else {
        None
    }
}

fn open_ports(cfg: &Cfg, name: &str) -> Result<Vec<Netmap>, Error> {
    let b = NetmapBuilder::new(name)
        .num_tx_rings(cfg.threads)
        .num_rx_rings(cfg.threads)
        .num_slots(cfg.slots);
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
            std::thread::spawn(move || {
                if job.cfg.async_mode {
                    run_async(&mut job, port)?;
                } else {
                    run_sync(&mut job, &port)?;
                }
                Ok(job.rtts)
            })
        })
        .collect()
}

fn report_line(label: &str, pkts: u64, bytes: u64, events: u64, dt: Duration) -> String {
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
    let stop = Arc::new(AtomicBool::new(false));
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
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
        if last_t.elapsed() >= Duration::from_millis(cfg.report_ms) {
            let (p, b, e) = (
                stats.pkts.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
                stats.events.load(Ordering::Relaxed),
            );
            println!(
                "{}",
                report_line(label, p - last_p, b - last_b, e - last_e, last_t.elapsed())
            );
            (last_p, last_b, last_e, last_t) = (p, b, e, Instant::now());
        }
    }
    let elapsed = match (cfg.func, stats.first.get()) {
        (Func::Rx, Some(_)) => Duration::from_nanos(stats.last_ns.load(Ordering::Relaxed)),
        _ => start.elapsed(),
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
    use super::*;

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
            func: Func::Tx,
            len: 60,
            count: 0,
            burst: 1,
            wait: 0.0,
            report_ms: 1000,
            rate: 0,
            threads: 1,
            dst: parse_range("10.0.0.2-10.0.0.3:1000-1001"),
            src: parse_range("10.0.0.1:99"),
            dmac: [0xff; 6],
            smac: [2, 0, 0, 0, 0, 1],
            async_mode: false,
            both: false,
            slots: 0,
            idle_exit: false,
            len_min: 0,
            seq: false,
            rand_src: false,
            rand_dst: false,
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

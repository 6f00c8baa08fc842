//! Command line: the options of C `pkt-gen`, parsed into a [`Cfg`].

use std::net::Ipv4Addr;

use crate::frames::{HDR, MIN_LEN};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Func {
    Tx,
    Rx,
    Ping,
    Pong,
}

#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub(crate) ip: (Ipv4Addr, Ipv4Addr),
    pub(crate) port: (u16, u16),
}

#[derive(Debug, Clone)]
pub(crate) struct Cfg {
    pub(crate) port: String,
    pub(crate) func: Func,
    pub(crate) len: usize,
    pub(crate) count: u64,
    pub(crate) burst: usize,
    pub(crate) wait: f64,
    pub(crate) report_ms: u64,
    pub(crate) rate: u64,
    pub(crate) threads: usize,
    pub(crate) dst: Range,
    pub(crate) src: Range,
    pub(crate) dmac: [u8; 6],
    pub(crate) smac: [u8; 6],
    pub(crate) async_mode: bool,
    pub(crate) both: bool,
    pub(crate) slots: u32,
    /// `--huge`: the port's memory on huge pages (AF_XDP, AF_PACKET; falls back if none).
    pub(crate) huge: bool,
    /// `--block-timeout MS`: an `afpacket:` port's RX block retire timeout (0: no blocks,
    /// `TPACKET_V2`); `None`: the crate's default.
    pub(crate) block_timeout_ms: Option<u64>,
    /// `--busy`: busy polling (waits spin instead of sleeping; a core per thread).
    pub(crate) busy: bool,
    /// `--each`: a receiver reads with `RxRing::for_each_frame` (in place on `afpacket:`).
    pub(crate) each: bool,
    /// `-a CPU`: thread `i` runs on CPU `CPU + i` only (as C `pkt-gen -a`).
    pub(crate) cpu: Option<usize>,
    /// `-W`: a receiver exits after 1 s without traffic (once the first packet came).
    pub(crate) idle_exit: bool,
    /// Second `-l`: random lengths in `[len_min, len)` (0: fixed length).
    pub(crate) len_min: usize,
    /// `--seq`: sequence numbers and timestamps, checked by the receiver.
    pub(crate) seq: bool,
    /// `-z` / `-Z`: random source / destination address and port per packet.
    pub(crate) rand_src: bool,
    pub(crate) rand_dst: bool,
}

pub(crate) fn die(msg: &str) -> ! {
    eprintln!("pkt_gen: {msg}");
    eprintln!(
        "usage: pkt_gen -i PORT -f tx|rx|ping|pong [-l LEN] [-n COUNT] [-b BURST] [-w WAIT] \
         [-T MS] [-R RATE] [-p THREADS] [-d IP[-IP][:PORT[-PORT]]] [-s ...] [-D MAC] [-S MAC] \
         [-W] [-z] [-Z] [--seq] [--async] [--both] [--slots N] [--huge] [--busy] [-a CPU] \
         [--block-timeout MS] [--each]"
    );
    std::process::exit(2)
}

pub(crate) fn parse_range(s: &str) -> Range {
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

pub(crate) fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap_or_else(|_| die(&format!("bad MAC {s}"))))
        .collect();
    v.try_into()
        .unwrap_or_else(|_| die(&format!("bad MAC {s}")))
}

impl Default for Cfg {
    /// C `pkt-gen`'s defaults (the port and function still to be given).
    fn default() -> Cfg {
        Cfg {
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
            huge: false,
            block_timeout_ms: None,
            busy: false,
            each: false,
            cpu: None,
            idle_exit: false,
            len_min: 0,
            seq: false,
            rand_src: false,
            rand_dst: false,
        }
    }
}

pub(crate) fn parse_args() -> Cfg {
    let mut c = Cfg::default();
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
            "--huge" => c.huge = true,
            "--block-timeout" => c.block_timeout_ms = Some(num(val())),
            "--busy" => c.busy = true,
            "--each" => c.each = true,
            "-a" => c.cpu = Some(num(val()) as usize),
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

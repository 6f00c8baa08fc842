//! dns_responder: an authoritative DNS responder on the UDP layer, answering A queries for
//! `example.com` and `www.example.com` from a small table, beside the host stack.
//!
//!     cargo run --release --example dns_responder -- IFACE [--backend xdp|afpacket|netmap]
//!         [--port 53] [--record NAME=IPV4]... [--batch 64] [--slots N] [--sync]
//!
//! By default it opens `xdp:IFACE` with a filter on UDP port 53: only DNS queries reach it,
//! every other packet of the interface goes to the host stack as before (ping, SSH, ARP,
//! other UDP ports). `--backend afpacket` opens `afpacket:IFACE` (the kernel sees the
//! queries too; a guard socket on the port keeps it from answering them); `--backend
//! netmap` opens `netmap:IFACE` on the netmap module (every frame of the NIC comes here:
//! non-DNS traffic is not handed to the host rings by this example). Every RX ring of the
//! port is served from one task (`AsyncUdpPort::serve`: replies written in place in the TX
//! ring, addressed from the request).
//!
//! Answers: names in the table get their A record (AA set, TTL 300); other types for
//! those names get an empty NOERROR; other names under `example.com` NXDOMAIN; names
//! outside the zone REFUSED; other opcodes NOTIMP; malformed queries FORMERR (or nothing
//! when not even the header is there). RD is copied, RA is never set. Try it:
//!
//!     kdig @IP_OF_IFACE www.example.com A
//!
//! `--sync` serves from a plain thread with the synchronous `UdpPort` instead of a Tokio task.
//!
//! Stops on SIGINT/SIGTERM and prints what it counted (its own handlers, installed before
//! the banner, raced with the serving loop).

use std::net::Ipv4Addr;

#[path = "common/mod.rs"]
mod common;

use netmap_rs::tokio_async::{AsyncUdpPort, TokioNetmap};
use netmap_rs::{NetmapBuilder, XdpFilter};

/// The zone this responder is authoritative for.
const ZONE: &str = "example.com";
/// TTL of the answers.
const TTL: u32 = 300;

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

struct Options {
    port_name: String,
    filter: bool,
    udp_port: u16,
    batch: usize,
    slots: Option<u32>,
    sync: bool,
    records: Vec<(String, Ipv4Addr)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: dns_responder IFACE [--backend xdp|afpacket|netmap] [--port 53] \
         [--record NAME=IPV4]... [--batch 64] [--slots N] [--sync]"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let Some(iface) = args.next().filter(|a| !a.starts_with('-')) else {
        usage()
    };
    let mut backend = "xdp".to_string();
    let mut o = Options {
        port_name: String::new(),
        filter: true,
        udp_port: 53,
        batch: 64,
        slots: None,
        sync: false,
        records: vec![
            ("example.com".into(), Ipv4Addr::new(192, 0, 2, 1)),
            ("www.example.com".into(), Ipv4Addr::new(192, 0, 2, 2)),
        ],
    };
    let mut custom = false;
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--backend" => backend = val(),
            "--port" => o.udp_port = val().parse().unwrap_or_else(|_| usage()),
            "--batch" => o.batch = val().parse().unwrap_or_else(|_| usage()),
            "--sync" => o.sync = true,
            "--slots" => o.slots = Some(val().parse().unwrap_or_else(|_| usage())),
            "--record" => {
                let v = val();
                let (name, ip) = v.split_once('=').unwrap_or_else(|| usage());
                if !custom {
                    o.records.clear();
                    custom = true;
                }
                let ip = ip.parse().unwrap_or_else(|_| usage());
                o.records
                    .push((name.trim_end_matches('.').to_lowercase(), ip));
            }
            _ => usage(),
        }
    }
    o.filter = backend == "xdp";
    o.port_name = match backend.as_str() {
        "xdp" | "afpacket" | "netmap" => format!("{backend}:{iface}"),
        _ => usage(),
    };
    o
}

/// Reads the question's name at `q[0..]` into `name` (lower case, dot-separated, at most
/// 255 bytes: no allocation per query); returns the length of the encoded name and of the
/// text. Queries carry no compression pointers.
fn read_name(q: &[u8], name: &mut [u8; 256]) -> Option<(usize, usize)> {
    let (mut i, mut n) = (0, 0);
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            return Some((i + 1, n));
        }
        if len > 63 || i + 1 + len > q.len() || n + 1 + len > name.len() {
            return None;
        }
        if n > 0 {
            name[n] = b'.';
            n += 1;
        }
        for (d, &c) in name[n..n + len].iter_mut().zip(&q[i + 1..i + 1 + len]) {
            *d = c.to_ascii_lowercase();
        }
        n += len;
        i += 1 + len;
    }
}

fn in_zone(name: &[u8]) -> bool {
    let zone = ZONE.as_bytes();
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.ends_with(b"."))
}

/// Writes the response to `query` into `out`; returns its length, or `None` to stay
/// silent (not a query, or not even a header).
fn answer(query: &[u8], out: &mut [u8], records: &[(String, Ipv4Addr)]) -> Option<usize> {
    if query.len() < 12 || query[2] & 0x80 != 0 || out.len() < 512 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0f;
    let rd = query[2] & 0x01;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // Header: ID, QR | opcode | RD, counts filled below.
    out[..12].fill(0);
    out[0..2].copy_from_slice(&query[0..2]);
    out[2] = 0x80 | (opcode << 3) | rd;
    let respond = |out: &mut [u8], rcode: u8, aa: bool, question: &[u8], answer: Option<&[u8]>| {
        out[2] |= if aa { 0x04 } else { 0 };
        out[3] = rcode;
        out[4..6].copy_from_slice(&(!question.is_empty() as u16).to_be_bytes());
        out[6..8].copy_from_slice(&(answer.is_some() as u16).to_be_bytes());
        let mut n = 12;
        out[n..n + question.len()].copy_from_slice(question);
        n += question.len();
        if let Some(a) = answer {
            out[n..n + a.len()].copy_from_slice(a);
            n += a.len();
        }
        Some(n)
    };
    if opcode != 0 {
        return respond(out, RCODE_NOTIMP, false, &[], None);
    }
    if qdcount != 1 {
        return respond(out, RCODE_FORMERR, false, &[], None);
    }
    let mut buf = [0u8; 256];
    let q = &query[12..];
    let Some((name_len, text_len)) = read_name(q, &mut buf) else {
        return respond(out, RCODE_FORMERR, false, &[], None);
    };
    let Some(question) = q.get(..name_len + 4) else {
        return respond(out, RCODE_FORMERR, false, &[], None);
    };
    let qtype = u16::from_be_bytes([question[name_len], question[name_len + 1]]);
    let qclass = u16::from_be_bytes([question[name_len + 2], question[name_len + 3]]);
    let name = &buf[..text_len];
    if !in_zone(name) || qclass != CLASS_IN {
        return respond(out, RCODE_REFUSED, false, question, None);
    }
    let Some((_, ip)) = records.iter().find(|(n, _)| n.as_bytes() == name) else {
        return respond(out, RCODE_NXDOMAIN, true, question, None);
    };
    if qtype != TYPE_A && qtype != TYPE_ANY {
        // The name exists, without data of that type: NOERROR, no answer.
        return respond(out, 0, true, question, None);
    }
    // The answer: a pointer to the question's name (offset 12), A, IN, TTL, 4 bytes.
    let mut rr = [0u8; 16];
    rr[0..2].copy_from_slice(&0xc00cu16.to_be_bytes());
    rr[2..4].copy_from_slice(&TYPE_A.to_be_bytes());
    rr[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
    rr[6..10].copy_from_slice(&TTL.to_be_bytes());
    rr[10..12].copy_from_slice(&4u16.to_be_bytes());
    rr[12..16].copy_from_slice(&ip.octets());
    respond(out, 0, true, question, Some(&rr))
}

/// The same service on the synchronous `UdpPort`, from this thread.
fn serve_sync(netmap: netmap_rs::Netmap, o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let stop = common::stop_on_signals();
    let mut port = netmap_rs::udp::UdpPort::bind(netmap, o.udp_port)?;
    println!(
        "dns_responder on {} ({}), {} ring(s), UDP port {}{}, sync",
        port.netmap().name(),
        port.netmap().backend(),
        port.netmap().num_rx_rings(),
        o.udp_port,
        if o.filter { " (filtered)" } else { "" },
    );
    let (mut answered, mut batches) = (0u64, 0u64);
    let cpu_start = cpu_ticks();
    // A wake-up at least every 100 ms to see the stop flag while idle.
    let wait = Some(std::time::Duration::from_millis(100));
    while !common::stopped(&stop) {
        let n = port.serve(o.batch, wait, |q, out| answer(q.payload(), out, &o.records))?;
        answered += n as u64;
        batches += u64::from(n > 0);
    }
    report(answered, batches, cpu_start, port.stats(), port.netmap());
    Ok(())
}

/// What it did: answers, the layer's and the kernel's counters, batches, CPU per answer.
fn report(
    answered: u64,
    batches: u64,
    cpu_start: u64,
    st: netmap_rs::udp::UdpStats,
    netmap: &netmap_rs::Netmap,
) {
    println!(
        "answered {answered} queries (received {}, not ours {}, malformed {})",
        st.delivered, st.not_ours, st.malformed
    );
    if let Ok(k) = netmap.stats() {
        println!("Kernel counters: {k}");
    }
    if answered > 0 {
        // Clock ticks are 10 ms: meaningful over a loaded run of seconds, not a few queries.
        let cpu_ms = cpu_ticks().saturating_sub(cpu_start) * 10;
        println!(
            "{batches} batches ({:.1} answers each, one send system call each), CPU {cpu_ms} ms \
             ({:.2} us per answer)",
            answered as f64 / batches.max(1) as f64,
            cpu_ms as f64 * 1000.0 / answered as f64
        );
    }
}

/// User and system CPU time of this process so far, in clock ticks (`/proc/self/stat`
/// fields 14 and 15; 100 per second on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options();
    // Longer rings (--slots) hold a burst that comes while this process waits for a CPU
    // (the kernel counts what it drops for want of free buffers: `rx_fill_empty`).
    let mut builder = NetmapBuilder::new(&o.port_name);
    if let Some(n) = o.slots {
        builder = builder.num_slots(n);
    }
    if o.filter {
        builder = builder.filter(XdpFilter::udp_port(o.udp_port));
    }
    if o.sync {
        return serve_sync(builder.build()?, &o);
    }
    let netmap = TokioNetmap::new(builder.build()?)?;
    let mut port = AsyncUdpPort::bind(&netmap, o.udp_port)?;
    // Handlers first: a signal right after the banner stops us cleanly.
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let table: Vec<String> = o
        .records
        .iter()
        .map(|(n, ip)| format!("{n} A {ip}"))
        .collect();
    println!(
        "dns_responder on {} ({}), {} ring(s), UDP port {}{}: {}",
        netmap.netmap().name(),
        netmap.netmap().backend(),
        netmap.netmap().num_rx_rings(),
        o.udp_port,
        if o.filter { " (filtered)" } else { "" },
        table.join(", ")
    );
    let records = o.records;
    let mut answered = 0u64;
    let mut batches = 0u64;
    let cpu_start = cpu_ticks();
    loop {
        tokio::select! {
            biased;
            _ = int.recv() => break,
            _ = term.recv() => break,
            n = port.serve(o.batch, |q, out| answer(q.payload(), out, &records)) => {
                let n = n?;
                answered += n as u64;
                batches += u64::from(n > 0);
            }
        }
    }
    report(answered, batches, cpu_start, port.stats(), netmap.netmap());
    Ok(())
}

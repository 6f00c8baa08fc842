//! Frames: prepared Ethernet/IPv4/UDP templates, sequence stamps, random addresses, and
//! filling a burst of slots.

use std::net::Ipv4Addr;
use std::time::Instant;

use netmap_rs::prelude::*;

use crate::cli::{Cfg, Range};
use crate::stats::now_ns;

pub(crate) const MAGIC: u16 = 0x4e4d; // "NM"
pub(crate) const HDR: usize = 42; // Ethernet + IPv4 + UDP
pub(crate) const OFF_MAGIC: usize = HDR;
pub(crate) const OFF_SEQ: usize = HDR + 2;
pub(crate) const OFF_TS: usize = HDR + 10;
pub(crate) const MIN_LEN: usize = HDR + 18;

pub(crate) fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

pub(crate) fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A frame for one (src, dst) pair, with the UDP checksum's partial sum precomputed over
/// everything but the sequence number and timestamp (zero in the template).
pub(crate) struct Template {
    pub(crate) bytes: Vec<u8>,
    pub(crate) udp_sum: u32,
}

pub(crate) fn templates(c: &Cfg) -> Vec<Template> {
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

pub(crate) fn template(c: &Cfg, sip: Ipv4Addr, dip: Ipv4Addr, sp: u16, dp: u16) -> Template {
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
pub(crate) fn fill(buf: &mut [u8], t: &Template, seq: u64, ts: u64) {
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

pub(crate) fn parse_seq(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() < MIN_LEN || p[OFF_MAGIC..OFF_MAGIC + 2] != MAGIC.to_be_bytes() {
        return None;
    }
    let seq = u64::from_be_bytes(p[OFF_SEQ..OFF_SEQ + 8].try_into().ok()?);
    let ts = u64::from_be_bytes(p[OFF_TS..OFF_TS + 8].try_into().ok()?);
    Some((seq, ts))
}

/// xorshift64: the random addresses of `-z`/`-Z` and lengths of a second `-l`.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    #[inline]
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Writes a random source (`src`) and/or destination address and port into a filled frame,
/// fixing the IPv4 header checksum and, incrementally, the UDP checksum.
pub(crate) fn randomize(buf: &mut [u8], rng: &mut Rng, src: bool, dst: bool) {
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

/// Fills the reserved slots of a burst whose first packet is number `n`; returns the frame
/// length used. By default a copy of the prepared frame per packet, as C pkt-gen does;
/// sequence numbers, timestamps and random addresses only when asked for.
pub(crate) fn fill_burst(
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

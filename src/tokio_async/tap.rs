//! Taps: trace every frame of a packet stream, and optionally write it to a pcap file.
//!
//! [`Tap`] wraps any `Stream` of frames and passes them through unchanged. Without a stream,
//! [`Tap::recorder`] records what it is given: frames of a batch ([`Tap::record`]), packets
//! sent ([`Tap::record_sent`]), or the packets of a
//! [`NetmapFramed`](super::NetmapFramed) ([`with_tap`](super::NetmapFramed::with_tap)). For
//! each frame it
//! emits one `tracing` event (target `netmap_rs::tap`, level DEBUG) with the length, the ring,
//! the first bytes in hex and a one-line Ethernet/IPv4/IPv6/UDP/TCP summary where the packet
//! parses. The formatting is skipped entirely unless a subscriber enables that target and
//! level, so an unobserved tap costs one check per frame. With [`Tap::with_pcap`] every frame
//! is also written to a pcap file (LINKTYPE_ETHERNET, nanosecond timestamps) that Wireshark
//! and tshark read, stamped with the frame's receive time ([`Frame::timestamp`]) where the
//! backend gives one, else with the time of writing.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_core::Stream;

use crate::sync::Frame;

/// How many leading bytes a tap event shows in hex.
pub const HEX_PREFIX: usize = 16;

/// The pcap magic number of files with nanosecond timestamps.
pub const NANO_MAGIC: u32 = 0xa1b2_3c4d;

/// Writes packets in the pcap format with nanosecond timestamps (magic `0xa1b23c4d`, as
/// libpcap writes with `PCAP_TSTAMP_PRECISION_NANO`; Ethernet link type).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes the pcap global header.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        PcapWriter::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the pcap global header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let snaplen = 65535u32;
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&NANO_MAGIC.to_le_bytes()); // magic, nanoseconds
        h.extend_from_slice(&2u16.to_le_bytes()); // version major
        h.extend_from_slice(&4u16.to_le_bytes()); // version minor
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Appends one packet with the current time.
    pub fn write_packet(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_packet_at(data, SystemTime::now())
    }

    /// Appends one packet stamped `at` (nanoseconds kept; a time before the Unix epoch is
    /// written as the epoch, seconds past 2106 wrap, as the format's 32-bit field does).
    pub fn write_packet_at(&mut self, data: &[u8], at: SystemTime) -> io::Result<()> {
        let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let incl = (data.len() as u32).min(self.snaplen);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(d.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&d.subsec_nanos().to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..incl as usize])
    }

    /// Flushes buffered packets to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A pass-through stream adapter that traces every frame and can record a pcap file; with
/// `S = ()` ([`Tap::recorder`]), a recorder fed by hand.
///
/// ```no_run
/// use netmap_rs::tokio_async::{Tap, TokioNetmap};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let port = TokioNetmap::open("tapped}1").await?;
/// let mut rx = port.rx_ring(0)?;
/// let mut tap = Tap::recorder("tapped}1").with_pcap("/tmp/batch.pcap")?;
/// for frame in rx.recv_batch(64).await? {
///     tap.record(&frame)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tap<S = ()> {
    inner: S,
    pcap: Option<PcapWriter<BufWriter<File>>>,
    seen: u64,
    label: String,
}

impl Tap<()> {
    /// A tap that wraps no stream: feed it with [`record`](Tap::record) and
    /// [`record_sent`](Tap::record_sent), or give it to
    /// [`NetmapFramed::with_tap`](super::NetmapFramed::with_tap).
    pub fn recorder(label: impl Into<String>) -> Self {
        Tap::new((), label)
    }
}

impl<S> Tap<S> {
    /// Taps `inner`; `label` names the tap in its events (a port name, say).
    pub fn new(inner: S, label: impl Into<String>) -> Self {
        Tap {
            inner,
            pcap: None,
            seen: 0,
            label: label.into(),
        }
    }

    /// Also writes every frame to a pcap file at `path`.
    pub fn with_pcap(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        self.pcap = Some(PcapWriter::create(path)?);
        Ok(self)
    }

    /// Frames seen (recorded) so far.
    pub fn frames_seen(&self) -> u64 {
        self.seen
    }

    /// Flushes the pcap file, if any.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.pcap {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }

    /// The wrapped stream (the pcap file is flushed and closed; the `BufWriter` also flushes
    /// when a tap is dropped).
    pub fn into_inner(mut self) -> S {
        let _ = self.flush();
        self.inner
    }

    /// Records one received frame: a `tracing` event and, with a pcap file, a record.
    /// An error is the pcap file's.
    /// The pcap record carries the frame's receive time ([`Frame::timestamp`]) when it has
    /// one, else the time of writing.
    pub fn record(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        self.observe(frame.payload(), frame.ring_index(), "rx", frame.timestamp())
    }

    /// Records one packet sent on TX ring `ring` (the bytes as they were queued), stamped
    /// with the time of recording.
    pub fn record_sent(&mut self, data: &[u8], ring: usize) -> io::Result<()> {
        self.observe(data, ring, "tx", None)
    }

    fn observe(
        &mut self,
        data: &[u8],
        ring: usize,
        dir: &'static str,
        at: Option<SystemTime>,
    ) -> io::Result<()> {
        self.seen += 1;
        if tracing::enabled!(target: "netmap_rs::tap", tracing::Level::DEBUG) {
            let mut hex = String::with_capacity(HEX_PREFIX * 2);
            for b in &data[..data.len().min(HEX_PREFIX)] {
                let _ = write!(hex, "{b:02x}");
            }
            tracing::debug!(
                target: "netmap_rs::tap",
                tap = %self.label,
                n = self.seen,
                dir,
                len = data.len(),
                ring,
                hex = %hex,
                summary = %summarize(data),
                "frame"
            );
        }
        if let Some(p) = &mut self.pcap {
            p.write_packet_at(data, at.unwrap_or_else(SystemTime::now))?;
        }
        Ok(())
    }
}

impl<S: Stream<Item = io::Result<Frame<'static>>> + Unpin> Stream for Tap<S> {
    type Item = io::Result<Frame<'static>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Err(e) = this.record(&frame) {
                    tracing::warn!(target: "netmap_rs::tap", error = %e, "pcap write failed");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                // Idle: a good moment to push buffered packets to the file.
                if let Err(e) = this.flush() {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A one-line summary of an Ethernet frame: MACs, then IPv4/IPv6 addresses and the
/// UDP/TCP ports where they parse, or the EtherType.
pub fn summarize(p: &[u8]) -> String {
    if p.len() < 14 {
        return format!("{} bytes, too short for Ethernet", p.len());
    }
    let eth = format!("{} > {}", mac(&p[6..12]), mac(&p[0..6]));
    let mut ethertype = u16::from_be_bytes([p[12], p[13]]);
    let mut off = 14;
    if ethertype == 0x8100 && p.len() >= 18 {
        ethertype = u16::from_be_bytes([p[16], p[17]]);
        off = 18;
    }
    let l3 = &p[off..];
    let (ip, proto, l4) = match ethertype {
        0x0800 if l3.len() >= 20 && l3[0] >> 4 == 4 => {
            let ihl = ((l3[0] & 0x0f) as usize) * 4;
            let src = std::net::Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]);
            let dst = std::net::Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]);
            let rest = if ihl >= 20 && l3.len() >= ihl {
                &l3[ihl..]
            } else {
                &[][..]
            };
            (format!("IPv4 {src} > {dst}"), l3[9], rest)
        }
        0x86dd if l3.len() >= 40 => {
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&l3[o..o + 16]);
                std::net::Ipv6Addr::from(b)
            };
            (format!("IPv6 {} > {}", a(8), a(24)), l3[6], &l3[40..])
        }
        0x0806 => return format!("{eth} ARP"),
        t => return format!("{eth} ethertype 0x{t:04x}"),
    };
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let l4s = match proto {
        17 if l4.len() >= 8 => format!(
            "UDP {} > {} len {}",
            port(&l4[0..2]),
            port(&l4[2..4]),
            port(&l4[4..6])
        ),
        6 if l4.len() >= 20 => format!("TCP {} > {}", port(&l4[0..2]), port(&l4[2..4])),
        1 => "ICMP".to_string(),
        58 => "ICMPv6".to_string(),
        p => format!("proto {p}"),
    };
    format!("{eth} {ip} {l4s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_udp_and_others() {
        let mut p = vec![0u8; 42];
        p[0..6].copy_from_slice(&[0xff; 6]);
        p[6..12].copy_from_slice(&[0, 1, 2, 3, 4, 5]);
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x45;
        p[23] = 17;
        p[26..30].copy_from_slice(&[10, 0, 0, 1]);
        p[30..34].copy_from_slice(&[10, 0, 0, 2]);
        p[34..36].copy_from_slice(&1234u16.to_be_bytes());
        p[36..38].copy_from_slice(&80u16.to_be_bytes());
        p[38..40].copy_from_slice(&8u16.to_be_bytes());
        let s = summarize(&p);
        assert_eq!(
            s,
            "00:01:02:03:04:05 > ff:ff:ff:ff:ff:ff IPv4 10.0.0.1 > 10.0.0.2 UDP 1234 > 80 len 8"
        );
        p[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(summarize(&p).ends_with("ARP"));
        assert!(summarize(&p[..5]).contains("too short"));
        p[12..14].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(summarize(&p).ends_with("ethertype 0x1234"));
    }

    #[test]
    fn pcap_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let at = UNIX_EPOCH + std::time::Duration::new(7, 9);
        w.write_packet_at(b"abcd", at).unwrap();
        let v = w.into_inner();
        assert_eq!(v.len(), 24 + 16 + 4);
        assert_eq!(&v[0..4], &0xa1b2_3c4du32.to_le_bytes());
        assert_eq!(&v[20..24], &1u32.to_le_bytes());
        assert_eq!(&v[24..28], &7u32.to_le_bytes());
        assert_eq!(&v[28..32], &9u32.to_le_bytes());
        assert_eq!(&v[32..36], &4u32.to_le_bytes());
        assert_eq!(&v[40..44], b"abcd");
    }

    // A tap over a file, stamping unstamped frames with the wall clock: Miri's isolation
    // has neither (the pcap layout itself is `pcap_layout`, which Miri runs).
    #[cfg(not(miri))]
    #[test]
    fn tap_writes_the_frame_stamp_in_nanoseconds() {
        let path = std::env::temp_dir().join(format!("netmap-rs-tap-{}.pcap", std::process::id()));
        let at = UNIX_EPOCH + std::time::Duration::new(1_790_000_000, 123_456_789);
        let before = SystemTime::now();
        {
            let mut tap = Tap::recorder("t").with_pcap(&path).unwrap();
            tap.record(&Frame::new(b"stamped").with_timestamp(at))
                .unwrap();
            tap.record(&Frame::new(b"unstamped")).unwrap();
        }
        let v = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let word = |o: usize| u32::from_le_bytes(v[o..o + 4].try_into().unwrap());
        assert_eq!(word(0), NANO_MAGIC);
        assert_eq!((word(24), word(28)), (1_790_000_000, 123_456_789));
        assert_eq!(&v[40..47], b"stamped");
        // The frame without a stamp gets the time of writing.
        let second = 47;
        let t = UNIX_EPOCH + std::time::Duration::new(word(second).into(), word(second + 4));
        assert!(t >= before - std::time::Duration::from_secs(1) && t <= SystemTime::now());
        assert_eq!(&v[second + 16..], b"unstamped");
    }
}

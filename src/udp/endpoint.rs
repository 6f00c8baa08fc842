//! What the sync and Tokio UDP endpoints share: which frames are ours, received datagrams
//! ([`Datagram`], [`UdpBatch`]), addressing new destinations, and replying in place.

use std::net::SocketAddr;
use std::ops::Range;

use super::local::Local;
use super::resolve::Resolver;
use crate::error::Error;
use crate::sync::{BatchReservation, Frame, RxBatch, TxRing};
use crate::wire::{Addressing, Malformed, UdpFrame};

/// Counters of one endpoint (since it was created).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams delivered to the application.
    pub delivered: u64,
    /// Frames skipped: not UDP, or not to this endpoint's port, addresses or VLAN.
    pub not_ours: u64,
    /// Frames skipped as malformed: cut short, inconsistent headers, a bad IPv4 header
    /// checksum (or, when verified, a bad UDP checksum), IP fragments.
    pub malformed: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Frames not delivered (not ours or malformed) handed to the host stack through the
    /// port's host rings (a netmap NIC port with host rings, `netmap:eth0*`; see
    /// [`UdpPort`](super::UdpPort)). Also counted as `not_ours` or `malformed`.
    pub to_host: u64,
    /// Frames the host stack sent, put on the NIC (same ports).
    pub from_host: u64,
    /// Frames of either direction between the NIC and the host stack dropped because the
    /// ring they were going to stayed full after a sync (as a full ring drops in the kernel).
    pub bridge_dropped: u64,
}

/// The state both endpoint forms share.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) local: Local,
    resolver: Resolver,
    pub(crate) stats: UdpStats,
}

impl Endpoint {
    pub(crate) fn new(local: Local) -> Endpoint {
        Endpoint {
            local,
            resolver: Resolver::default(),
            stats: UdpStats::default(),
        }
    }

    /// Whether `frame` holds a datagram for this endpoint: its addressing and the payload's
    /// place in the frame, or `None`; counted either way (delivered, not ours, malformed).
    #[inline]
    pub(crate) fn classify(&mut self, frame: &Frame<'_>) -> Option<(Addressing, Range<usize>)> {
        match judge(&self.local, frame.payload()) {
            Ok(p) => {
                self.stats.delivered += 1;
                Some((*p.addressing(), p.payload_range()))
            }
            Err(Skip::NotOurs) => {
                self.stats.not_ours += 1;
                None
            }
            Err(Skip::Malformed) => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    /// Whether `frame` is not for this endpoint (counted as not ours or malformed); a
    /// datagram for it is not counted (a look ahead: it is counted when it is taken).
    #[inline]
    pub(crate) fn is_foreign(&mut self, frame: &Frame<'_>) -> bool {
        match judge(&self.local, frame.payload()) {
            Ok(_) => false,
            Err(Skip::NotOurs) => {
                self.stats.not_ours += 1;
                true
            }
            Err(Skip::Malformed) => {
                self.stats.malformed += 1;
                true
            }
        }
    }

    /// The addressing of a datagram to `dst` (a cached lookup, or the kernel's tables).
    pub(crate) fn addressing_to(&mut self, dst: SocketAddr) -> Result<Addressing, Error> {
        self.resolver.addressing(&self.local, dst)
    }

    /// Writes a frame of `payload` addressed by `a` into `buf`; returns its length.
    pub(crate) fn build(a: &Addressing, buf: &mut [u8], payload: &[u8]) -> Result<usize, Error> {
        a.emit_with(buf, payload).map_err(|e| match e {
            Malformed::BufferTooSmall => Error::PacketTooLarge(a.header_len() + payload.len()),
            e => Error::NoRoute {
                dst: a.dst.ip(),
                reason: format!("cannot build the frame: {e}"),
            },
        })
    }

    /// Replies in place: for each datagram of `batch` (up to the reservation's size), `f`
    /// writes the reply payload into the TX slot behind the headers and returns its length
    /// (`None`: no reply); the headers are the request's turned around. Returns how many
    /// replies were filled (commit the reservation to send them). Datagrams after the last
    /// slot stay in the RX ring for the next call.
    /// With `host` (a bridged port), frames that are not ours are copied to that host TX
    /// ring.
    pub(crate) fn serve<'a>(
        &mut self,
        batch: RxBatch<'a>,
        mut host: Option<&mut TxRing>,
        res: &mut BatchReservation<'_>,
        max_len: usize,
        f: &mut impl FnMut(&Datagram<'a>, &mut [u8]) -> Option<usize>,
    ) -> Result<usize, Error> {
        let room = res.len();
        let mut filled = 0;
        // A reply is written into a scratch buffer first and copied into its slot only when
        // there is one: a slot, once asked for, is sent, and `f` may decline.
        let mut scratch = [0u8; 2048];
        let mut batch = batch;
        while filled < room {
            let Some(frame) = batch.next() else { break };
            let Some((addressing, payload)) = self.classify(&frame) else {
                if let Some(h) = host.as_deref_mut() {
                    super::bridge::copy_to_host(h, &frame, &mut self.stats);
                }
                continue;
            };
            let d = Datagram {
                frame,
                addressing,
                payload,
            };
            let reply = d.addressing.reply();
            let h = reply.header_len();
            let cap = max_len.min(scratch.len()).saturating_sub(h);
            let Some(n) = f(&d, &mut scratch[..cap]) else {
                continue;
            };
            if n > cap {
                return Err(Error::PacketTooLarge(h + n));
            }
            let buf = res.packet(filled, h + n)?;
            buf[h..].copy_from_slice(&scratch[..n]);
            reply
                .emit(buf, n)
                .map_err(|e| Error::BindFail(format!("building a reply: {e}")))?;
            filled += 1;
        }
        self.stats.sent += filled as u64;
        Ok(filled)
    }
}

/// Why a frame is not delivered.
enum Skip {
    /// Not UDP, or not to this endpoint's port, addresses or VLAN.
    NotOurs,
    /// Cut short, inconsistent, a bad checksum, a fragment.
    Malformed,
}

/// The parsed datagram in `bytes` if it is one for `l`.
#[inline]
fn judge<'f>(l: &Local, bytes: &'f [u8]) -> Result<UdpFrame<'f>, Skip> {
    let parsed = match UdpFrame::parse(bytes) {
        Ok(p) => p,
        Err(Malformed::NotUdp) => return Err(Skip::NotOurs),
        Err(_) => return Err(Skip::Malformed),
    };
    let a = parsed.addressing();
    if (l.port != 0 && a.dst.port() != l.port)
        || !l.accepts_ip(&a.dst.ip())
        || l.vlan
            .is_some_and(|v| a.vlan.map(|t| t.id()) != Some(v.id()))
    {
        return Err(Skip::NotOurs);
    }
    if l.verify_udp_checksum && !parsed.udp_checksum_ok() {
        return Err(Skip::Malformed);
    }
    Ok(parsed)
}

/// A received datagram, borrowed from its ring slot (zero copy): payload, source,
/// destination, and every address needed to reply.
#[derive(Debug, Clone)]
pub struct Datagram<'a> {
    frame: Frame<'a>,
    addressing: Addressing,
    payload: Range<usize>,
}

impl<'a> Datagram<'a> {
    /// The UDP payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.frame
            .payload()
            .get(self.payload.clone())
            .unwrap_or(&[])
    }
    /// Where it came from (IP address and port).
    pub fn source(&self) -> SocketAddr {
        self.addressing.src
    }
    /// Where it was sent (one of ours).
    pub fn destination(&self) -> SocketAddr {
        self.addressing.dst
    }
    /// Every address of the frame (MACs, VLAN, IPs, ports, TTL).
    pub fn addressing(&self) -> &Addressing {
        &self.addressing
    }
    /// The addressing of a reply (MACs, IPs, ports swapped): no lookup needed.
    pub fn reply_addressing(&self) -> Addressing {
        self.addressing.reply()
    }
    /// The whole frame, as received.
    pub fn frame(&self) -> &Frame<'a> {
        &self.frame
    }
    /// The RX ring it came from.
    pub fn ring_index(&self) -> usize {
        self.frame.ring_index()
    }
}

/// Datagrams for this endpoint from one RX ring, borrowed (zero copy); other frames are
/// skipped as they are passed (on a port with host rings, copied to the host stack's ring).
/// Frames taken are consumed when the batch is dropped.
#[derive(Debug)]
pub struct UdpBatch<'a> {
    pub(crate) frames: RxBatch<'a>,
    pub(crate) endpoint: &'a mut Endpoint,
    /// The host TX ring frames that are not ours go to (a bridged NIC port).
    pub(crate) host: Option<&'a mut TxRing>,
}

impl<'a> Iterator for UdpBatch<'a> {
    type Item = Datagram<'a>;

    #[inline]
    fn next(&mut self) -> Option<Datagram<'a>> {
        loop {
            let frame = self.frames.next()?;
            match self.endpoint.classify(&frame) {
                Some((addressing, payload)) => {
                    return Some(Datagram {
                        frame,
                        addressing,
                        payload,
                    })
                }
                None => {
                    if let Some(h) = self.host.as_deref_mut() {
                        super::bridge::copy_to_host(h, &frame, &mut self.endpoint.stats);
                    }
                }
            }
        }
    }
}

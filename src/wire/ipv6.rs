//! IPv6 packets (RFC 8200): the fixed header, and the extension headers a UDP datagram may
//! carry before its UDP header (hop-by-hop, routing, destination options), skipped.

use std::net::Ipv6Addr;

use super::{be16, put16, Malformed};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Next header value of a hop-by-hop options header.
pub const NEXT_HOP_BY_HOP: u8 = 0;
/// Next header value of a routing header.
pub const NEXT_ROUTING: u8 = 43;
/// Next header value of a fragment header.
pub const NEXT_FRAGMENT: u8 = 44;
/// Next header value of a destination options header.
pub const NEXT_DEST_OPTS: u8 = 60;
/// Next header value of UDP.
pub const NEXT_UDP: u8 = 17;

/// Extension headers skipped at most (a bound on the work per packet).
const MAX_EXTENSIONS: usize = 8;

/// A view of an IPv6 packet (bounds checked once, by [`Packet::new_checked`]).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Fixed header and payload, cut at the payload length.
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the version and the payload length against `bytes` (which may carry trailing
    /// padding).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        if bytes.len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        if bytes[0] >> 4 != 6 {
            return Err(Malformed::BadHeader);
        }
        // A payload length of 0 with a hop-by-hop jumbogram option is not supported: a
        // jumbogram is longer than any slot anyway.
        let total = HEADER_LEN + usize::from(be16(bytes, 4));
        let bytes = bytes.get(..total).ok_or(Malformed::Truncated)?;
        Ok(Packet { bytes })
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.bytes[7]
    }
    /// The next header field of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.bytes[6]
    }
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.bytes, 0) >> 4) & 0xff) as u8
    }
    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.bytes, 8)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.bytes, 24)
    }
    /// What follows the fixed header, up to the payload length.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The upper-layer protocol and its bytes, after skipping hop-by-hop, routing and
    /// destination options headers. A fragment header gives [`Malformed::Fragment`].
    pub fn upper_layer(&self) -> Result<(u8, &'a [u8]), Malformed> {
        let mut next = self.next_header();
        let mut rest = self.payload();
        for _ in 0..MAX_EXTENSIONS {
            match next {
                NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                    if rest.len() < 8 {
                        return Err(Malformed::Truncated);
                    }
                    let len = (usize::from(rest[1]) + 1) * 8;
                    next = rest[0];
                    rest = rest.get(len..).ok_or(Malformed::Truncated)?;
                }
                NEXT_FRAGMENT => return Err(Malformed::Fragment),
                _ => return Ok((next, rest)),
            }
        }
        Err(Malformed::BadHeader)
    }
}

fn addr_at(b: &[u8], off: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(off..off + 16) {
        a.copy_from_slice(s);
    }
    Ipv6Addr::from(a)
}

/// Writes a fixed header (traffic class and flow label 0) for a payload of `payload_len`
/// bytes; returns its length.
pub fn emit(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload_len: usize,
) -> Result<usize, Malformed> {
    let len = u16::try_from(payload_len).map_err(|_| Malformed::BadHeader)?;
    let h = buf.get_mut(..HEADER_LEN).ok_or(Malformed::BufferTooSmall)?;
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    put16(h, 4, len);
    h[6] = next_header;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_parse_and_skip_extensions() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut b = vec![0u8; 40 + 8 + 8];
        assert_eq!(emit(&mut b, &s, &d, NEXT_DEST_OPTS, 64, 16), Ok(40));
        // A destination options header of 8 bytes (next: UDP), then 8 bytes of "UDP".
        b[40] = NEXT_UDP;
        b[41] = 0;
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!((p.src(), p.dst(), p.hop_limit()), (s, d, 64));
        let (proto, rest) = p.upper_layer().unwrap();
        assert_eq!((proto, rest.len()), (NEXT_UDP, 8));
        // An extension header claiming more than there is.
        b[41] = 5;
        assert_eq!(
            Packet::new_checked(&b).unwrap().upper_layer(),
            Err(Malformed::Truncated)
        );
        b[40] = NEXT_FRAGMENT;
        b[41] = 0;
        b[6] = NEXT_FRAGMENT;
        assert_eq!(
            Packet::new_checked(&b).unwrap().upper_layer(),
            Err(Malformed::Fragment)
        );
        // Payload length beyond the bytes; wrong version.
        b[5] = 17;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::Truncated);
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::BadHeader);
    }

    #[test]
    fn a_chain_of_extensions_is_bounded() {
        // Nine hop-by-hop headers chained: more than the bound, refused (not looped over).
        let mut b = vec![0u8; 40 + 9 * 8];
        b[0] = 0x60;
        b[4..6].copy_from_slice(&(9u16 * 8).to_be_bytes());
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.upper_layer(), Err(Malformed::BadHeader));
    }
}

//! IPv4 packets (RFC 791), options included, with the header checksum.

use std::net::Ipv4Addr;

use super::checksum;
use super::{be16, put16, Malformed};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A view of an IPv4 packet (bounds checked once, by [`Packet::new_checked`]).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The header and payload, cut at the total length (Ethernet padding dropped).
    bytes: &'a [u8],
    header_len: usize,
}

impl<'a> Packet<'a> {
    /// Checks version, header length and total length against `bytes` (which may carry
    /// trailing padding, as short Ethernet frames do).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        let first = *bytes.first().ok_or(Malformed::Truncated)?;
        if first >> 4 != 4 {
            return Err(Malformed::BadHeader);
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Malformed::BadHeader);
        }
        if bytes.len() < header_len {
            return Err(Malformed::Truncated);
        }
        let total = usize::from(be16(bytes, 2));
        if total < header_len {
            return Err(Malformed::BadHeader);
        }
        let bytes = bytes.get(..total).ok_or(Malformed::Truncated)?;
        Ok(Packet { bytes, header_len })
    }

    /// Header length in bytes (20 plus options).
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// Total length (header and payload).
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.bytes[8]
    }
    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.bytes[9]
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        addr_at(self.bytes, 12)
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        addr_at(self.bytes, 16)
    }
    /// Whether this is a fragment: more fragments follow, or the offset is not zero.
    pub fn is_fragment(&self) -> bool {
        be16(self.bytes, 6) & 0x3fff != 0
    }
    /// The options (empty without).
    pub fn options(&self) -> &'a [u8] {
        self.bytes
            .get(MIN_HEADER_LEN..self.header_len)
            .unwrap_or(&[])
    }
    /// Whether the header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        checksum::checksum(&self.bytes[..self.header_len]) == 0
    }
    /// The payload, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(self.header_len..).unwrap_or(&[])
    }
}

fn addr_at(b: &[u8], off: usize) -> Ipv4Addr {
    match b.get(off..off + 4) {
        Some(s) => Ipv4Addr::new(s[0], s[1], s[2], s[3]),
        None => Ipv4Addr::UNSPECIFIED,
    }
}

/// Writes a 20-byte header (no options, don't-fragment set, identification 0) for a payload
/// of `payload_len` bytes, checksum included; returns its length.
pub fn emit(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ttl: u8,
    payload_len: usize,
) -> Result<usize, Malformed> {
    let total = u16::try_from(MIN_HEADER_LEN + payload_len).map_err(|_| Malformed::BadHeader)?;
    let h = buf
        .get_mut(..MIN_HEADER_LEN)
        .ok_or(Malformed::BufferTooSmall)?;
    h[0] = 0x45;
    h[1] = 0;
    put16(h, 2, total);
    put16(h, 4, 0);
    put16(h, 6, 0x4000);
    h[8] = ttl;
    h[9] = protocol;
    put16(h, 10, 0);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(h);
    put16(h, 10, c);
    Ok(MIN_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let mut b = [0u8; 28];
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(emit(&mut b, s, d, PROTO_UDP, 64, 8), Ok(20));
        let p = Packet::new_checked(&b).unwrap();
        assert!(p.checksum_ok());
        assert_eq!((p.src(), p.dst(), p.protocol(), p.ttl()), (s, d, 17, 64));
        assert_eq!(
            (p.header_len(), p.total_len(), p.payload().len()),
            (20, 28, 8)
        );
        assert!(!p.is_fragment());
        b[15] ^= 1;
        assert!(!Packet::new_checked(&b).unwrap().checksum_ok());
    }

    #[test]
    fn options_and_padding() {
        // IHL 6: one 4-byte option (NOP NOP NOP EOL), 2 payload bytes, 4 bytes of padding.
        let mut b = vec![0u8; 30];
        b[0] = 0x46;
        b[2..4].copy_from_slice(&26u16.to_be_bytes());
        b[9] = 17;
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let c = checksum::checksum(&b[..24]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b).unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload().len(), 2);
        assert!(p.checksum_ok());
    }

    #[test]
    fn inconsistent_headers_are_refused() {
        let mut b = [0u8; 20];
        b[0] = 0x45;
        b[3] = 20;
        assert!(Packet::new_checked(&b).is_ok());
        b[0] = 0x65;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::BadHeader);
        b[0] = 0x44; // IHL 4 < 5
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::BadHeader);
        b[0] = 0x4f; // IHL 15: 60 bytes > 20
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::Truncated);
        b[0] = 0x45;
        b[3] = 19; // total < header
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::BadHeader);
        b[3] = 21; // total > bytes
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::Truncated);
        b[3] = 20;
        b[6] = 0x20; // more fragments
        assert!(Packet::new_checked(&b).unwrap().is_fragment());
        assert_eq!(Packet::new_checked(&[]).unwrap_err(), Malformed::Truncated);
    }
}

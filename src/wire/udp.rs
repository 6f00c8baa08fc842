//! UDP datagrams (RFC 768) and their checksum (optional on IPv4, mandatory on IPv6,
//! RFC 8200 section 8.1).

use std::net::IpAddr;

use super::checksum;
use super::{be16, put16, Malformed};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;
/// IP protocol number (and IPv6 next header) of UDP.
pub const PROTO: u8 = 17;

/// A view of a UDP datagram (bounds checked once, by [`Packet::new_checked`]).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Header and payload, cut at the UDP length.
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the UDP length against `bytes` (the IP payload).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        if bytes.len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        let len = usize::from(be16(bytes, 4));
        if len < HEADER_LEN {
            return Err(Malformed::BadHeader);
        }
        let bytes = bytes.get(..len).ok_or(Malformed::Truncated)?;
        Ok(Packet { bytes })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.bytes, 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.bytes, 2)
    }
    /// The UDP length field (header and payload).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() == HEADER_LEN
    }
    /// The checksum field (0 on IPv4: none computed).
    pub fn checksum(&self) -> u16 {
        be16(self.bytes, 6)
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Whether the checksum is right for these IP addresses: a zero field passes on IPv4
    /// (the sender computed none) and fails on IPv6 (where it is mandatory).
    pub fn checksum_ok(&self, src: IpAddr, dst: IpAddr) -> bool {
        let c = self.checksum();
        let pseudo = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                if c == 0 {
                    return true;
                }
                checksum::pseudo_v4(s, d, PROTO, self.len() as u16)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                if c == 0 {
                    return false;
                }
                checksum::pseudo_v6(&s, &d, PROTO, self.len() as u32)
            }
            _ => return false,
        };
        checksum::finish(checksum::sum(self.bytes, pseudo)) == 0
    }
}

/// Writes the UDP header at the start of `buf`, whose next `payload_len` bytes already hold
/// the payload, with the checksum for `src`/`dst` (always computed, on IPv4 too); returns
/// the datagram's length.
pub fn emit(
    buf: &mut [u8],
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
    payload_len: usize,
) -> Result<usize, Malformed> {
    let total = HEADER_LEN + payload_len;
    let len16 = u16::try_from(total).map_err(|_| Malformed::BadHeader)?;
    let d = buf.get_mut(..total).ok_or(Malformed::BufferTooSmall)?;
    put16(d, 0, src_port);
    put16(d, 2, dst_port);
    put16(d, 4, len16);
    put16(d, 6, 0);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, PROTO, len16),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(&s, &d, PROTO, u32::from(len16)),
        _ => return Err(Malformed::MixedFamilies),
    };
    let mut c = checksum::finish(checksum::sum(d, pseudo));
    if c == 0 {
        // A computed zero is sent as all ones (zero means "none" on IPv4).
        c = 0xffff;
    }
    put16(d, 6, c);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_round_trips_on_both_families() {
        for (s, d) in [
            (
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap(),
            ),
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap()),
        ] {
            let mut b = [0u8; 8 + 5];
            b[8..].copy_from_slice(b"hello");
            assert_eq!(emit(&mut b, s, 1000, d, 53, 5), Ok(13));
            let p = Packet::new_checked(&b).unwrap();
            assert_eq!(
                (p.src_port(), p.dst_port(), p.payload()),
                (1000, 53, &b"hello"[..])
            );
            assert!(p.checksum_ok(s, d));
            assert!(!p.checksum_ok(d, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
            b[9] ^= 0x40;
            assert!(!Packet::new_checked(&b).unwrap().checksum_ok(s, d));
            // Zero: "none" on IPv4, invalid on IPv6.
            b[6] = 0;
            b[7] = 0;
            assert_eq!(
                Packet::new_checked(&b).unwrap().checksum_ok(s, d),
                s.is_ipv4()
            );
        }
    }

    #[test]
    fn a_known_datagram() {
        // 10.0.0.1:1234 -> 10.0.0.2:53, payload "ab": checksum worked out by hand.
        // pseudo: 0a00+0001+0a00+0002+0011+000a = 0x141e; header: 04d2+0035+000a = 0x0511;
        // payload 6162. Sum 0x141e+0x0511+0x6162 = 0x7a91; checksum !0x7a91 = 0x856e.
        let mut b = [0u8; 10];
        b[8..].copy_from_slice(b"ab");
        let (s, d) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        emit(&mut b, s, 1234, d, 53, 2).unwrap();
        assert_eq!(&b[6..8], &[0x85, 0x6e]);
    }

    #[test]
    fn lengths_are_checked() {
        let mut b = [0u8; 8];
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::BadHeader);
        b[5] = 9;
        assert_eq!(Packet::new_checked(&b).unwrap_err(), Malformed::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..7]).unwrap_err(),
            Malformed::Truncated
        );
        let (s, d) = ("10.0.0.1".parse().unwrap(), "fd00::2".parse().unwrap());
        assert_eq!(emit(&mut b, s, 1, d, 2, 0), Err(Malformed::MixedFamilies));
        assert_eq!(emit(&mut b, s, 1, s, 2, 1), Err(Malformed::BufferTooSmall));
    }
}

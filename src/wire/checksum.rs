//! The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of
//! 16-bit big-endian words, and the pseudo-headers UDP adds for IPv4 and IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The ones' complement sum of `data` (an odd last byte padded with zero) added to `acc`,
/// not yet folded or complemented. Sums may be chained over pieces of even length.
#[inline]
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the value to store in a checksum field.
#[inline]
pub fn finish(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` (e.g. an IPv4 header with its checksum field zeroed; over a
/// header with its checksum in place, 0 means valid).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// The IPv4 pseudo-header sum for a transport segment of `len` bytes of protocol `proto`.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u64 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    acc + u64::from(proto) + u64::from(len)
}

/// The IPv6 pseudo-header sum for an upper-layer packet of `len` bytes with next header
/// `proto`.
pub fn pseudo_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u64 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    acc + u64::from(proto) + u64::from(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
        // The same bytes split unevenly (4-byte words, then pairs, then one byte) agree.
        assert_eq!(finish(sum(&d[4..], sum(&d[..4], 0))), !0xddf2);
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn a_header_with_its_checksum_sums_to_zero() {
        let mut h = [
            0x45, 0, 0, 0x1c, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }
}

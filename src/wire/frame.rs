//! A whole UDP frame: Ethernet (optional VLAN), IPv4 or IPv6, UDP, parsed in one pass
//! ([`UdpFrame`]), and the addressing to build one ([`Addressing`]).

use std::net::{IpAddr, SocketAddr};

use super::ethernet::{self, MacAddr, Vlan, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{ipv4, ipv6, udp, Malformed};

/// Every address of a UDP frame: MACs, VLAN tag, IP addresses and ports, and the TTL (hop
/// limit) to send with. Read from a received frame ([`UdpFrame::addressing`]), turned
/// around for a reply ([`reply`](Self::reply)), or made up for a new destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addressing {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<Vlan>,
    /// Source IP address and UDP port.
    pub src: SocketAddr,
    /// Destination IP address and UDP port.
    pub dst: SocketAddr,
    /// TTL (IPv4) or hop limit (IPv6).
    pub hop_limit: u8,
}

/// TTL / hop limit of frames this crate builds (Linux's default).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

impl Addressing {
    /// The addressing of a reply: MACs, IP addresses and ports swapped, the same VLAN, the
    /// default hop limit. No lookup needed.
    pub fn reply(&self) -> Addressing {
        Addressing {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            vlan: self.vlan,
            src: self.dst,
            dst: self.src,
            hop_limit: DEFAULT_HOP_LIMIT,
        }
    }

    /// Bytes in front of the payload: Ethernet (14, or 18 tagged), IP (20 or 40), UDP (8).
    pub fn header_len(&self) -> usize {
        let ip = if self.dst.is_ipv4() {
            ipv4::MIN_HEADER_LEN
        } else {
            ipv6::HEADER_LEN
        };
        ethernet::header_len(self.vlan) + ip + udp::HEADER_LEN
    }

    /// Writes the headers in front of a payload of `payload_len` bytes that is already in
    /// place at `frame[self.header_len()..]` (zero copy), checksums included; returns the
    /// frame's length.
    pub fn emit(&self, frame: &mut [u8], payload_len: usize) -> Result<usize, Malformed> {
        let eth_len = ethernet::header_len(self.vlan);
        let (src_ip, dst_ip) = (self.src.ip(), self.dst.ip());
        let (ethertype, ip_len) = match (src_ip, dst_ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (ETHERTYPE_IPV4, ipv4::MIN_HEADER_LEN),
            (IpAddr::V6(_), IpAddr::V6(_)) => (ETHERTYPE_IPV6, ipv6::HEADER_LEN),
            _ => return Err(Malformed::MixedFamilies),
        };
        let total = eth_len + ip_len + udp::HEADER_LEN + payload_len;
        if frame.len() < total {
            return Err(Malformed::BufferTooSmall);
        }
        let udp_len = udp::emit(
            &mut frame[eth_len + ip_len..],
            src_ip,
            self.src.port(),
            dst_ip,
            self.dst.port(),
            payload_len,
        )?;
        match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::emit(
                &mut frame[eth_len..],
                s,
                d,
                udp::PROTO,
                self.hop_limit,
                udp_len,
            )?,
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6::emit(
                &mut frame[eth_len..],
                &s,
                &d,
                udp::PROTO,
                self.hop_limit,
                udp_len,
            )?,
            _ => return Err(Malformed::MixedFamilies),
        };
        ethernet::emit(frame, self.dst_mac, self.src_mac, self.vlan, ethertype)?;
        Ok(total)
    }

    /// Copies `payload` behind the headers and writes them; returns the frame's length.
    pub fn emit_with(&self, frame: &mut [u8], payload: &[u8]) -> Result<usize, Malformed> {
        let h = self.header_len();
        frame
            .get_mut(h..h + payload.len())
            .ok_or(Malformed::BufferTooSmall)?
            .copy_from_slice(payload);
        self.emit(frame, payload.len())
    }
}

/// A parsed UDP frame, borrowing its bytes: the addresses and the payload's place.
///
/// [`parse`](Self::parse) checks every length, the IP version, the IPv4 header checksum and
/// that the datagram is not a fragment; the UDP checksum is checked on request
/// ([`udp_checksum_ok`](Self::udp_checksum_ok)).
#[derive(Debug, Clone, Copy)]
pub struct UdpFrame<'a> {
    bytes: &'a [u8],
    addressing: Addressing,
    /// Where the UDP header starts, and the UDP length.
    udp_off: usize,
    udp_len: usize,
}

impl<'a> UdpFrame<'a> {
    /// Parses Ethernet (with an optional VLAN tag), IPv4 or IPv6 and UDP.
    pub fn parse(bytes: &'a [u8]) -> Result<UdpFrame<'a>, Malformed> {
        let eth = ethernet::Frame::new_checked(bytes)?;
        let l3 = eth.payload();
        // Offsets come from header lengths (each view ends at its own length field, so
        // suffix lengths do not give positions in `bytes`).
        let (src_ip, dst_ip, hop, l4, l4_off): (IpAddr, IpAddr, u8, &[u8], usize) = match eth
            .ethertype()
        {
            ETHERTYPE_IPV4 => {
                let ip = ipv4::Packet::new_checked(l3)?;
                if ip.protocol() != ipv4::PROTO_UDP {
                    return Err(Malformed::NotUdp);
                }
                if ip.is_fragment() {
                    return Err(Malformed::Fragment);
                }
                if !ip.checksum_ok() {
                    return Err(Malformed::BadChecksum);
                }
                let off = eth.header_len() + ip.header_len();
                (
                    ip.src().into(),
                    ip.dst().into(),
                    ip.ttl(),
                    ip.payload(),
                    off,
                )
            }
            ETHERTYPE_IPV6 => {
                let ip = ipv6::Packet::new_checked(l3)?;
                let (next, rest) = ip.upper_layer()?;
                if next != ipv6::NEXT_UDP {
                    return Err(Malformed::NotUdp);
                }
                // rest is a suffix of the payload: the extension headers are the difference.
                let off = eth.header_len() + ipv6::HEADER_LEN + (ip.payload().len() - rest.len());
                (ip.src().into(), ip.dst().into(), ip.hop_limit(), rest, off)
            }
            _ => return Err(Malformed::NotUdp),
        };
        let u = udp::Packet::new_checked(l4)?;
        let udp_off = l4_off;
        Ok(UdpFrame {
            bytes,
            addressing: Addressing {
                src_mac: eth.src(),
                dst_mac: eth.dst(),
                vlan: eth.vlan(),
                src: SocketAddr::new(src_ip, u.src_port()),
                dst: SocketAddr::new(dst_ip, u.dst_port()),
                hop_limit: hop,
            },
            udp_off,
            udp_len: u.len(),
        })
    }

    /// Every address of the frame.
    pub fn addressing(&self) -> &Addressing {
        &self.addressing
    }
    /// Source IP address and port.
    pub fn source(&self) -> SocketAddr {
        self.addressing.src
    }
    /// Destination IP address and port.
    pub fn destination(&self) -> SocketAddr {
        self.addressing.dst
    }
    /// The UDP payload.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes
            .get(self.udp_off + udp::HEADER_LEN..self.udp_off + self.udp_len)
            .unwrap_or(&[])
    }
    /// Where the UDP payload lies in the frame's bytes.
    pub fn payload_range(&self) -> std::ops::Range<usize> {
        let start = (self.udp_off + udp::HEADER_LEN).min(self.bytes.len());
        start..(self.udp_off + self.udp_len).clamp(start, self.bytes.len())
    }
    /// The whole frame as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Whether the UDP checksum is right (a zero field passes on IPv4, fails on IPv6).
    pub fn udp_checksum_ok(&self) -> bool {
        let d = self
            .bytes
            .get(self.udp_off..self.udp_off + self.udp_len)
            .unwrap_or(&[]);
        udp::Packet::new_checked(d)
            .is_ok_and(|u| u.checksum_ok(self.addressing.src.ip(), self.addressing.dst.ip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressing(v6: bool, vlan: Option<Vlan>) -> Addressing {
        let (s, d): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("10.1.2.3".parse().unwrap(), "10.1.2.4".parse().unwrap())
        };
        Addressing {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan,
            src: SocketAddr::new(s, 40000),
            dst: SocketAddr::new(d, 53),
            hop_limit: 64,
        }
    }

    #[test]
    fn build_then_parse_every_combination() {
        for v6 in [false, true] {
            for vlan in [None, Some(Vlan::new(100))] {
                let a = addressing(v6, vlan);
                let mut f = [0u8; 200];
                let n = a.emit_with(&mut f, b"query").unwrap();
                assert_eq!(n, a.header_len() + 5);
                let p = UdpFrame::parse(&f[..n]).unwrap();
                assert_eq!(p.addressing(), &a);
                assert_eq!(p.payload(), b"query");
                assert!(p.udp_checksum_ok());
                // The reply turns everything around, and parses back to that.
                let r = p.addressing().reply();
                assert_eq!((r.src, r.dst, r.src_mac), (a.dst, a.src, a.dst_mac));
                let n = r.emit_with(&mut f, b"answer!").unwrap();
                let q = UdpFrame::parse(&f[..n]).unwrap();
                assert_eq!(q.addressing(), &r);
                assert_eq!(q.payload(), b"answer!");
                assert!(q.udp_checksum_ok());
                // Ethernet padding after the datagram is not payload.
                let mut padded = f[..n].to_vec();
                padded.extend_from_slice(&[0xee; 10]);
                assert_eq!(UdpFrame::parse(&padded).unwrap().payload(), b"answer!");
                // A flipped payload bit fails the UDP checksum only.
                f[n - 1] ^= 1;
                let q = UdpFrame::parse(&f[..n]).unwrap();
                assert!(!q.udp_checksum_ok());
            }
        }
    }

    #[test]
    fn non_udp_and_broken_frames_are_told_apart() {
        let a = addressing(false, None);
        let mut f = [0u8; 100];
        let n = a.emit_with(&mut f, b"x").unwrap();
        // Every prefix of a valid frame is refused without a panic.
        for cut in 0..n {
            assert!(UdpFrame::parse(&f[..cut]).is_err(), "prefix {cut}");
        }
        let mut g = f;
        g[14 + 9] = 6; // TCP
        assert_eq!(UdpFrame::parse(&g[..n]).unwrap_err(), Malformed::NotUdp);
        let mut g = f;
        g[14 + 8] = 1; // TTL changed, header checksum not
        assert_eq!(
            UdpFrame::parse(&g[..n]).unwrap_err(),
            Malformed::BadChecksum
        );
        let mut g = f;
        g[12] = 0x08;
        g[13] = 0x06; // ARP
        assert_eq!(UdpFrame::parse(&g[..n]).unwrap_err(), Malformed::NotUdp);
        let mixed = Addressing {
            dst: "[fd00::9]:53".parse().unwrap(),
            ..a
        };
        assert_eq!(mixed.emit_with(&mut f, b"x"), Err(Malformed::MixedFamilies));
        assert_eq!(
            a.emit_with(&mut f[..40], b"x"),
            Err(Malformed::BufferTooSmall)
        );
    }

    #[test]
    fn a_frame_captured_with_vlan_tag_parses() {
        // Hand-written bytes (not built by this module): VLAN 7 priority 3, IPv4 with a
        // 4-byte option, UDP 5353 -> 53, payload "hi", UDP checksum 0 (none).
        let mut f = vec![
            0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x81, 0x00, 0x60, 0x07, 0x08, 0x00,
        ];
        let ip_start = f.len();
        f.extend_from_slice(&[
            0x46, 0, 0, 34, 0, 1, 0, 0, 64, 17, 0, 0, 192, 168, 1, 1, 192, 168, 1, 2, 1, 1, 1, 0,
        ]);
        f.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 10, 0, 0, b'h', b'i']);
        let c = crate::wire::checksum::checksum(&f[ip_start..ip_start + 24]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
        let p = UdpFrame::parse(&f).unwrap();
        let v = p.addressing().vlan.unwrap();
        assert_eq!((v.id(), v.priority()), (7, 3));
        assert_eq!(p.source(), "192.168.1.1:5353".parse().unwrap());
        assert_eq!(p.destination(), "192.168.1.2:53".parse().unwrap());
        assert_eq!(p.payload(), b"hi");
        assert!(p.udp_checksum_ok());
    }
}

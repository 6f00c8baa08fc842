//! Ethernet II frames with at most one 802.1Q VLAN tag.

use std::fmt;
use std::str::FromStr;

use super::{be16, put16, Malformed};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Tag protocol identifier of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Whether the group bit is set (broadcast or multicast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = Malformed;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    fn from_str(s: &str) -> Result<Self, Malformed> {
        let mut m = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut m {
            let p = parts.next().ok_or(Malformed::BadHeader)?;
            if p.is_empty() || p.len() > 2 {
                return Err(Malformed::BadHeader);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| Malformed::BadHeader)?;
        }
        if parts.next().is_some() {
            return Err(Malformed::BadHeader);
        }
        Ok(MacAddr(m))
    }
}

/// An 802.1Q tag control field: priority (3 bits), drop eligible (1), VLAN id (12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vlan {
    /// The whole tag control information field.
    pub tci: u16,
}

impl Vlan {
    /// A tag for VLAN `id` (low 12 bits), priority 0.
    pub fn new(id: u16) -> Vlan {
        Vlan { tci: id & 0x0fff }
    }
    /// The VLAN id.
    pub fn id(&self) -> u16 {
        self.tci & 0x0fff
    }
    /// The priority code point.
    pub fn priority(&self) -> u8 {
        (self.tci >> 13) as u8
    }
}

/// A view of an Ethernet frame (bounds checked once, by [`Frame::new_checked`]).
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    vlan: Option<Vlan>,
    header_len: usize,
}

impl<'a> Frame<'a> {
    /// Checks that `bytes` holds a whole Ethernet header (and the VLAN tag it announces).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Frame<'a>, Malformed> {
        if bytes.len() < HEADER_LEN {
            return Err(Malformed::Truncated);
        }
        let (vlan, header_len) = if be16(bytes, 12) == ETHERTYPE_VLAN {
            if bytes.len() < HEADER_LEN + VLAN_TAG_LEN {
                return Err(Malformed::Truncated);
            }
            (
                Some(Vlan {
                    tci: be16(bytes, 14),
                }),
                HEADER_LEN + VLAN_TAG_LEN,
            )
        } else {
            (None, HEADER_LEN)
        };
        Ok(Frame {
            bytes,
            vlan,
            header_len,
        })
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        MacAddr(mac_at(self.bytes, 0))
    }
    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        MacAddr(mac_at(self.bytes, 6))
    }
    /// The VLAN tag, if the frame has one.
    pub fn vlan(&self) -> Option<Vlan> {
        self.vlan
    }
    /// The ethertype of the payload (after the VLAN tag, if any).
    pub fn ethertype(&self) -> u16 {
        be16(self.bytes, self.header_len - 2)
    }
    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// What follows the header.
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(self.header_len..).unwrap_or(&[])
    }
}

fn mac_at(b: &[u8], off: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(off..off + 6) {
        m.copy_from_slice(s);
    }
    m
}

/// The header length for a frame with or without a VLAN tag.
pub fn header_len(vlan: Option<Vlan>) -> usize {
    HEADER_LEN + if vlan.is_some() { VLAN_TAG_LEN } else { 0 }
}

/// Writes an Ethernet header at the start of `buf`; returns its length.
pub fn emit(
    buf: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    vlan: Option<Vlan>,
    ethertype: u16,
) -> Result<usize, Malformed> {
    let len = header_len(vlan);
    let h = buf.get_mut(..len).ok_or(Malformed::BufferTooSmall)?;
    h[0..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    if let Some(v) = vlan {
        put16(h, 12, ETHERTYPE_VLAN);
        put16(h, 14, v.tci);
    }
    put16(h, len - 2, ethertype);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tag_round_trips() {
        let mut b = [0u8; 20];
        let v = Vlan {
            tci: (5 << 13) | 42,
        };
        let n = emit(&mut b, MacAddr([1; 6]), MacAddr([2; 6]), Some(v), 0x0800).unwrap();
        assert_eq!(n, 18);
        assert_eq!(&b[12..14], &[0x81, 0x00]);
        let f = Frame::new_checked(&b).unwrap();
        assert_eq!(f.vlan().map(|v| (v.id(), v.priority())), Some((42, 5)));
        assert_eq!(f.ethertype(), 0x0800);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.dst(), MacAddr([1; 6]));
        assert_eq!(f.src(), MacAddr([2; 6]));
        assert_eq!(f.payload().len(), 2);
        // A tag announced but cut off.
        assert_eq!(
            Frame::new_checked(&b[..16]).unwrap_err(),
            Malformed::Truncated
        );
        assert_eq!(
            Frame::new_checked(&b[..13]).unwrap_err(),
            Malformed::Truncated
        );
        assert_eq!(
            emit(
                &mut b[..17],
                MacAddr::BROADCAST,
                MacAddr([2; 6]),
                Some(v),
                1
            ),
            Err(Malformed::BufferTooSmall)
        );
    }

    #[test]
    fn mac_parses_and_prints() {
        let m: MacAddr = "02:6f:0A:ff:00:1b".parse().unwrap();
        assert_eq!(m.to_string(), "02:6f:0a:ff:00:1b");
        assert!("02:6f:0a:ff:00".parse::<MacAddr>().is_err());
        assert!("02:6f:0a:ff:00:1b:00".parse::<MacAddr>().is_err());
        assert!("02:6f:0a:ff:00:1bb".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast() && !m.is_multicast());
    }
}

//! [`XdpFilter`]: which received packets a port takes from its interface; the rest stays with
//! the host stack.
//!
//! The rule is documented on the type.

use std::fmt;

/// 802.1Q VLAN tag.
const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ) service tag.
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;

/// The most ethertypes one filter holds (UDP ports are not limited).
pub const MAX_ETHERTYPES: usize = 8;

/// Which packets a port takes from its interface: UDP destination ports and ethertypes.
/// Everything else reaches the host stack as if the port were not open.
///
/// A filter is a set of UDP destination ports (IPv4 and IPv6) and a set of ethertypes. A frame
/// matches when its ethertype, read after at most two VLAN tags (802.1Q `0x8100`, 802.1ad
/// `0x88a8`), is in the ethertype set, or when it is a UDP datagram (or the first fragment of
/// one) whose destination port is in the port set:
///
/// - IPv4: the UDP header starts after the IP header's IHL words (options included);
///   fragments other than the first carry no UDP header and never match.
/// - IPv6: only a UDP header right after the fixed 40-byte header matches; a packet with
///   extension headers (fragments included) does not match and goes to the host.
/// - A frame too short for the header being read does not match.
///
/// [`XdpFilter::matches`] is that rule in Rust; the AF_XDP program and the AF_PACKET socket
/// filter implement the same one in the kernel (see the README's Port names and Backends).
/// On `xdp:` the rest gets `XDP_PASS`; `afpacket:` is a tap, so there the host sees every
/// packet anyway and the filter spares the port the rest; the netmap module and emulated
/// pipes refuse a filter.
///
/// In a port name the filter is the last suffix, after `#`: `xdp:eth0#udp=53`,
/// `xdp:eth0-1#udp=53,5353`, `xdp:eth0#ether=0x88b5,udp=4789` (a number after a comma without
/// `kind=` is of the kind before it).
///
/// ```
/// use netmap_rs::XdpFilter;
/// let dns = XdpFilter::udp_ports(&[53, 5353]).ethertype(0x88b5);
/// assert_eq!(dns.to_string(), "udp=53,5353,ether=0x88b5");
/// assert_eq!("udp=53,5353,ether=0x88b5".parse::<XdpFilter>().unwrap(), dns);
/// // Opened as `xdp:eth0#udp=53,5353,ether=0x88b5`, or with NetmapBuilder::filter(dns).
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct XdpFilter {
    /// Sorted, no duplicates.
    ports: Vec<u16>,
    /// In the order given, no duplicates.
    ethertypes: Vec<u16>,
}

impl XdpFilter {
    /// Datagrams to UDP port `port` (IPv4 and IPv6).
    pub fn udp_port(port: u16) -> XdpFilter {
        XdpFilter::udp_ports(&[port])
    }

    /// Datagrams to any of `ports` (IPv4 and IPv6).
    pub fn udp_ports(ports: &[u16]) -> XdpFilter {
        XdpFilter::default().with_udp_ports(ports)
    }

    /// Adds datagrams to any of `ports` to what the filter takes.
    pub fn with_udp_ports(mut self, ports: &[u16]) -> XdpFilter {
        self.ports.extend_from_slice(ports);
        self.ports.sort_unstable();
        self.ports.dedup();
        self
    }

    /// Adds frames of ethertype `ethertype` (host order, e.g. `0x88b5`; read after any VLAN
    /// tags) to what the filter takes. At most [`MAX_ETHERTYPES`] different ones; a port
    /// refuses to open with more.
    pub fn ethertype(mut self, ethertype: u16) -> XdpFilter {
        if !self.ethertypes.contains(&ethertype) {
            self.ethertypes.push(ethertype);
        }
        self
    }

    /// The UDP destination ports, sorted.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The ethertypes, in the order added.
    pub fn ethertypes(&self) -> &[u16] {
        &self.ethertypes
    }

    /// Whether the filter takes nothing (a port refuses to open with it).
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.ethertypes.is_empty()
    }

    /// Whether the filter takes `frame` (an Ethernet frame), by the rule in the
    /// [type documentation](XdpFilter): what the kernel-side filters decide.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
        };
        let Some(mut ethertype) = be16(12) else {
            return false;
        };
        let mut l3 = 14;
        for _ in 0..2 {
            if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
                break;
            }
            if frame.len() < l3 + 4 {
                return false;
            }
            ethertype = be16(l3 + 2).unwrap_or(0);
            l3 += 4;
        }
        if self.ethertypes.contains(&ethertype) {
            return true;
        }
        let udp = match ethertype {
            ETH_P_IPV4 => {
                if frame.len() < l3 + 20 || frame[l3 + 9] != IPPROTO_UDP {
                    return false;
                }
                if be16(l3 + 6).unwrap_or(0) & 0x1fff != 0 {
                    return false;
                }
                let ihl = usize::from(frame[l3] & 0xf) * 4;
                if ihl < 20 {
                    return false;
                }
                l3 + ihl
            }
            ETH_P_IPV6 => {
                if frame.len() < l3 + 40 || frame[l3 + 6] != IPPROTO_UDP {
                    return false;
                }
                l3 + 40
            }
            _ => return false,
        };
        if frame.len() < udp + 8 {
            return false;
        }
        be16(udp + 2).is_some_and(|p| self.ports.binary_search(&p).is_ok())
    }

    /// Parses the text after `#` in a port name; the error says what is wrong.
    pub(crate) fn parse_terms(text: &str) -> Result<XdpFilter, String> {
        let mut f = XdpFilter::default();
        let mut kind: Option<&str> = None;
        for term in text.split(',') {
            let (k, value) = match term.split_once('=') {
                Some((k, v)) => (k, v),
                None => match kind {
                    Some(k) => (k, term),
                    None => {
                        return Err(format!(
                            "filter term {term:?} needs a kind: udp=PORT or ether=TYPE"
                        ))
                    }
                },
            };
            match k {
                "udp" => {
                    let p = value.parse::<u16>().map_err(|_| {
                        format!("UDP port {value:?} must be a decimal number in 0..=65535")
                    })?;
                    f = f.with_udp_ports(&[p]);
                }
                "ether" => {
                    let t = match value.strip_prefix("0x").or(value.strip_prefix("0X")) {
                        Some(hex) => u16::from_str_radix(hex, 16),
                        None => value.parse::<u16>(),
                    }
                    .map_err(|_| {
                        format!("ethertype {value:?} must be a number in 0..=0xffff (0x88b5)")
                    })?;
                    f = f.ethertype(t);
                }
                other => {
                    return Err(format!(
                        "unknown filter kind {other:?} (known: udp=PORT, ether=TYPE)"
                    ))
                }
            }
            kind = Some(k);
        }
        f.check()?;
        Ok(f)
    }

    /// Refuses filters no kernel program can hold: empty, or too many ethertypes.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err("the filter takes nothing: give at least one UDP port or ethertype".into());
        }
        if let Some(t) = self.ethertypes.iter().find(|&&t| t < 0x0600) {
            return Err(format!(
                "ethertype {t:#06x} is an 802.3 length, not a type: ethertypes start at 0x0600"
            ));
        }
        if self.ethertypes.len() > MAX_ETHERTYPES {
            return Err(format!(
                "the filter has {} ethertypes; at most {MAX_ETHERTYPES} are supported",
                self.ethertypes.len()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for XdpFilter {
    /// The suffix text after `#` (`udp=53,5353,ether=0x88b5`), which parses back to an equal
    /// filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (i, p) in self.ports.iter().enumerate() {
            let kind = if i == 0 { "udp=" } else { "" };
            write!(f, "{sep}{kind}{p}")?;
            sep = ",";
        }
        for (i, t) in self.ethertypes.iter().enumerate() {
            let kind = if i == 0 { "ether=" } else { "" };
            write!(f, "{sep}{kind}{t:#06x}")?;
            sep = ",";
        }
        Ok(())
    }
}

impl std::str::FromStr for XdpFilter {
    type Err = crate::error::Error;

    /// Parses the suffix text (`udp=53,5353,ether=0x88b5`).
    fn from_str(s: &str) -> Result<XdpFilter, Self::Err> {
        XdpFilter::parse_terms(s).map_err(|reason| crate::error::Error::InvalidPortName {
            name: format!("#{s}"),
            reason,
        })
    }
}

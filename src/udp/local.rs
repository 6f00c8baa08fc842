//! [`Local`]: what a UDP endpoint answers to and sends from.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::error::Error;
use crate::wire::ethernet::Vlan;
use crate::wire::MacAddr;

/// The local side of a UDP endpoint: its UDP port, MAC, IP addresses, VLAN, and static
/// neighbours. Learned from the interface ([`Local::from_interface`], what
/// [`UdpPort::bind`](super::UdpPort::bind) does for an interface port) or given by hand
/// (pipes, tests, or to narrow what is answered).
///
/// Receiving, a datagram is for this endpoint when its destination port is
/// [`port`](Self::port) (0: any port), its destination IP is one of [`ips`](Self::ips)
/// (when any are given; multicast and broadcast are not accepted then), and, with a VLAN
/// set, it carries that VLAN id. Everything else is skipped (counted as not ours).
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub(crate) port: u16,
    pub(crate) mac: MacAddr,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) vlan: Option<Vlan>,
    pub(crate) neighbours: HashMap<IpAddr, MacAddr>,
    pub(crate) verify_udp_checksum: bool,
    /// The interface to ask the kernel about routes and neighbours (name, index).
    pub(crate) interface: Option<(String, u32)>,
}

impl Local {
    /// A local side on UDP `port` (0: every port), no addresses (every destination IP is
    /// accepted; sending needs a source address: add one with [`ip`](Self::ip)).
    pub fn new(port: u16) -> Local {
        Local {
            port,
            ..Local::default()
        }
    }

    /// The local side of interface `ifname` on UDP `port`: its MAC and every IPv4 and IPv6
    /// address it has now (`RTM_GETLINK`, `RTM_GETADDR`), and the interface to ask for
    /// routes and neighbours when sending to a new destination.
    #[cfg(target_os = "linux")]
    pub fn from_interface(ifname: &str, port: u16) -> Result<Local, Error> {
        let (index, mac, ips) = super::resolve::interface_addresses(ifname)?;
        Ok(Local {
            port,
            mac,
            ips,
            interface: Some((ifname.to_string(), index)),
            ..Local::default()
        })
    }

    /// Sets the MAC address frames are sent from.
    pub fn mac(mut self, mac: MacAddr) -> Local {
        self.mac = mac;
        self
    }

    /// Adds a local IP address (accepted as a destination, used as a source).
    pub fn ip(mut self, ip: IpAddr) -> Local {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
        self
    }

    /// Sets the VLAN: only frames tagged with its id are accepted, and frames to new
    /// destinations are sent tagged. (Replies always carry the request's tag, if any.)
    pub fn vlan(mut self, vlan: Vlan) -> Local {
        self.vlan = Some(vlan);
        self
    }

    /// A static neighbour: frames to `ip` (or through it, as a gateway) go to `mac` without
    /// asking the kernel. Needed to send first on a port without an interface (a pipe).
    pub fn neighbour(mut self, ip: IpAddr, mac: MacAddr) -> Local {
        self.neighbours.insert(ip, mac);
        self
    }

    /// Drops datagrams whose UDP checksum is wrong (default: off, as Knot DNS's XDP path
    /// does). Off, because on a veth whose peer has TX checksum offload on the kernel
    /// leaves the checksum to "hardware" that never computes it, and every datagram would
    /// look bad; a real NIC has checked it already. The IPv4 header checksum is always
    /// checked.
    pub fn verify_udp_checksum(mut self, on: bool) -> Local {
        self.verify_udp_checksum = on;
        self
    }

    /// The UDP port (0: every port).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The local MAC address.
    pub fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    /// The local IP addresses.
    pub fn ips(&self) -> &[IpAddr] {
        &self.ips
    }

    /// The interface asked about routes and neighbours, if any.
    pub fn interface(&self) -> Option<&str> {
        self.interface.as_ref().map(|(n, _)| n.as_str())
    }

    /// Whether `ip` is a destination this side accepts.
    #[inline]
    pub(crate) fn accepts_ip(&self, ip: &IpAddr) -> bool {
        self.ips.is_empty() || self.ips.contains(ip)
    }

    /// The source address of the family of `dst`: the route's preferred source when it is
    /// ours, else the first local address of that family.
    pub(crate) fn source_for(
        &self,
        dst: &IpAddr,
        prefsrc: Option<IpAddr>,
    ) -> Result<IpAddr, Error> {
        if let Some(p) = prefsrc.filter(|p| self.ips.contains(p)) {
            return Ok(p);
        }
        self.ips
            .iter()
            .find(|ip| ip.is_ipv4() == dst.is_ipv4())
            .copied()
            .ok_or_else(|| Error::NoRoute {
                dst: *dst,
                reason: format!(
                    "the port has no local {} address (add one to the interface, `ip addr add`, \
                     or with Local::ip)",
                    if dst.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            })
    }
}

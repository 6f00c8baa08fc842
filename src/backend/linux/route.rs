//! The kernel's routing and neighbour tables over rtnetlink, for a UDP layer sending to a
//! new destination: which interface and next hop a destination takes (`RTM_GETROUTE`, as
//! `ip route get` asks), the next hop's MAC address (`RTM_GETNEIGH` dump, as `ip neigh`),
//! and an interface's own MAC (`RTM_GETLINK` `IFLA_ADDRESS`) and IP addresses
//! (`RTM_GETADDR`).
//!
//! Layouts written from `rtnetlink(7)`: `rtmsg` is 12 bytes (family, dst_len, src_len, tos,
//! table, protocol, scope, type: u8 each, flags: u32), `ndmsg` 12 (family u8, two pad bytes,
//! ifindex i32, state u16, flags u8, type u8), `ifaddrmsg` 8 (family, prefixlen, flags,
//! scope: u8, index u32).

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use super::netlink::{
    ack, attrs, finish, link_request, messages, open, put_u16, put_u32, roundtrip, u32_of, NlError,
};
use super::os;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;
const IFADDRMSG_LEN: usize = 8;

/// Neighbour states with a usable link-layer address (`NUD_REACHABLE`, `NUD_STALE`,
/// `NUD_DELAY`, `NUD_PROBE`, `NUD_NOARP`, `NUD_PERMANENT`); `NUD_INCOMPLETE` (0x01) and
/// `NUD_FAILED` (0x20) have none.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// Where the kernel would send a packet for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteInfo {
    /// Outgoing interface index.
    pub oif: u32,
    /// The gateway, when the destination is not on a connected network.
    pub gateway: Option<IpAddr>,
    /// The preferred source address, if the route names one.
    pub prefsrc: Option<IpAddr>,
}

impl RouteInfo {
    /// The neighbour to resolve for `dst`: the gateway, or `dst` itself.
    pub(crate) fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

fn family(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn ip_of(fam: u8, p: &[u8]) -> Option<IpAddr> {
    match (i32::from(fam), p.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
        (libc::AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(p);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

fn header(b: &mut Vec<u8>, msg_type: u16, flags: u16, seq: u32) {
    put_u32(b, 0);
    put_u16(b, msg_type);
    put_u16(b, flags);
    put_u32(b, seq);
    put_u32(b, 0);
}

/// `ip route get DST`: the route the kernel picks for `dst`.
pub(crate) fn route_get(dst: IpAddr) -> Result<RouteInfo, NlError> {
    let mut b = Vec::with_capacity(64);
    header(&mut b, libc::RTM_GETROUTE, libc::NLM_F_REQUEST as u16, 3);
    let octets: Vec<u8> = match dst {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    // rtmsg: family, dst_len, then zeros.
    b.push(family(&dst));
    b.push((octets.len() * 8) as u8);
    b.extend_from_slice(&[0u8; RTMSG_LEN - 2]);
    put_u16(&mut b, (4 + octets.len()) as u16);
    put_u16(&mut b, RTA_DST);
    b.extend_from_slice(&octets);
    let payload = roundtrip(&finish(b), libc::RTM_NEWROUTE)?.ok_or_else(|| {
        NlError::from(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_GETROUTE without data",
        ))
    })?;
    let fam = *payload.first().unwrap_or(&0);
    let mut r = RouteInfo {
        oif: 0,
        gateway: None,
        prefsrc: None,
    };
    for (ty, p) in attrs(payload.get(RTMSG_LEN..).unwrap_or(&[])) {
        match ty {
            RTA_OIF => r.oif = u32_of(p),
            RTA_GATEWAY => r.gateway = ip_of(fam, p),
            RTA_PREFSRC => r.prefsrc = ip_of(fam, p),
            _ => {}
        }
    }
    Ok(r)
}

/// Sends a dump request and calls `each(payload)` for every message of type `want` until
/// `NLMSG_DONE`.
fn dump(req: &[u8], want: u16, mut each: impl FnMut(&[u8])) -> Result<(), NlError> {
    let fd = open()?;
    os::send(fd.as_fd(), req)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = os::recv(fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        for (ty, flags, payload) in messages(&buf[..n]) {
            if ty == libc::NLMSG_DONE as u16 {
                return Ok(());
            }
            if ty == libc::NLMSG_ERROR as u16 {
                return ack(payload, flags);
            }
            if ty == want {
                each(payload);
            }
        }
    }
}

/// What the neighbour table says about `ip` on interface `ifindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Neighbour {
    /// A usable entry with this MAC.
    Known([u8; 6]),
    /// An entry without a usable address (incomplete, failed), with its `NUD_*` state.
    Unresolved(u16),
    /// No entry.
    Absent,
}

/// `ip neigh show dev IF to IP`.
pub(crate) fn neigh_get(ifindex: u32, ip: IpAddr) -> Result<Neighbour, NlError> {
    let mut b = Vec::with_capacity(32);
    header(
        &mut b,
        libc::RTM_GETNEIGH,
        (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        4,
    );
    b.push(family(&ip));
    b.extend_from_slice(&[0u8; NDMSG_LEN - 1]);
    let mut found = Neighbour::Absent;
    dump(&finish(b), libc::RTM_NEWNEIGH, |p| {
        if p.len() < NDMSG_LEN {
            return;
        }
        let index = u32_of(&p[4..8]);
        let state = u16::from_ne_bytes([p[8], p[9]]);
        if index != ifindex {
            return;
        }
        let (mut dst, mut ll) = (None, None);
        for (ty, v) in attrs(&p[NDMSG_LEN..]) {
            match ty {
                NDA_DST => dst = ip_of(p[0], v),
                NDA_LLADDR if v.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(v);
                    ll = Some(m);
                }
                _ => {}
            }
        }
        if dst != Some(ip) {
            return;
        }
        found = match ll {
            Some(m) if state & NUD_USABLE != 0 => Neighbour::Known(m),
            _ => Neighbour::Unresolved(state),
        };
    })?;
    Ok(found)
}

/// The IPv4 and IPv6 addresses of interface `ifindex` (`ip addr show dev IF`).
pub(crate) fn addresses(ifindex: u32) -> Result<Vec<IpAddr>, NlError> {
    let mut b = Vec::with_capacity(32);
    header(
        &mut b,
        libc::RTM_GETADDR,
        (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        5,
    );
    b.push(libc::AF_UNSPEC as u8);
    b.extend_from_slice(&[0u8; IFADDRMSG_LEN - 1]);
    let mut out = Vec::new();
    dump(&finish(b), libc::RTM_NEWADDR, |p| {
        if p.len() < IFADDRMSG_LEN || u32_of(&p[4..8]) != ifindex {
            return;
        }
        let (mut local, mut address) = (None, None);
        for (ty, v) in attrs(&p[IFADDRMSG_LEN..]) {
            match ty {
                IFA_LOCAL => local = ip_of(p[0], v),
                IFA_ADDRESS => address = ip_of(p[0], v),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address on point-to-point links, where
        // IFA_ADDRESS is the peer's.
        if let Some(a) = local.or(address) {
            out.push(a);
        }
    })?;
    Ok(out)
}

/// The MAC address of interface `ifindex` (`IFLA_ADDRESS`), if it has a 6-byte one.
pub(crate) fn link_mac(ifindex: u32) -> Result<Option<[u8; 6]>, NlError> {
    let req = finish(link_request(
        libc::RTM_GETLINK,
        libc::NLM_F_REQUEST as u16,
        ifindex,
        6,
    ));
    let payload = roundtrip(&req, libc::RTM_NEWLINK)?.unwrap_or_default();
    let ifinfo = size_of::<libc::ifinfomsg>();
    let mac = attrs(payload.get(ifinfo..).unwrap_or(&[]))
        .find(|&(ty, v)| ty == IFLA_ADDRESS && v.len() == 6)
        .map(|(_, v)| {
            let mut m = [0u8; 6];
            m.copy_from_slice(v);
            m
        });
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_route_addresses_and_neighbours() {
        // Needs no privilege: reading the tables is open to every process.
        let r = route_get("127.0.0.1".parse().unwrap()).expect("route to 127.0.0.1");
        assert_eq!(r.oif, 1, "127.0.0.1 leaves through lo: {r:?}");
        assert_eq!(r.gateway, None);
        let addrs = addresses(1).expect("addresses of lo");
        assert!(
            addrs.contains(&"127.0.0.1".parse().unwrap()),
            "lo has 127.0.0.1: {addrs:?}"
        );
        // lo has an all-zero MAC; a neighbour dump for it finds nothing for a made-up IP.
        assert_eq!(link_mac(1).unwrap(), Some([0; 6]));
        assert_eq!(
            neigh_get(1, "127.0.0.9".parse().unwrap()).unwrap(),
            Neighbour::Absent
        );
    }
}

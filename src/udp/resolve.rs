//! Addressing a datagram to a new destination: source address, next hop and its MAC, from
//! the kernel's route and neighbour tables (Linux, rtnetlink), with a cache.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::local::Local;
use crate::error::Error;
use crate::wire::{Addressing, MacAddr};

/// How long a looked-up neighbour is used before it is asked for again (the kernel's own
/// entries go stale after about 30 s; a changed MAC is seen within this).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// TTL / hop limit of datagrams to new destinations.
const HOP_LIMIT: u8 = 64;

/// The cache of destinations already resolved.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    cache: HashMap<IpAddr, (IpAddr, MacAddr, Instant)>,
}

impl Resolver {
    /// The addressing of a datagram from `local` to `dst`.
    pub(crate) fn addressing(
        &mut self,
        local: &Local,
        dst: SocketAddr,
    ) -> Result<Addressing, Error> {
        let ip = dst.ip();
        let now = Instant::now();
        let (src_ip, mac) = match self.cache.get(&ip) {
            Some(&(src, mac, at)) if now.duration_since(at) < CACHE_TTL => (src, mac),
            _ => {
                let (src, mac) = lookup(local, ip)?;
                if self.cache.len() > 4096 {
                    self.cache.clear();
                }
                self.cache.insert(ip, (src, mac, now));
                (src, mac)
            }
        };
        Ok(Addressing {
            src_mac: local.mac,
            dst_mac: mac,
            vlan: local.vlan,
            src: SocketAddr::new(src_ip, local.port),
            dst,
            hop_limit: HOP_LIMIT,
        })
    }
}

/// Source address and next-hop MAC for `dst`: a static neighbour first, else the kernel.
fn lookup(local: &Local, dst: IpAddr) -> Result<(IpAddr, MacAddr), Error> {
    if let Some(&mac) = local.neighbours.get(&dst) {
        return Ok((local.source_for(&dst, None)?, mac));
    }
    match &local.interface {
        #[cfg(target_os = "linux")]
        Some((name, index)) => kernel_lookup(local, name, *index, dst),
        _ => Err(Error::NoRoute {
            dst,
            reason: "this port has no interface to ask for routes and neighbours (a pipe, or \
                     a Local without one): add the destination with Local::neighbour(ip, mac), \
                     or reply to a datagram received from it"
                .into(),
        }),
    }
}

#[cfg(target_os = "linux")]
fn kernel_lookup(
    local: &Local,
    name: &str,
    index: u32,
    dst: IpAddr,
) -> Result<(IpAddr, MacAddr), Error> {
    use crate::backend::linux::route::{neigh_get, route_get, Neighbour};
    let route = route_get(dst).map_err(|e| Error::NoRoute {
        dst,
        reason: format!("the kernel has no route to it ({e})"),
    })?;
    if route.oif != index {
        return Err(Error::NoRoute {
            dst,
            reason: format!(
                "its route leaves through interface index {} ({}), not {name:?} (index {index}) \
                 where this port is",
                route.oif,
                interface_name(route.oif)
            ),
        });
    }
    let src = local.source_for(&dst, route.prefsrc)?;
    let hop = route.next_hop(dst);
    if let Some(&mac) = local.neighbours.get(&hop) {
        return Ok((src, mac));
    }
    let state = match neigh_get(index, hop).map_err(|e| Error::NoRoute {
        dst,
        reason: format!("reading the neighbour table failed ({e})"),
    })? {
        Neighbour::Known(m) => return Ok((src, MacAddr(m))),
        Neighbour::Absent => "no entry".to_string(),
        Neighbour::Unresolved(0x01) => "resolution incomplete".to_string(),
        Neighbour::Unresolved(0x20) => "resolution failed".to_string(),
        Neighbour::Unresolved(s) => format!("state {s:#x}, no address"),
    };
    Err(Error::NeighbourUnresolved {
        ip: hop,
        interface: name.to_string(),
        state,
    })
}

#[cfg(target_os = "linux")]
fn interface_name(index: u32) -> String {
    std::fs::read_dir("/sys/class/net")
        .ok()
        .and_then(|d| {
            d.flatten().find_map(|e| {
                let idx = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
                (idx.trim().parse::<u32>().ok()? == index)
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        })
        .unwrap_or_else(|| "unknown name".into())
}

/// Index, MAC and addresses of interface `ifname`.
#[cfg(target_os = "linux")]
pub(crate) fn interface_addresses(ifname: &str) -> Result<(u32, MacAddr, Vec<IpAddr>), Error> {
    use crate::backend::linux::route::{addresses, link_mac};
    let iface = crate::backend::linux::iface::Interface::lookup(ifname)?;
    let err = |what: &str, e: crate::backend::linux::netlink::NlError| {
        Error::no_such_interface(ifname, format!("reading its {what} over rtnetlink: {e}"))
    };
    let mac = link_mac(iface.index)
        .map_err(|e| err("MAC address", e))?
        .unwrap_or([0; 6]);
    let ips = addresses(iface.index).map_err(|e| err("addresses", e))?;
    Ok((iface.index, MacAddr(mac), ips))
}

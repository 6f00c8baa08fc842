//! Filtered ports on a veth pair: the port takes what its filter matches (IPv4, IPv6, VLAN,
//! from the peer's own sockets and from raw frames), and the host keeps everything else
//! while the port is open and receiving (a ping, a UDP socket on another port).

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use super::ports::ns_udp;
use super::sockets::PATIENCE;
use super::testnet::{require_net, VethPair};
use crate::backend::afpacket::tpacket::{PacketConfig, PacketSocket};
use crate::sync::{Netmap, NetmapBuilder};
use crate::XdpFilter;

/// The ethertype of an Ethernet frame after its VLAN tags, and where its header starts.
fn l3(f: &[u8]) -> Option<(u16, usize)> {
    let mut l3 = 14;
    let mut t = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    while t == 0x8100 || t == 0x88a8 {
        t = u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]);
        l3 += 4;
    }
    Some((t, l3))
}

/// The UDP destination port of an Ethernet frame (after VLAN tags, IPv4 or IPv6), if any.
pub(super) fn udp_dst(f: &[u8]) -> Option<u16> {
    let (t, l3) = l3(f)?;
    let udp = match t {
        0x0800 if *f.get(l3 + 9)? == 17 => l3 + usize::from(f[l3] & 0xf) * 4,
        0x86dd if *f.get(l3 + 6)? == 17 => l3 + 40,
        _ => return None,
    };
    Some(u16::from_be_bytes([*f.get(udp + 2)?, *f.get(udp + 3)?]))
}

/// A raw UDP frame from `b` to `a`: IPv4 (optionally behind VLAN tags) or IPv6, to `dport`.
/// Checksums are left zero: the port reads frames, no stack checks them.
pub(super) fn raw_udp(pair: &VethPair, tags: &[u16], v6: bool, dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&pair.mac_a);
    f.extend_from_slice(&pair.mac_b);
    for &t in tags {
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(&[0, 7]);
    }
    let payload = b"filtered";
    let udp_len = (8 + payload.len()) as u16;
    if v6 {
        f.extend_from_slice(&0x86ddu16.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&udp_len.to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&pair.ip_b.octets());
        ip[16..20].copy_from_slice(&pair.ip_a.octets());
        let c = super::testnet::ip_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A packet socket on the namespace end, for raw frames towards `a`.
pub(super) fn ns_raw(pair: &VethPair) -> PacketSocket {
    let b = pair.b.clone();
    pair.in_ns(move || PacketSocket::new(&b, &PacketConfig::default()).unwrap())
}

/// Receives frames on every RX ring of `nm` until `want` have arrived (panics after
/// `PATIENCE`), then once more whatever is already there; returns them all.
pub(super) fn receive(nm: &Netmap, want: usize) -> Vec<Vec<u8>> {
    let mut rings: Vec<_> = (0..nm.num_rx_rings())
        .map(|i| nm.rx_ring(i).unwrap())
        .collect();
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        for rx in &mut rings {
            rx.sync().unwrap();
            while let Some(f) = rx.recv() {
                got.push(f.payload().to_vec());
            }
        }
        if got.len() >= want {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {want} frames arrived: {:?}",
            got.len(),
            got.iter().map(|f| udp_dst(f)).collect::<Vec<_>>()
        );
        nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
    }
}

/// `ping -c 1` from the namespace to `a`: whether a reply came.
pub(super) fn ping_a(pair: &VethPair) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &pair.ns, "ping", "-c", "1", "-W", "5"])
        .arg(pair.ip_a.to_string())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A UDP socket of the host on `a`'s address.
pub(super) fn host_udp(pair: &VethPair, port: u16) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddrV4::new(pair.ip_a, port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Counts the datagrams `s` receives, by payload, until `n` arrived.
pub(super) fn host_receives(s: &UdpSocket, n: usize) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let len = s
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("host datagram {i} of {n} never arrived: {e}"));
        *seen.entry(buf[..len].to_vec()).or_default() += 1;
    }
    seen
}

fn filtered_port_takes_its_traffic_and_leaves_the_rest(prefix: &str, by_name: bool) {
    let pair = VethPair::new();
    let (port, other) = (7100u16, 7200u16);
    let nm = if by_name {
        Netmap::open(&format!("{prefix}:{}#udp={port}", pair.a)).unwrap()
    } else {
        NetmapBuilder::new(&format!("{prefix}:{}", pair.a))
            .filter(XdpFilter::udp_port(port))
            .build()
            .unwrap()
    };
    assert_eq!(nm.name(), format!("{prefix}:{}#udp={port}", pair.a));
    let host = host_udp(&pair, other);
    let out = ns_udp(&pair, 0);
    let raw = std::sync::Mutex::new(ns_raw(&pair));
    let send_raw = |f: Vec<u8>| {
        let mut raw = raw.lock().unwrap();
        assert!(raw.send(&f).unwrap());
        raw.kick().unwrap();
    };
    let rounds = 3;
    for round in 0..rounds {
        let msg = format!("round {round}");
        out.send_to(msg.as_bytes(), SocketAddrV4::new(pair.ip_a, port))
            .unwrap();
        out.send_to(msg.as_bytes(), SocketAddrV4::new(pair.ip_a, other))
            .unwrap();
        // The host answers a ping while the port is open and receiving.
        assert!(ping_a(&pair), "ping through {} failed", nm.name());
    }
    // IPv6, VLAN and QinQ frames to the port's UDP port; IPv6 to another port and a VLAN
    // frame to another port must not reach it.
    send_raw(raw_udp(&pair, &[], true, port));
    send_raw(raw_udp(&pair, &[0x8100], false, port));
    send_raw(raw_udp(&pair, &[0x88a8, 0x8100], true, port));
    send_raw(raw_udp(&pair, &[], true, other));
    send_raw(raw_udp(&pair, &[0x8100], false, other));
    let want = rounds + 3;
    let got = receive(&nm, want);
    // The host's socket got every datagram to its port.
    let seen = host_receives(&host, rounds);
    assert_eq!(seen.len(), rounds, "{seen:?}");
    // A last frame to the port, sent after everything else: once it arrives, anything the
    // port wrongly took would have arrived before it.
    out.send_to(b"last", SocketAddrV4::new(pair.ip_a, port))
        .unwrap();
    let last = receive(&nm, 1);
    let all: Vec<_> = got.iter().chain(&last).collect();
    let ports: Vec<_> = all.iter().map(|f| udp_dst(f)).collect();
    assert!(
        ports.iter().all(|&p| p == Some(port)),
        "{} took frames not for UDP port {port}: {ports:?}",
        nm.name()
    );
    assert_eq!(all.len(), want + 1, "{ports:?}");
    let v6 = all
        .iter()
        .filter(|f| matches!(l3(f), Some((0x86dd, _))))
        .count();
    assert_eq!(v6, 2, "both IPv6 frames arrived");
    drop(nm);
    // The host keeps its traffic after the port is gone, too.
    out.send_to(b"after", SocketAddrV4::new(pair.ip_a, other))
        .unwrap();
    assert!(host_receives(&host, 1).contains_key(&b"after"[..]));
    assert!(ping_a(&pair));
}

#[test]
fn xdp_filter_by_builder_takes_its_port_and_leaves_the_rest() {
    require_net!();
    filtered_port_takes_its_traffic_and_leaves_the_rest("xdp", false);
}

#[test]
fn xdp_filter_by_name_takes_its_port_and_leaves_the_rest() {
    require_net!();
    filtered_port_takes_its_traffic_and_leaves_the_rest("xdp", true);
}

#[test]
fn afpacket_filter_takes_its_port_and_leaves_the_rest() {
    require_net!();
    filtered_port_takes_its_traffic_and_leaves_the_rest("afpacket", false);
    filtered_port_takes_its_traffic_and_leaves_the_rest("afpacket", true);
}

/// The classic BPF program decides like [`XdpFilter::matches`] on the same frames as the
/// XDP program (run on a socket pair: what one end sends, the other receives only if the
/// filter takes it).
#[test]
fn afpacket_socket_filter_decides_like_xdpfilter() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;
    let filters = [
        XdpFilter::udp_port(53),
        XdpFilter::udp_ports(&[0, 54, 5353, 65535]),
        XdpFilter::default().ethertype(0x88b5),
        XdpFilter::udp_port(53).ethertype(0x88b5).ethertype(0x0806),
    ];
    let corpus = super::xdp_filter_prog::corpus();
    for f in &filters {
        let (tx, rx) = UnixDatagram::pair().unwrap();
        crate::backend::afpacket::filter::attach(rx.as_fd(), f, "test").unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        for (name, frame) in &corpus {
            tx.send(frame).unwrap();
            let got = rx.recv(&mut buf).is_ok();
            assert_eq!(got, f.matches(frame), "filter {f}, frame {name}");
        }
    }
}

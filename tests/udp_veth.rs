//! The UDP layer on veth pairs (root; skipped elsewhere, saying why): IPv4 and IPv6 round
//! trips with a plain UDP socket in the peer namespace on `xdp:` (with a port filter) and
//! `afpacket:` (the socket receives our datagrams only if their checksums are right: its
//! kernel checks them); the host stays quiet about `afpacket:` datagrams (no ICMP port
//! unreachable); every ring of a four-queue port is served; an unresolved neighbour is an
//! error naming the IP and the interface.
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use netmap_rs::udp::UdpPort;
use netmap_rs::{Error, NetmapBuilder, XdpFilter};

#[path = "common/veth.rs"]
#[allow(dead_code)]
mod veth;

#[path = "common/netns.rs"]
mod netns;
use netns::Net;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn open(prefix: &str, ifname: &str, port: u16) -> UdpPort {
    let mut b = NetmapBuilder::new(&format!("{prefix}:{ifname}"));
    if prefix == "xdp" {
        b = b.filter(XdpFilter::udp_port(port));
    }
    UdpPort::bind(b.build().unwrap(), port).unwrap()
}

#[test]
fn round_trips_on_ipv4_and_ipv6_over_xdp_and_afpacket() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    for (k, prefix) in ["xdp", "afpacket"].into_iter().enumerate() {
        let net = Net::new(k as u32, 1);
        let mut port = open(prefix, &net.a, 7001);
        assert!(port.local().ips().contains(&net.ip_a.parse().unwrap()));
        assert!(port.local().ips().contains(&net.ip6_a.parse().unwrap()));
        for (ours, theirs) in [(&net.ip_a, &net.ip_b), (&net.ip6_a, &net.ip6_b)] {
            let ours: SocketAddr = SocketAddr::new(ours.parse().unwrap(), 7001);
            let theirs: SocketAddr = SocketAddr::new(theirs.parse().unwrap(), 9000);
            // The peer: a plain socket, connected to us (so an ICMP error from our host
            // would show as ECONNREFUSED on its next receive).
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let peer = net.in_ns(move || {
                let s = UdpSocket::bind(theirs).unwrap();
                s.connect(ours).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                // 1. Our datagram: delivered only with valid IP and UDP checksums.
                let n = s.recv(&mut buf).expect("our datagram (bad checksum?)");
                assert_eq!(&buf[..n], b"from netmap");
                // 2. A request, then our reply; no ICMP error before it.
                s.send(b"request").unwrap();
                let n = s.recv(&mut buf).expect("our reply, not an ICMP error");
                assert_eq!(&buf[..n], b"reply");
            });
            ready_rx.recv().unwrap();
            port.send_to(b"from netmap", theirs).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = port.recv_from(&mut buf, T).unwrap();
            assert_eq!((&buf[..n], from), (&b"request"[..], theirs), "{prefix}");
            port.send_to(b"reply", from).unwrap();
            peer.join()
                .unwrap_or_else(|_| panic!("{prefix} {ours}: peer failed"));
        }
        println!("{prefix}: {:?}", port.stats());
    }
}

#[test]
fn every_queue_of_a_four_queue_port_is_served() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let net = Net::new(5, 4);
    let mut port = open("xdp", &net.a, 7002);
    assert_eq!(port.netmap().num_rx_rings(), 4);
    let ours: SocketAddr = SocketAddr::new(net.ip_a.parse().unwrap(), 7002);
    let ip_b: std::net::IpAddr = net.ip_b.parse().unwrap();
    const N: u16 = 64;
    // 64 flows (source ports): the peer's stack spreads them over the 4 queues.
    let peer = net.in_ns(move || {
        for i in 0..N {
            let s = UdpSocket::bind(SocketAddr::new(ip_b, 20000 + i)).unwrap();
            s.send_to(&i.to_be_bytes(), ours).unwrap();
        }
    });
    peer.join().unwrap();
    let mut seen = vec![false; N as usize];
    let mut rings = std::collections::HashSet::new();
    while seen.iter().any(|s| !s) {
        let batch = port.recv_batch(64, T).unwrap();
        for d in batch {
            let i = u16::from_be_bytes([d.payload()[0], d.payload()[1]]);
            assert_eq!(d.source().port(), 20000 + i);
            seen[i as usize] = true;
            rings.insert(d.ring_index());
        }
    }
    println!("datagrams came on rings {rings:?}");
    assert!(rings.len() > 1, "64 flows all on one ring: {rings:?}");
}

#[test]
fn an_unresolved_neighbour_names_the_ip_the_interface_and_the_fix() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let net = Net::new(6, 1);
    let mut port = open("afpacket", &net.a, 7003);
    // An address on the link nobody has resolved.
    let nobody = format!("{}.77", net.ip_a.rsplit_once('.').unwrap().0);
    let e = port
        .send_to(b"?", format!("{nobody}:53").parse().unwrap())
        .unwrap_err();
    match &e {
        Error::NeighbourUnresolved { ip, interface, .. } => {
            assert_eq!(ip.to_string(), nobody);
            assert_eq!(interface, &net.a);
        }
        other => panic!("expected NeighbourUnresolved, got {other}"),
    }
    let m = e.to_string();
    assert!(m.contains("ping") && m.contains("ip neigh replace"), "{m}");
    assert_eq!(
        std::io::Error::from(e).kind(),
        std::io::ErrorKind::HostUnreachable
    );
    // A destination routed through another interface (loopback) is refused, saying so.
    let e = port
        .send_to(b"?", "127.0.0.1:53".parse().unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::NoRoute { .. }), "{e}");
    assert!(e.to_string().contains("lo"), "{e}");
}

/// The Tokio endpoint on `xdp:` (filtered) and `afpacket:`, IPv6: `send_to` a plain socket
/// in the namespace (delivered only with a valid, mandatory UDP checksum), `recv_from` its
/// answer.
#[tokio::test]
async fn tokio_endpoint_round_trips_on_ipv6() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    use netmap_rs::tokio_async::{AsyncUdpPort, TokioNetmap};
    for (k, prefix) in ["xdp", "afpacket"].into_iter().enumerate() {
        let net = Net::new(20 + k as u32, 1);
        let mut b = NetmapBuilder::new(&format!("{prefix}:{}", net.a));
        if prefix == "xdp" {
            b = b.filter(XdpFilter::udp_port(7004));
        }
        let tn = TokioNetmap::new(b.build().unwrap()).unwrap();
        let mut port = AsyncUdpPort::bind(&tn, 7004).unwrap();
        let ours = SocketAddr::new(net.ip6_a.parse().unwrap(), 7004);
        let theirs = SocketAddr::new(net.ip6_b.parse().unwrap(), 9004);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let peer = net.in_ns(move || {
            let s = UdpSocket::bind(theirs).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = s.recv_from(&mut buf).expect("our datagram");
            assert_eq!(from, ours);
            s.send_to(&buf[..n].to_ascii_uppercase(), from).unwrap();
        });
        tokio::task::spawn_blocking(move || ready_rx.recv().unwrap())
            .await
            .unwrap();
        port.send_to(b"async v6", theirs).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), port.recv_from(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert_eq!((&buf[..n], from), (&b"ASYNC V6"[..], theirs), "{prefix}");
        tokio::task::spawn_blocking(move || peer.join().unwrap())
            .await
            .unwrap();
    }
}

//! The UDP layer over emulated pipes (no root, no interface): sync and Tokio round trips on
//! IPv4 and IPv6 with a VLAN, replies addressed from the request, serving in place, frames
//! that are not ours skipped, the codec form, and the error for a destination a pipe
//! cannot resolve.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::{AsyncUdpPort, NetmapUdpFramed, TokioNetmap};
use netmap_rs::udp::{Local, UdpPort};
use netmap_rs::wire::ethernet::Vlan;
use netmap_rs::wire::{MacAddr, UdpFrame};
use netmap_rs::{Error, NetmapBuilder};
use tokio_util::codec::LinesCodec;

const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
const T: Option<Duration> = Some(Duration::from_secs(5));

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Local sides for A (port 5000) and B (port 6000) with addresses `a` and `b`, A knowing
/// B as a static neighbour.
fn sides(a: &str, b: &str) -> (Local, Local) {
    (
        Local::new(5000)
            .mac(MAC_A)
            .ip(ip(a))
            .neighbour(ip(b), MAC_B),
        Local::new(6000).mac(MAC_B).ip(ip(b)),
    )
}

fn pipe_ports(name: &str, a: Local, b: Local) -> (UdpPort, UdpPort) {
    let open = |n: String| NetmapBuilder::new(&n).build().unwrap();
    (
        UdpPort::with_local(open(format!("{name}{{0")), a).unwrap(),
        UdpPort::with_local(open(format!("{name}}}0")), b).unwrap(),
    )
}

#[test]
fn sync_round_trips_on_ipv4_and_ipv6() {
    for (k, (a_ip, b_ip)) in [("10.9.0.1", "10.9.0.2"), ("fd00::a", "fd00::b")]
        .into_iter()
        .enumerate()
    {
        let (la, lb) = sides(a_ip, b_ip);
        let (mut a, mut b) = pipe_ports(&format!("udpsync{k}"), la, lb);
        let dst = SocketAddr::new(ip(b_ip), 6000);
        a.send_to(b"ping", dst).unwrap();

        // B sees it with both addresses, and answers from the request (no lookup: B has no
        // neighbour for A).
        let mut batch = b.recv_batch(64, T).unwrap();
        let d = batch.next().expect("a datagram");
        assert_eq!(d.payload(), b"ping");
        assert_eq!(d.source(), SocketAddr::new(ip(a_ip), 5000));
        assert_eq!(d.destination(), dst);
        // The frame as sent is well formed, checksums included.
        let f = UdpFrame::parse(d.frame().payload()).unwrap();
        assert!(f.udp_checksum_ok());
        assert_eq!(f.addressing().src_mac, MAC_A);
        assert_eq!(f.addressing().dst_mac, MAC_B);
        let reply = d.reply_addressing();
        assert!(batch.next().is_none());
        drop(batch);
        b.send_addressed(&reply, b"pong").unwrap();

        let mut buf = [0u8; 64];
        let (n, from) = a.recv_from(&mut buf, T).unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], dst));
        // A short buffer gets the start of the payload, and the whole length.
        a.send_to(b"0123456789", dst).unwrap();
        let (n, _) = b.recv_from(&mut buf[..4], T).unwrap();
        assert_eq!((n, &buf[..4]), (10, &b"0123"[..]));
        assert_eq!(b.stats().delivered, 2);
        assert_eq!(a.stats().sent, 2);
    }
}

#[test]
fn serve_answers_in_place_and_skips_what_is_not_ours() {
    let (la, lb) = sides("10.9.1.1", "10.9.1.2");
    let (mut a, mut b) = pipe_ports("udpserve", la, lb);
    let dst: SocketAddr = "10.9.1.2:6000".parse().unwrap();
    // Three requests, one to another port (not ours), and a frame that is not UDP.
    a.send_to(b"one", dst).unwrap();
    a.send_to(b"x", "10.9.1.2:6001".parse().unwrap()).unwrap();
    a.send_to(b"two", dst).unwrap();
    a.send_to(b"drop me", dst).unwrap();
    let mut served = 0;
    while served < 2 {
        served += b
            .serve(64, T, |req, out| {
                if req.payload() == b"drop me" {
                    return None;
                }
                let p = req.payload().to_ascii_uppercase();
                out[..p.len()].copy_from_slice(&p);
                Some(p.len())
            })
            .unwrap();
    }
    assert_eq!(served, 2);
    let st = b.stats();
    assert_eq!((st.delivered, st.not_ours, st.sent), (3, 1, 2));
    let mut buf = [0u8; 16];
    for want in [&b"ONE"[..], b"TWO"] {
        let (n, from) = a.recv_from(&mut buf, T).unwrap();
        assert_eq!((&buf[..n], from), (want, dst));
    }
    assert!(matches!(
        a.recv_from(&mut buf, Some(Duration::ZERO)),
        Err(Error::WouldBlock)
    ));
}

#[test]
fn vlan_endpoints_tag_and_filter() {
    let (la, lb) = sides("10.9.2.1", "10.9.2.2");
    let (mut a, mut b) = pipe_ports("udpvlan", la.vlan(Vlan::new(42)), lb.vlan(Vlan::new(42)));
    a.send_to(b"tagged", "10.9.2.2:6000".parse().unwrap())
        .unwrap();
    let mut batch = b.recv_batch(8, T).unwrap();
    let d = batch.next().unwrap();
    assert_eq!(d.addressing().vlan.map(|v| v.id()), Some(42));
    // The reply keeps the tag.
    assert_eq!(d.reply_addressing().vlan.map(|v| v.id()), Some(42));
    drop(batch);
    // An endpoint on another VLAN does not take it.
    let (la, lb) = sides("10.9.3.1", "10.9.3.2");
    let (mut a2, mut b2) = pipe_ports("udpvlan2", la.vlan(Vlan::new(7)), lb.vlan(Vlan::new(8)));
    a2.send_to(b"wrong vlan", "10.9.3.2:6000".parse().unwrap())
        .unwrap();
    assert!(b2
        .recv_from(&mut [0u8; 16], Some(Duration::from_millis(200)))
        .is_err());
    assert_eq!(b2.stats().not_ours, 1);
    drop((a, a2));
}

#[test]
fn a_pipe_cannot_resolve_a_new_destination() {
    let (_, lb) = sides("10.9.4.1", "10.9.4.2");
    let (_a, mut b) = pipe_ports("udpnoroute", Local::new(1), lb);
    let e = b
        .send_to(b"?", "10.9.4.1:5000".parse().unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::NoRoute { .. }), "{e}");
    assert!(e.to_string().contains("Local::neighbour"), "{e}");
    // No source address of the family asked for.
    let e = b
        .send_to(b"?", "[fd00::1]:5000".parse().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("Local::neighbour"), "{e}");
}

#[tokio::test]
async fn tokio_round_trip_serve_and_codec() {
    let (la, lb) = sides("10.9.5.1", "fd00::5");
    let (la, lb) = (
        la.ip(ip("fd00::4")).neighbour(ip("fd00::5"), MAC_B),
        lb.ip(ip("10.9.5.2")),
    );
    let a = TokioNetmap::new(NetmapBuilder::new("udptok{0").build().unwrap()).unwrap();
    let b = TokioNetmap::new(NetmapBuilder::new("udptok}0").build().unwrap()).unwrap();
    let mut ua = AsyncUdpPort::with_local(&a, la).unwrap();
    let ub = AsyncUdpPort::with_local(&b, lb).unwrap();
    let dst: SocketAddr = "[fd00::5]:6000".parse().unwrap();

    // B serves in a task: echo upper-cased.
    let server = tokio::spawn(async move {
        let mut ub = ub;
        let mut n = 0;
        while n < 2 {
            n += ub
                .serve(32, |req, out| {
                    let p = req.payload().to_ascii_uppercase();
                    out[..p.len()].copy_from_slice(&p);
                    Some(p.len())
                })
                .await
                .unwrap();
        }
        ub
    });
    ua.send_to(b"hello", dst).await.unwrap();
    let mut buf = [0u8; 32];
    let (n, from) = ua.recv_from(&mut buf).await.unwrap();
    assert_eq!((&buf[..n], from), (&b"HELLO"[..], dst));
    ua.send_to(b"again", dst).await.unwrap();
    let (n, _) = ua.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"AGAIN");
    let ub = server.await.unwrap();

    // The codec form: lines both ways, on IPv4 this time.
    let mut fa = NetmapUdpFramed::new(ua, LinesCodec::new());
    let mut fb = NetmapUdpFramed::new(ub, LinesCodec::new());
    let to_b: SocketAddr = "10.9.5.2:6000".parse().unwrap();
    let e = fa.send(("no neighbour".to_string(), to_b)).await;
    assert!(e.is_err(), "10.9.5.2 is not a known neighbour of A");
    drop(fa);
    // Rebuild A with B's IPv4 address as a neighbour; B replies to what it received
    // without one (the codec remembers each source's addresses).
    let (la, _) = sides("10.9.5.1", "10.9.5.2");
    drop(a);
    let a = TokioNetmap::new(NetmapBuilder::new("udptok{0").build().unwrap()).unwrap();
    let mut fa = NetmapUdpFramed::new(AsyncUdpPort::with_local(&a, la).unwrap(), LinesCodec::new());
    fa.send(("first\nsecond".to_string(), to_b)).await.unwrap();
    let (l1, from) = fb.next().await.unwrap().unwrap();
    let (l2, _) = fb.next().await.unwrap().unwrap();
    assert_eq!((l1.as_str(), l2.as_str()), ("first", "second"));
    assert_eq!(from, "10.9.5.1:5000".parse().unwrap());
    fb.send(("back".to_string(), from)).await.unwrap();
    let (l, _) = fa.next().await.unwrap().unwrap();
    assert_eq!(l, "back");
}

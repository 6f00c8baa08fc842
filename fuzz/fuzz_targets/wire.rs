//! The header views never panic on any bytes, and every UDP frame they accept rebuilds
//! (from its addressing and payload) into a frame that parses to the same addresses and
//! payload, with valid checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netmap_rs::wire::{ethernet, ipv4, ipv6, udp, UdpFrame};

fuzz_target!(|data: &[u8]| {
    // Every view on the raw bytes, every accessor.
    if let Ok(e) = ethernet::Frame::new_checked(data) {
        let _ = (e.dst(), e.src(), e.vlan(), e.ethertype(), e.payload().len());
    }
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (p.src(), p.dst(), p.ttl(), p.protocol(), p.options(), p.checksum_ok());
        assert!(p.payload().len() + p.header_len() == p.total_len());
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = (p.src(), p.dst(), p.hop_limit(), p.traffic_class(), p.upper_layer());
    }
    if let Ok(u) = udp::Packet::new_checked(data) {
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        let _ = (u.src_port(), u.dst_port(), u.checksum_ok(ip, ip));
        assert!(u.payload().len() + udp::HEADER_LEN == u.len());
    }
    let Ok(f) = UdpFrame::parse(data) else {
        return;
    };
    let range = f.payload_range();
    assert!(range.end <= data.len());
    assert_eq!(&data[range], f.payload());
    let _ = f.udp_checksum_ok();
    let a = *f.addressing();
    let mut buf = vec![0u8; a.header_len() + f.payload().len()];
    let n = a.emit_with(&mut buf, f.payload()).expect("an accepted frame rebuilds");
    let g = UdpFrame::parse(&buf[..n]).expect("a rebuilt frame parses");
    assert_eq!(g.addressing(), &a);
    assert_eq!(g.payload(), f.payload());
    assert!(g.udp_checksum_ok());
});

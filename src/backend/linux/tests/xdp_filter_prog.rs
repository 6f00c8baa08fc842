//! The filter program alone, without an interface: loaded (so the verifier accepts it) with
//! rules for several filter shapes, and run by `BPF_PROG_TEST_RUN` on frames of every kind
//! the parser meets (VLAN and QinQ, IPv4 with options and fragments, IPv6 with and without
//! extension headers, truncated at every length). A match returns `XDP_TX` in this build of
//! the program; each verdict must equal [`XdpFilter::matches`], whose own answers are
//! checked on a few frames by hand.

use std::os::fd::AsFd;

use crate::backend::linux::sys::XDP_PASS;
use crate::backend::xdp::filter::{program, OnMatch, Rule, XDP_TX};
use crate::backend::xdp::{bpf, ids};
use crate::XdpFilter;

use super::testnet::require_net;

const CUSTOM: u16 = 0x88b5;

/// A frame: Ethernet (with the given VLAN tag types), then `l3` under `ethertype`.
fn eth(tags: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for &t in tags {
        f.extend_from_slice(&t.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x07]); // TCI: VLAN 7
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

/// IPv4 with `opts` option bytes (a multiple of 4), protocol `proto`, fragment field `frag`,
/// then a UDP header to `dport` (or whatever `proto` is).
fn ipv4(opts: usize, proto: u8, frag: u16, dport: u16) -> Vec<u8> {
    let ihl = 5 + opts / 4;
    let mut ip = vec![0u8; 20 + opts];
    ip[0] = 0x40 | ihl as u8;
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    for b in &mut ip[20..] {
        *b = 1; // NOP options
    }
    ip.extend_from_slice(&udp(dport));
    ip
}

fn ipv6(next: u8, dport: u16) -> Vec<u8> {
    let mut ip = vec![0u8; 40];
    ip[0] = 0x60;
    ip[6] = next;
    ip[7] = 64;
    if next == 0 {
        // A hop-by-hop header (8 bytes) before UDP.
        ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    }
    ip.extend_from_slice(&udp(dport));
    ip
}

fn udp(dport: u16) -> Vec<u8> {
    let mut u = vec![0x30, 0x39];
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, b'h', b'i', b'!', b'!']);
    u
}

/// Frames of every shape, with a name for the failure message.
pub(super) fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut c = Vec::new();
    for port in [53u16, 54, 5353, 0, 65535] {
        for (tn, tags) in [
            ("", &[][..]),
            ("vlan ", &[0x8100][..]),
            ("qinq ", &[0x88a8, 0x8100][..]),
        ] {
            c.push((
                format!("{tn}v4 udp {port}"),
                eth(tags, 0x0800, &ipv4(0, 17, 0, port)),
            ));
            c.push((
                format!("{tn}v6 udp {port}"),
                eth(tags, 0x86dd, &ipv6(17, port)),
            ));
        }
        c.push((
            format!("v4 opts udp {port}"),
            eth(&[], 0x0800, &ipv4(40, 17, 0, port)),
        ));
        c.push((
            format!("v4 first frag {port}"),
            eth(&[], 0x0800, &ipv4(0, 17, 0x2000, port)),
        ));
        c.push((
            format!("v4 later frag {port}"),
            eth(&[], 0x0800, &ipv4(0, 17, 0x2010, port)),
        ));
        c.push((
            format!("v4 tcp {port}"),
            eth(&[], 0x0800, &ipv4(0, 6, 0, port)),
        ));
        c.push((
            format!("v6 hbh udp {port}"),
            eth(&[], 0x86dd, &ipv6(0, port)),
        ));
        // Three tags: the third is not looked through.
        let three = [0x88a8, 0x8100, 0x8100];
        c.push((
            format!("3 tags udp {port}"),
            eth(&three, 0x0800, &ipv4(0, 17, 0, port)),
        ));
    }
    let mut bad_ihl = ipv4(0, 17, 0, 53);
    bad_ihl[0] = 0x44;
    c.push(("v4 ihl 4".into(), eth(&[], 0x0800, &bad_ihl)));
    c.push(("custom".into(), eth(&[], CUSTOM, &[0; 46])));
    c.push(("vlan custom".into(), eth(&[0x8100], CUSTOM, &[0; 46])));
    c.push(("arp".into(), eth(&[], 0x0806, &[0; 28])));
    // Every truncation of a few frames (the program must pass, never read past the end).
    let full = [
        eth(&[0x8100], 0x0800, &ipv4(8, 17, 0, 53)),
        eth(&[0x88a8, 0x8100], 0x86dd, &ipv6(17, 53)),
    ];
    for f in full {
        for len in 14..f.len() {
            c.push((format!("truncated {len}/{}", f.len()), f[..len].to_vec()));
        }
    }
    c
}

#[test]
fn reference_matcher_answers_by_hand() {
    let f = XdpFilter::udp_ports(&[53, 5353]).ethertype(CUSTOM);
    assert!(f.matches(&eth(&[], 0x0800, &ipv4(0, 17, 0, 53))));
    assert!(f.matches(&eth(&[0x88a8, 0x8100], 0x86dd, &ipv6(17, 5353))));
    assert!(f.matches(&eth(&[], 0x0800, &ipv4(40, 17, 0x2000, 53))));
    assert!(f.matches(&eth(&[0x8100], CUSTOM, &[])));
    assert!(!f.matches(&eth(&[], 0x0800, &ipv4(0, 17, 0, 54))));
    assert!(!f.matches(&eth(&[], 0x0800, &ipv4(0, 17, 0x0010, 53))));
    assert!(!f.matches(&eth(&[], 0x0800, &ipv4(0, 6, 0, 53))));
    assert!(!f.matches(&eth(&[], 0x86dd, &ipv6(0, 53))));
    let whole = eth(&[], 0x0800, &ipv4(0, 17, 0, 53));
    assert!(!f.matches(&whole[..whole.len() - 13]), "UDP header cut");
    assert!(!XdpFilter::udp_port(53).matches(&eth(&[], CUSTOM, &[])));
}

#[test]
fn filter_program_is_verified_and_decides_like_xdpfilter() {
    require_net!();
    let shapes: Vec<Option<XdpFilter>> = vec![
        None,
        Some(XdpFilter::udp_port(53)),
        Some(XdpFilter::udp_ports(&[0, 54, 5353, 65535])),
        Some(XdpFilter::default().ethertype(CUSTOM)),
        Some(XdpFilter::udp_port(53).ethertype(CUSTOM).ethertype(0x0806)),
        Some(
            (1..=7)
                .fold(XdpFilter::udp_port(5353), |f, i| f.ethertype(0x9000 + i))
                .ethertype(CUSTOM),
        ),
    ];
    let corpus = corpus();
    let rules = bpf::create_array("nmrs_test_rules", std::mem::size_of::<Rule>() as u32, 1)
        .expect("rule map");
    let insns = program(std::os::fd::AsRawFd::as_raw_fd(&rules), OnMatch::ReturnTx);
    let prog = bpf::load_xdp(&insns, "nmrs_filter_test")
        .unwrap_or_else(|e| panic!("verifier rejected the program: {}\n{}", e.error, e.log));
    let mut matched = 0;
    for shape in &shapes {
        let rule = Rule::of(shape.as_ref());
        bpf::map_update_bytes(rules.as_fd(), 0, &rule.to_bytes()).expect("rule update");
        for (name, frame) in &corpus {
            let got = ids::test_run(prog.as_fd(), frame).expect("BPF_PROG_TEST_RUN");
            let want = match shape {
                None => true,
                Some(f) => f.matches(frame),
            };
            let want = if want { XDP_TX } else { XDP_PASS as u32 };
            assert_eq!(got, want, "filter {shape:?}, frame {name}");
            matched += usize::from(got == XDP_TX);
        }
    }
    assert!(
        matched > corpus.len(),
        "the shapes matched something besides None"
    );
    // A queue without a rule (all zero) passes everything.
    let none = Rule::none();
    bpf::map_update_bytes(rules.as_fd(), 0, &none.to_bytes()).expect("rule update");
    for (name, frame) in &corpus {
        let got = ids::test_run(prog.as_fd(), frame).expect("BPF_PROG_TEST_RUN");
        assert_eq!(got, XDP_PASS as u32, "empty rule, frame {name}");
    }
}

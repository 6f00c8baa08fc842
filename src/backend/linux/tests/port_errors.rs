//! Failure paths and lifetime of `xdp:` / `afpacket:` ports on a veth pair (root; skipped
//! with a message elsewhere): clear errors, nothing left attached or bound.

use std::os::fd::AsRawFd;
use std::process::Command;

use super::ports::PREFIXES;
use super::testnet::{require_net, VethPair};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::{netlink, sys};
use crate::backend::xdp::bpf;
use crate::error::Error;
use crate::sync::port::Netmap;

fn program_on(ifname: &str) -> u32 {
    let index = Interface::lookup(ifname).unwrap().index;
    netlink::xdp_query(index).unwrap().some_id()
}

/// No program on the interface, allowing for a descriptor a forked child still holds (see
/// `tests::detached_soon`).
fn none_on(ifname: &str) -> bool {
    super::sockets::detached_soon(Interface::lookup(ifname).unwrap().index)
}

#[test]
fn missing_interface_queue_out_of_range_and_down_are_clear_errors() {
    require_net!();
    for (prefix, _) in PREFIXES {
        let e = Netmap::open(&format!("{prefix}:nmrsnope0")).unwrap_err();
        assert!(
            matches!(e, Error::NoSuchInterface { ref name, .. } if name == "nmrsnope0"),
            "{prefix}: {e}"
        );
        assert!(e.to_string().contains("ip link show"), "{e}");
    }
    let pair = VethPair::new();
    let e = Netmap::open(&format!("xdp:{}-3", pair.a)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::QueueOutOfRange {
                queue: 3,
                available: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("queue 3"), "{e}");
    // Nothing was attached by the failed opens.
    assert_eq!(program_on(&pair.a), 0);
    pair.set_a_down();
    for (prefix, _) in PREFIXES {
        let e = Netmap::open(&format!("{prefix}:{}", pair.a)).unwrap_err();
        assert!(matches!(e, Error::InterfaceDown(_)), "{prefix}: {e}");
    }
    assert_eq!(program_on(&pair.a), 0);
}

/// Someone else's XDP program: `xdp-filter load IF --mode skb` (xdp-tools) when installed,
/// else a plain XDP_PASS attached the way it does (netlink, generic mode). The open fails
/// naming the program; the program stays; no socket stays bound (the queue opens once the
/// program is gone).
#[test]
fn foreign_xdp_program_fails_the_open_and_stays() {
    require_net!();
    let pair = VethPair::new();
    let index = Interface::lookup(&pair.a).unwrap().index;
    let xdp_filter = Command::new("xdp-filter").arg("help").output().is_ok();
    let mut held = None;
    if xdp_filter {
        let bpffs = "/sys/fs/bpf";
        let mounted = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(bpffs));
        if !mounted {
            let st = Command::new("mount")
                .args(["-t", "bpf", "bpf", bpffs])
                .status()
                .unwrap();
            assert!(st.success(), "mount -t bpf bpf {bpffs}");
        }
        let out = Command::new("xdp-filter")
            .args(["load", &pair.a, "--mode", "skb"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "xdp-filter load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("foreign program: xdp-filter");
    } else {
        eprintln!("xdp-filter not installed (apt-get install xdp-tools): attaching a program here");
        let prog = bpf::load_xdp(&bpf::pass_program(), "someone_else").unwrap();
        netlink::xdp_set(
            index,
            prog.as_raw_fd(),
            sys::XDP_FLAGS_SKB_MODE | sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
            None,
        )
        .unwrap();
        held = Some(prog);
    }
    let foreign = program_on(&pair.a);
    assert_ne!(foreign, 0);
    let e = Netmap::open(&format!("xdp:{}", pair.a)).unwrap_err();
    assert!(
        matches!(e, Error::XdpProgramAttached { prog_id, .. } if prog_id == foreign),
        "{e}"
    );
    assert!(
        e.to_string().contains("neither replaces nor removes"),
        "{e}"
    );
    assert!(e.to_string().contains("xdp off"), "{e}");
    // The error names the program as `ip -d link` does.
    let Error::XdpProgramAttached { prog_name, .. } = &e else {
        unreachable!()
    };
    let shown = Command::new("ip")
        .args(["-d", "link", "show", "dev", &pair.a])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(!prog_name.is_empty(), "{e}");
    assert!(
        shown.contains(&format!("id {foreign} name {prog_name} ")),
        "{e}\n{shown}"
    );
    assert_eq!(
        program_on(&pair.a),
        foreign,
        "the foreign program was touched"
    );
    // AF_PACKET needs no program: it opens beside it.
    let pkt = Netmap::open(&format!("afpacket:{}", pair.a)).unwrap();
    drop(pkt);
    if xdp_filter {
        let st = Command::new("xdp-filter")
            .args(["unload", &pair.a])
            .status()
            .unwrap();
        assert!(st.success());
    } else {
        netlink::xdp_set(index, -1, sys::XDP_FLAGS_SKB_MODE, None).unwrap();
        drop(held);
    }
    assert_eq!(program_on(&pair.a), 0);
    let nm = Netmap::open(&format!("xdp:{}", pair.a)).unwrap();
    assert_ne!(program_on(&pair.a), 0);
    drop(nm);
    assert!(none_on(&pair.a));
}

/// The program is attached with the first port of an interface, shared, and detached when
/// the last one closes. A second port on a queue already taken is refused and changes
/// nothing.
#[test]
fn program_lives_as_long_as_the_ports_of_its_interface() {
    require_net!();
    let pair = VethPair::new();
    assert_eq!(program_on(&pair.a), 0);
    let first = Netmap::open(&format!("xdp:{}-0", pair.a)).unwrap();
    let id = program_on(&pair.a);
    assert_ne!(id, 0);
    let e = Netmap::open(&format!("xdp:{}", pair.a)).unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "{e}");
    assert_eq!(program_on(&pair.a), id);
    // Ring handles keep the port (and so the program) alive after the Netmap is dropped.
    let rx = first.rx_ring(0).unwrap();
    drop(first);
    assert_eq!(program_on(&pair.a), id);
    drop(rx);
    assert_eq!(
        program_on(&pair.a),
        0,
        "program left attached after the last port"
    );
    // And the queue is free again.
    let again = Netmap::open(&format!("xdp:{}", pair.a)).unwrap();
    assert_ne!(program_on(&pair.a), 0);
    drop(again);
    assert!(none_on(&pair.a));
    assert!(!pair.link_show_a().contains("xdp"));
}

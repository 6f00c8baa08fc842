//! Tests of the Linux plumbing on a real veth pair (root; skipped with a message elsewhere).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ports::ends_a_to_b;
use super::testnet::{parse_udp, require_net, udp_frame, VethPair};
use crate::backend::afpacket::tpacket::{PacketConfig, PacketSocket};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::{netlink, os, sys};
use crate::backend::xdp::bpf;
use crate::backend::xdp::prog::{AttachMethod, XdpAttachOptions, XdpMode, XdpProgram};
use crate::backend::xdp::xsk::{Umem, XskBindMode, XskConfig, XskSocket};
use crate::error::Error;
use crate::region::Region;

const FRAME: u32 = 2048;
const NFRAMES: u32 = 4096;
/// Frames sent before waiting for the other side to have them all (keeps socket buffers
/// from overflowing, so "none lost" is a property of the path, not of the pacing).
const WINDOW: usize = 64;
/// Hang guard for waits (a failing test fails after this; a passing one never waits it out).
pub(super) const PATIENCE: Duration = Duration::from_secs(20);

fn payload(tag: &str, i: usize) -> Vec<u8> {
    let mut p = format!("{tag} frame {i:06} ").into_bytes();
    p.extend((0..(i % 200)).map(|k| (k as u8).wrapping_mul(31) ^ (i as u8)));
    p
}

/// A UDP socket inside the namespace bound on `b`'s address.
fn ns_udp(pair: &VethPair, port: u16) -> UdpSocket {
    let addr = SocketAddrV4::new(pair.ip_b, port);
    let s = pair.in_ns(move || UdpSocket::bind(addr).expect("bind UDP in namespace"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

fn recv_n(sock: &UdpSocket, n: usize, got: &mut Vec<Vec<u8>>) {
    let mut buf = [0u8; 2048];
    for _ in 0..n {
        match sock.recv(&mut buf) {
            Ok(len) => got.push(buf[..len].to_vec()),
            Err(e) => panic!("only {} datagrams arrived in the namespace: {e}", got.len()),
        }
    }
}

pub(super) fn umem() -> Umem {
    let region = Arc::new(Region::anonymous((NFRAMES * FRAME) as usize).unwrap());
    Umem::new(region, 0, (NFRAMES * FRAME) as usize, FRAME).unwrap()
}

/// Attaches the program, opens queue 0 and fills the fill ring with the upper half of the
/// UMEM; returns the lower half as free TX frames.
fn xsk_rig(pair: &VethPair, umem: &Umem) -> (XdpProgram, XskSocket, Vec<u64>) {
    let iface = Interface::lookup_up(&pair.a).unwrap();
    let prog = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap();
    let mut xsk = XskSocket::new(&pair.a, 0, umem, &XskConfig::default()).unwrap();
    prog.register(0, xsk.fd()).unwrap();
    let half = umem.frames() / 2;
    let fill: Vec<u64> = (half..umem.frames()).map(|i| umem.frame_addr(i)).collect();
    assert_eq!(xsk.fill.produce(&fill).unwrap(), fill.len());
    let free = (0..half).map(|i| umem.frame_addr(i)).collect();
    eprintln!(
        "xdp mode {:?} via {:?}, socket mode {:?}",
        prog.mode(),
        prog.method(),
        xsk.mode()
    );
    (prog, xsk, free)
}

pub(super) fn reap(xsk: &mut XskSocket, free: &mut Vec<u64>) -> usize {
    let mut done = [0u64; 64];
    let n = xsk.comp.consume(&mut done).unwrap();
    free.extend_from_slice(&done[..n]);
    n
}

fn xsk_send(xsk: &mut XskSocket, free: &mut Vec<u64>, frame: &[u8]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        reap(xsk, free);
        if let Some(addr) = free.pop() {
            xsk.umem().write(addr, frame).unwrap();
            let d = sys::XdpDesc {
                addr,
                len: frame.len() as u32,
                options: 0,
            };
            if xsk.tx.produce(&[d]).unwrap() == 1 {
                return;
            }
            free.push(addr);
        }
        xsk.kick_tx().unwrap();
        assert!(Instant::now() < deadline, "AF_XDP TX made no progress");
        os::poll_one(xsk.fd(), libc::POLLOUT, 10).unwrap();
    }
}

/// Receives frames on the XSK until `n` pass `keep`, refilling the fill ring as it goes.
fn xsk_recv(xsk: &mut XskSocket, n: usize, keep: impl Fn(&[u8]) -> bool, out: &mut Vec<Vec<u8>>) {
    let deadline = Instant::now() + PATIENCE;
    let mut descs = [sys::XdpDesc::default(); 64];
    let mut kept = 0;
    while kept < n {
        assert!(
            Instant::now() < deadline,
            "AF_XDP RX: {kept} of {n} frames arrived"
        );
        xsk.wake_rx().unwrap();
        os::poll_one(xsk.fd(), libc::POLLIN, 10).unwrap();
        let got = xsk.rx.consume(&mut descs).unwrap();
        let mut refill = Vec::with_capacity(got);
        for d in &descs[..got] {
            let mut buf = vec![0u8; d.len as usize];
            xsk.umem().read(d.addr, &mut buf).unwrap();
            if keep(&buf) {
                out.push(buf);
                kept += 1;
            }
            refill.push(d.addr - d.addr % FRAME as u64);
        }
        assert_eq!(xsk.fill.produce(&refill).unwrap(), refill.len());
    }
}

const N: usize = 1000;

/// Whether the interface has no XDP program within a second. A closed descriptor (a BPF link,
/// an XSK socket) is released at once unless a child process forked by another test thread
/// holds a copy until it execs (the fixture runs `ip`), so detaching is checked with a little
/// patience.
pub(super) fn detached_soon(ifindex: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if !netlink::xdp_query(ifindex).map(|s| s.any()).unwrap_or(true) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn xsk_tx_reaches_a_udp_socket_in_the_namespace() {
    require_net!();
    let pair = VethPair::new();
    let rx = ns_udp(&pair, 9000);
    let umem = umem();
    let (_prog, mut xsk, mut free) = xsk_rig(&pair, &umem);
    let ends = ends_a_to_b(&pair, 9000);
    let mut got = Vec::new();
    for w in (0..N).step_by(WINDOW) {
        let end = (w + WINDOW).min(N);
        for i in w..end {
            xsk_send(&mut xsk, &mut free, &udp_frame(&ends, &payload("xsk", i)));
        }
        xsk.kick_tx().unwrap();
        recv_n(&rx, end - w, &mut got);
    }
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            p,
            &payload("xsk", i),
            "datagram {i} differs or is out of order"
        );
    }
    // Every frame comes back on the completion ring.
    let deadline = Instant::now() + PATIENCE;
    while free.len() < (NFRAMES / 2) as usize {
        assert!(
            Instant::now() < deadline,
            "completions missing: {} free",
            free.len()
        );
        xsk.kick_tx().unwrap();
        reap(&mut xsk, &mut free);
    }
    let st = xsk.statistics().unwrap();
    assert_eq!(st.tx_invalid_descs, 0);
}

#[test]
fn xsk_rx_gets_datagrams_from_the_namespace() {
    require_net!();
    let pair = VethPair::new();
    let umem = umem();
    let (_prog, mut xsk, _free) = xsk_rig(&pair, &umem);
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7000);
    let (mac_a, mac_b) = (pair.mac_a, pair.mac_b);
    let keep = move |f: &[u8]| {
        parse_udp(f)
            .is_some_and(|(e, _)| e.dst_port == 7000 && e.dst_mac == mac_a && e.src_mac == mac_b)
    };
    let mut got = Vec::new();
    for w in (0..N).step_by(WINDOW) {
        let end = (w + WINDOW).min(N);
        for i in w..end {
            tx.send_to(&payload("ns", i), to).unwrap();
        }
        xsk_recv(&mut xsk, end - w, keep, &mut got);
    }
    for (i, f) in got.iter().enumerate() {
        let (_, p) = parse_udp(f).unwrap();
        assert_eq!(
            p,
            &payload("ns", i)[..],
            "frame {i} differs or is out of order"
        );
    }
    assert_eq!(xsk.statistics().unwrap().rx_dropped, 0);
}

fn packet_socket(pair: &VethPair) -> PacketSocket {
    let s = PacketSocket::new(&pair.a, &PacketConfig::default()).unwrap();
    eprintln!(
        "AF_PACKET qdisc bypass {}, ignore outgoing {}",
        s.bypasses_qdisc(),
        s.ignores_outgoing()
    );
    s
}

#[test]
fn afpacket_tx_reaches_a_udp_socket_in_the_namespace() {
    require_net!();
    let pair = VethPair::new();
    let rx = ns_udp(&pair, 9001);
    let mut s = packet_socket(&pair);
    let ends = ends_a_to_b(&pair, 9001);
    let mut got = Vec::new();
    for w in (0..N).step_by(WINDOW) {
        let end = (w + WINDOW).min(N);
        for i in w..end {
            let f = udp_frame(&ends, &payload("pkt", i));
            let deadline = Instant::now() + PATIENCE;
            while !s.send(&f).unwrap() {
                s.kick().unwrap();
                assert!(Instant::now() < deadline, "AF_PACKET TX ring stayed full");
                os::poll_one(s.fd(), libc::POLLOUT, 10).unwrap();
            }
        }
        s.kick().unwrap();
        recv_n(&rx, end - w, &mut got);
    }
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            p,
            &payload("pkt", i),
            "datagram {i} differs or is out of order"
        );
    }
    let deadline = Instant::now() + PATIENCE;
    while s.tx_in_flight() > 0 {
        assert!(Instant::now() < deadline, "TX frames never came back");
        s.kick().unwrap();
        std::thread::yield_now();
    }
}

#[test]
fn afpacket_rx_gets_datagrams_from_the_namespace() {
    require_net!();
    let pair = VethPair::new();
    let mut s = packet_socket(&pair);
    let tx = ns_udp(&pair, 0);
    let to = SocketAddrV4::new(pair.ip_a, 7001);
    let mut got = Vec::new();
    for w in (0..N).step_by(WINDOW) {
        let end = (w + WINDOW).min(N);
        for i in w..end {
            tx.send_to(&payload("ns", i), to).unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        while got.len() < end {
            assert!(
                Instant::now() < deadline,
                "AF_PACKET RX: {} of {end} arrived",
                got.len()
            );
            let empty = match s.rx_next().unwrap() {
                Some(f) => {
                    if let Some((e, p)) = parse_udp(&f) {
                        if e.dst_port == 7001 && e.dst_mac == pair.mac_a {
                            assert_eq!(f.wire_len as usize, f.len());
                            got.push(p.to_vec());
                        }
                    }
                    false
                }
                None => true,
            };
            if empty {
                os::poll_one(s.fd(), libc::POLLIN, 10).unwrap();
            }
        }
    }
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p, &payload("ns", i), "frame {i} differs or is out of order");
    }
    assert_eq!(s.statistics().unwrap().0.tp_drops, 0);
}

#[test]
fn missing_interface_queue_out_of_range_down_and_over_mtu_are_clear_errors() {
    require_net!();
    let umem = umem();
    let e = XskSocket::new("nmrs-nope0", 0, &umem, &XskConfig::default()).unwrap_err();
    assert!(
        matches!(e, Error::NoSuchInterface { ref name, .. } if name == "nmrs-nope0"),
        "{e}"
    );
    let e = PacketSocket::new("nmrs-nope0", &PacketConfig::default()).unwrap_err();
    assert!(matches!(e, Error::NoSuchInterface { .. }), "{e}");

    let pair = VethPair::new();
    let e = XskSocket::new(&pair.a, 5, &umem, &XskConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::QueueOutOfRange {
                queue: 5,
                available: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("ethtool -l"), "{e}");
    let iface = Interface::lookup(&pair.a).unwrap();
    let prog = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap();
    let mut xsk = XskSocket::new(&pair.a, 0, &umem, &XskConfig::default()).unwrap();
    assert!(matches!(
        prog.register(5, xsk.fd()),
        Err(Error::QueueOutOfRange { .. })
    ));
    // Frames over the MTU are refused before they reach the kernel.
    let big = sys::XdpDesc {
        addr: 0,
        len: 1515,
        options: 0,
    };
    assert!(matches!(
        xsk.tx.produce(&[big]),
        Err(Error::FrameOverMtu {
            len: 1515,
            max: 1514
        })
    ));
    let mut ps = PacketSocket::new(&pair.a, &PacketConfig::default()).unwrap();
    assert!(matches!(
        ps.send(&[0u8; 1600]),
        Err(Error::FrameOverMtu { len: 1600, .. })
    ));
    drop((xsk, ps, prog));

    pair.set_a_down();
    let e = XskSocket::new(&pair.a, 0, &umem, &XskConfig::default()).unwrap_err();
    assert!(matches!(e, Error::InterfaceDown(_)), "{e}");
    assert!(e.to_string().contains("ip link set dev"), "{e}");
    let e = PacketSocket::new(&pair.a, &PacketConfig::default()).unwrap_err();
    assert!(matches!(e, Error::InterfaceDown(_)), "{e}");
}

/// Somebody else's program (a plain XDP_PASS, attached here the way `ip link set xdpgeneric`
/// or `xdp-filter --mode skb` would: netlink, generic mode) is reported and left in place.
#[test]
fn foreign_xdp_program_is_reported_and_left_alone() {
    require_net!();
    let pair = VethPair::new();
    let iface = Interface::lookup_up(&pair.a).unwrap();
    let foreign = bpf::load_xdp(&bpf::pass_program(), "someone_else").unwrap();
    let foreign_id = bpf::prog_id(foreign.as_fd()).unwrap();
    netlink::xdp_set(
        iface.index,
        foreign.as_raw_fd(),
        sys::XDP_FLAGS_SKB_MODE | sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
        None,
    )
    .unwrap();
    for opts in [
        XdpAttachOptions::default(),
        XdpAttachOptions {
            mode: Some(XdpMode::Native),
            method: Some(AttachMethod::Link),
        },
    ] {
        let e = XdpProgram::attach(&iface, &opts).unwrap_err();
        assert!(
            matches!(e, Error::XdpProgramAttached { prog_id, .. } if prog_id == foreign_id),
            "{e}"
        );
        assert!(
            e.to_string().contains("neither replaces nor removes"),
            "{e}"
        );
    }
    // Still attached, still the same program.
    assert!(netlink::xdp_query(iface.index).unwrap().has(foreign_id));
    assert!(pair.link_show_a().contains("xdp"));
    netlink::xdp_set(iface.index, -1, sys::XDP_FLAGS_SKB_MODE, None).unwrap();
    assert!(!netlink::xdp_query(iface.index).unwrap().any());

    // The same with the foreign program held by a BPF link (the pre-check sees it too).
    let link = bpf::link_create(foreign.as_fd(), iface.index, sys::XDP_FLAGS_SKB_MODE).unwrap();
    let e = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap_err();
    assert!(
        matches!(e, Error::XdpProgramAttached { prog_id, .. } if prog_id == foreign_id),
        "{e}"
    );
    drop(link);
}

#[test]
fn attach_methods_detach_on_drop_and_report_their_mode() {
    require_net!();
    let pair = VethPair::new();
    let iface = Interface::lookup_up(&pair.a).unwrap();
    for method in [AttachMethod::Link, AttachMethod::Netlink] {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let opts = XdpAttachOptions {
                mode: Some(mode),
                method: Some(method),
            };
            let prog = XdpProgram::attach(&iface, &opts).unwrap();
            assert_eq!((prog.mode(), prog.method()), (mode, method));
            let st = netlink::xdp_query(iface.index).unwrap();
            assert!(st.has(prog.prog_id()), "{st:?} lacks {}", prog.prog_id());
            assert_eq!(
                st.attached,
                match mode {
                    XdpMode::Native => sys::XDP_ATTACHED_DRV,
                    XdpMode::Generic => sys::XDP_ATTACHED_SKB,
                }
            );
            drop(prog);
            assert!(
                detached_soon(iface.index),
                "{method:?}/{mode:?} left a program attached: {:?}",
                netlink::xdp_query(iface.index)
            );
        }
    }
    // The default choice on veth, and the socket mode veth gives (no zero copy on veth).
    let prog = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap();
    let umem = umem();
    let xsk = XskSocket::new(&pair.a, 0, &umem, &XskConfig::default()).unwrap();
    eprintln!(
        "veth default: {:?} via {:?}; socket {:?}",
        prog.mode(),
        prog.method(),
        xsk.mode()
    );
    assert_eq!(xsk.mode(), XskBindMode::Copy);
}

#[test]
fn second_socket_shares_the_umem_on_another_interface() {
    require_net!();
    let p1 = VethPair::new();
    let p2 = VethPair::new();
    let umem = umem();
    let s1 = XskSocket::new(&p1.a, 0, &umem, &XskConfig::default()).unwrap();
    let s2 = XskSocket::new(&p2.a, 0, &umem, &XskConfig::default()).unwrap();
    assert!(!s1.is_shared());
    assert!(s2.is_shared());
    assert_eq!(s2.mode(), s1.mode());
    // The same queue twice on one UMEM is refused.
    let e = XskSocket::new(&p1.a, 0, &umem, &XskConfig::default()).unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "{e}");
}

const CHILD_ENV: &str = "NETMAP_RS_TEST_XDP_CHILD";

/// A process with an open `xdp:` port that is SIGKILLed leaves no program attached: the link
/// fd closes with the process. (Re-runs this test binary as the child.)
#[test]
fn xdp_program_gone_after_sigkill() {
    if let Ok(ifname) = std::env::var(CHILD_ENV) {
        // Child: open an xdp: port (program attached, socket bound and registered), report
        // the program, then wait to be killed.
        let port = crate::sync::port::Netmap::open(&format!("xdp:{ifname}")).unwrap();
        let index = Interface::lookup(&ifname).unwrap().index;
        let id = netlink::xdp_query(index).unwrap().some_id();
        let mut out = std::io::stdout();
        writeln!(out, "ATTACHED {id}").unwrap();
        let _keep = port;
        out.flush().unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    require_net!();
    let pair = VethPair::new();
    let name = concat!(module_path!(), "::xdp_program_gone_after_sigkill");
    let name = name.split_once("::").map_or(name, |(_, rest)| rest);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &pair.a)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the child's report on a thread, so a silent child fails the test instead of
    // hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness's "test ... " prefix shares the line.
            if let Some((_, id)) = line.split_once("ATTACHED ") {
                let _ = tx.send(id.trim().parse::<u32>().unwrap_or(0));
            }
        }
    });
    let id = match rx.recv_timeout(PATIENCE) {
        Ok(id) => id,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never reported an attached program: {e}");
        }
    };
    let index = Interface::lookup(&pair.a).unwrap().index;
    assert!(netlink::xdp_query(index).unwrap().has(id));
    assert!(pair.link_show_a().contains("xdp"), "{}", pair.link_show_a());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while netlink::xdp_query(index).unwrap().any() {
        assert!(
            Instant::now() < deadline,
            "program {id} still attached after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let shown = pair.link_show_a();
    assert!(!shown.contains("xdp"), "{shown}");
}

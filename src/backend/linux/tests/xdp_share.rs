//! One interface, several ports: two ports of one process and two processes on the two
//! queues of a veth, each with its own filter, share the crate's program. Each port gets the
//! datagrams its filter matches on its queue, the host gets the rest (exactly once between
//! them); the last one out detaches; a SIGKILLed process leaves the other working and,
//! once both are gone, nothing attached.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::sockets::{detached_soon, PATIENCE};
use super::testnet::{require_net, VethPair};
use super::xdp_filter::{host_udp, udp_dst};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::netlink;
use crate::sync::port::Netmap;

/// Datagrams per destination port in a round, each from a socket of its own (a flow of its
/// own: the peer spreads them over both queues by hash).
const FLOWS: usize = 32;
const PORT0: u16 = 7300;
const PORT1: u16 = 7301;
const CHILD_ENV: &str = "NETMAP_RS_TEST_XDP_SHARE_CHILD";

/// Sends one datagram from each of `FLOWS` fresh sockets in the namespace to each port.
fn send_round(pair: &VethPair, ports: &[u16]) {
    let (ip_a, ip_b, ports) = (pair.ip_a, pair.ip_b, ports.to_vec());
    pair.in_ns(move || {
        for i in 0..FLOWS {
            let s = UdpSocket::bind(SocketAddrV4::new(ip_b, 0)).unwrap();
            for &p in &ports {
                s.send_to(format!("flow {i}").as_bytes(), SocketAddrV4::new(ip_a, p))
                    .unwrap();
            }
        }
    });
}

/// Whatever `s` has received by now.
fn drain_host(s: &UdpSocket) -> usize {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while s.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Frames `nm` has received by now, as UDP destination ports.
fn drain_port(nm: &Netmap) -> Vec<Option<u16>> {
    let mut out = Vec::new();
    for i in 0..nm.num_rx_rings() {
        let mut rx = nm.rx_ring(i).unwrap();
        rx.sync().unwrap();
        while let Some(f) = rx.recv() {
            out.push(udp_dst(f.payload()));
        }
    }
    out
}

/// Polls `step` until it returns true (panics with `what` after `PATIENCE`).
fn until(what: &dyn Fn() -> String, mut step: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !step() {
        assert!(Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn prog_on(pair: &VethPair) -> u32 {
    let index = Interface::lookup(&pair.a).unwrap().index;
    netlink::xdp_query(index).unwrap().some_id()
}

fn nothing_attached(pair: &VethPair) {
    let index = Interface::lookup(&pair.a).unwrap().index;
    assert!(detached_soon(index), "{:?}", netlink::xdp_query(index));
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", &pair.a])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("prog/xdp"), "{shown}");
}

/// Tallies of one round: what each port got and what the host's socket on its UDP port got.
#[derive(Debug, Default)]
struct Tally {
    port: Vec<Option<u16>>,
    host: usize,
}

impl Tally {
    fn done(&self) -> bool {
        self.port.len() + self.host >= FLOWS
    }
}

#[test]
fn two_ports_of_one_process_on_two_queues_get_their_own_traffic() {
    require_net!();
    let pair = VethPair::with_queues(2);
    let p0 = Netmap::open(&format!("xdp:{}-0#udp={PORT0}", pair.a)).unwrap();
    let p1 = Netmap::open(&format!("xdp:{}-1#udp={PORT1}", pair.a)).unwrap();
    let (h0, h1) = (host_udp(&pair, PORT0), host_udp(&pair, PORT1));
    let id = prog_on(&pair);
    assert_ne!(id, 0);
    send_round(&pair, &[PORT0, PORT1]);
    let (mut t0, mut t1) = (Tally::default(), Tally::default());
    until(&|| "datagrams went missing".into(), || {
        t0.port.extend(drain_port(&p0));
        t1.port.extend(drain_port(&p1));
        t0.host += drain_host(&h0);
        t1.host += drain_host(&h1);
        t0.done() && t1.done()
    });
    eprintln!("queue 0 port {PORT0}: {t0:?}\nqueue 1 port {PORT1}: {t1:?}");
    assert!(t0.port.iter().all(|&p| p == Some(PORT0)), "{t0:?}");
    assert!(t1.port.iter().all(|&p| p == Some(PORT1)), "{t1:?}");
    assert_eq!(t0.port.len() + t0.host, FLOWS, "each datagram exactly once");
    assert_eq!(t1.port.len() + t1.host, FLOWS, "each datagram exactly once");
    // 32 flows on two queues: both queues carried some (a miss has odds of 2^-31).
    assert!(!t0.port.is_empty() && !t1.port.is_empty(), "{t0:?} {t1:?}");

    // The first port out leaves the program to the second, which keeps receiving.
    drop(p0);
    assert_eq!(prog_on(&pair), id, "the program stays while a port uses it");
    send_round(&pair, &[PORT0, PORT1]);
    let (mut t0, mut t1) = (Tally::default(), Tally::default());
    until(
        &|| "datagrams went missing after the first port closed".into(),
        || {
            t1.port.extend(drain_port(&p1));
            t0.host += drain_host(&h0);
            t1.host += drain_host(&h1);
            t0.done() && t1.done()
        },
    );
    assert_eq!(t0.host, FLOWS, "queue 0's datagrams go to the host now");
    assert!(!t1.port.is_empty(), "{t1:?}");
    assert!(t1.port.iter().all(|&p| p == Some(PORT1)), "{t1:?}");
    drop(p1);
    nothing_attached(&pair);
}

/// Child: opens queue 1 with its filter, reports the program id, then prints the UDP
/// destination port of every frame it receives until killed.
fn child_main(ifname: &str) -> ! {
    let nm = Netmap::open(&format!("xdp:{ifname}-1#udp={PORT1}")).unwrap();
    let index = Interface::lookup(ifname).unwrap().index;
    let id = netlink::xdp_query(index).unwrap().some_id();
    let mut out = std::io::stdout();
    writeln!(out, "\nREADY {id}").unwrap();
    out.flush().unwrap();
    loop {
        for p in drain_port(&nm) {
            writeln!(out, "\nFRAME {}", p.unwrap_or(0)).unwrap();
        }
        out.flush().unwrap();
        let _ = nm.wait_readable(Some(Duration::from_millis(100)));
    }
}

/// Spawns this test binary as the child; its reports come through the receiver.
fn spawn_child(test: &str, ifname: &str) -> (Child, Receiver<(String, u32)>) {
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, ifname)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            for key in ["READY", "FRAME"] {
                if let Some(v) = line.strip_prefix(key) {
                    let _ = tx.send((key.to_string(), v.trim().parse().unwrap_or(0)));
                }
            }
        }
    });
    (child, rx)
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_processes_share_the_program_and_survive_a_sigkill() {
    if let Ok(ifname) = std::env::var(CHILD_ENV) {
        child_main(&ifname);
    }
    require_net!();
    let pair = VethPair::with_queues(2);
    let test = concat!(
        module_path!(),
        "::two_processes_share_the_program_and_survive_a_sigkill"
    );
    let (child, reports) = spawn_child(test, &pair.a);
    let mut child = Killed(child);
    let id = match reports.recv_timeout(PATIENCE) {
        Ok((k, id)) if k == "READY" => id,
        other => panic!("the child never reported ready: {other:?}"),
    };
    // This process joins the program the child attached.
    let p0 = Netmap::open(&format!("xdp:{}-0#udp={PORT0}", pair.a)).unwrap();
    assert_eq!(prog_on(&pair), id, "one program for both processes");
    let (h0, h1) = (host_udp(&pair, PORT0), host_udp(&pair, PORT1));
    send_round(&pair, &[PORT0, PORT1]);
    let (mut t0, mut t1) = (Tally::default(), Tally::default());
    until(
        &|| "datagrams went missing with two processes".into(),
        || {
            t0.port.extend(drain_port(&p0));
            while let Ok((_, p)) = reports.try_recv() {
                t1.port.push(Some(p as u16));
            }
            t0.host += drain_host(&h0);
            t1.host += drain_host(&h1);
            t0.done() && t1.done()
        },
    );
    eprintln!("this process, queue 0: {t0:?}\nchild, queue 1: {t1:?}");
    assert!(t0.port.iter().all(|&p| p == Some(PORT0)), "{t0:?}");
    assert!(t1.port.iter().all(|&p| p == Some(PORT1)), "{t1:?}");
    assert_eq!(t0.port.len() + t0.host, FLOWS, "each datagram exactly once");
    assert_eq!(t1.port.len() + t1.host, FLOWS, "each datagram exactly once");
    assert!(!t0.port.is_empty() && !t1.port.is_empty(), "{t0:?} {t1:?}");

    // SIGKILL the child: this process keeps the program and its traffic.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_eq!(prog_on(&pair), id, "the program stays for the survivor");
    send_round(&pair, &[PORT0, PORT1]);
    let (mut t0, mut t1) = (Tally::default(), Tally::default());
    until(
        &|| "datagrams went missing after the SIGKILL".into(),
        || {
            t0.port.extend(drain_port(&p0));
            t0.host += drain_host(&h0);
            t1.host += drain_host(&h1);
            t0.done() && t1.done()
        },
    );
    assert!(!t0.port.is_empty(), "{t0:?}");
    assert!(t0.port.iter().all(|&p| p == Some(PORT0)), "{t0:?}");
    assert_eq!(t1.host, FLOWS, "the dead child's queue goes to the host");
    drop(p0);
    nothing_attached(&pair);
}

/// The join path without the process's registry: a second attach finds the first's program
/// and holds its link; the program stays until the last holder goes. Attaches racing from
/// several threads all end up on one program (the losers of `BPF_LINK_CREATE` join).
#[test]
fn attaches_join_one_program_and_the_last_holder_detaches() {
    use crate::backend::xdp::prog::{AttachMethod, XdpAttachOptions, XdpProgram};
    require_net!();
    let pair = VethPair::new();
    let iface = Interface::lookup_up(&pair.a).unwrap();
    let first = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap();
    let second = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap();
    assert_eq!(first.prog_id(), second.prog_id());
    assert_eq!(second.method(), AttachMethod::Link);
    assert_eq!(first.mode(), second.mode());
    drop(first);
    assert_eq!(
        prog_on(&pair),
        second.prog_id(),
        "the second holder keeps it"
    );
    drop(second);
    nothing_attached(&pair);

    let progs: Vec<XdpProgram> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| XdpProgram::attach(&iface, &XdpAttachOptions::default())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let id = progs[0].prog_id();
    assert!(progs.iter().all(|p| p.prog_id() == id), "one program");
    assert_eq!(prog_on(&pair), id);
    drop(progs);
    nothing_attached(&pair);
}

/// The crate's own program attached through netlink (as on a kernel before 5.9) has no link
/// to share: a second attach reports it, with its name and how to remove it, and leaves it.
#[test]
fn own_program_attached_by_netlink_is_not_joined() {
    use crate::backend::xdp::prog::{AttachMethod, XdpAttachOptions, XdpProgram};
    require_net!();
    let pair = VethPair::new();
    let iface = Interface::lookup_up(&pair.a).unwrap();
    let opts = XdpAttachOptions {
        method: Some(AttachMethod::Netlink),
        ..Default::default()
    };
    let first = XdpProgram::attach(&iface, &opts).unwrap();
    let e = XdpProgram::attach(&iface, &XdpAttachOptions::default()).unwrap_err();
    match &e {
        crate::Error::XdpProgramAttached {
            prog_id, prog_name, ..
        } => {
            assert_eq!(*prog_id, first.prog_id());
            assert!(prog_name.contains("without a link"), "{e}");
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("xdp off"), "{e}");
    assert_eq!(prog_on(&pair), first.prog_id());
    drop(first);
    nothing_attached(&pair);
}

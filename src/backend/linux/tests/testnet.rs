//! Test fixture: a veth pair with one end (`a`) in this network namespace and the other (`b`)
//! in a namespace the fixture creates, with addresses, static neighbour entries (no ARP on the
//! wire), TX checksum offload and IPv6 off on both ends. Everything is removed on drop, also
//! when the test panics. Plus Ethernet/IPv4/UDP frame building and parsing.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why the fixture cannot run here, if it cannot.
pub(crate) fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: veth/netns/AF_XDP tests need root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("ethtool", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .output()
            .map(|o| o.status.success());
        if !matches!(ok, Ok(true)) {
            return Some(format!(
                "`{tool}` not found (apt-get install iproute2 ethtool)"
            ));
        }
    }
    // Root without bpf(2) (a container without CAP_BPF/CAP_SYS_ADMIN, or BPF disabled): the
    // AF_XDP half of the tests cannot run.
    if let Err(e) = crate::backend::xdp::bpf::create_xskmap(1) {
        return Some(format!(
            "bpf(2) is not available here ({e}): AF_XDP needs it"
        ));
    }
    if !crate::backend::linux::xdp_sockets_available() {
        return Some("AF_XDP sockets are not available (kernel without CONFIG_XDP_SOCKETS)".into());
    }
    None
}

/// Skips the calling test (prints why and returns) when the fixture cannot run.
macro_rules! require_net {
    () => {
        if let Some(why) = $crate::backend::linux::tests::testnet::unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}
pub(crate) use require_net;

/// A veth pair across two namespaces.
#[derive(Debug)]
pub(crate) struct VethPair {
    /// Name of the end in this namespace.
    pub a: String,
    /// Name of the end in the test namespace.
    pub b: String,
    /// Name of the test namespace.
    pub ns: String,
    /// Address of `a`.
    pub ip_a: Ipv4Addr,
    /// Address of `b`.
    pub ip_b: Ipv4Addr,
    /// MAC of `a`.
    pub mac_a: [u8; 6],
    /// MAC of `b`.
    pub mac_b: [u8; 6],
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl VethPair {
    /// Creates the pair (names unique per process and call, ≤ 15 characters).
    pub(crate) fn new() -> VethPair {
        let pid = std::process::id() % 100_000;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pair = VethPair {
            a: format!("nmA{pid}x{n}"),
            b: format!("nmB{pid}x{n}"),
            ns: format!("nmrs{pid}_{n}"),
            ip_a: Ipv4Addr::new(10, 100 + (pid % 100) as u8, (n % 250) as u8, 1),
            ip_b: Ipv4Addr::new(10, 100 + (pid % 100) as u8, (n % 250) as u8, 2),
            mac_a: [0x02, 0x6e, (pid >> 8) as u8, pid as u8, n as u8, 0x0a],
            mac_b: [0x02, 0x6e, (pid >> 8) as u8, pid as u8, n as u8, 0x0b],
        };
        // From here on, Drop cleans up whatever was created.
        if let Err(e) = pair.setup() {
            panic!("veth fixture setup failed: {e}");
        }
        pair
    }

    fn setup(&self) -> Result<(), String> {
        let (a, b, ns) = (self.a.as_str(), self.b.as_str(), self.ns.as_str());
        let (ma, mb) = (mac_str(&self.mac_a), mac_str(&self.mac_b));
        let (ia, ib) = (self.ip_a.to_string(), self.ip_b.to_string());
        run(&["ip", "netns", "add", ns])?;
        run(&[
            "ip", "link", "add", a, "address", &ma, "type", "veth", "peer", "name", b, "address",
            &mb, "netns", ns,
        ])?;
        // IPv6 off before the links come up: no router solicitations or MLD on the wire.
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{a}/disable_ipv6"), "1")
            .map_err(|e| format!("disable_ipv6 on {a}: {e}"))?;
        let b_v6 = format!("echo 1 > /proc/sys/net/ipv6/conf/{b}/disable_ipv6");
        run(&["ip", "netns", "exec", ns, "sh", "-c", &b_v6])?;
        run(&["ethtool", "-K", a, "tx", "off"])?;
        run(&["ip", "netns", "exec", ns, "ethtool", "-K", b, "tx", "off"])?;
        run(&["ip", "addr", "add", &format!("{ia}/24"), "dev", a])?;
        run(&["ip", "-n", ns, "addr", "add", &format!("{ib}/24"), "dev", b])?;
        run(&["ip", "link", "set", a, "up"])?;
        run(&["ip", "-n", ns, "link", "set", b, "up"])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        run(&[
            "ip",
            "neigh",
            "replace",
            &ib,
            "lladdr",
            &mb,
            "dev",
            a,
            "nud",
            "permanent",
        ])?;
        run(&[
            "ip",
            "-n",
            ns,
            "neigh",
            "replace",
            &ia,
            "lladdr",
            &ma,
            "dev",
            b,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// Runs `f` on a thread that has entered the test namespace; sockets it creates belong to
    /// that namespace and may be used from any thread afterwards.
    pub(crate) fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd; it only affects this (new) thread.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// `ip link show dev a` output.
    pub(crate) fn link_show_a(&self) -> String {
        run(&["ip", "link", "show", "dev", &self.a]).unwrap_or_default()
    }

    /// Sets `a` down (for the interface-down test).
    pub(crate) fn set_a_down(&self) {
        run(&["ip", "link", "set", &self.a, "down"]).expect("ip link set down");
    }

    /// Sets the MTU of both ends (`b` first, so `a` never sends what `b` refuses). The kernel
    /// may refuse (an XDP program in native mode limits a veth's MTU): the error says why.
    pub(crate) fn set_mtu(&self, mtu: u32) -> Result<(), String> {
        let m = mtu.to_string();
        run(&["ip", "-n", &self.ns, "link", "set", &self.b, "mtu", &m])?;
        run(&["ip", "link", "set", &self.a, "mtu", &m]).map(drop)
    }

    /// Deletes the pair while the test still holds it (Drop then finds nothing to delete).
    pub(crate) fn delete(&self) {
        run(&["ip", "link", "del", &self.a]).expect("ip link del");
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting the namespace deletes `b` and with it the pair; delete `a` too in case the
        // pair was created without its peer moving.
        let _ = run(&["ip", "link", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// IPv4 header checksum (ones' complement of the ones' complement sum of 16-bit words).
pub(crate) fn ip_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = hdr
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Endpoints of a UDP frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpEnds {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Ethernet + IPv4 (checksummed) + UDP (checksum 0) frame carrying `payload`.
pub(crate) fn udp_frame(e: &UdpEnds, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&e.dst_mac);
    f.extend_from_slice(&e.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&e.src_ip.octets());
    ip[16..20].copy_from_slice(&e.dst_ip.octets());
    let c = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&e.src_port.to_be_bytes());
    f.extend_from_slice(&e.dst_port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Parses an Ethernet/IPv4/UDP frame: `(ends, payload)`; `None` for anything else or a bad IP
/// checksum.
pub(crate) fn parse_udp(f: &[u8]) -> Option<(UdpEnds, &[u8])> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    if ip_checksum(&f[14..34]) != 0 {
        return None;
    }
    let ulen = u16::from_be_bytes([f[38], f[39]]) as usize;
    if ulen < 8 || 34 + ulen > f.len() {
        return None;
    }
    let mac = |o: usize| -> [u8; 6] { f[o..o + 6].try_into().unwrap() };
    let ip = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    Some((
        UdpEnds {
            dst_mac: mac(0),
            src_mac: mac(6),
            src_ip: ip(26),
            dst_ip: ip(30),
            src_port: u16::from_be_bytes([f[34], f[35]]),
            dst_port: u16::from_be_bytes([f[36], f[37]]),
        },
        &f[42..34 + ulen],
    ))
}

#[test]
fn udp_frame_round_trips_with_valid_checksum() {
    let e = UdpEnds {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: Ipv4Addr::new(10, 0, 0, 2),
        src_port: 1234,
        dst_port: 5678,
    };
    let f = udp_frame(&e, b"hello");
    assert_eq!(f.len(), 47);
    assert_eq!(ip_checksum(&f[14..34]), 0);
    let (p, payload) = parse_udp(&f).unwrap();
    assert_eq!(payload, b"hello");
    assert_eq!((p.src_port, p.dst_port, p.dst_ip), (1234, 5678, e.dst_ip));
    let mut bad = f.clone();
    bad[24] ^= 1;
    assert!(parse_udp(&bad).is_none());
}

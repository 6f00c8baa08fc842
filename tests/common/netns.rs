//! A veth pair with IPv4 and IPv6 for the UDP layer's tests: end `a` here, end `b` in a
//! namespace of its own, static neighbours both ways on both families (no ARP or ND
//! needed), TX checksum offload off (so checksums on the wire are real and the peer's
//! kernel checks them). Removed on drop, also when the test panics. Code can run inside
//! the namespace on a thread of its own ([`Net::in_ns`]).

use std::os::fd::AsRawFd;

use super::veth::run;
pub use super::veth::unavailable;

/// The pair.
#[derive(Debug)]
pub struct Net {
    pub a: String,
    pub b: String,
    pub ns: String,
    pub ip_a: String,
    pub ip_b: String,
    pub ip6_a: String,
    pub ip6_b: String,
    pub mac_a: String,
    pub mac_b: String,
}

impl Net {
    /// Pair number `n` of this process, with `queues` queues each end.
    pub fn new(n: u32, queues: u32) -> Net {
        let pid = std::process::id() % 10_000;
        let net = Net {
            a: format!("nmuA{pid}x{n}"),
            b: format!("nmuB{pid}x{n}"),
            ns: format!("nmrsu{pid}_{n}"),
            ip_a: format!("10.{}.{n}.1", 150 + pid % 50),
            ip_b: format!("10.{}.{n}.2", 150 + pid % 50),
            ip6_a: format!("fd77:{pid:x}:{n:x}::1"),
            ip6_b: format!("fd77:{pid:x}:{n:x}::2"),
            mac_a: format!(
                "02:75:{:02x}:{:02x}:{n:02x}:0a",
                pid >> 8 & 0xff,
                pid & 0xff
            ),
            mac_b: format!(
                "02:75:{:02x}:{:02x}:{n:02x}:0b",
                pid >> 8 & 0xff,
                pid & 0xff
            ),
        };
        if let Err(e) = net.setup(queues) {
            drop(net);
            panic!("netns fixture: {e}");
        }
        net
    }

    fn setup(&self, queues: u32) -> Result<(), String> {
        let (a, b, ns) = (self.a.as_str(), self.b.as_str(), self.ns.as_str());
        let q = queues.to_string();
        run(&["ip", "netns", "add", ns])?;
        run(&[
            "ip",
            "link",
            "add",
            a,
            "address",
            &self.mac_a,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "address",
            &self.mac_b,
            "netns",
            ns,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        let v6on = |dev: &str| format!("echo 0 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        run(&["sh", "-c", &v6on(a)])?;
        run(&["ip", "netns", "exec", ns, "sh", "-c", &v6on(b)])?;
        run(&["ethtool", "-K", a, "tx", "off"])?;
        run(&["ip", "netns", "exec", ns, "ethtool", "-K", b, "tx", "off"])?;
        run(&["ip", "addr", "add", &format!("{}/24", self.ip_a), "dev", a])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/64", self.ip6_a),
            "dev",
            a,
            "nodad",
        ])?;
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", self.ip_b),
            "dev",
            b,
        ])?;
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/64", self.ip6_b),
            "dev",
            b,
            "nodad",
        ])?;
        run(&["ip", "link", "set", a, "up"])?;
        run(&["ip", "-n", ns, "link", "set", b, "up"])?;
        for (ip, mac) in [(&self.ip_b, &self.mac_b), (&self.ip6_b, &self.mac_b)] {
            run(&[
                "ip",
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                a,
                "nud",
                "permanent",
            ])?;
        }
        for (ip, mac) in [(&self.ip_a, &self.mac_a), (&self.ip6_a, &self.mac_a)] {
            run(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                b,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Runs `f` on a thread inside the namespace; sockets it creates live there.
    pub fn in_ns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns(2) on a valid descriptor of a network namespace; it changes the
            // namespace of this thread only, which then creates its sockets there.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

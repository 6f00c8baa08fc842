//! A veth pair for the integration tests that run the examples over `xdp:` and `afpacket:`
//! ports: end `a` here, end `b` in a namespace of its own, static neighbours, TX checksum
//! offload and IPv6 off; removed on drop (also when the test panics). The library's unit
//! tests have the same fixture in `src/backend/linux/testnet.rs`, which is not visible here.

use std::process::Command;

/// Why the fixture cannot run here, if it cannot (not root, no `ip`/`ethtool`).
pub fn unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("not Linux".into());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Some("not root: veth/netns tests need root".into());
    }
    for tool in ["ip", "ethtool"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!(
                "`{tool}` not found (apt-get install iproute2 ethtool)"
            ));
        }
    }
    None
}

/// The pair.
#[derive(Debug)]
pub struct Veth {
    pub a: String,
    pub b: String,
    pub ns: String,
    pub ip_a: String,
    pub ip_b: String,
    pub mac_a: String,
    pub mac_b: String,
    /// TX and RX queues of each end.
    pub queues: u32,
}

/// Runs a command, its stderr in the error when it fails (shared with `netns.rs`).
pub fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Veth {
    /// Creates pair number `n` of this process.
    pub fn new(n: u32) -> Veth {
        Veth::with_queues(n, 1)
    }

    /// Creates pair number `n` with `queues` TX and RX queues on each end (the peer's stack
    /// spreads flows over them; each reaches the same-numbered queue of the other end).
    pub fn with_queues(n: u32, queues: u32) -> Veth {
        let pid = std::process::id() % 10_000;
        let v = Veth {
            a: format!("nmxA{pid}x{n}"),
            b: format!("nmxB{pid}x{n}"),
            ns: format!("nmrsx{pid}_{n}"),
            ip_a: format!("10.{}.{n}.1", 200 + pid % 50),
            ip_b: format!("10.{}.{n}.2", 200 + pid % 50),
            mac_a: format!(
                "02:6f:{:02x}:{:02x}:{n:02x}:0a",
                pid >> 8 & 0xff,
                pid & 0xff
            ),
            mac_b: format!(
                "02:6f:{:02x}:{:02x}:{n:02x}:0b",
                pid >> 8 & 0xff,
                pid & 0xff
            ),
            queues,
        };
        if let Err(e) = v.setup() {
            panic!("veth fixture: {e}");
        }
        v
    }

    fn setup(&self) -> Result<(), String> {
        let (a, b, ns) = (self.a.as_str(), self.b.as_str(), self.ns.as_str());
        run(&["ip", "netns", "add", ns])?;
        let q = self.queues.to_string();
        let qs = ["numtxqueues", &q, "numrxqueues", &q];
        let mut add = vec!["ip", "link", "add", a, "address", &self.mac_a];
        add.extend(qs);
        add.extend([
            "type",
            "veth",
            "peer",
            "name",
            b,
            "address",
            &self.mac_b,
            "netns",
            ns,
        ]);
        add.extend(qs);
        run(&add)?;
        let v6 = |dev: &str| format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        run(&["sh", "-c", &v6(a)])?;
        run(&["ip", "netns", "exec", ns, "sh", "-c", &v6(b)])?;
        run(&["ethtool", "-K", a, "tx", "off"])?;
        run(&["ip", "netns", "exec", ns, "ethtool", "-K", b, "tx", "off"])?;
        run(&["ip", "addr", "add", &format!("{}/24", self.ip_a), "dev", a])?;
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
        run(&["ip", "link", "set", a, "up"])?;
        run(&["ip", "-n", ns, "link", "set", b, "up"])?;
        let nd = |ip: &str, mac: &str, dev: &str| {
            vec![
                "neigh".to_string(),
                "replace".into(),
                ip.into(),
                "lladdr".into(),
                mac.into(),
                "dev".into(),
                dev.into(),
                "nud".into(),
                "permanent".into(),
            ]
        };
        let mut here = vec!["ip".to_string()];
        here.extend(nd(&self.ip_b, &self.mac_b, a));
        run(&here.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut there = vec!["ip".to_string(), "-n".into(), ns.into()];
        there.extend(nd(&self.ip_a, &self.mac_a, b));
        run(&there.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

//! `examples/dns_responder` on a veth pair (root, and `kdig` from Debian `knot-dnsutils`;
//! each test says why it skips elsewhere): `kdig` in the peer namespace gets the right
//! answers and header bits from the example on `xdp:` (filtered to port 53) and on
//! `afpacket:`, while a ping (when `ping` is installed) and a UDP socket of the host on
//! another port keep working beside it.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "common/run.rs"]
mod run;
use run::{example, finish};

#[path = "common/veth.rs"]
#[allow(dead_code)]
mod veth;

#[path = "common/netns.rs"]
mod netns;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

/// `kdig` in namespace `ns`; its full output.
fn kdig(ns: &str, server: &str, name: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "kdig", "+timeout=3", "+retry=2"])
        .arg(format!("@{server}"))
        .args([name, "A"])
        .output()
        .expect("kdig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kdig {name}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn kdig_gets_answers_from_the_example_and_the_host_keeps_working() {
    if let Some(why) = netns::unavailable() {
        println!("skipped: {why}");
        return;
    }
    if !have("kdig") {
        println!("skipped: `kdig` not found (apt-get install knot-dnsutils)");
        return;
    }
    for (k, backend) in ["xdp", "afpacket"].into_iter().enumerate() {
        let net = netns::Net::new(10 + k as u32, 1);
        let mut child = Command::new(example("dns_responder"))
            .args([&net.a, "--backend", backend])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        out.read_line(&mut banner).unwrap();
        if !banner.contains(&format!("{backend}:{}", net.a)) {
            child.stdout = Some(out.into_inner());
            let (_, text) = finish(child, 5);
            panic!("{backend}: no banner: {banner}{text}");
        }

        // A records, authoritative, RD copied, no RA.
        let a = kdig(&net.ns, &net.ip_a, "www.example.com");
        assert!(a.contains("status: NOERROR"), "{a}");
        assert!(a.contains("Flags: qr aa rd;"), "{a}");
        assert!(
            a.contains("www.example.com.") && a.contains("300\tIN\tA\t192.0.2.2"),
            "{a}"
        );
        let a = kdig(&net.ns, &net.ip_a, "EXAMPLE.com");
        assert!(a.contains("IN\tA\t192.0.2.1"), "{a}");
        // Other names of the zone: NXDOMAIN; outside it: REFUSED (not authoritative).
        let nx = kdig(&net.ns, &net.ip_a, "nope.example.com");
        assert!(
            nx.contains("status: NXDOMAIN") && nx.contains("Flags: qr aa rd;"),
            "{nx}"
        );
        let refused = kdig(&net.ns, &net.ip_a, "example.org");
        assert!(
            refused.contains("status: REFUSED") && refused.contains("Flags: qr rd;"),
            "{refused}"
        );

        // The host beside it: a UDP socket on another port gets a datagram from the
        // namespace, and a ping is answered.
        let host = UdpSocket::bind(SocketAddr::new(net.ip_a.parse().unwrap(), 7777)).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to: SocketAddr = SocketAddr::new(net.ip_a.parse().unwrap(), 7777);
        net.in_ns(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"to the host", to).unwrap();
        })
        .join()
        .unwrap();
        let mut buf = [0u8; 32];
        let (n, _) = host
            .recv_from(&mut buf)
            .expect("the host's socket still receives");
        assert_eq!(&buf[..n], b"to the host");
        if have("ping") {
            let st = Command::new("ip")
                .args([
                    "netns", "exec", &net.ns, "ping", "-c", "2", "-W", "3", &net.ip_a,
                ])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{backend}: ping to the host failed");
        } else {
            println!("ping not installed: only the UDP socket was checked");
        }

        // SIGTERM: it stops and says what it did.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.stdout = Some(out.into_inner());
        let (ok, text) = finish(child, 10);
        assert!(ok, "{backend}: {text}");
        assert!(text.contains("answered 4 queries"), "{backend}: {text}");
        println!("{backend}: {banner}{text}");
    }
}

//! The UDP layer on a netmap NIC port registered with its host rings (`netmap:IF*`): the
//! service answers its own port while everything else (ARP, ICMP) is passed between the NIC
//! and the host stack, so a ping to the interface's address still gets its replies.
//!
//! Needs the netmap module (`/dev/netmap`), root and `ip`: without them each test prints why
//! it was skipped and passes. `ci/kernel-tests.sh` runs it in the QEMU guest with the real
//! module, where veth is bound through netmap's emulated adapter. The fixture is a veth
//! pair of its own with the peer in a network namespace and no static neighbour: the peer's
//! ARP request and the host's reply go through the host rings too.
#![cfg(all(feature = "sys", feature = "tokio-async", target_os = "linux"))]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netmap_rs::tokio_async::{AsyncUdpPort, TokioNetmap};
use netmap_rs::udp::{UdpPort, UdpStats};
use netmap_rs::{BackendChoice, Netmap, NetmapBuilder};

const PORT: u16 = 7301;

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !netmap_rs::backend::kernel_available() {
        return Some("kernel-only test and /dev/netmap does not exist (no netmap module)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: veth/netns tests need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` not found (apt-get install iproute2)".into());
    }
    None
}

fn run(args: &[&str]) -> Result<(), String> {
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

/// A veth pair: `a` here with `ip_a`, `b` in namespace `ns` with `ip_b`; IPv6 off on both
/// (no neighbour discovery noise), no static neighbours. Removed on drop.
struct Pair {
    a: String,
    ns: String,
    ip_a: String,
}

impl Pair {
    fn new(n: u32) -> Pair {
        let pid = std::process::id() % 10_000;
        let p = Pair {
            a: format!("nmhA{pid}x{n}"),
            ns: format!("nmhs{pid}_{n}"),
            ip_a: format!("10.{}.{n}.1", 200 + pid % 50),
        };
        let b = format!("nmhB{pid}x{n}");
        let ip_b = format!("10.{}.{n}.2", 200 + pid % 50);
        let v6off = |dev: &str| format!("echo 1 > /proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        let setup = || -> Result<(), String> {
            run(&["ip", "netns", "add", &p.ns])?;
            run(&[
                "ip", "link", "add", &p.a, "type", "veth", "peer", "name", &b, "netns", &p.ns,
            ])?;
            // Best effort: a kernel without IPv6 has no such file.
            let _ = run(&["sh", "-c", &v6off(&p.a)]);
            let _ = run(&["ip", "netns", "exec", &p.ns, "sh", "-c", &v6off(&b)]);
            run(&["ip", "addr", "add", &format!("{}/24", p.ip_a), "dev", &p.a])?;
            run(&[
                "ip",
                "-n",
                &p.ns,
                "addr",
                "add",
                &format!("{ip_b}/24"),
                "dev",
                &b,
            ])?;
            run(&["ip", "link", "set", &p.a, "up"])?;
            run(&["ip", "-n", &p.ns, "link", "set", &b, "up"])
        };
        if let Err(e) = setup() {
            drop(p);
            panic!("veth fixture: {e}");
        }
        p
    }

    /// Runs `f` on a thread inside the namespace.
    fn in_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns(2) on a valid descriptor of a network namespace; it changes the
            // namespace of this thread only.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// Pings `ip_a` from the namespace: whether a reply came back, and ping's output.
    fn ping(&self) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "ping", "-c", "3", "-w", "20"])
            .arg(&self.ip_a)
            .output()
            .expect("ping");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// `netmap:IF*` on the kernel backend.
fn open_with_host_rings(ifname: &str) -> Netmap {
    let name = format!("netmap:{ifname}*");
    let port = NetmapBuilder::new(&name)
        .backend(BackendChoice::Kernel)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(port.is_host_if(), "{name} has no host rings");
    port
}

/// The reply of the echo service to `request`.
fn answer(request: &[u8], buf: &mut [u8]) -> usize {
    let n = request.len() + 5;
    buf[..5].copy_from_slice(b"echo:");
    buf[5..n].copy_from_slice(request);
    n
}

/// With a service running on the pair (started by `serve`, stopped through the flag it is
/// given, returning its counters): a datagram to the service's port gets its answer from
/// the service, and a ping to the interface's address gets its replies from the host stack.
fn check(n: u32, serve: impl FnOnce(&Pair, Arc<AtomicBool>) -> JoinHandle<UdpStats>) {
    let pair = Pair::new(n);
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve(&pair, stop.clone());

    let to: SocketAddr = format!("{}:{PORT}", pair.ip_a).parse().unwrap();
    let client = pair.in_ns(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        // The first datagram waits for ARP, answered by the host stack through the host
        // rings; a few tries cover a link still coming up.
        for _ in 0..5 {
            s.send(b"hello").unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    });
    let reply = client.join().unwrap();
    let (pinged, ping_out) = pair.ping();
    stop.store(true, Ordering::Relaxed);
    let stats = service.join().unwrap();
    println!("service counters: {stats:?}");
    assert_eq!(
        reply.as_deref(),
        Some(&b"echo:hello"[..]),
        "no answer from the service"
    );
    assert!(
        pinged,
        "the host stack did not answer the ping through the host rings:\n{ping_out}"
    );
    assert!(stats.delivered >= 1 && stats.sent >= 1, "{stats:?}");
    // ARP and ICMP both ways went through the host rings.
    assert!(stats.to_host >= 2, "{stats:?}");
    assert!(stats.from_host >= 2, "{stats:?}");
    assert_eq!(stats.bridge_dropped, 0, "{stats:?}");
}

#[test]
fn sync_service_and_host_stack_share_a_netmap_nic() {
    if let Some(why) = unavailable() {
        println!("SKIPPED sync_service_and_host_stack_share_a_netmap_nic: {why}");
        return;
    }
    check(0, |pair, stop| {
        let mut port = UdpPort::bind(open_with_host_rings(&pair.a), PORT).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                port.serve(64, Some(Duration::from_millis(50)), |d, buf| {
                    Some(answer(d.payload(), buf))
                })
                .unwrap();
            }
            port.stats()
        })
    });
}

#[test]
fn async_service_and_host_stack_share_a_netmap_nic() {
    if let Some(why) = unavailable() {
        println!("SKIPPED async_service_and_host_stack_share_a_netmap_nic: {why}");
        return;
    }
    check(1, |pair, stop| {
        let netmap = open_with_host_rings(&pair.a);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tn = TokioNetmap::new(netmap).unwrap();
                let mut port = AsyncUdpPort::bind(&tn, PORT).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let served = port.serve(64, |d, buf| Some(answer(d.payload(), buf)));
                    // Wakes up now and then to look at the flag.
                    let _ = tokio::time::timeout(Duration::from_millis(50), served).await;
                }
                port.stats()
            })
        })
    });
}

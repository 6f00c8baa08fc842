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
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netmap_rs::tokio_async::{AsyncUdpPort, TokioNetmap};
use netmap_rs::udp::{UdpPort, UdpStats};
use netmap_rs::{BackendChoice, Netmap, NetmapBuilder};

#[path = "common/veth.rs"]
#[allow(dead_code)] // only its command runner
mod veth;
use veth::run;

const PORT: u16 = 7301;

/// Why these tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !netmap_rs::backend::kernel_available() {
        return Some("kernel-only test and /dev/netmap does not exist (no netmap module)".into());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("not root: veth/netns tests need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` not found (apt-get install iproute2)".into());
    }
    None
}

/// A veth pair: `a` here with `ip_a`, `b` in namespace `ns` with `ip_b`; IPv6 off on both
/// (no neighbour discovery noise), no static neighbours. Removed on drop.
struct Pair {
    a: String,
    b: String,
    ns: String,
    ip_a: String,
}

impl Pair {
    fn new(n: u32) -> Pair {
        let pid = std::process::id() % 10_000;
        let p = Pair {
            a: format!("nmhA{pid}x{n}"),
            b: format!("nmhB{pid}x{n}"),
            ns: format!("nmhs{pid}_{n}"),
            ip_a: format!("10.{}.{n}.1", 200 + pid % 50),
        };
        let b = p.b.clone();
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

    /// Starts `ping -c COUNT -w SECS ip_a` in the namespace.
    fn ping(&self, count: u32, secs: u32) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "ping", "-c"])
            .arg(count.to_string())
            .arg("-w")
            .arg(secs.to_string())
            .arg(&self.ip_a)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ping")
    }

    /// Gives the peer a static neighbour entry for `a` (no ARP needed to reach it).
    fn static_neighbour(&self) {
        let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", self.a))
            .expect("MAC address of the veth end");
        run(&[
            "ip",
            "-n",
            &self.ns,
            "neigh",
            "replace",
            &self.ip_a,
            "lladdr",
            mac.trim(),
            "dev",
            &self.b,
            "nud",
            "permanent",
        ])
        .unwrap();
    }
}

/// Whether ping got a reply, and what it printed.
fn finish(ping: Child) -> (bool, String) {
    let out = ping.wait_with_output().expect("ping");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.a]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// `netmap:IF*` (NIC and host rings) or `netmap:IF` on the kernel backend.
fn open(ifname: &str, host_rings: bool) -> Netmap {
    let name = format!("netmap:{ifname}{}", if host_rings { "*" } else { "" });
    let port = NetmapBuilder::new(&name)
        .backend(BackendChoice::Kernel)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(port.is_host_if(), host_rings, "{name}");
    port
}

/// The reply of the echo service to `request`.
fn answer(request: &[u8], buf: &mut [u8]) -> usize {
    let n = request.len() + 5;
    buf[..5].copy_from_slice(b"echo:");
    buf[5..n].copy_from_slice(request);
    n
}

/// A service on the pair's port (opened by `serve` with or without host rings, stopped
/// through the flag it is given, returning its counters).
type Serve = fn(Netmap, Arc<AtomicBool>) -> JoinHandle<UdpStats>;

/// Sends `n` datagrams to the service from the namespace, each after the answer to the one
/// before; returns the answers. The first may wait for ARP: a few tries cover a link still
/// coming up.
fn exchange(pair: &Pair, n: usize) -> Vec<Vec<u8>> {
    let to: SocketAddr = format!("{}:{PORT}", pair.ip_a).parse().unwrap();
    pair.in_ns(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        let mut answers = Vec::new();
        for i in 0..n {
            let request = format!("hello {i}");
            for _ in 0..5 {
                s.send(request.as_bytes()).unwrap();
                if let Ok(k) = s.recv(&mut buf) {
                    answers.push(buf[..k].to_vec());
                    break;
                }
            }
        }
        answers
    })
    .join()
    .unwrap()
}

/// The answers `exchange(_, n)` expects.
fn answers(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("echo:hello {i}").into_bytes())
        .collect()
}

/// With the service on `netmap:IF*`: datagrams to its port get their answers from it while,
/// at the same time, a ping to the interface's address (ARP, then ICMP) gets its replies
/// from the host stack through the host rings.
fn shares_the_nic(n: u32, serve: Serve) {
    let pair = Pair::new(n);
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve(open(&pair.a, true), stop.clone());
    let ping = pair.ping(3, 20);
    let got = exchange(&pair, 10);
    let (pinged, ping_out) = finish(ping);
    stop.store(true, Ordering::Relaxed);
    let stats = service.join().unwrap();
    println!("service counters: {stats:?}\n{ping_out}");
    assert_eq!(got, answers(10), "answers from the service");
    assert!(
        pinged,
        "the host stack did not answer the ping through the host rings:\n{ping_out}"
    );
    assert!(stats.delivered >= 10 && stats.sent >= 10, "{stats:?}");
    // ARP and ICMP both ways went through the host rings.
    assert!(stats.to_host >= 2, "{stats:?}");
    assert!(stats.from_host >= 2, "{stats:?}");
    assert_eq!(stats.bridge_dropped, 0, "{stats:?}");
}

/// With the service on `netmap:IF` (no host rings), as before: it answers (the peer knows
/// its MAC statically), and the host stack, cut off from the interface, answers no ping.
fn without_host_rings_nothing_is_passed(n: u32, serve: Serve) {
    let pair = Pair::new(n);
    pair.static_neighbour();
    let stop = Arc::new(AtomicBool::new(false));
    let service = serve(open(&pair.a, false), stop.clone());
    let got = exchange(&pair, 3);
    let (pinged, ping_out) = finish(pair.ping(1, 3));
    stop.store(true, Ordering::Relaxed);
    let stats = service.join().unwrap();
    println!("service counters: {stats:?}");
    assert_eq!(got, answers(3), "answers from the service");
    assert!(
        !pinged,
        "the host answered a ping without host rings:\n{ping_out}"
    );
    assert!(stats.not_ours >= 1, "the ping reached the port: {stats:?}");
    assert_eq!((stats.to_host, stats.from_host), (0, 0), "{stats:?}");
}

fn serve_sync(netmap: Netmap, stop: Arc<AtomicBool>) -> JoinHandle<UdpStats> {
    let mut port = UdpPort::bind(netmap, PORT).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            port.serve(64, Some(Duration::from_millis(50)), |d, buf| {
                Some(answer(d.payload(), buf))
            })
            .unwrap();
        }
        port.stats()
    })
}

fn serve_async(netmap: Netmap, stop: Arc<AtomicBool>) -> JoinHandle<UdpStats> {
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
}

macro_rules! guest_test {
    ($name:ident, $check:ident, $n:expr, $serve:ident) => {
        #[test]
        fn $name() {
            if let Some(why) = unavailable() {
                println!("SKIPPED {}: {why}", stringify!($name));
                return;
            }
            $check($n, $serve);
        }
    };
}

guest_test!(
    sync_service_and_host_stack_share_a_netmap_nic,
    shares_the_nic,
    0,
    serve_sync
);
guest_test!(
    async_service_and_host_stack_share_a_netmap_nic,
    shares_the_nic,
    1,
    serve_async
);
guest_test!(
    sync_without_host_rings_the_host_stack_stays_cut_off,
    without_host_rings_nothing_is_passed,
    2,
    serve_sync
);
guest_test!(
    async_without_host_rings_the_host_stack_stays_cut_off,
    without_host_rings_nothing_is_passed,
    3,
    serve_async
);

//! The examples on veth pairs (root; each test says why it skips elsewhere): `pkt_gen` over
//! AF_XDP and AF_PACKET, every queue of a four-queue port, `bridge` between two pairs.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[path = "common/run.rs"]
mod run;
use run::{example, finish};

#[path = "common/veth.rs"]
mod veth;

/// Runs `pkt_gen` with `args`, in the namespace `ns` when given; returns the child.
fn spawn_pkt_gen(ns: Option<&str>, args: &[&str]) -> std::process::Child {
    let exe = example("pkt_gen");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `pkt_gen -f tx` on `PREFIX:vethA` to `pkt_gen -f rx` (async) on `PREFIX:vethB` in the
/// peer namespace, on AF_XDP and AF_PACKET: every packet arrives, none lost or reordered,
/// and the receiver's kernel counters say the same. Then `-f ping` / `-f pong` over the same pair.
#[test]
fn pkt_gen_over_xdp_and_afpacket_on_veth() {
    if let Some(why) = veth::unavailable() {
        println!("skipped: {why}");
        return;
    }
    // Paced well below what the path carries, in bursts of 32, so that a receiver starved of
    // CPU for a while (2 shared cores) catches up from its kernel ring, and a burst never
    // overflows the per-CPU receive backlog (netdev_max_backlog, shared with every other
    // veth on the machine) on its way to the peer.
    let n = "10000";
    for (i, prefix) in ["xdp", "afpacket"].into_iter().enumerate() {
        let v = veth::Veth::new(i as u32);
        let rx_port = format!("{prefix}:{}", v.b);
        let tx_port = format!("{prefix}:{}", v.a);
        let rx = spawn_pkt_gen(
            Some(&v.ns),
            // Rings that hold every packet of the run: a receiver starved of CPU for the
            // whole run (2 shared cores) still loses nothing.
            &[
                "-i", &rx_port, "-f", "rx", "-n", n, "--async", "--slots", "8192", "--seq",
            ],
        );
        // The receiver is ready once it printed its banner (its port is open).
        let mut rx = rx;
        let mut out = BufReader::new(rx.stdout.take().unwrap());
        let mut banner = String::new();
        out.read_line(&mut banner).unwrap();
        assert!(banner.contains(&rx_port), "receiver banner: {banner}");
        assert!(banner.contains(if prefix == "xdp" {
            "AF_XDP"
        } else {
            "AF_PACKET"
        }));
        let dst = format!("{}:1234", v.ip_b);
        let src = format!("{}:1234", v.ip_a);
        let tx_args = [
            "-i", &tx_port, "-f", "tx", "-n", n, "-R", "20000", "-b", "32", "--seq", "-D",
            &v.mac_b, "-S", &v.mac_a, "-d", &dst, "-s", &src,
        ];
        let (ok_tx, tx_text) = finish(spawn_pkt_gen(None, &tx_args), 30);
        assert!(ok_tx, "{prefix} tx failed:\n{tx_text}");
        assert!(tx_text.contains(&format!("Sent {n} packets")), "{tx_text}");
        rx.stdout = Some(out.into_inner());
        let (ok_rx, rx_text) = finish(rx, 30);
        assert!(ok_rx, "{prefix} rx failed:\n{rx_text}\ntx:\n{tx_text}");
        let want = format!("Received {n} packets: lost 0 reordered 0");
        assert!(rx_text.contains(&want), "{prefix}: {rx_text}");
        // The kernel's counters are shown (issue 22.1) and agree: nothing dropped.
        assert!(
            rx_text.contains("Kernel counters: ") && rx_text.contains("rx_ring_full 0"),
            "{prefix}: no kernel counters, or a drop: {rx_text}"
        );
        println!("{prefix}:\n{tx_text}{rx_text}");

        // Round trips: pong in the namespace, ping here.
        let pong = spawn_pkt_gen(Some(&v.ns), &["-i", &rx_port, "-f", "pong", "-n", "200"]);
        let mut pong = pong;
        let mut out = BufReader::new(pong.stdout.take().unwrap());
        let mut banner = String::new();
        out.read_line(&mut banner).unwrap();
        let ping_args = [
            "-i", &tx_port, "-f", "ping", "-n", "200", "-D", &v.mac_b, "-S", &v.mac_a, "-d", &dst,
            "-s", &src,
        ];
        let (ok_ping, ping_text) = finish(spawn_pkt_gen(None, &ping_args), 30);
        pong.stdout = Some(out.into_inner());
        let (_, pong_text) = finish(pong, 5);
        assert!(
            ok_ping,
            "{prefix} ping failed:\n{ping_text}\npong:\n{pong_text}"
        );
        assert!(ping_text.contains("RTT usec"), "{ping_text}");
        println!("{prefix}: {ping_text}");
    }
}

/// Issue 22.6: a veth pair with 4 queues, 40,000 datagrams to 64 ports from a socket in the
/// namespace (the kernel spreads the flows over the queues): `pkt_gen -i xdp:A -f rx` in one
/// thread counts every one, on the sync path and with `--async` (the Tokio layer's
/// port-level receive). Before: it read ring 0 only and counted about a quarter.
#[test]
fn pkt_gen_one_thread_reads_every_queue_of_a_four_queue_xdp_port() {
    if let Some(why) = veth::unavailable() {
        println!("skipped: {why}");
        return;
    }
    const N: usize = 40_000;
    for (i, mode) in [None, Some("--async")].into_iter().enumerate() {
        let v = veth::Veth::with_queues(20 + i as u32, 4);
        let port = format!("xdp:{}", v.a);
        let n = N.to_string();
        // `-w 0`: read at once (the default 2 s wait for link up would let the rings overflow:
        // the kernel counters then show the loss, `rx_fill_empty`).
        let mut args = vec![
            "-i", &port, "-f", "rx", "-n", &n, "--slots", "4096", "-w", "0",
        ];
        args.extend(mode);
        let mut rx = spawn_pkt_gen(None, &args);
        let mut out = BufReader::new(rx.stdout.take().unwrap());
        let mut banner = String::new();
        out.read_line(&mut banner).unwrap();
        assert!(banner.contains(&port), "receiver banner: {banner}");
        let ns = format!("/var/run/netns/{}", v.ns);
        let to: std::net::Ipv4Addr = v.ip_a.parse().unwrap();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&ns).unwrap();
            // SAFETY: setns on a valid namespace descriptor; it affects this new thread only.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            for k in 0..N {
                let dst = std::net::SocketAddrV4::new(to, 7000 + (k % 64) as u16);
                s.send_to(&(k as u32).to_be_bytes(), dst).unwrap();
                // Paced: the veth's 256-entry ring per queue never overflows.
                if k % 32 == 31 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
        .join()
        .unwrap();
        rx.stdout = Some(out.into_inner());
        let (ok, text) = finish(rx, 60);
        assert!(ok, "{mode:?}: rx failed:\n{text}");
        assert!(
            text.contains(&format!("Received {N} packets")),
            "{mode:?}: not every datagram counted:\n{text}"
        );
        assert!(text.contains("rx_dropped 0"), "{mode:?}: {text}");
        println!("{mode:?}:\n{text}");
    }
}

/// `bridge -i xdp:A1 -i xdp:A2` between two veth pairs: `pkt_gen -f tx` on `afpacket:B1`
/// (namespace 1) reaches `pkt_gen -f rx` on `afpacket:B2` (namespace 2) through the bridge,
/// every packet in order. The two `xdp:` ports share one memory (one UMEM): the bridge swaps
/// buffers and says so.
#[test]
fn bridge_between_two_veth_pairs_over_xdp() {
    bridge_over_xdp(&[], "zero copy (shared memory)");
}

/// The same with `--copy`: each port on a memory of its own, the bridge copies.
#[test]
fn bridge_between_two_veth_pairs_over_xdp_copying() {
    bridge_over_xdp(&["--copy"], "copying (separate memory)");
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bridge_over_xdp(flags: &[&str], mode: &str) {
    if let Some(why) = veth::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let base = if flags.is_empty() { 10 } else { 12 };
    let (v1, v2) = (veth::Veth::new(base), veth::Veth::new(base + 1));
    let bridge = Command::new(example("bridge"))
        .args(flags)
        .args([
            "-i",
            &format!("xdp:{}", v1.a),
            "-i",
            &format!("xdp:{}", v2.a),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed also when an assertion below fails.
    let mut bridge = KillOnDrop(bridge);
    let mut out = BufReader::new(bridge.0.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.starts_with("bridge ") {
        banner.clear();
        assert!(out.read_line(&mut banner).unwrap() > 0, "bridge exited");
    }
    assert!(
        banner.contains("AF_XDP") && banner.contains(mode),
        "{banner}"
    );
    // Fewer packets than the bridge's AF_XDP port has receive buffers (2048), so a bridge
    // starved of CPU for the whole run loses nothing either.
    let n = "2000";
    let rx_port = format!("afpacket:{}", v2.b);
    // The receiver's kernel ring holds every packet of the run, so a receiver starved of
    // CPU for the whole run loses nothing (with 1024 slots it held 2048 and dropped the rest).
    let mut rx = spawn_pkt_gen(
        Some(&v2.ns),
        &[
            "-i", &rx_port, "-f", "rx", "-n", n, "--slots", "4096", "--seq",
        ],
    );
    let mut rx_out = BufReader::new(rx.stdout.take().unwrap());
    let mut rx_banner = String::new();
    rx_out.read_line(&mut rx_banner).unwrap();
    rx.stdout = Some(rx_out.into_inner());
    let tx_port = format!("afpacket:{}", v1.b);
    let dst = format!("{}:1234", v2.ip_b);
    let src = format!("{}:1234", v1.ip_b);
    let tx_args = [
        "-i", &tx_port, "-f", "tx", "-n", n, "-R", "20000", "-b", "32", "--seq", "-D", &v2.mac_b,
        "-S", &v1.mac_b, "-d", &dst, "-s", &src,
    ];
    let tx = spawn_pkt_gen(Some(&v1.ns), &tx_args);
    let (ok_tx, tx_text) = finish(tx, 30);
    let (ok_rx, rx_text) = finish(rx, 30);
    drop(bridge);
    let mut bridge_text = String::new();
    let _ = out.read_to_string(&mut bridge_text);
    assert!(ok_tx, "tx failed:\n{tx_text}");
    assert!(
        ok_rx && rx_text.contains(&format!("Received {n} packets: lost 0 reordered 0")),
        "rx:\n{rx_text}\ntx:\n{tx_text}\nbridge:\n{banner}{bridge_text}"
    );
}

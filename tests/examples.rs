//! Runs every example and checks what it prints. `cargo test` builds the examples; this test
//! finds them next to its own binary.
//!
//! The examples run on the emulated pipe, or on the kernel module when `NETMAP_RS_BACKEND` is
//! `kernel` (as `ci/kernel-tests.sh` runs this test in the netmap guest); the kernel-only
//! examples (`vale_ctl`, `host_rings`) then run for real instead of checking their error.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run the whole `cargo test` (it builds the examples) or `cargo build --examples` first",
        p.display()
    );
    p
}

/// `NETMAP_RS_BACKEND` when set, else `emulated`.
fn backend() -> String {
    std::env::var("NETMAP_RS_BACKEND")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "emulated".into())
}

/// Whether this run drives the kernel module.
fn on_kernel() -> bool {
    match backend().as_str() {
        "kernel" | "sys" => true,
        "auto" => netmap_rs::backend::kernel_available(),
        _ => false,
    }
}

/// How the examples name the backend they ran on.
fn kind() -> &'static str {
    if on_kernel() {
        "kernel netmap"
    } else {
        "emulated netmap pipe"
    }
}

fn run(name: &str, args: &[&str]) -> (bool, String) {
    run_with_backend(name, args, &backend())
}

/// A namespace of emulated pipes no other run shares (examples running at the same time
/// in other tests, or other checkouts, use the same pipe names).
fn namespace() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ex{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_with_backend(name: &str, args: &[&str], backend: &str) -> (bool, String) {
    let out = Command::new(example(name))
        .args(args)
        .env("NETMAP_RS_BACKEND", backend)
        .env("NETMAP_RS_EMU_NS", namespace())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(name: &str, args: &[&str], must: &[&str]) {
    let (success, text) = run(name, args);
    assert!(success, "{name} failed:\n{text}");
    for m in must {
        assert!(text.contains(m), "{name}: missing {m:?} in:\n{text}");
    }
}

#[test]
fn sync_examples() {
    ok("quick_start", &[], &["hello netmap!", kind()]);
    ok(
        "ping_pong",
        &["2000"],
        &[kind(), "2000 sent, 2000 answered, 0 lost"],
    );
    ok(
        "thread_per_ring",
        &["tpr_ex{0", "3"],
        &["rx ring 2: 500000 packets", "thread_per_ring ok"],
    );
    ok(
        "fec",
        &["200"],
        &[
            "fec ok: 200 blocks, 1600 data packets delivered intact",
            "0 retransmissions",
        ],
    );
    ok(
        "sliding_window_arq",
        &["2000", "10"],
        &["sliding_window_arq ok: 2000 messages delivered in order"],
    );
    ok(
        "bridge",
        &["--demo", "100000"],
        &[
            "zero copy",
            "bridge demo ok: forwarded 100000 + 100000",
            "none lost",
        ],
    );
}

#[test]
fn pkt_gen_modes() {
    ok(
        "pkt_gen",
        &["-i", "pgt{1", "-f", "tx", "-n", "200000", "--both", "--seq"],
        &[
            "Sent 200000 packets",
            "Mpps",
            "Received 200000 packets: lost 0 reordered 0",
        ],
    );
    ok(
        "pkt_gen",
        &[
            "-i", "pgt{2", "-f", "tx", "-n", "200000", "--both", "--async", "-l", "1500", "--seq",
        ],
        &[
            "async (Tokio)",
            "Sent 200000 packets 300000000 bytes",
            "lost 0 reordered 0",
        ],
    );
    ok(
        "pkt_gen",
        &[
            "-i",
            "pgt{3",
            "-f",
            "tx",
            "-n",
            "100000",
            "--both",
            "-p",
            "2",
            "-d",
            "10.0.0.2-10.0.0.9:1000-1003",
            "--seq",
        ],
        &["2 thread(s)", "Received 100000 packets: lost 0 reordered 0"],
    );
    ok(
        "pkt_gen",
        &["-i", "pgt{4", "-f", "ping", "-n", "2000", "--both"],
        &["RTT usec: min", "p99", "(2000 samples)"],
    );
    // C pkt-gen's default work (no sequence numbers), random lengths and addresses.
    ok(
        "pkt_gen",
        &[
            "-i", "pgt{6", "-f", "tx", "-n", "100000", "--both", "-l", "1000", "-l", "64", "-z",
            "-Z",
        ],
        &["Sent 100000 packets", "Mpps"],
    );
    let (success, text) = run("pkt_gen", &["-i", "pgt{5", "-f", "tx", "-l", "20"]);
    assert!(
        !success && text.contains("-l must be at least 42"),
        "{text}"
    );
    let (success, text) = run("pkt_gen", &["-i", "pgt{5", "-f", "tx", "-l", "50", "--seq"]);
    assert!(
        !success && text.contains("-l must be at least 60"),
        "{text}"
    );
}

/// netmap's own workflow: `pkt_gen -f rx` and `pkt_gen -f tx` as two processes on one pipe,
/// the receiver started first (it says once that nobody is on the other end yet).
#[test]
fn pkt_gen_rx_and_tx_in_two_processes() {
    let ns = namespace();
    let pkt_gen = |args: &[&str]| {
        Command::new(example("pkt_gen"))
            .args(args)
            .env("NETMAP_RS_BACKEND", backend())
            .env("NETMAP_RS_EMU_NS", &ns)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rx = pkt_gen(&["-i", "pg2p}1", "-f", "rx", "-n", "300000", "--seq"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let tx = pkt_gen(&["-i", "pg2p{1", "-f", "tx", "-n", "300000", "--seq"]);
    let text = |c: std::process::Child| {
        let out = c.wait_with_output().unwrap();
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), t)
    };
    let (tx_ok, tx_out) = text(tx);
    let (rx_ok, rx_out) = text(rx);
    assert!(tx_ok, "tx failed:\n{tx_out}");
    assert!(rx_ok, "rx failed:\n{rx_out}");
    assert!(tx_out.contains("Sent 300000 packets"), "{tx_out}");
    for m in [
        "Received 300000 packets",
        "lost 0 reordered 0",
        "no peer on pg2p{1 yet",
    ] {
        if m.starts_with("no peer") && on_kernel() {
            continue; // the kernel's ports do not say whether a peer is there
        }
        assert!(rx_out.contains(m), "rx: missing {m:?} in:\n{rx_out}");
    }
    assert_eq!(rx_out.matches("no peer").count(), usize::from(!on_kernel()));
}

#[test]
fn tokio_examples() {
    ok("tokio_quick_start", &[], &["hello async netmap"]);
    ok(
        "soak",
        &["300000", "1"],
        &[
            "lost 0, reordered 0, duplicated 0",
            "idle receiver:",
            "soak ok",
        ],
    );
    ok(
        "tokio_pipe_async",
        &["50000"],
        &["received 50000 packets in order, 0 lost"],
    );
    ok("echo", &["500"], &["echo ok: 500 frames echoed in order"]);
    ok(
        "codec_pipeline",
        &[],
        &["NETMAP", "reassembled", "codec_pipeline ok"],
    );
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("t.pcap");
    ok(
        "tap_pcap",
        &[pcap.to_str().unwrap()],
        &["tap_pcap ok: 8 frames", "UDP 5000 > 9000"],
    );
    let data = std::fs::read(&pcap).unwrap();
    assert_eq!(&data[..4], &0xa1b2_c3d4u32.to_le_bytes());
}

#[test]
fn kernel_only_examples_say_what_is_missing() {
    if netmap_rs::backend::kernel_available() {
        println!("skipped: the module is loaded, so kernel_only_examples_on_the_kernel runs them");
        return;
    }
    for (name, args) in [("host_rings", vec!["eth0", "1"]), ("vale_ctl", vec!["-l"])] {
        let (success, text) = run_with_backend(name, &args, "auto");
        assert!(!success, "{name} should fail without the module");
        assert!(text.contains("modprobe netmap"), "{name}: {text}");
    }
}

#[test]
fn kernel_only_examples_on_the_kernel() {
    if !on_kernel() {
        println!("skipped: needs NETMAP_RS_BACKEND=kernel and the module (ci/kernel-tests.sh)");
        return;
    }
    let port = "nmrs_exv";
    let switch_port = format!("vale9:{port}");
    ok("vale_ctl", &["-n", port], &["created persistent VALE port"]);
    ok(
        "vale_ctl",
        &["-a", &switch_port],
        &["attached vale9:nmrs_exv as port"],
    );
    ok("vale_ctl", &["-l"], &[&switch_port, "port(s)"]);
    ok(
        "vale_ctl",
        &["-d", &switch_port],
        &["detached vale9:nmrs_exv"],
    );
    let (_, list) = run("vale_ctl", &["-l"]);
    assert!(
        !list.contains(&switch_port),
        "still listed after detach:\n{list}"
    );
    ok("vale_ctl", &["-r", port], &["deleted VALE port nmrs_exv"]);
    let (success, text) = run("vale_ctl", &["-r", port]);
    assert!(
        !success && text.contains("no such"),
        "second delete: {text}"
    );

    // host_rings on a veth whose peer address has a static neighbour entry: a UDP datagram
    // the stack sends there arrives on the host RX ring (ci/kernel-tests.sh sets this up).
    let Some((ifname, peer_ip)) = veth_setup() else {
        println!("host_rings skipped: NETMAP_RS_TEST_VETH is not set (ci/kernel-tests.sh sets it)");
        return;
    };
    // The emulated adapter hands the stack's frames to the host rings only while the NIC
    // rings are in netmap mode too (as in a NIC-host bridge): hold them open meanwhile.
    let _nic = netmap_rs::NetmapBuilder::new(&format!("netmap:{ifname}"))
        .build()
        .unwrap();
    let mut child = Command::new(example("host_rings"))
        .args([ifname.as_str(), "1"])
        .env("NETMAP_RS_BACKEND", "kernel")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("host RX ring"), "{first}");
    let mut rest = String::new();
    // The example exits after one frame: make the stack send (an ICMP echo request) until
    // it has, at most 60 times (a hang guard, not a speed check).
    for _ in 0..60 {
        let _ = Command::new("ping")
            .args(["-c", "1", "-W", "1", &peer_ip])
            .stdout(Stdio::null())
            .status()
            .expect("ping is needed to make the stack send a frame");
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "host_rings failed: {first}{rest}");
    assert!(
        rest.contains("ICMP") && rest.contains(&format!("> {peer_ip}")),
        "{first}{rest}"
    );
}

/// `NETMAP_RS_TEST_VETH` = "IF PEER IF ADDRESS": a veth pair and an address reachable through
/// the first one (set by ci/kernel-tests.sh in the guest).
fn veth_setup() -> Option<(String, String)> {
    let v = std::env::var("NETMAP_RS_TEST_VETH").ok()?;
    let parts: Vec<&str> = v.split_whitespace().collect();
    match parts.as_slice() {
        [a, _, ip] => Some((a.to_string(), ip.to_string())),
        _ => panic!("NETMAP_RS_TEST_VETH={v:?}: expected \"IF PEER IP\""),
    }
}

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

/// Waits for a child with a deadline (killed after it); returns success and its output.
fn finish(mut child: std::process::Child, secs: u64) -> (bool, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (status.is_some_and(|s| s.success()), text)
}

/// `pkt_gen -f tx` on `PREFIX:vethA` to `pkt_gen -f rx` (async) on `PREFIX:vethB` in the
/// peer namespace, on AF_XDP and AF_PACKET: every packet arrives, none lost or reordered.
/// Then `-f ping` / `-f pong` over the same pair.
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

/// `bridge -i xdp:A1 -i xdp:A2` between two veth pairs: `pkt_gen -f tx` on `afpacket:B1`
/// (namespace 1) reaches `pkt_gen -f rx` on `afpacket:B2` (namespace 2) through the bridge,
/// every packet in order. (The two `xdp:` ports have memories of their own: the bridge
/// copies.)
#[test]
fn bridge_between_two_veth_pairs_over_xdp() {
    if let Some(why) = veth::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let (v1, v2) = (veth::Veth::new(10), veth::Veth::new(11));
    let bridge = Command::new(example("bridge"))
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
    let mut bridge = bridge;
    let mut out = BufReader::new(bridge.stdout.take().unwrap());
    let mut banner = String::new();
    out.read_line(&mut banner).unwrap();
    assert!(
        banner.contains("AF_XDP") && banner.contains("copying"),
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
    let _ = bridge.kill();
    let _ = bridge.wait();
    let mut bridge_text = String::new();
    let _ = out.read_to_string(&mut bridge_text);
    assert!(ok_tx, "tx failed:\n{tx_text}");
    assert!(
        ok_rx && rx_text.contains(&format!("Received {n} packets: lost 0 reordered 0")),
        "rx:\n{rx_text}\ntx:\n{tx_text}\nbridge:\n{banner}{bridge_text}"
    );
}

/// Spawns example `name` on the test's backend, in a namespace of its own.
fn spawn_example(name: &str, args: &[&str]) -> std::process::Child {
    Command::new(example(name))
        .args(args)
        .env("NETMAP_RS_BACKEND", backend())
        .env("NETMAP_RS_EMU_NS", namespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Issue 18.11: every example that loops stops on Ctrl-C (SIGINT) and SIGTERM while no
/// packet arrives, and prints what it counted, as C `pkt-gen` does (`pkt_gen -f rx` kept
/// printing 0.000 Mpps through two SIGINTs).
#[test]
fn looping_examples_stop_on_sigint_and_sigterm() {
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "pkt_gen",
            &["-i", "sig{0", "-f", "rx"],
            "Received 0 packets",
        ),
        (
            "pkt_gen",
            &["-i", "sig{1", "-f", "rx", "--async"],
            "Received 0 packets",
        ),
        (
            "pkt_gen",
            &["-i", "sig{2", "-f", "pong"],
            "Answered 0 packets",
        ),
        (
            "bridge",
            &["-i", "sigb{0", "-i", "sigb{1"],
            "forwarded 0 packets a->b and 0 b->a",
        ),
        ("soak", &["100000000", "1"], "soak stopped"),
    ];
    for signal in [libc::SIGINT, libc::SIGTERM] {
        for (name, args, must) in cases {
            let child = spawn_example(name, args);
            // Let it open its ports and start waiting.
            std::thread::sleep(std::time::Duration::from_millis(700));
            // SAFETY: kill() sends a signal to our own child; no memory is involved.
            let r = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            assert_eq!(r, 0);
            let (ok, text) = finish(child, 10);
            assert!(
                ok,
                "{name} {args:?}, signal {signal}: did not stop cleanly:\n{text}"
            );
            assert!(
                text.contains(must),
                "{name} {args:?}, signal {signal}: no {must:?} in:\n{text}"
            );
        }
    }
}

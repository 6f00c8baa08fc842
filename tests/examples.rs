//! Runs every example and checks what it prints. `cargo test` builds the examples; this test
//! finds them next to its own binary.
//!
//! The examples run on the emulated pipe, or on the kernel module when `NETMAP_RS_BACKEND` is
//! `kernel` (as `ci/kernel-tests.sh` runs this test in the netmap guest); the kernel-only
//! examples (`vale_ctl`, `host_rings`) then run for real instead of checking their error.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[path = "common/run.rs"]
mod run;
use run::{example, finish};

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
    assert_eq!(&data[..4], &0xa1b2_3c4du32.to_le_bytes());
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

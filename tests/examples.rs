//! Runs every example that can run on the emulated pipe and checks what it prints.
//! `cargo test` builds the examples; this test finds them next to its own binary.

use std::path::PathBuf;
use std::process::Command;

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

fn run(name: &str, args: &[&str]) -> (bool, String) {
    run_with_backend(name, args, "emulated")
}

fn run_with_backend(name: &str, args: &[&str], backend: &str) -> (bool, String) {
    let out = Command::new(example(name))
        .args(args)
        .env("NETMAP_RS_BACKEND", backend)
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
    ok(
        "quick_start",
        &[],
        &["hello netmap!", "emulated netmap pipe"],
    );
    ok(
        "ping_pong",
        &["2000"],
        &["emulated netmap pipe", "2000 sent, 2000 answered, 0 lost"],
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
        &["-i", "pgt{1", "-f", "tx", "-n", "200000", "--both"],
        &[
            "Sent 200000 packets",
            "Mpps",
            "Received 200000 packets: lost 0 reordered 0",
        ],
    );
    ok(
        "pkt_gen",
        &[
            "-i", "pgt{2", "-f", "tx", "-n", "200000", "--both", "--async", "-l", "1500",
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
        ],
        &["2 thread(s)", "Received 100000 packets: lost 0 reordered 0"],
    );
    ok(
        "pkt_gen",
        &["-i", "pgt{4", "-f", "ping", "-n", "2000", "--both"],
        &["RTT usec: min", "p99", "(2000 samples)"],
    );
    let (success, text) = run("pkt_gen", &["-i", "pgt{5", "-f", "tx", "-l", "20"]);
    assert!(
        !success && text.contains("-l must be at least 60"),
        "{text}"
    );
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
        return; // they would talk to the real module
    }
    for (name, args) in [("host_rings", vec!["eth0", "1"]), ("vale_ctl", vec!["-l"])] {
        let (success, text) = run_with_backend(name, &args, "auto");
        assert!(!success, "{name} should fail without the module");
        assert!(text.contains("modprobe netmap"), "{name}: {text}");
    }
}

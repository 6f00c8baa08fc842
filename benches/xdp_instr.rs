//! The one-slot `xdp:` paths under callgrind (`ci/xdp-instructions.sh` runs it at two
//! counts and prints the difference per packet; it is not a criterion bench).
//!
//! `xdp_instr rx IF NS DST K`: opens `xdp:IF`, has a UDP socket in namespace `NS` send `K`
//! 60-byte datagrams to `DST` (a `python3` child, outside the count) before the first sync,
//! then receives them: one rxsync and `recv` per packet.
//! `xdp_instr tx IF NS DST K`: sends `K` 60-byte frames with `TxRing::send` and one sync,
//! then syncs until every slot is back.

use netmap_rs::prelude::*;
use std::time::Duration;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 || a[1] == "--bench" {
        eprintln!("usage: xdp_instr rx|tx IF NS DST K (see ci/xdp-instructions.sh)");
        return;
    }
    let (mode, ifname, ns, dst) = (&a[1], &a[2], &a[3], &a[4]);
    let k: usize = a[5].parse().expect("K");
    let nm = NetmapBuilder::new(&format!("xdp:{ifname}"))
        .build()
        .expect("open xdp: port");
    if mode == "tx" {
        let mut tx = nm.tx_ring(0).unwrap();
        let frame = [0x5au8; 60];
        for _ in 0..k {
            tx.send(&frame).unwrap();
        }
        tx.sync().unwrap();
        for _ in 0..1000 {
            if tx.space() == tx.num_slots() - 1 {
                break;
            }
            tx.sync().unwrap();
        }
        eprintln!("sent {k}, {} slots free", tx.space());
        return;
    }
    let mut rx = nm.rx_ring(0).unwrap();
    let py = format!(
        "import socket\ns=socket.socket(2,2)\nfor i in range({k}): s.sendto(b'x'*60, ('{dst}', 7000))"
    );
    let st = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &py])
        .status()
        .expect("ip netns exec");
    assert!(st.success(), "the sender in {ns} failed");
    std::thread::sleep(Duration::from_millis(500));
    let mut got = 0usize;
    for _ in 0..1000 {
        rx.sync().unwrap();
        while rx.recv().is_some() {
            got += 1;
        }
        if got >= k {
            break;
        }
    }
    eprintln!("received {got}");
}

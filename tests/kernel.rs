//! Kernel-only behaviour: what the emulated backend cannot show. Every test here needs the
//! netmap module (`/dev/netmap`) and root; without them it prints why it was skipped and
//! passes, so `cargo test` on a machine without netmap stays meaningful for the rest.
//! `ci/kernel-tests.sh` runs this file in a QEMU guest with the real module.
//!
//! The veth tests also need `NETMAP_RS_TEST_VETH="IF PEER IP"`: a veth pair that is up, and an
//! IPv4 address with a static neighbour entry through IF (set up by `ci/kernel-tests.sh`).
#![cfg(all(feature = "sys", target_os = "linux"))]

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_rs::sync::{pools_info, port_info};
use netmap_rs::vale;

/// True when the module is there; otherwise prints the reason the test is skipped.
fn kernel(test: &str) -> bool {
    if netmap_rs::backend::kernel_available() {
        return true;
    }
    println!("SKIPPED {test}: kernel-only test and /dev/netmap does not exist (no netmap module)");
    false
}

/// Opens `name` on the kernel backend.
fn open(name: &str) -> Netmap {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Kernel)
        .build()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A 60-byte Ethernet frame: broadcast unless `dst` is given, from `src`, local ethertype
/// 0x88b5, then `tag` and a sequence number.
fn frame(src: [u8; 6], dst: Option<[u8; 6]>, tag: &[u8; 4], seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst.unwrap_or([0xff; 6]));
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(tag);
    f[18..22].copy_from_slice(&seq.to_be_bytes());
    f
}

/// The sequence number of a frame carrying `tag`, if it does.
fn tagged(p: &[u8], tag: &[u8; 4]) -> Option<u32> {
    (p.len() >= 22 && &p[14..18] == tag).then(|| u32::from_be_bytes(p[18..22].try_into().unwrap()))
}

/// Sends `n` tagged frames on TX ring 0 of `port`, syncing when the ring is full.
fn send_tagged(port: &Netmap, src: [u8; 6], dst: Option<[u8; 6]>, tag: &[u8; 4], n: u32) {
    let mut tx = port.tx_ring(0).unwrap();
    for seq in 0..n {
        let f = frame(src, dst, tag, seq);
        loop {
            match tx.send(&f) {
                Ok(()) => break,
                Err(Error::InsufficientSpace) | Err(Error::WouldBlock) => {
                    tx.sync().unwrap();
                    port.wait_writable(Some(Duration::from_millis(100)))
                        .unwrap();
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    tx.sync().unwrap();
}

/// Receives frames carrying `tag` on every RX ring of `port` until `n` arrived; gives up
/// after a minute (a hang guard, not a speed check). Returns their sequence numbers.
fn recv_tagged(port: &Netmap, tag: &[u8; 4], n: usize) -> Vec<u32> {
    let mut rings: Vec<RxRing> = (0..port.num_rx_rings())
        .map(|i| port.rx_ring(i).unwrap())
        .collect();
    let mut got = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    while got.len() < n && Instant::now() < give_up {
        port.wait_readable(Some(Duration::from_millis(200)))
            .unwrap();
        for r in &mut rings {
            r.sync().unwrap();
            while let Some(f) = r.recv() {
                got.extend(tagged(f.payload(), tag));
            }
        }
    }
    for r in &mut rings {
        r.sync().unwrap(); // hand the last slots back to the sender
    }
    got
}

/// Deletes a persistent VALE port when dropped, so a failed test leaves no port behind.
struct PersistentPort(&'static str);

impl Drop for PersistentPort {
    fn drop(&mut self) {
        let _ = vale::delete_port(self.0);
    }
}

#[test]
fn vale_port_lifecycle() {
    if !kernel("vale_port_lifecycle") {
        return;
    }
    let _ = vale::delete_port("nmrs_lc"); // left over from an aborted run
    vale::create_port("nmrs_lc", &vale::NewPort::default()).unwrap();
    let guard = PersistentPort("nmrs_lc");
    assert!(
        std::path::Path::new("/sys/class/net/nmrs_lc").exists(),
        "a persistent VALE port is a network interface"
    );
    let e = vale::create_port("nmrs_lc", &vale::NewPort::default()).unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "create twice: {e}");
    let idx = vale::attach("vale5:nmrs_lc", false).unwrap();
    let listed = vale::list().unwrap();
    let me = listed
        .iter()
        .find(|p| p.name == "vale5:nmrs_lc")
        .unwrap_or_else(|| panic!("not listed after attach: {listed:?}"));
    assert_eq!(me.port, idx);
    let e = vale::attach("vale5:nmrs_lc", false).unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "attach twice: {e}");
    assert_eq!(vale::detach("vale5:nmrs_lc").unwrap(), idx);
    assert!(!vale::list()
        .unwrap()
        .iter()
        .any(|p| p.name == "vale5:nmrs_lc"));
    let e = vale::detach("vale5:nmrs_lc").unwrap_err();
    assert!(
        matches!(e, Error::NoSuchInterface { .. }),
        "detach twice: {e}"
    );
    drop(guard);
    assert!(!std::path::Path::new("/sys/class/net/nmrs_lc").exists());
    let e = vale::delete_port("nmrs_lc").unwrap_err();
    assert!(
        matches!(e, Error::NoSuchInterface { .. }),
        "delete twice: {e}"
    );
}

#[test]
fn two_vale_ports_exchange_frames() {
    if !kernel("two_vale_ports_exchange_frames") {
        return;
    }
    let a = open("vale6:a");
    let b = open("vale6:b");
    let listed = vale::list().unwrap();
    for n in ["vale6:a", "vale6:b"] {
        assert!(listed.iter().any(|p| p.name == n), "{n} not in {listed:?}");
    }
    let (mac_a, mac_b) = ([2, 0, 0, 0, 6, 0xa], [2, 0, 0, 0, 6, 0xb]);
    // Broadcast from a floods to b; then b answers a by unicast (the switch learnt a's MAC).
    send_tagged(&a, mac_a, None, b"bcst", 300);
    assert_eq!(recv_tagged(&b, b"bcst", 300), (0..300).collect::<Vec<_>>());
    send_tagged(&b, mac_b, Some(mac_a), b"ucst", 300);
    assert_eq!(recv_tagged(&a, b"ucst", 300), (0..300).collect::<Vec<_>>());
    drop((a, b));
    assert!(!vale::list()
        .unwrap()
        .iter()
        .any(|p| p.name.starts_with("vale6:")));
}

/// `(IF, PEER, IP)` from `NETMAP_RS_TEST_VETH`, or a printed skip reason.
fn veth(test: &str) -> Option<(String, String, String)> {
    if !kernel(test) {
        return None;
    }
    let Ok(v) = std::env::var("NETMAP_RS_TEST_VETH") else {
        println!("SKIPPED {test}: NETMAP_RS_TEST_VETH is not set (ci/kernel-tests.sh sets it)");
        return None;
    };
    match v.split_whitespace().collect::<Vec<_>>().as_slice() {
        [a, b, ip] => Some((a.to_string(), b.to_string(), ip.to_string())),
        _ => panic!("NETMAP_RS_TEST_VETH={v:?}: expected \"IF PEER IP\""),
    }
}

#[test]
fn veth_pair_through_the_generic_adapter() {
    let Some((v0, v1, _)) = veth("veth_pair_through_the_generic_adapter") else {
        return;
    };
    let a = open(&format!("netmap:{v0}"));
    let b = open(&format!("netmap:{v1}"));
    assert_eq!(a.backend(), BackendKind::Kernel);
    let (mac_a, mac_b) = ([2, 0, 0, 0, 9, 0xa], [2, 0, 0, 0, 9, 0xb]);
    send_tagged(&a, mac_a, Some(mac_b), b"veth", 200);
    assert_eq!(recv_tagged(&b, b"veth", 200), (0..200).collect::<Vec<_>>());
    send_tagged(&b, mac_b, Some(mac_a), b"back", 200);
    assert_eq!(recv_tagged(&a, b"back", 200), (0..200).collect::<Vec<_>>());
}

/// Two registrations of one NIC in one process share the kernel's rings: a ring handed out
/// through one must not be handed out again through the other (two handles on one ring
/// would each believe they own `[head, tail)`).
#[test]
fn the_same_nic_ring_through_two_registrations_is_claimed_once() {
    let Some((v0, _, _)) = veth("the_same_nic_ring_through_two_registrations_is_claimed_once")
    else {
        return;
    };
    let first = open(&format!("netmap:{v0}"));
    let second = open(&format!("netmap:{v0}"));
    let one_ring = open(&format!("netmap:{v0}-0"));
    let tx = first.tx_ring(0).unwrap();
    for (what, port) in [
        ("second registration", &second),
        ("ring 0 alone", &one_ring),
    ] {
        let e = port.tx_ring(0).unwrap_err();
        assert!(matches!(e, Error::RingInUse(0)), "{what}: {e}");
    }
    let rx = second.rx_ring(0).unwrap();
    let e = first.rx_ring(0).unwrap_err();
    assert!(matches!(e, Error::RingInUse(0)), "{e}");
    drop((tx, rx));
    // Released with the handles: any registration may take the rings now.
    drop(one_ring.tx_ring(0).unwrap());
    drop(first.rx_ring(0).unwrap());
}

#[test]
fn host_rings_see_what_the_stack_sends() {
    let Some((v0, _, ip)) = veth("host_rings_see_what_the_stack_sends") else {
        return;
    };
    // The emulated adapter hands the stack's frames to the host rings only while the NIC
    // rings are in netmap mode too (as in a NIC-host bridge), so hold those open as well.
    let _nic = open(&format!("netmap:{v0}"));
    let host = open(&format!("netmap:{v0}^"));
    assert!(host.is_host_if());
    assert!(host.num_rx_rings() >= 1);
    let mut rings: Vec<RxRing> = (0..host.num_rx_rings())
        .map(|i| host.rx_ring(i).unwrap())
        .collect();
    assert!(rings.iter().all(|r| r.is_host()));
    let dst: std::net::Ipv4Addr = ip.parse().unwrap();
    let mut seen = false;
    let give_up = Instant::now() + Duration::from_secs(60);
    while !seen && Instant::now() < give_up {
        // The stack sends an ICMP echo request to the neighbour out of the interface.
        let _ = std::process::Command::new("ping")
            .args(["-c", "1", "-W", "1", &ip])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("ping is needed to make the stack send a frame");
        host.wait_readable(Some(Duration::from_millis(300)))
            .unwrap();
        for r in &mut rings {
            r.sync().unwrap();
            while let Some(f) = r.recv() {
                let p = f.payload();
                // IPv4 (0x0800), ICMP (1), to the neighbour, an echo request (type 8).
                seen |= p.len() >= 42
                    && p[12..14] == [8, 0]
                    && p[23] == 1
                    && p[30..34] == dst.octets()
                    && p[34] == 8;
            }
        }
    }
    assert!(
        seen,
        "no echo request to {ip} reached the host RX ring of {v0}"
    );
}

#[test]
fn ring_selection_and_build_per_ring() {
    if !kernel("ring_selection_and_build_per_ring") {
        return;
    }
    let peer = NetmapBuilder::new("sel}0")
        .backend(BackendChoice::Kernel)
        .num_tx_rings(4)
        .num_rx_rings(4)
        .build()
        .unwrap();
    assert_eq!((peer.num_tx_rings(), peer.num_rx_rings()), (4, 4));
    let one = open("sel{0-2");
    assert_eq!((one.num_tx_rings(), one.num_rx_rings()), (1, 1));
    assert_eq!(one.tx_ring(0).unwrap().ring_id(), 2);
    assert_eq!(one.rx_ring(0).unwrap().ring_id(), 2);
    drop(one);
    let t = open("sel{0/T");
    assert_eq!((t.num_tx_rings(), t.num_rx_rings()), (4, 0));
    drop(t);
    let r = open("sel{0/R");
    assert_eq!((r.num_tx_rings(), r.num_rx_rings()), (0, 4));
    drop(r);
    let e = NetmapBuilder::new("sel{0-7")
        .backend(BackendChoice::Kernel)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::BindFail(_)), "{e}");
    assert!(e.to_string().contains("ring 7"), "{e}");
    // One registration per ring; frames sent on ring i arrive on the peer's ring i.
    let per_ring = NetmapBuilder::new("sel{0")
        .backend(BackendChoice::Kernel)
        .build_per_ring()
        .unwrap();
    assert_eq!(per_ring.len(), 4);
    for (i, p) in per_ring.iter().enumerate() {
        assert_eq!((p.num_tx_rings(), p.num_rx_rings()), (1, 1));
        let mut tx = p.tx_ring(0).unwrap();
        assert_eq!(tx.ring_id() as usize, i);
        tx.send(&[i as u8; 60]).unwrap();
        tx.sync().unwrap();
    }
    for i in 0..4 {
        let mut rx = peer.rx_ring(i).unwrap();
        rx.sync().unwrap();
        let got: Vec<Vec<u8>> = rx.batch(8).map(|f| f.payload().to_vec()).collect();
        assert_eq!(got, vec![vec![i as u8; 60]], "peer ring {i}");
    }
}

#[test]
fn exclusive_open_makes_others_busy() {
    if !kernel("exclusive_open_makes_others_busy") {
        return;
    }
    let x = open("excl{0/x");
    for other in ["excl{0", "excl{0/x", "excl{0-0"] {
        let e = NetmapBuilder::new(other)
            .backend(BackendChoice::Kernel)
            .build()
            .unwrap_err();
        assert!(matches!(e, Error::PortBusy(_)), "{other}: {e}");
    }
    drop(x);
    open("excl{0"); // free again once the exclusive holder is gone
}

#[test]
fn extra_buffers_are_granted() {
    if !kernel("extra_buffers_are_granted") {
        return;
    }
    let p = NetmapBuilder::new("xbuf{0")
        .backend(BackendChoice::Kernel)
        .extra_buffers(32)
        .build()
        .unwrap();
    let (count, head) = p.extra_buffers();
    assert_eq!(count, 32);
    assert!(head >= 2, "buffers 0 and 1 are reserved; head {head}");
}

/// A module parameter of the running netmap, from sysfs.
fn param(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/module/netmap/parameters/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[test]
fn port_and_pools_info_match_the_kernel() {
    if !kernel("port_and_pools_info_match_the_kernel") {
        return;
    }
    let p = NetmapBuilder::new("info{0")
        .backend(BackendChoice::Kernel)
        .num_slots(256)
        .num_tx_rings(2)
        .num_rx_rings(2)
        .build()
        .unwrap();
    let info = port_info("info{0").unwrap();
    assert_eq!(info.tx_rings as usize, p.num_tx_rings());
    assert_eq!(info.rx_rings as usize, p.num_rx_rings());
    assert_eq!(info.tx_slots as usize, p.tx_ring(0).unwrap().num_slots());
    assert_eq!(info.rx_slots as usize, p.rx_ring(0).unwrap().num_slots());
    assert_eq!(info.tx_slots, 256);
    assert_eq!(info.memsize as usize, p.memsize());
    assert_eq!(info.mem_id, p.mem_id());
    let pools = pools_info("info{0").unwrap();
    assert_eq!(pools.memsize as usize, p.memsize());
    assert_eq!(pools.mem_id, p.mem_id());
    assert_eq!(pools.buf_pool.2 as usize, p.buf_size());
    let end = |(off, n, size): (u64, u32, u32)| off + u64::from(n) * u64::from(size);
    assert!(end(pools.if_pool) <= pools.ring_pool.0);
    assert!(end(pools.ring_pool) <= pools.buf_pool.0);
    assert!(end(pools.buf_pool) <= pools.memsize);
    // The global allocator (id 1) is sized by the module parameters.
    if p.mem_id() == 1 {
        for (what, got, name) in [
            ("buffer size", pools.buf_pool.2, "buf_curr_size"),
            ("buffers", pools.buf_pool.1, "buf_curr_num"),
            ("ring size", pools.ring_pool.2, "ring_curr_size"),
            ("rings", pools.ring_pool.1, "ring_curr_num"),
            ("if size", pools.if_pool.2, "if_curr_size"),
            ("ifs", pools.if_pool.1, "if_curr_num"),
        ] {
            if let Some(want) = param(name) {
                assert_eq!(u64::from(got), want, "{what} vs {name}");
            }
        }
    }
}

#[test]
fn two_processes_on_one_pipe() {
    const N: u32 = 2000;
    // The child half: this same test binary, run again with the variable set.
    if std::env::var("NMRS_PIPE_CHILD").is_ok() {
        let tx = open("xproc{0");
        send_tagged(&tx, [2, 0, 0, 0, 0, 1], None, b"xprc", N);
        // Wait until the peer took everything, so no frame depends on this process living.
        let mut ring = tx.tx_ring(0).unwrap();
        let give_up = Instant::now() + Duration::from_secs(60);
        while ring.space() + 1 < ring.num_slots() && Instant::now() < give_up {
            tx.wait_writable(Some(Duration::from_millis(100))).unwrap();
            ring.sync().unwrap();
        }
        return;
    }
    if !kernel("two_processes_on_one_pipe") {
        return;
    }
    let rx = open("xproc}0"); // opened first, so nothing is sent before a receiver exists
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "two_processes_on_one_pipe", "--test-threads=1"])
        .env("NMRS_PIPE_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = child;
    let got = recv_tagged(&rx, b"xprc", N as usize);
    let give_up = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    assert!(
        child.wait().unwrap().success(),
        "the sending process failed"
    );
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}

#[test]
fn bad_requests_give_the_documented_errors() {
    if !kernel("bad_requests_give_the_documented_errors") {
        return;
    }
    let build = |name: &str| {
        NetmapBuilder::new(name)
            .backend(BackendChoice::Kernel)
            .build()
            .unwrap_err()
    };
    let e = build("netmap:nmrs_nosuch0");
    assert!(
        matches!(e, Error::NoSuchInterface { .. }),
        "unknown interface: {e}"
    );
    let e = port_info("netmap:nmrs_nosuch0").unwrap_err();
    assert!(matches!(e, Error::NoSuchInterface { .. }), "port_info: {e}");
    let e = build("range{0-9");
    assert!(matches!(e, Error::BindFail(_)), "ring out of range: {e}");
    assert!(e.to_string().contains("ring 9"), "{e}");
    // Bad VALE names: refused before any system call, and by the kernel.
    let e = vale::attach("vale0:", false).unwrap_err();
    assert!(matches!(e, Error::InvalidPortName { .. }), "{e}");
    let e = vale::attach("nmrs_not_vale", false).unwrap_err();
    assert!(matches!(e, Error::InvalidPortName { .. }), "{e}");
    // The kernel answers EINVAL (not ENXIO) to attaching an interface that does not exist.
    let e = vale::attach("vale0:nmrs_nosuch0", false).unwrap_err();
    assert!(matches!(e, Error::BindFail(_)), "attach unknown: {e}");
    assert!(e.to_string().contains("nmrs_nosuch0"), "{e}");
    let e = vale::create_port("nmrs_name_longer_than_ifnamsiz", &Default::default()).unwrap_err();
    assert!(
        matches!(e, Error::BindFail(_)),
        "create with a long name: {e}"
    );
    // Oversize slots: a frame larger than a buffer, and a slot count the kernel refuses or
    // clamps (never a ring larger than it can map).
    let p = open("big{0");
    let mut tx = p.tx_ring(0).unwrap();
    let too_big = vec![0u8; tx.max_packet_size() + 1];
    assert!(matches!(tx.send(&too_big), Err(Error::PacketTooLarge(_))));
    drop((tx, p));
    match NetmapBuilder::new("huge{0")
        .backend(BackendChoice::Kernel)
        .num_slots(1 << 20)
        .build()
    {
        Err(e) => {
            println!("1M slots refused: {e}");
            assert!(matches!(e, Error::BindFail(_)), "{e}");
        }
        Ok(p) => {
            let n = p.tx_ring(0).unwrap().num_slots();
            println!("1M slots clamped to {n}");
            assert!(n < 1 << 20, "the kernel granted {n} slots");
        }
    }
}

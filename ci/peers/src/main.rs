//! Peers for `ci/peer-bench.sh`: netring 0.32 through its fastest public paths, and a sink that
//! drops every frame at TCX ingress (after the AF_PACKET taps, before IP) so the receiving side's
//! IP stack stays out of the figures.
//!
//! ```text
//! netmap-rs-peers tx-xdp IF DMAC SMAC DIP SIP   # XdpSocket::send + flush, until SIGINT
//! netmap-rs-peers tx-packet IF DMAC SMAC DIP SIP # Injector::allocate/send/flush, until SIGINT
//! netmap-rs-peers rx-xdp IF                      # XdpSocket (default program), next_batch_blocking
//! netmap-rs-peers rx-packet IF                   # Capture (TPACKET_V3 blocks), next_batch_blocking
//! netmap-rs-peers tcx-drop IF                    # drop at TCX ingress until SIGINT
//! ```
//! Each prints `Sent N packets` / `Received N packets` when it stops (SIGINT or SIGTERM).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs an async-signal-safe handler (one atomic store); no SA_RESTART so
        // blocking calls return EINTR and the loops see STOP.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(p, 16).expect("MAC as aa:bb:cc:dd:ee:ff");
    }
    m
}

/// The 60-byte frame `pkt_gen` sends: Ethernet, IPv4, UDP 1234 -> 1234, 18 zero bytes.
fn udp_frame(dmac: [u8; 6], smac: [u8; 6], dip: Ipv4Addr, sip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip.octets());
    ip[16..20].copy_from_slice(&dip.octets());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&1234u16.to_be_bytes());
    udp[2..4].copy_from_slice(&1234u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn tx_xdp(iface: &str, frame: &[u8]) -> Result<u64, netring::Error> {
    let mut xdp = netring::XdpSocketBuilder::default()
        .interface(iface)
        .queue_id(0)
        .mode(netring::XdpMode::Tx)
        .build()?;
    let mut sent = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let mut n = 0;
        while n < 64 && xdp.send(frame)? {
            n += 1;
        }
        sent += n;
        xdp.flush()?;
        if n == 0 {
            xdp.poll(Duration::from_millis(1)).ok();
        }
    }
    Ok(sent)
}

fn tx_packet(iface: &str, frame: &[u8]) -> Result<u64, netring::Error> {
    let mut tx = netring::Injector::builder()
        .interface(iface)
        .qdisc_bypass(true)
        .build()?;
    let mut sent = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let mut n = 0;
        while n < 64 {
            let Some(mut slot) = tx.allocate(frame.len()) else {
                break;
            };
            slot.data_mut()[..frame.len()].copy_from_slice(frame);
            slot.set_len(frame.len());
            slot.send();
            n += 1;
        }
        sent += n;
        tx.flush()?;
        if n == 0 {
            let _ = tx.wait_drained(Duration::from_millis(1));
        }
    }
    Ok(sent)
}

fn rx_xdp(iface: &str) -> Result<u64, netring::Error> {
    let mut xdp = netring::XdpSocketBuilder::default()
        .interface(iface)
        .queue_id(0)
        .mode(netring::XdpMode::Rx)
        .with_default_program()
        .build()?;
    ready();
    let (mut got, mut bytes) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) {
        if let Some(batch) = xdp.next_batch_blocking(Duration::from_millis(100))? {
            // The work pkt_gen does per packet: count it and its bytes.
            for p in batch.iter() {
                got += 1;
                bytes += p.len() as u64;
            }
        }
    }
    std::hint::black_box(bytes);
    Ok(got)
}

fn rx_packet(iface: &str) -> Result<u64, netring::Error> {
    let mut cap = netring::Capture::builder()
        .interface(iface)
        .ignore_outgoing(true)
        .build()?;
    ready();
    let (mut got, mut bytes) = (0u64, 0u64);
    while !STOP.load(Ordering::Relaxed) {
        match cap.next_batch_blocking(Duration::from_millis(100)) {
            Ok(Some(batch)) => {
                for p in batch.iter() {
                    got += 1;
                    bytes += p.len() as u64;
                }
            }
            Ok(None) => {}
            Err(e) if STOP.load(Ordering::Relaxed) => {
                eprintln!("stopping: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    std::hint::black_box(bytes);
    Ok(got)
}

fn ready() {
    println!("ready");
}

fn main() {
    stop_on_signals();
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: netmap-rs-peers tx-xdp|tx-packet IF DMAC SMAC DIP SIP | rx-xdp|rx-packet|tcx-drop IF");
        std::process::exit(2)
    };
    let (Some(mode), Some(iface)) = (args.get(1), args.get(2)) else {
        usage()
    };
    let frame = || {
        let a = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
        udp_frame(
            mac(a(3)),
            mac(a(4)),
            a(5).parse().expect("DIP"),
            a(6).parse().expect("SIP"),
        )
    };
    let result = match mode.as_str() {
        "tx-xdp" => tx_xdp(iface, &frame()).map(|n| format!("Sent {n} packets")),
        "tx-packet" => tx_packet(iface, &frame()).map(|n| format!("Sent {n} packets")),
        "rx-xdp" => rx_xdp(iface).map(|n| format!("Received {n} packets")),
        "rx-packet" => rx_packet(iface).map(|n| format!("Received {n} packets")),
        "tcx-drop" => {
            match tcx::drop_at_ingress(iface) {
                Ok(_link) => {
                    ready();
                    while !STOP.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Err(e) => {
                    eprintln!("tcx-drop: {e}");
                    std::process::exit(1)
                }
            }
            return;
        }
        _ => usage(),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{mode}: {e}");
            std::process::exit(1)
        }
    }
}

mod tcx;

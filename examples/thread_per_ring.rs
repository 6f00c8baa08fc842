//! thread_per_ring: one file descriptor per ring and one thread per ring — each thread
//! syncs only its own ring — with per-ring packet counts.
//!
//! Real netmap (as root), e.g. a 4-queue NIC:
//!     cargo run --release --example thread_per_ring -- netmap:eth0 4
//! Pipe demo (emulated when no module is loaded): senders on the master end's rings,
//! receivers on the slave end's rings:
//!     cargo run --release --example thread_per_ring -- 'tpr{0' 4

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

const PER_RING: u64 = 500_000;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("tpr{0");
    let rings: usize = args.get(1).map(|s| s.parse().expect("RINGS")).unwrap_or(4);
    // One registration (fd) per ring: "name-0", "name-1", ...
    let ports = NetmapBuilder::new(name)
        .num_tx_rings(rings)
        .num_rx_rings(rings)
        .build_per_ring()?;
    println!(
        "{} rings on {} ({}), one fd and one thread each",
        ports.len(),
        name,
        ports[0].backend()
    );
    let start = Instant::now();
    let mut handles = Vec::new();
    let is_pipe = name.contains('{') || name.contains('}');
    if is_pipe {
        let peer = name.replacen('{', "}", 1);
        let peers = NetmapBuilder::new(&peer).build_per_ring()?;
        for (i, port) in peers.into_iter().enumerate() {
            handles.push(std::thread::spawn(
                move || -> Result<(String, u64), Error> {
                    let mut tx = port.tx_ring(0)?;
                    let mut sent = 0;
                    while sent < PER_RING {
                        match tx.send(&sent.to_le_bytes()) {
                            Ok(()) => sent += 1,
                            Err(Error::InsufficientSpace) => {
                                tx.sync()?;
                                if tx.space() == 0 {
                                    port.wait_writable(Some(Duration::from_millis(10)))?;
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    tx.sync()?;
                    Ok((format!("tx ring {i}"), sent))
                },
            ));
        }
    }
    for (i, port) in ports.into_iter().enumerate() {
        handles.push(std::thread::spawn(
            move || -> Result<(String, u64), Error> {
                let mut rx = port.rx_ring(0)?;
                let mut got = 0u64;
                let deadline = Instant::now() + Duration::from_secs(if is_pipe { 60 } else { 10 });
                while got < PER_RING && Instant::now() < deadline {
                    rx.sync()?;
                    let before = got;
                    for f in rx.batch(usize::MAX) {
                        if is_pipe {
                            assert_eq!(f.payload(), got.to_le_bytes());
                        }
                        got += 1;
                    }
                    if got == before {
                        rx.sync()?;
                        port.wait_readable(Some(Duration::from_millis(10)))?;
                    }
                }
                Ok((format!("rx ring {i}"), got))
            },
        ));
    }
    let mut total = 0;
    for h in handles {
        let (label, n) = h.join().expect("ring thread panicked")?;
        println!("{label}: {n} packets");
        if label.starts_with("rx") {
            total += n;
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "thread_per_ring ok: {total} packets received in {s:.2} s ({:.3} Mpps total)",
        total as f64 / s / 1e6
    );
    Ok(())
}

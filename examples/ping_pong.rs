//! ping_pong: one thread sends numbered pings over a netmap pipe, the other answers each with
//! a pong; prints the round-trip rate.
//!
//! Run anywhere (emulated pipe when no netmap module is loaded):
//!     cargo run --release --example ping_pong [-- COUNT]
//! On real netmap (module loaded, as root) the same command uses the kernel's pipes; force a
//! backend with NETMAP_RS_BACKEND=kernel|emulated.

use std::time::{Duration, Instant};

use netmap_rs::prelude::*;

fn main() -> Result<(), Error> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("COUNT must be a number"))
        .unwrap_or(100_000);
    let ping_port = NetmapBuilder::new("pingpong{0").build()?;
    let pong_port = NetmapBuilder::new("pingpong}0").build()?;
    println!(
        "ping_pong over {} ({}), {} round trips",
        ping_port.name(),
        ping_port.backend(),
        count
    );

    let ponger = std::thread::spawn(move || -> Result<u64, Error> {
        let mut rx = pong_port.rx_ring(0)?;
        let mut tx = pong_port.tx_ring(0)?;
        let mut answered = 0;
        let mut idle = 0u32;
        while answered < count {
            rx.sync()?;
            let mut got = 0;
            while let Some(frame) = rx.recv() {
                let mut reply = frame.payload().to_vec();
                reply[0] = b'O'; // "PING" -> "OING": mark it as answered
                tx.send(&reply)?;
                got += 1;
            }
            answered += got;
            tx.sync()?;
            // Spin a little for latency, then sleep in poll.
            idle = if got == 0 { idle + 1 } else { 0 };
            if idle > 1000 {
                pong_port.wait_readable(Some(Duration::from_millis(100)))?;
            }
        }
        Ok(answered)
    });

    let mut tx = ping_port.tx_ring(0)?;
    let mut rx = ping_port.rx_ring(0)?;
    let start = Instant::now();
    let mut rtt_max = Duration::ZERO;
    for seq in 0..count {
        let sent_at = Instant::now();
        let mut ping = b"PING".to_vec();
        ping.extend_from_slice(&seq.to_be_bytes());
        tx.send(&ping)?;
        tx.sync()?;
        let mut spins = 0u32;
        loop {
            rx.sync()?;
            if let Some(pong) = rx.recv() {
                assert_eq!(&pong.payload()[..4], b"OING");
                assert_eq!(pong.payload()[4..12], seq.to_be_bytes());
                break;
            }
            spins += 1;
            if spins > 1000 {
                ping_port.wait_readable(Some(Duration::from_millis(100)))?;
            }
        }
        rtt_max = rtt_max.max(sent_at.elapsed());
    }
    let elapsed = start.elapsed();
    let answered = ponger.join().expect("pong thread panicked")?;
    println!(
        "{answered} pongs in {:.3} s: {:.0} round trips/s, mean RTT {:.2} us, max {:.2} us",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / count as f64,
        rtt_max.as_secs_f64() * 1e6
    );
    println!("ping_pong ok: {count} sent, {answered} answered, 0 lost");
    Ok(())
}

//! host_rings: reads what the host network stack sends through an interface's host rings
//! (`eth0^`) and prints a one-line summary per frame. Host rings exist only on a real
//! interface with the netmap module loaded, as root:
//!
//!     sudo cargo run --example host_rings -- eth0 [COUNT]
//!
//! While it runs, packets the kernel stack sends out of eth0 arrive here instead of on the
//! wire (netmap detaches the host stack from the NIC). Without the module it exits with the
//! error that says how to load it.

use std::time::Duration;

use netmap_rs::prelude::*;
use netmap_rs::tokio_async::tap::summarize;

mod common;

fn main() {
    let mut args = std::env::args().skip(1);
    let ifname = args.next().unwrap_or_else(|| "eth0".into());
    let count: u64 = args.next().map(|s| s.parse().expect("COUNT")).unwrap_or(10);
    if let Err(e) = run(&ifname, count) {
        eprintln!("host_rings: {e}");
        std::process::exit(1);
    }
}

fn run(ifname: &str, count: u64) -> Result<(), Error> {
    let nm = NetmapBuilder::new(&format!("netmap:{ifname}^")).build()?;
    println!(
        "{}: {} host RX ring(s) ({})",
        nm.name(),
        nm.num_rx_rings(),
        nm.backend()
    );
    let mut rings: Vec<RxRing> = (0..nm.num_rx_rings())
        .map(|i| nm.rx_ring(i))
        .collect::<Result<_, _>>()?;
    let stop = common::stop_on_signals();
    let mut seen = 0;
    while seen < count && !common::stopped(&stop) {
        nm.wait_readable(Some(Duration::from_secs(1)))?;
        for r in &mut rings {
            r.sync()?;
            let id = r.ring_id();
            while let Some(f) = r.recv() {
                println!(
                    "host ring {id}: {} bytes  {}",
                    f.len(),
                    summarize(f.payload())
                );
                seen += 1;
            }
        }
    }
    println!("host_rings: {seen} frame(s) seen");
    Ok(())
}

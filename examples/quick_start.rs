//! quick_start: the README's first example. Opens both ends of a netmap pipe, sends one
//! packet and receives it.
//!
//!     cargo run --example quick_start
//!
//! Runs on the kernel's pipes when the netmap module is loaded, on the emulated backend
//! otherwise.

use netmap_rs::prelude::*;

fn main() -> Result<(), Error> {
    let a = NetmapBuilder::new("demo{1").build()?;
    let b = NetmapBuilder::new("demo}1").build()?;

    let mut tx = a.tx_ring(0)?;
    let mut rx = b.rx_ring(0)?;

    tx.send(b"hello netmap!")?;
    tx.sync()?;

    rx.sync()?;
    let mut got = 0;
    while let Some(frame) = rx.recv() {
        assert_eq!(frame.payload(), b"hello netmap!");
        println!(
            "received {:?} on {} ({})",
            String::from_utf8_lossy(frame.payload()),
            b.name(),
            b.backend()
        );
        got += 1;
    }
    assert_eq!(got, 1);
    Ok(())
}

//! tokio_quick_start: the README's Tokio example. One packet written with `AsyncWrite` and
//! read back with `AsyncRead` over a netmap pipe.
//!
//!     cargo run --example tokio_quick_start
//!
//! Kernel pipes when the netmap module is loaded, the emulated backend otherwise.

use netmap_rs::tokio_async::TokioNetmap;
use netmap_rs::NetmapBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = TokioNetmap::new(NetmapBuilder::new("quick{1").build()?)?;
    let b = TokioNetmap::new(NetmapBuilder::new("quick}1").build()?)?;
    let mut tx = a.tx_ring(0)?;
    let mut rx = b.rx_ring(0)?;
    tx.write_all(b"hello async netmap").await?;
    tx.flush().await?;
    let mut buf = [0u8; 2048];
    let n = rx.read(&mut buf).await?;
    assert_eq!(&buf[..n], b"hello async netmap");
    println!(
        "read {:?} from {} ({})",
        String::from_utf8_lossy(&buf[..n]),
        b.netmap().name(),
        b.netmap().backend()
    );
    Ok(())
}

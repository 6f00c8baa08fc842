//! tokio_pipe_async: a sender task and a receiver task on the two ends of a netmap pipe,
//! through `Sink<Bytes>` and `Stream<Item = Frame>`, with sequence numbers checked; prints the
//! rate.
//!
//!     cargo run --release --example tokio_pipe_async [-- COUNT]
//!
//! Kernel pipes when the netmap module is loaded, the emulated backend otherwise
//! (NETMAP_RS_BACKEND=kernel|emulated to choose).

use std::time::Instant;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::TokioNetmap;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("COUNT must be a number"))
        .unwrap_or(1_000_000);
    let a = TokioNetmap::open("asyncpipe{0").await?;
    let b = TokioNetmap::open("asyncpipe}0").await?;
    println!(
        "tokio_pipe_async over {} ({})",
        a.netmap().name(),
        a.netmap().backend()
    );
    let mut tx = a.tx_ring(0)?;
    let mut rx = b.rx_ring(0)?;
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let mut payload = vec![0u8; 60];
        for i in 0..count {
            payload[..8].copy_from_slice(&i.to_le_bytes());
            tx.feed(Bytes::copy_from_slice(&payload)).await?;
        }
        tx.close().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut expect = 0u64;
    while expect < count {
        let frame = rx.next().await.expect("stream ended")?;
        let seq = u64::from_le_bytes(frame.payload()[..8].try_into()?);
        assert_eq!(seq, expect, "lost or reordered packet");
        expect += 1;
    }
    sender.await??;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "received {expect} packets in order, 0 lost: {:.3} Mpps ({:.3} s)",
        expect as f64 / secs / 1e6,
        secs
    );
    Ok(())
}

//! echo: a `#[tokio::main]` echo service on one end of a netmap pipe — every received frame
//! goes straight back out (`Stream` → `Sink`) — and a client on the other end that checks
//! the echoes.
//!
//!     cargo run --example echo [-- COUNT]
//!
//! On real netmap, point the service at a port of your own (e.g. "netmap:eth0" with
//! NETMAP_RS_BACKEND=kernel, as root); here both ends are a pipe, emulated when no module is
//! loaded.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::TokioNetmap;
use netmap_rs::Frame;

/// The echo: a received frame's bytes, unchanged.
fn echo_bytes(frame: std::io::Result<Frame<'static>>) -> std::io::Result<Bytes> {
    frame.map(Frame::into_bytes)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("COUNT must be a number"))
        .unwrap_or(10_000);
    let service = TokioNetmap::open("echo{0").await?;
    let client = TokioNetmap::open("echo}0").await?;
    println!(
        "echo service on {} ({})",
        service.netmap().name(),
        service.netmap().backend()
    );

    // The service: Stream of frames -> Sink of bytes.
    let rx = service.rx_ring(0)?;
    let mut tx = service.tx_ring(0)?;
    let server = tokio::spawn(async move {
        let mut echoes = rx.map(echo_bytes);
        tx.send_all(&mut echoes).await
    });

    let mut ctx = client.tx_ring(0)?;
    let mut crx = client.rx_ring(0)?;
    for i in 0..count {
        ctx.send(Bytes::copy_from_slice(&i.to_be_bytes())).await?;
        let echoed = crx.next().await.expect("stream ended")?;
        assert_eq!(echoed.payload(), i.to_be_bytes());
    }
    println!("echo ok: {count} frames echoed in order");
    server.abort();
    Ok(())
}

//! codec_pipeline: tokio-util codecs over netmap rings, both ways.
//!
//! 1. Per-packet framing (like `UdpFramed`): `NetmapFramed` with `LinesCodec`, one line per
//!    packet, a `Stream` of decoded `String`s and a `Sink` of `String`s.
//! 2. Byte-stream framing: `FramedWrite`/`FramedRead` with `LengthDelimitedCodec` over the
//!    ring's `AsyncWrite`/`AsyncRead`; frames larger than one packet are split and reassembled
//!    (a netmap pipe is lossless and ordered).
//!
//!     cargo run --example codec_pipeline
//!
//! Emulated pipes when no netmap module is loaded.

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use netmap_rs::tokio_async::{NetmapFramed, TokioNetmap};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec, LinesCodec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Lines, one per packet, uppercased by a pipeline stage.
    let a = TokioNetmap::open("codec{0").await?;
    let b = TokioNetmap::open("codec}0").await?;
    let mut lines_out = NetmapFramed::tx_only(a.tx_ring(0)?, LinesCodec::new());
    let lines_in = NetmapFramed::rx_only(b.rx_ring(0)?, LinesCodec::new());
    let words = ["netmap", "tokio", "codec", "pipeline"];
    for w in words {
        lines_out.feed(w.to_string()).await?;
    }
    // LinesCodec encodes any AsRef<str>, so name the item type for flush.
    SinkExt::<String>::flush(&mut lines_out).await?;
    let upper: Vec<String> = lines_in
        .take(words.len())
        .map(|l| l.map(|s| s.to_uppercase()))
        .try_collect()
        .await?;
    println!("lines: {upper:?}");
    assert_eq!(upper, ["NETMAP", "TOKIO", "CODEC", "PIPELINE"]);

    // 2. Length-delimited frames over the byte stream, up to 10 kB each.
    let c = TokioNetmap::open("codec{1").await?;
    let d = TokioNetmap::open("codec}1").await?;
    let mut w = FramedWrite::new(c.tx_ring(0)?, LengthDelimitedCodec::new());
    let mut r = FramedRead::new(d.rx_ring(0)?, LengthDelimitedCodec::new());
    let sizes = [1usize, 100, 2048, 5000, 10_000];
    let writer = tokio::spawn(async move {
        for s in sizes {
            w.send(Bytes::from(vec![s as u8; s])).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    for s in sizes {
        let f = r.next().await.expect("stream ended")?;
        assert_eq!(f.len(), s);
        assert!(f.iter().all(|b| *b == s as u8));
    }
    writer.await??;
    println!(
        "length-delimited: {} frames of {sizes:?} bytes reassembled",
        sizes.len()
    );
    println!("codec_pipeline ok");
    Ok(())
}

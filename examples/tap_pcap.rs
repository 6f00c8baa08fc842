//! tap_pcap: a tracing tap on a packet stream that logs one line per frame (length, ring,
//! first bytes in hex, Ethernet/IPv4/UDP summary) and writes every frame to a pcap file that
//! Wireshark and tshark read.
//!
//!     RUST_LOG=netmap_rs::tap=debug cargo run --example tap_pcap [-- OUT.pcap]
//!     tshark -r OUT.pcap          # or open it in Wireshark
//!
//! On real netmap, tap a port of your own (e.g. "netmap:eth0^" for the host stack, as root);
//! here a generator sends a few UDP frames over a pipe (emulated when no module is loaded).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use netmap_rs::tokio_async::{Tap, TokioNetmap};

/// A minimal Ethernet/IPv4/UDP frame with a correct IPv4 header checksum.
fn udp_frame(src_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src_port.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&0u16.to_be_bytes()); // UDP checksum 0: not computed (allowed in IPv4)
    f.extend_from_slice(payload);
    f
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "netmap_rs::tap=debug".into()),
        )
        .init();
    let out = std::env::args().nth(1).unwrap_or_else(|| "tap.pcap".into());
    let a = TokioNetmap::open("tap{0").await?;
    let b = TokioNetmap::open("tap}0").await?;
    let mut tx = a.tx_ring(0)?;
    let mut tap = Tap::new(b.rx_ring(0)?, b.netmap().name()).with_pcap(&out)?;
    const N: u16 = 8;
    for i in 0..N {
        tx.feed(Bytes::from(udp_frame(
            5000 + i,
            format!("frame {i}").as_bytes(),
        )))
        .await?;
    }
    tx.flush().await?;
    for _ in 0..N {
        tap.next().await.expect("stream ended")?;
    }
    tap.flush()?;
    println!("tap_pcap ok: {} frames written to {out}", tap.frames_seen());
    Ok(())
}

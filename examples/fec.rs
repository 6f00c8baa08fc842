//! fec: forward error correction over a lossy netmap pipe with a Reed-Solomon code
//! (`reed-solomon-erasure`): each block of K data packets travels with M parity packets, and
//! the receiver rebuilds up to M dropped packets per block without any retransmission.
//!
//!     cargo run --release --example fec [-- BLOCKS]
//!
//! Loss is injected at the sender (a deterministic pseudo-random drop of up to M packets per
//! block). Runs on the kernel's pipes when the netmap module is loaded, emulated otherwise.

use std::time::Duration;

use netmap_rs::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;

const K: usize = 8; // data shards per block
const M: usize = 4; // parity shards per block
const SHARD: usize = 1024;

/// xorshift, for reproducible loss.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn data_for(block: u32, i: usize) -> Vec<u8> {
    (0..SHARD)
        .map(|j| (block as usize * 31 + i * 7 + j) as u8)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocks: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("BLOCKS"))
        .unwrap_or(2000);
    let rs = ReedSolomon::new(K, M)?;
    let a = NetmapBuilder::new("fec{0").build()?;
    let b = NetmapBuilder::new("fec}0").build()?;
    println!(
        "fec over {} ({}), RS({}, {}) blocks of {SHARD}-byte packets",
        a.name(),
        a.backend(),
        K + M,
        K
    );
    let mut tx = a.tx_ring(0)?;
    let mut rx = b.rx_ring(0)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut dropped, mut recovered, mut delivered) = (0u64, 0u64, 0u64);
    for block in 0..blocks {
        // Encode.
        let mut shards: Vec<Vec<u8>> = (0..K).map(|i| data_for(block, i)).collect();
        shards.extend((0..M).map(|_| vec![0u8; SHARD]));
        rs.encode(&mut shards)?;
        // Send, dropping up to M shards of this block on the "wire".
        let lose = (rng.next() % (M as u64 + 1)) as usize;
        let mut lost = [false; K + M];
        for _ in 0..lose {
            lost[(rng.next() % (K + M) as u64) as usize] = true;
        }
        for (i, s) in shards.iter().enumerate() {
            if lost[i] {
                dropped += 1;
                continue;
            }
            let mut p = Vec::with_capacity(6 + SHARD);
            p.extend_from_slice(&block.to_le_bytes());
            p.extend_from_slice(&(i as u16).to_le_bytes());
            p.extend_from_slice(s);
            while let Err(Error::InsufficientSpace) = tx.send(&p) {
                tx.sync()?;
            }
        }
        tx.sync()?;
        // Receive this block's surviving shards.
        let mut got: Vec<Option<Vec<u8>>> = vec![None; K + M];
        let expected = lost.iter().filter(|l| !**l).count();
        let mut n = 0;
        while n < expected {
            rx.sync()?;
            for f in rx.batch(usize::MAX) {
                let p = f.payload();
                let blk = u32::from_le_bytes(p[0..4].try_into()?);
                let idx = u16::from_le_bytes(p[4..6].try_into()?) as usize;
                assert_eq!(blk, block, "packets of one block arrive together, in order");
                got[idx] = Some(p[6..].to_vec());
                n += 1;
            }
            if n < expected {
                b.wait_readable(Some(Duration::from_millis(100)))?;
            }
        }
        // Rebuild the missing data shards without retransmission.
        let missing = got[..K].iter().filter(|s| s.is_none()).count() as u64;
        rs.reconstruct_data(&mut got)?;
        for (i, s) in got[..K].iter().enumerate() {
            assert_eq!(
                s.as_deref(),
                Some(&data_for(block, i)[..]),
                "block {block} shard {i}"
            );
        }
        recovered += missing;
        delivered += K as u64;
    }
    println!(
        "fec ok: {blocks} blocks, {delivered} data packets delivered intact; {dropped} packets \
         dropped on the wire, {recovered} data packets rebuilt from parity, 0 retransmissions"
    );
    Ok(())
}

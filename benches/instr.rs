//! Instruction-count harness: `instr <workload> <iters> <len>` runs one workload of
//! `benches/common` once. `benches/instructions.py` runs it under callgrind at two iteration
//! counts and subtracts, which gives instructions per packet without setup costs. Counts are
//! the same from run to run, so they show differences that timing noise on a shared machine
//! hides.
//!
//!     python3 benches/instructions.py

use bytes::Bytes;
use netmap_rs::tokio_async::TokioNetmap;

mod common;
use common::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (work, iters, len) = match &args[..] {
        [w, i, l] => (w.as_str(), i.parse().unwrap(), l.parse::<usize>().unwrap()),
        // `cargo bench` runs every bench target with `--bench`: nothing to do here.
        _ => return,
    };
    let src = vec![0x5au8; 2048];
    let mut dst = vec![0u8; 2048];
    let (a, b) = pipe("instr");
    match work {
        "safe_batch" => safe_batch(&a, &b, len, iters, &src, &mut dst),
        "raw_pointers" => raw_batch(&a, &b, len, iters, &src, &mut dst),
        "send_recv_single" => single(&a, &b, len, iters, &src, &mut dst),
        "sync_items" => sync_items(&a, &b, &Bytes::copy_from_slice(&src[..len]), iters),
        "sync_items_static" => {
            let fixed: &'static [u8] = src[..len].to_vec().leak();
            sync_items(&a, &b, &Bytes::from_static(fixed), iters)
        }
        "crossbeam_vec" => {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
            crossbeam_batch(&tx, &rx, len, iters, &src, |p| copy_out(&mut dst, p));
            std::hint::black_box(&dst);
        }
        "sink_stream" | "sink_stream_static" | "async_zero_copy_batch" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (ta, tb) = (TokioNetmap::new(a).unwrap(), TokioNetmap::new(b).unwrap());
                let mut tx = ta.tx_ring(0).unwrap();
                let mut rx = tb.rx_ring(0).unwrap();
                match work {
                    "sink_stream" => {
                        let payload = Bytes::copy_from_slice(&src[..len]);
                        sink_stream(&mut tx, &mut rx, &payload, iters).await
                    }
                    "sink_stream_static" => {
                        let fixed: &'static [u8] = src[..len].to_vec().leak();
                        sink_stream(&mut tx, &mut rx, &Bytes::from_static(fixed), iters).await
                    }
                    _ => async_batch(&mut tx, &mut rx, len, iters, &src, &mut dst).await,
                }
            })
        }
        other => panic!("unknown workload {other}"),
    }
}

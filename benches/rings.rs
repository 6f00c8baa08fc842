//! Ring benchmarks on the emulated pipe (no kernel module needed).
//!
//! Every iteration moves one batch of `BATCH` packets through a netmap pipe: the TX side
//! fills the slots and syncs, the RX side syncs and copies each payload out. Throughput is
//! reported in packets (elements) per second; `benches/summarize.py` turns criterion's
//! estimates into the README table with the ratios.
//!
//!     cargo bench --bench rings
//!     python3 benches/summarize.py
//!     cargo bench --bench rings -- ab     # only the interleaved A/B report
//!
//! Before criterion's runs, interleaved A/B rounds print the two borderline ratios (safe vs
//! raw pointers, pipe vs crossbeam) as medians of per-round ratios, which shared-machine noise
//! disturbs far less.
//!
//! Groups (each run for 64- and 1500-byte frames, both sides in the same run):
//! - `zero_cost`: the safe batch path (`reserve_batch` + `RxRing::batch`) against a raw-pointer
//!   loop doing the same ring work on the same rings, as C would (target >= 0.95x).
//! - `single_vs_batch`: `send`/`recv` one packet at a time against the batch path.
//! - `async`: the Tokio `Sink`/`Stream` path against the sync path with the same item types
//!   (`send(&Bytes)`, `recv()` + `into_owned()`: the price of async itself, target >= 0.8x),
//!   and both, and the zero-copy async batch path, against the sync batch path (information:
//!   the price of owning each packet).
//! - `alternatives`: a crossbeam channel of `Vec<u8>` and tokio `UdpSocket` over loopback.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use netmap_rs::tokio_async::TokioNetmap;

mod common;
use common::*;

fn bench_sync(c: &mut Criterion) {
    let src = vec![0x5au8; 2048];
    let mut dst = vec![0u8; 2048];
    let (a, b) = pipe("bench_sync");
    let mut g = c.benchmark_group("zero_cost");
    g.throughput(Throughput::Elements(BATCH as u64));
    for len in SIZES {
        g.bench_with_input(BenchmarkId::new("safe_batch", len), &len, |bch, &len| {
            bch.iter_custom(timed(|iters| {
                safe_batch(&a, &b, len, iters, &src, &mut dst)
            }))
        });
        g.bench_with_input(BenchmarkId::new("raw_pointers", len), &len, |bch, &len| {
            bch.iter_custom(timed(|iters| raw_batch(&a, &b, len, iters, &src, &mut dst)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("single_vs_batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    for len in SIZES {
        g.bench_with_input(
            BenchmarkId::new("send_recv_single", len),
            &len,
            |bch, &len| bch.iter_custom(timed(|iters| single(&a, &b, len, iters, &src, &mut dst))),
        );
        g.bench_with_input(
            BenchmarkId::new("reserve_recv_batch", len),
            &len,
            |bch, &len| {
                bch.iter_custom(timed(|iters| {
                    safe_batch(&a, &b, len, iters, &src, &mut dst)
                }))
            },
        );
    }
    g.finish();
}

fn bench_async(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let src = vec![0x5au8; 2048];
    let mut dst = vec![0u8; 2048];
    let (a, b) = pipe("bench_async");
    let (sa, sb) = pipe("bench_async_sync");
    let (ta, tb) =
        rt.block_on(async { (TokioNetmap::new(a).unwrap(), TokioNetmap::new(b).unwrap()) });
    let mut g = c.benchmark_group("async");
    g.throughput(Throughput::Elements(BATCH as u64));
    for len in SIZES {
        g.bench_with_input(BenchmarkId::new("sync_batch", len), &len, |bch, &len| {
            bch.iter_custom(timed(|iters| {
                safe_batch(&sa, &sb, len, iters, &src, &mut dst)
            }))
        });
        // Two ways a sender holds its items: one refcounted buffer cloned per packet (each
        // clone and drop is an atomic operation the user pays), and a static template (no
        // refcount: this measures the Sink/Stream path alone).
        let shared = Bytes::copy_from_slice(&src[..len]);
        let fixed: &'static [u8] = src[..len].to_vec().leak();
        for (name, payload) in [
            ("sink_stream", shared),
            ("sink_stream_static", Bytes::from_static(fixed)),
        ] {
            let sync_name = name.replace("sink_stream", "sync_items");
            g.bench_with_input(BenchmarkId::new(sync_name, len), &len, |bch, _| {
                bch.iter_custom(timed(|iters| sync_items(&sa, &sb, &payload, iters)))
            });
            g.bench_with_input(BenchmarkId::new(name, len), &len, |bch, _| {
                bch.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut tx = ta.tx_ring(0).unwrap();
                        let mut rx = tb.rx_ring(0).unwrap();
                        let t = std::time::Instant::now();
                        sink_stream(&mut tx, &mut rx, &payload, iters).await;
                        t.elapsed()
                    })
                })
            });
        }
        g.bench_with_input(
            BenchmarkId::new("async_zero_copy_batch", len),
            &len,
            |bch, &len| {
                bch.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut tx = ta.tx_ring(0).unwrap();
                        let mut rx = tb.rx_ring(0).unwrap();
                        let t = std::time::Instant::now();
                        async_batch(&mut tx, &mut rx, len, iters, &src, &mut dst).await;
                        t.elapsed()
                    })
                })
            },
        );
    }
    g.finish();
}

fn bench_alternatives(c: &mut Criterion) {
    let src = vec![0x5au8; 2048];
    let mut dst = vec![0u8; 2048];
    let mut g = c.benchmark_group("alternatives");
    g.throughput(Throughput::Elements(BATCH as u64));
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    let (sa, sb) = pipe("bench_alt");
    for len in SIZES {
        g.bench_with_input(BenchmarkId::new("netmap_pipe", len), &len, |bch, &len| {
            bch.iter_custom(timed(|iters| {
                safe_batch(&sa, &sb, len, iters, &src, &mut dst)
            }))
        });
        g.bench_with_input(BenchmarkId::new("crossbeam_vec", len), &len, |bch, &len| {
            bch.iter_custom(timed(|iters| {
                crossbeam_batch(&tx, &rx, len, iters, &src, |p| copy_out(&mut dst, p));
                black_box(&dst);
            }))
        });
        // Each consumer reading its packet where it is: the ring's frame, the channel's Vec.
        let mut acc = 0u64;
        g.bench_with_input(
            BenchmarkId::new("netmap_pipe_in_place", len),
            &len,
            |bch, &len| {
                bch.iter_custom(timed(|iters| {
                    safe_batch_with(&sa, &sb, len, iters, &src, |p| read_in_place(&mut acc, p));
                    black_box(acc);
                }))
            },
        );
        g.bench_with_input(
            BenchmarkId::new("crossbeam_vec_in_place", len),
            &len,
            |bch, &len| {
                bch.iter_custom(timed(|iters| {
                    crossbeam_batch(&tx, &rx, len, iters, &src, |p| read_in_place(&mut acc, p));
                    black_box(acc);
                }))
            },
        );
    }
    g.finish();

    // UDP over loopback: smaller batches so the socket buffer never overflows (no loss).
    const UDP_BATCH: usize = 32;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (s1, s2) = rt.block_on(async {
        let s1 = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let s2 = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s1.connect(s2.local_addr().unwrap()).await.unwrap();
        (s1, s2)
    });
    let mut g = c.benchmark_group("alternatives_udp");
    g.throughput(Throughput::Elements(UDP_BATCH as u64));
    for len in SIZES {
        g.bench_with_input(
            BenchmarkId::new("tokio_udp_loopback", len),
            &len,
            |bch, &len| {
                bch.iter(|| {
                    rt.block_on(async {
                        for _ in 0..UDP_BATCH {
                            s1.send(&src[..len]).await.unwrap();
                        }
                        for _ in 0..UDP_BATCH {
                            let n = s2.recv(&mut dst).await.unwrap();
                            black_box(n);
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

/// Interleaved A/B rounds: each round times `ROUND` batches of one side, then of the other,
/// and the median of the per-round ratios is reported. Noise from other tenants of a shared
/// machine hits both sides of a round alike, so this ratio is steadier than the ratio of two
/// criterion results measured seconds apart.
fn ab_rounds(label: &str, mut a: impl FnMut(u64), mut b: impl FnMut(u64), per_iter: u64) {
    const ROUNDS: usize = 31;
    const ROUND: u64 = 400;
    let mut ratios = Vec::with_capacity(ROUNDS);
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    a(50);
    b(50);
    for _ in 0..ROUNDS {
        let x = timed(&mut a)(ROUND);
        let y = timed(&mut b)(ROUND);
        ratios.push(y.as_secs_f64() / x.as_secs_f64());
        ta += x;
        tb += y;
    }
    ratios.sort_by(|p, q| p.partial_cmp(q).unwrap());
    let n = (ROUNDS as u64 * ROUND * per_iter) as f64;
    println!(
        "A/B {label}: A {:.2} Mpps, B {:.2} Mpps, median A/B {:.3} (min {:.3}, max {:.3}, {ROUNDS} rounds)",
        n / ta.as_secs_f64() / 1e6,
        n / tb.as_secs_f64() / 1e6,
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}

/// The interleaved comparisons (printed before criterion's own runs).
fn ab_report() {
    // A large block freed raises glibc's heap-trim threshold, as it is in a long-running
    // program (and in criterion's runs, which allocate large sample buffers). Without this,
    // the channel side would pay for the heap being trimmed and regrown every batch at
    // 1500 bytes (2.7 instead of 7.9 Mpps here): the alternative gets its best case.
    drop(black_box(vec![1u8; 16 << 20]));
    let src = vec![0x5au8; 2048];
    let mut d1 = vec![0u8; 2048];
    let mut d2 = vec![0u8; 2048];
    let (a, b) = pipe("bench_ab");
    for len in SIZES {
        ab_rounds(
            &format!("safe batch (A) vs raw pointers (B), {len} B"),
            |it| safe_batch(&a, &b, len, it, &src, &mut d1),
            |it| raw_batch(&a, &b, len, it, &src, &mut d2),
            BATCH as u64,
        );
    }
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(1024);
    for len in SIZES {
        ab_rounds(
            &format!("netmap pipe (A) vs crossbeam Vec<u8> (B), {len} B"),
            |it| safe_batch(&a, &b, len, it, &src, &mut d1),
            |it| {
                crossbeam_batch(&tx, &rx, len, it, &src, |p| copy_out(&mut d2, p));
                black_box(&d2);
            },
            BATCH as u64,
        );
    }
    // The price of async itself: the same items (`Bytes` clones in, owned frames out) through
    // Sink/Stream (A) and through send/recv (B); and per item against batch, sync and async.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let async_pair = |name: &str| {
        let (c, d) = pipe(name);
        rt.block_on(async {
            let (tc, td) = (TokioNetmap::new(c).unwrap(), TokioNetmap::new(d).unwrap());
            (tc.tx_ring(0).unwrap(), td.rx_ring(0).unwrap())
        })
    };
    let (mut atx, mut arx) = async_pair("bench_ab_async");
    let (mut btx, mut brx) = async_pair("bench_ab_async_batch");
    for len in SIZES {
        let payload = Bytes::copy_from_slice(&src[..len]);
        ab_rounds(
            &format!("async Sink/Stream (A) vs sync send/recv+into_owned (B), same items, {len} B"),
            |it| rt.block_on(sink_stream(&mut atx, &mut arx, &payload, it)),
            |it| sync_items(&a, &b, &payload, it),
            BATCH as u64,
        );
    }
    for len in SIZES {
        let payload = Bytes::copy_from_slice(&src[..len]);
        ab_rounds(
            &format!("sync per item (A) vs sync batch (B), {len} B"),
            |it| sync_items(&a, &b, &payload, it),
            |it| safe_batch(&a, &b, len, it, &src, &mut d1),
            BATCH as u64,
        );
        ab_rounds(
            &format!("async per item (A) vs async zero-copy batch (B), {len} B"),
            |it| rt.block_on(sink_stream(&mut atx, &mut arx, &payload, it)),
            |it| rt.block_on(async_batch(&mut btx, &mut brx, len, it, &src, &mut d2)),
            BATCH as u64,
        );
    }
    let (mut x1, mut x2) = (0u64, 0u64);
    for len in SIZES {
        ab_rounds(
            &format!("read in place: netmap pipe (A) vs crossbeam Vec<u8> (B), {len} B"),
            |it| {
                safe_batch_with(&a, &b, len, it, &src, |p| read_in_place(&mut x1, p));
                black_box(x1);
            },
            |it| {
                crossbeam_batch(&tx, &rx, len, it, &src, |p| read_in_place(&mut x2, p));
                black_box(x2);
            },
            BATCH as u64,
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_sync, bench_async, bench_alternatives
}
fn main() {
    // `cargo bench --bench rings -- ab` prints only the interleaved A/B report;
    // `cargo bench --bench rings -- <filter>` runs only the matching criterion benchmarks.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if filters.is_empty() || filters == ["ab"] {
        ab_report();
    }
    if filters != ["ab"] {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}

//! bridge: forwards packets between two netmap ports in both directions, swapping buffers
//! (zero copy) when the ports share a memory region and copying otherwise; prints rates.
//!
//! Real netmap (as root):
//!     cargo run --release --example bridge -- -i netmap:eth0 -i netmap:eth1
//! Stock Linux without the module: `-i xdp:eth0 -i xdp:eth1` opens the second port on the
//! memory of the first (one UMEM for both, `NetmapBuilder::share_memory_with`), so the bridge
//! swaps buffers; `--copy` gives each port a memory of its own and copies (for comparison).
//! Other pairs (`afpacket:`, or `xdp:` with `afpacket:`) cannot share: the bridge copies and
//! says why. Every RX ring of a port is forwarded (one per queue on `xdp:`), as C `bridge`
//! does, from one task per direction.
//! Self-contained demo on pipes (emulated when no module is loaded): a generator feeds
//! `br{1`, the bridge forwards `br}1` <-> `br{2`, a sink counts on `br}2` (and back):
//!     cargo run --release --example bridge -- --demo 2000000

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmap_rs::prelude::*;
use netmap_rs::tokio_async::{AsyncNetmapRxPort, AsyncNetmapTxRing};

mod common;

const BURST: usize = 512;

/// Forwards one direction until `limit` packets (0: forever), from every RX ring of the
/// source port (a multi-queue `xdp:` port has one per queue; they are served in turn) to TX
/// ring 0 of the other. Returns packets forwarded.
async fn forward(
    mut rx: AsyncNetmapRxPort,
    mut tx: AsyncNetmapTxRing,
    zero_copy: bool,
    limit: u64,
    counter: Arc<AtomicU64>,
) -> Result<u64, Error> {
    let mut total = 0u64;
    while limit == 0 || total < limit {
        let ring = rx.readable().await?;
        tx.writable().await?;
        let rx = rx.rings_mut()[ring].get_mut();
        let n = if zero_copy {
            zero_copy_forward(rx, tx.get_mut(), BURST)? as u64
        } else {
            let (r, t) = (rx, tx.get_mut());
            let mut n = 0;
            while let Some(Ok(f)) = r.peek() {
                match t.send(f.payload()) {
                    Ok(()) => {
                        r.consume();
                        n += 1;
                    }
                    Err(Error::InsufficientSpace) => break, // stays in rx for next round
                    Err(e) => return Err(e),
                }
            }
            n
        };
        tx.flush_ring().await?;
        total += n;
        counter.fetch_add(n, Ordering::Relaxed);
    }
    Ok(total)
}

fn report(
    label: &str,
    counters: &[Arc<AtomicU64>; 2],
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let c = counters.clone();
    let label = label.to_string();
    tokio::spawn(async move {
        let mut last = [0u64; 2];
        loop {
            tokio::time::sleep(every).await;
            let now = [c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)];
            println!(
                "{label}: a->b {:.3} Mpps, b->a {:.3} Mpps",
                (now[0] - last[0]) as f64 / every.as_secs_f64() / 1e6,
                (now[1] - last[1]) as f64 / every.as_secs_f64() / 1e6
            );
            last = now;
        }
    })
}

async fn bridge(a: Netmap, b: Netmap, limit: u64) -> Result<(u64, u64), Error> {
    use netmap_rs::tokio_async::TokioNetmap;
    let zc = a.shares_memory_with(&b);
    println!(
        "bridge {} <-> {} ({}), {}",
        a.name(),
        b.name(),
        a.backend(),
        if zc {
            "zero copy (shared memory)"
        } else {
            "copying (separate memory)"
        }
    );
    let (a, b) = (TokioNetmap::new(a)?, TokioNetmap::new(b)?);
    let counters = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let rep = report("bridge", &counters, Duration::from_secs(1));
    let ab = tokio::spawn(forward(
        a.rx_port()?,
        b.tx_ring(0)?,
        zc,
        limit,
        counters[0].clone(),
    ));
    let ba = tokio::spawn(forward(
        b.rx_port()?,
        a.tx_ring(0)?,
        zc,
        limit,
        counters[1].clone(),
    ));
    let (stop_ab, stop_ba) = (ab.abort_handle(), ba.abort_handle());
    let r = tokio::select! {
        r = async { (ab.await, ba.await) } => (r.0.expect("task")?, r.1.expect("task")?),
        // Ctrl-C or SIGTERM: stop forwarding (the tasks drop their rings) and report.
        _ = common::signalled() => {
            stop_ab.abort();
            stop_ba.abort();
            (counters[0].load(Ordering::Relaxed), counters[1].load(Ordering::Relaxed))
        }
    };
    rep.abort();
    Ok(r)
}

/// Sends `n` numbered packets on `tx` and checks `n` arrive in order on `rx`.
fn endpoint(port: Netmap, n: u64) -> std::thread::JoinHandle<Result<(), Error>> {
    std::thread::spawn(move || {
        let mut tx = port.tx_ring(0)?;
        let mut rx = port.rx_ring(0)?;
        let (mut sent, mut got) = (0u64, 0u64);
        while got < n || sent < n {
            let before = sent;
            while sent < n && tx.send(&sent.to_le_bytes()).is_ok() {
                sent += 1;
            }
            tx.sync()?;
            rx.sync()?;
            let mut any = false;
            for f in rx.batch(usize::MAX) {
                assert_eq!(f.payload(), got.to_le_bytes(), "bridge lost or reordered");
                got += 1;
                any = true;
            }
            if !any && sent == before {
                // Blocked both ways: sleep in poll instead of spinning (spinners starve the
                // bridge's threads on a small machine).
                let want = Readiness {
                    readable: true,
                    writable: sent < n,
                };
                port.wait(want, Some(Duration::from_millis(10)))?;
            }
        }
        Ok(())
    })
}

/// Opens `a`, then `b` on the memory of `a` where both backends can share one (two `xdp:`
/// ports: one UMEM), else on a memory of its own (`copy`: always). Says which.
fn open_pair(a: &str, b: &str, copy: bool) -> Result<(Netmap, Netmap), Error> {
    if copy {
        println!("--copy: each port on a memory of its own");
        return Ok((
            NetmapBuilder::new(a).build()?,
            NetmapBuilder::new(b).build()?,
        ));
    }
    // Room for the second port in the first one's memory (AF_XDP; other backends ignore it).
    let a = NetmapBuilder::new(a).memory_for_ports(2).build()?;
    if a.backend() != BackendKind::Xdp {
        // The netmap module and emulated pipes share by name (`@N`, one pipe parent).
        return Ok((a, NetmapBuilder::new(b).build()?));
    }
    match NetmapBuilder::new(b).share_memory_with(&a).build() {
        Ok(b) => Ok((a, b)),
        Err(e @ Error::CannotShareMemory { .. }) => {
            println!("not sharing memory: {e}");
            Ok((a, NetmapBuilder::new(b).build()?))
        }
        Err(e) => Err(e),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, n] if flag == "--demo" => {
            let n: u64 = n.parse().expect("--demo COUNT");
            // Two endpoints send n packets each through the bridge to each other.
            let left = NetmapBuilder::new("br{1").build()?;
            let a = NetmapBuilder::new("br}1").build()?;
            let b = NetmapBuilder::new("br{2").build()?;
            let right = NetmapBuilder::new("br}2").build()?;
            let start = Instant::now();
            let (l, r) = (endpoint(left, n), endpoint(right, n));
            let (ab, ba) = bridge(a, b, n).await?;
            l.join().expect("endpoint")?;
            r.join().expect("endpoint")?;
            let s = start.elapsed().as_secs_f64();
            println!(
                "bridge demo ok: forwarded {ab} + {ba} packets in {s:.2} s ({:.3} Mpps each way), none lost",
                n as f64 / s / 1e6
            );
            Ok(())
        }
        [i1, a, i2, b] | [_, i1, a, i2, b] if i1 == "-i" && i2 == "-i" => {
            let copy = args[0] == "--copy";
            if args.len() == 5 && !copy {
                eprintln!("usage: bridge [--copy] -i PORT_A -i PORT_B | bridge --demo COUNT");
                std::process::exit(2)
            }
            let (a, b) = open_pair(a, b, copy)?;
            let (ab, ba) = bridge(a, b, 0).await?;
            println!("bridge: forwarded {ab} packets a->b and {ba} b->a");
            Ok(())
        }
        _ => {
            eprintln!("usage: bridge [--copy] -i PORT_A -i PORT_B | bridge --demo COUNT");
            std::process::exit(2)
        }
    }
}

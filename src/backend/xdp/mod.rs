//! The AF_XDP driver: netmap rings over AF_XDP sockets, one socket per queue, all on one
//! UMEM that *is* the port's netmap buffer pool (see [`ringmem`](crate::backend::linux::ringmem)). Buffer `i`
//! is UMEM frame `i` shifted by the kernel's XDP headroom, so packets move between the rings
//! and the kernel without being copied by us:
//!
//! - rxsync: the buffers of the slots the user released go to the fill ring; RX descriptors
//!   become slots (`buf_idx` from the address, `len`), as many as the ring has room for.
//! - txsync: completions are reaped first; slots `[hwcur, head)` become TX descriptors and
//!   the socket is kicked; completions are reaped again, and each completed frame becomes the
//!   buffer of the oldest in-flight slot, which is then the user's again. A slot whose buffer
//!   is outside the pool or whose frame is longer than the interface takes is not sent: the
//!   sync reports it ([`Error::CorruptSlot`] / [`Error::FrameOverMtu`]) after sending the rest.
//! - Buffer swaps (`NS_BUF_CHANGED`) need nothing: a slot's buffer is read at every sync.
//!
//! Per queue, `tx_slots` frames circulate between the TX ring and the kernel, and
//! [`RX_DEPTH`]` * rx_slots` between the RX ring, the fill ring and the kernel (the fill and RX
//! rings hold them all, so a release never finds the fill ring full). Every index read from a kernel ring
//! is checked before use ([`xsk_ring`]). Each direction of a queue (the netmap
//! ring's state and the socket's rings for that direction) is behind a mutex of its own, the
//! equivalent of the module's kring lock: a kick that transmits a batch never holds up a
//! receiver.
//!
//! The memory ([`mem`]): a port opens a memory of its own (with room for more ports when
//! asked, `memory_for_ports`) or joins another `xdp:` port's (`share_memory_with`): then the
//! sockets of both bind to one UMEM and buffer indices mean the same buffer on both. A port
//! takes its buffers from the memory at open and gives back at close those it then holds
//! (see `XdpQueue::held_buffers`); to know which buffers the kernel has, each RX queue keeps
//! the set it put on the fill ring and has not had back (`RxState::lent`, one bit each).
//!
//! The XDP program is attached once per interface and shared by the ports of this process
//! and of other processes ([`prog`]); the kernel detaches it when the last of them closes (or
//! dies: the BPF link closes with it). Each queue redirects what its port's filter takes
//! ([`filter`]); each port unregisters its queues on close.

use std::collections::{HashMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

mod asm;
pub(crate) mod bpf;
mod chain;
pub(crate) mod filter;
pub(crate) mod ids;
pub(crate) mod mem;
pub(crate) mod prog;
mod queue;
pub(crate) mod umem;
pub(crate) mod xsk;
pub(crate) mod xsk_ring;

use crate::abi::{NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NS_BUF_CHANGED};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::ringmem::{slots, MemPlan, BUF_SIZE};
use crate::backend::linux::sockets::SocketSet;
use crate::backend::linux::sys::XdpDesc;
use crate::backend::{Backend, Driver, OpenOptions, Opened, PortStats, Readiness, RingWaker};
use crate::error::Error;
use crate::port_name::{PortSpec, RingSelect};
use crate::ring::{distance, in_cyclic_range, next, prev, Dir, RawRing};
use mem::{BufSet, Carved, Share, XdpMem};
use prog::{XdpAttachOptions, XdpProgram};
use xsk::{Umem, XskBindMode, XskConfig, XskCounters, XskRx, XskSocket, XskTx};

/// Where a received packet starts in its frame (`HEADROOM`), and so where netmap
/// buffer `i` starts in UMEM frame `i`.
const HEADROOM: u64 = crate::backend::linux::sys::XDP_PACKET_HEADROOM as u64;

/// How long an open waits for a queue released by a socket that just closed.
const REBIND_GRACE: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The redirect programs this process attached, by interface index.
fn programs() -> &'static Mutex<HashMap<u32, Weak<XdpProgram>>> {
    static P: OnceLock<Mutex<HashMap<u32, Weak<XdpProgram>>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// A port's share of its interface's redirect program. The last share detaches the program,
/// under the registry lock, so a port opening meanwhile never finds it half gone.
#[derive(Debug)]
struct ProgShare(Option<Arc<XdpProgram>>);

impl ProgShare {
    fn get(iface: &Interface) -> Result<ProgShare, Error> {
        let mut reg = lock(programs());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(p) = reg.get(&iface.index).and_then(Weak::upgrade) {
            return Ok(ProgShare(Some(p)));
        }
        let p = Arc::new(XdpProgram::attach(iface, &XdpAttachOptions::default())?);
        reg.insert(iface.index, Arc::downgrade(&p));
        Ok(ProgShare(Some(p)))
    }

    fn prog(&self) -> &XdpProgram {
        self.0.as_ref().expect("present until drop")
    }
}

impl Drop for ProgShare {
    fn drop(&mut self) {
        let _reg = lock(programs());
        self.0.take();
    }
}

/// Kernel-side TX state of one queue.
#[derive(Debug)]
struct TxState {
    hwcur: u32,
    /// Slots handed over and not yet the user's again, oldest first: `true` while the frame
    /// is with the kernel, `false` for a slot that was refused (it keeps its buffer).
    inflight: VecDeque<bool>,
    /// Frames completed and not yet given to a slot.
    done: Vec<u32>,
    descs: Vec<XdpDesc>,
    comp: Vec<u64>,
}

/// Kernel-side RX state of one queue.
#[derive(Debug)]
struct RxState {
    hwcur: u32,
    /// The tail shown to the user, and the slots of a packet still arriving past it.
    asm: chain::RxAssembly,
    descs: Vec<XdpDesc>,
    /// Frames waiting for room on the fill ring (UMEM addresses).
    refill: Vec<u64>,
    /// Buffers with the kernel: put on the fill ring and not yet back on the RX ring (what
    /// the port gives back to its memory at close, with its slots' buffers).
    lent: BufSet,
}

/// The sending half of a queue: its socket's TX and completion rings and the state of the
/// netmap TX ring. Locked apart from the receiving half, so a kick that transmits a batch
/// (copy mode sends from the caller's context) never holds up a receiver.
#[derive(Debug)]
struct TxSide {
    xsk: XskTx,
    st: TxState,
}

/// The receiving half of a queue: RX and fill rings and the state of the netmap RX ring.
#[derive(Debug)]
struct RxSide {
    xsk: XskRx,
    st: RxState,
}

#[derive(Debug)]
struct XdpQueue {
    id: u32,
    tx: RawRing,
    rx: RawRing,
    txs: Mutex<TxSide>,
    rxs: Mutex<RxSide>,
    /// The socket's drop counters, read without either lock.
    counters: XskCounters,
}

/// An open `xdp:` port.
#[derive(Debug)]
pub(crate) struct Port {
    ifname: String,
    max_frame: usize,
    /// Longest one-slot TX packet: `max_frame`, at most a UMEM frame after the headroom.
    max_slot: usize,
    /// Most slots one TX packet may take: [`chain::MAX_TX_FRAGS`] with multi-buffer sockets,
    /// else 1.
    max_frags: usize,
    nbufs: u32,
    socks: SocketSet,
    queues: Vec<XdpQueue>,
    /// Whether the last txsync left frames on an AF_XDP TX ring that the kernel did not take
    /// (a busy device): nothing may complete then, so a waiter must sync again by itself.
    tx_busy: std::sync::atomic::AtomicBool,
    // After the queues: their sockets leave the XSKMAP (in Drop) and close first.
    prog: ProgShare,
    // Last: gives the port's buffers and ring area back to the memory once the sockets
    // closed.
    share: Share,
}

/// How soon a wait syncs again while the kernel leaves frames unsent (`Port::tx_busy`).
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// Frames per RX slot circulating between a queue's netmap RX ring, fill ring and the kernel:
/// a ring's worth beyond what the user holds and what waits in the RX ring, so a receiver that
/// loses its CPU under a flood does not run the fill ring dry (`rx_fill_empty`); as netring.
pub(crate) const RX_DEPTH: u32 = 4;

/// Opens `spec` (an `xdp:` name, or a bare one routed here) on AF_XDP.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let iface = Interface::lookup_up(&spec.ifname)?;
    let bound: Vec<u32> = match spec.rings {
        RingSelect::AllNic => (0..iface.queues).collect(),
        RingSelect::OneNic(q) => {
            iface.check_queue(u32::from(q))?;
            vec![u32::from(q)]
        }
        _ => return Err(crate::backend::linux::host_rings_error(spec)),
    };
    if opts.extra_bufs != 0 {
        return Err(crate::backend::linux::extra_bufs_error(spec));
    }
    let ntx = slots(opts.tx_slots, "tx")?;
    let nrx = slots(opts.rx_slots, "rx")?;
    let per_queue = ntx + RX_DEPTH * nrx;
    let nbufs = u32::try_from(per_queue as usize * bound.len())
        .map_err(|_| Error::BindFail("too many buffers".into()))?;
    let plan = MemPlan {
        name: &spec.ifname,
        queues: iface.queues,
        bound: &bound,
        tx_slots: ntx,
        rx_slots: nrx,
        nbufs,
        buf_shift: HEADROOM as usize,
        expose_tx: opts.flags & NR_RX_RINGS_ONLY == 0,
        expose_rx: opts.flags & NR_TX_RINGS_ONLY == 0,
        huge_pages: opts.huge_pages,
    };
    // A memory of its own (with room for `mem_ports` ports), or the memory of the port named
    // by `share_memory_with`.
    let Carved {
        mut share,
        tx: tx_rings,
        rx: rx_rings,
        bufs,
    } = match opts.share.as_ref().and_then(|s| s.xdp.as_ref()) {
        Some(mem) => mem.join(&plan, &format!("xdp:{spec}"))?,
        None => XdpMem::create(&plan, opts.mem_ports, &format!("xdp:{}", spec.ifname))?,
    };
    // Until the port holds them: if the open fails, they go back as they were given.
    share.give_back(bufs.clone());
    let mem = share.mem.clone();
    let umem = mem.umem.clone();
    // A foreign program fails the open here, before any socket exists.
    let prog = ProgShare::get(&iface)?;
    let cfg = XskConfig {
        fill_size: (RX_DEPTH * nrx).next_power_of_two(),
        rx_size: (RX_DEPTH * nrx).next_power_of_two(),
        comp_size: ntx.next_power_of_two(),
        tx_size: ntx.next_power_of_two(),
        ..XskConfig::default()
    };
    let mut queues: Vec<XdpQueue> = Vec::with_capacity(bound.len());
    for (i, &q) in bound.iter().enumerate() {
        let bufs = &bufs[(i * per_queue as usize)..((i + 1) * per_queue as usize)];
        let (tx, rx) = (tx_rings[i].clone(), rx_rings[i].clone());
        match open_queue(
            &iface,
            q,
            &umem,
            &cfg,
            bufs,
            ntx,
            nrx,
            &tx,
            &rx,
            prog.prog(),
            spec.filter.as_ref(),
            mem.nbufs,
        ) {
            Ok((txs, rxs, counters)) => queues.push(XdpQueue {
                id: q,
                tx,
                rx,
                txs: Mutex::new(txs),
                rxs: Mutex::new(rxs),
                counters,
            }),
            Err(e) => {
                for done in &queues {
                    let _ = prog.prog().unregister(done.id);
                }
                return Err(e);
            }
        }
    }
    // Without multi-buffer sockets (kernels before 6.6, or a zero-copy driver without it) a
    // frame longer than a buffer (after the XDP headroom) would be dropped by the kernel.
    let sg = queues.iter().all(|q| lock(&q.txs).xsk.multi_buffer());
    let one_buf = (BUF_SIZE as u64 - HEADROOM) as usize;
    let limit = if sg {
        Ok(())
    } else {
        iface.check_rx_limit(one_buf)
    };
    if let Err(e) = limit {
        for q in &queues {
            let _ = prog.prog().unregister(q.id);
        }
        return Err(e);
    }
    let socks = {
        let guards: Vec<_> = queues.iter().map(|q| lock(&q.txs)).collect();
        let fds: Vec<BorrowedFd<'_>> = guards.iter().map(|g| g.xsk.fd()).collect();
        SocketSet::new(&fds)
    };
    let socks = match socks {
        Ok(s) => s,
        Err(e) => {
            for q in &queues {
                let _ = prog.prog().unregister(q.id);
            }
            return Err(e);
        }
    };
    let mode = lock(&queues[0].txs).xsk.mode();
    tracing::info!(
        interface = %iface.name,
        queues = ?bound,
        socket_mode = ?mode,
        multi_buffer = sg,
        xdp_mode = ?prog.prog().mode(),
        attach = ?prog.prog().method(),
        "AF_XDP port open ({} copy)",
        if mode == XskBindMode::ZeroCopy { "zero" } else { "kernel" }
    );
    let (max_frame, max_frags) = match sg {
        true => (iface.max_frame(), chain::MAX_TX_FRAGS),
        false => (iface.max_frame().min(one_buf), 1),
    };
    let if_off = share.area.start;
    let port = Port {
        ifname: iface.name,
        max_frame,
        max_slot: max_frame.min(one_buf),
        max_frags,
        nbufs: mem.nbufs,
        socks,
        queues,
        tx_busy: Default::default(),
        prog,
        share,
    };
    Ok(Opened {
        slot_groups: Vec::new(),
        backend: Backend::Xdp(port),
        pool: mem.pool.clone(),
        region: mem.region.clone(),
        if_off,
        mem: mem.identity,
        extra_bufs: 0,
    })
}

/// Binds queue `q`, gives its TX slots their buffers, fills the fill ring and puts the socket
/// into the XSKMAP (last: nothing is redirected to it before it can receive).
#[allow(clippy::too_many_arguments)]
fn open_queue(
    iface: &Interface,
    q: u32,
    umem: &Umem,
    cfg: &XskConfig,
    bufs: &[u32],
    ntx: u32,
    nrx: u32,
    tx: &RawRing,
    rx: &RawRing,
    prog: &XdpProgram,
    filter: Option<&crate::port_name::XdpFilter>,
    nbufs: u32,
) -> Result<(TxSide, RxSide, XskCounters), Error> {
    // A queue whose previous socket just closed stays taken until the kernel's deferred
    // release of that socket's buffer pool has run (a workqueue item): retry briefly before
    // calling the queue busy.
    let deadline = Instant::now() + REBIND_GRACE;
    let mut xsk = loop {
        match XskSocket::new(&iface.name, q, umem, cfg) {
            Err(Error::PortBusy(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => break r?,
        }
    };
    // This queue's buffers: `ntx` for the TX slots, `RX_DEPTH * nrx` for the fill ring.
    let (tx_bufs, rx_bufs) = bufs.split_at(ntx as usize);
    for (k, &b) in (0..ntx).zip(tx_bufs) {
        // SAFETY: the rings were just built and no user can reach them yet.
        unsafe { tx.set_buf_idx(k, b) };
    }
    for (k, &b) in (0..nrx).zip(rx_bufs) {
        // SAFETY: as above. (RX slots get their buffers when packets arrive; these are
        // placeholders inside the pool.)
        unsafe { rx.set_buf_idx(k, b) };
    }
    let fill: Vec<u64> = rx_bufs.iter().map(|&b| queue::frame_addr(b)).collect();
    let mut lent = BufSet::new(nbufs);
    for &b in rx_bufs {
        lent.insert(b);
    }
    let n = xsk.fill.produce(&fill)?;
    if n != fill.len() {
        return Err(Error::BadLayout(format!(
            "AF_XDP fill ring of {} entries took {n} of {} frames",
            cfg.fill_size,
            fill.len()
        )));
    }
    prog.register_filtered(q, xsk.fd(), filter)?;
    let counters = xsk.counters();
    let (xtx, xrx) = xsk.split();
    let tx = TxSide {
        xsk: xtx,
        st: TxState {
            hwcur: 0,
            inflight: VecDeque::with_capacity(ntx as usize),
            done: Vec::with_capacity(ntx as usize),
            descs: Vec::with_capacity(ntx as usize),
            comp: vec![0; ntx as usize],
        },
    };
    let rx = RxSide {
        xsk: xrx,
        st: RxState {
            hwcur: 0,
            asm: chain::RxAssembly::default(),
            descs: vec![XdpDesc::default(); nrx as usize],
            refill: Vec::with_capacity((RX_DEPTH * nrx) as usize),
            lent,
        },
    };
    Ok((tx, rx, counters))
}

/// One queue's `XDP_STATISTICS` as [`PortStats`]; the counters a kernel before 5.9 does not
/// fill (it writes 24 of the 48 bytes) are `None`.
fn queue_stats(c: &XskCounters) -> Result<PortStats, Error> {
    let (s, len) = c.read()?;
    let full = len >= std::mem::size_of::<libc::xdp_statistics>();
    let newer = |v: u64| full.then_some(v);
    Ok(PortStats {
        rx_dropped: Some(s.rx_dropped),
        rx_invalid: Some(s.rx_invalid_descs),
        tx_invalid: Some(s.tx_invalid_descs),
        rx_ring_full: newer(s.rx_ring_full),
        rx_fill_empty: newer(s.rx_fill_ring_empty_descs),
        tx_ring_empty: newer(s.tx_ring_empty_descs),
        ..PortStats::default()
    })
}

impl Driver for Port {
    fn txsync(&self) -> Result<(), Error> {
        let mut first = Ok(());
        let mut busy = false;
        for (pos, q) in self.queues.iter().enumerate() {
            let r = self.txsync_queue(pos, q, &mut busy);
            if first.is_ok() {
                first = r;
            }
        }
        self.tx_busy
            .store(busy, std::sync::atomic::Ordering::Relaxed);
        first
    }

    fn slot_payload(&self) -> Option<usize> {
        Some((BUF_SIZE as u64 - HEADROOM) as usize)
    }

    fn prefer_busy_poll(&self, spin: Duration) {
        self.socks.prefer_busy_poll(spin)
    }

    fn retry_after(&self) -> Option<Duration> {
        self.tx_busy
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(BUSY_RETRY)
    }

    fn rxsync(&self) -> Result<(), Error> {
        for q in &self.queues {
            self.rxsync_queue(q)?;
        }
        Ok(())
    }

    fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        self.socks.ring_waker(dir, idx)
    }

    fn stats(&self, ring: Option<usize>) -> Result<PortStats, Error> {
        match ring {
            Some(i) => queue_stats(&self.queues[i].counters),
            None => {
                let mut all = self.queues.iter().map(|q| queue_stats(&q.counters));
                let first = all.next().unwrap_or_else(|| Ok(PortStats::default()))?;
                all.try_fold(first, |acc, s| Ok(acc.merge(&s?)))
            }
        }
    }

    fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        self.socks.exposed_rx_fd()
    }

    fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        self.socks.wait(self, want, timeout, check)
    }
}

impl Drop for Port {
    /// Sends what is still on the AF_XDP TX rings (copy mode transmits only when kicked),
    /// waiting at most `FLUSH_AT_CLOSE`, then takes the sockets out of the XSKMAP, waits
    /// (within the same bound) for the frames in flight to complete, and records the buffers
    /// the port holds for its memory (given back once the sockets closed).
    fn drop(&mut self) {
        let deadline = Instant::now() + crate::backend::linux::FLUSH_AT_CLOSE;
        for q in &mut self.queues {
            let side = q.txs.get_mut().unwrap_or_else(|e| e.into_inner());
            while matches!(side.xsk.tx.pending(), Ok(p) if p > 0) && Instant::now() < deadline {
                if side.xsk.kick_tx().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        for q in &self.queues {
            if let Err(e) = self.prog.prog().unregister(q.id) {
                tracing::warn!(interface = %self.ifname, queue = q.id, "XSKMAP removal failed: {e}");
            }
        }
        // Frames still in flight may be read by the kernel until they complete: wait for
        // them (as long as for the flush), so that their buffers can be given back.
        for q in &mut self.queues {
            let XdpQueue { tx, txs, .. } = q;
            let side = txs.get_mut().unwrap_or_else(|e| e.into_inner());
            while queue::reap(side, tx, tx.num_slots()).is_ok()
                && side.st.inflight.iter().any(|&sent| sent)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // The buffers this port holds go back to its memory when `share` drops, after the
        // sockets (in `socks` and `queues`, dropped before it) closed.
        let mut held = Vec::new();
        for q in &mut self.queues {
            q.held_buffers(&mut held);
        }
        self.share.give_back(held);
    }
}

impl Port {
    /// The memory this port is on.
    pub(crate) fn memory(&self) -> Arc<XdpMem> {
        self.share.mem.clone()
    }
}

impl XdpQueue {
    /// Appends the buffers this queue holds: those of its TX slots (every slot has one;
    /// completions return exactly the frames sent, each to a slot; a slot still in flight is
    /// left out: its frame may still be read by the kernel), those of the RX slots from the
    /// driver's `hwcur` to the last slot written (received, shown or part of a packet still
    /// arriving, not yet given back), those waiting for the
    /// fill ring, and those with the kernel (`lent`).
    fn held_buffers(&mut self, out: &mut Vec<u32>) {
        let (tx, n) = (&self.tx, self.tx.num_slots());
        // Frames sent and never completed stay out of use: the kernel may still read them.
        let txs = self.txs.get_mut().unwrap_or_else(|e| e.into_inner());
        let oldest = distance(txs.st.inflight.len() as u32, txs.st.hwcur, n);
        let mut in_flight = vec![false; n as usize];
        for (i, &sent) in txs.st.inflight.iter().enumerate() {
            in_flight[((oldest as usize) + i) % n as usize] = sent;
        }
        for k in (0..n).filter(|&k| !in_flight[k as usize]) {
            // SAFETY: the port is being dropped: no ring handle of it is alive (each holds
            // the port), so nobody else reads or writes its slots.
            out.push(unsafe { tx.slot_meta(k) }.0);
        }
        let rxs = self.rxs.get_mut().unwrap_or_else(|e| e.into_inner());
        let (rx, n) = (&self.rx, self.rx.num_slots());
        let mut k = rxs.st.hwcur;
        while k != rxs.st.asm.written && k < n {
            // SAFETY: as above.
            out.push(unsafe { rx.slot_meta(k) }.0);
            k = next(k, n);
        }
        out.extend(
            rxs.st
                .refill
                .iter()
                .map(|&a| (a / u64::from(BUF_SIZE)) as u32),
        );
        out.extend(rxs.st.lent.iter());
    }
}

//! The AF_PACKET driver: a netmap TX and RX ring pair per AF_PACKET socket bound to the
//! whole interface ([`tpacket`]), each packet copied once between the kernel's ring and a
//! slot's buffer, or on RX read in place by `RxRing::for_each_frame` ([`in_place`]). RX is
//! in `TPACKET_V2` frames (the default: one frame, one wake-up per packet), or with a block
//! retire timeout (`NetmapBuilder::block_timeout`) in `TPACKET_V3` blocks ([`blocks`])
//! handed over when full or after the timeout.
//!
//! One socket by default. With `num_rx_rings(n)` (or `num_tx_rings(n)`) the port opens `n`
//! sockets that join one `PACKET_FANOUT` group (mode from `NetmapBuilder::fanout`, hash by
//! default): ring pair `i` is socket `i`, and the kernel spreads received packets over the
//! sockets. `build_per_ring` opens each socket as its own registration (`afpacket:IF-i`),
//! all in the group id `build_per_ring` chose for the port.
//!
//! - rxsync: released slots need nothing (each slot keeps its buffer, swapped or not); then
//!   as many received frames as the ring has room for are copied into slots `[hwtail, ...)`
//!   and given back to the kernel. Each frame's kernel timestamp (`tp_sec`/`tp_nsec`,
//!   `CLOCK_REALTIME`: the socket asks for no hardware stamps) goes into its slot's `ptr`
//!   field as nanoseconds since the epoch (the per-slot table `Frame::timestamp` reads; `ptr`
//!   is otherwise unused on RX rings), in the slot line the copy touches anyway.
//! - txsync: slots `[copied, head)` are copied into free kernel TX frames (marked
//!   `TP_STATUS_SEND_REQUEST`), the socket is kicked (`sendto(MSG_DONTWAIT)`), and the copied
//!   slots are the user's again at once. When the kernel ring is full the rest wait for the
//!   next sync. A slot longer than the interface takes, or with a buffer outside the pool, is
//!   not sent; the sync reports it ([`Error::FrameOverMtu`] / [`Error::CorruptSlot`]) after
//!   copying the others.
//!
//! Kernel frames and slot buffers have one size, chosen from the interface MTU at open
//! ([`frame_size_for`]: 2048 bytes for standard MTUs, 16384 at MTU 9000).
//!
//! The socket uses `PACKET_QDISC_BYPASS` and `PACKET_IGNORE_OUTGOING` (our own transmissions
//! never show up in our RX ring), both when the kernel has them.

use std::os::fd::BorrowedFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod blocks;
pub(crate) mod filter;
mod in_place;
pub(crate) mod tpacket;

use crate::abi::{NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::ringmem::{
    slots, whole_packets_end, with_slot_data, write_slot, MemPlan, RingMem, BUF_SIZE,
};
use crate::backend::linux::sockets::SocketSet;
use crate::backend::linux::sys::TPACKET2_RX_DATA_OFFSET;
use crate::backend::linux::{extra_bufs_error, host_rings_error, FLUSH_AT_CLOSE};
use crate::backend::{
    Backend, Driver, InPlace, OpenOptions, Opened, PortStats, Readiness, RingWaker,
    DEFAULT_BLOCK_TIMEOUT,
};
use crate::error::Error;
use crate::port_name::{PortSpec, RingSelect};
use crate::ring::{advance, distance, in_cyclic_range, next, prev, Dir, RawRing};
use tpacket::{PacketConfig, PacketSocket};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct State {
    sock: PacketSocket,
    tx_hwcur: u32,
    /// Slots before this one (from `tx_hwcur` backwards) are copied out; the user's tail is
    /// the slot before it.
    tx_copied: u32,
    rx_hwcur: u32,
    rx_hwtail: u32,
    /// Frames the kernel cut (`tp_snaplen < tp_len`: the MTU was raised after the port was
    /// opened), dropped instead of delivered cut.
    rx_truncated: u64,
    /// `PACKET_STATISTICS` summed since the open (the kernel resets it on every read).
    tp_packets: u64,
    tp_drops: u64,
    /// `tp_freeze_q_cnt` summed (`TPACKET_V3`).
    tp_freezes: u64,
}

/// One socket and its netmap ring pair.
#[derive(Debug)]
struct Queue {
    tx: RawRing,
    rx: RawRing,
    state: Mutex<State>,
}

/// An open `afpacket:` port.
#[derive(Debug)]
pub(crate) struct Port {
    ifname: String,
    max_frame: usize,
    queues: Vec<Queue>,
    socks: SocketSet,
}

/// Most sockets in one fanout group (the kernel's `PACKET_FANOUT_MAX` before 5.x raised it).
const MAX_FANOUT: u16 = 256;

/// The number of sockets (ring pairs) asked for, and whether they join a fanout group.
fn socket_count(spec: &PortSpec, opts: &OpenOptions) -> Result<(u16, bool), Error> {
    let (t, r) = (opts.tx_rings, opts.rx_rings);
    if t != 0 && r != 0 && t != r {
        return Err(Error::BindFail(format!(
            "afpacket:{}: {t} TX and {r} RX rings asked for; each AF_PACKET socket carries one \
             ring pair, so ask for the same number (or set only num_rx_rings)",
            spec.ifname
        )));
    }
    let n = t.max(r).max(1);
    if n > MAX_FANOUT {
        return Err(Error::BindFail(format!(
            "afpacket:{}: {n} rings asked for; a fanout group takes at most {MAX_FANOUT} \
             sockets: ask for fewer rings",
            spec.ifname
        )));
    }
    Ok((n, n > 1 || opts.fanout.is_some()))
}

/// Largest kernel frame and slot buffer: a slot's length is 16 bits.
const MAX_FRAME_SIZE: usize = 1 << 16;

/// The kernel frame size, which is also the slot buffer size, for an interface whose longest
/// frame is `max_frame` bytes (MTU + 14) when the port opens: netmap's 2048 up to MTU 1968,
/// else the next power of two holding the frame after the `TPACKET_V2` header (16384 for
/// MTU 9000), at most 65536 (a larger MTU is refused at open).
pub(crate) fn frame_size_for(max_frame: usize) -> u32 {
    let need = (max_frame + TPACKET2_RX_DATA_OFFSET).next_power_of_two();
    need.clamp(BUF_SIZE as usize, MAX_FRAME_SIZE) as u32
}

/// `timeout` in whole milliseconds, rounded up (0 only for zero: `TPACKET_V2`).
pub(crate) fn block_timeout_ms(timeout: Duration) -> u32 {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Opens `spec` on AF_PACKET.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let (n, fanout) = socket_count(spec, opts)?;
    let bound: Vec<u32> = match spec.rings {
        RingSelect::AllNic => (0..u32::from(n)).collect(),
        RingSelect::OneNic(q) if q < n => vec![u32::from(q)],
        RingSelect::OneNic(q) => {
            return Err(Error::BindFail(format!(
                "{}-{q}: AF_PACKET sees every queue of an interface, and this port has {n} \
                 ring(s); open {} without -N, ask for more rings (num_rx_rings) and use \
                 build_per_ring, or use xdp:{}-{q} for one queue",
                spec.ifname, spec.ifname, spec.ifname
            )))
        }
        _ => return Err(host_rings_error(spec)),
    };
    if opts.extra_bufs != 0 {
        return Err(extra_bufs_error(spec));
    }
    let iface = Interface::lookup_up(&spec.ifname)?;
    let frame_size = frame_size_for(iface.max_frame());
    // A frame longer than the RX frame's data area would be cut (`tp_snaplen < tp_len`).
    iface.check_rx_limit(frame_size as usize - TPACKET2_RX_DATA_OFFSET)?;
    let ntx = slots(opts.tx_slots, "tx")?;
    let nrx = slots(opts.rx_slots, "rx")?;
    let per_queue = ntx + nrx;
    let nbufs = u32::try_from(per_queue as usize * bound.len())
        .map_err(|_| Error::BindFail("too many buffers".into()))?;
    let mem = RingMem::build_sized(
        &MemPlan {
            name: &spec.ifname,
            queues: u32::from(n),
            bound: &bound,
            tx_slots: ntx,
            rx_slots: nrx,
            nbufs,
            buf_shift: 0,
            expose_tx: opts.flags & NR_RX_RINGS_ONLY == 0,
            expose_rx: opts.flags & NR_TX_RINGS_ONLY == 0,
            huge_pages: opts.huge_pages,
        },
        frame_size,
    )?;
    let group = opts
        .fanout_group
        .unwrap_or_else(crate::backend::new_fanout_group);
    let mode = opts.fanout.unwrap_or_default();
    let cfg = PacketConfig {
        frame_size,
        rx_frames: 2 * nrx,
        tx_frames: ntx,
        qdisc_bypass: true,
        ignore_outgoing: true,
        block_timeout_ms: block_timeout_ms(opts.block_timeout.unwrap_or(DEFAULT_BLOCK_TIMEOUT)),
    };
    let mut queues = Vec::with_capacity(bound.len());
    for i in 0..bound.len() {
        let (tx, rx) = (mem.tx[i].clone(), mem.rx[i].clone());
        let base = i as u32 * per_queue;
        for k in 0..ntx {
            // SAFETY: the rings were just built and no user can reach them yet.
            unsafe { tx.set_buf_idx(k, base + k) };
        }
        for k in 0..nrx {
            // SAFETY: as above.
            unsafe { rx.set_buf_idx(k, base + ntx + k) };
        }
        let mut sock = PacketSocket::new(&iface.name, &cfg)?;
        if let Some(f) = &spec.filter {
            filter::attach(sock.fd(), f, &iface.name)?;
            // Frames that arrived between the bind and the filter are not the port's.
            while sock.rx_next()?.is_some() {}
        }
        if fanout {
            sock.join_fanout(group, mode)?;
        }
        queues.push(Queue {
            tx,
            rx,
            state: Mutex::new(State {
                sock,
                tx_hwcur: 0,
                tx_copied: 0,
                rx_hwcur: 0,
                rx_hwtail: 0,
                rx_truncated: 0,
                tp_packets: 0,
                tp_drops: 0,
                tp_freezes: 0,
            }),
        });
    }
    let (socks, max_frame, bypass, ignore) = {
        let guards: Vec<_> = queues.iter().map(|q| lock(&q.state)).collect();
        let fds: Vec<BorrowedFd<'_>> = guards.iter().map(|g| g.sock.fd()).collect();
        let s = &guards[0].sock;
        (
            SocketSet::new(&fds)?,
            s.max_frame().min(s.tx_room()),
            s.bypasses_qdisc(),
            s.ignores_outgoing(),
        )
    };
    tracing::info!(
        interface = %iface.name,
        rings = ?bound,
        fanout = ?fanout.then_some((mode, group)),
        qdisc_bypass = bypass,
        ignore_outgoing = ignore,
        frame_size,
        block_timeout_ms = cfg.block_timeout_ms,
        "AF_PACKET port open (RX on TPACKET_V3 blocks, or V2 frames at block timeout 0; one \
         copy per packet into slots, none read in place with for_each_frame)"
    );
    let port = Port {
        ifname: iface.name,
        max_frame,
        queues,
        socks,
    };
    Ok(Opened {
        slot_groups: Vec::new(),
        backend: Backend::AfPacket(port),
        pool: mem.buffers(),
        region: mem.region,
        if_off: 0,
        mem: mem.identity,
        extra_bufs: 0,
    })
}

impl Port {
    /// txsync of ring pair `i` (socket `i`).
    fn txsync_one(&self, i: usize) -> Result<(), Error> {
        let q = &self.queues[i];
        let ring = &q.tx;
        let n = ring.num_slots();
        let mut guard = lock(&q.state);
        let st = &mut *guard;
        let tail = prev(st.tx_copied, n);
        let head = ring.load_head();
        let cur = ring.load_cur();
        if !in_cyclic_range(st.tx_hwcur, head, tail, n) || !in_cyclic_range(head, cur, tail, n) {
            return Err(Error::RingState(format!(
                "afpacket:{} tx ring {i}: head {head} / cur {cur} outside [{}, {tail}]",
                self.ifname, st.tx_hwcur
            )));
        }
        st.tx_hwcur = head;
        let mut refused: Option<Error> = None;
        let mut queued = 0usize;
        // A packet over several slots (`NS_MOREFRAG`) is gathered into one frame; one the
        // user has not ended waits for its last slot (see `whole_packets_end`).
        // SAFETY: slots [copied, head) were released by the user; the lock is held.
        let end = unsafe { whole_packets_end(ring, st.tx_copied, head) };
        while st.tx_copied != end {
            let k = st.tx_copied;
            // SAFETY: as above (for every slot of the packet, all in [copied, end)).
            let (slots, total, ended) = unsafe { packet_extent(ring, k, end) };
            let after = advance(k, slots as u32, n);
            if !ended {
                refused.get_or_insert(Error::TooManyFragments {
                    slots,
                    max: slots - 1,
                });
                st.tx_copied = after;
                continue;
            }
            if total > self.max_frame {
                refused.get_or_insert(Error::FrameOverMtu {
                    len: total,
                    max: self.max_frame,
                });
                st.tx_copied = after;
                continue;
            }
            let mut slot = match st.sock.tx_slot() {
                Ok(Some(s)) => s,
                Ok(None) => break,
                // A frame the kernel refused earlier was reclaimed: report it, go on.
                Err(e) => {
                    refused.get_or_insert(e);
                    continue;
                }
            };
            let cap = slot.buf().len();
            if total > cap {
                refused.get_or_insert(Error::FrameOverMtu {
                    len: total,
                    max: cap.min(self.max_frame),
                });
                st.tx_copied = after;
                continue;
            }
            let mut at = 0usize;
            let mut bad = None;
            let mut j = k;
            while j != after {
                // SAFETY: as above.
                let copied = unsafe {
                    with_slot_data(ring, j, |data, _| {
                        // Fits: the slot lengths add up to `total` <= `cap`.
                        slot.buf()[at..at + data.len()].copy_from_slice(data);
                        data.len()
                    })
                };
                match copied {
                    Ok(l) => at += l,
                    Err(buf_idx) => {
                        bad.get_or_insert(Error::CorruptSlot {
                            ring: i,
                            slot: j,
                            buf_idx,
                            // SAFETY: as above.
                            len: unsafe { ring.slot_len_flags(j) }.0,
                        });
                    }
                }
                j = next(j, n);
            }
            match bad {
                None => {
                    slot.send(at)?;
                    queued += 1;
                }
                Some(e) => {
                    refused.get_or_insert(e);
                }
            }
            st.tx_copied = after;
        }
        if queued > 0 || st.tx_copied != head {
            st.sock.kick()?;
        }
        ring.store_tail(prev(st.tx_copied, n));
        if let Some(e) = &refused {
            tracing::warn!(interface = %self.ifname, error = %e, "AF_PACKET TX slot not sent");
        }
        refused.map_or(Ok(()), Err)
    }

    /// rxsync of ring pair `i` (socket `i`).
    fn rxsync_one(&self, i: usize) -> Result<(), Error> {
        let q = &self.queues[i];
        let ring = &q.rx;
        let n = ring.num_slots();
        let mut guard = lock(&q.state);
        let st = &mut *guard;
        let head = ring.load_head();
        let cur = ring.load_cur();
        let hwtail = st.rx_hwtail;
        if !in_cyclic_range(st.rx_hwcur, head, hwtail, n) || !in_cyclic_range(head, cur, hwtail, n)
        {
            return Err(Error::RingState(format!(
                "afpacket:{} rx ring {i}: head {head} / cur {cur} outside [{}, {hwtail}]",
                self.ifname, st.rx_hwcur
            )));
        }
        let mut k = st.rx_hwcur;
        while k != head {
            // SAFETY: released by the user (Acquire load of head); lock held.
            let (_, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & NS_BUF_CHANGED != 0 {
                // SAFETY: as above.
                unsafe { ring.set_len_flags(k, len, flags & !NS_BUF_CHANGED) };
            }
            k = next(k, n);
        }
        st.rx_hwcur = head;
        let mut room = n - 1 - distance(head, hwtail, n);
        let mut tail = hwtail;
        let mut first_err = None;
        let (ifname, truncated) = (&self.ifname, &mut st.rx_truncated);
        let buf_size = ring.buf_size() as usize;
        while room > 0 {
            let got = st.sock.rx_drain(room, |data, wire_len, stamp_ns| {
                if wire_len as usize > data.len() || data.len() > buf_size {
                    // Cut by the kernel: a frame is delivered whole or not at all.
                    dropped_cut(ifname, truncated, wire_len, data.len());
                    return true;
                }
                // SAFETY: slot `tail` lies in [hwtail, hwcur - 1): not shown to the user yet
                // (`room` counts what is left of that range); lock held.
                if unsafe { write_slot(ring, tail, data) }.is_err() {
                    // A buffer index outside the pool (only a raw write can put one there):
                    // the slot is delivered empty and the ring layer reports it as corrupt.
                    // SAFETY: as above.
                    unsafe { ring.set_len_flags(tail, 0, 0) };
                }
                // SAFETY: as above; published with the tail (Release) below.
                unsafe { ring.set_slot_stamp(tail, stamp_ns) };
                tail = next(tail, n);
                room -= 1;
                true
            });
            match got {
                Ok(0) => break,
                Ok(_) => {}
                // The frame or block was given back; carry on with the next.
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        st.rx_hwtail = tail;
        ring.store_tail(tail);
        first_err.map_or(Ok(()), Err)
    }

    /// The counters of socket `i`. `PACKET_STATISTICS` resets on read, so each read is
    /// added to the totals kept under the state lock.
    fn stats_one(&self, i: usize) -> Result<PortStats, Error> {
        let mut st = lock(&self.queues[i].state);
        let (now, freezes) = st.sock.statistics()?;
        st.tp_packets += u64::from(now.tp_packets);
        st.tp_drops += u64::from(now.tp_drops);
        st.tp_freezes += u64::from(freezes.unwrap_or(0));
        Ok(PortStats {
            rx_packets: Some(st.tp_packets),
            rx_ring_full: Some(st.tp_drops),
            rx_truncated: Some(st.rx_truncated),
            rx_freeze: freezes.map(|_| st.tp_freezes),
            ..PortStats::default()
        })
    }
}

/// Runs `f` on every ring pair; the first error after all have run.
fn each(n: usize, f: impl Fn(usize) -> Result<(), Error>) -> Result<(), Error> {
    let mut first = Ok(());
    for i in 0..n {
        let r = f(i);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

impl Driver for Port {
    fn txsync(&self) -> Result<(), Error> {
        each(self.queues.len(), |i| self.txsync_one(i))
    }

    fn rxsync(&self) -> Result<(), Error> {
        each(self.queues.len(), |i| self.rxsync_one(i))
    }

    /// One socket's counters (`Some(i)`: ring pair `i`), or their sum.
    fn stats(&self, ring: Option<usize>) -> Result<PortStats, Error> {
        match ring {
            Some(i) => self.stats_one(i),
            None => {
                let mut all = (0..self.queues.len()).map(|i| self.stats_one(i));
                let first = all.next().unwrap_or_else(|| Ok(PortStats::default()))?;
                all.try_fold(first, |acc, s| Ok(acc.merge(&s?)))
            }
        }
    }

    /// rxsync writes each frame's `tp_sec`/`tp_nsec` into its slot.
    fn slot_stamps(&self) -> bool {
        true
    }

    fn lends_in_place(&self) -> bool {
        true
    }

    fn rx_in_place<F: FnMut(&[u8], u64)>(
        &self,
        idx: usize,
        tail: u32,
        max: usize,
        timeout: Option<Duration>,
        f: F,
    ) -> Result<InPlace, Error> {
        self.rx_in_place_one(idx, tail, max, timeout, f)
    }

    fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        self.socks.ring_waker(dir, idx)
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

/// Counts and logs a received frame longer than a slot (the MTU was raised after the port was
/// opened), which rxsync drops rather than deliver cut. Out of line: the receive loop stays
/// small enough to inline.
#[cold]
#[inline(never)]
fn dropped_cut(ifname: &str, truncated: &mut u64, wire_len: u32, kept: usize) {
    *truncated += 1;
    tracing::warn!(
        interface = %ifname,
        len = wire_len,
        kept,
        dropped_so_far = *truncated,
        "AF_PACKET frame longer than a slot (the MTU was raised after the port was opened): \
         dropped, not delivered cut"
    );
}

impl Drop for Port {
    /// Sends what the user handed over and the kernel has not taken yet (a kick sends only
    /// what fits in the socket's budget), waiting at most [`FLUSH_AT_CLOSE`].
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_AT_CLOSE;
        for q in &mut self.queues {
            let st = q.state.get_mut().unwrap_or_else(|e| e.into_inner());
            while st.sock.tx_in_flight() > 0 && Instant::now() < deadline {
                if st.sock.kick().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

/// The TX packet starting at slot `k` within `[k, end)`: its slot count, total length, and
/// whether its last slot ends it (no `NS_MOREFRAG`; only a chain that fills the ring does
/// not). Clears `NS_BUF_CHANGED` on the way (the buffer is read at every sync anyway).
///
/// # Safety
/// The slots `[k, end)` are the driver's (released by the user, the lock held).
unsafe fn packet_extent(ring: &RawRing, k: u32, end: u32) -> (usize, usize, bool) {
    let n = ring.num_slots();
    let (mut j, mut slots, mut total) = (k, 0usize, 0usize);
    while j != end {
        // SAFETY: j lies in [k, end), the driver's per the caller's contract.
        let (_, len, flags) = unsafe { ring.slot_meta(j) };
        if flags & NS_BUF_CHANGED != 0 {
            // SAFETY: as above.
            unsafe { ring.set_len_flags(j, len, flags & !NS_BUF_CHANGED) };
        }
        slots += 1;
        total += usize::from(len);
        j = next(j, n);
        if flags & NS_MOREFRAG == 0 {
            return (slots, total, true);
        }
    }
    (slots, total, false)
}

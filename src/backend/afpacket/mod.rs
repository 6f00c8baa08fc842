//! The AF_PACKET driver: one netmap TX and one RX ring over a `TPACKET_V2` socket bound to
//! the whole interface ([`tpacket`]), each packet copied once between a
//! kernel frame and a slot's buffer.
//!
//! - rxsync: released slots need nothing (each slot keeps its buffer, swapped or not); then
//!   as many received frames as the ring has room for are copied into slots `[hwtail, ...)`
//!   and given back to the kernel.
//! - txsync: slots `[copied, head)` are copied into free kernel TX frames (marked
//!   `TP_STATUS_SEND_REQUEST`), the socket is kicked (`sendto(MSG_DONTWAIT)`), and the copied
//!   slots are the user's again at once. When the kernel ring is full the rest wait for the
//!   next sync. A slot longer than the interface takes, or with a buffer outside the pool, is
//!   not sent; the sync reports it ([`Error::FrameOverMtu`] / [`Error::CorruptSlot`]) after
//!   copying the others.
//!
//! The socket uses `PACKET_QDISC_BYPASS` and `PACKET_IGNORE_OUTGOING` (our own transmissions
//! never show up in our RX ring), both when the kernel has them.

use std::os::fd::BorrowedFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) mod tpacket;

use crate::abi::{NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NS_BUF_CHANGED};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::ringmem::{
    slots, with_slot_data, write_slot, MemPlan, RingMem, BUF_SIZE,
};
use crate::backend::linux::sockets::SocketSet;
use crate::backend::linux::sys::{TPACKET2_RX_DATA_OFFSET, TPACKET2_TX_DATA_OFFSET};
use crate::backend::linux::{extra_bufs_error, host_rings_error, FLUSH_AT_CLOSE};
use crate::backend::{Backend, Driver, OpenOptions, Opened, PortStats, Readiness, RingWaker};
use crate::error::Error;
use crate::port_name::{PortSpec, RingSelect};
use crate::ring::{distance, in_cyclic_range, next, prev, Dir, RawRing};
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
}

/// An open `afpacket:` port.
#[derive(Debug)]
pub(crate) struct Port {
    ifname: String,
    max_frame: usize,
    tx: RawRing,
    rx: RawRing,
    socks: SocketSet,
    state: Mutex<State>,
}

/// Opens `spec` on AF_PACKET.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    match spec.rings {
        RingSelect::AllNic => {}
        RingSelect::OneNic(q) => {
            return Err(Error::BindFail(format!(
                "{}-{q}: AF_PACKET sees every queue of an interface; open {} without -N, or \
                 use xdp:{}-{q} for one queue",
                spec.ifname, spec.ifname, spec.ifname
            )))
        }
        _ => return Err(host_rings_error(spec)),
    }
    if opts.extra_bufs != 0 {
        return Err(extra_bufs_error(spec));
    }
    let iface = Interface::lookup_up(&spec.ifname)?;
    // A frame longer than the RX frame's data area would be cut (`tp_snaplen < tp_len`).
    iface.check_rx_limit(BUF_SIZE as usize - TPACKET2_RX_DATA_OFFSET)?;
    let ntx = slots(opts.tx_slots, "tx")?;
    let nrx = slots(opts.rx_slots, "rx")?;
    let mem = RingMem::build(&MemPlan {
        name: &spec.ifname,
        queues: 1,
        bound: &[0],
        tx_slots: ntx,
        rx_slots: nrx,
        nbufs: ntx + nrx,
        buf_shift: 0,
        expose_tx: opts.flags & NR_RX_RINGS_ONLY == 0,
        expose_rx: opts.flags & NR_TX_RINGS_ONLY == 0,
        huge_pages: opts.huge_pages,
    })?;
    let (tx, rx) = (mem.tx[0].clone(), mem.rx[0].clone());
    for k in 0..ntx {
        // SAFETY: the rings were just built and no user can reach them yet.
        unsafe { tx.set_buf_idx(k, k) };
    }
    for k in 0..nrx {
        // SAFETY: as above.
        unsafe { rx.set_buf_idx(k, ntx + k) };
    }
    let sock = PacketSocket::new(
        &iface.name,
        &PacketConfig {
            frame_size: BUF_SIZE,
            rx_frames: 2 * nrx,
            tx_frames: ntx,
            qdisc_bypass: true,
            ignore_outgoing: true,
        },
    )?;
    let socks = SocketSet::new(&[sock.fd()])?;
    let max_frame = sock
        .max_frame()
        .min(BUF_SIZE as usize - TPACKET2_TX_DATA_OFFSET);
    tracing::info!(
        interface = %iface.name,
        qdisc_bypass = sock.bypasses_qdisc(),
        ignore_outgoing = sock.ignores_outgoing(),
        "AF_PACKET port open (TPACKET_V2, one copy per packet)"
    );
    let port = Port {
        ifname: iface.name,
        max_frame,
        tx,
        rx,
        socks,
        state: Mutex::new(State {
            sock,
            tx_hwcur: 0,
            tx_copied: 0,
            rx_hwcur: 0,
            rx_hwtail: 0,
            rx_truncated: 0,
            tp_packets: 0,
            tp_drops: 0,
        }),
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

impl Driver for Port {
    fn txsync(&self) -> Result<(), Error> {
        let ring = &self.tx;
        let n = ring.num_slots();
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let tail = prev(st.tx_copied, n);
        let head = ring.load_head();
        let cur = ring.load_cur();
        if !in_cyclic_range(st.tx_hwcur, head, tail, n) || !in_cyclic_range(head, cur, tail, n) {
            return Err(Error::RingState(format!(
                "afpacket:{} tx ring: head {head} / cur {cur} outside [{}, {tail}]",
                self.ifname, st.tx_hwcur
            )));
        }
        st.tx_hwcur = head;
        let mut refused: Option<Error> = None;
        let mut queued = 0usize;
        while st.tx_copied != head {
            let k = st.tx_copied;
            // SAFETY: slots [copied, head) were released by the user (Acquire
            // load of head) and stay the driver's until the tail passes them; lock held.
            let (_, len, flags) = unsafe { ring.slot_meta(k) };
            if flags & NS_BUF_CHANGED != 0 {
                // SAFETY: as above.
                unsafe { ring.set_len_flags(k, len, flags & !NS_BUF_CHANGED) };
            }
            if usize::from(len) > self.max_frame {
                refused.get_or_insert(Error::FrameOverMtu {
                    len: len.into(),
                    max: self.max_frame,
                });
                st.tx_copied = next(k, n);
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
            // SAFETY: as above.
            let copied = unsafe {
                with_slot_data(ring, k, |data, _| {
                    slot.buf()[..data.len()].copy_from_slice(data);
                    data.len()
                })
            };
            match copied {
                Ok(l) => {
                    slot.send(l)?;
                    queued += 1;
                }
                Err(buf_idx) => {
                    refused.get_or_insert(Error::CorruptSlot {
                        ring: 0,
                        slot: k,
                        buf_idx,
                        len,
                    });
                }
            }
            st.tx_copied = next(k, n);
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

    fn rxsync(&self) -> Result<(), Error> {
        let ring = &self.rx;
        let n = ring.num_slots();
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let head = ring.load_head();
        let cur = ring.load_cur();
        let hwtail = st.rx_hwtail;
        if !in_cyclic_range(st.rx_hwcur, head, hwtail, n) || !in_cyclic_range(head, cur, hwtail, n)
        {
            return Err(Error::RingState(format!(
                "afpacket:{} rx ring: head {head} / cur {cur} outside [{}, {hwtail}]",
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
        while room > 0 {
            let frame = match st.sock.rx_next() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            if frame.wire_len as usize > frame.len() {
                // Cut by the kernel: a frame is delivered whole or not at all.
                st.rx_truncated += 1;
                tracing::warn!(
                    interface = %self.ifname,
                    len = frame.wire_len,
                    kept = frame.len(),
                    dropped_so_far = st.rx_truncated,
                    "AF_PACKET frame longer than a slot (the MTU was raised after the port \
                     was opened): dropped, not delivered cut"
                );
                continue;
            }
            // SAFETY: slot `tail` lies in [hwtail, hwcur - 1): not shown to the user yet;
            // lock held.
            if unsafe { write_slot(ring, tail, &frame) }.is_err() {
                // A buffer index outside the pool (only a raw write can put one there): the
                // slot is delivered empty and the ring layer reports it as corrupt.
                // SAFETY: as above.
                unsafe { ring.set_len_flags(tail, 0, 0) };
            }
            drop(frame);
            tail = next(tail, n);
            room -= 1;
        }
        st.rx_hwtail = tail;
        ring.store_tail(tail);
        first_err.map_or(Ok(()), Err)
    }

    /// One ring: the port's counters whatever `ring` is. `PACKET_STATISTICS` resets on
    /// read, so each read is added to the totals kept under the state lock.
    fn stats(&self, _ring: Option<usize>) -> Result<PortStats, Error> {
        let mut st = lock(&self.state);
        let now = st.sock.statistics()?;
        st.tp_packets += u64::from(now.tp_packets);
        st.tp_drops += u64::from(now.tp_drops);
        Ok(PortStats {
            rx_packets: Some(st.tp_packets),
            rx_ring_full: Some(st.tp_drops),
            rx_truncated: Some(st.rx_truncated),
            ..PortStats::default()
        })
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

impl Drop for Port {
    /// Sends what the user handed over and the kernel has not taken yet (a kick sends only
    /// what fits in the socket's budget), waiting at most [`FLUSH_AT_CLOSE`].
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + FLUSH_AT_CLOSE;
        while st.sock.tx_in_flight() > 0 && Instant::now() < deadline {
            if st.sock.kick().is_err() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

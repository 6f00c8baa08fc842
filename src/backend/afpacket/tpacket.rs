//! AF_PACKET `PACKET_MMAP` rings, `TPACKET_V2` or `TPACKET_V3`: an RX ring and a TX ring in
//! one mapping, each frame (V3 RX: each block) owned by the kernel or the user according to
//! its status word (Acquire load before reading, Release store when handing it over).
//!
//! - RX, V2: a frame is ours while `tp_status & TP_STATUS_USER`; data at `tp_mac`,
//!   `tp_snaplen` bytes (both checked to stay inside the frame); [`RxFrame`] gives it back on
//!   drop. V3: whole blocks of packets ([`super::blocks`]), the block given back when the
//!   frame of its last packet is dropped.
//! - TX (V3 uses the same fixed-size frames with the `tpacket3_hdr` layout): a frame is free
//!   while `TP_STATUS_AVAILABLE`; write data after the header, set `tp_len`, store
//!   `TP_STATUS_SEND_REQUEST`;
//!   [`PacketSocket::kick`] makes the kernel send. `TP_STATUS_WRONG_FORMAT` (a frame the kernel
//!   refused) is reported as an error and the frame reclaimed.

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::backend::linux::iface::Interface;
use crate::backend::linux::os;
use crate::backend::linux::sys;
use crate::backend::linux::{os_error, CAPS_RAW};
use crate::backend::FanoutMode;
use crate::error::Error;
use crate::region::Region;

use super::blocks::Blocks;

/// Ring geometry and options for [`PacketSocket::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketConfig {
    /// Frame size (a power of two ≥ 2048 fits a 1500-byte MTU frame plus headers).
    pub frame_size: u32,
    /// RX frames: V2's frame count (rounded up to whole blocks), V3's memory (that of these
    /// frames, in `blocks::rx_blocks` blocks).
    pub rx_frames: u32,
    /// TX frames (rounded up to whole blocks).
    pub tx_frames: u32,
    /// Send straight to the driver, skipping the qdisc layer (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// Keep our own (and other local) outgoing packets out of the RX ring
    /// (`PACKET_IGNORE_OUTGOING`, 4.20+; skipped where unsupported).
    pub ignore_outgoing: bool,
    /// `TPACKET_V3` with this block retire timeout in milliseconds (RX in blocks); 0:
    /// `TPACKET_V2` (one frame per packet).
    pub block_timeout_ms: u32,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            frame_size: 2048,
            rx_frames: 1024,
            tx_frames: 1024,
            qdisc_bypass: true,
            ignore_outgoing: true,
            block_timeout_ms: 0,
        }
    }
}

/// Where the TX header fields and the data lie in a frame of each version.
#[derive(Debug, Clone, Copy)]
struct TxLayout {
    status: usize,
    snaplen: usize,
    len: usize,
    data: usize,
}

const TX_V2: TxLayout = TxLayout {
    status: 0,
    snaplen: 8,
    len: 4,
    data: sys::TPACKET2_TX_DATA_OFFSET,
};

const TX_V3: TxLayout = TxLayout {
    status: 20,
    snaplen: 12,
    len: 16,
    data: sys::TPACKET3_TX_DATA_OFFSET,
};

#[derive(Debug, Clone, Copy)]
struct Ring {
    offset: usize,
    frames: u32,
    head: u32,
}

impl Ring {
    /// The header of frame `i` (16-aligned, `frame_size` bytes inside `map`).
    fn frame(&self, map: &Region, frame_size: usize, i: u32) -> NonNull<u8> {
        map.at(self.offset + i as usize * frame_size, frame_size, 16)
            .expect("frame inside the ring mapping by construction")
    }
}

/// The walk over the RX ring: where the next received frame (V2) or block (V3) is. It can
/// be taken out of the socket ([`PacketSocket::lend_rx`]) so that a reader in place walks it
/// without holding the queue's lock (`in_place.rs`).
#[derive(Debug)]
pub(crate) struct RxWalk {
    map: Arc<Region>,
    rx: Ring,
    /// V3: the RX ring's blocks (`rx` is then unused but for its offset).
    blocks: Option<Blocks>,
    frame_size: usize,
}

/// A `TPACKET_V2` or `TPACKET_V3` AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    /// `None` while a reader in place has it.
    walk: Option<RxWalk>,
    tx: Ring,
    tx_layout: TxLayout,
    frame_size: usize,
    max_frame: usize,
    ifname: String,
    ignore_outgoing: bool,
    qdisc_bypass: bool,
    map: Arc<Region>,
    // Last: unmapped before closed (the walk's share of the mapping is back by then: it is
    // lent only during a call that borrows the port).
    fd: OwnedFd,
}

/// A received frame, on loan from the RX ring; returned to the kernel on drop.
#[derive(Debug)]
pub(crate) struct RxFrame<'a> {
    pub(super) data: &'a [u8],
    /// The status word that gives the frame (V3: the block, with its last packet) back.
    pub(super) release: Option<&'a AtomicU32>,
    /// Length on the wire (larger than the data when the frame was truncated).
    pub wire_len: u32,
    /// The kernel's receive timestamp in nanoseconds since the Unix epoch (0: none).
    pub stamp_ns: u64,
}

impl Deref for RxFrame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.data
    }
}

impl Drop for RxFrame<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.release {
            s.store(sys::TP_STATUS_KERNEL, Ordering::Release);
        }
    }
}

/// A free TX frame, on loan until [`send`](TxSlot::send) queues it (dropping it unsent leaves
/// it free).
#[derive(Debug)]
pub(crate) struct TxSlot<'a> {
    buf: &'a mut [u8],
    hdr: NonNull<u8>,
    layout: TxLayout,
    head: &'a mut u32,
    frames: u32,
    max_frame: usize,
}

impl TxSlot<'_> {
    /// The frame's data area (the whole capacity; send a prefix of it).
    pub(crate) fn buf(&mut self) -> &mut [u8] {
        self.buf
    }

    /// Queues the first `len` bytes for sending (sent at the next [`PacketSocket::kick`]).
    pub(crate) fn send(self, len: usize) -> Result<(), Error> {
        let max = self.max_frame.min(self.buf.len());
        if len > max {
            return Err(Error::FrameOverMtu { len, max });
        }
        let (hdr, l) = (self.hdr.as_ptr(), self.layout);
        // SAFETY: hdr points at this frame's 16-aligned header inside the mapping, the fields
        // are 4-aligned u32s of it; the frame is ours (TP_STATUS_AVAILABLE) until the status
        // store below.
        unsafe {
            hdr.add(l.len).cast::<u32>().write(len as u32);
            hdr.add(l.snaplen).cast::<u32>().write(len as u32);
        }
        word_at(self.hdr, l.status).store(sys::TP_STATUS_SEND_REQUEST, Ordering::Release);
        *self.head = (*self.head + 1) % self.frames;
        Ok(())
    }
}

/// The status word at `off` bytes into a frame or block header.
pub(super) fn word_at<'a>(hdr: NonNull<u8>, off: usize) -> &'a AtomicU32 {
    // SAFETY: callers pass the offset of a 4-aligned u32 status field of a header inside a
    // live mapping (they tie 'a to the borrow of the socket that owns it); the kernel
    // accesses it atomically.
    unsafe { &*(hdr.as_ptr().add(off) as *const AtomicU32) }
}

impl RxWalk {
    /// Hands up to `max` received frames to `f` (bytes, length on the wire, receive time in
    /// ns), each given back after its call, until `f` returns `false` (after that frame);
    /// returns how many `f` got. On V3 blocks this is the block walk's own loop
    /// ([`Blocks::drain`]). Stops at the first frame whose header is bad (given back unread,
    /// the error returned).
    #[inline]
    pub(crate) fn drain(
        &mut self,
        max: u32,
        mut f: impl FnMut(&[u8], u32, u64) -> bool,
    ) -> Result<u32, Error> {
        if let Some(b) = &mut self.blocks {
            return b.drain(&self.map, self.rx.offset, max, f);
        }
        let mut done = 0;
        while done < max {
            let Some(frame) = self.next()? else {
                break;
            };
            done += 1;
            if !f(&frame, frame.wire_len, frame.stamp_ns) {
                break;
            }
        }
        Ok(done)
    }

    /// The next received frame, if the kernel has handed one over.
    pub(crate) fn next(&mut self) -> Result<Option<RxFrame<'_>>, Error> {
        if let Some(b) = &mut self.blocks {
            return b.next(&self.map, self.rx.offset);
        }
        let hdr = self.rx.frame(&self.map, self.frame_size, self.rx.head);
        let status = word_at(hdr, 0);
        let st = status.load(Ordering::Acquire);
        if st & sys::TP_STATUS_USER == 0 {
            return Ok(None);
        }
        self.rx.head = (self.rx.head + 1) % self.rx.frames;
        // SAFETY: the frame is ours (TP_STATUS_USER, acquired above); the header is in bounds
        // and 16-aligned.
        let h = unsafe { hdr.cast::<libc::tpacket2_hdr>().as_ptr().read() };
        let (mac, snap) = (h.tp_mac as usize, h.tp_snaplen as usize);
        // The sum in u64: it could wrap in a 32-bit usize.
        if mac < std::mem::size_of::<libc::tpacket2_hdr>()
            || mac as u64 + snap as u64 > self.frame_size as u64
        {
            status.store(sys::TP_STATUS_KERNEL, Ordering::Release);
            return Err(Error::BadLayout(format!(
                "AF_PACKET RX frame: data at {mac} of {snap} bytes leaves the {}-byte frame; \
                 the frame was given back unread",
                self.frame_size
            )));
        }
        // SAFETY: [mac, mac + snap) lies inside this frame (checked); the kernel does not write
        // the frame until we store TP_STATUS_KERNEL, which RxFrame does on drop, and RxFrame
        // borrows self mutably so the mapping outlives it.
        let data = unsafe { std::slice::from_raw_parts(hdr.as_ptr().cast::<u8>().add(mac), snap) };
        Ok(Some(RxFrame {
            data,
            release: Some(status),
            wire_len: h.tp_len,
            stamp_ns: u64::from(h.tp_sec) * 1_000_000_000 + u64::from(h.tp_nsec),
        }))
    }
}

impl PacketSocket {
    /// Opens a `TPACKET_V2` socket (`TPACKET_V3` with a block timeout) with RX and TX rings
    /// bound to `ifname`. Errors: no such interface / down, [`Error::MissingPrivilege`]
    /// without `CAP_NET_RAW`.
    pub(crate) fn new(ifname: &str, cfg: &PacketConfig) -> Result<PacketSocket, Error> {
        let iface = Interface::lookup_up(ifname)?;
        let fs = cfg.frame_size as usize;
        if !cfg.frame_size.is_power_of_two() || fs < 256 || cfg.rx_frames == 0 || cfg.tx_frames == 0
        {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_PACKET frame size {fs} must be a power of two ≥ 256, ring sizes > 0"),
            )));
        }
        // Protocol 0: receive nothing until bound with ETH_P_ALL after the rings exist.
        let fd =
            os::socket(libc::AF_PACKET, libc::SOCK_RAW, 0).map_err(|e| match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => Error::KernelUnsupported(
                    "AF_PACKET sockets (EAFNOSUPPORT): kernel built without CONFIG_PACKET".into(),
                ),
                _ => os_error(e, "opening an AF_PACKET socket", CAPS_RAW, ifname),
            })?;
        let opt = |name, v: libc::c_int, what: &str| {
            os::setsockopt(fd.as_fd(), sys::SOL_PACKET, name, &v)
                .map_err(|e| os_error(e, what, CAPS_RAW, ifname))
        };
        let v3 = cfg.block_timeout_ms > 0;
        if v3 {
            opt(sys::PACKET_VERSION, sys::TPACKET_V3, "selecting TPACKET_V3")?;
        } else {
            opt(sys::PACKET_VERSION, sys::TPACKET_V2, "selecting TPACKET_V2")?;
        }
        // Frames are contiguous: a block is max(page, frame) bytes, a whole number of frames.
        let block = fs.max(os::page_size());
        let req = |frames: u32, block: usize, tov: u32| {
            let per_block = (block / fs) as u32;
            let blocks = frames.div_ceil(per_block);
            libc::tpacket_req3 {
                tp_block_size: block as u32,
                tp_block_nr: blocks,
                tp_frame_size: fs as u32,
                tp_frame_nr: blocks * per_block,
                tp_retire_blk_tov: tov,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            }
        };
        // V3 RX: the memory of V2's frames in `rx_blocks(timeout)` blocks, each at least 64 KiB
        // and one largest frame.
        let (rx_block, rx_frames) = if v3 {
            use super::blocks::{rx_blocks, MIN_BLOCK};
            let n = rx_blocks(cfg.block_timeout_ms);
            let share = (cfg.rx_frames as usize * fs / n).next_multiple_of(os::page_size());
            (share.max(fs).max(MIN_BLOCK), cfg.rx_frames)
        } else {
            (block, cfg.rx_frames)
        };
        let rxq = req(rx_frames, rx_block, cfg.block_timeout_ms);
        let txq = req(cfg.tx_frames, block, 0);
        let set_ring = |name, r: &libc::tpacket_req3, what: &str| {
            let r = if v3 {
                os::setsockopt(fd.as_fd(), sys::SOL_PACKET, name, r)
            } else {
                let v2 = libc::tpacket_req {
                    tp_block_size: r.tp_block_size,
                    tp_block_nr: r.tp_block_nr,
                    tp_frame_size: r.tp_frame_size,
                    tp_frame_nr: r.tp_frame_nr,
                };
                os::setsockopt(fd.as_fd(), sys::SOL_PACKET, name, &v2)
            };
            r.map_err(|e| os_error(e, what, CAPS_RAW, ifname))
        };
        set_ring(sys::PACKET_RX_RING, &rxq, "setting up the PACKET_RX_RING")?;
        set_ring(sys::PACKET_TX_RING, &txq, "setting up the PACKET_TX_RING")?;
        let qdisc_bypass = cfg.qdisc_bypass && opt(sys::PACKET_QDISC_BYPASS, 1, "").is_ok();
        let ignore_outgoing =
            cfg.ignore_outgoing && opt(sys::PACKET_IGNORE_OUTGOING, 1, "").is_ok();
        // Room in the socket's send budget for the whole TX ring in flight (each frame is an
        // skb charged to the socket until the device frees it). With the default budget a
        // kick stops after a few hundred frames and the sender idles until the budget drains
        // (500,000 frames on veth: 0.24 s idle of 1.6 s; 0.08 s with this). trafgen gets the
        // same by raising net.core.wmem_default while it runs. Privileged first (above
        // wmem_max), else as far as allowed.
        let sndbuf = (txq.tp_frame_nr as usize * 2 * (fs + 512)).min(i32::MAX as usize) as i32;
        let _ = os::setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &sndbuf)
            .or_else(|_| os::setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf));
        let rx_bytes = rxq.tp_block_nr as usize * rx_block;
        let tx_bytes = txq.tp_block_nr as usize * block;
        let map = Region::map_fd(fd.as_fd(), rx_bytes + tx_bytes, 0, true)
            .map_err(|e| os_error(e, "mapping the AF_PACKET rings", CAPS_RAW, ifname))?;
        let sll = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
            sll_ifindex: iface.index as i32,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        os::bind(fd.as_fd(), &sll).map_err(|e| {
            os_error(
                e,
                &format!("binding the AF_PACKET socket to {ifname}"),
                CAPS_RAW,
                ifname,
            )
        })?;
        tracing::debug!(
            interface = ifname,
            qdisc_bypass,
            ignore_outgoing,
            "AF_PACKET socket bound"
        );
        let map = Arc::new(map);
        Ok(PacketSocket {
            walk: Some(RxWalk {
                map: map.clone(),
                rx: Ring {
                    offset: 0,
                    frames: rxq.tp_frame_nr,
                    head: 0,
                },
                blocks: v3.then(|| Blocks::new(rx_block, rxq.tp_block_nr)),
                frame_size: fs,
            }),
            tx_layout: if v3 { TX_V3 } else { TX_V2 },
            tx: Ring {
                offset: rx_bytes,
                frames: txq.tp_frame_nr,
                head: 0,
            },
            frame_size: fs,
            max_frame: iface.max_frame(),
            ifname: iface.name,
            ignore_outgoing,
            qdisc_bypass,
            map,
            fd,
        })
    }

    fn hdr(&self, ring: &Ring, i: u32) -> NonNull<u8> {
        ring.frame(&self.map, self.frame_size, i)
    }

    /// Hands up to `max` received frames to `f` (see [`RxWalk::drain`]); none while the
    /// walk is lent to a reader in place, which reads them.
    #[inline]
    pub(crate) fn rx_drain(
        &mut self,
        max: u32,
        f: impl FnMut(&[u8], u32, u64) -> bool,
    ) -> Result<u32, Error> {
        self.walk.as_mut().map_or(Ok(0), |w| w.drain(max, f))
    }

    /// The next received frame (see [`RxWalk::next`]); none while the walk is lent.
    pub(crate) fn rx_next(&mut self) -> Result<Option<RxFrame<'_>>, Error> {
        self.walk.as_mut().map_or(Ok(None), |w| w.next())
    }

    /// Takes the RX walk out, for a reader in place (`None`: already out).
    pub(crate) fn lend_rx(&mut self) -> Option<RxWalk> {
        self.walk.take()
    }

    /// Puts back the walk [`lend_rx`](Self::lend_rx) took.
    pub(crate) fn return_rx(&mut self, walk: RxWalk) {
        self.walk = Some(walk);
    }

    /// The next free TX frame, `None` when the ring is full (kick and wait for `POLLOUT`).
    /// A frame the kernel refused (`TP_STATUS_WRONG_FORMAT`) is reclaimed and reported.
    pub(crate) fn tx_slot(&mut self) -> Result<Option<TxSlot<'_>>, Error> {
        let hdr = self.hdr(&self.tx, self.tx.head);
        let status = word_at(hdr, self.tx_layout.status);
        match status.load(Ordering::Acquire) {
            sys::TP_STATUS_AVAILABLE => {}
            sys::TP_STATUS_WRONG_FORMAT => {
                status.store(sys::TP_STATUS_AVAILABLE, Ordering::Release);
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the kernel refused AF_PACKET TX frame {} on {} (TP_STATUS_WRONG_FORMAT: \
                         bad length or header); the frame was dropped",
                        self.tx.head, self.ifname
                    ),
                )));
            }
            _ => return Ok(None),
        }
        let off = self.tx_layout.data;
        let cap = self.frame_size - off;
        // SAFETY: [off, frame_size) of this frame is inside the mapping; the frame is ours
        // (AVAILABLE) and stays so until TxSlot::send publishes it; TxSlot borrows self
        // mutably, so no second slot aliases it and the mapping outlives it.
        let buf =
            unsafe { std::slice::from_raw_parts_mut(hdr.as_ptr().cast::<u8>().add(off), cap) };
        Ok(Some(TxSlot {
            buf,
            hdr,
            layout: self.tx_layout,
            head: &mut self.tx.head,
            frames: self.tx.frames,
            max_frame: self.max_frame,
        }))
    }

    /// Copies `frame` into the next free TX frame and queues it; `Ok(false)` when full.
    #[cfg(test)]
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<bool, Error> {
        if frame.len() > self.max_frame {
            return Err(Error::FrameOverMtu {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        match self.tx_slot()? {
            None => Ok(false),
            Some(mut s) => {
                s.buf()[..frame.len()].copy_from_slice(frame);
                s.send(frame.len())?;
                Ok(true)
            }
        }
    }

    /// Joins fanout group `group` in `mode` (`PACKET_FANOUT`, after the bind): the kernel
    /// then spreads the interface's received packets over the group's sockets.
    pub(crate) fn join_fanout(&self, group: u16, mode: FanoutMode) -> Result<(), Error> {
        let v = (u32::from(group) | (mode.kernel_value() << 16)) as libc::c_int;
        os::setsockopt(self.fd.as_fd(), sys::SOL_PACKET, sys::PACKET_FANOUT, &v).map_err(
            |e| match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EALREADY) | Some(libc::ENOSPC) => {
                    Error::BindFail(format!(
                        "joining AF_PACKET fanout group {group} ({mode:?}) on {}: {e}; the \
                         group is full, or another socket uses it with another mode (an id \
                         collision with another process: reopen the port for a new id), or \
                         the kernel lacks this mode (use FanoutMode::Hash)",
                        self.ifname
                    ))
                }
                _ => os_error(
                    e,
                    "joining the AF_PACKET fanout group",
                    CAPS_RAW,
                    &self.ifname,
                ),
            },
        )
    }

    /// Asks the kernel to send every queued TX frame (`sendto(fd, NULL, 0, MSG_DONTWAIT)`).
    pub(crate) fn kick(&self) -> Result<(), Error> {
        match os::kick(self.fd.as_fd()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS)) => {
                Ok(())
            }
            Err(e) => Err(os_error(
                e,
                "AF_PACKET TX kick (sendto)",
                CAPS_RAW,
                &self.ifname,
            )),
        }
    }

    /// TX frames queued or being sent (not yet back to `TP_STATUS_AVAILABLE`).
    pub(crate) fn tx_in_flight(&self) -> u32 {
        (0..self.tx.frames)
            .filter(|&i| {
                word_at(self.hdr(&self.tx, i), self.tx_layout.status).load(Ordering::Acquire)
                    != sys::TP_STATUS_AVAILABLE
            })
            .count() as u32
    }

    /// Packets seen and dropped for lack of RX ring room since the last call (the kernel
    /// resets the counters on read), and on `TPACKET_V3` the queue freezes (`None` on V2).
    pub(crate) fn statistics(&self) -> Result<(sys::TpacketStats, Option<u32>), Error> {
        os::getsockopt::<sys::TpacketStats>(
            self.fd.as_fd(),
            sys::SOL_PACKET,
            sys::PACKET_STATISTICS,
        )
        .map(|(s, len)| {
            let v3 = len >= std::mem::size_of::<sys::TpacketStats>();
            (s, v3.then_some(s.tp_freeze_q_cnt))
        })
        .map_err(|e| os_error(e, "reading PACKET_STATISTICS", CAPS_RAW, &self.ifname))
    }

    /// The socket's pending error (`SO_ERROR`, which reading clears), as the crate's error:
    /// what a `POLLERR` reports (`ENETDOWN` when the interface went down).
    pub(crate) fn take_error(&self, what: &str) -> Error {
        match os::getsockopt::<libc::c_int>(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR) {
            Ok((e, _)) if e != 0 => {
                os_error(io::Error::from_raw_os_error(e), what, CAPS_RAW, &self.ifname)
            }
            Ok(_) => Error::Io(io::Error::other(format!(
                "{what}: the AF_PACKET socket on {} reported an error or hang-up with no error                  code; reopen the port",
                self.ifname
            ))),
            Err(e) => os_error(e, what, CAPS_RAW, &self.ifname),
        }
    }

    /// The socket descriptor (`POLLIN` with a received frame, `POLLOUT` with a free TX frame).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether `PACKET_IGNORE_OUTGOING` is in effect.
    pub(crate) fn ignores_outgoing(&self) -> bool {
        self.ignore_outgoing
    }

    /// Whether `PACKET_QDISC_BYPASS` is in effect.
    pub(crate) fn bypasses_qdisc(&self) -> bool {
        self.qdisc_bypass
    }

    /// Room for data in a TX frame (the frame less its header).
    pub(crate) fn tx_room(&self) -> usize {
        self.frame_size - self.tx_layout.data
    }

    /// Longest frame accepted for sending.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }
}

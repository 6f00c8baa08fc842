//! The AF_XDP socket: its four rings, binding to a queue (first on a [`Umem`], or sharing
//! one with `XDP_SHARED_UMEM`), kicks and statistics. Every socket has its own fill and
//! completion rings.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

pub(crate) use super::umem::Umem;
use super::umem::{invalid, umem_reg};
use super::xsk_ring::{XskCompRing, XskFillRing, XskRxRing, XskTxRing};
use crate::backend::linux::iface::Interface;
use crate::backend::linux::os;
use crate::backend::linux::sys;
use crate::backend::linux::{os_error, CAPS_RAW};
use crate::error::Error;

/// Which copy mode to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum XskModeRequest {
    /// Zero copy first, copy mode when the driver has none. The default.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero copy or fail.
    ZeroCopy,
}

/// The mode a socket was bound in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XskBindMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between skbs and the UMEM.
    Copy,
}

/// Ring sizes (powers of two) and mode for [`XskSocket::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct XskConfig {
    /// Fill ring entries.
    pub fill_size: u32,
    /// Completion ring entries.
    pub comp_size: u32,
    /// RX ring entries.
    pub rx_size: u32,
    /// TX ring entries.
    pub tx_size: u32,
    /// Copy or zero copy.
    pub mode: XskModeRequest,
    /// Bind with `XDP_USE_NEED_WAKEUP` (falls back to without on kernels before 5.4).
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            fill_size: 2048,
            comp_size: 2048,
            rx_size: 2048,
            tx_size: 2048,
            mode: XskModeRequest::Auto,
            need_wakeup: true,
        }
    }
}

/// An AF_XDP socket bound to one queue of an interface, with its four rings.
#[derive(Debug)]
pub(crate) struct XskSocket {
    /// Fill ring (free frames → kernel).
    pub fill: XskFillRing,
    /// Completion ring (sent frames → user).
    pub comp: XskCompRing,
    /// RX ring (received descriptors → user).
    pub rx: XskRxRing,
    /// TX ring (descriptors to send → kernel).
    pub tx: XskTxRing,
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests
    shared: bool,
    // Last, so the rings are unmapped before the socket closes.
    link: Link,
}

/// What both halves of a socket need to wake the kernel: the descriptor (shared by the
/// halves of a [split](XskSocket::split) socket; it closes with the last), the mode, and the
/// UMEM (held while the socket is bound: it keeps the UMEM's memory alive).
#[derive(Debug, Clone)]
struct Link {
    fd: Arc<OwnedFd>,
    ifname: String,
    mode: XskBindMode,
    need_wakeup: bool,
    #[cfg_attr(not(test), allow(dead_code))] // held; read by the tests
    umem: Umem,
    /// Bound with `XDP_USE_SG`: packets may span descriptors (`XDP_PKT_CONTD`). A socket
    /// sharing another's UMEM is counted without (it cannot ask; chains are then not sent).
    sg: bool,
}

impl Link {
    /// Asks the kernel to send what is on the TX ring, when it needs asking (always in copy
    /// mode). In copy mode the kernel sends a bounded batch per call and answers EAGAIN while
    /// more is queued, so this repeats until the TX ring is empty or the device is busy
    /// (ENOBUFS/EBUSY: kick again after reaping completions). Busy is not an error; the
    /// result says whether frames are left on the TX ring that the kernel did not take
    /// (nothing may then complete, and nothing wake a waiter: kick again later).
    fn kick_tx(&self, tx: &mut XskTxRing) -> Result<bool, Error> {
        if self.mode == XskBindMode::ZeroCopy && self.need_wakeup && !tx.needs_wakeup() {
            return Ok(false);
        }
        #[cfg(test)]
        if busy_hook::take(&self.ifname) {
            return Ok(tx.pending()? > 0);
        }
        // At least one call; at most enough 32-frame batches to drain a full ring, plus one.
        let rounds = tx.pending()? / 32 + 2;
        for _ in 0..rounds {
            match os::kick(self.fd.as_fd()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOBUFS)) => {
                    return Ok(tx.pending()? > 0)
                }
                Err(e) => {
                    return Err(os_error(
                        e,
                        "AF_XDP TX kick (sendto)",
                        CAPS_RAW,
                        &self.ifname,
                    ))
                }
            }
            if tx.pending()? == 0 {
                return Ok(false);
            }
        }
        Ok(tx.pending()? > 0)
    }

    /// Wakes the kernel's RX processing when the fill ring asks for it.
    fn wake_rx(&self, fill: &XskFillRing) -> Result<(), Error> {
        if self.need_wakeup && !fill.needs_wakeup() {
            return Ok(());
        }
        match os::wake_rx(self.fd.as_fd()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => Ok(()),
            Err(e) => Err(os_error(
                e,
                "AF_XDP RX wakeup (recvfrom)",
                CAPS_RAW,
                &self.ifname,
            )),
        }
    }
}

/// Reads a socket's `XDP_STATISTICS` without taking either half's lock: the descriptor is
/// shared with the halves (a statistics read never holds up a sync).
#[derive(Debug, Clone)]
pub(crate) struct XskCounters {
    fd: Arc<OwnedFd>,
    ifname: String,
}

impl XskCounters {
    /// The counters and how many bytes of them the kernel filled (24 before Linux 5.9: the
    /// first three fields only).
    pub(crate) fn read(&self) -> Result<(libc::xdp_statistics, usize), Error> {
        os::getsockopt::<libc::xdp_statistics>(self.fd.as_fd(), sys::SOL_XDP, sys::XDP_STATISTICS)
            .map_err(|e| os_error(e, "reading AF_XDP statistics", CAPS_RAW, &self.ifname))
    }
}

/// The sending half of a [split](XskSocket::split) socket: TX and completion rings.
#[derive(Debug)]
pub(crate) struct XskTx {
    /// TX ring (descriptors to send → kernel).
    pub tx: XskTxRing,
    /// Completion ring (sent frames → user).
    pub comp: XskCompRing,
    link: Link,
}

/// The receiving half of a [split](XskSocket::split) socket: RX and fill rings.
#[derive(Debug)]
pub(crate) struct XskRx {
    /// RX ring (received descriptors → user).
    pub rx: XskRxRing,
    /// Fill ring (free frames → kernel).
    pub fill: XskFillRing,
    link: Link,
}

impl XskTx {
    /// See [`XskSocket::kick_tx`]; `true`: frames are left that the kernel did not take.
    pub(crate) fn kick_tx(&mut self) -> Result<bool, Error> {
        self.link.kick_tx(&mut self.tx)
    }

    /// The socket descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.link.fd.as_fd()
    }

    /// Zero copy or copy.
    pub(crate) fn mode(&self) -> XskBindMode {
        self.link.mode
    }

    /// Whether the socket takes packets over several descriptors (`XDP_USE_SG`).
    pub(crate) fn multi_buffer(&self) -> bool {
        self.link.sg
    }
}

impl XskRx {
    /// See [`XskSocket::wake_rx`].
    pub(crate) fn wake_rx(&self) -> Result<(), Error> {
        self.link.wake_rx(&self.fill)
    }
}

fn set_ring(fd: BorrowedFd<'_>, opt: libc::c_int, size: u32, what: &str) -> Result<(), Error> {
    if !size.is_power_of_two() {
        return Err(invalid(format!(
            "{what} ring size {size} must be a power of two"
        )));
    }
    os::setsockopt(fd, sys::SOL_XDP, opt, &size)
        .map_err(|e| os_error(e, &format!("sizing the AF_XDP {what} ring"), CAPS_RAW, ""))
}

impl XskSocket {
    /// Opens an AF_XDP socket on queue `queue` of interface `ifname` over `umem`, bound in
    /// zero-copy mode when possible, else copy mode (see [`mode`](Self::mode)). The caller
    /// still has to put the socket into the interface's XSKMAP
    /// ([`XdpProgram::register`](super::prog::XdpProgram::register)) to receive, and to
    /// put frames on the fill ring.
    pub(crate) fn new(
        ifname: &str,
        queue: u32,
        umem: &Umem,
        cfg: &XskConfig,
    ) -> Result<XskSocket, Error> {
        let iface = Interface::lookup_up(ifname)?;
        iface.check_queue(queue)?;
        let fd =
            os::socket(sys::AF_XDP, libc::SOCK_RAW, 0).map_err(|e| match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => Error::KernelUnsupported(format!(
                "AF_XDP sockets (EAFNOSUPPORT): the kernel is older than 4.18 or built without \
                 CONFIG_XDP_SOCKETS; use the AF_PACKET backend (afpacket:{ifname}) instead"
            )),
                _ => os_error(e, "opening an AF_XDP socket", CAPS_RAW, ifname),
            })?;
        let fd = Arc::new(fd);

        // Share the UMEM with a socket bound on it while one is open.
        let mut owner = umem.sockets();
        let shared = owner.share_fd(iface.index, queue).map_err(|()| {
            Error::PortBusy(format!(
                "queue {queue} of {ifname} already has an AF_XDP socket on this UMEM"
            ))
        })?;
        if shared.is_none() {
            umem_reg(fd.as_fd(), umem)?;
        }
        set_ring(fd.as_fd(), sys::XDP_UMEM_FILL_RING, cfg.fill_size, "fill")?;
        set_ring(
            fd.as_fd(),
            sys::XDP_UMEM_COMPLETION_RING,
            cfg.comp_size,
            "completion",
        )?;
        set_ring(fd.as_fd(), sys::XDP_RX_RING, cfg.rx_size, "RX")?;
        set_ring(fd.as_fd(), sys::XDP_TX_RING, cfg.tx_size, "TX")?;
        let (off, off_len) = os::getsockopt::<libc::xdp_mmap_offsets>(
            fd.as_fd(),
            sys::SOL_XDP,
            sys::XDP_MMAP_OFFSETS,
        )
        .map_err(|e| os_error(e, "reading AF_XDP ring offsets", CAPS_RAW, ""))?;
        if off_len < std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(Error::KernelUnsupported(format!(
                "AF_XDP ring flags (kernel 5.4+); this kernel has none; use afpacket:{ifname}"
            )));
        }
        let g = umem.geometry();
        let map_err = |what: &str| {
            let what = what.to_string();
            move |e: io::Error| {
                os_error(e, &format!("mapping the AF_XDP {what} ring"), CAPS_RAW, "")
            }
        };
        let fill = XskFillRing::map(fd.as_fd(), &off, cfg.fill_size, g).map_err(map_err("fill"))?;
        let comp =
            XskCompRing::map(fd.as_fd(), &off, cfg.comp_size, g).map_err(map_err("completion"))?;
        let rx = XskRxRing::map(fd.as_fd(), &off, cfg.rx_size, g).map_err(map_err("RX"))?;
        let tx = XskTxRing::map(fd.as_fd(), &off, cfg.tx_size, g, iface.max_frame())
            .map_err(map_err("TX"))?;

        let mut addr = libc::sockaddr_xdp {
            sxdp_family: sys::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: iface.index,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        let nw = if cfg.need_wakeup {
            sys::XDP_USE_NEED_WAKEUP
        } else {
            0
        };
        let attempts: Vec<u16> = if let Some(f) = &shared {
            // Shared sockets take the mode of the registering socket; no mode flags allowed.
            addr.sxdp_shared_umem_fd = std::os::fd::AsRawFd::as_raw_fd(&**f) as u32;
            vec![sys::XDP_SHARED_UMEM]
        } else {
            let mut v = Vec::new();
            if cfg.mode != XskModeRequest::Copy {
                v.push(sys::XDP_ZEROCOPY | nw);
            }
            if cfg.mode != XskModeRequest::ZeroCopy {
                v.push(sys::XDP_COPY | nw);
                if nw != 0 {
                    v.push(sys::XDP_COPY);
                }
            }
            // Multi-buffer first where the kernel (6.6+) and, in zero copy, the driver have it.
            v.into_iter()
                .flat_map(|f| [f | sys::XDP_USE_SG, f])
                .collect()
        };
        let mut bound = None;
        let mut last = None;
        for flags in attempts {
            addr.sxdp_flags = flags;
            match os::bind(fd.as_fd(), &addr) {
                Ok(()) => {
                    bound = Some(flags);
                    break;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                    ) && shared.is_none() =>
                {
                    last = Some(e)
                }
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let Some(flags) = bound else {
            let e = last.expect("at least one bind attempt");
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::PortBusy(format!(
                    "queue {queue} of {ifname} already has an AF_XDP socket bound"
                )),
                // Sharing across queues and interfaces came with Linux 5.10.
                Some(libc::EINVAL) if shared.is_some() => Error::KernelUnsupported(format!(
                    "AF_XDP sockets on several queues or interfaces over one UMEM \
                     (XDP_SHARED_UMEM, Linux 5.10+), asked for queue {queue} of {ifname}; \
                     open one queue per port (xdp:{ifname}-N) without shared memory"
                )),
                Some(libc::EOPNOTSUPP) if cfg.mode == XskModeRequest::ZeroCopy => {
                    Error::KernelUnsupported(format!(
                        "zero-copy AF_XDP on {ifname}: its driver has none; use copy mode"
                    ))
                }
                _ => os_error(
                    e,
                    &format!("binding the AF_XDP socket to {ifname} queue {queue}"),
                    CAPS_RAW,
                    ifname,
                ),
            });
        };
        let zc_opt = os::getsockopt::<u32>(fd.as_fd(), sys::SOL_XDP, sys::XDP_OPTIONS)
            .map(|(o, _)| o & sys::XDP_OPTIONS_ZEROCOPY != 0)
            .unwrap_or(flags & sys::XDP_ZEROCOPY != 0);
        let mode = if zc_opt {
            XskBindMode::ZeroCopy
        } else {
            XskBindMode::Copy
        };
        owner.add(&fd, iface.index, queue);
        drop(owner);
        let sg = flags & sys::XDP_USE_SG != 0;
        tracing::debug!(
            interface = ifname,
            queue,
            ?mode,
            multi_buffer = sg,
            shared = shared.is_some(),
            "AF_XDP socket bound"
        );
        Ok(XskSocket {
            fill,
            comp,
            rx,
            tx,
            link: Link {
                fd,
                ifname: iface.name,
                mode,
                // Shared sockets inherit need-wakeup from the registering one; kicking
                // whenever the flag is set (or always in copy mode) is right either way.
                need_wakeup: flags & sys::XDP_USE_NEED_WAKEUP != 0 || shared.is_some(),
                umem: umem.clone(),
                sg,
            },
            shared: shared.is_some(),
        })
    }

    /// The socket descriptor (pollable: `POLLIN` with RX descriptors, `POLLOUT` with TX room).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.link.fd.as_fd()
    }

    /// Asks the kernel to send what is on the TX ring, when it needs asking (always in copy
    /// mode); repeats while the kernel answers EAGAIN, stops quietly when the device is busy.
    #[cfg(test)]
    pub(crate) fn kick_tx(&mut self) -> Result<(), Error> {
        self.link.kick_tx(&mut self.tx).map(drop)
    }

    /// Wakes the kernel's RX processing when the fill ring asks for it.
    #[cfg(test)]
    pub(crate) fn wake_rx(&self) -> Result<(), Error> {
        self.link.wake_rx(&self.fill)
    }

    /// Splits the socket into its sending and receiving halves, to be used under separate
    /// locks (the kernel's rings are single-producer/single-consumer per ring, and the halves
    /// touch disjoint rings). The descriptor closes when both halves are gone.
    pub(crate) fn split(self) -> (XskTx, XskRx) {
        let XskSocket {
            fill,
            comp,
            rx,
            tx,
            link,
            ..
        } = self;
        (
            XskTx {
                tx,
                comp,
                link: link.clone(),
            },
            XskRx { rx, fill, link },
        )
    }

    /// The kernel's drop and error counters for this socket.
    #[cfg(test)]
    pub(crate) fn statistics(&self) -> Result<libc::xdp_statistics, Error> {
        self.counters().read().map(|(s, _)| s)
    }

    /// A reader of this socket's counters that needs neither half (see [`XskCounters`]).
    pub(crate) fn counters(&self) -> XskCounters {
        XskCounters {
            fd: self.link.fd.clone(),
            ifname: self.link.ifname.clone(),
        }
    }

    /// Zero copy or copy.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> XskBindMode {
        self.link.mode
    }

    /// Whether this socket shares the UMEM registration of another socket.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// The UMEM.
    #[cfg(test)]
    pub(crate) fn umem(&self) -> &Umem {
        &self.link.umem
    }
}

/// Test hook: kicks that the kernel would answer "busy" (EBUSY/ENOBUFS, as a full device
/// queue does), by interface name.
#[cfg(test)]
pub(crate) mod busy_hook {
    use std::collections::HashMap;
    use std::sync::Mutex;

    static BUSY: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

    /// The next `n` TX kicks of sockets on `ifname` send nothing and report busy.
    pub(crate) fn set(ifname: &str, n: u32) {
        let mut b = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        b.get_or_insert_with(HashMap::new)
            .insert(ifname.to_string(), n);
    }

    pub(super) fn take(ifname: &str) -> bool {
        let mut b = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        match b.as_mut().and_then(|m| m.get_mut(ifname)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

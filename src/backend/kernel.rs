//! The kernel backend: `/dev/netmap`, `NIOCCTRL` registration, `mmap`, `NIOC*SYNC` and poll.
//!
//! Written to the netmap API 14 ABI (see [`crate::abi`]). Every errno the kernel returns from
//! a control request is turned into an [`Error`] that names the cause and the fix.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::abi::{self, NmreqHeader, NmreqPoolsInfo, NmreqPortInfoGet, NmreqRegister};
use crate::backend::{Backend, MemIdentity, OpenOptions, Opened, Readiness, RingWaker};
use crate::error::Error;
use crate::notify::poll_fds;
use crate::port_name::{PortSpec, RingSelect};
use crate::region::Region;

/// Path of the netmap control device.
pub const DEV_NETMAP: &CStr = c"/dev/netmap";

/// A registered kernel port: the netmap file descriptor.
#[derive(Debug)]
pub(crate) struct KernelPort {
    fd: OwnedFd,
}

/// Opens `/dev/netmap`, mapping errno to a clear error.
pub(crate) fn open_dev() -> Result<OwnedFd, Error> {
    // SAFETY: DEV_NETMAP is a valid NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(DEV_NETMAP.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => Error::ModuleNotLoaded,
            Some(libc::EACCES) | Some(libc::EPERM) => {
                Error::PermissionDenied("cannot open /dev/netmap".into())
            }
            _ => Error::Io(e),
        });
    }
    // SAFETY: fd was just returned by open() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Issues `NIOCCTRL` with `hdr` (whose `nr_body` points at a live body).
fn ctrl(fd: BorrowedFd<'_>, hdr: &mut NmreqHeader) -> io::Result<()> {
    // SAFETY: hdr is a live, correctly laid out nmreq_header; its nr_body (set by the caller)
    // points at a live body of the type nr_reqtype names, which outlives this call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), abi::NIOCCTRL as _, hdr as *mut NmreqHeader) };
    crate::notify::cvt(r).map(drop)
}

/// Maps an errno from a control request on `name` to an error naming cause and fix.
pub(crate) fn ctrl_error(name: &str, what: &str, hdr: &NmreqHeader, e: io::Error) -> Error {
    if hdr.nr_version != abi::NETMAP_API
        && !(abi::NETMAP_MIN_API..=abi::NETMAP_MAX_API).contains(&hdr.nr_version)
    {
        return Error::ApiMismatch {
            kernel: hdr.nr_version,
        };
    }
    match e.raw_os_error() {
        Some(libc::ENXIO) | Some(libc::ENODEV) => Error::NoSuchInterface(format!(
            "{name}: no such interface, or its driver has no netmap support ({what})"
        )),
        Some(libc::ENOENT) => Error::NoSuchInterface(format!("{name}: not found ({what})")),
        Some(libc::EBUSY) => Error::PortBusy(format!("{name}: {what} refused (EBUSY)")),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            Error::PermissionDenied(format!("{name}: {what}"))
        }
        Some(libc::EINVAL) => Error::BindFail(format!(
            "{name}: {what} rejected as invalid (EINVAL): a ring number out of range for this \
             port, a mode or flag the port does not support, or a netmap API mismatch \
             (this crate speaks API {})",
            abi::NETMAP_API
        )),
        Some(libc::ENOMEM) => Error::BindFail(format!(
            "{name}: {what}: netmap is out of memory; ask for fewer slots or extra buffers, or \
             raise the netmap module parameters (buf_num, ring_num, if_num)"
        )),
        Some(libc::EOPNOTSUPP) => {
            Error::BindFail(format!("{name}: {what} is not supported by this port"))
        }
        Some(libc::EEXIST) => Error::PortBusy(format!("{name}: already exists ({what})")),
        _ => Error::BindFail(format!("{name}: {what} failed: {e}")),
    }
}

fn header(reqtype: u16, name: &str, spec_for_err: &str) -> Result<NmreqHeader, Error> {
    let mut hdr = NmreqHeader::new(reqtype);
    if !hdr.set_name(name) {
        return Err(Error::InvalidPortName {
            name: spec_for_err.into(),
            reason: "does not fit in the 64-byte nr_name field".into(),
        });
    }
    Ok(hdr)
}

/// Registers `spec` on the kernel and maps its memory.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let span = tracing::debug_span!("netmap_open", port = %spec, backend = "kernel");
    let _e = span.enter();
    let fd = open_dev()?;
    let mut reg = NmreqRegister {
        nr_mode: spec.rings.mode(),
        nr_ringid: spec.rings.ring_id(),
        nr_flags: opts.flags,
        nr_tx_slots: opts.tx_slots,
        nr_rx_slots: opts.rx_slots,
        nr_tx_rings: opts.tx_rings,
        nr_rx_rings: opts.rx_rings,
        nr_extra_bufs: opts.extra_bufs,
        nr_mem_id: spec.mem_id,
        ..Default::default()
    };
    let mut hdr = header(abi::NETMAP_REQ_REGISTER, &spec.ifname, &spec.to_string())?;
    hdr.nr_body = &mut reg as *mut NmreqRegister as u64;
    // Name the ring in the request, so that an out-of-range ring number (EINVAL) says which.
    let what = match spec.rings {
        RingSelect::OneNic(k) => format!("register of ring {k}"),
        RingSelect::OneHost(k) => format!("register of host ring {k}"),
        _ => "register".to_string(),
    };
    ctrl(fd.as_fd(), &mut hdr).map_err(|e| ctrl_error(&spec.ifname, &what, &hdr, e))?;
    let memsize = usize::try_from(reg.nr_memsize)
        .map_err(|_| Error::BadLayout(format!("memory size {} too large", reg.nr_memsize)))?;
    let if_off = usize::try_from(reg.nr_offset)
        .ok()
        .filter(|o| *o < memsize)
        .ok_or_else(|| {
            Error::BadLayout(format!(
                "netmap_if offset {} outside the {memsize}-byte region",
                reg.nr_offset
            ))
        })?;
    let region = Region::map_shared(fd.as_fd(), memsize).map_err(|e| {
        Error::BindFail(format!(
            "{}: mmap of {memsize} bytes failed: {e}",
            spec.ifname
        ))
    })?;
    tracing::debug!(
        memsize,
        mem_id = reg.nr_mem_id,
        tx_rings = reg.nr_tx_rings,
        rx_rings = reg.nr_rx_rings,
        tx_slots = reg.nr_tx_slots,
        rx_slots = reg.nr_rx_slots,
        "registered"
    );
    Ok(Opened {
        backend: Backend::Kernel(KernelPort { fd }),
        region: Arc::new(region),
        if_off,
        mem: MemIdentity::Kernel {
            mem_id: reg.nr_mem_id,
            memsize,
        },
        extra_bufs: reg.nr_extra_bufs,
    })
}

impl KernelPort {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A duplicate of the netmap fd for one ring's waiter (see [`RingWaker`]): registered
    /// with the reactor on its own, it keeps readiness state that no other ring's wait can
    /// clear.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn ring_waker(&self, tx: bool) -> Result<RingWaker, Error> {
        let fd = self.fd.try_clone().map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!("duplicating the netmap fd for a ring waiter: {e}"),
            ))
        })?;
        Ok(RingWaker::fd(fd, tx))
    }

    fn sync(&self, req: u32, what: &str) -> Result<(), Error> {
        // SAFETY: NIOC*SYNC take no argument; the fd is a registered netmap descriptor.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _) };
        if r < 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(error = %e, "{what} failed");
            return Err(Error::Io(io::Error::new(e.kind(), format!("{what}: {e}"))));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn txsync(&self) -> Result<(), Error> {
        self.sync(abi::NIOCTXSYNC, "NIOCTXSYNC")
    }

    #[inline]
    pub(crate) fn rxsync(&self) -> Result<(), Error> {
        self.sync(abi::NIOCRXSYNC, "NIOCRXSYNC")
    }

    /// `poll(2)` on the netmap fd: the kernel syncs as a side effect and reports readiness.
    pub(crate) fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        let mut ev = 0;
        if want.readable {
            ev |= libc::POLLIN;
        }
        if want.writable {
            ev |= libc::POLLOUT;
        }
        let rev = poll_fds(&[(self.fd.as_fd(), ev)], timeout)?;
        if rev[0] & libc::POLLNVAL != 0 {
            return Err(Error::Io(io::Error::other(
                "poll on the netmap fd reported POLLNVAL: the descriptor is not open",
            )));
        }
        if rev[0] & libc::POLLERR != 0 {
            // netmap's poll reports POLLERR when its check of a ring's user pointers failed
            // (`netmap_ring_reinit`). With our rings that happens only when another thread
            // published a ring between the kernel's two loads of it (see `tokio_async`): the
            // kernel re-read them, found them valid and left them, so this is a wake-up:
            // report what the rings show, as the emulated backend does.
            tracing::debug!("netmap poll reported POLLERR; treated as a wake-up");
            let now = check();
            return Ok(Readiness {
                readable: want.readable && now.readable,
                writable: want.writable && now.writable,
            });
        }
        Ok(Readiness {
            readable: rev[0] & libc::POLLIN != 0,
            writable: rev[0] & libc::POLLOUT != 0,
        })
    }
}

/// What `NETMAP_REQ_PORT_INFO_GET` reports about a port, without registering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Size of the port's memory region.
    pub memsize: u64,
    /// Slots per TX ring.
    pub tx_slots: u32,
    /// Slots per RX ring.
    pub rx_slots: u32,
    /// NIC TX rings.
    pub tx_rings: u16,
    /// NIC RX rings.
    pub rx_rings: u16,
    /// Host TX rings.
    pub host_tx_rings: u16,
    /// Host RX rings.
    pub host_rx_rings: u16,
    /// Memory allocator id.
    pub mem_id: u16,
}

/// Queries a port's geometry (`NETMAP_REQ_PORT_INFO_GET`).
pub(crate) fn port_info(spec: &PortSpec) -> Result<PortInfo, Error> {
    let fd = open_dev()?;
    let mut body = NmreqPortInfoGet {
        nr_mem_id: spec.mem_id,
        ..Default::default()
    };
    let mut hdr = header(
        abi::NETMAP_REQ_PORT_INFO_GET,
        &spec.ifname,
        &spec.to_string(),
    )?;
    hdr.nr_body = &mut body as *mut NmreqPortInfoGet as u64;
    ctrl(fd.as_fd(), &mut hdr).map_err(|e| ctrl_error(&spec.ifname, "port info", &hdr, e))?;
    Ok(PortInfo {
        memsize: body.nr_memsize,
        tx_slots: body.nr_tx_slots,
        rx_slots: body.nr_rx_slots,
        tx_rings: body.nr_tx_rings,
        rx_rings: body.nr_rx_rings,
        host_tx_rings: body.nr_host_tx_rings,
        host_rx_rings: body.nr_host_rx_rings,
        mem_id: body.nr_mem_id,
    })
}

/// What `NETMAP_REQ_POOLS_INFO_GET` reports about a memory allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolsInfo {
    /// Total size of the allocator's memory.
    pub memsize: u64,
    /// Allocator id.
    pub mem_id: u16,
    /// Interface pool: offset, object count, object size.
    pub if_pool: (u64, u32, u32),
    /// Ring pool: offset, object count, object size.
    pub ring_pool: (u64, u32, u32),
    /// Buffer pool: offset, object count, object size.
    pub buf_pool: (u64, u32, u32),
}

/// Queries the memory pools of the allocator a port uses (`NETMAP_REQ_POOLS_INFO_GET`).
pub(crate) fn pools_info(spec: &PortSpec) -> Result<PoolsInfo, Error> {
    let fd = open_dev()?;
    let mut body = NmreqPoolsInfo {
        nr_mem_id: spec.mem_id,
        ..Default::default()
    };
    let mut hdr = header(
        abi::NETMAP_REQ_POOLS_INFO_GET,
        &spec.ifname,
        &spec.to_string(),
    )?;
    hdr.nr_body = &mut body as *mut NmreqPoolsInfo as u64;
    ctrl(fd.as_fd(), &mut hdr).map_err(|e| ctrl_error(&spec.ifname, "pools info", &hdr, e))?;
    Ok(PoolsInfo {
        memsize: body.nr_memsize,
        mem_id: body.nr_mem_id,
        if_pool: (
            body.nr_if_pool_offset,
            body.nr_if_pool_objtotal,
            body.nr_if_pool_objsize,
        ),
        ring_pool: (
            body.nr_ring_pool_offset,
            body.nr_ring_pool_objtotal,
            body.nr_ring_pool_objsize,
        ),
        buf_pool: (
            body.nr_buf_pool_offset,
            body.nr_buf_pool_objtotal,
            body.nr_buf_pool_objsize,
        ),
    })
}

/// Issues a VALE control request with an optional body. Used by [`crate::vale`].
pub(crate) fn vale_request<B>(
    reqtype: u16,
    name: &str,
    body: Option<&mut B>,
    what: &str,
) -> Result<(), Error> {
    let fd = open_dev()?;
    let mut hdr = header(reqtype, name, name)?;
    if let Some(b) = body {
        hdr.nr_body = b as *mut B as u64;
    }
    ctrl(fd.as_fd(), &mut hdr).map_err(|e| ctrl_error(name, what, &hdr, e))
}

/// Issues a VALE request that writes back the name (`VALE_LIST`). `Ok(None)` on ENOENT,
/// which ends a listing.
pub(crate) fn vale_request_hdr<B>(
    reqtype: u16,
    name: &str,
    body: &mut B,
) -> Result<Option<NmreqHeader>, Error> {
    let fd = open_dev()?;
    let mut hdr = header(reqtype, name, name)?;
    hdr.nr_body = body as *mut B as u64;
    match ctrl(fd.as_fd(), &mut hdr) {
        Ok(()) => Ok(Some(hdr)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(ctrl_error(name, "VALE list", &hdr, e)),
    }
}

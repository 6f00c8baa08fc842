//! Control requests on `/dev/netmap` (`NIOCCTRL`): opening the device, the request header,
//! errno mapped to errors that name cause and fix, and the queries that register nothing
//! (port and pool geometry, VALE requests).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::abi::{self, NmreqHeader, NmreqPoolsInfo, NmreqPortInfoGet};
use crate::error::Error;
use crate::port_name::PortSpec;

/// Path of the netmap control device.
pub const DEV_NETMAP: &CStr = c"/dev/netmap";

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
pub(super) fn ctrl(fd: BorrowedFd<'_>, hdr: &mut NmreqHeader) -> io::Result<()> {
    // SAFETY: hdr is a live, correctly laid out nmreq_header; its nr_body (set by the caller)
    // points at a live body of the type nr_reqtype names, which outlives this call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), abi::NIOCCTRL as _, hdr as *mut NmreqHeader) };
    crate::os::cvt(r).map(drop)
}

/// Issues `NIOCTXSYNC` or `NIOCRXSYNC` (`req`) on a registered netmap descriptor.
pub(super) fn sync(fd: BorrowedFd<'_>, req: u32, what: &str) -> Result<(), Error> {
    // SAFETY: NIOC*SYNC take no argument; the fd is a registered netmap descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _) };
    if r < 0 {
        let e = io::Error::last_os_error();
        tracing::warn!(error = %e, "{what} failed");
        return Err(Error::Io(io::Error::new(e.kind(), format!("{what}: {e}"))));
    }
    Ok(())
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
        Some(libc::ENXIO) | Some(libc::ENODEV) => Error::no_such_interface(
            name,
            format!("{what}: no such interface, or its driver has no netmap support"),
        ),
        Some(libc::ENOENT) => Error::no_such_interface(name, format!("{what}: not found")),
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

pub(super) fn header(reqtype: u16, name: &str, spec_for_err: &str) -> Result<NmreqHeader, Error> {
    let mut hdr = NmreqHeader::new(reqtype);
    if !hdr.set_name(name) {
        return Err(Error::InvalidPortName {
            name: spec_for_err.into(),
            reason: "does not fit in the 64-byte nr_name field".into(),
        });
    }
    Ok(hdr)
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

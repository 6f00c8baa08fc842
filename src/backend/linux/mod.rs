//! What the two Linux drivers ([`xdp`](super::xdp) and [`afpacket`](super::afpacket)) share:
//! netmap rings in process memory driven by the kernel's packet sockets, the way the netmap
//! module drives a NIC.
//!
//! - [`ringmem`]: the netmap interface, rings and buffer pool both drivers build.
//! - [`huge`]: the region on huge pages when asked for, with a fallback.
//! - [`sockets`]: readiness of their queue sockets (ring wakers, `AsFd`, blocking waits).
//! - [`sys`]: kernel constants and `#[repr(C)]` layouts `libc` lacks, with asserted sizes.
//! - [`os`]: the socket/ioctl/mmap wrappers (most of the `unsafe`).
//! - [`iface`]: interface index, state, MTU and queue count.
//! - [`netlink`]: rtnetlink `IFLA_XDP` query and attach/detach (fallback without BPF links).
//! - [`route`]: routes, neighbours, addresses and MAC of an interface (for the UDP layer).
//! - `tests`: both drivers and their plumbing on a real veth pair, with the fixture
//!   (`tests/testnet.rs`).
pub(crate) mod huge;
#[allow(unsafe_code)]
pub(crate) mod iface;
pub(crate) mod netlink;
#[allow(unsafe_code)]
pub(crate) mod os;
#[allow(unsafe_code)]
pub(crate) mod ringmem;
pub(crate) mod route;
pub(crate) mod sockets;
pub(crate) mod sys;

#[cfg(test)]
#[allow(unsafe_code)]
mod tests;

use std::io;
use std::time::Duration;

use crate::error::Error;
use crate::port_name::PortSpec;

/// How long closing a port waits for queued frames to leave.
pub(crate) const FLUSH_AT_CLOSE: Duration = Duration::from_millis(200);

/// Capabilities named in privilege errors.
pub(crate) const CAPS_RAW: &str = "CAP_NET_RAW";
pub(crate) const CAPS_BPF: &str =
    "CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN on kernels before 5.8)";
pub(crate) const CAPS_ADMIN: &str = "CAP_NET_ADMIN";

/// Maps an OS error from `what` to the crate error: EPERM/EACCES become
/// [`Error::MissingPrivilege`] naming `caps`, ENODEV/ENXIO [`Error::NoSuchInterface`] for
/// `ifname`, ENETDOWN [`Error::InterfaceDown`], anything else an [`Error::Io`] naming `what`.
pub(crate) fn os_error(e: io::Error, what: &str, caps: &'static str, ifname: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::MissingPrivilege {
            what: what.to_string(),
            needs: caps,
        },
        Some(libc::ENODEV) | Some(libc::ENXIO) if !ifname.is_empty() => {
            Error::no_such_interface(ifname, format!("{what}: {e}"))
        }
        Some(libc::ENETDOWN) if !ifname.is_empty() => Error::InterfaceDown(ifname.to_string()),
        _ => iface::io_context(e, what),
    }
}

/// The error for host rings asked of a Linux socket backend (a bare `IF^` without the module).
pub(crate) fn host_rings_error(spec: &PortSpec) -> Error {
    Error::BindFail(format!(
        "{}: host-stack rings (^, ^N, *) are a netmap feature: load the netmap kernel module \
         (modprobe netmap) to open them; AF_XDP and AF_PACKET carry the interface's own traffic",
        spec.ifname
    ))
}

/// The error for extra buffers asked of a Linux socket backend.
pub(crate) fn extra_bufs_error(spec: &PortSpec) -> Error {
    Error::BindFail(format!(
        "{}: extra buffers (nr_extra_bufs) come from the netmap kernel module's allocator; \
         the AF_XDP and AF_PACKET backends have none",
        spec.ifname
    ))
}

/// Whether the kernel has AF_XDP sockets (a socket can be created; needs `CAP_NET_RAW`).
pub(crate) fn xdp_sockets_available() -> bool {
    os::socket(sys::AF_XDP, libc::SOCK_RAW, 0).is_ok()
}

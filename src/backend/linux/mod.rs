//! The AF_XDP and AF_PACKET backends: netmap rings in process memory ([`ringmem`]) driven
//! by the kernel's packet sockets, the way the netmap module drives a NIC:
//!
//! - [`xdp_port`]: the AF_XDP driver (`xdp:IF`, `xdp:IF-N`).
//! - [`afpacket_port`]: the AF_PACKET driver (`afpacket:IF`).
//! - [`sockets`]: readiness of their queue sockets (ring wakers, `AsFd`, blocking waits).
//!
//! and the kernel plumbing under them:
//!
//! - [`sys`]: kernel constants and `#[repr(C)]` layouts `libc` lacks, with asserted sizes.
//! - [`os`]: the socket/ioctl/mmap wrappers (most of the `unsafe`).
//! - [`iface`]: interface index, state, MTU and queue count.
//! - [`bpf`]: `bpf(2)`: the XSKMAP, the redirect program (bytes in the source), info queries.
//! - [`netlink`]: rtnetlink `IFLA_XDP` query and attach/detach (fallback without BPF links).
//! - [`xdp_prog`]: attaching the redirect program to an interface, never touching someone
//!   else's program, detaching when dropped.
//! - [`xsk_ring`]: the four mmapped AF_XDP rings with bounds-checked descriptors.
//! - [`xsk`]: the UMEM and the AF_XDP socket.
//! - [`afpacket`]: the AF_PACKET `TPACKET_V2` RX/TX rings.
pub(crate) mod afpacket;
pub(crate) mod afpacket_port;
pub(crate) mod bpf;
pub(crate) mod iface;
pub(crate) mod netlink;
pub(crate) mod os;
pub(crate) mod ringmem;
pub(crate) mod sockets;
pub(crate) mod sys;
pub(crate) mod xdp_port;
pub(crate) mod xdp_prog;
pub(crate) mod xsk;
pub(crate) mod xsk_ring;

#[cfg(test)]
mod testnet;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_port_errors;
#[cfg(test)]
mod tests_ports;
#[cfg(test)]
mod tests_rate;
#[cfg(all(test, feature = "tokio-async"))]
mod tests_tokio;

use std::io;

use crate::error::Error;
use crate::port_name::PortSpec;

/// Capabilities named in privilege errors.
pub(crate) const CAPS_RAW: &str = "CAP_NET_RAW";
pub(crate) const CAPS_BPF: &str =
    "CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN on kernels before 5.8)";
pub(crate) const CAPS_ADMIN: &str = "CAP_NET_ADMIN";

/// Maps an OS error from `what` to the crate error: EPERM/EACCES become
/// [`Error::MissingPrivilege`] naming `caps`, ENODEV/ENXIO [`Error::InterfaceNotFound`] for
/// `ifname`, ENETDOWN [`Error::InterfaceDown`], anything else an [`Error::Io`] naming `what`.
pub(crate) fn os_error(e: io::Error, what: &str, caps: &'static str, ifname: &str) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::MissingPrivilege {
            what: what.to_string(),
            needs: caps,
        },
        Some(libc::ENODEV) | Some(libc::ENXIO) if !ifname.is_empty() => {
            Error::InterfaceNotFound(ifname.to_string())
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

//! Linux kernel plumbing for the AF_XDP and AF_PACKET backends (issue 10), as standalone
//! modules not yet wired behind the netmap rings:
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
#![allow(dead_code)] // not wired into the port yet: integration comes with the backend seam

pub(crate) mod afpacket;
pub(crate) mod bpf;
pub(crate) mod iface;
pub(crate) mod netlink;
pub(crate) mod os;
pub(crate) mod sys;
pub(crate) mod xdp_prog;
pub(crate) mod xsk;
pub(crate) mod xsk_ring;

#[cfg(test)]
mod testnet;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rate;

use std::io;

use crate::error::Error;

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

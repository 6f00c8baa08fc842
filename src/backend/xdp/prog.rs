//! Attaching the XSK redirect program to an interface: XSKMAP sized by the queue count, the
//! program loaded from its bytes, a BPF link in native mode first and generic (skb) mode
//! second, netlink `IFLA_XDP` as the fallback for kernels without XDP links. A program somebody
//! else attached is detected and reported, never replaced or removed.
//!
//! Lifetime: a link-attached program goes away when the link fd closes, which happens on drop
//! and also when the process dies (the kernel closes the fd). A netlink-attached program is
//! detached on drop, and only if it is still ours; after a crash it stays (kernels < 5.9 only).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::bpf;
use crate::backend::linux::iface::Interface;
use crate::backend::linux::netlink::{self, NlError};
use crate::backend::linux::{os_error, sys, CAPS_ADMIN, CAPS_BPF};
use crate::error::Error;

/// Where in the receive path the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XdpMode {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// On the skb, for any driver (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpMode {
    fn flag(self) -> u32 {
        match self {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachMethod {
    /// A BPF link (5.9+): detached when the link fd closes, also on process death.
    Link,
    /// Netlink `IFLA_XDP` with `XDP_FLAGS_UPDATE_IF_NOEXIST`: detached by us on drop.
    Netlink,
}

/// Choices for [`XdpProgram::attach`]; the defaults try native then generic, link then
/// netlink.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct XdpAttachOptions {
    /// Only this mode (default: native, then generic).
    pub mode: Option<XdpMode>,
    /// Only this method (default: link, then netlink).
    pub method: Option<AttachMethod>,
}

#[derive(Debug)]
enum Attachment {
    /// Held, not read: closing it detaches the program.
    Link(#[allow(dead_code)] OwnedFd),
    Netlink,
}

/// The redirect program attached to one interface, with its XSKMAP.
#[derive(Debug)]
pub(crate) struct XdpProgram {
    ifname: String,
    ifindex: u32,
    map: OwnedFd,
    map_entries: u32,
    prog: OwnedFd,
    prog_id: u32,
    mode: XdpMode,
    attachment: Attachment,
}

fn foreign(iface: &Interface, prog_id: u32) -> Error {
    Error::XdpProgramAttached {
        interface: iface.name.clone(),
        prog_id,
    }
}

/// The id of whatever is attached now (0 if unknown), for an EBUSY/EEXIST error.
fn current_id(ifindex: u32) -> u32 {
    netlink::xdp_query(ifindex)
        .map(|s| s.some_id())
        .unwrap_or(0)
}

impl XdpProgram {
    /// Loads and attaches the redirect program to `iface`. Errors:
    /// [`Error::XdpProgramAttached`] when the interface already has an XDP program (any
    /// mode), [`Error::MissingPrivilege`] without `CAP_BPF`/`CAP_NET_ADMIN`, an
    /// [`Error::Io`] with the verifier log when the program is rejected.
    pub(crate) fn attach(iface: &Interface, opts: &XdpAttachOptions) -> Result<XdpProgram, Error> {
        let st = netlink::xdp_query(iface.index).map_err(|e| {
            os_error(
                e.error,
                "querying XDP state (RTM_GETLINK)",
                CAPS_ADMIN,
                &iface.name,
            )
        })?;
        if st.any() {
            return Err(foreign(iface, st.some_id()));
        }
        let map_entries = iface.queues.max(1);
        let map = bpf::create_xskmap(map_entries)
            .map_err(|e| os_error(e, "creating the XSKMAP (bpf BPF_MAP_CREATE)", CAPS_BPF, ""))?;
        let insns = bpf::redirect_program(map.as_fd());
        let prog = bpf::load_xdp(&insns, "netmap_rs_xsk").map_err(|e| {
            if matches!(e.error.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return Error::MissingPrivilege {
                    what: "loading an XDP program (bpf BPF_PROG_LOAD)".into(),
                    needs: CAPS_BPF,
                };
            }
            crate::backend::linux::iface::io_context(
                e.error,
                &format!(
                    "the kernel rejected the XSK redirect program (BPF_PROG_LOAD); verifier log: {}",
                    if e.log.is_empty() { "(empty)" } else { &e.log }
                ),
            )
        })?;
        let prog_id = bpf::prog_id(prog.as_fd()).unwrap_or(0);

        let modes: &[XdpMode] = match opts.mode {
            Some(XdpMode::Native) => &[XdpMode::Native],
            Some(XdpMode::Generic) => &[XdpMode::Generic],
            None => &[XdpMode::Native, XdpMode::Generic],
        };
        let methods: &[AttachMethod] = match opts.method {
            Some(AttachMethod::Link) => &[AttachMethod::Link],
            Some(AttachMethod::Netlink) => &[AttachMethod::Netlink],
            None => &[AttachMethod::Link, AttachMethod::Netlink],
        };
        let mut last: Option<String> = None;
        for &method in methods {
            for &mode in modes {
                let r = match method {
                    AttachMethod::Link => bpf::link_create(prog.as_fd(), iface.index, mode.flag())
                        .map(Attachment::Link)
                        .map_err(NlError::from),
                    AttachMethod::Netlink => netlink::xdp_set(
                        iface.index,
                        prog.as_raw_fd(),
                        sys::XDP_FLAGS_UPDATE_IF_NOEXIST | mode.flag(),
                        None,
                    )
                    .map(|()| Attachment::Netlink),
                };
                match r {
                    Ok(attachment) => {
                        tracing::debug!(
                            interface = %iface.name, ?mode, ?method, prog_id,
                            "attached XSK redirect program"
                        );
                        return Ok(XdpProgram {
                            ifname: iface.name.clone(),
                            ifindex: iface.index,
                            map,
                            map_entries,
                            prog,
                            prog_id,
                            mode,
                            attachment,
                        });
                    }
                    Err(e) => match e.error.raw_os_error() {
                        Some(libc::EBUSY) | Some(libc::EEXIST) => {
                            return Err(foreign(iface, current_id(iface.index)))
                        }
                        Some(libc::EPERM) | Some(libc::EACCES) => {
                            return Err(Error::MissingPrivilege {
                                what: format!("attaching an XDP program to {}", iface.name),
                                needs: CAPS_ADMIN,
                            })
                        }
                        Some(libc::ENODEV) => {
                            return Err(Error::no_such_interface(
                                &iface.name,
                                "attaching the XDP program",
                            ))
                        }
                        _ => last = Some(format!("{method:?}/{mode:?}: {e}")),
                    },
                }
            }
        }
        Err(Error::KernelUnsupported(format!(
            "could not attach an XDP program to {} in any mode ({}); XDP needs Linux 4.18+ \
             (links 5.9+); use the AF_PACKET backend (afpacket:{}) instead",
            iface.name,
            last.unwrap_or_default(),
            iface.name
        )))
    }

    /// Points queue `queue` at the AF_XDP socket `xsk` (after the socket is bound).
    pub(crate) fn register(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), Error> {
        if queue >= self.map_entries {
            return Err(Error::QueueOutOfRange {
                interface: self.ifname.clone(),
                queue,
                available: self.map_entries,
            });
        }
        bpf::map_update(self.map.as_fd(), queue, xsk.as_raw_fd() as u32)
            .map_err(|e| os_error(e, "adding the socket to the XSKMAP", CAPS_BPF, &self.ifname))
    }

    /// Removes queue `queue`'s socket: its packets go to the stack again.
    pub(crate) fn unregister(&self, queue: u32) -> Result<(), Error> {
        bpf::map_delete(self.map.as_fd(), queue).map_err(|e| {
            os_error(
                e,
                "removing the socket from the XSKMAP",
                CAPS_BPF,
                &self.ifname,
            )
        })
    }

    /// The mode the program runs in.
    pub(crate) fn mode(&self) -> XdpMode {
        self.mode
    }

    /// How it is attached.
    pub(crate) fn method(&self) -> AttachMethod {
        match self.attachment {
            Attachment::Link(_) => AttachMethod::Link,
            Attachment::Netlink => AttachMethod::Netlink,
        }
    }

    /// The kernel's id of the program (as `ip link` shows it).
    #[cfg(test)]
    pub(crate) fn prog_id(&self) -> u32 {
        self.prog_id
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        if let Attachment::Netlink = self.attachment {
            // Detach only if our program is still the one attached: first atomically with
            // XDP_FLAGS_REPLACE + EXPECTED_FD (5.7+), else after checking the id.
            let flags = self.mode.flag();
            let r = netlink::xdp_set(self.ifindex, -1, flags, Some(self.prog.as_raw_fd()));
            if let Err(e) = r {
                let ours = netlink::xdp_query(self.ifindex)
                    .map(|s| s.has(self.prog_id))
                    .unwrap_or(false);
                if ours {
                    if let Err(e2) = netlink::xdp_set(self.ifindex, -1, flags, None) {
                        tracing::warn!(interface = %self.ifname, "XDP detach failed: {e}; {e2}");
                    }
                }
            }
        }
        // A link detaches when its fd (dropped with self) closes.
    }
}

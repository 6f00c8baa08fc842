//! Attaching the crate's XDP program ([`filter`](super::filter)) to an interface, or joining
//! it where another process (or port) of this crate attached it already.
//!
//! - Attaching: an XSKMAP and a rule map sized by the queue count, the program loaded from
//!   its instructions, a BPF link in native mode first and generic (skb) mode second, netlink
//!   `IFLA_XDP` as the fallback for kernels without XDP links.
//! - Joining: the attached program's id comes from netlink; a program named
//!   [`PROG_NAME`] is ours: its maps are opened by id, and so is the XDP link holding it.
//!   Each process then holds a descriptor of the same link, and the kernel detaches the
//!   program when the last one closes: at the last port's close or the last holder's death,
//!   whichever comes last. No file, pin or lock is involved, so a crash leaves nothing behind
//!   and no count to repair. Two processes attaching at once race in `BPF_LINK_CREATE`: the
//!   loser gets EBUSY and joins the winner.
//! - Anything else attached is foreign: reported with its id and name, never replaced or
//!   removed; so is our own program attached through netlink (no link to share: a kernel
//!   before 5.9), which only its process detaches.
//!
//! Each queue belongs to the one socket bound to it (the kernel refuses a second), and only
//! that socket's port writes the queue's rule and XSKMAP entry: the rule first, the socket
//! second when opening; the socket first when closing. A killed process's sockets leave the
//! XSKMAP with them (the kernel removes a closed socket); its stale rule then matches into an
//! empty slot, which passes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::bpf;
use super::filter::{program, OnMatch, Rule, PROG_NAME};
use super::ids;
use crate::backend::linux::iface::Interface;
use crate::backend::linux::netlink::{self, NlError};
use crate::backend::linux::{os_error, sys, CAPS_ADMIN, CAPS_BPF};
use crate::error::Error;
use crate::port_name::XdpFilter;

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

/// The crate's program on one interface (attached by us or joined), with its maps.
#[derive(Debug)]
pub(crate) struct XdpProgram {
    ifname: String,
    ifindex: u32,
    /// The XSKMAP (queue → socket).
    map: OwnedFd,
    /// The rule map (queue → [`Rule`]).
    rules: OwnedFd,
    map_entries: u32,
    prog: OwnedFd,
    prog_id: u32,
    mode: XdpMode,
    attachment: Attachment,
}

fn foreign(iface: &Interface, prog_id: u32, prog_name: String) -> Error {
    Error::XdpProgramAttached {
        interface: iface.name.clone(),
        prog_id,
        prog_name,
    }
}

/// What `BPF_*_GET_FD_BY_ID` needs.
const CAPS_JOIN: &str = "CAP_SYS_ADMIN";

/// How long an open keeps re-reading the interface while programs come and go under it (or
/// another port's link is between its creation and its settling), before it gives up with
/// [`Error::PortBusy`].
const ATTACH_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// The outcome of one round of [`XdpProgram::attach`].
enum Round {
    Done(XdpProgram),
    /// The interface changed under us (a program came or went): look again.
    Again,
}

impl XdpProgram {
    /// Attaches the crate's program to `iface`, or joins it where another process attached
    /// it. Errors: [`Error::XdpProgramAttached`] when the interface has a program that is not
    /// ours (any mode), [`Error::MissingPrivilege`] without `CAP_BPF`/`CAP_NET_ADMIN`, an
    /// [`Error::Io`] with the verifier log when the program is rejected. `opts` apply when
    /// this call attaches; a joined program keeps the mode and method it has.
    pub(crate) fn attach(iface: &Interface, opts: &XdpAttachOptions) -> Result<XdpProgram, Error> {
        let start = std::time::Instant::now();
        let mut rounds = 0u32;
        while rounds < 4 || start.elapsed() < ATTACH_PATIENCE {
            rounds += 1;
            let st = netlink::xdp_query(iface.index).map_err(|e| {
                os_error(
                    e.error,
                    "querying XDP state (RTM_GETLINK)",
                    CAPS_ADMIN,
                    &iface.name,
                )
            })?;
            let round = if st.any() {
                Self::join(iface, &st)?
            } else {
                Self::attach_new(iface, opts)?
            };
            match round {
                Round::Done(p) => return Ok(p),
                // Give the attach or detach under way the processor (a thread between the two
                // steps of making a link may be off the CPU for a while).
                Round::Again if rounds < 4 => std::thread::yield_now(),
                Round::Again => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
        Err(Error::PortBusy(format!(
            "XDP programs kept coming and going on {} while this port opened ({rounds} tries \
             in {:?}): retry",
            iface.name,
            start.elapsed()
        )))
    }

    /// Joins the program `st` shows, if it is ours.
    fn join(iface: &Interface, st: &netlink::XdpState) -> Result<Round, Error> {
        let id = st.some_id();
        // The by-id commands want CAP_SYS_ADMIN whatever the kernel.
        let privilege = |e: std::io::Error, what: &str| {
            os_error(
                e,
                &format!("{what} (joining the program another port of this crate attached)"),
                CAPS_JOIN,
                &iface.name,
            )
        };
        let found = match ids::prog(id) {
            Ok(p) => p,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Round::Again),
            Err(e) => return Err(privilege(e, "opening the attached XDP program by id")),
        };
        if found.name != PROG_NAME {
            return Err(foreign(iface, id, found.name));
        }
        let (mut xsks, mut rules) = (None, None);
        for &mid in &found.map_ids {
            match ids::map(mid) {
                Ok((fd, shape)) if shape.map_type == sys::BPF_MAP_TYPE_XSKMAP => {
                    xsks = Some((fd, shape.max_entries))
                }
                Ok((fd, shape)) if shape.value_size as usize == std::mem::size_of::<Rule>() => {
                    rules = Some(fd)
                }
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Round::Again),
                Err(e) => return Err(privilege(e, "opening the XDP program's maps by id")),
            }
        }
        let (Some((map, map_entries)), Some(rules)) = (xsks, rules) else {
            // Our name, not our maps: another build of the crate. Not ours to share.
            return Err(foreign(iface, id, found.name));
        };
        let link = match ids::xdp_link(id, iface.index) {
            Ok(Some(link)) => link,
            Ok(None) => {
                let still = netlink::xdp_query(iface.index).is_ok_and(|s| s.has(id));
                if !still {
                    return Ok(Round::Again);
                }
                // Attached through netlink (a kernel without links): nothing to hold.
                return Err(foreign(
                    iface,
                    id,
                    format!("{} (attached without a link)", found.name),
                ));
            }
            // A link between its creation and its settling, or being released, has no id yet
            // (or any more): another port's attach or detach is under way. Look again.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(Round::Again),
            Err(e) => return Err(privilege(e, "opening the XDP link by id")),
        };
        let mode = if st.skb_prog_id == id {
            XdpMode::Generic
        } else {
            XdpMode::Native
        };
        tracing::debug!(interface = %iface.name, prog_id = id, ?mode, "joined the XDP program");
        Ok(Round::Done(XdpProgram {
            ifname: iface.name.clone(),
            ifindex: iface.index,
            map,
            rules,
            map_entries,
            prog: found.fd,
            prog_id: id,
            mode,
            attachment: Attachment::Link(link),
        }))
    }

    /// Loads the program and attaches it to `iface`, which had none a moment ago.
    fn attach_new(iface: &Interface, opts: &XdpAttachOptions) -> Result<Round, Error> {
        let map_entries = iface.queues.max(1);
        let map = bpf::create_xskmap(map_entries)
            .map_err(|e| os_error(e, "creating the XSKMAP (bpf BPF_MAP_CREATE)", CAPS_BPF, ""))?;
        let rules = bpf::create_array(
            "netmap_rs_rules",
            std::mem::size_of::<Rule>() as u32,
            map_entries,
        )
        .map_err(|e| {
            os_error(
                e,
                "creating the rule map (bpf BPF_MAP_CREATE)",
                CAPS_BPF,
                "",
            )
        })?;
        let insns = program(
            rules.as_raw_fd(),
            OnMatch::Redirect {
                xsks: map.as_raw_fd(),
            },
        );
        let prog = bpf::load_xdp(&insns, PROG_NAME).map_err(|e| {
            if matches!(
                e.error.raw_os_error(),
                Some(libc::EPERM) | Some(libc::EACCES)
            ) {
                return Error::MissingPrivilege {
                    what: "loading an XDP program (bpf BPF_PROG_LOAD)".into(),
                    needs: CAPS_BPF,
                };
            }
            crate::backend::linux::iface::io_context(
                e.error,
                &format!(
                    "the kernel rejected the XDP program (BPF_PROG_LOAD); verifier log: {}",
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
                        return Ok(Round::Done(XdpProgram {
                            ifname: iface.name.clone(),
                            ifindex: iface.index,
                            map,
                            rules,
                            map_entries,
                            prog,
                            prog_id,
                            mode,
                            attachment,
                        }));
                    }
                    Err(e) => match e.error.raw_os_error() {
                        // Somebody attached first: find out who.
                        Some(libc::EBUSY) | Some(libc::EEXIST) => return Ok(Round::Again),
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

    /// Points queue `queue` at the AF_XDP socket `xsk` (after the socket is bound) for every
    /// packet.
    #[cfg(test)]
    pub(crate) fn register(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), Error> {
        self.register_filtered(queue, xsk, None)
    }

    /// Points queue `queue` at the AF_XDP socket `xsk` (after the socket is bound) for the
    /// packets `filter` matches (`None`: all); the rule goes in before the socket.
    pub(crate) fn register_filtered(
        &self,
        queue: u32,
        xsk: BorrowedFd<'_>,
        filter: Option<&XdpFilter>,
    ) -> Result<(), Error> {
        if queue >= self.map_entries {
            return Err(Error::QueueOutOfRange {
                interface: self.ifname.clone(),
                queue,
                available: self.map_entries,
            });
        }
        bpf::map_update_bytes(self.rules.as_fd(), queue, &Rule::of(filter).to_bytes())
            .map_err(|e| os_error(e, "writing the queue's filter rule", CAPS_BPF, &self.ifname))?;
        bpf::map_update(self.map.as_fd(), queue, xsk.as_raw_fd() as u32)
            .map_err(|e| os_error(e, "adding the socket to the XSKMAP", CAPS_BPF, &self.ifname))
    }

    /// Removes queue `queue`'s socket, then its rule: its packets go to the stack again.
    pub(crate) fn unregister(&self, queue: u32) -> Result<(), Error> {
        bpf::map_delete(self.map.as_fd(), queue).map_err(|e| {
            os_error(
                e,
                "removing the socket from the XSKMAP",
                CAPS_BPF,
                &self.ifname,
            )
        })?;
        if queue < self.map_entries {
            bpf::map_update_bytes(self.rules.as_fd(), queue, &Rule::none().to_bytes()).map_err(
                |e| {
                    os_error(
                        e,
                        "clearing the queue's filter rule",
                        CAPS_BPF,
                        &self.ifname,
                    )
                },
            )?;
        }
        Ok(())
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

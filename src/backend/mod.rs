//! Backends: the real kernel module (`/dev/netmap`), the in-process emulated one, and on
//! Linux the AF_XDP and AF_PACKET drivers (netmap rings over the kernel's packet sockets).
//!
//! All lay out memory the same way (interface, rings, buffers at the same offsets), so the
//! port, ring and frame code above them is shared. They differ only in how a registration is
//! made, how a sync is done and which descriptors report readiness.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::port_name::{NamePrefix, PortKind, PortSpec};
use crate::region::Region;

pub(crate) mod emulated;
#[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
pub(crate) mod kernel;
#[cfg(target_os = "linux")]
pub(crate) mod linux;
pub(crate) mod wait;
mod waker;

pub(crate) use waker::RingWaker;

/// Which backend to open a port on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The kernel when `/dev/netmap` exists; otherwise the emulated backend for pipe names,
    /// and an error naming the missing module for NIC and VALE names. The default.
    #[default]
    Auto,
    /// Always the kernel module.
    Kernel,
    /// Always the in-process emulated backend (pipes only).
    Emulated,
    /// AF_XDP for interface names without a prefix (Linux); pipe and VALE names follow
    /// `Auto`.
    Xdp,
    /// AF_PACKET for interface names without a prefix (Linux); pipe and VALE names follow
    /// `Auto`.
    AfPacket,
}

impl BackendChoice {
    /// Environment variable that overrides the default choice.
    pub const ENV: &'static str = "NETMAP_RS_BACKEND";

    /// Parses `kernel`, `emulated`, `xdp`, `afpacket` or `auto`.
    pub fn parse(s: &str) -> Result<BackendChoice, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(BackendChoice::Auto),
            "kernel" | "sys" | "netmap" => Ok(BackendChoice::Kernel),
            "emulated" | "emu" | "fallback" => Ok(BackendChoice::Emulated),
            "xdp" | "af_xdp" => Ok(BackendChoice::Xdp),
            "afpacket" | "af_packet" => Ok(BackendChoice::AfPacket),
            other => Err(Error::BindFail(format!(
                "{}={other:?} is not one of kernel, emulated, xdp, afpacket, auto",
                Self::ENV
            ))),
        }
    }

    /// The choice from `NETMAP_RS_BACKEND`, or `Auto` when unset.
    pub fn from_env() -> Result<BackendChoice, Error> {
        match std::env::var(Self::ENV) {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(BackendChoice::Auto),
        }
    }
}

/// The backend a port was actually opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The netmap kernel module.
    Kernel,
    /// The in-process emulation.
    Emulated,
    /// AF_XDP sockets, one per queue, behind netmap rings (Linux).
    Xdp,
    /// An AF_PACKET socket behind netmap rings (Linux).
    AfPacket,
}

impl BackendKind {
    /// The name prefix that opens a port on this backend.
    pub fn prefix(self) -> NamePrefix {
        match self {
            BackendKind::Kernel | BackendKind::Emulated => NamePrefix::Netmap,
            BackendKind::Xdp => NamePrefix::Xdp,
            BackendKind::AfPacket => NamePrefix::AfPacket,
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel netmap",
            BackendKind::Emulated => "emulated netmap pipe",
            BackendKind::Xdp => "AF_XDP",
            BackendKind::AfPacket => "AF_PACKET",
        })
    }
}

/// Registration parameters beyond the name.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenOptions {
    pub tx_rings: u16,
    pub rx_rings: u16,
    pub tx_slots: u32,
    pub rx_slots: u32,
    pub extra_bufs: u32,
    /// `NR_*` flags: the name's and the builder's together.
    pub flags: u64,
}

/// Identity of a memory allocator, for zero-copy buffer swaps between ports and for
/// claiming rings process-wide. Two live ports compare equal exactly when their buffers and
/// rings are the same memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MemIdentity {
    /// The kernel's allocator id (unique among live allocators) and its size.
    #[cfg_attr(
        not(all(feature = "sys", any(target_os = "linux", target_os = "freebsd"))),
        allow(dead_code)
    )]
    Kernel { mem_id: u16, memsize: usize },
    /// An emulated region: its id (shown to users) and its address in this process, which
    /// no other live region can have.
    Emulated { mem_id: u16, base: usize },
    /// The region of an AF_XDP or AF_PACKET port: an id shown to users and its address.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Linux { mem_id: u16, base: usize },
}

impl MemIdentity {
    /// The allocator id users see (`nr_mem_id`).
    pub(crate) fn mem_id(&self) -> u16 {
        match *self {
            MemIdentity::Kernel { mem_id, .. }
            | MemIdentity::Emulated { mem_id, .. }
            | MemIdentity::Linux { mem_id, .. } => mem_id,
        }
    }
}

/// A registration on one backend.
#[derive(Debug)]
pub(crate) enum Backend {
    #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
    Kernel(kernel::KernelPort),
    Emulated(emulated::EmuPort),
    #[cfg(target_os = "linux")]
    Xdp(linux::xdp_port::XdpPort),
    #[cfg(target_os = "linux")]
    AfPacket(linux::afpacket_port::PacketPort),
}

/// What opening a port yields.
pub(crate) struct Opened {
    pub backend: Backend,
    pub region: Arc<Region>,
    pub if_off: usize,
    pub mem: MemIdentity,
    pub extra_bufs: u32,
}

/// Readiness of a port's directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// At least one bound RX ring holds packets.
    pub readable: bool,
    /// At least one bound TX ring has free slots.
    pub writable: bool,
}

/// Whether the kernel module is present (`/dev/netmap` exists).
pub fn kernel_available() -> bool {
    cfg!(all(
        feature = "sys",
        any(target_os = "linux", target_os = "freebsd")
    )) && std::path::Path::new("/dev/netmap").exists()
}

/// Which backend opens `spec`: the name's prefix first, then the choice (for interface
/// names), then netmap's rules (kernel when the module is there, emulated pipes without it).
fn resolve(spec: &PortSpec, choice: BackendChoice) -> Result<BackendKind, Error> {
    match spec.prefix {
        NamePrefix::Xdp => return Ok(BackendKind::Xdp),
        NamePrefix::AfPacket => return Ok(BackendKind::AfPacket),
        NamePrefix::Bare if spec.kind == PortKind::Nic && !spec.rings.includes_host() => {
            match choice {
                BackendChoice::Xdp => return Ok(BackendKind::Xdp),
                BackendChoice::AfPacket => return Ok(BackendKind::AfPacket),
                BackendChoice::Auto if !kernel_available() && cfg!(target_os = "linux") => {
                    return Ok(if linux_xdp_available() {
                        BackendKind::Xdp
                    } else {
                        BackendKind::AfPacket
                    });
                }
                _ => {}
            }
        }
        _ => {}
    }
    match choice {
        BackendChoice::Kernel => Ok(BackendKind::Kernel),
        BackendChoice::Emulated => Ok(BackendKind::Emulated),
        _ if kernel_available() => Ok(BackendKind::Kernel),
        _ if spec.is_pipe() => Ok(BackendKind::Emulated),
        _ => Err(Error::ModuleNotLoaded),
    }
}

#[cfg(target_os = "linux")]
fn linux_xdp_available() -> bool {
    linux::xdp_sockets_available()
}

#[cfg(not(target_os = "linux"))]
fn linux_xdp_available() -> bool {
    false
}

pub(crate) fn open(
    spec: &PortSpec,
    opts: &OpenOptions,
    choice: BackendChoice,
) -> Result<Opened, Error> {
    let kind = resolve(spec, choice)?;
    tracing::info!(port = %spec, ?choice, backend = %kind, "backend chosen");
    match kind {
        BackendKind::Kernel => {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            {
                kernel::open(spec, opts)
            }
            #[cfg(not(all(feature = "sys", any(target_os = "linux", target_os = "freebsd"))))]
            {
                Err(Error::UnsupportedPlatform(
                    "the kernel backend needs the `sys` feature on Linux or FreeBSD; \
                     use a pipe name with the emulated backend"
                        .into(),
                ))
            }
        }
        BackendKind::Emulated => emulated::open(spec, opts),
        BackendKind::Xdp | BackendKind::AfPacket => open_linux(kind, spec, opts),
    }
}

#[cfg(target_os = "linux")]
fn open_linux(kind: BackendKind, spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    if kind == BackendKind::AfPacket {
        return linux::afpacket_port::open(spec, opts);
    }
    match linux::xdp_port::open(spec, opts) {
        // A bare name falls back to AF_PACKET where AF_XDP cannot work here.
        Err(e @ (Error::KernelUnsupported(_) | Error::MissingPrivilege { .. }))
            if spec.prefix == NamePrefix::Bare =>
        {
            tracing::info!(port = %spec, reason = %e, "AF_XDP unavailable; using AF_PACKET");
            linux::afpacket_port::open(spec, opts)
        }
        r => r,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_linux(kind: BackendKind, spec: &PortSpec, _opts: &OpenOptions) -> Result<Opened, Error> {
    Err(Error::UnsupportedPlatform(format!(
        "{spec}: the {kind} backend exists on Linux only; use the netmap module (netmap:{})",
        spec.ifname
    )))
}

impl Backend {
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(_) => BackendKind::Kernel,
            Backend::Emulated(_) => BackendKind::Emulated,
            #[cfg(target_os = "linux")]
            Backend::Xdp(_) => BackendKind::Xdp,
            #[cfg(target_os = "linux")]
            Backend::AfPacket(_) => BackendKind::AfPacket,
        }
    }

    #[inline]
    pub(crate) fn txsync(&self) -> Result<(), Error> {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(k) => k.txsync(),
            Backend::Emulated(e) => e.txsync(),
            #[cfg(target_os = "linux")]
            Backend::Xdp(x) => x.txsync(),
            #[cfg(target_os = "linux")]
            Backend::AfPacket(p) => p.txsync(),
        }
    }

    #[inline]
    pub(crate) fn rxsync(&self) -> Result<(), Error> {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(k) => k.rxsync(),
            Backend::Emulated(e) => e.rxsync(),
            #[cfg(target_os = "linux")]
            Backend::Xdp(x) => x.rxsync(),
            #[cfg(target_os = "linux")]
            Backend::AfPacket(p) => p.rxsync(),
        }
    }

    /// A readiness source for one ring alone (see [`RingWaker`]): `idx` is the ring's
    /// position among the port's TX (`tx`) or RX rings.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn ring_waker(&self, tx: bool, idx: usize) -> Result<RingWaker, Error> {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(k) => k.ring_waker(tx),
            Backend::Emulated(e) => e.ring_waker(tx, idx),
            #[cfg(target_os = "linux")]
            Backend::Xdp(x) => x.ring_waker(tx, idx),
            #[cfg(target_os = "linux")]
            Backend::AfPacket(p) => p.ring_waker(tx, idx),
        }
    }

    /// Whether the other end of a pipe is open: `None` where the backend cannot tell.
    pub(crate) fn peer_present(&self) -> Option<bool> {
        match self {
            Backend::Emulated(e) => Some(e.peer_present()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The RX descriptor for callers that poll it themselves (`AsFd`).
    pub(crate) fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(k) => k.fd(),
            Backend::Emulated(e) => e.exposed_rx_fd(),
            #[cfg(target_os = "linux")]
            Backend::Xdp(x) => x.exposed_rx_fd(),
            #[cfg(target_os = "linux")]
            Backend::AfPacket(p) => p.exposed_rx_fd(),
        }
    }

    /// Blocks until a bound ring is ready in a wanted direction or the timeout passes.
    /// `check` computes readiness from the rings (the emulated backend's poll; the kernel
    /// computes it itself).
    pub(crate) fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        match self {
            #[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
            Backend::Kernel(k) => k.wait(want, timeout, check),
            Backend::Emulated(e) => e.wait(want, timeout, check),
            #[cfg(target_os = "linux")]
            Backend::Xdp(x) => x.wait(want, timeout, check),
            #[cfg(target_os = "linux")]
            Backend::AfPacket(p) => p.wait(want, timeout, check),
        }
    }
}

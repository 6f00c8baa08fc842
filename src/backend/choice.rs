//! Choosing a backend: what the user asks for ([`BackendChoice`]), what a port got
//! ([`BackendKind`]), and the policy between them (the name's prefix first, then the choice,
//! then netmap's rules).

use crate::error::Error;
use crate::port_name::{NamePrefix, PortKind, PortSpec};

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

/// Whether the kernel module is present (`/dev/netmap` exists).
pub fn kernel_available() -> bool {
    cfg!(netmap_kernel) && std::path::Path::new("/dev/netmap").exists()
}

/// Which backend opens `spec`: the name's prefix first, then the choice (for interface
/// names), then netmap's rules (kernel when the module is there, emulated pipes without it).
pub(super) fn resolve(spec: &PortSpec, choice: BackendChoice) -> Result<BackendKind, Error> {
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
    super::linux::xdp_sockets_available()
}

#[cfg(not(target_os = "linux"))]
fn linux_xdp_available() -> bool {
    false
}

//! The crate's error type.
//!
//! Every error names its cause and, where there is one, the fix. Errors convert into
//! [`std::io::Error`] with a matching [`std::io::ErrorKind`], so they flow through Tokio's
//! `AsyncRead`/`AsyncWrite`/codec machinery unchanged.

use std::fmt;
use std::io;

/// Errors returned by netmap-rs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the underlying system that has no more specific variant.
    Io(io::Error),
    /// The operation would block: no packet to receive, or no room to send right now.
    WouldBlock,
    /// The kernel refused to register the port; the message says why and what to do.
    BindFail(String),
    /// The ring index is not one of the rings bound to this port.
    InvalidRingIndex(usize),
    /// The packet (of this many bytes) is longer than the call takes: one netmap buffer for
    /// slot-level calls (reservations), [`TxRing::max_packet_size`](crate::TxRing::max_packet_size)
    /// for [`TxRing::send`](crate::TxRing::send), which splits longer packets over slots.
    PacketTooLarge(usize),
    /// Not enough free slots in the ring for the requested operation.
    InsufficientSpace,
    /// The requested backend or operation is not available on this platform.
    UnsupportedPlatform(String),
    /// The operation is not supported by the emulated (fallback) backend.
    FallbackUnsupported(String),
    /// The port name does not follow the netmap grammar.
    InvalidPortName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `/dev/netmap` does not exist: the netmap kernel module is not loaded.
    ModuleNotLoaded,
    /// Opening `/dev/netmap` or registering the port was not permitted.
    PermissionDenied(String),
    /// The named interface (or VALE switch or port) does not exist, or, for a `netmap:` port,
    /// its driver has no netmap support. One variant for every backend.
    NoSuchInterface {
        /// The name as given.
        name: String,
        /// What was being done, and what the backend reported.
        detail: String,
    },
    /// The port (or one of its rings) is already in use, for example in exclusive mode.
    PortBusy(String),
    /// A handle for this ring is already live; drop it before asking again.
    RingInUse(usize),
    /// A slot read from shared memory holds a buffer index or length outside the mapping.
    /// The slot is consumed when this is reported (the cursor moves past it and it goes back
    /// to the kernel at the next sync), so one bad slot cannot stall the ring; its contents
    /// are never read.
    CorruptSlot {
        /// Ring index (as the port numbers its rings).
        ring: usize,
        /// Slot index within the ring.
        slot: u32,
        /// The buffer index found in the slot.
        buf_idx: u32,
        /// The length found in the slot.
        len: u16,
    },
    /// The shared memory region does not have the layout the ABI promises.
    BadLayout(String),
    /// The kernel speaks a netmap API version this crate does not.
    ApiMismatch {
        /// Version the kernel reported.
        kernel: u16,
    },
    /// A zero-copy buffer swap was asked between ports that do not share a memory region.
    MemoryMismatch,
    /// The ring was found in a state the netmap rules forbid (head/cur outside their range);
    /// the kernel would reset such a ring and drop its packets.
    RingState(String),
    /// The named network interface exists but is administratively down.
    InterfaceDown(String),
    /// The queue (channel) asked for is not one the interface has.
    QueueOutOfRange {
        /// Interface name.
        interface: String,
        /// The queue asked for.
        queue: u32,
        /// How many queues the interface has.
        available: u32,
    },
    /// The process lacks a privilege the operation needs.
    MissingPrivilege {
        /// What was being done.
        what: String,
        /// The capabilities that grant it.
        needs: &'static str,
    },
    /// The running kernel lacks a feature the backend needs; the message names it and the
    /// alternative.
    KernelUnsupported(String),
    /// Another XDP program is already attached to the interface; it is left untouched.
    /// (The program this crate attaches is shared by every port and process using the
    /// interface, not reported.)
    XdpProgramAttached {
        /// Interface name.
        interface: String,
        /// Kernel id of the attached program (0 when unknown).
        prog_id: u32,
        /// The name it was loaded under, as `bpftool prog` and `ip -d link` show it (empty
        /// when unknown).
        prog_name: String,
    },
    /// A frame is longer than the interface's MTU allows.
    FrameOverMtu {
        /// Frame length in bytes (Ethernet header included).
        len: usize,
        /// Largest frame the interface takes (MTU plus the 14-byte Ethernet header).
        max: usize,
    },
    /// The interface's MTU admits frames longer than this port can receive whole: they would
    /// be dropped (AF_XDP) or cut (AF_PACKET), so the port is not opened.
    MtuTooLarge {
        /// Interface name.
        interface: String,
        /// The interface's MTU.
        mtu: u32,
        /// Largest frame (Ethernet header included) the port receives whole.
        max_frame: usize,
    },
    /// A received packet spread over slots (`NS_MOREFRAG`) ends without its last slot in
    /// view: only a broken or hostile peer publishes one (every backend of this crate, and
    /// netmap's pipes, publish whole packets). Its slots are consumed, so the ring goes on.
    TruncatedPacket {
        /// Ring index.
        ring: usize,
        /// Slot of the packet's first fragment.
        slot: u32,
        /// Bytes in the fragments that were there.
        len: usize,
    },
    /// A packet spread over more slots (`NS_MOREFRAG` chain) than the backend hands to the
    /// kernel as one packet: it was not sent (the other packets of the batch were).
    TooManyFragments {
        /// Slots in the chain.
        slots: usize,
        /// Most slots one packet may take here.
        max: usize,
    },
    /// The process holding the other end of an emulated pipe was killed while it had the end
    /// open. A sender gets this at once; a receiver after it has taken every packet that was
    /// delivered before. The message says which end.
    PeerGone(String),
    /// The UDP layer found no MAC address for a destination's next hop in the kernel's
    /// neighbour table.
    NeighbourUnresolved {
        /// The next hop (the destination itself, or its gateway).
        ip: std::net::IpAddr,
        /// The interface the route leaves through.
        interface: String,
        /// What the table says (no entry, incomplete, failed).
        state: String,
    },
    /// The UDP layer cannot send to a destination from this port: no route, a route through
    /// another interface, no local address of that family, or no interface to ask.
    NoRoute {
        /// The destination.
        dst: std::net::IpAddr,
        /// Why, and what to do.
        reason: String,
    },
    /// [`NetmapBuilder::share_memory_with`](crate::NetmapBuilder::share_memory_with) named a
    /// port whose memory this port cannot open on (another backend, or a backend whose
    /// buffers cannot be shared).
    CannotShareMemory {
        /// The port being opened.
        port: String,
        /// The port whose memory was asked for.
        with: String,
        /// Why not, and what to do instead.
        reason: String,
    },
    /// The memory named by
    /// [`NetmapBuilder::share_memory_with`](crate::NetmapBuilder::share_memory_with) has no
    /// room left for this port's rings or buffers; the message gives both sizes.
    MemoryExhausted(String),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::WouldBlock => f.write_str("operation would block (ring empty or full)"),
            Error::BindFail(m) => write!(f, "failed to bind netmap port: {m}"),
            Error::InvalidRingIndex(i) => write!(
                f,
                "ring index {i} is not bound to this port (see num_tx_rings()/num_rx_rings())"
            ),
            Error::PacketTooLarge(n) => write!(
                f,
                "packet of {n} bytes is too long: one netmap buffer holds max_payload_size() \
                 bytes, TxRing::send splits packets up to max_packet_size() over slots"
            ),
            Error::InsufficientSpace => {
                f.write_str("not enough free slots in the ring: sync() and retry, or wait")
            }
            Error::UnsupportedPlatform(m) => write!(f, "unsupported on this platform: {m}"),
            Error::FallbackUnsupported(m) => {
                write!(f, "not supported by the emulated backend: {m}")
            }
            Error::InvalidPortName { name, reason } => {
                write!(f, "invalid netmap port name {name:?}: {reason}")
            }
            Error::ModuleNotLoaded => f.write_str(
                "/dev/netmap does not exist: the netmap kernel module is not loaded. \
                 Load it with `sudo modprobe netmap` (or `sudo insmod netmap.ko` from a netmap \
                 build; on FreeBSD netmap is in the base kernel, check `kldstat`), or use a pipe \
                 name such as \"pipe{1\" with NETMAP_RS_BACKEND=emulated",
            ),
            Error::PermissionDenied(m) => write!(
                f,
                "permission denied: {m}. netmap needs root or CAP_NET_ADMIN: run as root \
                 (sudo) or give the binary the capability (setcap cap_net_admin+ep)"
            ),
            Error::NoSuchInterface { name, detail } => write!(
                f,
                "no such interface {name:?} ({detail}). Check the name with `ip link show` \
                 (inside the right network namespace); a netmap: port also needs a driver \
                 with netmap support (native or emulated mode)"
            ),
            Error::PortBusy(m) => write!(
                f,
                "port busy: {m}. Another registration holds it, in this process or another \
                 (exclusive /x mode, or a pipe end already open); close it or choose other rings"
            ),
            Error::RingInUse(i) => write!(
                f,
                "ring {i} already has a live handle; drop it before asking for the ring again"
            ),
            Error::CorruptSlot {
                ring,
                slot,
                buf_idx,
                len,
            } => write!(
                f,
                "ring {ring} slot {slot} holds buffer index {buf_idx} / length {len} outside \
                 the mapped buffers; the slot was not used"
            ),
            Error::BadLayout(m) => write!(f, "netmap memory layout is inconsistent: {m}"),
            Error::ApiMismatch { kernel } => write!(
                f,
                "the kernel's netmap speaks API {kernel}, this crate speaks {}..={}: \
                 install a netmap module of a matching version",
                crate::abi::NETMAP_MIN_API,
                crate::abi::NETMAP_MAX_API
            ),
            Error::MemoryMismatch => f.write_str(
                "zero-copy swap needs both ports in the same netmap memory region \
                 (same allocator, e.g. pipes of one parent or the same @mem id)",
            ),
            Error::RingState(m) => write!(f, "ring state violates netmap rules: {m}"),
            Error::InterfaceDown(i) => write!(
                f,
                "interface {i:?} is down: bring it up with `ip link set dev {i} up`"
            ),
            Error::QueueOutOfRange {
                interface,
                queue,
                available,
            } => write!(
                f,
                "queue {queue} out of range: {interface:?} has {available} queue(s) \
                 (0..{available}); see `ethtool -l {interface}`, or raise the count with \
                 `ethtool -L {interface} combined N`"
            ),
            Error::MissingPrivilege { what, needs } => write!(
                f,
                "permission denied: {what} needs {needs}: run as root (sudo) or grant the \
                 capabilities (setcap)"
            ),
            Error::KernelUnsupported(m) => write!(f, "not supported by this kernel: {m}"),
            Error::XdpProgramAttached {
                interface,
                prog_id,
                prog_name,
            } => write!(
                f,
                "interface {interface:?} already has an XDP program attached (id {prog_id}, \
                 name {prog_name:?}) by someone else; netmap-rs neither replaces nor removes \
                 it. Detach it (`ip link set dev {interface} xdp off`, `xdp-loader unload \
                 {interface} --all`) or use the AF_PACKET backend (afpacket:{interface})"
            ),
            Error::FrameOverMtu { len, max } => write!(
                f,
                "frame of {len} bytes exceeds the interface limit of {max} bytes (MTU + \
                 Ethernet header): send smaller frames or raise the MTU (`ip link set dev IF \
                 mtu N`)"
            ),
            Error::MtuTooLarge {
                interface,
                mtu,
                max_frame,
            } => write!(
                f,
                "interface {interface:?} has MTU {mtu} (frames up to {} bytes), but this port \
                 receives frames of at most {max_frame} bytes whole: longer ones would be lost. \
                 Lower the MTU (`ip link set dev {interface} mtu {}`), or use the netmap \
                 module (netmap:{interface})",
                *mtu as usize + 14,
                max_frame.saturating_sub(14)
            ),
            Error::TruncatedPacket { ring, slot, len } => write!(
                f,
                "ring {ring}: the packet starting at slot {slot} is cut short ({len} bytes in \
                 NS_MOREFRAG slots, no last slot in view); a broken or hostile peer published \
                 it. Its slots were consumed; the next packet follows"
            ),
            Error::TooManyFragments { slots, max } => write!(
                f,
                "a packet spread over {slots} slots (NS_MOREFRAG) exceeds the {max} slot(s) \
                 this port sends as one packet; it was not sent. Send it with \
                 TxRing::send (which uses the fewest slots) or as a shorter packet"
            ),
            Error::PeerGone(m) => write!(
                f,
                "peer gone: {m}. Restart the peer and reopen the pipe end (closing this end \
                 removes the shared memory once no process uses it)"
            ),
            Error::NeighbourUnresolved {
                ip,
                interface,
                state,
            } => write!(
                f,
                "no MAC address for {ip} on {interface:?} in the kernel's neighbour table \
                 ({state}): let the kernel resolve it first (`ping -c1 -I {interface} {ip}`), or \
                 add a static entry (`ip neigh replace {ip} lladdr MAC dev {interface}`), or \
                 reply to a datagram received from it (a reply needs no lookup)"
            ),
            Error::NoRoute { dst, reason } => write!(
                f,
                "cannot send to {dst} from this port: {reason} (see `ip route get {dst}`)"
            ),
            Error::CannotShareMemory { port, with, reason } => {
                write!(f, "{port} cannot open on the memory of {with}: {reason}")
            }
            Error::MemoryExhausted(m) => write!(
                f,
                "shared memory exhausted: {m}. Open the first port with room for more \
                 (NetmapBuilder::memory_for_ports(n)), or give this port fewer slots"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::WouldBlock {
            Error::WouldBlock
        } else {
            Error::Io(e)
        }
    }
}

impl Error {
    /// [`Error::NoSuchInterface`] for `name`.
    #[cfg_attr(not(any(target_os = "linux", netmap_kernel)), allow(dead_code))]
    pub(crate) fn no_such_interface(name: &str, detail: impl Into<String>) -> Error {
        Error::NoSuchInterface {
            name: name.to_string(),
            detail: detail.into(),
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::Io(e) => e.kind(),
            Error::WouldBlock | Error::InsufficientSpace => K::WouldBlock,
            Error::InvalidRingIndex(_)
            | Error::PacketTooLarge(_)
            | Error::InvalidPortName { .. }
            | Error::MemoryMismatch
            | Error::QueueOutOfRange { .. }
            | Error::FrameOverMtu { .. }
            | Error::TooManyFragments { .. }
            | Error::MtuTooLarge { .. } => K::InvalidInput,
            Error::ModuleNotLoaded | Error::NoSuchInterface { .. } => K::NotFound,
            Error::InterfaceDown(_) => K::NotConnected,
            Error::PeerGone(_) => K::BrokenPipe,
            Error::NeighbourUnresolved { .. } | Error::NoRoute { .. } => K::HostUnreachable,
            Error::PermissionDenied(_) | Error::MissingPrivilege { .. } => K::PermissionDenied,
            Error::PortBusy(_) | Error::RingInUse(_) | Error::XdpProgramAttached { .. } => {
                K::AddrInUse
            }
            Error::UnsupportedPlatform(_)
            | Error::FallbackUnsupported(_)
            | Error::KernelUnsupported(_)
            | Error::CannotShareMemory { .. } => K::Unsupported,
            Error::MemoryExhausted(_) => K::OutOfMemory,
            Error::CorruptSlot { .. }
            | Error::TruncatedPacket { .. }
            | Error::BadLayout(_)
            | Error::ApiMismatch { .. }
            | Error::RingState(_) => K::InvalidData,
            Error::BindFail(_) => K::Other,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::WouldBlock => io::ErrorKind::WouldBlock.into(),
            other => io::Error::new(other.kind(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn would_block_round_trips_through_io_error() {
        let io: io::Error = Error::WouldBlock.into();
        assert_eq!(io.kind(), io::ErrorKind::WouldBlock);
        let back: Error = io.into();
        assert!(matches!(back, Error::WouldBlock));
    }

    #[test]
    fn kinds_and_messages_name_cause_and_fix() {
        let e: io::Error = Error::PacketTooLarge(9000).into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("9000"));
        let m = Error::ModuleNotLoaded.to_string();
        assert!(m.contains("modprobe netmap") && m.contains("not loaded"));
        let p = Error::PermissionDenied("open /dev/netmap".into()).to_string();
        assert!(p.contains("root"));
        assert_eq!(
            io::Error::from(Error::RingInUse(0)).kind(),
            io::ErrorKind::AddrInUse
        );
    }
}

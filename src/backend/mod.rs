//! The seam between the user API and the drivers.
//!
//! A driver is to this crate what a netmap adapter is to the kernel module
//! (`nm_register`/`nm_txsync`/`nm_rxsync` in `netmap_kern.h`): it registers a port over
//! memory laid out as netmap lays it out (the `ring` layer), and moves slots
//! between those rings and its "hardware" when asked to sync. What every driver provides,
//! and nothing else:
//!
//! - **register**: a free function `open(spec, opts) -> Opened` in its folder, returning the
//!   region, the offset of the `netmap_if` and the memory's `MemIdentity`;
//! - **txsync / rxsync / readiness / statistics**: the `Driver` trait, implemented by the
//!   folder's `Port` type.
//!
//! The drivers, one folder each:
//!
//! - `kernel`: the netmap kernel module (`/dev/netmap`; Linux and FreeBSD, feature `sys`).
//! - `emulated`: netmap pipes emulated in shared memory, within and across processes.
//! - `xdp`: AF_XDP sockets, one per queue (Linux).
//! - `afpacket`: an AF_PACKET socket with `TPACKET_V3` RX blocks and TX frames (Linux).
//! - `linux`: the plumbing both Linux drivers use (sockets, interfaces, netlink, ring
//!   memory), and their tests.
//!
//! A port holds its driver as the `Backend` enum, not as a `Box<dyn Driver>`: the set of
//! drivers is closed and known at compile time, each variant exists only on the platforms
//! that have it (`cfg`), and a sync, called once per batch on the hot path, is a `match` the
//! compiler inlines instead of an indirect call. The trait states the contract; the enum
//! dispatches it (`dispatch!`).

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::port_name::{NamePrefix, PortSpec};
use crate::region::Region;
use crate::ring::Dir;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) mod afpacket;
mod choice;
#[allow(unsafe_code)]
pub(crate) mod emulated;
mod fanout;
#[cfg(netmap_kernel)]
pub(crate) mod kernel;
#[cfg(target_os = "linux")]
pub(crate) mod linux;
mod stats;
pub(crate) mod wait;
pub(crate) mod waker;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) mod xdp;

pub use choice::{kernel_available, BackendChoice, BackendKind};
pub(crate) use fanout::new_fanout_group;
pub use fanout::FanoutMode;
#[cfg(netmap_kernel)]
pub(crate) use kernel::{pools_info, port_info};
#[cfg(netmap_kernel)]
pub use kernel::{PoolsInfo, PortInfo};
pub use stats::PortStats;
pub(crate) use waker::{Armed, RingWaker};

/// What a driver's port does once registered: the per-port half of the contract (the other
/// half is the folder's `open`). Every method may be called from any thread.
pub(crate) trait Driver {
    /// Hands the slots between each bound TX ring's old `head` and the `head` the user
    /// published to the "hardware", and moves `tail` over the slots it has finished with
    /// (`NIOCTXSYNC`).
    fn txsync(&self) -> Result<(), Error>;
    /// Gives the "hardware" back the RX slots the user released (up to `head`) and moves
    /// `tail` over newly received packets (`NIOCRXSYNC`).
    fn rxsync(&self) -> Result<(), Error>;
    /// A readiness source for one ring alone (see [`RingWaker`]): `idx` is the ring's
    /// position among the port's rings of direction `dir`.
    fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error>;
    /// The RX descriptor for callers that poll it themselves (`AsFd`).
    fn exposed_rx_fd(&self) -> BorrowedFd<'_>;
    /// Blocks until a bound ring is ready in a wanted direction or the timeout passes, syncing
    /// the wanted directions as netmap's `poll` does. `check` computes readiness from the
    /// rings (for drivers whose descriptors cannot).
    fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error>;
    /// Whether the other end of a pipe is open: `None` where the driver cannot tell.
    fn peer_present(&self) -> Option<bool> {
        None
    }
    /// How soon a waiter should sync again by itself: `Some` while the driver has work that
    /// no event will announce (AF_XDP frames a busy device did not take: only another kick
    /// sends them, and no completion wakes anyone meanwhile).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// Most bytes one TX slot carries when that is less than its buffer (AF_XDP: a UMEM
    /// frame after the kernel's headroom); longer packets are split over slots there.
    fn slot_payload(&self) -> Option<usize> {
        None
    }
    /// The user busy-polls this port, spinning up to `spin` in each wait: a driver whose
    /// kernel side can be polled from the socket asks for it. Default: nothing to do.
    fn prefer_busy_poll(&self, spin: Duration) {
        let _ = spin;
    }
    /// The kernel's drop and error counters since the port opened: of the whole port
    /// (`ring: None`) or of the queue behind ring `ring` (the caller checked the index).
    /// Default: the driver counts nothing (every field `None`).
    fn stats(&self, ring: Option<usize>) -> Result<PortStats, Error> {
        let _ = ring;
        Ok(PortStats::default())
    }
    /// Whether rxsync leaves each packet's receive time in its RX slot's `ptr` field
    /// (nanoseconds since the epoch); otherwise the ring's `ts` is the stamp, where the driver
    /// sets one (`NR_TIMESTAMP`).
    fn slot_stamps(&self) -> bool {
        false
    }
    /// Whether [`rx_in_place`](Driver::rx_in_place) lends packets (it returns
    /// [`InPlace::Unsupported`] exactly when this is `false`).
    fn lends_in_place(&self) -> bool {
        false
    }
    /// Hands up to `max` packets received on RX ring `idx` to `f` (bytes, receive time in ns
    /// since the epoch, 0 for none) where they lie in the driver's own receive memory, with
    /// no copy into slots, each given back to the "hardware" after its call; waits up to
    /// `timeout` (`None`: no limit) for the first. `tail` is the ring's tail as its handle
    /// last saw it, with every slot before it consumed: the driver lends only while its own
    /// tail is the same ([`InPlace::SlotsFirst`] otherwise, so that packets an rxsync put in
    /// slots go first). Default: the driver has no such memory ([`InPlace::Unsupported`]).
    fn rx_in_place<F: FnMut(&[u8], u64)>(
        &self,
        idx: usize,
        tail: u32,
        max: usize,
        timeout: Option<Duration>,
        f: F,
    ) -> Result<InPlace, Error>
    where
        Self: Sized,
    {
        let _ = (idx, tail, max, timeout, f);
        Ok(InPlace::Unsupported)
    }
}

/// What [`Driver::rx_in_place`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only the Linux drivers lend (AF_PACKET).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum InPlace {
    /// The driver's packets are only ever read from slots (after an rxsync).
    Unsupported,
    /// Slots hold packets the ring's handle has not seen: read those first.
    SlotsFirst,
    /// This many packets went to the callback (0: none came before the timeout).
    Handed(usize),
}

/// The RX block retire timeout of `afpacket:` ports without
/// [`NetmapBuilder::block_timeout`](crate::NetmapBuilder::block_timeout): zero, no blocks
/// (`TPACKET_V2` frames, one wake-up per packet, the lowest latency). Blocks trade latency
/// for CPU: even the kernel's finest timeout (1 ms) puts about a millisecond under every
/// round trip of request/response traffic (ping/pong p50 76 µs on frames, 1002 µs on 1 ms
/// blocks, README), so they are opt-in for receivers that count packets rather than answer
/// them (captures, sinks, meters: about 6x less CPU per packet).
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::ZERO;

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
    /// Buffer pool on huge pages where the driver allocates it (AF_XDP, AF_PACKET).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub huge_pages: bool,
    /// `afpacket:` with several rings: the fanout mode its sockets join with (`None`: the
    /// default, [`FanoutMode::Hash`], when more than one ring is asked for).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fanout: Option<FanoutMode>,
    /// The fanout group id every per-ring registration of one port shares (set by
    /// `build_per_ring`; `None`: a fresh id).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fanout_group: Option<u16>,
    /// `afpacket:` RX block retire timeout (`None`: the default; zero: `TPACKET_V2` frames).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub block_timeout: Option<Duration>,
    /// The memory to open on (`NetmapBuilder::share_memory_with`); `None`: a memory of
    /// the port's own.
    pub share: Option<ShareWith>,
    /// Ports of this one's size its own memory has room for (`memory_for_ports`; 0 or 1:
    /// itself alone). AF_XDP only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub mem_ports: u32,
}

/// The memory of an open port, for opening another port on it
/// (`NetmapBuilder::share_memory_with`).
#[derive(Debug, Clone)]
pub(crate) struct ShareWith {
    /// The port's name.
    pub name: String,
    /// Its backend.
    pub kind: BackendKind,
    /// Its memory, where it can take more ports (AF_XDP).
    #[cfg(target_os = "linux")]
    pub xdp: Option<Arc<xdp::mem::XdpMem>>,
}

/// Why a port on `kind` cannot open on the memory of `with`, if it cannot.
fn share_refusal(kind: BackendKind, with: &ShareWith) -> Option<String> {
    #[cfg(target_os = "linux")]
    let other_has_mem = with.xdp.is_some();
    #[cfg(not(target_os = "linux"))]
    let other_has_mem = false;
    match kind {
        BackendKind::Xdp if other_has_mem => None,
        BackendKind::Xdp => Some(format!(
            "it is on the {} backend, and an xdp: port shares only the UMEM of another xdp: \
             port; open both on xdp:, or copy between them",
            with.kind
        )),
        BackendKind::AfPacket => Some(
            "AF_PACKET frames live in the kernel's TPACKET ring of each socket, which no other \
             port can use, and every frame is copied between that ring and a slot; buffers \
             are shared only between xdp: ports: open both on xdp:, or copy between them"
                .into(),
        ),
        BackendKind::Kernel => Some(
            "on the netmap module, ports choose their memory by allocator id: add @N to both \
             names (netmap:eth0@2, netmap:eth1@2)"
                .into(),
        ),
        BackendKind::Emulated => Some(
            "emulated pipes share the memory of their parent name (x{1, x}1, x{2 ...): name \
             the pipes after one parent"
                .into(),
        ),
    }
}

/// Identity of a memory allocator, for zero-copy buffer swaps between ports and for
/// claiming rings process-wide. Two live ports compare equal exactly when their buffers and
/// rings are the same memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MemIdentity {
    /// The kernel's allocator id (unique among live allocators) and its size.
    #[cfg_attr(not(netmap_kernel), allow(dead_code))]
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

/// A registration on one driver.
#[derive(Debug)]
pub(crate) enum Backend {
    #[cfg(netmap_kernel)]
    Kernel(kernel::Port),
    Emulated(emulated::Port),
    #[cfg(target_os = "linux")]
    Xdp(xdp::Port),
    #[cfg(target_os = "linux")]
    AfPacket(afpacket::Port),
}

/// Calls `$call` on the driver inside a [`Backend`], whichever it is: the one `match` over
/// the drivers (each arm present where its driver is built).
macro_rules! dispatch {
    ($backend:expr, $port:ident => $call:expr) => {
        match $backend {
            #[cfg(netmap_kernel)]
            Backend::Kernel($port) => $call,
            Backend::Emulated($port) => $call,
            #[cfg(target_os = "linux")]
            Backend::Xdp($port) => $call,
            #[cfg(target_os = "linux")]
            Backend::AfPacket($port) => $call,
        }
    };
}

/// What opening a port yields.
pub(crate) struct Opened {
    pub backend: Backend,
    pub region: Arc<Region>,
    pub if_off: usize,
    /// Byte range of the buffer pool in the region, as the driver's allocator laid it out
    /// (no buffer is ever seen outside it).
    pub pool: std::ops::Range<usize>,
    /// Rings whose slots share their buffers with another ring of the memory, slot for slot
    /// (an emulated pipe's TX ring and its peer's RX ring): `(ring offset, group)`, the
    /// group being the same value for both. Empty where no two rings share slots.
    pub slot_groups: Vec<(usize, usize)>,
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

/// Registers `spec` on the driver that [`BackendChoice`] and the name select.
pub(crate) fn open(
    spec: &PortSpec,
    opts: &OpenOptions,
    choice: BackendChoice,
) -> Result<Opened, Error> {
    let kind = choice::resolve(spec, choice)?;
    let bare_linux = kind == BackendKind::Xdp && spec.prefix == NamePrefix::Bare;
    if opts.fanout.is_some() && kind != BackendKind::AfPacket && !bare_linux {
        return Err(Error::BindFail(format!(
            "{spec}: a fanout mode spreads packets over the sockets of an afpacket: port; the \
             {kind} backend has rings per queue of its own: drop the fanout() call, or open \
             afpacket:{}",
            spec.ifname
        )));
    }
    if let Some(f) = &spec.filter {
        if matches!(kind, BackendKind::Kernel | BackendKind::Emulated) {
            return Err(Error::BindFail(format!(
                "{spec}: the {kind} backend has no packet filter (#{f}): an XDP program or a \
                 socket filter decides in the kernel which packets reach xdp: and afpacket: \
                 ports; open xdp:{0} or afpacket:{0}, or open without the filter and pass \
                 what you do not want to the host rings yourself",
                spec.ifname
            )));
        }
    }
    if let Some(with) = &opts.share {
        if let Some(reason) = share_refusal(kind, with) {
            return Err(Error::CannotShareMemory {
                port: spec.to_string(),
                with: with.name.clone(),
                reason,
            });
        }
    }
    tracing::info!(port = %spec, ?choice, backend = %kind, "backend chosen");
    match kind {
        BackendKind::Kernel => open_kernel(spec, opts),
        BackendKind::Emulated => emulated::open(spec, opts),
        BackendKind::Xdp | BackendKind::AfPacket => open_linux(kind, spec, opts),
    }
}

#[cfg(netmap_kernel)]
fn open_kernel(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    kernel::open(spec, opts)
}

#[cfg(not(netmap_kernel))]
fn open_kernel(_spec: &PortSpec, _opts: &OpenOptions) -> Result<Opened, Error> {
    Err(Error::UnsupportedPlatform(
        "the kernel backend needs the `sys` feature on Linux or FreeBSD; use a pipe name \
         with the emulated backend"
            .into(),
    ))
}

#[cfg(target_os = "linux")]
fn open_linux(kind: BackendKind, spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    if kind == BackendKind::AfPacket || opts.fanout.is_some() {
        return afpacket::open(spec, opts);
    }
    match xdp::open(spec, opts) {
        // A bare name falls back to AF_PACKET where AF_XDP cannot work here.
        Err(e @ (Error::KernelUnsupported(_) | Error::MissingPrivilege { .. }))
            if spec.prefix == NamePrefix::Bare && opts.share.is_none() =>
        {
            tracing::info!(port = %spec, reason = %e, "AF_XDP unavailable; using AF_PACKET");
            afpacket::open(spec, opts)
        }
        r => r,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_linux(kind: BackendKind, spec: &PortSpec, _opts: &OpenOptions) -> Result<Opened, Error> {
    let _ = NamePrefix::Bare;
    Err(Error::UnsupportedPlatform(format!(
        "{spec}: the {kind} backend exists on Linux only; use the netmap module (netmap:{})",
        spec.ifname
    )))
}

impl Backend {
    /// Which driver this is.
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            #[cfg(netmap_kernel)]
            Backend::Kernel(_) => BackendKind::Kernel,
            Backend::Emulated(_) => BackendKind::Emulated,
            #[cfg(target_os = "linux")]
            Backend::Xdp(_) => BackendKind::Xdp,
            #[cfg(target_os = "linux")]
            Backend::AfPacket(_) => BackendKind::AfPacket,
        }
    }

    /// This port's memory, for opening another port on it.
    pub(crate) fn share_with(&self, name: &str) -> ShareWith {
        ShareWith {
            name: name.to_string(),
            kind: self.kind(),
            #[cfg(target_os = "linux")]
            xdp: match self {
                Backend::Xdp(p) => Some(p.memory()),
                _ => None,
            },
        }
    }

    /// See [`Driver::txsync`].
    #[inline]
    pub(crate) fn txsync(&self) -> Result<(), Error> {
        dispatch!(self, p => p.txsync())
    }

    /// See [`Driver::rxsync`].
    #[inline]
    pub(crate) fn rxsync(&self) -> Result<(), Error> {
        dispatch!(self, p => p.rxsync())
    }

    /// See [`Driver::ring_waker`].
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        dispatch!(self, p => p.ring_waker(dir, idx))
    }

    /// See [`Driver::peer_present`].
    pub(crate) fn peer_present(&self) -> Option<bool> {
        dispatch!(self, p => p.peer_present())
    }

    /// See [`Driver::prefer_busy_poll`].
    pub(crate) fn prefer_busy_poll(&self, spin: Duration) {
        dispatch!(self, p => p.prefer_busy_poll(spin))
    }

    /// See [`Driver::retry_after`].
    #[inline]
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        dispatch!(self, p => p.retry_after())
    }

    /// See [`Driver::slot_payload`].
    pub(crate) fn slot_payload(&self) -> Option<usize> {
        dispatch!(self, p => p.slot_payload())
    }

    /// See [`Driver::stats`].
    pub(crate) fn stats(&self, ring: Option<usize>) -> Result<PortStats, Error> {
        dispatch!(self, p => p.stats(ring))
    }

    /// See [`Driver::slot_stamps`].
    pub(crate) fn slot_stamps(&self) -> bool {
        dispatch!(self, p => p.slot_stamps())
    }

    /// See [`Driver::lends_in_place`].
    pub(crate) fn lends_in_place(&self) -> bool {
        dispatch!(self, p => p.lends_in_place())
    }

    /// See [`Driver::rx_in_place`].
    #[inline]
    pub(crate) fn rx_in_place<F: FnMut(&[u8], u64)>(
        &self,
        idx: usize,
        tail: u32,
        max: usize,
        timeout: Option<Duration>,
        f: F,
    ) -> Result<InPlace, Error> {
        dispatch!(self, p => p.rx_in_place(idx, tail, max, timeout, f))
    }

    /// See [`Driver::exposed_rx_fd`].
    pub(crate) fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        dispatch!(self, p => p.exposed_rx_fd())
    }

    /// See [`Driver::wait`].
    pub(crate) fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        dispatch!(self, p => p.wait(want, timeout, check))
    }
}

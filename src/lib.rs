//! # netmap-rs
//!
//! Safe, zero-cost, async-first access to [netmap](https://github.com/luigirizzo/netmap),
//! the kernel-bypass packet I/O framework: memory-mapped NIC, host-stack, pipe and VALE rings.
//!
//! - [`sync`]: the synchronous core — [`NetmapBuilder`], [`Netmap`], [`TxRing`], [`RxRing`],
//!   [`Frame`], batch reservation, `recv_batch`, and `RxRing::for_each_frame` (frames lent for
//!   one call each: on `afpacket:` read in place in the kernel's ring).
//! - [`udp`] and [`wire`]: a UDP layer over any port ([`UdpPort`], and in the Tokio layer
//!   [`AsyncUdpPort`] and
//!   [`NetmapUdpFramed`]), over zero-copy header views.
//! - [`tokio_async`] (feature `tokio-async`, default): the netmap descriptor registered with
//!   Tokio's `AsyncFd`; rings as `AsyncRead`/`AsyncWrite`, `Stream`/`Sink`, codec framing and
//!   tracing taps.
//! - Four backends behind one ring layout, as netmap's drivers are behind its rings: the
//!   kernel module (feature `sys`, default), an emulation of netmap pipes with the same memory
//!   layout (within a process or across processes of one user, where no module is loaded),
//!   and on Linux AF_XDP and AF_PACKET sockets (see [`BackendChoice`]).
//!
//! # Layers
//!
//! Floor by floor, each importing only from the floors below it:
//!
//! 1. `abi` (netmap's `#[repr(C)]` structures and constants), `region` (a mapping),
//!    `error`, `port_name`, `os` (system-call helpers): no other module of the crate.
//! 2. `ring`: the netmap memory layout (ring views, index arithmetic, building and binding
//!    an interface's rings): `abi`, `region`, `error` only.
//! 3. [`backend`]: the seam (what a driver provides) and one folder per driver (`kernel`,
//!    `emulated`, `xdp`, `afpacket`, with the Linux plumbing in `linux`): floors 1 and 2,
//!    never the user API.
//! 4. [`sync`]: the user API; reaches drivers only through the seam.
//! 5. [`udp`]: datagrams over a port (sync); imports `sync`, `wire`, `error`, and the
//!    Linux plumbing's rtnetlink lookups (`backend::linux`) for routes and neighbours.
//! 6. [`tokio_async`]: the Tokio layer; imports only `sync`, `udp`, `wire` (and `error`, `os`).
//!
//! Beside them, [`wire`] (packet headers over byte slices) imports nothing of the crate.
//!
//! `tests/layers.rs` keeps these rules. `unsafe` is denied crate-wide and allowed by name in
//! the modules that need it (see the README's Soundness section).
//!
//! ```
//! use netmap_rs::prelude::*;
//!
//! # fn main() -> Result<(), Error> {
//! // A netmap pipe: runs on the kernel module when loaded, on the emulated backend otherwise.
//! let a = NetmapBuilder::new("doc{0").build()?;
//! let b = NetmapBuilder::new("doc}0").build()?;
//! let mut tx = a.tx_ring(0)?;
//! let mut rx = b.rx_ring(0)?;
//! tx.send(b"hello netmap!")?;
//! tx.sync()?;
//! rx.sync()?;
//! let frame = rx.recv().expect("delivered at sync");
//! assert_eq!(frame.payload(), b"hello netmap!");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod abi;
pub mod backend;
pub mod error;
pub mod fallback;
#[allow(unsafe_code)]
mod os;
pub mod port_name;
pub mod prelude;
#[allow(unsafe_code)]
mod region;
mod ring;
pub mod sync;
#[cfg(feature = "tokio-async")]
pub mod tokio_async;
pub mod udp;
#[cfg(netmap_kernel)]
pub mod vale;
pub mod wire;

pub use backend::{
    BackendChoice, BackendKind, FanoutMode, PortStats, Readiness, DEFAULT_BLOCK_TIMEOUT,
};
pub use error::{Error, Result};
pub use port_name::{PortSpec, XdpFilter};
pub use sync::{
    forward_filtered, zero_copy_forward, BatchReservation, Frame, Netmap, NetmapBuilder, RxBatch,
    RxRing, TxRing,
};
#[cfg(feature = "tokio-async")]
pub use tokio_async::{
    AsyncNetmapRxPort, AsyncNetmapRxRing, AsyncNetmapTxRing, AsyncUdpPort, NetmapFramed,
    NetmapUdpFramed, Tap, TokioNetmap,
};
pub use udp::UdpPort;

/// The README's Rust examples, compiled (and run unless marked `no_run`) by `cargo test`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

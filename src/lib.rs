//! # netmap-rs
//!
//! Safe, zero-cost, async-first access to [netmap](https://github.com/luigirizzo/netmap),
//! the kernel-bypass packet I/O framework: memory-mapped NIC, host-stack, pipe and VALE rings.
//!
//! - [`sync`]: the synchronous core — [`NetmapBuilder`], [`Netmap`], [`TxRing`], [`RxRing`],
//!   [`Frame`], batch reservation and `recv_batch`.
//! - [`tokio_async`] (feature `tokio-async`, default): the netmap descriptor registered with
//!   Tokio's `AsyncFd`; rings as `AsyncRead`/`AsyncWrite`, `Stream`/`Sink`, codec framing and
//!   tracing taps.
//! - Two backends behind one ring implementation: the kernel module (feature `sys`, default)
//!   and an emulation of netmap pipes with the same memory layout, within a process or across
//!   processes of one user, used where no module is loaded (see [`BackendChoice`]).
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
#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
pub mod backend;
pub mod error;
pub mod fallback;
mod notify;
pub mod port_name;
pub mod prelude;
mod region;
pub mod sync;
#[cfg(feature = "tokio-async")]
pub mod tokio_async;
#[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
pub mod vale;

pub use backend::{BackendChoice, BackendKind, Readiness};
pub use error::{Error, Result};
pub use port_name::PortSpec;
pub use sync::{
    forward_filtered, zero_copy_forward, BatchReservation, Frame, Netmap, NetmapBuilder, RxBatch,
    RxRing, TxRing,
};
#[cfg(feature = "tokio-async")]
pub use tokio_async::{AsyncNetmapRxRing, AsyncNetmapTxRing, NetmapFramed, Tap, TokioNetmap};

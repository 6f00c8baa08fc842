//! The synchronous core: ports, rings and frames. It stands on the `ring`
//! layer (the memory layout) and reaches the drivers only through the
//! [`backend`](crate::backend) seam.
//!
//! - [`NetmapBuilder`] / [`Netmap`]: open a port (one registration, one mapping); `share.rs`:
//!   open it on another port's memory.
//! - [`TxRing`] / [`RxRing`]: per-ring handles with a local cursor, published at `sync()`.
//! - [`BatchReservation`], [`RxBatch`]: batch paths, one sync per batch.
//! - [`Frame`]: a received packet, borrowed from its slot or owned.
//! - [`zero_copy_forward`]: swap buffers from an RX ring to a TX ring.

#[allow(unsafe_code)]
mod batch;
mod builder;
mod claim;
#[allow(unsafe_code)]
mod forward;
mod frame;
#[allow(unsafe_code)]
mod held;
pub(crate) mod port;
mod port_inner;
#[allow(unsafe_code)]
mod ring;
mod share;

pub use batch::{BatchReservation, RxBatch};
pub use builder::NetmapBuilder;
pub use forward::{forward_filtered, zero_copy_forward};
pub use frame::Frame;
#[cfg(netmap_kernel)]
pub use port::{pools_info, port_info, PoolsInfo, PortInfo};
pub use port::{Netmap, RingPointers};
pub use ring::{RxRing, TxRing};

/// What the Tokio layer needs from below, handed on by this layer (it imports nothing else
/// of the crate's lower floors).
#[cfg(feature = "tokio-async")]
pub(crate) use crate::backend::{Armed, RingWaker};
#[cfg(feature = "tokio-async")]
pub(crate) use crate::ring::Dir;

//! The synchronous core: ports, rings and frames.
//!
//! - [`NetmapBuilder`] / [`Netmap`]: open a port (one registration, one mapping).
//! - [`TxRing`] / [`RxRing`]: per-ring handles with a local cursor, published at `sync()`.
//! - [`BatchReservation`], [`RxBatch`]: batch paths, one sync per batch.
//! - [`Frame`]: a received packet, borrowed from its slot or owned.
//! - [`zero_copy_forward`]: swap buffers from an RX ring to a TX ring.

mod batch;
mod claim;
mod forward;
mod frame;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod port;
pub(crate) mod raw;
mod ring;

pub use batch::{BatchReservation, RxBatch};
pub use forward::{forward_filtered, zero_copy_forward};
pub use frame::Frame;
#[cfg(all(feature = "sys", any(target_os = "linux", target_os = "freebsd")))]
pub use port::{pools_info, port_info};
pub use port::{Netmap, NetmapBuilder, RingPointers};
pub use ring::{RxRing, TxRing};

//! The netmap memory layout: the floor every driver and the user API stand on.
//!
//! This is what `netmap.h` and `netmap_user.h` are to netmap's C tools, and what its
//! allocator (`netmap_mem2.c`) lays out: an interface (`netmap_if`), rings of slots, and a
//! pool of buffers, all at offsets inside one [`Region`](crate::region::Region).
//!
//! - [`raw`]: [`RawRing`], the checked view of one ring (atomic `head`/`cur`/`tail`,
//!   bounds-checked slot and buffer access). The one module that turns offsets into pointers.
//! - [`index`]: ring index arithmetic (wrap at `num_slots`).
//! - [`interface`]: reading a `netmap_if`, and writing one with fresh rings for drivers that
//!   build their own memory (emulated pipes, AF_XDP, AF_PACKET).
//! - [`bind`]: locating and validating the rings a `netmap_if` binds.
//!
//! It imports only `abi`, `region` and `error`: nothing here knows a backend or a user
//! handle.

pub(crate) mod bind;
pub(crate) mod index;
#[allow(unsafe_code)]
pub(crate) mod interface;
#[allow(unsafe_code)]
pub(crate) mod raw;

pub(crate) use bind::{bind_rings, BoundRing, BoundRings};
pub(crate) use index::{advance, distance, in_cyclic_range, next, prev, runs};
pub(crate) use interface::{if_bytes, init_ring, ring_bytes, write_if, RingInit};
pub(crate) use raw::RawRing;

/// Direction of a ring: what the user does with it (send on TX, receive on RX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dir {
    /// A transmit ring: the user fills slots, the driver sends them.
    Tx,
    /// A receive ring: the driver fills slots, the user reads them.
    Rx,
}

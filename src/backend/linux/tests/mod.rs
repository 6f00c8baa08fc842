//! The two Linux drivers and their plumbing on a real veth pair with its peer in a network
//! namespace (root; each test says why it skips elsewhere). One fixture for all of them:
//! [`testnet`].
//!
//! - `sockets`: the plumbing alone (AF_XDP sockets and UMEM, the redirect program, the
//!   `TPACKET_V2` socket).
//! - `faults`: live-interface faults (MTU, down, deleted) under open ports.
//! - `ports`: both drivers behind netmap rings through the public API.
//! - `port_errors`: failure paths and lifetime of `xdp:` / `afpacket:` ports.
//! - `rate`: a quick TX-rate comparison of the two sockets.
//! - `tokio_layer`: the Tokio layer over both drivers.

mod faults;
mod port_errors;
mod ports;
mod rate;
mod sockets;
pub(crate) mod testnet;
#[cfg(feature = "tokio-async")]
mod tokio_layer;

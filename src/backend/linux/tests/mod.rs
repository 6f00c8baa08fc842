//! The two Linux drivers and their plumbing on a real veth pair with its peer in a network
//! namespace (root; each test says why it skips elsewhere). One fixture for all of them:
//! [`testnet`].
//!
//! - `sockets`: the plumbing alone (AF_XDP sockets and UMEM, the redirect program, the
//!   `TPACKET_V2` socket).
//! - `blocks`: `afpacket:` receive on `TPACKET_V3` blocks, and without them.
//! - `fanout`: many rings on one `afpacket:` port (a `PACKET_FANOUT` group).
//! - `faults`: live-interface faults (MTU, down, deleted) under open ports.
//! - `huge`: the buffer pool on huge pages, and the fallback without them.
//! - `chains`: slot chains: 9000-byte frames on `xdp:` as multi-buffer descriptors, chains a
//!   user publishes badly, `afpacket:` gathering a chain.
//! - `jumbo`: 9000-byte MTU frames on `afpacket:`.
//! - `multiqueue`: every queue of a 4-queue `xdp:` port from one Tokio task.
//! - `ports`: both drivers behind netmap rings through the public API.
//! - `port_errors`: failure paths and lifetime of `xdp:` / `afpacket:` ports.
//! - `rate`: a quick TX-rate comparison of the two sockets.
//! - `shared_mem`: two `xdp:` ports on one memory (one UMEM), buffers swapped between them.
//! - `stamps`: receive timestamps (`Frame::timestamp`) and the tap's pcap file.
//! - `stats`: the drop counters of `Netmap::stats`.
//! - `tokio_layer`: the Tokio layer over both drivers.
//! - `watches`: which epoll watches the queue sockets carry, and when.
//! - `xdp_filter`: filtered ports: their traffic to the port, the rest to the host.
//! - `xdp_filter_prog`: the filter program under `BPF_PROG_TEST_RUN`, frame by frame.
//! - `xdp_share`: one interface, several ports and processes, a SIGKILL among them.

mod blocks;
mod chains;
mod fanout;
mod faults;
mod huge;
mod in_place;
mod jumbo;
#[cfg(feature = "tokio-async")]
mod multiqueue;
mod port_errors;
mod ports;
mod rate;
mod shared_mem;
mod sockets;
mod stamps;
mod stats;
pub(crate) mod testnet;
#[cfg(feature = "tokio-async")]
mod tokio_layer;
mod watches;
mod xdp_filter;
mod xdp_filter_prog;
mod xdp_share;

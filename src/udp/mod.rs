//! A UDP layer over any port: datagrams with `SocketAddr`s instead of frames, for services
//! that answer UDP (DNS, QUIC, games) on `xdp:`, `afpacket:`, netmap NIC ports or pipes.
//!
//! - [`UdpPort`]: synchronous; [`AsyncUdpPort`](crate::tokio_async::AsyncUdpPort) and
//!   [`NetmapUdpFramed`](crate::tokio_async::NetmapUdpFramed) (a codec, as tokio-util's
//!   `UdpFramed`) in the Tokio layer. All serve every RX ring of the port.
//! - [`Local`]: the port, MAC and IP addresses the endpoint answers to and sends from,
//!   from the interface (rtnetlink) or given by hand.
//! - Received datagrams ([`Datagram`]) are parsed in place ([`crate::wire`]): payload,
//!   source, destination, and the addressing of a reply (MACs, IPs and ports swapped,
//!   no lookup).
//! - Sending to a new destination asks the kernel's route and neighbour tables once
//!   (cached 10 s); an unresolved neighbour is an error naming the IP, the interface and
//!   the fix ([`Error::NeighbourUnresolved`](crate::Error::NeighbourUnresolved)).
//!
//! Which traffic the kernel keeps: on `xdp:` with a port filter, everything that is not
//! the service's UDP port goes to the host stack (ARP, ICMP, SSH keep working); on
//! `afpacket:` the kernel sees every frame too, and a guard socket keeps it from answering
//! the service's datagrams (see [`UdpPort::bind`]); on a netmap NIC port opened with its
//! host rings (`netmap:eth0*`), the endpoint hands every frame that is not its own to the
//! host TX ring and puts what the host stack sends (host RX ring) on the NIC, zero copy,
//! as netmap's `bridge` application does between `eth0` and `eth0^` (counted in
//! [`UdpStats`]: `to_host`, `from_host`, `bridge_dropped`). A netmap NIC port without host
//! rings (`netmap:eth0`) keeps the interface from the host stack while it is open.
//!
//! Why the host rings of the same registration, not a second port `eth0^`: one file
//! descriptor, so one wait (`poll`) covers the NIC and the host stack, and one memory, so
//! buffers are swapped, never copied (except frames not ours found between the endpoint's
//! datagrams of one batch, copied to the host ring; `bridge.rs`).

mod bridge;
#[cfg(test)]
mod bridge_tests;
mod endpoint;
#[cfg(target_os = "linux")]
mod host_guard;
mod local;
mod port;
mod resolve;

#[cfg(feature = "tokio-async")]
pub(crate) use bridge::{foreign_to_host, host_to_nic};
#[cfg(feature = "tokio-async")]
pub(crate) use endpoint::Endpoint;
pub use endpoint::{Datagram, UdpBatch, UdpStats};
#[cfg(all(target_os = "linux", feature = "tokio-async"))]
pub(crate) use host_guard::HostGuard;
pub use local::Local;
#[cfg(all(target_os = "linux", feature = "tokio-async"))]
pub(crate) use port::host_guard;
#[cfg(feature = "tokio-async")]
pub(crate) use port::local_for;
pub use port::UdpPort;

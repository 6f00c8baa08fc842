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
//! the service's datagrams (see [`UdpPort::bind`]); on a netmap NIC port, frames that are
//! not ours can be forwarded to the host rings (`eth0*`) by the application, as netmap's
//! own applications do (not done by this layer).

mod endpoint;
#[cfg(target_os = "linux")]
mod host_guard;
mod local;
mod port;
mod resolve;

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

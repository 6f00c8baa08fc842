//! Keeping the host stack quiet about datagrams an `afpacket:` port serves.
//!
//! AF_PACKET sees a copy of each frame; the kernel's own stack still gets the original.
//! With no socket on the port, the kernel answers each datagram with an ICMP port
//! unreachable (and counts it as an error), so the client may see an error next to our
//! reply. The guard is a UDP socket of our own bound to the port on each local address,
//! with a classic BPF filter that drops everything (`SO_ATTACH_FILTER`, one `ret #0`): the
//! port counts as open, nothing is queued, nothing is read. It goes away with the
//! endpoint. No firewall rule is added (a host's nftables/iptables are not ours to edit).
//!
//! If another socket of the host already has the port, binding fails and the endpoint is
//! not created: that socket would get every datagram too.

use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsFd;

use crate::backend::linux::os;
use crate::error::Error;

/// The guard sockets (closed on drop).
#[derive(Debug)]
pub(crate) struct HostGuard {
    _sockets: Vec<UdpSocket>,
}

impl HostGuard {
    /// Binds UDP `port` on each of `ips` (every address when empty) of interface `ifindex`.
    pub(crate) fn bind(port: u16, ips: &[IpAddr], ifindex: u32) -> Result<HostGuard, Error> {
        let mut addrs: Vec<SocketAddr> = ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
                    SocketAddr::V6(SocketAddrV6::new(*a, port, 0, ifindex))
                }
                ip => SocketAddr::new(*ip, port),
            })
            .collect();
        if addrs.is_empty() {
            // [::] takes IPv4 too (bindv6only is 0 by default); 0.0.0.0 where it is not.
            addrs.push("[::]:0".parse().expect("literal"));
            addrs[0].set_port(port);
        }
        let mut sockets = Vec::with_capacity(addrs.len());
        for a in addrs {
            let s = match UdpSocket::bind(a) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(Error::PortBusy(format!(
                        "cannot bind the guard socket on UDP {a} ({e}): another socket of this \
                         host has the port (`ss -ulpn 'sport = :{port}'`), and the kernel would \
                         deliver every datagram to it as well as to this afpacket: port; stop \
                         it, or use xdp:"
                    )))
                }
                Err(e) => {
                    // An address still tentative (IPv6 duplicate address detection) or gone
                    // since it was read: the host may answer datagrams to it.
                    tracing::warn!(
                        addr = %a,
                        error = %e,
                        "no guard socket on this address: the host may answer datagrams to it \
                         with ICMP port unreachable"
                    );
                    continue;
                }
            };
            drop_all(&s).map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("SO_ATTACH_FILTER on the guard socket of UDP {a}: {e}"),
                ))
            })?;
            sockets.push(s);
        }
        Ok(HostGuard { _sockets: sockets })
    }
}

/// Attaches a classic BPF program of one instruction, `ret #0`: every datagram is dropped
/// before it is queued.
fn drop_all(s: &UdpSocket) -> std::io::Result<()> {
    // BPF_RET | BPF_K with k = 0 (accept 0 bytes).
    let mut prog = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: prog.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `prog` outlives it.
    os::setsockopt(s.as_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

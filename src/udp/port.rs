//! [`UdpPort`]: a UDP endpoint over every ring of a port, synchronous.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::bridge::{foreign_to_host, host_to_nic, Bridge};
use super::endpoint::{Datagram, Endpoint, UdpBatch, UdpStats};
use super::local::Local;
use crate::error::Error;
#[cfg(target_os = "linux")]
use crate::port_name::PortKind;
use crate::sync::{Netmap, RxRing, TxRing};
use crate::wire::Addressing;

/// A UDP endpoint over a netmap port: every RX ring is served (in turn), datagrams are
/// sent on TX ring 0 (replies on the TX ring of the request's RX ring, where the port has
/// one).
///
/// - [`recv_from`](Self::recv_from) / [`send_to`](Self::send_to): as `std::net::UdpSocket`,
///   one copy each way.
/// - [`recv_batch`](Self::recv_batch): datagrams borrowed from a ring (zero copy), with
///   their addresses; [`send_addressed`](Self::send_addressed) answers one
///   ([`Datagram::reply_addressing`] needs no lookup).
/// - [`serve`](Self::serve): a batch of requests answered in place in the TX ring.
///
/// On an interface the kernel sees the same traffic as an `afpacket:` port (not on
/// `xdp:`, which takes it away from the kernel): see [`UdpPort::bind`] for what is done
/// about it.
///
/// On a netmap NIC port opened with its host rings (`netmap:eth0*`), the endpoint shares
/// the interface with the host stack, as netmap's `bridge` does between `eth0` and `eth0^`:
/// frames that are not its datagrams go to the host TX ring, and what the host stack sends
/// (host RX ring) goes out on NIC TX ring 0, zero copy (ARP, ICMP, SSH keep working). This
/// happens inside the receiving calls, so the host stack is served while the endpoint is
/// waited on; see [`UdpStats::to_host`]. Without host rings (`netmap:eth0`) the host stack
/// is cut off from the interface while the port is open, as with any netmap NIC port.
#[derive(Debug)]
pub struct UdpPort {
    /// The NIC RX rings (every RX ring of a port without host rings).
    rx: Vec<RxRing>,
    /// The NIC TX rings.
    tx: Vec<TxRing>,
    /// The host rings of a NIC port registered with them (`netmap:eth0*`).
    bridge: Option<Bridge>,
    endpoint: Endpoint,
    next: usize,
    #[cfg(target_os = "linux")]
    _guard: Option<super::host_guard::HostGuard>,
    netmap: Netmap,
}

impl UdpPort {
    /// A UDP endpoint on `port` of `netmap`. On an interface (`xdp:eth0`, `afpacket:eth0`,
    /// `netmap:eth0`), its MAC and addresses come from the kernel
    /// ([`Local::from_interface`]); on a pipe, it accepts every destination IP and has no
    /// source address: use [`with_local`](Self::with_local) to give one.
    ///
    /// On `afpacket:` the kernel also receives every datagram: a guard socket of ours on
    /// the port, filtered to drop everything, keeps it from answering them (ICMP port
    /// unreachable). It fails with [`Error::PortBusy`] if another socket has the port.
    ///
    /// On `netmap:eth0*` (NIC and host rings) the rest of the traffic is passed between the
    /// NIC and the host stack (see [`UdpPort`]).
    pub fn bind(netmap: Netmap, port: u16) -> Result<UdpPort, Error> {
        let local = local_for(&netmap, port)?;
        UdpPort::with_local(netmap, local)
    }

    /// A UDP endpoint with the local side given.
    pub fn with_local(netmap: Netmap, local: Local) -> Result<UdpPort, Error> {
        if netmap.num_rx_rings() == 0 || netmap.num_tx_rings() == 0 {
            return Err(Error::BindFail(format!(
                "{}: a UDP endpoint needs RX and TX rings (the port was opened RX-only or \
                 TX-only, /R or /T): open it without the flag",
                netmap.name()
            )));
        }
        let rx = (0..netmap.num_rx_rings())
            .map(|i| netmap.rx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        let tx = (0..netmap.num_tx_rings())
            .map(|i| netmap.tx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (rx, tx, bridge) = super::bridge::split(rx, tx);
        #[cfg(target_os = "linux")]
        let _guard = host_guard(&netmap, &local)?;
        Ok(UdpPort {
            rx,
            tx,
            bridge,
            endpoint: Endpoint::new(local),
            next: 0,
            #[cfg(target_os = "linux")]
            _guard,
            netmap,
        })
    }

    /// The port underneath.
    pub fn netmap(&self) -> &Netmap {
        &self.netmap
    }

    /// The local side.
    pub fn local(&self) -> &Local {
        &self.endpoint.local
    }

    /// Counters since creation.
    pub fn stats(&self) -> UdpStats {
        self.endpoint.stats
    }

    /// Waits until a ring holds frames (`timeout` `None`: forever); returns the ring's
    /// index, starting after the ring served last, or `None` at the timeout. On a bridged
    /// port, it passes what the host stack sent to the NIC, and the frames at the front of a
    /// ring that are not ours to the host stack, first: the ring returned has one of ours
    /// at its cursor.
    fn ready_ring(&mut self, timeout: Option<Duration>) -> Result<Option<usize>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(b) = &mut self.bridge {
                // Frames copied to the host stack by the last batch.
                if b.host_tx.pending() > 0 {
                    b.host_tx.sync()?;
                }
                for h in &mut b.host_rx {
                    host_to_nic(h, &mut self.tx[0], &mut self.endpoint.stats)?;
                }
            }
            let n = self.rx.len();
            for step in 0..n {
                let i = (self.next + step) % n;
                if self.rx[i].available() == 0 {
                    continue;
                }
                if let Some(b) = &mut self.bridge {
                    if !foreign_to_host(&mut self.rx[i], &mut b.host_tx, &mut self.endpoint)? {
                        continue;
                    }
                }
                self.next = (i + 1) % n;
                return Ok(Some(i));
            }
            for r in &mut self.rx {
                r.sync()?;
            }
            // What the host stack sent since makes the wait below return at once (its ring
            // is in the registration): it is passed on at the top of the loop, and the
            // timeout still holds under host traffic that never stops.
            if (0..n).any(|i| self.rx[i].available() > 0) {
                continue;
            }
            let Some(left) = crate::backend::wait::time_left(deadline) else {
                return Ok(None);
            };
            self.netmap.wait_readable(left)?;
        }
    }

    /// Datagrams for this endpoint from the next ring that holds frames, up to `max`
    /// frames looked at, borrowed (zero copy); waits up to `timeout` (`None`: forever) and
    /// returns an empty batch at the timeout. Frames that are not ours are skipped.
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<UdpBatch<'_>, Error> {
        let (i, max) = match self.ready_ring(timeout)? {
            Some(i) => (i, max),
            None => (self.next, 0),
        };
        Ok(UdpBatch {
            frames: self.rx[i].batch(max),
            endpoint: &mut self.endpoint,
            host: self.bridge.as_mut().map(|b| &mut b.host_tx),
        })
    }

    /// Receives one datagram, copying its payload into `buf` (cut to `buf`'s length, as
    /// `UdpSocket::recv_from` does); returns the payload's length (before the cut) and the
    /// source. Waits up to `timeout` (`None`: forever): [`Error::WouldBlock`] at the
    /// timeout.
    pub fn recv_from(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(usize, SocketAddr), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let Some(i) = self.ready_ring(left)? else {
                return Err(Error::WouldBlock);
            };
            let mut batch = UdpBatch {
                frames: self.rx[i].batch(usize::MAX),
                endpoint: &mut self.endpoint,
                host: self.bridge.as_mut().map(|b| &mut b.host_tx),
            };
            if let Some(d) = batch.next() {
                let p = d.payload();
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                return Ok((p.len(), d.source()));
            }
        }
    }

    /// Sends `payload` to `dst` and hands it to the kernel. The first datagram to a new
    /// destination asks the kernel's route and neighbour tables (cached for 10 s):
    /// [`Error::NeighbourUnresolved`] when no MAC is known for the next hop,
    /// [`Error::NoRoute`] when the route leaves through another interface.
    pub fn send_to(&mut self, payload: &[u8], dst: SocketAddr) -> Result<(), Error> {
        let a = self.endpoint.addressing_to(dst)?;
        self.send_addressed(&a, payload)
    }

    /// Sends `payload` with the addressing given (e.g. a request's
    /// [`reply_addressing`](Datagram::reply_addressing)), and hands it to the kernel.
    pub fn send_addressed(&mut self, a: &Addressing, payload: &[u8]) -> Result<(), Error> {
        let tx = &mut self.tx[0];
        let len = a.header_len() + payload.len();
        if len > tx.max_payload_size() {
            return Err(Error::PacketTooLarge(len));
        }
        if tx.space() == 0 {
            tx.sync()?;
        }
        let mut r = tx.reserve_batch(1)?;
        let buf = r.packet(0, len)?;
        Endpoint::build(a, buf, payload)?;
        r.commit();
        tx.sync()?;
        self.endpoint.stats.sent += 1;
        Ok(())
    }

    /// Waits up to `timeout` for requests on the next ring that holds frames, and answers
    /// up to `max` of them in place: `f(request, buf)` writes the reply payload into `buf`
    /// and returns its length, or `None` for no reply; the reply goes to the request's
    /// source from its destination (MACs, IPs and ports swapped, no lookup). Replies are
    /// handed to the kernel before this returns. Returns how many were sent.
    pub fn serve(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(&Datagram<'_>, &mut [u8]) -> Option<usize>,
    ) -> Result<usize, Error> {
        let Some(i) = self.ready_ring(timeout)? else {
            return Ok(0);
        };
        let t = i.min(self.tx.len() - 1);
        let tx = &mut self.tx[t];
        let mut space = tx.space();
        if space == 0 {
            tx.sync()?;
            space = tx.space();
        }
        let max_len = tx.max_payload_size();
        let mut res = tx.reserve_batch(space.min(max))?;
        let host = self.bridge.as_mut().map(|b| &mut b.host_tx);
        let n = self
            .endpoint
            .serve(self.rx[i].batch(max), host, &mut res, max_len, &mut f)?;
        res.commit();
        if n > 0 {
            tx.sync()?;
        }
        if let Some(b) = &mut self.bridge {
            if b.host_tx.pending() > 0 {
                b.host_tx.sync()?;
            }
        }
        // The requests' buffers back to the kernel at once (see AsyncUdpPort::serve).
        self.rx[i].sync()?;
        Ok(n)
    }
}

/// The local side of `netmap`'s interface on `port`, or a bare one for a pipe.
pub(crate) fn local_for(netmap: &Netmap, port: u16) -> Result<Local, Error> {
    match netmap.spec().kind {
        #[cfg(target_os = "linux")]
        PortKind::Nic => Local::from_interface(&netmap.spec().ifname, port),
        _ => Ok(Local::new(port)),
    }
}

/// The guard socket for an `afpacket:` port (see `host_guard.rs`).
#[cfg(target_os = "linux")]
pub(crate) fn host_guard(
    netmap: &Netmap,
    local: &Local,
) -> Result<Option<super::host_guard::HostGuard>, Error> {
    match (netmap.backend(), &local.interface) {
        (crate::BackendKind::AfPacket, Some((_, index))) if local.port != 0 => Ok(Some(
            super::host_guard::HostGuard::bind(local.port, &local.ips, *index)?,
        )),
        _ => Ok(None),
    }
}

//! [`AsyncUdpPort`]: the UDP layer ([`crate::udp`]) in the Tokio layer, over every RX ring
//! of a port from one task.

use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};

use super::{AsyncNetmapRxPort, AsyncNetmapTxRing, TokioNetmap};
use crate::error::Error;
use crate::udp::{foreign_to_host, host_to_nic, Datagram, Endpoint, Local, UdpBatch, UdpStats};
use crate::wire::Addressing;

/// A UDP endpoint over a Tokio-registered port: every RX ring in one task
/// ([`AsyncNetmapRxPort`]), sends on TX ring 0 (replies from [`serve`](Self::serve) on the
/// TX ring of the request's RX ring). The async twin of [`crate::udp::UdpPort`]:
///
/// - [`recv_from`](Self::recv_from) / [`send_to`](Self::send_to), as
///   `tokio::net::UdpSocket`;
/// - [`recv_batch`](Self::recv_batch): datagrams borrowed from a ring (zero copy);
/// - [`serve`](Self::serve): requests answered in place in the TX ring (a DNS responder's
///   loop, `examples/dns_responder.rs`);
/// - [`NetmapUdpFramed`](super::NetmapUdpFramed): a codec over it, as tokio-util's
///   `UdpFramed`.
///
/// All are cancel-safe: they consume nothing until they complete.
///
/// On a netmap NIC port opened with its host rings (`netmap:eth0*`), the frames that are
/// not the endpoint's go to the host stack and what the host stack sends goes out on the
/// NIC, while the endpoint is awaited, as [`UdpPort`](crate::udp::UdpPort) does (so a
/// service keeps the host's ARP, ICMP and SSH working only while one of its calls is
/// pending: serve in a loop).
#[derive(Debug)]
pub struct AsyncUdpPort {
    /// Every RX ring of the port (host rings too: one wait covers them all).
    rx: AsyncNetmapRxPort,
    /// The NIC TX rings (every TX ring of a port without host rings).
    tx: Vec<AsyncNetmapTxRing>,
    /// On a NIC port registered with its host rings (`netmap:eth0*`): the indices of the
    /// host RX rings in `rx`, and the host TX ring (see `crate::udp::bridge`).
    host_rx: Vec<usize>,
    host_tx: Option<AsyncNetmapTxRing>,
    endpoint: Endpoint,
    #[cfg(target_os = "linux")]
    _guard: Option<crate::udp::HostGuard>,
}

impl AsyncUdpPort {
    /// A UDP endpoint on `port` of `netmap`'s port (see [`crate::udp::UdpPort::bind`]: the
    /// local side from the interface, and on `afpacket:` a guard socket that keeps the host
    /// from answering).
    pub fn bind(netmap: &TokioNetmap, port: u16) -> Result<AsyncUdpPort, Error> {
        let local = crate::udp::local_for(netmap.netmap(), port)?;
        AsyncUdpPort::with_local(netmap, local)
    }

    /// A UDP endpoint with the local side given.
    pub fn with_local(netmap: &TokioNetmap, local: Local) -> Result<AsyncUdpPort, Error> {
        let rx = netmap.rx_port()?;
        let n = netmap.netmap().num_tx_rings();
        if n == 0 {
            return Err(Error::BindFail(format!(
                "{} has no TX ring to send from (opened RX-only?): open it without /R",
                netmap.netmap().name()
            )));
        }
        let mut tx = (0..n)
            .map(|i| netmap.tx_ring(i))
            .collect::<Result<Vec<_>, _>>()?;
        // Bridged when the port has NIC and host rings both ways (as `udp::bridge::split`).
        let host_rx: Vec<usize> = (0..rx.rings().len())
            .filter(|&i| rx.rings()[i].get_ref().is_host())
            .collect();
        let nic_tx = tx.iter().filter(|t| !t.get_ref().is_host()).count();
        let bridged = !host_rx.is_empty()
            && host_rx.len() < rx.rings().len()
            && nic_tx > 0
            && nic_tx < tx.len();
        let (host_rx, host_tx) = if bridged {
            // NIC rings come first, then the host rings; one host TX ring is used.
            let host_tx = tx.split_off(nic_tx).into_iter().next();
            (host_rx, host_tx)
        } else {
            (Vec::new(), None)
        };
        #[cfg(target_os = "linux")]
        let _guard = crate::udp::host_guard(netmap.netmap(), &local)?;
        Ok(AsyncUdpPort {
            rx,
            tx,
            host_rx,
            host_tx,
            endpoint: Endpoint::new(local),
            #[cfg(target_os = "linux")]
            _guard,
        })
    }

    /// The local side.
    pub fn local(&self) -> &Local {
        &self.endpoint.local
    }

    /// Counters since creation.
    pub fn stats(&self) -> UdpStats {
        self.endpoint.stats
    }

    /// The addressing of a datagram to `dst` (the kernel's route and neighbour tables,
    /// cached): [`Error::NeighbourUnresolved`] or [`Error::NoRoute`] when it cannot be sent.
    pub fn addressing_to(&mut self, dst: SocketAddr) -> Result<Addressing, Error> {
        self.endpoint.addressing_to(dst)
    }

    /// Waits until a ring holds frames, then lends the datagrams for this endpoint among
    /// up to `max` of its frames (zero copy; other frames are skipped and consumed). The
    /// batch may be empty when none of them was ours.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: until it completes it only waits.
    pub async fn recv_batch(&mut self, max: usize) -> io::Result<UdpBatch<'_>> {
        let i = std::future::poll_fn(|cx| self.poll_ready_ring(cx)).await?;
        Ok(UdpBatch {
            frames: self.rx.rings_mut()[i].get_mut().batch(max),
            endpoint: &mut self.endpoint,
            host: self.host_tx.as_mut().map(|h| h.get_mut()),
        })
    }

    /// Polls until a NIC ring holds frames; returns its index. On a bridged port it passes
    /// what the host stack sent to the NIC, and the frames at the front of a ring that are
    /// not ours to the host stack, first (`crate::udp::bridge`): the ring returned has one
    /// of ours at its cursor. Consumes no datagram of ours.
    fn poll_ready_ring(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(host_tx) = self.host_tx.as_mut() else {
            return self.rx.poll_recv_ready(cx);
        };
        // Frames copied to the host stack by the last batch.
        if host_tx.get_ref().pending() > 0 {
            host_tx.get_mut().sync()?;
        }
        // Host traffic that never stops must not keep this task from yielding.
        for _ in 0..64 {
            let i = ready!(self.rx.poll_recv_ready(cx))?;
            let ring = self.rx.rings_mut()[i].get_mut();
            if self.host_rx.contains(&i) {
                host_to_nic(ring, self.tx[0].get_mut(), &mut self.endpoint.stats)?;
                continue;
            }
            if foreign_to_host(ring, host_tx.get_mut(), &mut self.endpoint)? {
                return Poll::Ready(Ok(i));
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls for one datagram, copying its payload into `buf` (cut to its length); returns
    /// the payload's length (before the cut) and the source.
    pub fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.poll_recv_addressed(cx, buf)
            .map_ok(|(n, a)| (n, a.src))
    }

    /// As [`poll_recv_from`](Self::poll_recv_from), returning every address of the
    /// datagram (reply with [`Addressing::reply`], no lookup).
    pub fn poll_recv_addressed(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, Addressing)>> {
        loop {
            let i = ready!(self.poll_ready_ring(cx))?;
            let mut batch = UdpBatch {
                frames: self.rx.rings_mut()[i].get_mut().batch(usize::MAX),
                endpoint: &mut self.endpoint,
                host: self.host_tx.as_mut().map(|h| h.get_mut()),
            };
            if let Some(d) = batch.next() {
                let p = d.payload();
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                return Poll::Ready(Ok((p.len(), *d.addressing())));
            }
        }
    }

    /// Receives one datagram into `buf`, as `tokio::net::UdpSocket::recv_from`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a datagram is taken only in the poll that completes.
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Polls until `payload` is queued with addressing `a` on TX ring 0 (not yet handed to
    /// the kernel: [`poll_flush`](Self::poll_flush)).
    pub fn poll_send_addressed(
        &mut self,
        cx: &mut Context<'_>,
        a: &Addressing,
        payload: &[u8],
    ) -> Poll<io::Result<()>> {
        let tx = &mut self.tx[0];
        let len = a.header_len() + payload.len();
        if len > tx.max_payload_size() {
            return Poll::Ready(Err(Error::PacketTooLarge(len).into()));
        }
        ready!(tx.poll_send_ready(cx))?;
        Poll::Ready(self.queue(a, payload).map_err(Into::into))
    }

    /// Polls until TX ring 0 has a free slot.
    pub(super) fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx[0].poll_send_ready(cx)
    }

    /// Queues a datagram on TX ring 0 (after [`poll_send_ready`](Self::poll_send_ready));
    /// syncs when a quarter ring is waiting.
    pub(super) fn queue(&mut self, a: &Addressing, payload: &[u8]) -> Result<(), Error> {
        let ring = self.tx[0].get_mut();
        let len = a.header_len() + payload.len();
        if len > ring.max_payload_size() {
            return Err(Error::PacketTooLarge(len));
        }
        let mut r = ring.reserve_batch(1)?;
        Endpoint::build(a, r.packet(0, len)?, payload)?;
        r.commit();
        self.endpoint.stats.sent += 1;
        if ring.pending() * 4 >= ring.num_slots() {
            ring.sync()?;
        }
        Ok(())
    }

    /// Hands queued datagrams to the kernel.
    pub fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for tx in &mut self.tx {
            if tx.get_ref().pending() > 0 {
                tx.get_mut().sync()?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends `payload` with addressing `a` (e.g. a request's
    /// [`reply_addressing`](Datagram::reply_addressing)) and hands it to the kernel.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the datagram is queued in the poll that completes the wait for room.
    pub async fn send_addressed(&mut self, a: &Addressing, payload: &[u8]) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_send_addressed(cx, a, payload)).await?;
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Sends `payload` to `dst` and hands it to the kernel. The first datagram to a new
    /// destination asks the kernel's route and neighbour tables (cached for 10 s): an
    /// unresolved neighbour fails with kind `HostUnreachable`, naming the IP, the
    /// interface and the fix ([`Error::NeighbourUnresolved`]).
    ///
    /// # Cancel safety
    ///
    /// As [`send_addressed`](Self::send_addressed).
    pub async fn send_to(&mut self, payload: &[u8], dst: SocketAddr) -> io::Result<()> {
        let a = self.endpoint.addressing_to(dst)?;
        self.send_addressed(&a, payload).await
    }

    /// Waits for requests on the next ring that holds frames and answers up to `max` of
    /// them in place: `f(request, buf)` writes the reply payload into `buf` and returns its
    /// length (`None`: no reply); the reply is addressed from the request (MACs, IPs and
    /// ports swapped, no lookup) and sent on the TX ring of the request's RX ring. Replies
    /// are handed to the kernel, and the requests' buffers back to it, before it returns. Returns how many were sent (0 when none
    /// of the frames looked at was ours).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it consumes requests only in the poll that completes.
    pub async fn serve(
        &mut self,
        max: usize,
        mut f: impl FnMut(&Datagram<'_>, &mut [u8]) -> Option<usize>,
    ) -> io::Result<usize> {
        let i = std::future::poll_fn(|cx| self.poll_ready_ring(cx)).await?;
        let t = i.min(self.tx.len() - 1);
        let tx = &mut self.tx[t];
        let max_len = tx.max_payload_size();
        // Waits for one free slot at least; the rest of the batch stays in the RX ring when
        // fewer are free.
        let mut res = tx.reserve_up_to(max).await?;
        let ring = self.rx.rings_mut()[i].get_mut();
        let mut host = self.host_tx.as_mut().map(|h| h.get_mut());
        let n = self.endpoint.serve(
            ring.batch(max),
            host.as_deref_mut(),
            &mut res,
            max_len,
            &mut f,
        )?;
        res.commit();
        if let Some(h) = host.filter(|h| h.pending() > 0) {
            h.sync()?;
        }
        if n > 0 {
            tx.flush_ring().await?;
        }
        // Hand the requests' buffers back at once (on AF_XDP: to the fill ring), not after
        // half a ring: under load, a kernel short of free buffers drops what comes
        // (`rx_fill_empty`).
        self.rx.rings_mut()[i].get_mut().sync()?;
        Ok(n)
    }
}

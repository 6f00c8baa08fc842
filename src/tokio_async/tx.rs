//! [`AsyncNetmapTxRing`]: a TX ring as `AsyncWrite`, `Sink<Bytes>` and async reservations.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_sink::Sink;
use tokio::io::AsyncWrite;

use super::Waiter;
use crate::error::Error;
use crate::sync::{BatchReservation, TxRing};

/// A TX ring driven by Tokio.
///
/// - [`AsyncWrite`]: one write sends one packet of at most
///   [`max_packet_size`](TxRing::max_packet_size) bytes (a longer buffer is a short write of
///   that many bytes); `flush` is a txsync.
/// - [`Sink<Bytes>`](Sink): `poll_ready` is pending while the ring is full and wakes when the
///   kernel frees slots; nothing is dropped. `poll_flush` hands every queued packet to the
///   kernel; `poll_close` flushes.
///
/// Packets longer than one buffer go out as a chain of slots (`NS_MOREFRAG`, see
/// [`TxRing::send`]), whole or not at all: a write or `send_packet` waits for all the slots
/// it needs; a `Sink` item that finds too few free slots is held (one at most) and sent by
/// the next `poll_ready` or `poll_flush`, which are pending until it is.
/// - [`reserve`](AsyncNetmapTxRing::reserve) and
///   [`reserve_up_to`](AsyncNetmapTxRing::reserve_up_to): wait for slots and lend them to fill
///   in place.
///
/// Packets queued one at a time (`Sink`, `AsyncWrite`, `send_packet`) are also synced
/// automatically once a quarter of the ring is waiting, so a producer that never flushes still
/// keeps the pipeline moving. A flush with nothing queued makes no system call.
///
/// With both `AsyncWriteExt` and `SinkExt` in scope, `tx.flush()` is ambiguous: write
/// `AsyncWriteExt::flush(&mut tx)` or `SinkExt::<Bytes>::flush(&mut tx)`, or call the
/// inherent [`flush_ring`](AsyncNetmapTxRing::flush_ring).
#[derive(Debug)]
pub struct AsyncNetmapTxRing {
    ring: TxRing,
    waiter: Waiter,
    /// A `Sink` item longer than a buffer that found too few free slots: sent before any
    /// other item, by `poll_ready` or `poll_flush`.
    held: Option<Bytes>,
}

impl AsyncNetmapTxRing {
    pub(crate) fn new(ring: TxRing, waiter: Waiter) -> Self {
        AsyncNetmapTxRing {
            ring,
            waiter,
            held: None,
        }
    }

    /// The synchronous ring.
    pub fn get_ref(&self) -> &TxRing {
        &self.ring
    }

    /// The synchronous ring, for direct (non-waiting) use.
    pub fn get_mut(&mut self) -> &mut TxRing {
        &mut self.ring
    }

    /// Largest packet one slot carries (longer ones take several, see
    /// [`max_packet_size`](Self::max_packet_size)).
    pub fn max_payload_size(&self) -> usize {
        self.ring.max_payload_size()
    }

    /// Largest packet one write or item can carry ([`TxRing::max_packet_size`]).
    pub fn max_packet_size(&self) -> usize {
        self.ring.max_packet_size()
    }

    /// Sends the held `Sink` item once its slots are free. Cancel-safe.
    #[cold]
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(item) = &self.held {
            let slots = self.ring.slots_for(item.len());
            ready!(self.poll_send_ready_n(cx, slots))?;
            let item = self.held.take().expect("checked above");
            self.queue(&item)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Polls until at least `n` slots are free (`n` at most `num_slots - 1`). Cancel-safe.
    #[inline]
    pub fn poll_send_ready_n(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<io::Result<()>> {
        // Fast path: the cached view already shows a free slot (no shared memory, no waiter).
        if n == 1 && self.ring.has_cached_space() {
            return Poll::Ready(Ok(()));
        }
        self.poll_send_ready_slow(cx, n)
    }

    #[inline(never)]
    fn poll_send_ready_slow(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<io::Result<()>> {
        if n >= self.ring.num_slots() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{n} slots can never be free at once in a ring of {} (one stays empty)",
                    self.ring.num_slots()
                ),
            )));
        }
        loop {
            if (n == 1 && self.ring.has_cached_space()) || self.ring.space() >= n {
                return Poll::Ready(Ok(()));
            }
            if !self.waiter.is_active_for(n) {
                self.ring.sync()?;
                if self.ring.space() >= n {
                    return Poll::Ready(Ok(()));
                }
                tracing::debug!(
                    ring = self.ring.index(),
                    want = n,
                    "tx ring full: back-pressure, waiting for writability"
                );
                self.waiter.start(n);
            } else if self.ring.pending() > 0 {
                // A wait left active by a dropped future does not publish this handle's
                // queued packets: send them before sleeping on it.
                self.ring.sync()?;
                continue;
            }
            ready!(self.waiter.poll(cx))?;
        }
    }

    /// Polls until a slot is free. Cancel-safe.
    #[inline]
    pub fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_send_ready_n(cx, 1)
    }

    /// Waits until a slot is free.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it writes nothing. A wait dropped half-way stays registered with the
    /// handle and is reused (or replaced) by the next wait.
    pub async fn writable(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_send_ready(cx)).await
    }

    /// Waits for room and queues one packet (sent at the next flush or automatic sync).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the packet is queued in the same poll that finds room, so a future
    /// dropped before it completes has queued nothing, and one that completed has queued the
    /// whole packet. Call it again with the same packet after a cancellation.
    pub async fn send_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        if packet.len() > self.ring.max_packet_size() {
            return Err(Error::PacketTooLarge(packet.len()).into());
        }
        let slots = self.ring.slots_for(packet.len());
        poll_fn(|cx| self.poll_send_ready_n(cx, slots)).await?;
        self.ring.send(packet)?;
        self.after_queue()
    }

    /// Waits until `count` slots are free and reserves them to fill in place (zero copy).
    /// Commit the reservation, then flush.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: until it completes it only waits; a dropped future reserves nothing.
    pub async fn reserve(&mut self, count: usize) -> io::Result<BatchReservation<'_>> {
        poll_fn(|cx| self.poll_send_ready_n(cx, count)).await?;
        Ok(self.ring.reserve_batch(count)?)
    }

    /// Waits until at least one slot is free, then reserves as many as are free, up to
    /// `max` (C `pkt-gen`'s burst: it sends what fits rather than waiting for a full burst).
    /// Commit the reservation, then flush.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: until it completes it only waits; a dropped future reserves nothing.
    pub async fn reserve_up_to(&mut self, max: usize) -> io::Result<BatchReservation<'_>> {
        if max > 0 {
            self.writable().await?;
        }
        let n = self.ring.space().min(max);
        Ok(self.ring.reserve_batch(n)?)
    }

    /// Hands every queued packet to the kernel (txsync). The same as
    /// `AsyncWriteExt::flush(&mut tx)` and `SinkExt::<Bytes>::flush(&mut tx)`, without
    /// needing either trait in scope (with both, plain `tx.flush()` is ambiguous).
    ///
    /// With nothing queued it returns at once, without a system call; to collect slots the
    /// kernel has finished with, sync the ring itself ([`get_mut`](Self::get_mut)`.sync()`)
    /// or wait for room ([`writable`](Self::writable), [`reserve`](Self::reserve)).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it never waits (the sync happens in its first poll), so there is no
    /// point at which a drop could leave a packet half handed over.
    pub async fn flush_ring(&mut self) -> io::Result<()> {
        self.flush_queued()
    }

    /// Syncs if packets are queued (one sync per batch: a flush right after an automatic
    /// sync costs nothing).
    #[inline]
    fn flush_queued(&mut self) -> io::Result<()> {
        if self.ring.pending() > 0 {
            self.ring.sync()?;
        }
        Ok(())
    }

    #[inline]
    fn after_queue(&mut self) -> io::Result<()> {
        if self.ring.at_sync_mark() {
            self.ring.sync()?;
        }
        Ok(())
    }

    #[inline]
    fn queue(&mut self, data: &[u8]) -> io::Result<()> {
        self.ring.send(data)?;
        self.after_queue()
    }
}

impl AsyncWrite for AsyncNetmapTxRing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(this.ring.max_packet_size());
        ready!(this.poll_send_ready_n(cx, this.ring.slots_for(n)))?;
        this.queue(&buf[..n])?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().flush_queued())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(self, cx)
    }
}

impl Sink<Bytes> for AsyncNetmapTxRing {
    type Error = io::Error;

    #[inline]
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            ready!(this.poll_send_held(cx))?;
        }
        this.poll_send_ready(cx)
    }

    #[inline]
    fn start_send(self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        let this = self.get_mut();
        match this.queue(&item) {
            // A chain needs more slots than `poll_ready` waited for: hold it.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && item.len() > this.ring.max_payload_size()
                    && this.held.is_none() =>
            {
                this.held = Some(item);
                Ok(())
            }
            r => r,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            // Hand over what is queued first: the held item may wait for those slots.
            this.flush_queued()?;
            ready!(this.poll_send_held(cx))?;
        }
        Poll::Ready(this.flush_queued())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<Bytes>::poll_flush(self, cx)
    }
}

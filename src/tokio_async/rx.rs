//! [`AsyncNetmapRxRing`]: an RX ring as `AsyncRead`, `Stream` of owned frames, and zero-copy
//! batches.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use futures_core::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::Waiter;
use crate::sync::{Frame, RxBatch, RxRing};

/// Size of the chunks owned frames are copied into (one allocation serves many frames).
const ARENA: usize = 64 * 1024;

/// An RX ring driven by Tokio.
///
/// - [`AsyncRead`]: one read returns bytes of one packet only; a buffer smaller than the
///   packet gets its first part and the next read continues the same packet, so no byte is
///   dropped (zero-length packets carry no bytes and are skipped). A packet spread over
///   slots (`NS_MOREFRAG`) reads as one packet.
/// - [`Stream`] of owned [`Frame`]s (copied out into shared chunks), whole packets: a packet
///   spread over slots is gathered into one frame.
/// - [`recv`](AsyncNetmapRxRing::recv): waits, then lends the next frame borrowed from the
///   ring (zero copy): one slot, so [`Frame::more_fragments`] tells when a packet goes on
///   in the next frame.
/// - [`recv_batch`](AsyncNetmapRxRing::recv_batch): waits, then lends frames borrowed from the
///   ring (zero copy), released at the next sync; one slot each, as `recv`.
/// - [`for_each_frame`](AsyncNetmapRxRing::for_each_frame): waits, then lends each frame for
///   one call of a closure; on `afpacket:` read in place in the kernel's ring.
///
/// A slot whose buffer index or length is out of range (only a broken or hostile peer writes
/// one) is consumed and reported once as [`Error::CorruptSlot`](crate::Error::CorruptSlot) by
/// `recv`, the `Stream` and `AsyncRead`; `recv_batch` skips it (and logs it). The next good
/// packet follows as usual.
///
/// The `Stream` does not end when the peer goes away (netmap rings have no "closed" state);
/// see the [module docs](super#end-of-stream).
#[derive(Debug)]
pub struct AsyncNetmapRxRing {
    ring: RxRing,
    waiter: Waiter,
    /// The packet `poll_read` is in the middle of: its slot and the bytes already returned.
    /// Keyed by slot, so a packet consumed through [`get_mut`](Self::get_mut) meanwhile
    /// does not make the next packet lose its first bytes.
    partial: Option<(u32, usize)>,
    arena: BytesMut,
}

impl AsyncNetmapRxRing {
    pub(crate) fn new(ring: RxRing, waiter: Waiter) -> Self {
        AsyncNetmapRxRing {
            ring,
            waiter,
            partial: None,
            arena: BytesMut::new(),
        }
    }

    /// Bytes of the packet at the cursor that `poll_read` already returned.
    #[inline]
    fn partial_here(&self) -> usize {
        match self.partial {
            Some((slot, n)) if slot == self.ring.cursor() => n,
            _ => 0,
        }
    }

    /// The synchronous ring.
    pub fn get_ref(&self) -> &RxRing {
        &self.ring
    }

    /// The synchronous ring, for direct (non-waiting) use.
    pub fn get_mut(&mut self) -> &mut RxRing {
        &mut self.ring
    }

    /// Polls until at least one packet is waiting in the ring. Cancel-safe.
    pub fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Hand back half a ring's worth of consumed slots even while packets remain, so the
        // sender is not starved while this task works through a full ring.
        if self.release_due() {
            self.ring.sync()?;
        }
        loop {
            if self.ring.has_cached() || self.ring.available() > 0 {
                return Poll::Ready(Ok(()));
            }
            if !self.waiter.is_active_for(1) {
                // Release what was consumed and look for new packets before sleeping.
                self.ring.sync()?;
                if self.ring.available() > 0 {
                    return Poll::Ready(Ok(()));
                }
                tracing::trace!(
                    ring = self.ring.index(),
                    "rx ring empty: waiting for readiness"
                );
                self.waiter.start(1);
            } else if self.ring.unreleased() > 0 {
                // A wait left active by a dropped future (a timeout, a `select!`) does not
                // publish this handle's cursor: hand back what was consumed since before
                // sleeping on it, or a sender waiting for those slots waits for us forever.
                self.ring.sync()?;
                continue;
            }
            ready!(self.waiter.poll(cx))?;
        }
    }

    /// Waits until at least one packet is waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it consumes nothing. A wait dropped half-way stays registered with the
    /// handle and is reused (or replaced) by the next wait.
    pub async fn readable(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_recv_ready(cx)).await
    }

    /// Waits for the next packet and returns it borrowed from the ring (zero copy).
    /// A corrupt slot is consumed and returned as an error; the next call returns the next
    /// packet.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a future dropped before it completes has consumed no packet; the next
    /// `recv` returns the packet this one would have.
    pub async fn recv(&mut self) -> io::Result<Frame<'_>> {
        let taken = loop {
            self.readable().await?;
            if let Some(t) = self.ring.take_next() {
                break t;
            }
        };
        self.partial = None;
        Ok(self.ring.lend(taken?))
    }

    /// Waits until packets are waiting, then lends up to `max` of them borrowed from the ring
    /// (zero copy). They are handed back to the kernel at the next sync.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: until it completes it only waits, and a dropped future takes no packet.
    pub async fn recv_batch(&mut self, max: usize) -> io::Result<RxBatch<'_>> {
        self.readable().await?;
        self.partial = None;
        Ok(self.ring.batch(max))
    }

    /// Waits until packets are waiting, then hands up to `max` of them to `f`, each lent for
    /// one call (see [`RxRing::for_each_frame`]); returns how many (at least one, unless
    /// `max` is 0).
    ///
    /// On `afpacket:` the frames are read in place in the kernel's ring, and the wait sleeps
    /// on the ring's socket without a sync (which would copy them into slots). Elsewhere it
    /// waits as [`readable`](Self::readable) does and the frames come from slots, released
    /// at the next sync.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: frames go to `f` only inside a poll that then completes, so a dropped
    /// future has consumed none.
    pub async fn for_each_frame(
        &mut self,
        max: usize,
        mut f: impl FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        self.partial = None;
        let now = Some(std::time::Duration::ZERO);
        let n = self.ring.for_each_frame(max, now, &mut f)?;
        if n > 0 {
            return Ok(n);
        }
        if !self.ring.lends_in_place() {
            loop {
                self.readable().await?;
                let n = self.ring.for_each_frame(max, now, &mut f)?;
                if n > 0 {
                    return Ok(n);
                }
            }
        }
        let (ring, mut got) = (&mut self.ring, 0);
        self.waiter
            .lend_wait(|| {
                got = ring.for_each_frame(max, now, &mut f)?;
                Ok(got > 0)
            })
            .await?;
        Ok(got)
    }

    /// Takes the next packet without waiting, as an owned frame.
    #[inline(always)]
    fn take_owned(&mut self) -> Option<io::Result<Frame<'static>>> {
        let partial = self.partial_here();
        self.partial = None;
        let arena = &mut self.arena;
        let r = self.ring.take_owned(partial, |data| {
            if arena.capacity() < data.len() {
                *arena = BytesMut::with_capacity(ARENA.max(data.len()));
            }
            arena.extend_from_slice(data);
            arena.split().freeze()
        })?;
        Some(r.map_err(Into::into))
    }

    /// The general `Stream` path: waits, syncs, copies long packets, reports corrupt slots.
    #[inline(never)]
    fn poll_next_slow(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<'static>>>> {
        loop {
            ready!(self.poll_recv_ready(cx))?;
            if let Some(r) = self.take_owned() {
                return Poll::Ready(Some(r));
            }
        }
    }

    /// Whether enough consumed slots wait to be handed back that the sender should get them
    /// now, even though packets remain.
    #[inline]
    fn release_due(&self) -> bool {
        self.ring.unreleased() * 2 >= self.ring.num_slots()
    }
}

impl AsyncRead for AsyncNetmapRxRing {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(this.poll_recv_ready(cx))?;
            let mut wrote = 0;
            // The fragments of one packet (`NS_MOREFRAG`) continue in the same read.
            loop {
                let skip = this.partial_here();
                let slot = this.ring.cursor();
                let (n, done, more) = match this.ring.peek() {
                    None => break,
                    Some(Err(e)) => {
                        this.partial = None;
                        if wrote > 0 {
                            break;
                        }
                        return Poll::Ready(Err(e.into()));
                    }
                    Some(Ok(f)) => {
                        let data = &f.payload()[skip.min(f.len())..];
                        let n = data.len().min(buf.remaining());
                        buf.put_slice(&data[..n]);
                        (n, n == data.len(), f.more_fragments())
                    }
                };
                wrote += n;
                if !done {
                    this.partial = Some((slot, skip + n));
                    break;
                }
                this.ring.consume();
                this.partial = None;
                if !more || buf.remaining() == 0 {
                    break;
                }
            }
            if wrote > 0 {
                return Poll::Ready(Ok(()));
            }
            // A zero-length packet: nothing to return (0 bytes would read as EOF); go on.
        }
    }
}

impl Stream for AsyncNetmapRxRing {
    type Item = io::Result<Frame<'static>>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Fast path: a short packet is already in view and the cursor is not at the release
        // mark (half a ring consumed since the last sync: the slow path then checks exactly
        // and syncs). The frame is built right in the return value (no intermediate copies).
        if this.partial.is_none() && !this.ring.at_release_mark() {
            let ring = this.ring.index() as u16;
            if let Some((window, len, flags, stamp)) = this.ring.take_inline() {
                return Poll::Ready(Some(Ok(Frame::inline_window(
                    window, len, flags, ring, stamp,
                ))));
            }
        }
        this.poll_next_slow(cx)
    }
}

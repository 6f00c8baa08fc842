//! [`AsyncNetmapRxPort`]: every RX ring of a port from one task, fair across rings.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::rx::AsyncNetmapRxRing;
use crate::sync::{Frame, RxBatch};

/// Frames the [`Stream`] takes from one ring before it looks at the next: large enough that
/// a busy ring is served in batches (its cached view stays hot), small enough that no ring
/// waits long behind another.
const QUANTUM: u32 = 64;

/// Every RX ring of a port, received from one task: what C `pkt-gen` does in its one thread
/// (it reads every ring of the port in turn), for services that do not want a task per ring.
/// From [`TokioNetmap::rx_port`](super::TokioNetmap::rx_port).
///
/// - [`recv_batch`](Self::recv_batch): waits until a ring holds packets, then lends up to
///   `max` of them from that ring (zero copy, as the per-ring form).
/// - [`recv`](Self::recv): the next frame, borrowed (zero copy).
/// - [`Stream`] of owned [`Frame`]s (copied out, as the per-ring `Stream`).
///
/// **Fairness**: the rings are served in turn. `recv_batch` and `recv` start each call at
/// the ring after the one served last, so with `N` rings a ring that holds packets is served
/// within `N` calls; the `Stream` takes up to 64 frames from a ring before moving on.
/// [`Frame::ring_index`] says which ring a frame came from.
///
/// While no ring holds packets, one wait covers them all: each ring's readiness source is
/// registered with the task's waker, and the first ring to receive wakes it. A ring handed
/// out here cannot also be taken alone (at most one live handle per ring).
#[derive(Debug)]
pub struct AsyncNetmapRxPort {
    rings: Vec<AsyncNetmapRxRing>,
    /// The ring the next call looks at first.
    next: usize,
    /// Frames the `Stream` took from ring `next` in a row.
    served: u32,
}

impl AsyncNetmapRxPort {
    pub(crate) fn new(rings: Vec<AsyncNetmapRxRing>) -> Self {
        AsyncNetmapRxPort {
            rings,
            next: 0,
            served: 0,
        }
    }

    /// The per-ring handles, in port order.
    pub fn rings(&self) -> &[AsyncNetmapRxRing] {
        &self.rings
    }

    /// The per-ring handles, for direct use (syncing, reading one ring).
    pub fn rings_mut(&mut self) -> &mut [AsyncNetmapRxRing] {
        &mut self.rings
    }

    /// The per-ring handles back.
    pub fn into_rings(self) -> Vec<AsyncNetmapRxRing> {
        self.rings
    }

    /// Polls until a ring holds packets; returns its index, looking first at the ring after
    /// the one served last. Cancel-safe (consumes nothing).
    pub fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = self.rings.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            // Pending registers this task with ring i's readiness source: any ring that
            // receives wakes it.
            if let Poll::Ready(r) = self.rings[i].poll_recv_ready(cx) {
                r?;
                self.next = (i + 1) % n;
                return Poll::Ready(Ok(i));
            }
        }
        Poll::Pending
    }

    /// Waits until a ring holds packets; returns its index.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it consumes nothing.
    pub async fn readable(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_recv_ready(cx)).await
    }

    /// Waits until a ring holds packets, then lends up to `max` of them from that ring
    /// (zero copy), released to the kernel at that ring's next sync (the next wait on it
    /// syncs). The next call starts at the following ring.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: until it completes it only waits, and a dropped future takes no packet.
    pub async fn recv_batch(&mut self, max: usize) -> io::Result<RxBatch<'_>> {
        let i = self.readable().await?;
        self.rings[i].recv_batch(max).await
    }

    /// Waits for the next packet of any ring and returns it borrowed from its ring (zero
    /// copy). A corrupt slot is consumed and returned as an error.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped future has consumed no packet.
    pub async fn recv(&mut self) -> io::Result<Frame<'_>> {
        let i = self.readable().await?;
        self.rings[i].recv().await
    }
}

impl Stream for AsyncNetmapRxPort {
    type Item = io::Result<Frame<'static>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let n = this.rings.len();
        if this.served >= QUANTUM {
            this.next = (this.next + 1) % n;
            this.served = 0;
        }
        for step in 0..n {
            let i = (this.next + step) % n;
            // A ring's stream never ends (`None` is not an item it yields).
            if let Poll::Ready(Some(item)) = Pin::new(&mut this.rings[i]).poll_next(cx) {
                if i != this.next {
                    this.next = i;
                    this.served = 0;
                }
                this.served += 1;
                return Poll::Ready(Some(item));
            }
        }
        Poll::Pending
    }
}

//! [`NetmapFramed`]: per-packet codec framing, in the manner of `tokio_util::udp::UdpFramed`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use tokio_util::codec::{Decoder, Encoder};

use super::{AsyncNetmapRxRing, AsyncNetmapTxRing, Tap};
use crate::error::Error;

/// Pairs rings with a tokio-util codec: a [`Stream`] of items decoded from each received
/// packet and a [`Sink`] of items encoded one packet each.
///
/// Each packet is decoded on its own (with `decode_eof`, so a codec may yield several items
/// from one packet); bytes left undecoded at the end of a packet are discarded, never mixed
/// with the next packet.
///
/// A failure is confined to its packet or item:
/// - a decode error ends that packet: its remaining bytes are dropped and the codec is put
///   back to a copy taken before it decoded anything (hence `C: Clone` for the `Stream`), so
///   state a codec keeps after an error (such as `LinesCodec` discarding up to the next
///   newline) never reaches the next packet;
/// - a failed encode, or an encoded item larger than one packet, is an error for that item
///   only: the write buffer is cleared, so the next item is unaffected.
///
/// [`with_tap`](Self::with_tap) traces (and optionally records to pcap) every packet the
/// framing receives or sends, before decoding and after encoding.
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// use netmap_rs::tokio_async::{NetmapFramed, TokioNetmap};
/// use tokio_util::codec::LinesCodec;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let a = TokioNetmap::open("lines{1").await?;
/// let b = TokioNetmap::open("lines}1").await?;
/// let mut tx = NetmapFramed::tx_only(a.tx_ring(0)?, LinesCodec::new());
/// let mut rx = NetmapFramed::rx_only(b.rx_ring(0)?, LinesCodec::new());
/// tx.send("hello".to_string()).await?;
/// assert_eq!(rx.next().await.unwrap()?, "hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "sinks do nothing unless polled"]
pub struct NetmapFramed<C> {
    rx: Option<AsyncNetmapRxRing>,
    tx: Option<AsyncNetmapTxRing>,
    codec: C,
    /// The codec as it was before it decoded anything: restored after a decode error.
    pristine: Option<C>,
    tap: Option<Tap>,
    rd: BytesMut,
    wr: BytesMut,
    is_readable: bool,
}

fn no_ring(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this NetmapFramed has no {what} ring"),
    )
}

impl<C> NetmapFramed<C> {
    /// Framing over an RX ring and a TX ring (usually of the same port).
    pub fn new(rx: AsyncNetmapRxRing, tx: AsyncNetmapTxRing, codec: C) -> Self {
        Self::build(Some(rx), Some(tx), codec)
    }

    /// A decoding-only stream over an RX ring.
    pub fn rx_only(rx: AsyncNetmapRxRing, codec: C) -> Self {
        Self::build(Some(rx), None, codec)
    }

    /// An encoding-only sink over a TX ring.
    pub fn tx_only(tx: AsyncNetmapTxRing, codec: C) -> Self {
        Self::build(None, Some(tx), codec)
    }

    fn build(rx: Option<AsyncNetmapRxRing>, tx: Option<AsyncNetmapTxRing>, codec: C) -> Self {
        NetmapFramed {
            rx,
            tx,
            codec,
            pristine: None,
            tap: None,
            rd: BytesMut::with_capacity(2048),
            wr: BytesMut::with_capacity(2048),
            is_readable: false,
        }
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The codec, mutably. What it is left as becomes the state a decode error restores.
    pub fn codec_mut(&mut self) -> &mut C {
        self.pristine = None;
        &mut self.codec
    }

    /// The RX ring, if any (as `UdpFramed::get_ref` gives the socket).
    pub fn get_ref(&self) -> (Option<&AsyncNetmapRxRing>, Option<&AsyncNetmapTxRing>) {
        (self.rx.as_ref(), self.tx.as_ref())
    }

    /// The rings, mutably. Packets received or sent directly on them bypass the codec (and
    /// the tap); a packet being decoded is kept, so nothing is lost or cut.
    pub fn get_mut(
        &mut self,
    ) -> (
        Option<&mut AsyncNetmapRxRing>,
        Option<&mut AsyncNetmapTxRing>,
    ) {
        (self.rx.as_mut(), self.tx.as_mut())
    }

    /// Traces every packet received (before decoding) and sent (after encoding) through
    /// `tap`, created with [`Tap::recorder`] (and optionally [`Tap::with_pcap`]). A pcap
    /// write error is returned by the call that received or sent the packet; the packet
    /// itself is not lost (a received one is decoded at the next poll, a sent one is queued).
    pub fn with_tap(mut self, tap: Tap) -> Self {
        self.tap = Some(tap);
        self
    }

    /// The tap, if one was set: its counters, or to flush its pcap file.
    pub fn tap_mut(&mut self) -> Option<&mut Tap> {
        self.tap.as_mut()
    }

    /// The RX and TX rings back.
    pub fn into_parts(self) -> (Option<AsyncNetmapRxRing>, Option<AsyncNetmapTxRing>, C) {
        (self.rx, self.tx, self.codec)
    }
}

impl<C: Decoder + Clone + Unpin> Stream for NetmapFramed<C> {
    type Item = Result<C::Item, C::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.is_readable {
                match this.codec.decode_eof(&mut this.rd) {
                    Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                    Ok(None) => {}
                    Err(e) => {
                        this.is_readable = false;
                        this.rd.clear();
                        if let Some(p) = &this.pristine {
                            this.codec = p.clone();
                        }
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                this.is_readable = false;
                this.rd.clear();
            }
            let Some(rx) = this.rx.as_mut() else {
                return Poll::Ready(Some(Err(no_ring("RX").into())));
            };
            if let Err(e) = ready!(rx.poll_recv_ready(cx)) {
                return Poll::Ready(Some(Err(e.into())));
            }
            match rx.get_mut().try_recv_packet() {
                Ok(Some(frame)) => {
                    if this.pristine.is_none() {
                        this.pristine = Some(this.codec.clone());
                    }
                    this.rd.extend_from_slice(frame.payload());
                    this.is_readable = true;
                    if let Some(tap) = &mut this.tap {
                        // A pcap write error is reported; the packet stays to be decoded.
                        tap.record(&frame)?;
                    }
                }
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(io::Error::from(e).into()))),
            }
        }
    }
}

impl<I, C: Encoder<I> + Unpin> Sink<I> for NetmapFramed<C> {
    type Error = C::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        let this = self.get_mut();
        let tx = this.tx.as_mut().ok_or_else(|| no_ring("TX"))?;
        Poll::Ready(Ok(ready!(tx.poll_send_ready(cx))?))
    }

    fn start_send(self: Pin<&mut Self>, item: I) -> Result<(), C::Error> {
        let this = self.get_mut();
        let tx = this.tx.as_mut().ok_or_else(|| no_ring("TX"))?;
        this.wr.clear();
        let r = this.codec.encode(item, &mut this.wr).and_then(|()| {
            if this.wr.len() > tx.max_payload_size() {
                return Err(io::Error::from(Error::PacketTooLarge(this.wr.len())).into());
            }
            let ring = tx.get_ref().index();
            tx.get_mut().send(&this.wr).map_err(io::Error::from)?;
            match &mut this.tap {
                Some(tap) => tap.record_sent(&this.wr, ring).map_err(Into::into),
                None => Ok(()),
            }
        });
        // Whatever happened, the next item starts from an empty buffer.
        this.wr.clear();
        r?;
        let tx = this.tx.as_mut().expect("checked above");
        if tx.get_ref().pending() * 4 >= tx.get_ref().num_slots() {
            tx.get_mut().sync().map_err(io::Error::from)?;
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        let this = self.get_mut();
        let tx = this.tx.as_mut().ok_or_else(|| no_ring("TX"))?;
        tx.get_mut().sync().map_err(io::Error::from)?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Sink::<I>::poll_flush(self, cx)
    }
}

//! [`NetmapUdpFramed`]: a codec over a UDP endpoint, as tokio-util's `UdpFramed`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use futures_core::Stream;
use futures_sink::Sink;
use tokio_util::codec::{Decoder, Encoder};

use super::AsyncUdpPort;
use crate::wire::Addressing;

/// Largest datagram payload read (larger ones are cut, as a `UdpSocket` read into a
/// buffer of this size would): more than any slot holds.
const MAX_DATAGRAM: usize = 4096;
/// Sources remembered for replies (the table is cleared when it grows past this).
const MAX_PEERS: usize = 4096;

/// A [`Stream`] of `(item, source)` decoded from each datagram and a [`Sink`] of
/// `(item, destination)` encoded one datagram each, over an [`AsyncUdpPort`]: what
/// `tokio_util::udp::UdpFramed` is over a `UdpSocket`.
///
/// Each datagram is decoded on its own (`decode_eof`, so a codec may yield several items
/// from one datagram); what is left undecoded at its end is dropped. A decode error ends
/// that datagram and puts the codec back to a copy taken before it decoded anything
/// (hence `C: Clone`), as [`NetmapFramed`](super::NetmapFramed) does.
///
/// Sending to a source the stream has received from reuses that datagram's addresses,
/// turned around (no lookup: a reply needs no neighbour entry); another destination is
/// looked up as [`AsyncUdpPort::send_to`] does (an unresolved neighbour is an error for
/// that item only).
///
/// ```no_run
/// use futures::{SinkExt, StreamExt};
/// use netmap_rs::tokio_async::{AsyncUdpPort, NetmapUdpFramed, TokioNetmap};
/// use tokio_util::codec::LinesCodec;
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let port = TokioNetmap::open("xdp:eth0").await?;
/// let mut lines = NetmapUdpFramed::new(AsyncUdpPort::bind(&port, 7000)?, LinesCodec::new());
/// while let Some(Ok((line, from))) = lines.next().await {
///     lines.send((line.to_uppercase(), from)).await?; // an echo service, upper-cased
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct NetmapUdpFramed<C> {
    port: AsyncUdpPort,
    codec: C,
    pristine: Option<C>,
    rd: BytesMut,
    wr: BytesMut,
    from: Option<SocketAddr>,
    /// The addressing of the last datagram from each source.
    peers: HashMap<SocketAddr, Addressing>,
}

impl<C> NetmapUdpFramed<C> {
    /// Framing over `port` with `codec`.
    pub fn new(port: AsyncUdpPort, codec: C) -> Self {
        NetmapUdpFramed {
            port,
            codec,
            pristine: None,
            rd: BytesMut::new(),
            wr: BytesMut::new(),
            from: None,
            peers: HashMap::new(),
        }
    }

    /// The endpoint.
    pub fn get_ref(&self) -> &AsyncUdpPort {
        &self.port
    }

    /// The endpoint, mutably.
    pub fn get_mut(&mut self) -> &mut AsyncUdpPort {
        &mut self.port
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The endpoint and the codec back.
    pub fn into_parts(self) -> (AsyncUdpPort, C) {
        (self.port, self.codec)
    }
}

impl<C: Decoder + Clone + Unpin> Stream for NetmapUdpFramed<C> {
    type Item = Result<(C::Item, SocketAddr), C::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(from) = this.from {
                match this.codec.decode_eof(&mut this.rd) {
                    Ok(Some(item)) => return Poll::Ready(Some(Ok((item, from)))),
                    Ok(None) => {}
                    Err(e) => {
                        this.from = None;
                        this.rd.clear();
                        if let Some(p) = &this.pristine {
                            this.codec = p.clone();
                        }
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                this.from = None;
                this.rd.clear();
            }
            if this.pristine.is_none() {
                this.pristine = Some(this.codec.clone());
            }
            this.rd.resize(MAX_DATAGRAM, 0);
            let r = ready!(this.port.poll_recv_addressed(cx, &mut this.rd));
            match r {
                Ok((n, a)) => {
                    this.rd.truncate(n.min(MAX_DATAGRAM));
                    this.from = Some(a.src);
                    if this.peers.len() >= MAX_PEERS {
                        this.peers.clear();
                    }
                    this.peers.insert(a.src, a);
                }
                Err(e) => {
                    this.rd.clear();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

impl<I, C: Encoder<I> + Unpin> Sink<(I, SocketAddr)> for NetmapUdpFramed<C> {
    type Error = C::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Poll::Ready(Ok(ready!(self.get_mut().port.poll_send_ready(cx))?))
    }

    fn start_send(self: Pin<&mut Self>, (item, dst): (I, SocketAddr)) -> Result<(), C::Error> {
        let this = self.get_mut();
        this.wr.clear();
        let r = this.codec.encode(item, &mut this.wr).and_then(|()| {
            let a = match this.peers.get(&dst) {
                Some(p) => p.reply(),
                None => this.port.addressing_to(dst).map_err(io::Error::from)?,
            };
            this.port.queue(&a, &this.wr).map_err(io::Error::from)?;
            Ok(())
        });
        this.wr.clear();
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Poll::Ready(Ok(ready!(self.get_mut().port.poll_flush(cx))?))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        Sink::<(I, SocketAddr)>::poll_flush(self, cx)
    }
}

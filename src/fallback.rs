//! A connected in-process channel built on an emulated netmap pipe.
//!
//! [`create_fallback_channel`] opens both ends of a fresh emulated pipe and returns a sender
//! and a receiver with a simple `&self` API. It is the same ring code as every other port:
//! lossless, ordered, and bounded (a full ring makes `send` fail with
//! [`Error::InsufficientSpace`] until the receiver catches up).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::backend::BackendChoice;
use crate::error::Error;
use crate::sync::{Frame, Netmap, NetmapBuilder, RxRing, TxRing};

/// Sending end of a fallback channel.
#[derive(Debug)]
pub struct FallbackTxRing {
    ring: Mutex<TxRing>,
    _port: Netmap,
}

/// Receiving end of a fallback channel.
#[derive(Debug)]
pub struct FallbackRxRing {
    ring: Mutex<RxRing>,
    _port: Netmap,
}

/// Creates a channel over a new emulated pipe whose rings have `max_size` slots (at least
/// 4). One slot of the ring always stays empty, as in netmap, so `max_size - 1` packets can be
/// in flight. A packet longer than a slot's 2048-byte buffer takes several slots (up to
/// [`FallbackTxRing::max_payload_size`]) and arrives whole.
///
/// ```
/// use netmap_rs::fallback::create_fallback_channel;
/// let (tx, rx) = create_fallback_channel(64);
/// tx.send(b"hello fallback").unwrap();
/// if let Some(frame) = rx.recv() {
///     assert_eq!(frame.payload(), b"hello fallback");
/// }
/// ```
///
/// # Panics
/// If the emulated pipe cannot be created (out of memory or descriptors); see
/// [`try_create_fallback_channel`] for the fallible form.
pub fn create_fallback_channel(max_size: usize) -> (FallbackTxRing, FallbackRxRing) {
    try_create_fallback_channel(max_size).expect("cannot create an emulated netmap pipe")
}

/// Fallible form of [`create_fallback_channel`].
pub fn try_create_fallback_channel(
    max_size: usize,
) -> Result<(FallbackTxRing, FallbackRxRing), Error> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let slots = u32::try_from(max_size.max(4)).unwrap_or(u32::MAX);
    let open = |name: String| {
        NetmapBuilder::new(&name)
            .num_slots(slots)
            .backend(BackendChoice::Emulated)
            .build()
    };
    let master = open(format!("nmrs_fallback{{{id}"))?;
    let slave = open(format!("nmrs_fallback}}{id}"))?;
    let tx = master.tx_ring(0)?;
    let rx = slave.rx_ring(0)?;
    Ok((
        FallbackTxRing {
            ring: Mutex::new(tx),
            _port: master,
        },
        FallbackRxRing {
            ring: Mutex::new(rx),
            _port: slave,
        },
    ))
}

impl FallbackTxRing {
    /// Sends one packet: copies it into the ring and hands it to the receiver.
    pub fn send(&self, buf: &[u8]) -> Result<(), Error> {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        match ring.send(buf) {
            Err(Error::InsufficientSpace) => {
                // Reclaim what the receiver has released, then try once more.
                ring.sync()?;
                ring.send(buf)?;
            }
            other => other?,
        }
        ring.sync()
    }

    /// Largest packet accepted ([`TxRing::max_packet_size`](crate::TxRing::max_packet_size)).
    pub fn max_payload_size(&self) -> usize {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max_packet_size()
    }
}

impl FallbackRxRing {
    /// Receives one packet (owned), or `None` when nothing is waiting.
    pub fn recv(&self) -> Option<Frame<'static>> {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = ring.recv_packet() {
            return Some(f.into_owned());
        }
        ring.sync().ok()?;
        ring.recv_packet().map(Frame::into_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_lossless_and_bounded() {
        let (tx, rx) = create_fallback_channel(8);
        // 7 fit (one slot stays empty), the 8th is refused and not written.
        for i in 0..7u8 {
            tx.send(&[i; 10]).unwrap();
        }
        assert!(matches!(tx.send(&[99]), Err(Error::InsufficientSpace)));
        for i in 0..7u8 {
            assert_eq!(rx.recv().unwrap().payload(), &[i; 10]);
        }
        assert!(rx.recv().is_none());
        // After the receiver released its slots, the sender has room again.
        tx.send(b"again").unwrap();
        assert_eq!(rx.recv().unwrap().payload(), b"again");
        // Longer than a buffer: several slots, one packet.
        let long: Vec<u8> = (0..5000).map(|i| i as u8).collect();
        tx.send(&long).unwrap();
        assert_eq!(rx.recv().unwrap().payload(), &long[..]);
        let max = tx.max_payload_size();
        assert!(matches!(
            tx.send(&vec![0u8; max + 1]),
            Err(Error::PacketTooLarge(n)) if n == max + 1
        ));
    }
}

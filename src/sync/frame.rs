//! [`Frame`]: a received packet, borrowed from its ring slot or owned.

use std::ops::Deref;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::abi::NS_MOREFRAG;

/// Largest packet an owned frame stores inline (a `Frame` is then 128 bytes, timestamp
/// included).
pub(crate) const INLINE_CAPACITY: usize = 112;

/// Inline packet bytes.
#[derive(Debug, Clone, Copy)]
struct InlineBuf([u8; INLINE_CAPACITY]);

/// Per-packet metadata, kept inside each variant so it packs next to the tag.
#[derive(Debug, Clone, Copy)]
struct Meta {
    flags: u16,
    ring: u16,
    /// Receive time in nanoseconds since the Unix epoch, 0 for none, as two halves (4-byte
    /// alignment keeps the inline variant within 128 bytes).
    stamp: [u32; 2],
}

const NO_META: Meta = Meta::new(0, 0, 0);

impl Meta {
    #[inline(always)]
    const fn new(flags: u16, ring: u16, stamp_ns: u64) -> Meta {
        Meta {
            flags,
            ring,
            stamp: [stamp_ns as u32, (stamp_ns >> 32) as u32],
        }
    }
}

#[derive(Debug, Clone)]
enum Data<'a> {
    /// Bytes in a ring buffer (with the slot index when they came from a ring) or elsewhere.
    Borrowed {
        bytes: &'a [u8],
        slot: Option<u32>,
        meta: Meta,
    },
    Owned {
        bytes: Bytes,
        meta: Meta,
    },
    /// Small packets copied out of a ring: the bytes live in the frame itself.
    Inline {
        len: u8,
        meta: Meta,
        buf: InlineBuf,
    },
}

/// A packet.
///
/// A frame from [`RxRing::recv`](crate::RxRing::recv) borrows its slot's buffer (zero copy):
/// the ring cannot be synced, and so the slot cannot be handed back to the kernel, while the
/// frame lives. [`Frame::into_owned`] copies it out: packets of up to [`Frame::INLINE_CAPACITY`]
/// bytes are stored in the frame itself (no allocation, no reference count), longer ones in a
/// cheaply clonable [`Bytes`].
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    data: Data<'a>,
}

impl Default for Frame<'_> {
    fn default() -> Self {
        Frame::new(&[])
    }
}

impl<'a> Frame<'a> {
    /// Owned frames of up to this many bytes keep them inline, with no allocation and no
    /// reference count (longer ones share a [`Bytes`] allocation).
    pub const INLINE_CAPACITY: usize = INLINE_CAPACITY;

    /// A frame borrowing `data` (zero copy).
    pub fn new(data: &'a [u8]) -> Self {
        Frame {
            data: Data::Borrowed {
                bytes: data,
                slot: None,
                meta: NO_META,
            },
        }
    }

    /// A frame owning `data`.
    pub fn new_owned(data: Vec<u8>) -> Self {
        Self::from_bytes(Bytes::from(data))
    }

    /// A frame owning `data` (no copy).
    pub fn from_bytes(data: Bytes) -> Self {
        Self::owned(data, NO_META)
    }

    fn owned(bytes: Bytes, meta: Meta) -> Frame<'static> {
        Frame {
            data: Data::Owned { bytes, meta },
        }
    }

    pub(crate) fn from_slot(data: &'a [u8], flags: u16, ring: u16, slot: u32) -> Self {
        Frame {
            data: Data::Borrowed {
                bytes: data,
                slot: Some(slot),
                meta: Meta::new(flags, ring, 0),
            },
        }
    }

    /// Bytes lent in place by a driver (no slot), with their receive time.
    pub(crate) fn in_place(data: &'a [u8], ring: u16, stamp_ns: u64) -> Self {
        Frame {
            data: Data::Borrowed {
                bytes: data,
                slot: None,
                meta: Meta::new(0, ring, stamp_ns),
            },
        }
    }

    /// A whole packet gathered from several slots: owned, with `first`'s metadata (ring,
    /// receive time) and its flags without `NS_MOREFRAG`.
    pub(crate) fn gathered(bytes: Bytes, first: &Frame<'_>) -> Frame<'static> {
        let mut meta = first.meta();
        meta.flags &= !NS_MOREFRAG;
        Self::owned(bytes, meta)
    }

    /// This frame with receive time `stamp_ns` (nanoseconds since the Unix epoch; 0: none).
    #[inline(always)]
    pub(crate) fn stamped(mut self, stamp_ns: u64) -> Self {
        let stamp = Meta::new(0, 0, stamp_ns).stamp;
        match &mut self.data {
            Data::Borrowed { meta, .. } | Data::Owned { meta, .. } | Data::Inline { meta, .. } => {
                meta.stamp = stamp
            }
        }
        self
    }

    /// This frame with receive time `at` (as [`timestamp`](Frame::timestamp) returns it); a
    /// time before the Unix epoch or after 2554 is no timestamp. For frames built by hand,
    /// e.g. to replay a capture through a tap (`tokio_async::Tap`).
    pub fn with_timestamp(self, at: SystemTime) -> Self {
        let ns = at
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .unwrap_or(0);
        self.stamped(ns)
    }

    /// An owned copy of `src`: inline when it fits, else in `spill`'s storage.
    #[inline]
    fn copy_of(src: &[u8], meta: Meta, spill: impl FnOnce(&[u8]) -> Bytes) -> Frame<'static> {
        if src.len() > INLINE_CAPACITY {
            return Self::owned(spill(src), meta);
        }
        let mut buf = InlineBuf([0; INLINE_CAPACITY]);
        buf.0[..src.len()].copy_from_slice(src);
        Frame {
            data: Data::Inline {
                len: src.len() as u8,
                meta,
                buf,
            },
        }
    }

    fn meta(&self) -> Meta {
        match self.data {
            Data::Borrowed { meta, .. } | Data::Owned { meta, .. } | Data::Inline { meta, .. } => {
                meta
            }
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the frame has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        match &self.data {
            Data::Borrowed { bytes, .. } => bytes,
            Data::Owned { bytes, .. } => bytes,
            Data::Inline { len, buf, .. } => &buf.0[..*len as usize],
        }
    }

    /// The slot's `NS_*` flags as received.
    pub fn flags(&self) -> u16 {
        self.meta().flags
    }

    /// Whether more fragments of the same packet follow in the next slots (`NS_MOREFRAG`):
    /// only for frames lent one slot at a time (`recv`, batches, `for_each_frame` from slots);
    /// frames of
    /// [`RxRing::recv_packet`](crate::RxRing::recv_packet) and the Tokio `Stream` are whole
    /// packets.
    pub fn more_fragments(&self) -> bool {
        self.flags() & NS_MOREFRAG != 0
    }

    /// When the packet was received, where the backend says (wall clock, `CLOCK_REALTIME`):
    ///
    /// - `afpacket:`: the kernel's per-packet software timestamp (`tp_sec`/`tp_nsec`,
    ///   nanoseconds, taken when the packet reached the socket);
    /// - netmap module and emulated pipes: the ring's `ts`, the time of the rxsync that made
    ///   the packet visible (`NR_TIMESTAMP`, microseconds; one value for a whole batch);
    /// - `xdp:`: `None` (AF_XDP has no per-packet timestamp without metadata support), as for
    ///   frames built by hand ([`Frame::new`]) unless given one ([`Frame::with_timestamp`]).
    ///
    /// Owned copies ([`Frame::into_owned`], the Tokio `Stream`) keep it.
    pub fn timestamp(&self) -> Option<SystemTime> {
        let [lo, hi] = self.meta().stamp;
        let ns = u64::from(lo) | (u64::from(hi) << 32);
        (ns != 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns))
    }

    /// Index of the ring (as the port numbers its rings) the frame came from.
    pub fn ring_index(&self) -> usize {
        self.meta().ring as usize
    }

    /// Slot index within the ring, for frames that borrow a slot.
    pub fn slot_index(&self) -> Option<u32> {
        match self.data {
            Data::Borrowed { slot, .. } => slot,
            _ => None,
        }
    }

    /// Whether the frame borrows a ring buffer (zero copy).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Data::Borrowed { .. })
    }

    /// An owned copy (or the same owned bytes), independent of the ring.
    pub fn into_owned(self) -> Frame<'static> {
        match self.data {
            Data::Borrowed { bytes, meta, .. } => {
                Self::copy_of(bytes, meta, Bytes::copy_from_slice)
            }
            Data::Owned { bytes, meta } => Self::owned(bytes, meta),
            Data::Inline { len, meta, buf } => Frame {
                data: Data::Inline { len, meta, buf },
            },
        }
    }

    /// An owned frame of the first `len` bytes of `window` (a ring buffer's first
    /// `INLINE_CAPACITY` bytes: copying a fixed size needs no zeroing and no length-dependent
    /// copy loop).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn inline_window(
        window: &[u8; INLINE_CAPACITY],
        len: u8,
        flags: u16,
        ring: u16,
        stamp_ns: u64,
    ) -> Frame<'static> {
        debug_assert!(len as usize <= INLINE_CAPACITY);
        Frame {
            data: Data::Inline {
                len,
                meta: Meta::new(flags, ring, stamp_ns),
                buf: InlineBuf(*window),
            },
        }
    }

    /// An owned copy of `payload()[skip..]` keeping this frame's metadata: inline when it
    /// fits, else copied by `spill` (which may pack many frames into one allocation).
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    #[inline]
    pub(crate) fn copied(&self, skip: usize, spill: impl FnOnce(&[u8]) -> Bytes) -> Frame<'static> {
        let src = &self.payload()[skip.min(self.len())..];
        Self::copy_of(src, self.meta(), spill)
    }

    /// The bytes as [`Bytes`] (copied unless already held in a `Bytes`).
    pub fn into_bytes(self) -> Bytes {
        match self.data {
            Data::Owned { bytes, .. } => bytes,
            _ => Bytes::copy_from_slice(self.payload()),
        }
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.payload()
    }
}

impl AsRef<[u8]> for Frame<'_> {
    fn as_ref(&self) -> &[u8] {
        self.payload()
    }
}

impl PartialEq for Frame<'_> {
    /// Frames compare by their bytes.
    fn eq(&self, other: &Self) -> bool {
        self.payload() == other.payload()
    }
}

impl Eq for Frame<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_and_owned_agree() {
        let data = b"hello".to_vec();
        let f = Frame::new(&data);
        assert!(f.is_borrowed());
        assert_eq!(f.len(), 5);
        let o = f.clone().into_owned();
        assert!(!o.is_borrowed());
        assert_eq!(o, f);
        assert_eq!(&*o, b"hello");
        let v = Frame::new_owned(vec![1, 2, 3]);
        assert_eq!(v.payload(), &[1, 2, 3]);
        assert!(Frame::default().is_empty());
        let s = Frame::from_slot(b"x", NS_MOREFRAG, 2, 7);
        assert!(s.more_fragments());
        assert_eq!(s.ring_index(), 2);
        assert_eq!(s.slot_index(), Some(7));
        assert_eq!(s.into_owned().slot_index(), None);
    }

    #[test]
    fn owned_copies_are_inline_up_to_the_capacity_then_shared() {
        assert_eq!(std::mem::size_of::<Frame<'static>>(), 128);
        for n in [
            0,
            1,
            64,
            Frame::INLINE_CAPACITY,
            Frame::INLINE_CAPACITY + 1,
            1500,
        ] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut spilled = false;
            let f = Frame::from_slot(&data, 0, 1, 3).copied(0, |d| {
                spilled = true;
                Bytes::copy_from_slice(d)
            });
            assert_eq!(spilled, n > Frame::INLINE_CAPACITY, "{n} bytes");
            assert_eq!(f.payload(), &data[..], "{n} bytes");
            assert_eq!(f.ring_index(), 1);
            assert!(!f.is_borrowed());
            let o = Frame::new(&data).into_owned();
            assert!(!o.is_borrowed());
            assert_eq!(o.clone().into_bytes(), &data[..]);
            assert_eq!(o, f);
        }
        let window: [u8; INLINE_CAPACITY] = std::array::from_fn(|i| i as u8);
        let w = Frame::inline_window(&window, 5, NS_MOREFRAG, 2, 0);
        assert_eq!(w.payload(), &[0, 1, 2, 3, 4]);
        assert!(w.more_fragments() && !w.is_borrowed());
        assert_eq!((w.ring_index(), w.slot_index()), (2, None));
        let tail = Frame::new(b"abcdef").copied(4, Bytes::copy_from_slice);
        assert_eq!(tail.payload(), b"ef");
        assert_eq!(Frame::new(b"ab").copied(9, Bytes::copy_from_slice).len(), 0);
    }

    #[test]
    fn timestamps_travel_with_every_form() {
        assert_eq!(Frame::new(b"x").timestamp(), None);
        let at = UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789);
        let long = vec![7u8; 1500];
        for data in [&b"short"[..], &long[..]] {
            let f = Frame::from_slot(data, 0, 1, 2).stamped(1_790_000_000_123_456_789);
            assert_eq!(f.timestamp(), Some(at));
            assert_eq!(f.clone().into_owned().timestamp(), Some(at));
            assert_eq!(f.copied(1, Bytes::copy_from_slice).timestamp(), Some(at));
        }
        let window = [0u8; INLINE_CAPACITY];
        let w = Frame::inline_window(&window, 3, 0, 0, 1_790_000_000_123_456_789);
        assert_eq!(w.timestamp(), Some(at));
        assert_eq!(Frame::inline_window(&window, 3, 0, 0, 0).timestamp(), None);
        let hand = Frame::new_owned(vec![1, 2]).with_timestamp(at);
        assert_eq!(hand.timestamp(), Some(at));
        assert_eq!(hand.with_timestamp(UNIX_EPOCH).timestamp(), None);
    }
}

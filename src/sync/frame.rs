//! [`Frame`]: a received packet, borrowed from its ring slot or owned.

use std::ops::Deref;

use bytes::Bytes;

use crate::abi::NS_MOREFRAG;

#[derive(Debug, Clone)]
enum Data<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

/// A packet.
///
/// A frame from [`RxRing::recv`](crate::RxRing::recv) borrows its slot's buffer (zero copy):
/// the ring cannot be synced, and so the slot cannot be handed back to the kernel, while the
/// frame lives. [`Frame::into_owned`] copies it out into a cheaply clonable [`Bytes`].
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    data: Data<'a>,
    flags: u16,
    ring: u16,
    slot: Option<u32>,
}

impl Default for Frame<'_> {
    fn default() -> Self {
        Frame::new(&[])
    }
}

impl<'a> Frame<'a> {
    /// A frame borrowing `data` (zero copy).
    pub fn new(data: &'a [u8]) -> Self {
        Frame {
            data: Data::Borrowed(data),
            flags: 0,
            ring: 0,
            slot: None,
        }
    }

    /// A frame owning `data`.
    pub fn new_owned(data: Vec<u8>) -> Self {
        Self::from_bytes(Bytes::from(data))
    }

    /// A frame owning `data` (no copy).
    pub fn from_bytes(data: Bytes) -> Self {
        Frame {
            data: Data::Owned(data),
            flags: 0,
            ring: 0,
            slot: None,
        }
    }

    pub(crate) fn from_slot(data: &'a [u8], flags: u16, ring: u16, slot: u32) -> Self {
        Frame {
            data: Data::Borrowed(data),
            flags,
            ring,
            slot: Some(slot),
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
            Data::Borrowed(b) => b,
            Data::Owned(b) => b,
        }
    }

    /// The slot's `NS_*` flags as received.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Whether more fragments of the same packet follow in the next slots (`NS_MOREFRAG`).
    pub fn more_fragments(&self) -> bool {
        self.flags & NS_MOREFRAG != 0
    }

    /// Index of the ring (as the port numbers its rings) the frame came from.
    pub fn ring_index(&self) -> usize {
        self.ring as usize
    }

    /// Slot index within the ring, for frames that borrow a slot.
    pub fn slot_index(&self) -> Option<u32> {
        self.slot
    }

    /// Whether the frame borrows a ring buffer (zero copy).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.data, Data::Borrowed(_))
    }

    /// An owned copy (or the same owned bytes), independent of the ring.
    pub fn into_owned(self) -> Frame<'static> {
        let data = match self.data {
            Data::Borrowed(b) => Bytes::copy_from_slice(b),
            Data::Owned(b) => b,
        };
        Frame {
            data: Data::Owned(data),
            flags: self.flags,
            ring: self.ring,
            slot: None,
        }
    }

    /// Owned frame built from already copied bytes, keeping this frame's metadata.
    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn with_bytes(&self, data: Bytes) -> Frame<'static> {
        Frame {
            data: Data::Owned(data),
            flags: self.flags,
            ring: self.ring,
            slot: None,
        }
    }

    /// The bytes as [`Bytes`] (copied when borrowed).
    pub fn into_bytes(self) -> Bytes {
        match self.data {
            Data::Borrowed(b) => Bytes::copy_from_slice(b),
            Data::Owned(b) => b,
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
}

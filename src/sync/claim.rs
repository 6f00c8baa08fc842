//! Process-wide claims on rings.
//!
//! A ring handle may exist at most once per ring in this process, whichever registration it
//! was taken through: two registrations of one ring (`netmap:veth0` opened twice without
//! `/x`, or `veth0-0` and `veth0`) map the same slots, and two handles over them would let
//! safe code hold a frame (`&[u8]`) and a packet buffer (`&mut [u8]`) over the same bytes. A
//! ring is named by its memory's identity and the ring header's offset in that memory.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use crate::backend::MemIdentity;

type Key = (MemIdentity, usize);

fn claims() -> &'static Mutex<HashSet<Key>> {
    static C: OnceLock<Mutex<HashSet<Key>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashSet::new()))
}

/// The claim on one ring, released on drop.
#[derive(Debug)]
pub(crate) struct Claim(Key);

impl Claim {
    /// Claims the ring at `off` in memory `mem`, or `None` when a live handle has it.
    pub(crate) fn take(mem: MemIdentity, off: usize) -> Option<Claim> {
        let mut c = claims().lock().unwrap_or_else(|e| e.into_inner());
        let fresh = c.insert((mem, off));
        drop(c);
        fresh.then(|| Claim((mem, off)))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut c = claims().lock().unwrap_or_else(|e| e.into_inner());
        c.remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_claimed_once_per_memory_and_offset() {
        let kernel = MemIdentity::Kernel {
            mem_id: 7,
            memsize: 1 << 20,
        };
        let a = Claim::take(kernel, 4096).expect("free");
        // The same ring through a second registration of the same memory.
        assert!(Claim::take(kernel, 4096).is_none());
        // Another ring of that memory, and the same offset in another memory.
        let b = Claim::take(kernel, 8192).expect("another ring");
        let other = MemIdentity::Emulated {
            mem_id: 7,
            base: 0x1000,
        };
        let c = Claim::take(other, 4096).expect("another memory");
        drop(a);
        assert!(Claim::take(kernel, 4096).is_some(), "released on drop");
        drop((b, c));
    }
}

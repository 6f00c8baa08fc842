//! Regression tests of the emulated backend's registration, memory identity and teardown.

use super::*;
use crate::abi::{NetmapRing, NetmapSlot};
use crate::backend::BackendChoice;
use crate::{zero_copy_forward, Netmap, NetmapBuilder};

#[cfg(all(target_os = "linux", not(miri)))]
mod xproc;

fn open(name: &str) -> Netmap {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(8)
        .build()
        .unwrap()
}

/// Pointer to slot `k` of a ring header (test-only raw access).
fn slot(ring: *mut NetmapRing, k: usize) -> *mut NetmapSlot {
    // SAFETY: pointer arithmetic only: the slot array follows the 256-byte header, and the
    // callers pass k < num_slots (8).
    unsafe { ring.add(1).cast::<NetmapSlot>().add(k) }
}

/// Buffer indices of every slot of TX ring 0 of `port`.
fn tx_bufs(port: &Netmap) -> Vec<u32> {
    let ring = port.raw_tx_ring_ptr(0).unwrap();
    (0..8)
        // SAFETY: reading slot metadata of a ring no handle and no peer is using right now
        // (single-threaded test, nothing in flight).
        .map(|k| unsafe { (*slot(ring, k)).buf_idx })
        .collect()
}

/// A failure after the rings were looked up (here: no descriptor for a notifier, as under
/// a low RLIMIT_NOFILE) must leave the pipe end unbound, so a later open succeeds.
#[test]
fn failed_open_leaves_no_binding() {
    let _peer = open("failopen}0");
    super::notify::fail_next_notifiers(1);
    let e = NetmapBuilder::new("failopen{0")
        .backend(BackendChoice::Emulated)
        .num_slots(8)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    let again = NetmapBuilder::new("failopen{0")
        .backend(BackendChoice::Emulated)
        .num_slots(8)
        .build();
    assert!(
        again.is_ok(),
        "the failed open left the end bound: {:?}",
        again.err()
    );
}

/// Memory ids wrap; a live memory's id is never handed out again, and identity compares the
/// mapping itself, so buffers are never swapped between two regions.
#[test]
fn memory_ids_are_never_shared_by_two_live_regions() {
    let keep_a = open("memidkeep{0");
    let keep_b = open("memidkeep}0");
    // Make the next new memory try the id `keep` has (as after 65,534 others were dropped).
    set_next_mem_id(keep_a.mem_id());
    let other_a = open("memidother{0");
    let other_b = open("memidother}0");
    assert_ne!(other_a.mem_id(), keep_a.mem_id());
    assert!(!keep_b.shares_memory_with(&other_a));
    let mut tx = keep_a.tx_ring(0).unwrap();
    tx.send(b"from keep").unwrap();
    tx.sync().unwrap();
    let mut rx = keep_b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    let mut otx = other_a.tx_ring(0).unwrap();
    let e = zero_copy_forward(&mut rx, &mut otx, 1).unwrap_err();
    assert!(matches!(e, Error::MemoryMismatch), "{e}");
    drop(other_b);
}

/// Pipe teardown returns only buffers the memory handed out, each once: a slot index that a
/// hostile write repeated or put out of range never reaches a later pipe.
#[test]
fn teardown_refuses_repeated_and_foreign_buffer_indices() {
    // Keeps the parent's memory alive across the teardown.
    let _keep = open("teardown{9");
    let a = open("teardown{0");
    let b = open("teardown}0");
    let ring = a.raw_tx_ring_ptr(0).unwrap();
    let bufs = tx_bufs(&a);
    // SAFETY: TX slots 0 and 2 are in the user's [head, tail) of a ring no handle uses; a
    // hostile user (or peer) may write anything there.
    unsafe {
        (*slot(ring, 0)).buf_idx = bufs[1];
        (*slot(ring, 2)).buf_idx = u32::MAX;
    }
    drop(a);
    drop(b);
    let c = open("teardown{1");
    let d = open("teardown}1");
    let mut seen = tx_bufs(&c);
    seen.extend(tx_bufs(&d));
    seen.extend(tx_bufs(&_keep));
    let mut dedup = seen.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        seen.len(),
        "two slots share a buffer: {seen:?}"
    );
}

//! Issue 18.1: whatever a peer process writes into the slots of a memory this process maps,
//! safe code never gets two live views of one buffer where one is `&mut` (the rings' held
//! buffers, `src/sync/held.rs`). Runs on the emulated pipes, and on the kernel's pipes when
//! the module is loaded.

use netmap_rs::prelude::*;
use netmap_rs::Error;

mod common;
use common::pipe;

/// Reads (`None`) or writes (`Some`) the buffer index of slot `k` of the ring at `ring`, as
/// a hostile process mapping the same memory would.
fn slot_buf_idx(ring: *mut netmap_rs::abi::NetmapRing, k: u32, set: Option<u32>) -> u32 {
    use netmap_rs::abi::{NetmapRing, NetmapSlot};
    // SAFETY: `ring` is a ring header of a live port; its slot array of num_slots entries
    // follows the header, and k is below num_slots (checked). The test is alone on the ring
    // (no handle of it is lending this slot), acting as a peer that writes shared memory.
    unsafe {
        assert!(k < (*ring).num_slots);
        let slot = ring
            .cast::<u8>()
            .add(size_of::<NetmapRing>())
            .cast::<NetmapSlot>()
            .add(k as usize);
        let old = (*slot).buf_idx;
        if let Some(v) = set {
            (*slot).buf_idx = v;
        }
        old
    }
}

/// Reads `seen` through the shared view after writing through the mutable one: with the two
/// aliasing, the compiler may return the value it read before the write.
#[inline(never)]
fn read_write_read(seen: &[u8], out: &mut [u8]) -> (u8, u8) {
    let before = seen[0];
    out[0] = before.wrapping_add(1);
    (before, seen[0])
}

/// Issue 18.1: a peer points a TX slot at the buffer of the RX slot this process is reading.
/// Taking that TX slot must not give a `&mut [u8]` (or a write) over the bytes of the live
/// `Frame`: the slot is refused as corrupt, and the frame keeps its bytes. (Before: the
/// reservation handed out the buffer, and two views of it coexisted.)
#[test]
fn a_peer_cannot_make_two_views_of_one_buffer() {
    // Two pipes of one parent: one memory, four rings.
    let (a, b) = pipe("alias", 16);
    let c = NetmapBuilder::new("alias{1").num_slots(16).build().unwrap();
    let _d = NetmapBuilder::new("alias}1").num_slots(16).build().unwrap();
    assert!(a.shares_memory_with(&c));
    let mut tx = a.tx_ring(0).unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    tx.send(b"hello").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    let rx_ring = b.raw_rx_ring_ptr(0).unwrap();
    let rx_head = b.ring_pointers().rx[0][0];
    let x = slot_buf_idx(rx_ring, rx_head, None);
    let frame = rx.recv().unwrap();
    assert_eq!(frame.payload(), b"hello");
    // The peer's write, before this process takes the other pipe's TX ring.
    let tx2_ring = c.raw_tx_ring_ptr(0).unwrap();
    let tx2_head = c.ring_pointers().tx[0][0];
    let own = slot_buf_idx(tx2_ring, tx2_head, Some(x));
    let mut tx2 = c.tx_ring(0).unwrap();
    {
        let mut r = tx2.reserve_batch(1).unwrap();
        match r.packet(0, 16) {
            Err(Error::CorruptSlot { buf_idx, .. }) => assert_eq!(buf_idx, x),
            Err(e) => panic!("unexpected error {e}"),
            Ok(buf) => {
                let (a, b) = read_write_read(&frame, buf);
                panic!("two live views of buffer {x}: read {a} then {b}");
            }
        }
        assert!(matches!(
            r.fill(|_, buf| buf.len()),
            Err(Error::CorruptSlot { .. })
        ));
    }
    // `send` (a write, no view handed out) is refused the same way.
    assert!(matches!(tx2.send(b"zz"), Err(Error::CorruptSlot { .. })));
    assert_eq!(frame.payload(), b"hello", "the frame's bytes were written");
    drop(frame);
    // The slot gets its own buffer back; the ring carries on.
    slot_buf_idx(tx2_ring, tx2_head, Some(own));
    tx2.send(b"ok").unwrap();
    tx2.sync().unwrap();
}

/// The same, when the frame was lent while its ring's handle was the only one on the memory
/// (claims then skip the table): the second handle must still see the lent buffer as held.
#[test]
fn a_peer_cannot_make_two_views_after_a_lone_handle_lent() {
    use netmap_rs::abi::NetmapRing;
    let (a, b) = pipe("alone", 16);
    // A packet sent by hand (no TX handle), so the RX handle is the memory's only one.
    let ring: *mut NetmapRing = a.raw_tx_ring_ptr(0).unwrap();
    // SAFETY: the test drives the TX ring by hand, alone: slot `head` is the user's; setting
    // its length and publishing cur/head is what a C program does.
    unsafe {
        let head = (*ring).head;
        let slot = ring
            .cast::<u8>()
            .add(size_of::<NetmapRing>())
            .cast::<netmap_rs::abi::NetmapSlot>()
            .add(head as usize);
        (*slot).len = 60;
        let next = (head + 1) % (*ring).num_slots;
        (*ring).cur = next;
        (*ring).head = next;
    }
    a.sync_tx_published().unwrap();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    let rx_head = b.ring_pointers().rx[0][0];
    let x = slot_buf_idx(b.raw_rx_ring_ptr(0).unwrap(), rx_head, None);
    let frame = rx.recv().unwrap();
    assert_eq!(frame.len(), 60);
    let c = NetmapBuilder::new("alone{1").num_slots(16).build().unwrap();
    let _d = NetmapBuilder::new("alone}1").num_slots(16).build().unwrap();
    let tx2_ring = c.raw_tx_ring_ptr(0).unwrap();
    let tx2_head = c.ring_pointers().tx[0][0];
    let own = slot_buf_idx(tx2_ring, tx2_head, Some(x));
    let mut tx2 = c.tx_ring(0).unwrap();
    assert!(matches!(tx2.send(b"zz"), Err(Error::CorruptSlot { .. })));
    {
        let mut r = tx2.reserve_batch(1).unwrap();
        if let Ok(buf) = r.packet(0, 16) {
            let (a, b) = read_write_read(&frame, buf);
            panic!("two live views of buffer {x}: read {a} then {b}");
        }
    }
    drop(frame);
    slot_buf_idx(tx2_ring, tx2_head, Some(own));
}

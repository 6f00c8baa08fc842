//! Regression tests of the pipe table: building and tearing down pipes over a control area
//! another process may have written anything into, or left half done.

use std::sync::atomic::Ordering;

use super::super::ctl::crash::{audit, memory};
use super::super::ctl::{Area, SLOT_BUILDING, SLOT_DYING, SLOT_FREE, SLOT_LIVE};
use super::super::{RX, TX};
use crate::backend::BackendChoice;
use crate::{Error, Netmap, NetmapBuilder};

fn open(name: &str, slots: u32) -> Result<Netmap, Error> {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(slots)
        .build()
}

/// The header, the buffer bitmap and the words of slot `s` (its links among them): what an
/// open that fails must leave as it found it.
fn control_words(parent: &str, s: usize) -> Vec<u64> {
    let mem = memory(parent).unwrap();
    let ctl = &mem.ctl;
    let slot = ctl.slot(s);
    (0..ctl.slot(0) / 8)
        .chain(slot / 8..(slot + super::super::ctl::SLOT_SIZE) / 8)
        .map(|k| ctl.a64(k * 8).load(Ordering::Relaxed))
        .collect()
}

fn slot_of(parent: &str, name: &str) -> usize {
    let mem = memory(parent).unwrap();
    (0..mem.ctl.g.max_pipes)
        .find(|&s| mem.ctl.slot_named(s, name.as_bytes()))
        .unwrap()
}

fn pair(p: &str, k: u32, slots: u32) -> (Netmap, Netmap) {
    (
        open(&format!("{p}{{{k}"), slots).unwrap(),
        open(&format!("{p}}}{k}"), slots).unwrap(),
    )
}

fn works(a: &Netmap, b: &Netmap) {
    let (mut tx, mut rx) = (a.tx_ring(0).unwrap(), b.rx_ring(0).unwrap());
    tx.send(b"still works").unwrap();
    tx.sync().unwrap();
    rx.sync().unwrap();
    assert_eq!(rx.recv().unwrap().payload(), b"still works");
}

/// A hostile allocator cursor (defect: `next_multiple_of` wrapped to 0 in release builds and
/// the next `netmap_if` or ring landed over the magic and live link words; in debug builds
/// the open panicked) fails the open with a clear error, and the header, the bitmap and a
/// live pipe's words stay as they were.
#[test]
fn hostile_cursors_fail_the_open_and_write_nothing_over_the_control_area() {
    let p = format!("hcur{}", std::process::id());
    let keep = pair(&p, 9, 8);
    // One end open: opening the other needs only a `netmap_if`.
    let _half = open(&format!("{p}{{1"), 8).unwrap();
    let live = slot_of(&p, &format!("{p}{{9"));
    let mem = memory(&p).unwrap();
    for (area, word, start) in [
        (Area::If, 16, mem.ctl.g.if_start),
        (Area::Ring, 24, mem.ctl.g.if_end),
    ] {
        for bad in [u64::MAX - 10, u64::MAX, 1 << 63] {
            mem.ctl.a64(word).store(bad, Ordering::Relaxed);
            let before = control_words(&p, live);
            let name = match area {
                Area::If => format!("{p}}}1"),
                Area::Ring => format!("{p}{{2"),
            };
            match open(&name, 8) {
                Err(Error::BindFail(m)) => assert!(m.contains("no room"), "{m}"),
                other => panic!("cursor {bad:#x}: {other:?}"),
            }
            assert_eq!(
                control_words(&p, live),
                before,
                "cursor {bad:#x}: the control area changed"
            );
        }
        mem.ctl.a64(word).store(start as u64, Ordering::Relaxed);
    }
    assert!(mem.ctl.valid());
    works(&keep.0, &keep.1);
}

/// A build that runs out of buffers after taking rings gives back everything it took.
#[test]
fn a_failed_build_gives_back_what_it_took() {
    let p = format!("fbuild{}", std::process::id());
    let keep = pair(&p, 9, 64);
    let mem = memory(&p).unwrap();
    let before = audit(&mem).unwrap();
    let nbufs = mem.ctl.g.nbufs;
    // Rings fit in the ring area, buffers do not: 2 links of `slots` slots each.
    let slots = (nbufs / 2 + 64)
        .next_power_of_two()
        .min(crate::backend::emulated::MAX_SLOTS);
    if 2 * slots <= nbufs {
        eprintln!("SKIPPED: memory too large for this test ({nbufs} buffers)");
        return;
    }
    let e = open(&format!("{p}{{1"), slots).unwrap_err();
    assert!(e.to_string().contains("no room"), "{e}");
    assert_eq!(audit(&mem).unwrap(), before, "the failed build leaked");
    works(&keep.0, &keep.1);
}

/// A slot left half built or half torn down (its process killed) is finished by the next
/// open in any process: given back once, never handed to two pipes. (The cross-process
/// version, with real kills at every step, is `crash::tests`.)
#[test]
fn half_done_slots_are_finished_by_the_next_open() {
    let p = format!("halfdone{}", std::process::id());
    let keep = pair(&p, 9, 16);
    let mem = memory(&p).unwrap();
    let (a, b) = pair(&p, 1, 16);
    let (c, d) = pair(&p, 2, 16);
    let (s1, s2) = (
        slot_of(&p, &format!("{p}{{1")),
        slot_of(&p, &format!("{p}{{2")),
    );
    // Mark them half done while nobody uses them: as a killed process leaves them.
    let pin = |s: usize| {
        let mut g = mem.locked();
        *g.local_users(s) += 1;
    };
    pin(s1);
    pin(s2);
    drop((a, b, c, d));
    mem.ctl.slot_state(s1).store(SLOT_DYING, Ordering::Release);
    mem.ctl
        .slot_state(s2)
        .store(SLOT_BUILDING, Ordering::Release);
    for s in [s1, s2] {
        let mut g = mem.locked();
        *g.local_users(s) -= 1;
    }
    // Either slot is finished (given back once) before the next pipe is built.
    let (e, f) = pair(&p, 3, 16);
    let found = audit(&mem).unwrap();
    assert_eq!(found.live, 2, "{found:?}");
    for s in [s1, s2] {
        assert_ne!(
            mem.ctl.slot_state(s).load(Ordering::Acquire),
            SLOT_DYING,
            "slot {s}"
        );
    }
    works(&e, &f);
    works(&keep.0, &keep.1);
}

/// A ring cursor rewound over rings this process uses (inside the ring area, so the
/// allocator's own checks pass): the build refuses rather than zero a ring that another
/// thread of this process may be syncing.
#[test]
fn a_rewound_ring_cursor_never_zeroes_a_ring_used_here() {
    let p = format!("rewind{}", std::process::id());
    let (a, b) = pair(&p, 1, 8);
    let mem = memory(&p).unwrap();
    mem.ctl
        .a64(24)
        .store(mem.ctl.g.if_end as u64, Ordering::Relaxed);
    let e = open(&format!("{p}{{2"), 8).unwrap_err();
    assert!(e.to_string().contains("uses"), "{e}");
    works(&a, &b);
}

/// A forged table slot naming the rings of a live pipe of this process: tearing it down
/// (its users are gone) leaves those rings and their buffers alone, and joining it (another
/// process uses it) is refused.
#[test]
fn a_forged_slot_over_rings_used_here_is_neither_freed_nor_joined() {
    let p = format!("forged{}", std::process::id());
    let (a, b) = pair(&p, 1, 8);
    let mem = memory(&p).unwrap();
    let (ctl, live) = (&mem.ctl, slot_of(&p, &format!("{p}{{1")));
    let forge = |name: &str| {
        let s = (0..ctl.g.max_pipes)
            .find(|&s| ctl.slot_state(s).load(Ordering::Acquire) == SLOT_FREE)
            .unwrap();
        ctl.set_slot_name(s, name.as_bytes());
        ctl.set_slot_geometry(s, 1, 8);
        for e in 0..2 {
            for dir in [TX, RX] {
                let off = ctl.ring_off(live, e, dir, 0).load(Ordering::Relaxed);
                ctl.ring_off(s, e, dir, 0).store(off, Ordering::Relaxed);
            }
        }
        ctl.slot_state(s).store(SLOT_LIVE, Ordering::Release);
        s
    };
    let before = audit(&mem).unwrap();
    // Users gone: the next open tears it down, leaving the live pipe's rings and buffers.
    forge(&format!("{p}{{3"));
    let (c, d) = pair(&p, 4, 8);
    works(&a, &b);
    works(&c, &d);
    drop((c, d));
    assert_eq!(audit(&mem).unwrap(), before);
    // A user in some process (pinned here): joining it is refused.
    let s = forge(&format!("{p}{{5"));
    *mem.locked().local_users(s) += 1;
    let e = open(&format!("{p}{{5"), 8).unwrap_err();
    assert!(e.to_string().contains("uses"), "{e}");
    *mem.locked().local_users(s) -= 1;
    works(&a, &b);
}

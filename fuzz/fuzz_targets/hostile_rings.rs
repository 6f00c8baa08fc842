//! Ring operations over an emulated pipe whose shared memory is scribbled on by a hostile
//! peer (random slot buffer indices, lengths and flags, random head/cur/tail): every safe
//! operation must return normally (values or errors), never crash or read out of bounds.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use netmap_rs::abi::{NetmapRing, NetmapSlot};
use netmap_rs::{forward_filtered, BackendChoice, NetmapBuilder};

static ID: AtomicU64 = AtomicU64::new(0);

fuzz_target!(|data: &[u8]| {
    let id = ID.fetch_add(1, Ordering::Relaxed);
    let open = |n: String| {
        NetmapBuilder::new(&n)
            .backend(BackendChoice::Emulated)
            .num_slots(16)
            .build()
    };
    let (Ok(a), Ok(b)) = (open(format!("fz{{{id}")), open(format!("fz}}{id}"))) else {
        return;
    };
    let (Ok(a2), Ok(b2)) = (open(format!("fz{{x{id}")), open(format!("fz}}x{id}"))) else {
        return;
    };
    let rings: [*mut NetmapRing; 4] = [
        a.raw_tx_ring_ptr(0).unwrap(),
        b.raw_rx_ring_ptr(0).unwrap(),
        b.raw_tx_ring_ptr(0).unwrap(),
        a.raw_rx_ring_ptr(0).unwrap(),
    ];
    let (Ok(mut tx), Ok(mut rx)) = (a.tx_ring(0), b.rx_ring(0)) else {
        return;
    };
    let Ok(mut tx2) = a2.tx_ring(0) else { return };
    let _keep = (&b2, &a2);
    let mut it = data.chunks_exact(6);
    for op in &mut it {
        let v = u32::from_le_bytes([op[2], op[3], op[4], op[5]]);
        match op[0] % 10 {
            // The hostile peer: write any field of any slot, or head/cur/tail.
            0 | 1 => {
                let r = rings[(op[1] & 3) as usize];
                let slot = (op[1] >> 2) as usize % 16;
                // SAFETY: the fuzzer plays the kernel: it writes plain memory inside the
                // mapping (slot < num_slots = 16), which our code must treat as untrusted.
                unsafe {
                    let s = r.cast::<u8>().add(256).cast::<NetmapSlot>().add(slot);
                    match op[0] % 4 {
                        0 => (*s).buf_idx = v,
                        1 => (*s).len = v as u16,
                        2 => (*s).flags = v as u16,
                        _ => (*s).ptr = v as u64,
                    }
                }
            }
            2 => {
                let r = rings[(op[1] & 3) as usize];
                // SAFETY: as above, inside the ring header.
                unsafe {
                    match op[1] >> 6 {
                        0 => std::ptr::addr_of_mut!((*r).head).write_volatile(v),
                        1 => std::ptr::addr_of_mut!((*r).cur).write_volatile(v),
                        _ => std::ptr::addr_of_mut!((*r).tail).write_volatile(v),
                    }
                }
            }
            3 => {
                let _ = tx.send(&vec![op[1]; (v % 3000) as usize]);
            }
            4 => {
                let _ = tx.sync();
            }
            5 => {
                let _ = rx.sync();
            }
            6 => {
                for f in rx.batch((v % 40) as usize) {
                    std::hint::black_box(f.payload().iter().map(|b| *b as u64).sum::<u64>());
                }
            }
            7 => {
                if let Ok(Some(f)) = rx.try_recv() {
                    std::hint::black_box(f.payload().last());
                }
            }
            8 => {
                if let Ok(mut r) = tx.reserve_batch((v % 20) as usize) {
                    let n = r.len();
                    // 3 mod 4: fill_reused; other odd: the sequential fill (a length past the
                    // buffer is an error); even: packet by packet (with a skipped one).
                    if op[1] & 3 == 3 {
                        let _ = r.fill_reused(|i, buf, changed| {
                            if changed {
                                buf.fill(op[1]);
                            }
                            ((op[1] as usize) * 8 + i).min(buf.len() + 1)
                        });
                    } else if op[1] & 1 == 1 {
                        let _ = r.fill(|i, buf| {
                            let room = buf.len();
                            let len = ((op[1] as usize) * 8 + i).min(room + 1);
                            buf[..len.min(room)].fill(op[1]);
                            len
                        });
                    } else {
                        for i in (0..n).filter(|i| i % 3 != 2) {
                            if let Ok(buf) = r.packet(i, (op[1] as usize) * 8) {
                                buf.fill(op[1]);
                            }
                        }
                    }
                    r.commit();
                }
            }
            _ => {
                let _ = forward_filtered(&mut rx, &mut tx2, (v % 20) as usize, |f| f.len() % 2 == 0);
            }
        }
    }
});

//! Two `xdp:` ports on one memory (`NetmapBuilder::share_memory_with`): one UMEM for the
//! sockets of two interfaces, buffers swapped between them by `zero_copy_forward` with no
//! copy, either port closed first, and the errors of asking for what cannot be shared.
//!
//! The wire: two veth pairs, `p1` and `p2`. A frame injected at `p1.b` (in `p1`'s
//! namespace) is received by the port on `p1.a`, swapped into the TX ring of the port on
//! `p2.a`, and arrives at a UDP socket in `p2`'s namespace; and the other way round.

use std::time::Instant;

use super::ports::{bulk_lock, ends_a_to_b, ns_udp, payload};
use super::sockets::{detached_soon, PATIENCE};
use super::testnet::{require_net, udp_frame, VethPair};
use crate::backend::afpacket::tpacket::{PacketConfig, PacketSocket};
use crate::backend::linux::iface::Interface;
use crate::backend::Backend;
use crate::error::Error;
use crate::sync::{Netmap, NetmapBuilder};
use crate::sync::{RxRing, TxRing};

/// Frames per direction.
const FRAMES: usize = 300;

fn xdp_pair(p1: &VethPair, p2: &VethPair) -> (Netmap, Netmap) {
    let a = NetmapBuilder::new(&format!("xdp:{}", p1.a))
        .memory_for_ports(2)
        .build()
        .unwrap_or_else(|e| panic!("xdp:{}: {e}", p1.a));
    let b = NetmapBuilder::new(&format!("xdp:{}", p2.a))
        .share_memory_with(&a)
        .build()
        .unwrap_or_else(|e| panic!("xdp:{} on the memory of {}: {e}", p2.a, a.name()));
    (a, b)
}

/// A packet socket on the namespace end of `p`, to inject frames there.
fn injector(p: &VethPair) -> PacketSocket {
    let b = p.b.clone();
    p.in_ns(move || PacketSocket::new(&b, &PacketConfig::default()).unwrap())
}

/// Buffers the memory of `nm` has free (no port holds them).
fn free_buffers(nm: &Netmap) -> usize {
    match &nm.inner.backend {
        Backend::Xdp(p) => p.memory().free_buffers(),
        _ => panic!("{} is not an xdp: port", nm.name()),
    }
}

/// Buffers in the memory of `nm`.
fn nbufs(nm: &Netmap) -> usize {
    match &nm.inner.backend {
        Backend::Xdp(p) => p.memory().nbufs as usize,
        _ => panic!("{} is not an xdp: port", nm.name()),
    }
}

/// The buffer index of slot `k` of `nm`'s TX (`tx`) or RX ring 0, and that buffer's address.
fn slot_buf(nm: &Netmap, tx: bool, k: u32) -> (u32, usize) {
    let r = if tx { &nm.inner.tx[0] } else { &nm.inner.rx[0] };
    // SAFETY: a read of the slot's index for the test's check; the driver writes only slots
    // outside the user's part of the ring, and the test reads the user's slots between its
    // own calls on the handle.
    let (idx, _, _) = unsafe { r.raw.slot_meta(k) };
    let addr = r.raw.buf_ptr(idx).map_or(0, |p| p.as_ptr() as usize);
    (idx, addr)
}

/// Injects `FRAMES` UDP frames at `from.b` addressed to the UDP socket at `to.b`, moves them
/// from `rx` (port `rxp`, on `from.a`) to `tx` (port `txp`, on `to.a`) one
/// `zero_copy_forward` at a time, and checks each swap: the TX slot gets the very buffer the
/// RX slot had (same index, and the payload the filter saw lies in it), the RX slot the TX
/// slot's. Every frame reaches the socket byte for byte.
#[allow(clippy::too_many_arguments)]
fn forward_way(
    from: &VethPair,
    to: &VethPair,
    rxp: &Netmap,
    rx: &mut RxRing,
    txp: &Netmap,
    tx: &mut TxRing,
    port: u16,
) {
    let mut inject = injector(from);
    let sock = ns_udp(to, port);
    let ends = ends_a_to_b(to, port);
    for i in 0..FRAMES {
        assert!(inject.send(&udp_frame(&ends, &payload(i))).unwrap());
    }
    inject.kick().unwrap();
    let (mut moved, mut got) = (0, 0);
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 2048];
    while got < FRAMES {
        assert!(
            Instant::now() < deadline,
            "{}: {moved} moved, {got} of {FRAMES} arrived",
            txp.name()
        );
        rx.sync().unwrap();
        tx.sync().unwrap();
        if moved < FRAMES {
            let (rk, tk) = (rxp.ring_pointers().rx[0][0], txp.ring_pointers().tx[0][0]);
            let (r_idx, r_addr) = slot_buf(rxp, false, rk);
            let (t_idx, _) = slot_buf(txp, true, tk);
            let mut seen = 0usize;
            let n = crate::sync::forward_filtered(rx, tx, 1, |f| {
                seen = f.payload().as_ptr() as usize;
                true
            })
            .unwrap();
            if n == 1 {
                assert_eq!(
                    slot_buf(txp, true, tk),
                    (r_idx, r_addr),
                    "RX buffer sent as is"
                );
                assert_eq!(seen, r_addr, "the frame lies in the buffer that moved");
                assert_eq!(
                    slot_buf(rxp, false, rk).0,
                    t_idx,
                    "TX buffer to the RX slot"
                );
                moved += 1;
                tx.sync().unwrap();
            }
        }
        sock.set_nonblocking(true).unwrap();
        while let Ok(len) = sock.recv(&mut buf) {
            assert_eq!(
                &buf[..len],
                &payload(got)[..],
                "frame {got} via {}",
                txp.name()
            );
            got += 1;
        }
        if moved == FRAMES && got < FRAMES {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    assert_eq!(moved, FRAMES, "frames other than the test's were forwarded");
}

/// Two `xdp:` ports on two interfaces, on one memory: frames cross from namespace 1 to
/// namespace 2 and back through `zero_copy_forward` swaps, without a copy.
#[test]
fn two_xdp_ports_on_one_umem_forward_both_ways_without_a_copy() {
    require_net!();
    let _bulk = bulk_lock();
    let (p1, p2) = (VethPair::new(), VethPair::new());
    let (a, b) = xdp_pair(&p1, &p2);
    assert!(a.shares_memory_with(&b) && b.shares_memory_with(&a));
    assert_eq!(a.mem_id(), b.mem_id());
    // One table of held buffers for both: no buffer is lent twice across the two ports.
    assert!(std::sync::Arc::ptr_eq(&a.inner.held, &b.inner.held));
    let (mut arx, mut atx) = (a.rx_ring(0).unwrap(), a.tx_ring(0).unwrap());
    let (mut brx, mut btx) = (b.rx_ring(0).unwrap(), b.tx_ring(0).unwrap());
    forward_way(&p1, &p2, &a, &mut arx, &b, &mut btx, 9101);
    forward_way(&p2, &p1, &b, &mut brx, &a, &mut atx, 9102);
    // Both ports still send from their own TX rings after the swaps.
    for (nm, tx, p, port) in [(&a, &mut atx, &p1, 9103), (&b, &mut btx, &p2, 9104)] {
        let sock = ns_udp(p, port);
        tx.send(&udp_frame(&ends_a_to_b(p, port), b"after swaps"))
            .unwrap();
        tx.sync().unwrap();
        let mut buf = [0u8; 64];
        let len = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"after swaps", "{}", nm.name());
    }
}

/// Either port closes first: its interface is left with no program, its buffers (after
/// swaps: some of them the other port's) go back to the memory, none lost and none lent
/// twice, the other port goes on receiving and forwarding on the UMEM the closed one
/// registered, and a new port joins on the buffers given back.
#[test]
fn shared_ports_close_in_either_order_and_leave_nothing_attached() {
    require_net!();
    let _bulk = bulk_lock();
    for first_closes_a in [true, false] {
        let (p1, p2) = (VethPair::new(), VethPair::new());
        let (a, b) = xdp_pair(&p1, &p2);
        let free0 = free_buffers(&a);
        {
            let (mut arx, mut atx) = (a.rx_ring(0).unwrap(), a.tx_ring(0).unwrap());
            let (mut brx, mut btx) = (b.rx_ring(0).unwrap(), b.tx_ring(0).unwrap());
            forward_way(&p1, &p2, &a, &mut arx, &b, &mut btx, 9111);
            forward_way(&p2, &p1, &b, &mut brx, &a, &mut atx, 9112);
        }
        let (gone, stays, gone_pair, stays_pair) = if first_closes_a {
            (a, b, &p1, &p2)
        } else {
            (b, a, &p2, &p1)
        };
        // Two ports of one shape: each took half of what is not free.
        let taken = (nbufs(&stays) - free0) / 2;
        let name = gone.name().to_string();
        drop(gone);
        assert!(
            detached_soon(Interface::lookup(&gone_pair.a).unwrap().index),
            "{name}: a program is still attached"
        );
        assert_eq!(
            free_buffers(&stays),
            free0 + taken,
            "every buffer {name} held came back, once"
        );
        // A new port on the same interface joins on the buffers given back, and traffic
        // crosses between it and the port that stayed, both ways.
        let again = NetmapBuilder::new(&format!("xdp:{}", gone_pair.a))
            .share_memory_with(&stays)
            .build()
            .unwrap_or_else(|e| panic!("reopen on the memory of {}: {e}", stays.name()));
        assert_eq!(
            free_buffers(&stays),
            free0,
            "it took as many as the closed one held"
        );
        {
            let (mut grx, mut gtx) = (again.rx_ring(0).unwrap(), again.tx_ring(0).unwrap());
            let (mut srx, mut stx) = (stays.rx_ring(0).unwrap(), stays.tx_ring(0).unwrap());
            forward_way(
                gone_pair, stays_pair, &again, &mut grx, &stays, &mut stx, 9113,
            );
            forward_way(
                stays_pair, gone_pair, &stays, &mut srx, &again, &mut gtx, 9114,
            );
        }
        drop(stays);
        assert!(
            detached_soon(Interface::lookup(&stays_pair.a).unwrap().index),
            "a program is still attached to {}",
            stays_pair.a
        );
        drop(again);
        for p in [&p1, &p2] {
            assert!(
                detached_soon(Interface::lookup(&p.a).unwrap().index),
                "a program is still attached to {}",
                p.a
            );
        }
    }
}

/// What cannot be shared fails at open with an error naming the cause and the fix.
#[test]
fn sharing_what_cannot_be_shared_is_a_clear_error() {
    require_net!();
    let (p1, p2) = (VethPair::new(), VethPair::new());
    // A memory without room for another port.
    let alone = NetmapBuilder::new(&format!("xdp:{}", p1.a))
        .build()
        .unwrap();
    let e = NetmapBuilder::new(&format!("xdp:{}", p2.a))
        .share_memory_with(&alone)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::MemoryExhausted(_)), "{e}");
    assert!(e.to_string().contains("memory_for_ports"), "{e}");
    drop(alone);
    assert!(detached_soon(Interface::lookup(&p1.a).unwrap().index));
    assert!(detached_soon(Interface::lookup(&p2.a).unwrap().index));
    let xdp = NetmapBuilder::new(&format!("xdp:{}", p1.a))
        .memory_for_ports(4)
        .build()
        .unwrap();
    // AF_PACKET on an xdp: port's memory, and xdp: on an afpacket: port's.
    let e = NetmapBuilder::new(&format!("afpacket:{}", p2.a))
        .share_memory_with(&xdp)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::CannotShareMemory { ref reason, .. } if reason.contains("TPACKET")),
        "{e}"
    );
    let pkt = Netmap::open(&format!("afpacket:{}", p2.a)).unwrap();
    let e = NetmapBuilder::new(&format!("xdp:{}", p2.a))
        .share_memory_with(&pkt)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::CannotShareMemory { ref with, .. } if with == pkt.name()),
        "{e}"
    );
    assert!(e.to_string().contains("afpacket"), "{e}");
    drop(pkt);
    // An emulated pipe on an xdp: port's memory.
    let e = NetmapBuilder::new("nmrs_share{1")
        .share_memory_with(&xdp)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, Error::CannotShareMemory { ref reason, .. } if reason.contains("parent")),
        "{e}"
    );
    // The queue the first port has: busy, also on one memory.
    let e = NetmapBuilder::new(&format!("xdp:{}-0", p1.a))
        .share_memory_with(&xdp)
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::PortBusy(_)), "{e}");
    // The failed opens gave back what they took: two ports still fit.
    let free = free_buffers(&xdp);
    let b = NetmapBuilder::new(&format!("xdp:{}", p2.a))
        .share_memory_with(&xdp)
        .build()
        .unwrap();
    assert!(free_buffers(&xdp) < free);
    drop(b);
    assert_eq!(free_buffers(&xdp), free);
    drop(xdp);
    for p in [&p1, &p2] {
        assert!(detached_soon(Interface::lookup(&p.a).unwrap().index));
    }
}

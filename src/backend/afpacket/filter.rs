//! An [`XdpFilter`] on an `afpacket:` port: a classic BPF socket filter (`SO_ATTACH_FILTER`)
//! with the same rule as the XDP program (see [`XdpFilter::matches`]), so the socket's RX
//! ring receives only matching frames.
//!
//! AF_PACKET is a tap: the host stack still receives every packet, matching or not; the
//! filter only spares the port the rest. (A service answering on `afpacket:` must keep the
//! host from answering too.) The kernel usually moves a received VLAN tag out of the frame
//! before taps see it; the program reads up to two tags where they are still there.
//!
//! Classic BPF: accumulator `A`, index `X`; a load past the end of the packet ends the program
//! with 0 (the frame is not taken), which is the "too short" rule. Encodings from
//! `Documentation/networking/filter.rst`.

use std::os::fd::BorrowedFd;

use crate::backend::linux::{os, os_error, CAPS_RAW};
use crate::error::Error;
use crate::port_name::XdpFilter;

// Opcodes: class | size | mode, or class | op | source.
const LDH_ABS: u16 = 0x28;
const LDH_IND: u16 = 0x48;
const LDB_IND: u16 = 0x50;
const LDX_IMM: u16 = 0x01;
const AND_K: u16 = 0x54;
const LSH_K: u16 = 0x64;
const ADD_K: u16 = 0x04;
const ADD_X: u16 = 0x0c;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const TAX: u16 = 0x07;
const TXA: u16 = 0x87;

/// Bytes of a taken frame kept: all of it.
const ACCEPT: u32 = 0x0004_0000;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// `if A == k` take the frame, else go on (two instructions; no long jumps).
fn take_if_eq(p: &mut Vec<libc::sock_filter>, k: u32) {
    p.push(ins(JEQ_K, 0, 1, k));
    p.push(ins(RET_K, 0, 0, ACCEPT));
}

/// The classic BPF program for `f`.
pub(crate) fn program(f: &XdpFilter) -> Vec<libc::sock_filter> {
    let mut p = Vec::new();
    // A = ethertype, X = offset of the header after it, through up to two VLAN tags.
    p.push(ins(LDX_IMM, 0, 0, 14));
    p.push(ins(LDH_ABS, 0, 0, 12));
    for (at, next) in [(16, 18), (20, 22)] {
        // if A is a tag type: A = the type after it, X += 4; else skip both.
        p.push(ins(JEQ_K, 1, 0, 0x8100));
        p.push(ins(JEQ_K, 0, 2, 0x88a8));
        p.push(ins(LDH_ABS, 0, 0, at));
        p.push(ins(LDX_IMM, 0, 0, next));
    }
    for &t in f.ethertypes() {
        take_if_eq(&mut p, u32::from(t));
    }
    if f.ports().is_empty() {
        p.push(ins(RET_K, 0, 0, 0));
        return p;
    }
    // IPv4 goes on below; IPv6 jumps past it to its own block.
    let v6_block_at = p.len();
    p.push(ins(JEQ_K, 0, 0, 0x0800)); // jt/jf patched below
                                      // IPv4: protocol, fragment offset, IHL; then X = the UDP header.
    let v4 = [
        ins(LDB_IND, 0, 0, 9),
        ins(JEQ_K, 1, 0, 17),
        ins(RET_K, 0, 0, 0),
        ins(LDH_IND, 0, 0, 6),
        ins(JSET_K, 0, 1, 0x1fff),
        ins(RET_K, 0, 0, 0),
        ins(LDB_IND, 0, 0, 0),
        ins(AND_K, 0, 0, 0xf),
        ins(LSH_K, 0, 0, 2),
        ins(JGE_K, 1, 0, 20),
        ins(RET_K, 0, 0, 0),
        ins(ADD_X, 0, 0, 0),
        ins(TAX, 0, 0, 0),
    ];
    // IPv6: next header right after the fixed header; X = the UDP header.
    let v6 = [
        ins(JEQ_K, 1, 0, 0x86dd),
        ins(RET_K, 0, 0, 0),
        ins(LDB_IND, 0, 0, 6),
        ins(JEQ_K, 1, 0, 17),
        ins(RET_K, 0, 0, 0),
        ins(TXA, 0, 0, 0),
        ins(ADD_K, 0, 0, 40),
        ins(TAX, 0, 0, 0),
    ];
    // Layout: [jeq v4] v4... [ja over v6] v6... udp...
    p.extend_from_slice(&v4);
    p.push(ins(0x05, 0, 0, v6.len() as u32)); // ja +len(v6)
    p.extend_from_slice(&v6);
    p[v6_block_at].jt = 0;
    p[v6_block_at].jf = (v4.len() + 1) as u8;
    // UDP: the whole header is there (a load past the end drops), A = destination port.
    p.push(ins(LDH_IND, 0, 0, 6));
    p.push(ins(LDH_IND, 0, 0, 2));
    for &port in f.ports() {
        take_if_eq(&mut p, u32::from(port));
    }
    p.push(ins(RET_K, 0, 0, 0));
    p
}

/// Attaches `f` to the packet socket `fd`.
pub(crate) fn attach(fd: BorrowedFd<'_>, f: &XdpFilter, ifname: &str) -> Result<(), Error> {
    let prog = program(f);
    let len = u16::try_from(prog.len()).map_err(|_| {
        Error::BindFail(format!(
            "the filter {f} needs {} classic BPF instructions; a socket filter holds at most \
             4096: use fewer UDP ports",
            prog.len()
        ))
    })?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    os::setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog).map_err(|e| {
        os_error(
            e,
            "attaching the port's filter to its AF_PACKET socket (SO_ATTACH_FILTER)",
            CAPS_RAW,
            ifname,
        )
    })
}

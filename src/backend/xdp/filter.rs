//! The crate's XDP program and the per-queue rules it reads.
//!
//! One program serves every port of every process on an interface. Two maps go with it, both
//! indexed by receive queue: the XSKMAP (queue → AF_XDP socket) and the rule map (queue →
//! [`Rule`]). For each packet the program looks up the rule of its queue; a queue whose port
//! takes everything has [`RULE_ALL`]; otherwise the packet is parsed as
//! [`XdpFilter::matches`](crate::XdpFilter::matches) describes (Ethernet, up to two VLAN tags,
//! the ethertype set, IPv4 with IHL options and non-first fragments skipped, IPv6 without
//! extension headers, the UDP destination port looked up in a 65536-bit set). A match is
//! redirected to the queue's socket with `XDP_PASS` as the fallback when the queue has none;
//! anything else returns `XDP_PASS`. The rule of a queue nobody holds is all zeros: nothing
//! matches.
//!
//! Every packet read is preceded by a check of `start + length > data_end` that jumps to
//! `XDP_PASS`, the form the verifier proves loads safe by.

use super::asm::{Asm, Cond, Size};
use crate::backend::linux::sys::{BpfInsn, BPF_FUNC_REDIRECT_MAP, XDP_MD_RX_QUEUE_INDEX, XDP_PASS};
use crate::port_name::{XdpFilter, MAX_ETHERTYPES};

/// The name the program is loaded under: how a process recognises the program another
/// process of this crate attached (anything else attached is foreign). The digit is the
/// layout version of [`Rule`] and the maps: bump it when they change.
pub(crate) const PROG_NAME: &str = "netmap_rs_xdp1";

/// `bpf_map_lookup_elem` helper number.
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `XDP_TX`: what the test build of the program returns for a match.
#[cfg(test)]
pub(crate) const XDP_TX: u32 = 3;

/// The queue takes every packet (no filter).
pub(crate) const RULE_ALL: u32 = 1;
/// The UDP port set is not empty.
pub(crate) const RULE_UDP: u32 = 2;

/// One queue's rule, the value of the rule map (written by the port bound to the queue).
#[repr(C)]
#[derive(Clone)]
pub(crate) struct Rule {
    /// `RULE_*` bits.
    pub flags: u32,
    /// Ethertypes in host order, the used ones first, 0 after them.
    pub ethertypes: [u16; MAX_ETHERTYPES],
    /// Bit `p % 8` of byte `p / 8` set: UDP destination port `p` matches.
    pub ports: [u8; 8192],
}

const FLAGS_OFF: i16 = 0;
const ETHER_OFF: i16 = 4;
const PORTS_OFF: i16 = 4 + 2 * MAX_ETHERTYPES as i16;

const _: () = {
    assert!(std::mem::offset_of!(Rule, flags) == FLAGS_OFF as usize);
    assert!(std::mem::offset_of!(Rule, ethertypes) == ETHER_OFF as usize);
    assert!(std::mem::offset_of!(Rule, ports) == PORTS_OFF as usize);
    assert!(std::mem::size_of::<Rule>() == PORTS_OFF as usize + 8192);
};

impl Rule {
    /// The rule of a queue nobody holds: nothing matches.
    pub(crate) fn none() -> Box<Rule> {
        Box::new(Rule {
            flags: 0,
            ethertypes: [0; MAX_ETHERTYPES],
            ports: [0; 8192],
        })
    }

    /// The rule for `filter` (`None`: every packet).
    pub(crate) fn of(filter: Option<&XdpFilter>) -> Box<Rule> {
        let mut r = Rule::none();
        let Some(f) = filter else {
            r.flags = RULE_ALL;
            return r;
        };
        for &p in f.ports() {
            r.ports[usize::from(p / 8)] |= 1 << (p % 8);
            r.flags |= RULE_UDP;
        }
        for (slot, &t) in r.ethertypes.iter_mut().zip(f.ethertypes()) {
            *slot = t;
        }
        r
    }

    /// The bytes the map stores (host byte order, the layout asserted above).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(std::mem::size_of::<Rule>());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        for t in self.ethertypes {
            out.extend_from_slice(&t.to_ne_bytes());
        }
        out.extend_from_slice(&self.ports);
        out
    }
}

/// What the program does with a matching packet.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnMatch {
    /// `bpf_redirect_map(xsks, queue, XDP_PASS)`: the production program.
    Redirect {
        /// The XSKMAP's fd.
        xsks: i32,
    },
    /// Return `XDP_TX`, so `BPF_PROG_TEST_RUN` tells a match from a pass.
    #[cfg(test)]
    ReturnTx,
}

// Registers: r1-r5 scratch (clobbered by calls), r6 data, r7 data_end, r8 the rule, r9 the
// queue; r2 walks the headers once the rule is known.
const DATA: u8 = 6;
const END: u8 = 7;
const RULE: u8 = 8;
const QUEUE: u8 = 9;
const FP: u8 = 10;

/// The program's instructions, for the rule map `rules` (fd).
pub(crate) fn program(rules: i32, on_match: OnMatch) -> Vec<BpfInsn> {
    let mut a = Asm::default();
    // r9 = queue, r6 = data, r7 = data_end; r8 = rules[queue] or pass.
    a.load(Size::W, QUEUE, 1, XDP_MD_RX_QUEUE_INDEX)
        .load(Size::W, DATA, 1, 0)
        .load(Size::W, END, 1, 4)
        .store_w(FP, -4, QUEUE)
        .mov_x(2, FP)
        .add_k(2, -4)
        .ld_map(1, rules)
        .call(BPF_FUNC_MAP_LOOKUP_ELEM)
        .jmp_k(Cond::Eq, 0, 0, "pass")
        .mov_x(RULE, 0)
        .load(Size::W, 1, RULE, FLAGS_OFF)
        .jmp_k(Cond::Set, 1, RULE_ALL as i32, "match");
    // Ethernet: r2 = the header after it, r3 = its ethertype (host order).
    a.mov_x(2, DATA)
        .add_k(2, 14)
        .jmp_x(Cond::Gt, 2, END, "pass")
        .load(Size::H, 3, DATA, 12)
        .be16(3);
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for tag in ["tag0", "tag1"] {
        a.jmp_k(Cond::Eq, 3, 0x8100, tag)
            .jmp_k(Cond::Ne, 3, 0x88a8, "tags_done")
            .label(tag)
            .mov_x(4, 2)
            .add_k(4, 4)
            .jmp_x(Cond::Gt, 4, END, "pass")
            .load(Size::H, 3, 2, 2)
            .be16(3)
            .mov_x(2, 4);
    }
    a.label("tags_done");
    // The ethertype set: used entries first, a 0 ends it.
    for i in 0..MAX_ETHERTYPES as i16 {
        a.load(Size::H, 4, RULE, ETHER_OFF + 2 * i)
            .jmp_k(Cond::Eq, 4, 0, "ethers_done")
            .jmp_x(Cond::Eq, 3, 4, "match");
    }
    a.label("ethers_done")
        .jmp_k(Cond::Set, 1, RULE_UDP as i32, "ip")
        .ja("pass")
        .label("ip")
        .jmp_k(Cond::Eq, 3, 0x0800, "ipv4")
        .jmp_k(Cond::Ne, 3, 0x86dd, "pass");
    // IPv6: UDP only right after the fixed header.
    a.mov_x(4, 2)
        .add_k(4, 40)
        .jmp_x(Cond::Gt, 4, END, "pass")
        .load(Size::B, 4, 2, 6)
        .jmp_k(Cond::Ne, 4, 17, "pass")
        .add_k(2, 40)
        .ja("udp");
    // IPv4: protocol 17, fragment offset 0, header length from IHL (20..=60).
    a.label("ipv4")
        .mov_x(4, 2)
        .add_k(4, 20)
        .jmp_x(Cond::Gt, 4, END, "pass")
        .load(Size::B, 4, 2, 9)
        .jmp_k(Cond::Ne, 4, 17, "pass")
        .load(Size::H, 4, 2, 6)
        .be16(4)
        .jmp_k(Cond::Set, 4, 0x1fff, "pass")
        .load(Size::B, 4, 2, 0)
        .and_k(4, 0xf)
        .lsh_k(4, 2)
        .jmp_k(Cond::Lt, 4, 20, "pass")
        .add_x(2, 4);
    // UDP: bit (port % 8) of byte PORTS_OFF + port / 8 of the rule.
    a.label("udp")
        .mov_x(4, 2)
        .add_k(4, 8)
        .jmp_x(Cond::Gt, 4, END, "pass")
        .load(Size::H, 4, 2, 2)
        .be16(4)
        .mov_x(5, 4)
        .rsh_k(5, 3)
        .add_x(RULE, 5)
        .load(Size::B, 5, RULE, PORTS_OFF)
        .and_k(4, 7)
        .rsh_x(5, 4)
        .and_k(5, 1)
        .jmp_k(Cond::Eq, 5, 0, "pass");
    a.label("match");
    match on_match {
        OnMatch::Redirect { xsks } => {
            a.ld_map(1, xsks)
                .mov_x(2, QUEUE)
                .mov_k(3, XDP_PASS)
                .call(BPF_FUNC_REDIRECT_MAP)
                .exit();
        }
        #[cfg(test)]
        OnMatch::ReturnTx => {
            a.mov_k(0, XDP_TX as i32).exit();
        }
    }
    a.label("pass").mov_k(0, XDP_PASS).exit();
    a.finish()
}

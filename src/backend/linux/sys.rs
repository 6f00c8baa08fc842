//! Kernel ABI for the Linux packet backends: the constants and `#[repr(C)]` layouts that
//! `libc` 0.2 does not provide, written from the documented UAPI layouts (`linux/bpf.h`,
//! `linux/if_xdp.h`, `linux/if_link.h`, `linux/ethtool.h`, `linux/if_packet.h`), with their
//! sizes and offsets asserted at compile time. Types `libc` has (`sockaddr_xdp`,
//! `xdp_mmap_offsets`, `xdp_umem_reg`, `xdp_statistics`, `sockaddr_ll`, `tpacket_req`,
//! `tpacket2_hdr`, `nlmsghdr`, `ifinfomsg`) are used from there and only asserted here.
//!
//! No `unsafe` in this file: it is definitions only.

#![allow(dead_code)] // the full ABI vocabulary is kept even where one path uses a subset

use std::mem::{offset_of, size_of};

// ---------------------------------------------------------------------------------------------
// bpf(2)

/// `bpf(2)` commands (`enum bpf_cmd`).
pub(crate) const BPF_MAP_CREATE: u32 = 0;
pub(crate) const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub(crate) const BPF_MAP_DELETE_ELEM: u32 = 3;
pub(crate) const BPF_PROG_LOAD: u32 = 5;
/// `prog_flags` bit of `BPF_PROG_LOAD`: the XDP program handles multi-buffer packets (5.18+).
pub(crate) const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
pub(crate) const BPF_LINK_CREATE: u32 = 28;

/// `enum bpf_map_type`: the map of AF_XDP sockets indexed by queue.
pub(crate) const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `enum bpf_prog_type`: XDP.
pub(crate) const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: XDP on a netdev (links, 5.9+).
pub(crate) const BPF_XDP: u32 = 37;
/// `BPF_ANY` for map updates: create or replace.
pub(crate) const BPF_ANY: u64 = 0;
/// `src_reg` of an `LD_IMM64` whose immediate is a map fd.
pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Helper number of `bpf_redirect_map`.
pub(crate) const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS` return code (also the fallback action handed to `bpf_redirect_map`).
pub(crate) const XDP_PASS: i32 = 2;
/// `XDP_DROP` return code.
pub(crate) const XDP_DROP: i32 = 1;
/// `BPF_OBJ_NAME_LEN`.
pub(crate) const BPF_OBJ_NAME_LEN: usize = 16;

/// Opcode bytes (class | size | mode, or class | op | source).
pub(crate) const OP_LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const OP_LD_IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
pub(crate) const OP_ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub(crate) const OP_JMP_CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
pub(crate) const OP_JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// Offset of `rx_queue_index` in `struct xdp_md` (data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index: five `u32`s).
pub(crate) const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction (`struct bpf_insn`): opcode, `dst_reg` in the low nibble and `src_reg`
/// in the high nibble of `regs`, signed offset, signed immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl BpfInsn {
    /// An instruction from its fields.
    pub(crate) const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        BpfInsn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// The 8 bytes of the instruction as the kernel reads them (little-endian host assumed by
    /// the caller: eBPF uses host byte order).
    pub(crate) fn to_ne_bytes(self) -> [u8; 8] {
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [
            self.code, self.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
        ]
    }
}

/// `bpf_attr` for `BPF_MAP_CREATE` (the leading fields; the rest stays zero).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfMapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; BPF_OBJ_NAME_LEN],
    pub map_ifindex: u32,
}

/// `bpf_attr` for `BPF_MAP_UPDATE_ELEM` / `BPF_MAP_DELETE_ELEM`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfMapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// `bpf_attr` for `BPF_PROG_LOAD` up to `expected_attach_type`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; BPF_OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// `bpf_attr` for `BPF_LINK_CREATE` with a netdev target.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfLinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

/// `bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfObjInfoAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// The head of `struct bpf_prog_info`: the kernel copies back only as many bytes as asked.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BpfProgInfoHead {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
}

const _: () = {
    assert!(size_of::<BpfInsn>() == 8);
    assert!(offset_of!(BpfMapCreateAttr, max_entries) == 12);
    assert!(offset_of!(BpfMapCreateAttr, map_name) == 28);
    assert!(offset_of!(BpfMapCreateAttr, map_ifindex) == 44);
    assert!(offset_of!(BpfMapElemAttr, key) == 8);
    assert!(offset_of!(BpfMapElemAttr, value) == 16);
    assert!(offset_of!(BpfMapElemAttr, flags) == 24);
    assert!(offset_of!(BpfProgLoadAttr, insns) == 8);
    assert!(offset_of!(BpfProgLoadAttr, license) == 16);
    assert!(offset_of!(BpfProgLoadAttr, log_level) == 24);
    assert!(offset_of!(BpfProgLoadAttr, log_size) == 28);
    assert!(offset_of!(BpfProgLoadAttr, log_buf) == 32);
    assert!(offset_of!(BpfProgLoadAttr, kern_version) == 40);
    assert!(offset_of!(BpfProgLoadAttr, prog_name) == 48);
    assert!(offset_of!(BpfProgLoadAttr, prog_ifindex) == 64);
    assert!(offset_of!(BpfProgLoadAttr, expected_attach_type) == 68);
    assert!(offset_of!(BpfLinkCreateAttr, attach_type) == 8);
    assert!(offset_of!(BpfLinkCreateAttr, flags) == 12);
    assert!(offset_of!(BpfObjInfoAttr, info) == 8);
    assert!(offset_of!(BpfProgInfoHead, id) == 4);
    assert!(offset_of!(BpfProgInfoHead, tag) == 8);
};

// ---------------------------------------------------------------------------------------------
// XDP attach flags and netlink (linux/if_link.h, linux/rtnetlink.h)

/// Fail instead of replacing an attached program.
pub(crate) const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
/// Generic (skb) mode.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// Native (driver) mode.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// Offloaded (hardware) mode.
pub(crate) const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
/// Replace only the program given by `IFLA_XDP_EXPECTED_FD` (5.7+).
pub(crate) const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// `IFLA_XDP`: nested attribute of a link message.
pub(crate) const IFLA_XDP: u16 = 43;
/// Nested `IFLA_XDP_*` attributes.
pub(crate) const IFLA_XDP_FD: u16 = 1;
pub(crate) const IFLA_XDP_ATTACHED: u16 = 2;
pub(crate) const IFLA_XDP_FLAGS: u16 = 3;
pub(crate) const IFLA_XDP_PROG_ID: u16 = 4;
pub(crate) const IFLA_XDP_DRV_PROG_ID: u16 = 5;
pub(crate) const IFLA_XDP_SKB_PROG_ID: u16 = 6;
pub(crate) const IFLA_XDP_EXPECTED_FD: u16 = 8;
/// Values of `IFLA_XDP_ATTACHED`.
pub(crate) const XDP_ATTACHED_NONE: u8 = 0;
pub(crate) const XDP_ATTACHED_DRV: u8 = 1;
pub(crate) const XDP_ATTACHED_SKB: u8 = 2;
pub(crate) const XDP_ATTACHED_HW: u8 = 3;
pub(crate) const XDP_ATTACHED_MULTI: u8 = 4;

/// Netlink attribute header (`struct nlattr`).
pub(crate) const NLA_HDRLEN: usize = 4;
/// Nested-attribute flag in `nla_type`.
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// Attribute-type mask.
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
/// Netlink socket options: extended ACK messages, capped ACKs.
pub(crate) const NETLINK_EXT_ACK: libc::c_int = 11;
pub(crate) const NETLINK_CAP_ACK: libc::c_int = 10;
/// `nlmsg_flags` of an ACK carrying TLVs after `nlmsgerr`.
pub(crate) const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ACK message string.
pub(crate) const NLMSGERR_ATTR_MSG: u16 = 1;

const _: () = {
    assert!(size_of::<libc::nlmsghdr>() == 16);
    assert!(size_of::<libc::ifinfomsg>() == 16);
};

// ---------------------------------------------------------------------------------------------
// ethtool (linux/ethtool.h, linux/sockios.h)

/// `SIOCETHTOOL` ioctl.
pub(crate) const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_GCHANNELS` command.
pub(crate) const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

const _: () = assert!(size_of::<EthtoolChannels>() == 36);

// ---------------------------------------------------------------------------------------------
// AF_XDP (linux/if_xdp.h)

/// `AF_XDP` address family.
pub(crate) const AF_XDP: libc::c_int = 44;
/// `SOL_XDP` socket level.
pub(crate) const SOL_XDP: libc::c_int = 283;
/// `sxdp_flags` bits.
pub(crate) const XDP_SHARED_UMEM: u16 = 1 << 0;
pub(crate) const XDP_COPY: u16 = 1 << 1;
pub(crate) const XDP_ZEROCOPY: u16 = 1 << 2;
pub(crate) const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Multi-buffer packets (kernel 6.6+): a packet may span descriptors (`XDP_PKT_CONTD`).
pub(crate) const XDP_USE_SG: u16 = 1 << 4;
/// `xdp_desc.options` bit: the packet continues in the next descriptor.
pub(crate) const XDP_PKT_CONTD: u32 = 1 << 0;
/// Ring `flags` bit: the kernel wants a syscall to make progress.
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;
/// Socket options.
pub(crate) const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub(crate) const XDP_RX_RING: libc::c_int = 2;
pub(crate) const XDP_TX_RING: libc::c_int = 3;
pub(crate) const XDP_UMEM_REG: libc::c_int = 4;
pub(crate) const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub(crate) const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub(crate) const XDP_STATISTICS: libc::c_int = 7;
pub(crate) const XDP_OPTIONS: libc::c_int = 8;
/// `XDP_OPTIONS` result bit: the socket is bound in zero-copy mode.
pub(crate) const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;
/// mmap page offsets of the four rings.
pub(crate) const XDP_PGOFF_RX_RING: i64 = 0;
pub(crate) const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
pub(crate) const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
pub(crate) const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;
/// Size of `struct xdp_umem_reg` before `flags` existed (4.18..5.3); the current size (with
/// `flags` and `tx_metadata_len`, which older kernels see as zeroed padding) is
/// `size_of::<libc::xdp_umem_reg>()`.
pub(crate) const XDP_UMEM_REG_V1_SIZE: usize = 24;
/// Headroom the kernel keeps in front of received data (`XDP_PACKET_HEADROOM`).
pub(crate) const XDP_PACKET_HEADROOM: u32 = 256;

/// One RX/TX ring descriptor (`struct xdp_desc`): UMEM address, length, options.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct XdpDesc {
    /// Byte offset of the packet data from the UMEM start.
    pub addr: u64,
    /// Packet length in bytes.
    pub len: u32,
    /// Option bits (`XDP_PKT_CONTD`: the packet goes on in the next descriptor).
    pub options: u32,
}

const _: () = {
    assert!(size_of::<XdpDesc>() == size_of::<libc::xdp_desc>());
    assert!(size_of::<XdpDesc>() == 16);
    assert!(offset_of!(XdpDesc, len) == 8);
    assert!(size_of::<libc::sockaddr_xdp>() == 16);
    assert!(offset_of!(libc::sockaddr_xdp, sxdp_ifindex) == 4);
    assert!(offset_of!(libc::sockaddr_xdp, sxdp_shared_umem_fd) == 12);
    assert!(size_of::<libc::xdp_ring_offset>() == 32);
    assert!(size_of::<libc::xdp_mmap_offsets>() == 128);
    // Current layout: 32 bytes, no implicit padding (tx_metadata_len, 6.8+, fills what was
    // padding after `flags`; it must be zero for older kernels to accept the 32-byte form).
    assert!(size_of::<libc::xdp_umem_reg>() == 32);
    assert!(offset_of!(libc::xdp_umem_reg, chunk_size) == 16);
    assert!(offset_of!(libc::xdp_umem_reg, flags) == 24);
    assert!(offset_of!(libc::xdp_umem_reg, tx_metadata_len) == 28);
    assert!(size_of::<libc::xdp_statistics>() == 48);
};

// ---------------------------------------------------------------------------------------------
// AF_PACKET (linux/if_packet.h)

/// `SOL_PACKET` socket level.
pub(crate) const SOL_PACKET: libc::c_int = 263;
/// `PACKET_*` socket options.
pub(crate) const PACKET_RX_RING: libc::c_int = 5;
pub(crate) const PACKET_STATISTICS: libc::c_int = 6;
pub(crate) const PACKET_VERSION: libc::c_int = 10;
pub(crate) const PACKET_TX_RING: libc::c_int = 13;
pub(crate) const PACKET_LOSS: libc::c_int = 14;
pub(crate) const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(crate) const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `PACKET_FANOUT`: join a fanout group (`group_id | mode << 16`).
pub(crate) const PACKET_FANOUT: libc::c_int = 18;
/// `enum tpacket_versions`: V2.
pub(crate) const TPACKET_V2: libc::c_int = 1;
/// Alignment of frame headers and data.
pub(crate) const TPACKET_ALIGNMENT: usize = 16;
/// `TPACKET2_HDRLEN`: the aligned header plus a `sockaddr_ll`.
pub(crate) const TPACKET2_HDRLEN: usize =
    align_up(size_of::<libc::tpacket2_hdr>(), TPACKET_ALIGNMENT) + size_of::<libc::sockaddr_ll>();
/// Where received data starts in a `SOCK_RAW` frame: the kernel puts the network header at
/// `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)` and the 14-byte Ethernet header before it
/// (`tpacket_rcv`, no `PACKET_RESERVE`).
pub(crate) const TPACKET2_RX_DATA_OFFSET: usize =
    align_up(TPACKET2_HDRLEN + 16, TPACKET_ALIGNMENT) - 14;
/// Where TX data starts in a frame (without `PACKET_TX_HAS_OFF`).
pub(crate) const TPACKET2_TX_DATA_OFFSET: usize = TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();
/// `enum tpacket_versions`: V3 (RX in blocks of variable-size frames).
pub(crate) const TPACKET_V3: libc::c_int = 2;
/// `TPACKET3_HDRLEN`: the aligned `tpacket3_hdr` plus a `sockaddr_ll`.
pub(crate) const TPACKET3_HDRLEN: usize =
    align_up(size_of::<libc::tpacket3_hdr>(), TPACKET_ALIGNMENT) + size_of::<libc::sockaddr_ll>();
/// Where TX data starts in a `TPACKET_V3` frame (without `PACKET_TX_HAS_OFF`).
pub(crate) const TPACKET3_TX_DATA_OFFSET: usize = TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();
/// In a `tpacket_block_desc`: the block's status word, packet count and first packet offset
/// (`hdr.bh1.block_status`, `num_pkts`, `offset_to_first_pkt`).
pub(crate) const BLOCK_STATUS_OFFSET: usize = 8;
pub(crate) const BLOCK_NUM_PKTS_OFFSET: usize = 12;
pub(crate) const BLOCK_FIRST_PKT_OFFSET: usize = 16;
/// `tp_status` values: RX.
pub(crate) const TP_STATUS_KERNEL: u32 = 0;
pub(crate) const TP_STATUS_USER: u32 = 1 << 0;
pub(crate) const TP_STATUS_COPY: u32 = 1 << 1;
pub(crate) const TP_STATUS_LOSING: u32 = 1 << 2;
/// `tp_status` values: TX.
pub(crate) const TP_STATUS_AVAILABLE: u32 = 0;
pub(crate) const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
pub(crate) const TP_STATUS_SENDING: u32 = 1 << 1;
pub(crate) const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// `struct tpacket_stats_v3` (`struct tpacket_stats` is its first two fields: a `TPACKET_V2`
/// socket fills only those and says so in the returned length).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TpacketStats {
    /// Packets received (including dropped ones).
    pub tp_packets: u32,
    /// Packets dropped for lack of room in the ring.
    pub tp_drops: u32,
    /// Times the queue froze, every block being the user's (`TPACKET_V3` only).
    pub tp_freeze_q_cnt: u32,
}

pub(crate) const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

const _: () = {
    assert!(size_of::<libc::tpacket2_hdr>() == 32);
    assert!(offset_of!(libc::tpacket2_hdr, tp_len) == 4);
    assert!(offset_of!(libc::tpacket2_hdr, tp_snaplen) == 8);
    assert!(offset_of!(libc::tpacket2_hdr, tp_mac) == 12);
    assert!(size_of::<libc::sockaddr_ll>() == 20);
    assert!(size_of::<libc::tpacket_req>() == 16);
    assert!(TPACKET2_HDRLEN == 52);
    assert!(TPACKET2_TX_DATA_OFFSET == 32);
    assert!(TPACKET2_RX_DATA_OFFSET == 66);
    assert!(size_of::<libc::tpacket3_hdr>() == 48);
    assert!(offset_of!(libc::tpacket3_hdr, tp_next_offset) == 0);
    assert!(offset_of!(libc::tpacket3_hdr, tp_snaplen) == 12);
    assert!(offset_of!(libc::tpacket3_hdr, tp_len) == 16);
    assert!(offset_of!(libc::tpacket3_hdr, tp_status) == 20);
    assert!(offset_of!(libc::tpacket3_hdr, tp_mac) == 24);
    assert!(TPACKET3_TX_DATA_OFFSET == 48);
    assert!(size_of::<libc::tpacket_req3>() == 28);
    assert!(
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status)
            == BLOCK_STATUS_OFFSET
    );
    assert!(
        offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts)
            == BLOCK_NUM_PKTS_OFFSET
    );
    assert!(
        offset_of!(libc::tpacket_block_desc, hdr)
            + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt)
            == BLOCK_FIRST_PKT_OFFSET
    );
};

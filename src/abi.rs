//! Hand-written `#[repr(C)]` definitions of the netmap API 14 ABI.
//!
//! These follow the documented layout of `sys/net/netmap.h` (API version 14, accepted range
//! 14–15). Every size and field offset is asserted at compile time below for 64-bit targets;
//! the opt-in `bindgen` feature additionally checks them against the installed header.
//!
//! Nothing here is `unsafe`: these are plain data types and constants. The code that reads and
//! writes the shared ring memory lives in `src/ring/raw.rs`.

#![allow(missing_docs)] // field names are the C names; their meaning is documented per struct

use core::mem::{align_of, offset_of, size_of};

/// The API version this crate speaks (`NETMAP_API`).
pub const NETMAP_API: u16 = 14;
/// Oldest kernel API version accepted by this crate.
pub const NETMAP_MIN_API: u16 = 14;
/// Newest kernel API version accepted by this crate.
pub const NETMAP_MAX_API: u16 = 15;

/// Length of `nmreq_header.nr_name`, including the terminating NUL.
pub const NETMAP_REQ_IFNAMSIZ: usize = 64;
/// Length of `netmap_if.ni_name`.
pub const IFNAMSIZ: usize = 16;

/// One slot of a netmap ring (`struct netmap_slot`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetmapSlot {
    /// Index of the buffer in the memory region's buffer pool.
    pub buf_idx: u32,
    /// Packet length in bytes.
    pub len: u16,
    /// `NS_*` flags.
    pub flags: u16,
    /// Pointer or offset field (used for indirect buffers and offsets).
    pub ptr: u64,
}

/// `struct timeval` as embedded in `netmap_ring`.
pub type Timeval = libc::timeval;

/// Header of a netmap ring (`struct netmap_ring`); the slots follow it in memory.
///
/// `head`, `cur` and `tail` are shared with the kernel and are only ever accessed through
/// atomics by this crate (see `src/ring/raw.rs`); the struct is never read by value from
/// shared memory.
#[repr(C, align(128))]
pub struct NetmapRing {
    /// Offset from the ring to the start of the buffer pool.
    pub buf_ofs: i64,
    /// Number of slots in the ring.
    pub num_slots: u32,
    /// Size of each buffer in bytes.
    pub nr_buf_size: u32,
    /// Ring index within its direction.
    pub ringid: u16,
    /// 0 for TX, 1 for RX.
    pub dir: u16,
    /// First slot owned by the user (written by the user).
    pub head: u32,
    /// Wake-up point (written by the user).
    pub cur: u32,
    /// First slot owned by the kernel (written by the kernel).
    pub tail: u32,
    /// `NR_*` ring flags.
    pub flags: u32,
    /// Timestamp of the last sync.
    pub ts: Timeval,
    /// Mask of the `ptr` bits that hold an offset.
    pub offset_mask: u64,
    /// Buffer alignment required for offsets.
    pub buf_align: u64,
    /// Opaque room used by the kernel (128-byte aligned, as in C).
    pub sem: RingSem,
}

/// The 128-byte, 128-aligned opaque area at the end of the ring header.
#[repr(C, align(128))]
pub struct RingSem(pub [u8; 128]);

/// Interface descriptor (`struct netmap_if`); the `ring_ofs[]` array of `isize` follows it.
#[repr(C)]
pub struct NetmapIf {
    pub ni_name: [libc::c_char; IFNAMSIZ],
    pub ni_version: u32,
    pub ni_flags: u32,
    pub ni_tx_rings: u32,
    pub ni_rx_rings: u32,
    pub ni_bufs_head: u32,
    pub ni_host_tx_rings: u32,
    pub ni_host_rx_rings: u32,
    pub ni_spare1: [u32; 3],
    /// Start of the `ssize_t ring_ofs[]` flexible array (offsets relative to this struct).
    pub ring_ofs: [isize; 0],
}

/// Request header passed to `NIOCCTRL` (`struct nmreq_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NmreqHeader {
    pub nr_version: u16,
    pub nr_reqtype: u16,
    pub nr_reserved: u32,
    pub nr_name: [libc::c_char; NETMAP_REQ_IFNAMSIZ],
    /// User pointer to the first `NmreqOption`, as u64 (0 for none).
    pub nr_options: u64,
    /// User pointer to the request body, as u64.
    pub nr_body: u64,
}

/// Option chained from `nmreq_header.nr_options` (`struct nmreq_option`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqOption {
    pub nro_next: u64,
    pub nro_reqtype: u32,
    pub nro_status: u32,
    pub nro_size: u64,
}

/// Body of `NETMAP_REQ_REGISTER` (`struct nmreq_register`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqRegister {
    pub nr_offset: u64,
    pub nr_memsize: u64,
    pub nr_tx_slots: u32,
    pub nr_rx_slots: u32,
    pub nr_tx_rings: u16,
    pub nr_rx_rings: u16,
    pub nr_host_tx_rings: u16,
    pub nr_host_rx_rings: u16,
    pub nr_mem_id: u16,
    pub nr_ringid: u16,
    pub nr_mode: u32,
    pub nr_extra_bufs: u32,
    pub nr_pad: u32,
    pub nr_flags: u64,
}

/// Body of `NETMAP_REQ_PORT_INFO_GET` (`struct nmreq_port_info_get`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqPortInfoGet {
    pub nr_memsize: u64,
    pub nr_tx_slots: u32,
    pub nr_rx_slots: u32,
    pub nr_tx_rings: u16,
    pub nr_rx_rings: u16,
    pub nr_host_tx_rings: u16,
    pub nr_host_rx_rings: u16,
    pub nr_mem_id: u16,
    pub pad: [u16; 3],
}

/// Body of `NETMAP_REQ_VALE_ATTACH` (`struct nmreq_vale_attach`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqValeAttach {
    pub reg: NmreqRegister,
    pub port_index: u32,
    pub pad1: u32,
}

/// Body of `NETMAP_REQ_VALE_DETACH` (`struct nmreq_vale_detach`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqValeDetach {
    pub port_index: u32,
    pub pad1: u32,
}

/// Body of `NETMAP_REQ_VALE_LIST` (`struct nmreq_vale_list`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqValeList {
    pub nr_bridge_idx: u16,
    pub pad1: u16,
    pub nr_port_idx: u32,
}

/// Body of `NETMAP_REQ_VALE_NEWIF` (`struct nmreq_vale_newif`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqValeNewif {
    pub nr_tx_slots: u32,
    pub nr_rx_slots: u32,
    pub nr_tx_rings: u16,
    pub nr_rx_rings: u16,
    pub nr_mem_id: u16,
    pub pad1: u16,
}

/// Body of `NETMAP_REQ_POOLS_INFO_GET` (`struct nmreq_pools_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NmreqPoolsInfo {
    pub nr_memsize: u64,
    pub nr_mem_id: u16,
    pub pad1: [u16; 3],
    pub nr_if_pool_offset: u64,
    pub nr_if_pool_objtotal: u32,
    pub nr_if_pool_objsize: u32,
    pub nr_ring_pool_offset: u64,
    pub nr_ring_pool_objtotal: u32,
    pub nr_ring_pool_objsize: u32,
    pub nr_buf_pool_offset: u64,
    pub nr_buf_pool_objtotal: u32,
    pub nr_buf_pool_objsize: u32,
}

// ---- request types (nmreq_header.nr_reqtype) ----
pub const NETMAP_REQ_REGISTER: u16 = 1;
pub const NETMAP_REQ_PORT_INFO_GET: u16 = 2;
pub const NETMAP_REQ_VALE_ATTACH: u16 = 3;
pub const NETMAP_REQ_VALE_DETACH: u16 = 4;
pub const NETMAP_REQ_VALE_LIST: u16 = 5;
pub const NETMAP_REQ_PORT_HDR_SET: u16 = 6;
pub const NETMAP_REQ_PORT_HDR_GET: u16 = 7;
pub const NETMAP_REQ_VALE_NEWIF: u16 = 8;
pub const NETMAP_REQ_VALE_DELIF: u16 = 9;
pub const NETMAP_REQ_VALE_POLLING_ENABLE: u16 = 10;
pub const NETMAP_REQ_VALE_POLLING_DISABLE: u16 = 11;
pub const NETMAP_REQ_POOLS_INFO_GET: u16 = 12;
pub const NETMAP_REQ_SYNC_KLOOP_START: u16 = 13;
pub const NETMAP_REQ_SYNC_KLOOP_STOP: u16 = 14;
pub const NETMAP_REQ_CSB_ENABLE: u16 = 15;

// ---- option types (nmreq_option.nro_reqtype) ----
pub const NETMAP_REQ_OPT_EXTMEM: u32 = 1;
pub const NETMAP_REQ_OPT_SYNC_KLOOP_EVENTFDS: u32 = 2;
pub const NETMAP_REQ_OPT_CSB: u32 = 3;
pub const NETMAP_REQ_OPT_SYNC_KLOOP_MODE: u32 = 4;
pub const NETMAP_REQ_OPT_OFFSETS: u32 = 5;

// ---- registration modes (nmreq_register.nr_mode) ----
pub const NR_REG_DEFAULT: u32 = 0;
pub const NR_REG_ALL_NIC: u32 = 1;
pub const NR_REG_SW: u32 = 2;
pub const NR_REG_NIC_SW: u32 = 3;
pub const NR_REG_ONE_NIC: u32 = 4;
pub const NR_REG_PIPE_MASTER: u32 = 5;
pub const NR_REG_PIPE_SLAVE: u32 = 6;
pub const NR_REG_NULL: u32 = 7;
pub const NR_REG_ONE_SW: u32 = 8;

// ---- registration flags (nmreq_register.nr_flags) ----
pub const NR_MONITOR_TX: u64 = 0x100;
pub const NR_MONITOR_RX: u64 = 0x200;
pub const NR_ZCOPY_MON: u64 = 0x400;
pub const NR_EXCLUSIVE: u64 = 0x800;
pub const NR_RX_RINGS_ONLY: u64 = 0x2000;
pub const NR_TX_RINGS_ONLY: u64 = 0x4000;
pub const NR_ACCEPT_VNET_HDR: u64 = 0x8000;
pub const NR_DO_RX_POLL: u64 = 0x10000;
pub const NR_NO_TX_POLL: u64 = 0x20000;

// ---- slot flags (netmap_slot.flags) ----
pub const NS_BUF_CHANGED: u16 = 0x0001;
pub const NS_REPORT: u16 = 0x0002;
pub const NS_FORWARD: u16 = 0x0004;
pub const NS_NO_LEARN: u16 = 0x0008;
pub const NS_INDIRECT: u16 = 0x0010;
pub const NS_MOREFRAG: u16 = 0x0020;
pub const NS_TXMON: u16 = 0x0040;
/// Shift of the VALE destination port / fragment count in the slot flags (bits 8–15).
pub const NS_PORT_SHIFT: u16 = 8;
/// Mask of the VALE destination port / fragment count in the slot flags.
pub const NS_PORT_MASK: u16 = 0xff << NS_PORT_SHIFT;

// ---- ring flags (netmap_ring.flags) ----
pub const NR_TIMESTAMP: u32 = 0x0002;
pub const NR_FORWARD: u32 = 0x0004;

// ---- ioctl request numbers ----
const IOC_GROUP: u32 = b'i' as u32;

#[cfg(not(any(target_os = "freebsd", target_os = "macos", target_os = "dragonfly")))]
mod ioc {
    // Linux encoding: dir:2 (bits 30-31) | size:14 (bits 16-29) | type:8 | nr:8.
    const WRITE: u32 = 1;
    const READ: u32 = 2;
    pub const fn io(group: u32, nr: u32) -> u32 {
        (group << 8) | nr
    }
    pub const fn iowr(group: u32, nr: u32, size: usize) -> u32 {
        ((READ | WRITE) << 30) | (((size as u32) & 0x3fff) << 16) | (group << 8) | nr
    }
}

#[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "dragonfly"))]
mod ioc {
    // BSD encoding: IOC_VOID 0x20000000, IOC_OUT 0x40000000, IOC_IN 0x80000000,
    // parameter length in bits 16-28 (IOCPARM_MASK 0x1fff).
    const IOC_VOID: u32 = 0x2000_0000;
    const IOC_INOUT: u32 = 0x4000_0000 | 0x8000_0000;
    pub const fn io(group: u32, nr: u32) -> u32 {
        IOC_VOID | (group << 8) | nr
    }
    pub const fn iowr(group: u32, nr: u32, size: usize) -> u32 {
        IOC_INOUT | (((size as u32) & 0x1fff) << 16) | (group << 8) | nr
    }
}

/// `_IOWR('i', 151, struct nmreq_header)`: the control request.
pub const NIOCCTRL: u32 = ioc::iowr(IOC_GROUP, 151, size_of::<NmreqHeader>());
/// `_IO('i', 148)`: synchronise the TX rings bound to the file descriptor.
pub const NIOCTXSYNC: u32 = ioc::io(IOC_GROUP, 148);
/// `_IO('i', 149)`: synchronise the RX rings bound to the file descriptor.
pub const NIOCRXSYNC: u32 = ioc::io(IOC_GROUP, 149);

#[cfg(not(any(target_os = "freebsd", target_os = "macos", target_os = "dragonfly")))]
const _: () = {
    assert!(NIOCCTRL == 0xc058_6997);
    assert!(NIOCTXSYNC == 0x6994);
    assert!(NIOCRXSYNC == 0x6995);
};
#[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "dragonfly"))]
const _: () = {
    assert!(NIOCCTRL == 0xc058_6997);
    assert!(NIOCTXSYNC == 0x2000_6994);
    assert!(NIOCRXSYNC == 0x2000_6995);
};

// ---- layout assertions (64-bit targets, where the facts were measured) ----
macro_rules! assert_layout {
    ($t:ty, size $s:expr, align $a:expr; $($f:ident @ $o:expr),* $(,)?) => {
        const _: () = {
            assert!(size_of::<$t>() == $s);
            assert!(align_of::<$t>() == $a);
            $( assert!(offset_of!($t, $f) == $o); )*
        };
    };
}

#[cfg(target_pointer_width = "64")]
mod layout_checks {
    use super::*;
    assert_layout!(NetmapSlot, size 16, align 8; buf_idx @ 0, len @ 4, flags @ 6, ptr @ 8);
    assert_layout!(NetmapRing, size 256, align 128;
        buf_ofs @ 0, num_slots @ 8, nr_buf_size @ 12, ringid @ 16, dir @ 18, head @ 20,
        cur @ 24, tail @ 28, flags @ 32, ts @ 40, offset_mask @ 56, buf_align @ 64, sem @ 128);
    assert_layout!(NetmapIf, size 56, align 8;
        ni_name @ 0, ni_version @ 16, ni_flags @ 20, ni_tx_rings @ 24, ni_rx_rings @ 28,
        ni_bufs_head @ 32, ni_host_tx_rings @ 36, ni_host_rx_rings @ 40, ring_ofs @ 56);
    assert_layout!(NmreqHeader, size 88, align 8;
        nr_version @ 0, nr_reqtype @ 2, nr_reserved @ 4, nr_name @ 8, nr_options @ 72,
        nr_body @ 80);
    assert_layout!(NmreqOption, size 24, align 8;
        nro_next @ 0, nro_reqtype @ 8, nro_status @ 12, nro_size @ 16);
    assert_layout!(NmreqRegister, size 56, align 8;
        nr_offset @ 0, nr_memsize @ 8, nr_tx_slots @ 16, nr_rx_slots @ 20, nr_tx_rings @ 24,
        nr_rx_rings @ 26, nr_host_tx_rings @ 28, nr_host_rx_rings @ 30, nr_mem_id @ 32,
        nr_ringid @ 34, nr_mode @ 36, nr_extra_bufs @ 40, nr_flags @ 48);
    assert_layout!(NmreqPortInfoGet, size 32, align 8;
        nr_memsize @ 0, nr_tx_slots @ 8, nr_rx_slots @ 12, nr_tx_rings @ 16, nr_rx_rings @ 18,
        nr_host_tx_rings @ 20, nr_host_rx_rings @ 22, nr_mem_id @ 24);
    assert_layout!(NmreqValeAttach, size 64, align 8; reg @ 0, port_index @ 56);
    assert_layout!(NmreqValeDetach, size 8, align 4; port_index @ 0);
    assert_layout!(NmreqValeList, size 8, align 4; nr_bridge_idx @ 0, nr_port_idx @ 4);
    assert_layout!(NmreqValeNewif, size 16, align 4;
        nr_tx_slots @ 0, nr_rx_slots @ 4, nr_tx_rings @ 8, nr_rx_rings @ 10, nr_mem_id @ 12);
    assert_layout!(NmreqPoolsInfo, size 64, align 8;
        nr_memsize @ 0, nr_mem_id @ 8, nr_if_pool_offset @ 16, nr_if_pool_objtotal @ 24,
        nr_if_pool_objsize @ 28, nr_ring_pool_offset @ 32, nr_ring_pool_objtotal @ 40,
        nr_ring_pool_objsize @ 44, nr_buf_pool_offset @ 48, nr_buf_pool_objtotal @ 56,
        nr_buf_pool_objsize @ 60);
}

/// Offset of `netmap_if.ring_ofs[0]` from the start of the `netmap_if`.
pub const RING_OFS_START: usize = size_of::<NetmapIf>();
/// Size of one `ring_ofs[]` entry (`ssize_t`).
pub const RING_OFS_ENTRY: usize = size_of::<isize>();

impl NmreqHeader {
    /// A zeroed header of the given request type at API version [`NETMAP_API`].
    pub fn new(reqtype: u16) -> Self {
        NmreqHeader {
            nr_version: NETMAP_API,
            nr_reqtype: reqtype,
            nr_reserved: 0,
            nr_name: [0; NETMAP_REQ_IFNAMSIZ],
            nr_options: 0,
            nr_body: 0,
        }
    }

    /// Copies `name` into `nr_name`, NUL-terminated. Returns `false` (and leaves the name
    /// empty) when it does not fit or contains a NUL byte.
    pub fn set_name(&mut self, name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.len() >= NETMAP_REQ_IFNAMSIZ || bytes.contains(&0) {
            return false;
        }
        self.nr_name = [0; NETMAP_REQ_IFNAMSIZ];
        for (dst, &b) in self.nr_name.iter_mut().zip(bytes) {
            // `c_char` is i8 on some targets and u8 on others: reinterpret the byte.
            *dst = b as libc::c_char;
        }
        true
    }

    /// The name stored in `nr_name`, up to the first NUL.
    pub fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .nr_name
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_name_roundtrip_and_limits() {
        let mut h = NmreqHeader::new(NETMAP_REQ_REGISTER);
        assert!(h.set_name("vale0:p1"));
        assert_eq!(h.name(), "vale0:p1");
        assert!(h.set_name(&"x".repeat(63)));
        assert!(!h.set_name(&"x".repeat(64)));
        assert!(!h.set_name("a\0b"));
    }

    #[test]
    fn header_is_api_14() {
        let h = NmreqHeader::new(NETMAP_REQ_PORT_INFO_GET);
        assert_eq!(h.nr_version, 14);
        assert_eq!(h.nr_reqtype, 2);
    }
}

/// Compile-time comparison with the installed `net/netmap.h` (feature `bindgen`).
#[cfg(netmap_bindgen_check)]
mod header_check {
    #![allow(
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals,
        dead_code
    )]
    #![allow(clippy::all)]
    use super::*;
    // Generated by bindgen from the header (its array helpers are `unsafe fn`s); only its
    // sizes and offsets are used.
    #[allow(unsafe_code)]
    mod header {
        include!(concat!(env!("OUT_DIR"), "/netmap_header.rs"));
    }
    include!(concat!(env!("OUT_DIR"), "/netmap_abi_check.rs"));
}

//! Kernel BPF objects found by id: the program attached to an interface (netlink gives its
//! id), its maps, and the XDP link holding it, each opened as a descriptor of ours, with the
//! parts of their `bpf_*_info` we read. This is how a process joins the program another
//! process attached, and how an error names a foreign program.
//!
//! Layouts written from `linux/bpf.h` (`struct bpf_prog_info`, `bpf_map_info`,
//! `bpf_link_info`, the `*_GET_FD_BY_ID` / `*_GET_NEXT_ID` attributes).

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::bpf::{fd_from, sys_bpf};
use crate::backend::linux::sys::{BpfObjInfoAttr, BPF_OBJ_GET_INFO_BY_FD, BPF_OBJ_NAME_LEN};

#[cfg(test)]
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_MAP_GET_FD_BY_ID: u32 = 14;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_LINK_GET_NEXT_ID: u32 = 31;
/// `enum bpf_link_type`: an XDP link.
const BPF_LINK_TYPE_XDP: u32 = 6;

/// `bpf_attr` for `*_GET_FD_BY_ID` (`id` in) and `*_GET_NEXT_ID` (`id` in, `next_id` out).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `struct bpf_prog_info` up to `name`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
}

/// `struct bpf_map_info` up to `name`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct MapInfoRaw {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; BPF_OBJ_NAME_LEN],
}

/// `struct bpf_link_info` up to `xdp.ifindex` (the union starts 8-aligned).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct LinkInfoRaw {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    _pad2: u32,
}

/// `bpf_attr` for `BPF_PROG_TEST_RUN` up to `ctx_out`.
#[cfg(test)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
}

const _: () = {
    assert!(size_of::<IdAttr>() == 12);
    assert!(offset_of!(ProgInfo, nr_map_ids) == 52);
    assert!(offset_of!(ProgInfo, map_ids) == 56);
    assert!(offset_of!(ProgInfo, name) == 64);
    assert!(offset_of!(MapInfoRaw, value_size) == 12);
    assert!(offset_of!(MapInfoRaw, name) == 24);
    assert!(offset_of!(LinkInfoRaw, prog_id) == 8);
    assert!(offset_of!(LinkInfoRaw, ifindex) == 16);
};

#[cfg(test)]
const _: () = {
    assert!(offset_of!(TestRunAttr, data_in) == 16);
    assert!(offset_of!(TestRunAttr, repeat) == 32);
    assert!(offset_of!(TestRunAttr, ctx_out) == 56);
};

fn get_fd(cmd: u32, id: u32) -> io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    sys_bpf(cmd, &mut attr).map(fd_from)
}

fn info<T: Copy + Default>(fd: BorrowedFd<'_>, mut info: T) -> io::Result<T> {
    let mut attr = BpfObjInfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: &mut info as *mut T as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn name_of(raw: &[u8; BPF_OBJ_NAME_LEN]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// A program opened by id: its descriptor, name and map ids.
#[derive(Debug)]
pub(crate) struct ProgById {
    /// Our descriptor of the program.
    pub fd: OwnedFd,
    /// The name it was loaded under (may be empty).
    pub name: String,
    /// The maps it uses.
    pub map_ids: Vec<u32>,
}

/// Opens program `id` (ENOENT once it is gone).
pub(crate) fn prog(id: u32) -> io::Result<ProgById> {
    let fd = get_fd(BPF_PROG_GET_FD_BY_ID, id)?;
    let mut ids = [0u32; 8];
    let first = info(
        fd.as_fd(),
        ProgInfo {
            nr_map_ids: ids.len() as u32,
            map_ids: ids.as_mut_ptr() as u64,
            ..Default::default()
        },
    )?;
    let n = (first.nr_map_ids as usize).min(ids.len());
    Ok(ProgById {
        name: name_of(&first.name),
        map_ids: ids[..n].to_vec(),
        fd,
    })
}

/// The parts of a map's info a joining process checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapShape {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Number of entries.
    pub max_entries: u32,
}

/// Opens map `id` and reads its shape.
pub(crate) fn map(id: u32) -> io::Result<(OwnedFd, MapShape)> {
    let fd = get_fd(BPF_MAP_GET_FD_BY_ID, id)?;
    let i = info(fd.as_fd(), MapInfoRaw::default())?;
    Ok((
        fd,
        MapShape {
            map_type: i.map_type,
            value_size: i.value_size,
            max_entries: i.max_entries,
        },
    ))
}

/// Opens the XDP link that holds program `prog_id` on interface `ifindex`, if one exists
/// (a netlink-attached program has none). Holding the descriptor keeps the program attached:
/// the kernel detaches it when the last descriptor of the link closes.
pub(crate) fn xdp_link(prog_id: u32, ifindex: u32) -> io::Result<Option<OwnedFd>> {
    let mut id = 0u32;
    loop {
        let mut attr = IdAttr {
            id,
            ..Default::default()
        };
        match sys_bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = attr.next_id,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
        let fd = match get_fd(BPF_LINK_GET_FD_BY_ID, id) {
            Ok(fd) => fd,
            // Released meanwhile. (EAGAIN, a link not settled or being released, goes to the
            // caller: it may be the one asked for.)
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let i = info(fd.as_fd(), LinkInfoRaw::default())?;
        if i.link_type == BPF_LINK_TYPE_XDP && i.prog_id == prog_id && i.ifindex == ifindex {
            return Ok(Some(fd));
        }
    }
}

/// Runs program `prog` once on `data` (`BPF_PROG_TEST_RUN`, receive queue 0 of `lo`) and
/// returns its verdict.
#[cfg(test)]
pub(crate) fn test_run(prog: BorrowedFd<'_>, data: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

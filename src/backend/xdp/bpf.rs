//! `bpf(2)` without libbpf: the XSKMAP and array maps, map updates, program loads, XDP links
//! and program ids. (The program itself is in [`filter`](super::filter).)

use crate::os::cvt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::backend::linux::sys::{self, BpfInsn};

/// Issues `bpf(cmd, attr, size_of::<T>())`.
pub(super) fn sys_bpf<T: Copy>(cmd: u32, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable #[repr(C)] bpf_attr prefix of exactly the size passed;
    // any pointers inside it (instructions, licence, log buffer, info) are set by the callers
    // in this module to buffers that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T,
            size_of::<T>(),
        )
    };
    cvt(r)
}

pub(super) fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf commands calling this return a fresh descriptor on success.
    unsafe { OwnedFd::from_raw_fd(r as libc::c_int) }
}

/// Raises `RLIMIT_MEMLOCK` to unlimited (kernels before 5.11 charge BPF maps and programs to
/// it). Returns whether the limit was raised.
pub(crate) fn raise_memlock() -> bool {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit value passed by pointer, read during the call only.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) == 0 }
}

/// Runs `f`; when it fails with EPERM (the memlock charge of kernels before 5.11, or a real
/// privilege problem), raises `RLIMIT_MEMLOCK` and tries once more.
fn with_memlock_retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match f() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && raise_memlock() => f(),
        other => other,
    }
}

pub(super) fn name16(name: &str) -> [u8; sys::BPF_OBJ_NAME_LEN] {
    let mut out = [0u8; sys::BPF_OBJ_NAME_LEN];
    for (d, s) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|b| b.is_ascii_alphanumeric() || *b == b'_'),
        )
        .take(sys::BPF_OBJ_NAME_LEN - 1)
    {
        *d = s;
    }
    out
}

/// Creates an XSKMAP (key: queue index, value: AF_XDP socket fd) of `entries` slots.
pub(crate) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    with_memlock_retry(|| {
        let mut attr = sys::BpfMapCreateAttr {
            map_type: sys::BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries.max(1),
            map_name: name16("netmap_rs_xsks"),
            ..Default::default()
        };
        match sys_bpf(sys::BPF_MAP_CREATE, &mut attr) {
            // Kernels before 4.15 reject map names: retry without.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                attr.map_name = [0; sys::BPF_OBJ_NAME_LEN];
                sys_bpf(sys::BPF_MAP_CREATE, &mut attr)
            }
            r => r,
        }
        .map(fd_from)
    })
}

/// `BPF_MAP_TYPE_ARRAY`.
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// Creates an array map named `name` of `entries` values of `value_size` bytes (key: `u32`
/// index), all zero.
pub(crate) fn create_array(name: &str, value_size: u32, entries: u32) -> io::Result<OwnedFd> {
    with_memlock_retry(|| {
        let mut attr = sys::BpfMapCreateAttr {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size,
            max_entries: entries.max(1),
            map_name: name16(name),
            ..Default::default()
        };
        sys_bpf(sys::BPF_MAP_CREATE, &mut attr).map(fd_from)
    })
}

/// Sets `map[key] = value` for a map whose values are `value.len()` bytes.
pub(crate) fn map_update_bytes(map: BorrowedFd<'_>, key: u32, value: &[u8]) -> io::Result<()> {
    let mut attr = sys::BpfMapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: value.as_ptr() as u64,
        flags: sys::BPF_ANY,
        ..Default::default()
    };
    sys_bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Sets `map[key] = value` (an XSKMAP entry: queue → socket fd).
pub(crate) fn map_update(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    let mut attr = sys::BpfMapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: sys::BPF_ANY,
        ..Default::default()
    };
    sys_bpf(sys::BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Removes `map[key]`; a missing entry is not an error.
pub(crate) fn map_delete(map: BorrowedFd<'_>, key: u32) -> io::Result<()> {
    let mut attr = sys::BpfMapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    match sys_bpf(sys::BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}

/// `r0 = XDP_PASS; exit`: a do-nothing program (used by tests as "somebody else's" program).
#[cfg(test)]
pub(crate) fn pass_program() -> [BpfInsn; 2] {
    [
        BpfInsn::new(sys::OP_ALU64_MOV_K, 0, 0, 0, sys::XDP_PASS),
        BpfInsn::new(sys::OP_JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// A failed `BPF_PROG_LOAD`: the OS error and the verifier's log text (may be empty).
#[derive(Debug)]
pub(crate) struct LoadError {
    /// The OS error.
    pub error: io::Error,
    /// The verifier log, trimmed.
    pub log: String,
}

/// Loads an XDP program. On failure the verifier log (asked for on a retry, as loaders do, so
/// the fast path needs no log buffer) comes back with the error.
pub(crate) fn load_xdp(insns: &[BpfInsn], name: &str) -> Result<OwnedFd, LoadError> {
    let license = b"GPL\0";
    let load = |log: Option<&mut Vec<u8>>| {
        with_memlock_retry(|| {
            let mut attr = sys::BpfProgLoadAttr {
                prog_type: sys::BPF_PROG_TYPE_XDP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                prog_name: name16(name),
                expected_attach_type: sys::BPF_XDP,
                // Multi-buffer aware (for XDP_USE_SG sockets); the retry goes without it, as
                // kernels before 5.18 refuse the flag.
                prog_flags: if log.is_none() {
                    sys::BPF_F_XDP_HAS_FRAGS
                } else {
                    0
                },
                ..Default::default()
            };
            if let Some(buf) = log.as_deref() {
                attr.log_level = 1;
                attr.log_size = buf.len() as u32;
                attr.log_buf = buf.as_ptr() as u64;
            }
            sys_bpf(sys::BPF_PROG_LOAD, &mut attr).map(fd_from)
        })
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut buf = vec![0u8; 64 * 1024];
            let second = load(Some(&mut buf));
            if let Ok(fd) = second {
                return Ok(fd);
            }
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let log = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            Err(LoadError { error, log })
        }
    }
}

/// Attaches an XDP program to an interface through a BPF link (kernel 5.9+). `flags` is one of
/// the `XDP_FLAGS_*_MODE` bits (or 0 for the kernel's choice). The program stays attached as
/// long as the returned link fd is open: closing it, also by process exit, detaches.
pub(crate) fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = sys::BpfLinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: sys::BPF_XDP,
        flags,
    };
    sys_bpf(sys::BPF_LINK_CREATE, &mut attr).map(fd_from)
}

/// The kernel id of a loaded program (what `ip link` and netlink report).
pub(crate) fn prog_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = sys::BpfProgInfoHead::default();
    let mut attr = sys::BpfObjInfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: size_of::<sys::BpfProgInfoHead>() as u32,
        info: &mut info as *mut sys::BpfProgInfoHead as u64,
    };
    sys_bpf(sys::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_keep_what_the_kernel_accepts() {
        assert_eq!(name16("netmap_rs-xsk.map!")[..14], *b"netmap_rsxskma");
    }
}

//! A TCX ingress program that drops every frame (`r0 = TC_ACT_SHOT; exit`), attached with a BPF
//! link: it stays while the returned descriptor is open and goes when the process exits.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const TC_ACT_SHOT: i32 = 2;

/// `bpf_attr` for BPF_PROG_LOAD, the leading fields only (the kernel zero-extends).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// `bpf_attr` for BPF_LINK_CREATE, the leading fields only.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, initialised bpf_attr prefix of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads the drop program and links it at `iface`'s TCX ingress.
pub fn drop_at_ingress(iface: &str) -> io::Result<(OwnedFd, OwnedFd)> {
    let name = CString::new(iface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    // BPF_MOV64_IMM(r0, TC_ACT_SHOT); BPF_EXIT: opcode, regs, off, imm.
    let insns: [u64; 2] = [0xb7 | ((TC_ACT_SHOT as u32 as u64) << 32), 0x95];
    let license = c"GPL";
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let prog = bpf(BPF_PROG_LOAD, &load)?;
    let link = LinkCreate {
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        ..Default::default()
    };
    let link = bpf(BPF_LINK_CREATE, &link)?;
    Ok((prog, link))
}

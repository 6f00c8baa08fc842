//! The kernel driver: `/dev/netmap`, `NIOCCTRL` registration, `mmap`, `NIOC*SYNC` and poll.
//!
//! Written to the netmap API 14 ABI (see [`crate::abi`]). Every errno the kernel returns from
//! a control request is turned into an [`Error`] that names the cause and the fix
//! ([`ctl`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::abi::{self, NmreqRegister};
use crate::backend::{Backend, Driver, MemIdentity, OpenOptions, Opened, Readiness, RingWaker};
use crate::error::Error;
use crate::os::poll_fds;
use crate::port_name::{PortSpec, RingSelect};
use crate::region::Region;
use crate::ring::Dir;

#[allow(unsafe_code)]
mod ctl;

use ctl::{ctrl, ctrl_error, header, open_dev};
pub(crate) use ctl::{pools_info, port_info, vale_request, vale_request_hdr};
pub use ctl::{PoolsInfo, PortInfo};

/// A registered kernel port: the netmap file descriptor.
#[derive(Debug)]
pub(crate) struct Port {
    fd: OwnedFd,
}

/// Registers `spec` on the kernel and maps its memory.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let span = tracing::debug_span!("netmap_open", port = %spec, backend = "kernel");
    let _e = span.enter();
    let fd = open_dev()?;
    let mut reg = NmreqRegister {
        nr_mode: spec.rings.mode(),
        nr_ringid: spec.rings.ring_id(),
        nr_flags: opts.flags,
        nr_tx_slots: opts.tx_slots,
        nr_rx_slots: opts.rx_slots,
        nr_tx_rings: opts.tx_rings,
        nr_rx_rings: opts.rx_rings,
        nr_extra_bufs: opts.extra_bufs,
        nr_mem_id: spec.mem_id,
        ..Default::default()
    };
    let mut hdr = header(abi::NETMAP_REQ_REGISTER, &spec.ifname, &spec.to_string())?;
    hdr.nr_body = &mut reg as *mut NmreqRegister as u64;
    // Name the ring in the request, so that an out-of-range ring number (EINVAL) says which.
    let what = match spec.rings {
        RingSelect::OneNic(k) => format!("register of ring {k}"),
        RingSelect::OneHost(k) => format!("register of host ring {k}"),
        _ => "register".to_string(),
    };
    ctrl(fd.as_fd(), &mut hdr).map_err(|e| ctrl_error(&spec.ifname, &what, &hdr, e))?;
    let memsize = usize::try_from(reg.nr_memsize)
        .map_err(|_| Error::BadLayout(format!("memory size {} too large", reg.nr_memsize)))?;
    let if_off = usize::try_from(reg.nr_offset)
        .ok()
        .filter(|o| *o < memsize)
        .ok_or_else(|| {
            Error::BadLayout(format!(
                "netmap_if offset {} outside the {memsize}-byte region",
                reg.nr_offset
            ))
        })?;
    let region = Region::map_shared(fd.as_fd(), memsize).map_err(|e| {
        Error::BindFail(format!(
            "{}: mmap of {memsize} bytes failed: {e}",
            spec.ifname
        ))
    })?;
    tracing::debug!(
        memsize,
        mem_id = reg.nr_mem_id,
        tx_rings = reg.nr_tx_rings,
        rx_rings = reg.nr_rx_rings,
        tx_slots = reg.nr_tx_slots,
        rx_slots = reg.nr_rx_slots,
        "registered"
    );
    let pool = buffer_pool(spec, reg.nr_mem_id, memsize);
    Ok(Opened {
        backend: Backend::Kernel(Port { fd }),
        region: Arc::new(region),
        if_off,
        pool,
        mem: MemIdentity::Kernel {
            mem_id: reg.nr_mem_id,
            memsize,
        },
        extra_bufs: reg.nr_extra_bufs,
    })
}

/// The byte range of the allocator's buffer pool (`NETMAP_REQ_POOLS_INFO_GET`): ring headers
/// are shared memory other registrations can write, so the buffers a ring may name are
/// bounded by what the kernel says, not by the ring's `buf_ofs` alone. Where the query
/// fails, the whole mapping (every buffer still has to lie inside it and above the rings).
fn buffer_pool(spec: &PortSpec, mem_id: u16, memsize: usize) -> std::ops::Range<usize> {
    let mut s = spec.clone();
    s.mem_id = mem_id;
    match pools_info(&s) {
        Ok(p) => {
            let (off, total, size) = p.buf_pool;
            let start = usize::try_from(off).unwrap_or(usize::MAX).min(memsize);
            let len = (total as usize).saturating_mul(size as usize);
            start..start.saturating_add(len).min(memsize)
        }
        Err(e) => {
            tracing::warn!(port = %spec, error = %e, "pool query failed; bounding buffers by the mapping");
            0..memsize
        }
    }
}

impl Port {
    #[inline]
    fn sync(&self, req: u32, what: &str) -> Result<(), Error> {
        ctl::sync(self.fd.as_fd(), req, what)
    }
}

impl Driver for Port {
    #[inline]
    fn txsync(&self) -> Result<(), Error> {
        self.sync(abi::NIOCTXSYNC, "NIOCTXSYNC")
    }

    #[inline]
    fn rxsync(&self) -> Result<(), Error> {
        self.sync(abi::NIOCRXSYNC, "NIOCRXSYNC")
    }

    /// `poll(2)` on the netmap fd: the kernel syncs as a side effect and reports readiness.
    fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        let mut ev = 0;
        if want.readable {
            ev |= libc::POLLIN;
        }
        if want.writable {
            ev |= libc::POLLOUT;
        }
        let rev = poll_fds(&[(self.fd.as_fd(), ev)], timeout)?;
        if rev[0] & libc::POLLNVAL != 0 {
            return Err(Error::Io(io::Error::other(
                "poll on the netmap fd reported POLLNVAL: the descriptor is not open",
            )));
        }
        if rev[0] & libc::POLLERR != 0 {
            // netmap's poll reports POLLERR when its check of a ring's user pointers failed
            // (`netmap_ring_reinit`). With our rings that happens only when another thread
            // published a ring between the kernel's two loads of it (see `tokio_async`): the
            // kernel re-read them, found them valid and left them, so this is a wake-up:
            // report what the rings show, as the emulated backend does.
            tracing::debug!("netmap poll reported POLLERR; treated as a wake-up");
            let now = check();
            return Ok(Readiness {
                readable: want.readable && now.readable,
                writable: want.writable && now.writable,
            });
        }
        Ok(Readiness {
            readable: rev[0] & libc::POLLIN != 0,
            writable: rev[0] & libc::POLLOUT != 0,
        })
    }

    /// A duplicate of the netmap fd for one ring's waiter (see [`RingWaker`]): registered
    /// with the reactor on its own, it keeps readiness state that no other ring's wait can
    /// clear.
    fn ring_waker(&self, dir: Dir, _idx: usize) -> Result<RingWaker, Error> {
        let fd = self.fd.try_clone().map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!("duplicating the netmap fd for a ring waiter: {e}"),
            ))
        })?;
        Ok(RingWaker::fd(fd, dir == Dir::Tx))
    }

    fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

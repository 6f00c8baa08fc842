//! Wake-ups of the emulated backend, across processes.
//!
//! A waiter (a registration's descriptor or an async ring handle) owns a [`Note`]: a
//! pollable descriptor (its *bell*) and one wake-up *cell* per ring it watches, in the
//! memory's control area. A cell holds `waiters` (armed while someone is about to sleep),
//! `pending` (a signal was sent since the last clear) and the bell's address. Whoever
//! delivers packets or frees slots signals the ring's cells ([`signal`]): when a cell is
//! armed and not yet pending, it rings the bell. So a busy pair makes no system call, and an
//! idle waiter sleeps in `poll`/epoll with no busy waiting.
//!
//! Bells: in shared memory (Linux), a datagram socket bound to an abstract Unix address
//! (`\0netmap-rs.<uid>.<pid>.<n>`) that any process can send a byte to, and which vanishes
//! with its owner; otherwise (Miri, other systems, private memory) an eventfd or pipe found
//! through a process-local table.
//!
//! No wake-up is lost: the waiter arms (SeqCst) before its last sync, and the signaller
//! publishes the ring words before it looks at `waiters` (with SeqCst fences on both sides):
//! either the sync sees the packets, or the signaller sees the waiter.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::ctl::Ctl;
use super::lock;
use super::notify::Notifier;

/// A wake-up cell: `waiters`, `pending` and the bell's address, in the control area.
#[derive(Clone)]
pub(super) struct Cell {
    ctl: Ctl,
    off: usize,
}

impl Cell {
    pub(super) fn new(ctl: &Ctl, off: usize) -> Cell {
        Cell {
            ctl: ctl.clone(),
            off,
        }
    }
    fn waiters(&self) -> &AtomicU32 {
        self.ctl.a32(self.off)
    }
    fn pending(&self) -> &AtomicU32 {
        self.ctl.a32(self.off + 4)
    }
    fn addr(&self) -> &AtomicU64 {
        self.ctl.a64(self.off + 8)
    }

    /// Points the cell at bell `addr` (0: none), reset.
    pub(super) fn install(&self, addr: u64) {
        self.waiters().store(0, Ordering::SeqCst);
        self.pending().store(0, Ordering::SeqCst);
        self.addr().store(addr, Ordering::SeqCst);
    }

    /// Removes bell `addr` from the cell, if it is still the installed one.
    pub(super) fn uninstall(&self, addr: u64) {
        if self
            .addr()
            .compare_exchange(addr, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.waiters().store(0, Ordering::SeqCst);
        }
    }

    /// Signals the cell's waiter, if one is armed. Call after publishing the news.
    #[inline]
    pub(super) fn signal(&self) {
        signal(&self.ctl, self.off);
    }
}

/// Signals the waiter of the cell at `off`, if one is armed: call after publishing the news.
#[inline]
pub(super) fn signal(ctl: &Ctl, off: usize) {
    fence(Ordering::SeqCst);
    if ctl.a32(off).load(Ordering::SeqCst) > 0 && ctl.a32(off + 4).swap(1, Ordering::SeqCst) == 0 {
        ring(ctl.a64(off + 8).load(Ordering::SeqCst));
    }
}

/// A waiter's wake-up source: a bell and the cells that ring it.
pub(crate) struct Note {
    bell: Bell,
    cells: Vec<Cell>,
}

impl std::fmt::Debug for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Note")
            .field("addr", &self.bell.addr)
            .field("cells", &self.cells.len())
            .finish()
    }
}

impl Note {
    /// A new note over `cells` (not yet installed in them).
    pub(super) fn new(shared: bool, cells: Vec<Cell>) -> io::Result<Note> {
        Ok(Note {
            bell: Bell::new(shared)?,
            cells,
        })
    }

    /// Installs the bell in every cell (after the rings were bound).
    pub(super) fn install(&self) {
        for c in &self.cells {
            c.install(self.bell.addr);
        }
    }

    /// Announces a waiter: from now on signals ring the bell. Pair with [`Note::disarm`].
    pub(crate) fn arm(&self) {
        for c in &self.cells {
            c.waiters().fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// One waiter is done.
    pub(crate) fn disarm(&self) {
        for c in &self.cells {
            // Never below zero, whatever the other process wrote there.
            let w = c.waiters();
            let mut v = w.load(Ordering::SeqCst);
            while v > 0 {
                match w.compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => break,
                    Err(now) => v = now,
                }
            }
        }
    }

    /// Whether some waiter armed the note.
    pub(crate) fn is_armed(&self) -> bool {
        self.cells
            .first()
            .is_some_and(|c| c.waiters().load(Ordering::SeqCst) > 0)
    }

    /// Clears pending signals before a sync: drains the bell first, then resets the flags
    /// (see `super::notify::Notifier::clear` for why in this order).
    pub(crate) fn clear(&self) {
        let mut drained = false;
        for c in &self.cells {
            if c.pending().load(Ordering::SeqCst) != 0 {
                if !drained {
                    self.bell.drain();
                    drained = true;
                }
                c.pending().store(0, Ordering::SeqCst);
            }
        }
    }

    /// Rings the bell if armed (a registration signalling itself after a sync).
    pub(crate) fn notify(&self) {
        if let Some(c) = self.cells.first() {
            c.signal();
        }
    }
}

impl Drop for Note {
    fn drop(&mut self) {
        for c in &self.cells {
            c.uninstall(self.bell.addr);
        }
    }
}

impl AsFd for Note {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

/// A pollable descriptor that rings when signalled.
struct Bell {
    addr: u64,
    kind: BellKind,
}

enum BellKind {
    /// A process-local notifier (armed forever: every ring writes once until cleared).
    Local(Arc<Notifier>),
    #[cfg(all(target_os = "linux", not(miri)))]
    Socket(std::os::fd::OwnedFd),
}

fn local_bells() -> &'static Mutex<HashMap<u64, Weak<Notifier>>> {
    static B: OnceLock<Mutex<HashMap<u64, Weak<Notifier>>>> = OnceLock::new();
    B.get_or_init(Default::default)
}

fn next_addr() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    (u64::from(std::process::id()) << 32) | (N.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

impl Bell {
    fn new(shared: bool) -> io::Result<Bell> {
        #[cfg(test)]
        super::notify::injected_failure()?;
        #[cfg(all(target_os = "linux", not(miri)))]
        if shared {
            loop {
                let addr = next_addr();
                match sock::bind(addr) {
                    Ok(fd) => {
                        return Ok(Bell {
                            addr,
                            kind: BellKind::Socket(fd),
                        })
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let _ = shared;
        let n = Arc::new(Notifier::new()?);
        n.arm();
        let addr = next_addr();
        let mut t = lock(local_bells());
        t.retain(|_, w| w.strong_count() > 0);
        t.insert(addr, Arc::downgrade(&n));
        Ok(Bell {
            addr,
            kind: BellKind::Local(n),
        })
    }

    fn drain(&self) {
        match &self.kind {
            BellKind::Local(n) => n.clear(),
            #[cfg(all(target_os = "linux", not(miri)))]
            BellKind::Socket(fd) => sock::drain(fd.as_fd()),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            BellKind::Local(n) => n.as_fd(),
            #[cfg(all(target_os = "linux", not(miri)))]
            BellKind::Socket(fd) => fd.as_fd(),
        }
    }
}

/// Rings the bell at `addr`: a local one through the table, else the socket address.
fn ring(addr: u64) {
    if addr == 0 {
        return;
    }
    let local = lock(local_bells()).get(&addr).and_then(Weak::upgrade);
    if let Some(n) = local {
        n.notify();
        return;
    }
    #[cfg(all(target_os = "linux", not(miri)))]
    sock::send(addr);
}

#[cfg(all(target_os = "linux", not(miri)))]
mod sock {
    //! Abstract-namespace datagram sockets as bells.
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::sync::OnceLock;

    fn sockaddr(addr: u64) -> (libc::sockaddr_un, libc::socklen_t) {
        // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
        let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        static UID: OnceLock<u32> = OnceLock::new();
        // SAFETY: getuid has no preconditions.
        let uid = *UID.get_or_init(|| unsafe { libc::getuid() });
        let name = format!("netmap-rs.{uid}.{:x}.{:x}", addr >> 32, addr & 0xffff_ffff);
        // sun_path[0] = 0: the abstract namespace.
        for (d, s) in sa.sun_path[1..].iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
        (sa, len as libc::socklen_t)
    }

    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: socket(2) has no memory preconditions; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        crate::os::cvt(fd)?;
        // SAFETY: a fresh descriptor owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn bind(addr: u64) -> io::Result<OwnedFd> {
        let fd = socket()?;
        let (sa, len) = sockaddr(addr);
        // SAFETY: sa is a live sockaddr_un of at least `len` bytes.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        crate::os::cvt(r)?;
        Ok(fd)
    }

    pub(super) fn send(addr: u64) {
        static TX: OnceLock<Option<OwnedFd>> = OnceLock::new();
        let Some(fd) = TX.get_or_init(|| socket().ok()) else {
            return;
        };
        let (sa, len) = sockaddr(addr);
        let b = 1u8;
        // SAFETY: one byte from a live u8 to a live address. A full queue (EAGAIN) means the
        // bell is readable already; a missing peer (ECONNREFUSED) means nobody waits.
        unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                (&b as *const u8).cast(),
                1,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
    }

    pub(super) fn drain(fd: BorrowedFd<'_>) {
        let mut buf = [0u8; 16];
        loop {
            // SAFETY: reads at most buf.len() bytes into a live local buffer.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                break;
            }
        }
    }
}

impl crate::backend::waker::Arm for Note {
    fn arm(&self) {
        Note::arm(self)
    }
    fn disarm(&self) {
        Note::disarm(self)
    }
}

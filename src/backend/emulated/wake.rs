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
//! Bells in shared memory (Linux): a datagram socket bound to an abstract Unix address
//! (`\0netmap-rs.<uid>.bell.<pid>.<n>`, which vanishes with its owner) and *connected* to the
//! memory's [`Ringer`]: a datagram socket that every process using the memory holds (it came
//! with the memory, see [`super::rendezvous`]) and sends every ring through. The kernel then
//! refuses (`EPERM`) a datagram to the bell from any other socket: another user, who can see
//! the name in `/proc/net/unix` and send to any abstract name, can neither wake nor inject
//! into a bell, and nobody outside the memory's users can. Otherwise (Miri, other systems,
//! private memory) a bell is an eventfd or pipe found through a process-local table.
//!
//! A bell is drained at every clear that may matter: when a cell says a signal is pending,
//! and whenever this process has a waiter armed on the note (counted here, not in the shared
//! cell, which a peer may overwrite), except the clear right after arming. A datagram that
//! arrived without a pending flag (a confused or hostile peer of the same memory) thus wakes
//! a waiter once at most and is consumed by its next sync: it can never leave the descriptor
//! readable for good (a wait would spin on it). A busy pair with nobody waiting makes no
//! system call, and a waiter makes no more than before (one drain per wake-up); a descriptor
//! handed out through `AsFd` (armed for good) is drained at every sync of its direction.
//!
//! No wake-up is lost: the waiter arms (SeqCst) before its last sync, and the signaller
//! publishes the ring words before it looks at `waiters` (with SeqCst fences on both sides):
//! either the sync sees the packets, or the signaller sees the waiter.
//!
//! Known limit: after a process dies, its bell names are free, and cells it armed still
//! point at them until their pipe end is opened again. Another user who binds such a name
//! gets at most one empty datagram per cell (the cell stays pending while nobody clears it):
//! the time of one delivery, no data.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::ctl::Ctl;
use super::lock;
use super::notify::Notifier;

#[cfg(all(target_os = "linux", not(miri)))]
pub(super) use sock::Ringer;

/// Stand-in where memory is never shared.
#[cfg(not(all(target_os = "linux", not(miri))))]
pub(super) struct Ringer;

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
        ring(ctl, ctl.a64(off + 8).load(Ordering::SeqCst));
    }
}

/// A waiter's wake-up source: a bell and the cells that ring it.
pub(crate) struct Note {
    bell: Bell,
    cells: Vec<Cell>,
    /// Waiters of this process armed on the note (the cells' counts are shared, and a peer
    /// may overwrite them; this one decides when the bell is drained).
    armed: AtomicU32,
    /// Set by `arm`, taken by the next `clear`: the clear right after arming (before the
    /// waiter's first sleep) need not drain; a stray datagram then wakes that first sleep at
    /// once, and the next clear drains it.
    fresh: AtomicBool,
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
    /// A new note over `cells` (not yet installed in them); `ringer`: the memory's, when it
    /// is shared between processes.
    pub(super) fn new(ringer: Option<&Arc<Ringer>>, cells: Vec<Cell>) -> io::Result<Note> {
        Ok(Note {
            bell: Bell::new(ringer)?,
            cells,
            armed: AtomicU32::new(0),
            fresh: AtomicBool::new(false),
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
        self.fresh.store(true, Ordering::SeqCst);
        self.armed.fetch_add(1, Ordering::SeqCst);
        for c in &self.cells {
            c.waiters().fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// One waiter is done.
    pub(crate) fn disarm(&self) {
        let _ = self
            .armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
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
    /// (see `super::notify::Notifier::clear` for why in this order). The bell is drained
    /// when a flag is set, and whenever a waiter of this process is armed (but for the clear
    /// right after arming), so whatever made it readable is consumed before that waiter
    /// sleeps a second time (see the module docs).
    pub(crate) fn clear(&self) {
        let mut drained = false;
        if self.armed.load(Ordering::SeqCst) > 0 && !self.fresh.swap(false, Ordering::SeqCst) {
            self.bell.drain();
            drained = true;
        }
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
    fn new(ringer: Option<&Arc<Ringer>>) -> io::Result<Bell> {
        #[cfg(test)]
        super::notify::injected_failure()?;
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(r) = ringer {
            let mut last = None;
            // Another user may have bound some of our future names: take the next ones.
            for _ in 0..64 {
                let addr = next_addr();
                match sock::bell(addr, r) {
                    Ok(fd) => {
                        return Ok(Bell {
                            addr,
                            kind: BellKind::Socket(fd),
                        })
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            return Err(last.expect("tried"));
        }
        let _ = ringer;
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

/// Rings the bell at `addr` of a cell of `ctl`'s memory: a local one through the table,
/// else through the memory's ringer.
fn ring(ctl: &Ctl, addr: u64) {
    if addr == 0 {
        return;
    }
    let local = lock(local_bells()).get(&addr).and_then(Weak::upgrade);
    if let Some(n) = local {
        n.notify();
        return;
    }
    #[cfg(all(target_os = "linux", not(miri)))]
    sock::ring(ctl, addr);
    let _ = ctl;
}

/// Makes `ringer` the one that rings bells in the memory mapped at `base` (until
/// [`forget_ringer`]).
#[cfg(all(target_os = "linux", not(miri)))]
pub(super) fn register_ringer(base: usize, ringer: &Arc<Ringer>) {
    let mut t = lock(sock::ringers());
    t.retain(|_, w| w.strong_count() > 0);
    t.insert(base, Arc::downgrade(ringer));
}

/// The memory mapped at `base` is going away.
#[cfg(all(target_os = "linux", not(miri)))]
pub(super) fn forget_ringer(base: usize) {
    lock(sock::ringers()).remove(&base);
}

#[cfg(all(target_os = "linux", not(miri)))]
mod sock {
    //! Abstract-namespace datagram sockets as bells, connected to the memory's ringer.
    use std::collections::HashMap;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
    use std::sync::{Mutex, OnceLock, Weak};

    use super::super::ctl::Ctl;
    use super::super::lock;
    use super::super::unix::{self, uid};

    /// The socket every ring of one shared memory is sent through; bells accept datagrams
    /// from it alone. Every process using the memory holds it (one socket, shared).
    pub(in super::super) struct Ringer {
        fd: OwnedFd,
        name: Vec<u8>,
    }

    impl Ringer {
        /// A new ringer, bound to a fresh name the kernel picks (autobind: it cannot be
        /// taken in advance).
        pub(in super::super) fn new() -> io::Result<Ringer> {
            let fd = unix::socket(libc::SOCK_DGRAM)?;
            unix::bind(fd.as_fd(), None)?;
            let name = unix::name_of(fd.as_fd())?;
            Ok(Ringer { fd, name })
        }

        /// A ringer another process handed over; `None` when it is not a bound datagram
        /// socket.
        pub(in super::super) fn adopt(fd: OwnedFd) -> Option<Ringer> {
            if !unix::is_socket(fd.as_fd(), libc::SOCK_DGRAM, false) {
                return None;
            }
            let name = unix::name_of(fd.as_fd()).ok().filter(|n| !n.is_empty())?;
            Some(Ringer { fd, name })
        }

        pub(in super::super) fn fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    pub(super) fn ringers() -> &'static Mutex<HashMap<usize, Weak<Ringer>>> {
        static R: OnceLock<Mutex<HashMap<usize, Weak<Ringer>>>> = OnceLock::new();
        R.get_or_init(Default::default)
    }

    fn name(addr: u64) -> Vec<u8> {
        format!(
            "netmap-rs.{}.bell.{:x}.{:x}",
            uid(),
            addr >> 32,
            addr & 0xffff_ffff
        )
        .into_bytes()
    }

    /// A bell at `addr`'s name that accepts datagrams from `ringer` only.
    pub(super) fn bell(addr: u64, ringer: &Ringer) -> io::Result<OwnedFd> {
        let fd = unix::socket(libc::SOCK_DGRAM)?;
        unix::bind(fd.as_fd(), Some(&name(addr)))?;
        unix::connect(fd.as_fd(), &ringer.name)?;
        Ok(fd)
    }

    /// Sends one byte to bell `addr` through the ringer of `ctl`'s memory. A full queue
    /// (EAGAIN) means the bell is readable already; a missing bell means nobody waits.
    pub(super) fn ring(ctl: &Ctl, addr: u64) {
        let base = ctl.region.base().as_ptr() as usize;
        let Some(r) = lock(ringers()).get(&base).and_then(Weak::upgrade) else {
            return;
        };
        let Ok((sa, len)) = unix::sockaddr(&name(addr)) else {
            return;
        };
        let b = 1u8;
        // SAFETY: one byte from a live u8 to a live address of `len` bytes.
        unsafe {
            libc::sendto(
                r.fd.as_raw_fd(),
                (&b as *const u8).cast(),
                1,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
    }

    /// Empties the bell, whoever sent what is queued.
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

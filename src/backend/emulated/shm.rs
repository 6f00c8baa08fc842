//! Emulated memory shared between processes (Linux): an unnamed, sealed `memfd` per parent
//! name, and the locks on it that tell who is alive. Elsewhere, and under Miri, memory stays
//! private.
//!
//! - No name: the object is a `memfd` (`memfd_create`), never linked into a file system.
//!   Processes get it from one another over a Unix socket ([`super::rendezvous`]), after
//!   checking each other's user id. It goes away, pages and all, when the last process that
//!   maps it is gone, however that process ends (killed, or exiting with ports still open):
//!   nothing is ever left in `/dev/shm` or anywhere else, and no other user can see, squat or
//!   open it.
//! - Sealed: its creator sizes it and adds `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`
//!   before anyone else sees it, and a joiner refuses an object sealed otherwise (or of
//!   another size or owner). So no process can shrink it under another's mapping (a `SIGBUS`
//!   on the next access) or seal it against writes.
//! - Each process uses an open file description of its own (a joiner reopens what it was
//!   given through `/proc/self/fd`), so locks are per process, as below. The mapping is made
//!   through yet another description: a mapping holds its description open, also in a child
//!   forked without `exec`, and must not keep our locks alive.
//! - Liveness: open-file-description byte locks (`F_OFD_SETLK`) on offsets past the end of
//!   the object: one byte per pipe slot (its users) and one per pipe end (its owner). The
//!   kernel drops them when the last descriptor of the holder's description closes, also when
//!   the process is killed. A child made by `fork()` without `exec` would keep the parent's
//!   descriptions (and so its locks) alive: [`super::fork`] points the child's copies
//!   elsewhere.
//! - Allocation and the pipe table are serialised by `flock` on the object (released on
//!   death too), taken by [`ShmFile::lock_alloc`] with a deadline: a holder that is stopped
//!   (SIGSTOP, a debugger) costs a waiter at most that deadline, and then an error.
//!
//! Trust: a peer process that maps the same memory may crash at any instruction and may be
//! buggy or hostile; whatever it writes there, this process gets no undefined behaviour (every
//! word read from the control area is checked before use), no panic and no unbounded wait. It
//! may corrupt packet bytes and lose packets on the pipes it shares.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::os::cvt;
use crate::region::Region;

/// Lock offsets live here, far past any region.
const LOCK_BASE: i64 = 1 << 40;

/// Lock byte of the users of pipe slot `s`.
pub(super) fn pipe_users(s: usize) -> i64 {
    LOCK_BASE + 1 + s as i64
}

/// Lock byte of the owner of end `e` of pipe slot `s`.
pub(super) fn end_owner(s: usize, e: usize) -> i64 {
    LOCK_BASE + 1024 + 2 * s as i64 + e as i64
}

/// The seals a shared emulated memory carries, exactly.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// The environment variable that turns sharing off (`0`): emulated memory is then private
/// to the process.
pub(super) const SHARED_ENV: &str = "NETMAP_RS_EMU_SHARED";
/// The environment variable naming a namespace: processes see each other's pipes only when
/// they agree on it (tests use it to stay apart).
pub(super) const NS_ENV: &str = "NETMAP_RS_EMU_NS";

/// Whether emulated memory is shared between processes here.
pub(super) fn enabled() -> bool {
    std::env::var(SHARED_ENV).map_or(true, |v| v != "0")
}

/// This process's open file description of a shared memory object.
pub(super) struct ShmFile {
    file: File,
}

impl ShmFile {
    /// A new, zeroed, sealed object of `len` bytes.
    pub(super) fn create(len: usize) -> io::Result<ShmFile> {
        let name = CString::new("netmap-rs-emu").expect("no NUL");
        // SAFETY: name is a valid C string; the result is checked.
        let fd = cvt(unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: fchmod on a descriptor we own.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), 0o600) })?;
        file.set_len(len as u64)?;
        // SAFETY: fcntl(F_ADD_SEALS) with an int argument on a descriptor we own.
        cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) })?;
        Ok(ShmFile { file })
    }

    /// Checks an object another process handed over (`len` bytes, ours, sealed as
    /// [`ShmFile::create`] seals) and opens a description of our own for it; `Err` says what
    /// is wrong with it.
    pub(super) fn adopt(fd: OwnedFd, len: usize) -> Result<ShmFile, String> {
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| format!("fstat: {e}"))?;
        if !meta.file_type().is_file() {
            return Err("not a regular file".into());
        }
        if meta.uid() != super::unix::uid() {
            return Err(format!("owned by uid {}", meta.uid()));
        }
        // SAFETY: fcntl(F_GET_SEALS) on a descriptor we own.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        if seals != SEALS {
            return Err(format!("sealed {seals:#x}, not {SEALS:#x}"));
        }
        if meta.len() != len as u64 {
            return Err(format!(
                "{} bytes where this process asks for {len} (NETMAP_RS_EMU_MEM_MB must agree \
                 between processes)",
                meta.len()
            ));
        }
        let own = ShmFile::reopen(file.as_fd()).map_err(|e| format!("reopen: {e}"))?;
        // The size cannot have changed (sealed), but the description must be the same object.
        let m2 = own.file.metadata().map_err(|e| format!("fstat: {e}"))?;
        if (m2.dev(), m2.ino()) != (meta.dev(), meta.ino()) {
            return Err("reopened another object".into());
        }
        Ok(own)
    }

    /// A new open file description of the object behind `fd` (through `/proc/self/fd`).
    fn reopen(fd: BorrowedFd<'_>) -> io::Result<ShmFile> {
        let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
        // SAFETY: path is a valid C string; the result is checked.
        let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        Ok(ShmFile {
            // SAFETY: fd was just returned by open and is owned by nobody else.
            file: unsafe { File::from_raw_fd(fd) },
        })
    }

    /// Maps the whole object (`len` bytes), shared. The mapping is made through a
    /// description of its own, closed right after: a mapping keeps its description alive
    /// (in a forked child too), and the one holding our locks must close with this process.
    pub(super) fn map(&self, len: usize) -> io::Result<Region> {
        let m = ShmFile::reopen(self.file.as_fd())?;
        Region::map_shared(m.file.as_fd(), len)
    }

    /// The descriptor, to hand to another process.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn flock_op(&self, l_type: libc::c_int, at: i64, cmd: libc::c_int) -> io::Result<libc::flock> {
        // SAFETY: an all-zero flock is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = l_type as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = at;
        fl.l_len = 1;
        loop {
            // SAFETY: fcntl with a pointer to a live flock struct on a descriptor we own.
            let r = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(fl);
        }
    }

    /// Takes (or converts to) a lock on byte `at`. `wait` is refused: every cross-process
    /// wait is bounded (see [`ShmFile::lock_alloc`]).
    pub(super) fn lock(&self, at: i64, l_type: libc::c_int, wait: bool) -> io::Result<()> {
        if wait {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "unbounded lock waits are not used",
            ));
        }
        self.flock_op(l_type, at, libc::F_OFD_SETLK).map(drop)
    }

    /// Tries to take the write lock on byte `at`; `false` when another process holds it.
    pub(super) fn try_lock(&self, at: i64) -> io::Result<bool> {
        match self.lock(at, libc::F_WRLCK, false) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Releases our lock on byte `at`.
    pub(super) fn unlock(&self, at: i64) {
        let _ = self.lock(at, libc::F_UNLCK, false);
    }

    /// Whether another open file description (another process) holds a lock on byte `at`.
    pub(super) fn others_hold(&self, at: i64) -> io::Result<bool> {
        let fl = self.flock_op(libc::F_WRLCK, at, libc::F_OFD_GETLK)?;
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }

    /// Takes the allocation lock (`flock`), waiting until `deadline` at most: `Ok(false)`
    /// when another process still holds it then. Polls with a back-off of 1 to 10 ms (the
    /// lock is held for microseconds at a time), so waiting costs no CPU to speak of.
    pub(super) fn lock_alloc(&self, deadline: Instant) -> io::Result<bool> {
        let mut pause = Duration::from_millis(1);
        loop {
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {}
                _ => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Releases the allocation lock.
    pub(super) fn unlock_alloc(&self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

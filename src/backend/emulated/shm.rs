//! Emulated memory shared between processes: a file under `/dev/shm` per parent name, and the
//! locks that tell who is alive (Linux; elsewhere, and under Miri, memory stays private).
//!
//! - Name: `/dev/shm/netmap-rs.<uid>[.<ns>].<parent>`, created with `O_EXCL`, mode 0600,
//!   owner checked on open.
//! - Liveness: open-file-description byte locks (`F_OFD_SETLK`) on offsets past the end of
//!   the file. The kernel drops them when the last descriptor of the holder closes, also when
//!   it is killed, so a crashed process never holds anything.
//!   - byte [`USERS`]: every process mapping the memory holds a read lock; the creator holds
//!     the write lock while it initialises the header. A process that finds no other holder
//!     is alone: the object is stale (its users crashed) and is replaced, never trusted; the
//!     last one to close removes the file.
//!   - one byte per pipe slot (its users) and one per pipe end (its owner).
//! - Allocation and the pipe table are serialised by `flock` on the file (released on death
//!   too) plus a process-local mutex (`flock` does not exclude threads of one process).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use crate::error::Error;
use crate::region::Region;

/// Lock offsets live here, far past any region.
const LOCK_BASE: i64 = 1 << 40;
/// Lock byte held by every user of the memory.
pub(super) const USERS: i64 = LOCK_BASE;

/// Lock byte of the users of pipe slot `s`.
pub(super) fn pipe_users(s: usize) -> i64 {
    LOCK_BASE + 1 + s as i64
}

/// Lock byte of the owner of end `e` of pipe slot `s`.
pub(super) fn end_owner(s: usize, e: usize) -> i64 {
    LOCK_BASE + 1024 + 2 * s as i64 + e as i64
}

/// An open, mapped shared memory object.
pub(super) struct ShmFile {
    file: File,
    path: CString,
}

/// The environment variable that turns sharing off (`0`): emulated memory is then private
/// to the process, as before.
pub(super) const SHARED_ENV: &str = "NETMAP_RS_EMU_SHARED";
/// The environment variable naming a namespace: processes see each other's pipes only when
/// they agree on it (tests use it to stay apart).
pub(super) const NS_ENV: &str = "NETMAP_RS_EMU_NS";

/// Whether emulated memory is shared between processes here.
pub(super) fn enabled() -> bool {
    cfg!(all(target_os = "linux", not(miri)))
        && std::env::var(SHARED_ENV).map_or(true, |v| v != "0")
        && std::path::Path::new("/dev/shm").is_dir()
}

fn sanitize(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// The object's path for parent name `parent`.
pub(super) fn path_for(parent: &str) -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let ns = std::env::var(NS_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| format!(".{}", sanitize(&v)))
        .unwrap_or_default();
    format!("/dev/shm/netmap-rs.{uid}{ns}.{}", sanitize(parent))
}

/// What `open_or_create` found.
pub(super) enum Opened {
    /// A new object: the caller initialises it, then calls [`ShmFile::ready`].
    Created(ShmFile, Arc<Region>),
    /// A live object shared with other processes.
    Joined(ShmFile, Arc<Region>),
}

impl ShmFile {
    /// Opens the object at `path` (of `len` bytes), replacing a stale one.
    pub(super) fn open_or_create(path: &str, len: usize) -> Result<Opened, Error> {
        let cpath = CString::new(path).map_err(|_| Error::BindFail("NUL in a pipe name".into()))?;
        for _ in 0..100 {
            // SAFETY: cpath is a valid C string; the result is checked.
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o600 as libc::c_uint,
                )
            };
            if fd >= 0 {
                // SAFETY: fd was just returned by open and is owned by nobody else.
                let shm = ShmFile {
                    file: unsafe { File::from_raw_fd(fd) },
                    path: cpath.clone(),
                };
                // Held until the header is written: joiners wait for it.
                shm.lock(USERS, libc::F_WRLCK, false)?;
                shm.file.set_len(len as u64)?;
                let region = Arc::new(Region::map_shared(shm.file.as_fd(), len)?);
                return Ok(Opened::Created(shm, region));
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::BindFail(format!(
                    "cannot create the shared emulated memory {path}: {e}; set {SHARED_ENV}=0 \
                     for process-private pipes"
                )));
            }
            // SAFETY: as above.
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            };
            if fd < 0 {
                continue; // removed meanwhile: try to create it again
            }
            // SAFETY: fd was just returned by open and is owned by nobody else.
            let shm = ShmFile {
                file: unsafe { File::from_raw_fd(fd) },
                path: cpath.clone(),
            };
            let meta = shm.file.metadata()?;
            // SAFETY: getuid has no preconditions.
            if meta.uid() != unsafe { libc::getuid() } || meta.mode() & 0o077 != 0 {
                return Err(Error::PermissionDenied(format!(
                    "{path} belongs to another user or is readable by others; remove it"
                )));
            }
            // Waits while a creator initialises the object.
            shm.lock(USERS, libc::F_RDLCK, true)?;
            if !shm.same_as_path() {
                continue; // unlinked by its last user meanwhile
            }
            if !shm.others_hold(USERS)? || meta.len() != len as u64 {
                if shm.others_hold(USERS)? {
                    return Err(Error::BindFail(format!(
                        "{path} is in use with a size of {} bytes, this process asks for {len} \
                         (NETMAP_RS_EMU_MEM_MB must agree between processes)",
                        meta.len()
                    )));
                }
                // Nobody alive uses it: what a crashed run left behind. Replace it.
                tracing::warn!(path, "replacing a stale emulated memory object");
                shm.unlink_if_same();
                continue;
            }
            let region = Arc::new(Region::map_shared(shm.file.as_fd(), len)?);
            return Ok(Opened::Joined(shm, region));
        }
        Err(Error::BindFail(format!(
            "{path}: could not open or create the shared emulated memory (it kept changing)"
        )))
    }

    /// The creator has written the header: becomes an ordinary user.
    pub(super) fn ready(&self) -> io::Result<()> {
        self.lock(USERS, libc::F_RDLCK, false)
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

    /// Takes (or converts to) a lock on byte `at`; `wait` blocks until it is free.
    pub(super) fn lock(&self, at: i64, l_type: libc::c_int, wait: bool) -> io::Result<()> {
        let cmd = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        self.flock_op(l_type, at, cmd).map(drop)
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

    /// Serialises allocation between processes (pair with [`ShmFile::unlock_alloc`]).
    pub(super) fn lock_alloc(&self) {
        // SAFETY: flock on a descriptor we own.
        while unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
    }

    pub(super) fn unlock_alloc(&self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }

    fn same_as_path(&self) -> bool {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: path is a valid C string and st a live stat struct.
        let r = unsafe { libc::stat(self.path.as_ptr(), &mut st) };
        let Ok(meta) = self.file.metadata() else {
            return false;
        };
        r == 0 && st.st_ino == meta.ino() && st.st_dev == meta.dev()
    }

    fn unlink_if_same(&self) {
        if self.same_as_path() {
            // SAFETY: path is a valid C string.
            unsafe { libc::unlink(self.path.as_ptr()) };
        }
    }

    /// Closes this process's use: the last user (no other lock holder) removes the file.
    pub(super) fn close(self) {
        self.unlock(USERS);
        if let Ok(true) = self.try_lock(USERS) {
            self.unlink_if_same();
        }
        // Dropping the file releases whatever lock remains.
    }
}

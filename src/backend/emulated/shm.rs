//! Emulated memory shared between processes: a file under `/dev/shm` per parent name, and the
//! locks that tell who is alive (Linux; elsewhere, and under Miri, memory stays private).
//!
//! - Name: `/dev/shm/netmap-rs.<uid>[.<ns>].<parent>`, mode 0600, owner and mode checked
//!   on open. Built unnamed (`O_TMPFILE`) and named once initialised (`linkat`, exclusive
//!   like `O_EXCL`).
//! - Liveness: open-file-description byte locks (`F_OFD_SETLK`) on offsets past the end of
//!   the file. The kernel drops them when the last descriptor of the holder closes, also when
//!   it is killed, so a crashed process never holds anything.
//!   - byte [`USERS`]: every process mapping the memory holds a read lock (the creator from
//!     before the object has a name). A process that finds no other holder is alone: the
//!     object is stale (its users crashed) and is replaced, never trusted; the last one to
//!     close removes the file.
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

/// Whether `/dev/shm` has room for a new object of `len` bytes. Objects are sparse, but a
/// store to a page tmpfs cannot provide kills the process (SIGBUS), so a new object is only
/// made where the whole of it would fit (small container `/dev/shm`s stay private).
pub(super) fn room_for(len: usize) -> bool {
    let dir = CString::new("/dev/shm").expect("no NUL");
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: dir is a valid C string and st a live statvfs struct.
    if unsafe { libc::statvfs(dir.as_ptr(), &mut st) } != 0 {
        return false;
    }
    (st.f_bavail as u128) * (st.f_frsize as u128) >= len as u128
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
    /// A new object, initialised by the caller's `init` before anyone could see it.
    Created(ShmFile, Arc<Region>),
    /// A live object shared with other processes.
    Joined(ShmFile, Arc<Region>),
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl ShmFile {
    /// Opens the object at `path` (of `len` bytes), replacing a stale one, or creates it.
    ///
    /// A new object is built unnamed (`O_TMPFILE`), initialised by `init`, and only then
    /// given its name (`linkat`, which fails if another process published first): nobody
    /// ever maps a half-initialised object, and a creator killed before publishing leaves
    /// nothing behind. Its creator holds the users lock from before publication.
    pub(super) fn open_or_create(
        path: &str,
        len: usize,
        init: &dyn Fn(&Arc<Region>),
    ) -> Result<Opened, Error> {
        let cpath = CString::new(path).map_err(|_| Error::BindFail("NUL in a pipe name".into()))?;
        let fail = |what: &str, e: io::Error| {
            Error::BindFail(format!(
                "{what} the shared emulated memory {path}: {e}; set {SHARED_ENV}=0 for \
                 process-private pipes"
            ))
        };
        for _ in 0..1000 {
            // SAFETY: cpath is a valid C string; the result is checked.
            let fd = unsafe {
                libc::open(
                    cpath.as_ptr(),
                    libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            };
            if fd >= 0 {
                let shm = ShmFile {
                    // SAFETY: fd was just returned by open and is owned by nobody else.
                    file: unsafe { File::from_raw_fd(fd) },
                    path: cpath.clone(),
                };
                if let Some(region) = shm.join(path, len)? {
                    return Ok(Opened::Joined(shm, region));
                }
                continue;
            }
            let e = io::Error::last_os_error();
            if errno(&e) != libc::ENOENT {
                return Err(fail("cannot open", e));
            }
            let shm = Self::create_unnamed(&cpath).map_err(|e| fail("cannot create", e))?;
            shm.file.set_len(len as u64)?;
            shm.lock(USERS, libc::F_RDLCK, false)?;
            let region = Arc::new(Region::map_shared(shm.file.as_fd(), len)?);
            init(&region);
            match shm.publish() {
                Ok(()) => return Ok(Opened::Created(shm, region)),
                Err(e) if errno(&e) == libc::EEXIST => continue, // another process was first
                Err(e) => return Err(fail("cannot name", e)),
            }
        }
        Err(Error::BindFail(format!(
            "{path}: could not open or create the shared emulated memory (it kept changing)"
        )))
    }

    /// Joins an existing object: `None` when it vanished or was stale (and was removed).
    fn join(&self, path: &str, len: usize) -> Result<Option<Arc<Region>>, Error> {
        let meta = self.file.metadata()?;
        // SAFETY: getuid has no preconditions.
        if meta.uid() != unsafe { libc::getuid() } || meta.mode() & 0o077 != 0 {
            return Err(Error::PermissionDenied(format!(
                "{path} belongs to another user or is accessible to others; remove it"
            )));
        }
        // A last user removing the object holds the write lock for a moment.
        if self.lock(USERS, libc::F_RDLCK, false).is_err() {
            std::thread::yield_now();
            return Ok(None);
        }
        if !self.same_as_path() {
            return Ok(None); // removed by its last user meanwhile
        }
        if !self.others_hold(USERS)? {
            // Nobody alive uses it: what a crashed run left behind. Replace it, unread.
            tracing::warn!(path, "replacing a stale emulated memory object");
            self.unlink_if_same();
            return Ok(None);
        }
        if meta.len() != len as u64 {
            return Err(Error::BindFail(format!(
                "{path} is in use with a size of {} bytes, this process asks for {len} \
                 (NETMAP_RS_EMU_MEM_MB must agree between processes)",
                meta.len()
            )));
        }
        Ok(Some(Arc::new(Region::map_shared(self.file.as_fd(), len)?)))
    }

    fn create_unnamed(cpath: &CString) -> io::Result<ShmFile> {
        let dir = CString::new("/dev/shm").expect("no NUL");
        // SAFETY: dir is a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                dir.as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        crate::os::cvt(fd)?;
        Ok(ShmFile {
            // SAFETY: fd was just returned by open and is owned by nobody else.
            file: unsafe { File::from_raw_fd(fd) },
            path: cpath.clone(),
        })
    }

    /// Gives the unnamed object its name; `EEXIST` when the name is taken.
    fn publish(&self) -> io::Result<()> {
        let proc =
            CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd())).expect("no NUL");
        // SAFETY: both paths are valid C strings; the result is checked.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                self.path.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        crate::os::cvt(r)?;
        Ok(())
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

//! How processes of one user find the shared emulated memory of a parent name (Linux): a
//! rendezvous socket per parent name, served by every process that uses the memory.
//!
//! - Name: the abstract Unix address `netmap-rs.<uid>.mem.<parent>.<k>` (with a namespace,
//!   `netmap-rs.<uid>.ns.<ns>.<parent>.<k>`; `<parent>` and `<ns>` escaped), for candidates
//!   `k` in `0..`[`CANDIDATES`]. Abstract names have no file: the name vanishes with the last
//!   descriptor of its socket, so nothing outlives the processes that use it.
//! - The first process binds a listening stream socket there, after it has built and
//!   initialised the memory ([`super::shm`]): whoever can connect finds a complete memory.
//!   Every process that joins gets, in one message (`SCM_RIGHTS`), the memory, that same
//!   listening socket and the memory's ringer ([`super::wake`]), and serves the name from then
//!   on (a thread per shared memory, [`Server`]). So the creator may exit while the others keep
//!   going, and the name means one memory for as long as anyone uses it: there is no stale
//!   object to replace, and no window in which two processes map different memories for the
//!   same name (a joiner either gets the live memory from a live user, or finds no listener
//!   and makes the memory itself, and then `bind` decides between two makers).
//! - Credentials both ways (`SO_PEERCRED`): a joiner only talks to a listener of its own user
//!   id, a server only answers clients of its own user id. Another user bound to a candidate
//!   name (a squatter) is skipped and the next candidate tried; when all are taken, the open
//!   fails with [`Error::PermissionDenied`] naming the cause and the fix. Another user never
//!   gets a descriptor from us and never hands us one.
//! - What a joiner receives is checked before use: the memory's owner, size and seals, the
//!   listener's type and name, the ringer's type. Every wait is bounded by
//!   [`PEER_TIMEOUT`]: users that are all stopped make a joiner fail with
//!   [`Error::PortBusy`], not hang.
//!
//! Trust: same as [`super::shm`]; a same-user peer can hand over a wrong memory and so lose
//! the packets of the pipes it shares, nothing more.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fork;
use super::shm::{ShmFile, NS_ENV, SHARED_ENV};
use super::unix::{self, uid};
use super::wake::Ringer;
use super::PEER_TIMEOUT;
use crate::error::Error;
use crate::os::{cvt, poll_fds};
use crate::region::Region;

/// How many names are tried per parent name before giving up on squatters.
pub(super) const CANDIDATES: usize = 8;

const MAGIC: &[u8; 8] = b"NMRSRDV2";

/// What this process holds of a shared memory besides the mapping.
pub(super) struct Link {
    /// Our own open file description of the memory (its locks are ours).
    pub(super) shm: ShmFile,
    listener: OwnedFd,
    pub(super) ringer: Arc<Ringer>,
    key: Vec<u8>,
    len: usize,
}

impl Link {
    fn new(shm: ShmFile, listener: OwnedFd, ringer: Ringer, key: Vec<u8>, len: usize) -> Link {
        for fd in [
            shm.fd().as_raw_fd(),
            listener.as_raw_fd(),
            ringer.fd().as_raw_fd(),
        ] {
            fork::protect(fd);
        }
        Link {
            shm,
            listener,
            ringer: Arc::new(ringer),
            key,
            len,
        }
    }

    fn reply(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(20 + self.key.len());
        m.extend_from_slice(MAGIC);
        m.extend_from_slice(&(self.len as u64).to_le_bytes());
        m.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        m.extend_from_slice(&self.key);
        m
    }

    /// Answers one client: the memory, the listener and the ringer, to our own user only.
    fn answer(&self, c: OwnedFd) {
        match unix::peer_cred(c.as_fd()) {
            Ok((u, _)) if u == uid() => {}
            Ok((u, pid)) => {
                tracing::debug!(uid = u, pid, "refused a rendezvous client of another user");
                return;
            }
            Err(_) => return,
        }
        let fds = [self.shm.fd(), self.listener.as_fd(), self.ringer.fd()];
        if let Err(e) = unix::send_fds(c.as_fd(), &self.reply(), &fds) {
            tracing::debug!(error = %e, "a rendezvous client went away");
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for fd in [
            self.shm.fd().as_raw_fd(),
            self.listener.as_raw_fd(),
            self.ringer.fd().as_raw_fd(),
        ] {
            fork::release(fd);
        }
    }
}

/// Escapes everything but `[A-Za-z0-9_-]` as `%xx`.
fn escape(s: &str) -> String {
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

/// The namespace (`NETMAP_RS_EMU_NS`), if set.
fn ns() -> Option<String> {
    std::env::var(NS_ENV).ok().filter(|v| !v.is_empty())
}

/// What identifies the memory of `parent`: user, namespace and parent name.
fn key(parent: &str) -> Vec<u8> {
    format!("{}\0{}\0{parent}", uid(), ns().unwrap_or_default()).into_bytes()
}

/// The candidate names for `parent`, in order. A name too long for an abstract address is
/// replaced by a hash of it (the reply's key tells two memories apart).
pub(super) fn candidates(parent: &str) -> Vec<Vec<u8>> {
    let base = match ns() {
        Some(ns) => format!("netmap-rs.{}.ns.{}.{}", uid(), escape(&ns), escape(parent)),
        None => format!("netmap-rs.{}.mem.{}", uid(), escape(parent)),
    };
    let base = if base.len() + 3 > unix::NAME_MAX {
        // FNV-1a, 64 bits: only to shorten; equal hashes are told apart by the key.
        let h = base.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("netmap-rs.{}.hash.{h:016x}", uid())
    } else {
        base
    };
    (0..CANDIDATES)
        .map(|k| format!("{base}.{k}").into_bytes())
        .collect()
}

/// A shared memory found or made: the link, the mapping, and whether we made it.
pub(super) struct Found {
    pub(super) link: Arc<Link>,
    pub(super) region: Arc<Region>,
    pub(super) created: bool,
}

/// What one connection to a candidate gave.
enum Answer {
    Memory(Found),
    /// The server hung up without an answer (refused us, or its process is closing).
    Closed,
    /// A memory of another key (a hashed name's collision, or a confused peer).
    Other(String),
}

fn is(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}

fn io_err(what: &str, parent: &str, e: io::Error) -> Error {
    Error::BindFail(format!(
        "{parent}: {what} for the shared emulated memory failed: {e}; set {SHARED_ENV}=0 for \
         process-private pipes"
    ))
}

/// Joins the shared memory of `parent` (`len` bytes) from a live user, or makes it (`init`
/// writes its control area before anyone can connect). Bounded by [`PEER_TIMEOUT`].
pub(super) fn join_or_create(
    parent: &str,
    len: usize,
    init: &dyn Fn(&Arc<Region>),
) -> Result<Found, Error> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    let key = key(parent);
    let mut fresh: Option<(ShmFile, Arc<Region>, Ringer)> = None;
    let mut foreign = Vec::new();
    let mut silent = 0;
    for name in candidates(parent) {
        let mut refused_since: Option<Instant> = None;
        loop {
            let s = unix::socket(libc::SOCK_STREAM).map_err(|e| io_err("a socket", parent, e))?;
            match unix::connect(s.as_fd(), &name) {
                Ok(()) => {
                    let (u, pid) =
                        unix::peer_cred(s.as_fd()).map_err(|e| io_err("SO_PEERCRED", parent, e))?;
                    if u != uid() {
                        tracing::warn!(
                            uid = u,
                            pid,
                            name = %String::from_utf8_lossy(&name),
                            "a rendezvous name of the emulated memory is held by another user: \
                             skipped"
                        );
                        foreign.push(u);
                        break;
                    }
                    match fetch(s.as_fd(), &name, &key, len, deadline, parent)? {
                        Answer::Memory(f) => return Ok(f),
                        Answer::Other(why) => {
                            tracing::warn!(why, "a rendezvous name serves another memory");
                            silent += 1;
                            break;
                        }
                        Answer::Closed => {}
                    }
                }
                Err(e) if is(&e, libc::ECONNREFUSED) || is(&e, libc::ENOENT) => {
                    // Nobody listens here: make the memory (once) and try to serve it here.
                    if fresh.is_none() {
                        fresh = Some(make(len, init).map_err(|e| io_err("creation", parent, e))?);
                    }
                    let l = unix::socket(libc::SOCK_STREAM)
                        .map_err(|e| io_err("a socket", parent, e))?;
                    match unix::bind(l.as_fd(), Some(&name)) {
                        Ok(()) => {
                            unix::listen(l.as_fd()).map_err(|e| io_err("listen", parent, e))?;
                            let (shm, region, ringer) = fresh.take().expect("made above");
                            let link = Link::new(shm, l, ringer, key, len);
                            return Ok(Found {
                                link: Arc::new(link),
                                region,
                                created: true,
                            });
                        }
                        Err(e) if is(&e, libc::EADDRINUSE) => {
                            // Bound but not listening: another maker between its bind and
                            // listen (microseconds), or a socket that never will.
                            let t = *refused_since.get_or_insert_with(Instant::now);
                            if t.elapsed() > Duration::from_millis(200) {
                                silent += 1;
                                break;
                            }
                        }
                        Err(e) => return Err(io_err("bind", parent, e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {} // queue full: again
                Err(e) => return Err(io_err("connect", parent, e)),
            }
            if Instant::now() >= deadline {
                return Err(no_answer(parent));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut uids = foreign.clone();
    uids.sort_unstable();
    uids.dedup();
    Err(Error::PermissionDenied(format!(
        "{parent}: all {CANDIDATES} rendezvous names of its shared emulated memory \
         (netmap-rs.{}.…) are taken, {} by another user (uid {uids:?}) and {silent} by \
         sockets that do not answer as a memory of this user; set NETMAP_RS_EMU_NS to a \
         value of your own (the same in every process of the pipe) or use another parent \
         name; `ss -xlp | grep netmap-rs` shows who holds them",
        uid(),
        foreign.len()
    )))
}

fn no_answer(parent: &str) -> Error {
    Error::PortBusy(format!(
        "{parent}: the processes using its shared emulated memory did not answer within \
         {PEER_TIMEOUT:?} (stopped with SIGSTOP, in a debugger, or overloaded?); resume them \
         and retry, or set NETMAP_RS_EMU_NS to use other names"
    ))
}

/// Reads a server's answer on `s` and checks everything it hands over.
fn fetch(
    s: BorrowedFd<'_>,
    name: &[u8],
    key: &[u8],
    len: usize,
    deadline: Instant,
    parent: &str,
) -> Result<Answer, Error> {
    let mut buf = vec![0u8; 64 + key.len().max(512)];
    let (n, mut fds) = match unix::recv_fds(s, &mut buf, deadline) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(no_answer(parent)),
        Err(e) if is(&e, libc::ECONNRESET) => return Ok(Answer::Closed),
        Err(e) => return Err(io_err("the rendezvous", parent, e)),
    };
    if n == 0 {
        return Ok(Answer::Closed);
    }
    let bad = |why: String| {
        Error::BadLayout(format!(
            "{parent}: a process of this user answered the rendezvous of the shared emulated \
             memory with {why}; end the process holding `@{}` (`ss -xlp`), or set \
             NETMAP_RS_EMU_NS to use other names",
            String::from_utf8_lossy(name)
        ))
    };
    let m = &buf[..n];
    if m.len() < 20 || &m[..8] != MAGIC {
        return Err(bad("a message of another protocol".into()));
    }
    let their_len = u64::from_le_bytes(m[8..16].try_into().expect("8 bytes"));
    let klen = u32::from_le_bytes(m[16..20].try_into().expect("4 bytes")) as usize;
    if m.len() != 20 + klen || &m[20..] != key {
        return Ok(Answer::Other("the key differs".into()));
    }
    if their_len != len as u64 {
        return Err(Error::BindFail(format!(
            "{parent}: its shared emulated memory is in use with a size of {their_len} bytes, \
             this process asks for {len} (NETMAP_RS_EMU_MEM_MB must agree between processes)"
        )));
    }
    if fds.len() != 3 {
        return Err(bad(format!("{} descriptors instead of 3", fds.len())));
    }
    let ringer = fds.pop().expect("3");
    let listener = fds.pop().expect("2");
    let memory = fds.pop().expect("1");
    let listener_ok = unix::is_socket(listener.as_fd(), libc::SOCK_STREAM, true)
        && unix::name_of(listener.as_fd()).is_ok_and(|n| n == name);
    if !listener_ok {
        return Err(bad(
            "a socket that is not the listener it answered on".into()
        ));
    }
    let ringer = Ringer::adopt(ringer).ok_or_else(|| bad("a ringer that is not one".into()))?;
    let shm = ShmFile::adopt(memory, len).map_err(|why| bad(format!("a memory object {why}")))?;
    let region = Arc::new(shm.map(len).map_err(|e| io_err("mmap", parent, e))?);
    let link = Link::new(shm, listener, ringer, key.to_vec(), len);
    Ok(Answer::Memory(Found {
        link: Arc::new(link),
        region,
        created: false,
    }))
}

/// A new memory of `len` bytes, mapped and initialised, with its ringer.
fn make(len: usize, init: &dyn Fn(&Arc<Region>)) -> io::Result<(ShmFile, Arc<Region>, Ringer)> {
    let shm = ShmFile::create(len)?;
    let region = Arc::new(shm.map(len)?);
    init(&region);
    Ok((shm, region, Ringer::new()?))
}

/// Serves a memory's rendezvous name from this process, until dropped.
pub(super) struct Server {
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts answering clients of `link`'s name (a thread).
    pub(super) fn start(link: Arc<Link>) -> io::Result<Server> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: a fresh descriptor owned by nobody else.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        let stop2 = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("netmap-rs-emu-serve".into())
            .spawn(move || serve(&link, stop2.as_fd()))?;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

/// The server thread: waits for clients or the stop signal; every step is non-blocking.
fn serve(link: &Link, stop: BorrowedFd<'_>) {
    loop {
        let r = match poll_fds(
            &[(stop, libc::POLLIN), (link.listener.as_fd(), libc::POLLIN)],
            None,
        ) {
            Ok(r) => r,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if r[0] != 0 {
            return;
        }
        loop {
            match unix::accept(link.listener.as_fd()) {
                Ok(Some(c)) => link.answer(c),
                Ok(None) => break,
                Err(e) => {
                    // Out of descriptors, say: the client stays queued; do not spin on it.
                    tracing::warn!(error = %e, "accepting a rendezvous client failed");
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            // The thread only polls and makes non-blocking calls: it ends at once.
            let _ = t.join();
        }
    }
}

//! Helpers of the cross-process tests that bring in misbehaving processes
//! (`tests/xproc_trust.rs`, another user; `tests/xproc_faults.rs`, peers killed, frozen or
//! forked): the test binary re-runs itself as the other process (`NETMAP_RS_XPROC_ROLE`
//! selects what it does, through [`child`], called from each binary's `child` test).
//! "Another user" is uid 65534 through `setpriv --reuid 65534 --regid 65534 --clear-groups`,
//! running a copy of the test binary that uid 65534 can execute ([`Foreign`]); those tests
//! print SKIPPED and pass where that is impossible (not root, no `setpriv`).
//!
//! Every child is held by a [`Kid`], which kills it (and resumes it first, when stopped) on
//! drop, so a failing test leaves no process behind.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netmap_rs::backend::BackendChoice;
use netmap_rs::prelude::*;

pub const ROLE: &str = "NETMAP_RS_XPROC_ROLE";
pub const NAME: &str = "NETMAP_RS_XPROC_NAME";
pub const VICTIM: &str = "NETMAP_RS_XPROC_VICTIM";
pub const LEN: usize = 64;
/// The longest a cross-process wait of the emulated backend may last (its documented bound,
/// `PEER_TIMEOUT`, 2 s) plus room for a loaded machine.
pub const BOUND: Duration = Duration::from_secs(4);

pub fn open(name: &str) -> Netmap {
    try_open(name).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

pub fn try_open(name: &str) -> Result<Netmap, Error> {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(64)
        .build()
}

pub fn shared() -> bool {
    let on = std::path::Path::new("/dev/shm").is_dir()
        && std::env::var("NETMAP_RS_EMU_SHARED").map_or(true, |v| v != "0");
    if !on {
        eprintln!("SKIPPED: emulated memory is not shared here");
    }
    on
}

pub fn unique(tag: &str) -> String {
    format!("xt{tag}{}", std::process::id())
}

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Entries of `/dev/shm` that belong to parent name `parent` (of any design so far).
pub fn shm_entries(parent: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("netmap-rs.") && n.ends_with(&format!(".{parent}")))
        .collect()
}

/// Abstract Unix socket names bound right now (from `/proc/net/unix`), without the `@`.
pub fn abstract_names() -> Vec<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@'))
        .map(str::to_string)
        .collect()
}

/// The rendezvous names the backend tries for `parent`, in order (see `emulated::rendezvous`).
pub fn rendezvous_names(victim: u32, parent: &str) -> Vec<String> {
    (0..8)
        .map(|k| format!("netmap-rs.{victim}.mem.{parent}.{k}"))
        .collect()
}

pub fn sockaddr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path[1..].iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (sa, len as libc::socklen_t)
}

pub fn socket(ty: libc::c_int) -> OwnedFd {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Binds a listening stream socket to abstract `name`; `None` when the name is taken.
pub fn squat(name: &str) -> Option<OwnedFd> {
    let fd = socket(libc::SOCK_STREAM);
    let (sa, len) = sockaddr(name);
    // SAFETY: sa is a live sockaddr_un of at least len bytes.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    // SAFETY: listen on a descriptor we own.
    (r == 0 && unsafe { libc::listen(fd.as_raw_fd(), 16) } == 0).then_some(fd)
}

/// Sends one byte to every abstract datagram name starting with `prefix`; returns (names
/// tried, sends the kernel accepted).
pub fn ring_all(ours: &dyn Fn(&str) -> bool) -> (usize, usize) {
    let tx = socket(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK);
    let (mut tried, mut sent) = (0, 0);
    for n in abstract_names().iter().filter(|n| ours(n)) {
        let (sa, len) = sockaddr(n);
        // SAFETY: one byte from a live array to a live address.
        let r = unsafe {
            libc::sendto(
                tx.as_raw_fd(),
                [1u8].as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        tried += 1;
        if r == 1 {
            sent += 1;
        }
    }
    (tried, sent)
}

/// Connects to every abstract stream name starting with `prefix` and counts the
/// descriptors that arrive within 200 ms.
pub fn fetch_all(ours: &dyn Fn(&str) -> bool) -> (usize, usize) {
    let (mut tried, mut fds) = (0, 0);
    for n in abstract_names().iter().filter(|n| ours(n)) {
        let s = socket(libc::SOCK_STREAM);
        let (sa, len) = sockaddr(n);
        // SAFETY: sa is a live sockaddr_un of at least len bytes.
        let r =
            unsafe { libc::connect(s.as_raw_fd(), (&sa as *const libc::sockaddr_un).cast(), len) };
        if r != 0 {
            continue;
        }
        tried += 1;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a live timeval of the size given.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut buf = [0u8; 256];
        let mut cbuf = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: msg points at live buffers of the sizes it states.
        if unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } > 0 {
            // SAFETY: walking the control messages the kernel just wrote into cbuf.
            let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !c.is_null() {
                // SAFETY: c points at a control message header inside cbuf.
                let h = unsafe { &*c };
                if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                    // SAFETY: c is a valid header (see above).
                    let data = unsafe { libc::CMSG_LEN(0) } as usize;
                    fds += (h.cmsg_len as usize - data) / 4;
                }
                // SAFETY: as above.
                c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
            }
        }
    }
    (tried, fds)
}

/// A child process, killed (after a SIGCONT, in case it was stopped) when dropped.
pub struct Kid(pub Child);

impl Kid {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid (not yet reaped: we hold the Child).
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Reads stdout until a line containing `prefix`; returns it from `prefix` on.
    pub fn line(&mut self, prefix: &str) -> String {
        let out = self.0.stdout.as_mut().unwrap();
        let mut r = BufReader::new(out);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                panic!("child ended before printing {prefix:?}");
            }
            if let Some(at) = line.find(prefix) {
                return line[at..].trim().to_string();
            }
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills a plain pid (a grandchild) on drop.
pub struct Pid(pub i32);

impl Drop for Pid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test made; it may already be gone.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

pub fn spawn(role: &str, name: &str) -> Kid {
    spawn_as(&std::env::current_exe().unwrap(), None, role, name)
}

/// Runs `exe` (this test binary, or a copy) as the child `role`, as uid `as_uid` if given.
pub fn spawn_as(exe: &std::path::Path, as_uid: Option<u32>, role: &str, name: &str) -> Kid {
    let args = ["--exact", "child", "--nocapture", "--test-threads", "1"];
    let mut c = match as_uid {
        None => Command::new(exe),
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                &u.to_string(),
                "--regid",
                &u.to_string(),
                "--clear-groups",
            ])
            .arg(exe);
            c
        }
    };
    c.args(args)
        .env(ROLE, role)
        .env(NAME, name)
        .env(VICTIM, uid().to_string())
        .stdout(Stdio::piped())
        .current_dir("/");
    Kid(c.spawn().unwrap())
}

/// Another user (uid 65534) running a copy of this binary it can execute; `None` (and
/// SKIPPED printed) where that cannot be arranged.
pub struct Foreign {
    dir: tempfile::TempDir,
}

impl Foreign {
    pub fn new() -> Option<Foreign> {
        use std::os::unix::fs::PermissionsExt;
        // A `setpriv` that can change the uid (busybox's, in the netmap guest, cannot).
        let ok = uid() == 0
            && Command::new("setpriv")
                .args([
                    "--reuid",
                    "65534",
                    "--regid",
                    "65534",
                    "--clear-groups",
                    "true",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: needs root and a setpriv that changes the uid (util-linux) to run a helper as another user");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("nmrs-foreign")
            .tempdir()
            .ok()?;
        let exe = dir.path().join("helper");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).ok()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).ok()?;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).ok()?;
        Some(Foreign { dir })
    }

    pub fn spawn(&self, role: &str, name: &str) -> Kid {
        spawn_as(&self.dir.path().join("helper"), Some(65534), role, name)
    }
}

/// CPU time this thread has used.
pub fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Whether `fd` is readable right now.
pub fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents & libc::POLLIN != 0
}

/// One frame from `a` to `b` (both open), within `BOUND`.
pub fn one_frame(a: &Netmap, b: &Netmap) -> Result<(), String> {
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(&[7; LEN]).map_err(|e| e.to_string())?;
    tx.sync().map_err(|e| e.to_string())?;
    let mut rx = b.rx_ring(0).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < BOUND {
        rx.sync().map_err(|e| e.to_string())?;
        if let Some(f) = rx.recv() {
            return if f.payload() == [7; LEN] {
                Ok(())
            } else {
                Err("wrong bytes".into())
            };
        }
        b.wait_readable(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
    }
    Err("no frame arrived".into())
}

/// The other process: what it does is chosen by the parent (no role: nothing).
pub fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).unwrap();
    let victim: u32 = std::env::var(VICTIM).unwrap().parse().unwrap();
    match role.as_str() {
        "hold" => {
            let _nm = open(&name);
            println!("READY");
            std::thread::sleep(Duration::from_secs(60));
        }
        "exit-with-thread" => {
            // The port lives in a thread nobody joins; the process ends normally under it.
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _nm = open(&name);
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_secs(60));
            });
            rx.recv().unwrap();
            println!("READY");
        }
        "recv-one" => {
            // Opens its end, says so, and waits (bounded) for one frame.
            let nm = open(&name);
            let mut rx = nm.rx_ring(0).unwrap();
            println!("READY");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                rx.sync().unwrap();
                if let Some(f) = rx.recv() {
                    println!("GOT {}", f.payload()[0]);
                    return;
                }
                nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
            }
            println!("GOT nothing");
        }
        "echo" => {
            // Receives frames and counts them until killed.
            let nm = open(&name);
            let mut rx = nm.rx_ring(0).unwrap();
            println!("READY");
            loop {
                rx.sync().unwrap();
                while rx.recv().is_some() {}
                nm.wait_readable(Some(Duration::from_millis(50))).unwrap();
            }
        }
        "fork-hold" => {
            let _nm = open(&name);
            // SAFETY: the child of fork only calls pause(2), async-signal-safe.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                loop {
                    // SAFETY: pause has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            println!("READY {pid}");
            std::thread::sleep(Duration::from_secs(60));
        }
        "foreign-squat" => {
            // Another user takes the names: the old `/dev/shm` object (a file, and a
            // symlink for `<name>2`), and the first rendezvous name, where it hands out a
            // memfd of its own to whoever connects.
            let dir = "/dev/shm";
            let _ = std::fs::write(format!("{dir}/netmap-rs.{victim}.{name}"), [0xa5; 4096]);
            let _ = std::os::unix::fs::symlink(
                "/etc/passwd",
                format!("{dir}/netmap-rs.{victim}.{name}2"),
            );
            let l = squat(&rendezvous_names(victim, &name)[0]).expect("squat");
            println!("READY");
            serve_junk(&l);
        }
        "foreign-squat-all" => {
            let ls: Vec<_> = rendezvous_names(victim, &name)
                .iter()
                .map(|n| squat(n).expect("squat"))
                .collect();
            println!("READY {}", ls.len());
            std::thread::sleep(Duration::from_secs(60));
        }
        "foreign-ring" => {
            let (tried, sent) = ring_all(&|n| victims_socket(victim, &name, n));
            println!("RANG {tried} {sent}");
        }
        "foreign-fetch" => {
            let (tried, fds) = fetch_all(&|n| victims_socket(victim, &name, n));
            println!("FETCHED {tried} {fds}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Whether abstract name `n` belongs to the victim: this helper's parent process (setpriv
/// runs it in place), the test (its wake-up sockets, named by pid in either naming the
/// backend had) or its memory of parent `parent` (the rendezvous names). Other processes of
/// the victim's user on this machine are left alone.
fn victims_socket(victim: u32, parent: &str, n: &str) -> bool {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    n.starts_with(&format!("netmap-rs.{victim}.bell.{ppid:x}."))
        || n.starts_with(&format!("netmap-rs.{victim}.{ppid:x}."))
        || rendezvous_names(victim, parent).iter().any(|r| r == n)
}

/// Accepts connections on `l` and sends each a memfd (with an official-looking header).
pub fn serve_junk(l: &OwnedFd) {
    loop {
        // SAFETY: accept on a listening descriptor we own; the result is checked.
        let c = unsafe { libc::accept(l.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
        if c < 0 {
            continue;
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        let c = unsafe { OwnedFd::from_raw_fd(c) };
        // SAFETY: memfd_create with a valid C string.
        let m = unsafe { libc::memfd_create(c"junk".as_ptr(), libc::MFD_CLOEXEC) };
        if m < 0 {
            continue;
        }
        // SAFETY: a fresh descriptor.
        let m = unsafe { OwnedFd::from_raw_fd(m) };
        // SAFETY: ftruncate on our memfd.
        unsafe { libc::ftruncate(m.as_raw_fd(), 256 << 20) };
        let mut buf = [0u8; 64];
        buf[..8].copy_from_slice(b"NMRSRDV1");
        let mut cbuf = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is a valid value of this plain C struct.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
        // SAFETY: the control buffer has room for one header and one descriptor.
        unsafe {
            let h = libc::CMSG_FIRSTHDR(&msg);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(4) as _;
            *(libc::CMSG_DATA(h) as *mut i32) = m.as_raw_fd();
            libc::sendmsg(c.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
        }
    }
}

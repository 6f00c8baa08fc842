//! Emulated pipes across processes that do not behave: peers killed, frozen or forked, and
//! processes of another user trying to squat, read, inject or wake. Like `tests/xproc.rs`,
//! this test binary re-runs itself as the other process (`NETMAP_RS_XPROC_ROLE` selects what
//! it does; the `child` test is the entry). "Another user" is uid 65534 through
//! `setpriv --reuid 65534 --regid 65534 --clear-groups`, running a copy of this binary that
//! uid 65534 can execute; those tests print SKIPPED and pass where that is impossible (not
//! root, no `setpriv`).
//!
//! Every child is held by a [`Kid`], which kills it (and resumes it first, when stopped) on
//! drop, so a failing test leaves no process behind.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netmap_rs::backend::BackendChoice;
use netmap_rs::prelude::*;

const ROLE: &str = "NETMAP_RS_XPROC_ROLE";
const NAME: &str = "NETMAP_RS_XPROC_NAME";
const VICTIM: &str = "NETMAP_RS_XPROC_VICTIM";
const LEN: usize = 64;
/// The longest a cross-process wait of the emulated backend may last (its documented bound,
/// `PEER_TIMEOUT`, 2 s) plus room for a loaded machine.
const BOUND: Duration = Duration::from_secs(4);

fn open(name: &str) -> Netmap {
    try_open(name).unwrap_or_else(|e| panic!("open {name}: {e}"))
}

fn try_open(name: &str) -> Result<Netmap, Error> {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(64)
        .build()
}

fn shared() -> bool {
    let on = std::path::Path::new("/dev/shm").is_dir()
        && std::env::var("NETMAP_RS_EMU_SHARED").map_or(true, |v| v != "0");
    if !on {
        eprintln!("SKIPPED: emulated memory is not shared here");
    }
    on
}

fn unique(tag: &str) -> String {
    format!("xt{tag}{}", std::process::id())
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Entries of `/dev/shm` that belong to parent name `parent` (of any design so far).
fn shm_entries(parent: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("netmap-rs.") && n.ends_with(&format!(".{parent}")))
        .collect()
}

/// Abstract Unix socket names bound right now (from `/proc/net/unix`), without the `@`.
fn abstract_names() -> Vec<String> {
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
fn rendezvous_names(victim: u32, parent: &str) -> Vec<String> {
    (0..8)
        .map(|k| format!("netmap-rs.{victim}.mem.{parent}.{k}"))
        .collect()
}

fn sockaddr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is a valid value of this plain C struct.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in sa.sun_path[1..].iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (sa, len as libc::socklen_t)
}

fn socket(ty: libc::c_int) -> OwnedFd {
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Binds a listening stream socket to abstract `name`; `None` when the name is taken.
fn squat(name: &str) -> Option<OwnedFd> {
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
fn ring_all(prefix: &str) -> (usize, usize) {
    let tx = socket(libc::SOCK_DGRAM | libc::SOCK_NONBLOCK);
    let (mut tried, mut sent) = (0, 0);
    for n in abstract_names().iter().filter(|n| n.starts_with(prefix)) {
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
fn fetch_all(prefix: &str) -> (usize, usize) {
    let (mut tried, mut fds) = (0, 0);
    for n in abstract_names().iter().filter(|n| n.starts_with(prefix)) {
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
struct Kid(Child);

impl Kid {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid (not yet reaped: we hold the Child).
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Reads stdout until a line containing `prefix`; returns it from `prefix` on.
    fn line(&mut self, prefix: &str) -> String {
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
    fn kill(&mut self) {
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
struct Pid(i32);

impl Drop for Pid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test made; it may already be gone.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn spawn(role: &str, name: &str) -> Kid {
    spawn_as(&std::env::current_exe().unwrap(), None, role, name)
}

/// Runs `exe` (this test binary, or a copy) as the child `role`, as uid `as_uid` if given.
fn spawn_as(exe: &std::path::Path, as_uid: Option<u32>, role: &str, name: &str) -> Kid {
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
struct Foreign {
    dir: tempfile::TempDir,
}

impl Foreign {
    fn new() -> Option<Foreign> {
        use std::os::unix::fs::PermissionsExt;
        let ok = uid() == 0
            && Command::new("setpriv")
                .arg("--help")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: needs root and setpriv to run a helper as another user");
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

    fn spawn(&self, role: &str, name: &str) -> Kid {
        spawn_as(&self.dir.path().join("helper"), Some(65534), role, name)
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Whether `fd` is readable right now.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
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
fn one_frame(a: &Netmap, b: &Netmap) -> Result<(), String> {
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

/// The other process: what it does is chosen by the parent.
#[test]
fn child() {
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
            let (tried, sent) = ring_all(&format!("netmap-rs.{victim}."));
            println!("RANG {tried} {sent}");
        }
        "foreign-fetch" => {
            let (tried, fds) = fetch_all(&format!("netmap-rs.{victim}."));
            println!("FETCHED {tried} {fds}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Accepts connections on `l` and sends each a memfd (with an official-looking header).
fn serve_junk(l: &OwnedFd) {
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

/// Defect 10: a process killed while it holds a port leaves nothing behind: no `/dev/shm`
/// object, no socket name.
#[test]
fn a_killed_process_leaves_nothing_behind() {
    if !shared() {
        return;
    }
    let parent = unique("kill");
    let mut c = spawn("hold", &format!("{parent}{{1"));
    c.line("READY");
    let pid = c.pid();
    c.kill();
    assert_nothing_left(&parent, pid);
}

/// Defect 10: neither does one that ends normally while a thread it never joined holds one.
#[test]
fn a_process_ending_with_an_unjoined_port_leaves_nothing_behind() {
    if !shared() {
        return;
    }
    let parent = unique("exit");
    let mut c = spawn("exit-with-thread", &format!("{parent}{{1"));
    c.line("READY");
    let pid = c.pid();
    assert!(c.0.wait().unwrap().success());
    assert_nothing_left(&parent, pid);
}

fn assert_nothing_left(parent: &str, pid: i32) {
    // Socket names go when the kernel has closed the dead process's descriptors; give it a
    // moment (in-flight descriptors are collected asynchronously).
    let t0 = Instant::now();
    loop {
        let files = shm_entries(parent);
        let names: Vec<_> = abstract_names()
            .into_iter()
            .filter(|n| {
                n.contains(&format!(".{parent}."))
                    || n.starts_with(&format!("netmap-rs.{}.bell.{pid:x}.", uid()))
            })
            .collect();
        if files.is_empty() && names.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < BOUND,
            "left behind by a process that is gone: files {files:?}, socket names {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Defect 4: a process that found the object stale, and has not replaced it yet, must not
/// make a joiner map the doomed object. Here this test plays that process by hand: it opens
/// what a killed run left (or a junk object when nothing was left), holds the users lock of
/// the old design on it, lets a child join, then replaces the object and opens the other
/// end. The two ends must meet.
#[test]
fn a_joiner_never_maps_an_object_that_is_being_replaced() {
    if !shared() {
        return;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let parent = unique("stale");
    let path = format!("/dev/shm/netmap-rs.{}.{parent}", uid());
    let mut dead = spawn("hold", &format!("{parent}{{9"));
    dead.line("READY");
    dead.kill();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .unwrap();
    if f.metadata().unwrap().len() == 0 {
        f.set_len(4096).unwrap();
    }
    // The old design's users lock: a read lock on byte 1 << 40 (F_OFD_SETLK).
    // SAFETY: an all-zero flock is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_start = 1 << 40;
    fl.l_len = 1;
    // SAFETY: fcntl with a live flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) },
        0
    );
    let mut joiner = spawn("recv-one", &format!("{parent}}}1"));
    joiner.line("READY");
    // Now replace: the stale object goes, its lock with it.
    let _ = std::fs::remove_file(&path);
    drop(f);
    let me = open(&format!("{parent}{{1"));
    let t0 = Instant::now();
    while me.peer_present() != Some(true) && t0.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        me.peer_present(),
        Some(true),
        "the joiner's end is not visible: it mapped another memory"
    );
    let mut tx = me.tx_ring(0).unwrap();
    tx.send(&[42; LEN]).unwrap();
    tx.sync().unwrap();
    assert_eq!(joiner.line("GOT"), "GOT 42", "the joiner received nothing");
    drop((tx, me));
    let _ = std::fs::remove_file(&path);
}

/// The fork question: a child made by `fork()` without `exec` inherits the parent's
/// descriptors. Killing the parent must still show it gone to its peer.
#[test]
fn a_killed_process_is_seen_gone_even_when_it_forked() {
    if !shared() {
        return;
    }
    let parent = unique("fork");
    let nm = open(&format!("{parent}{{1"));
    let mut c = spawn("fork-hold", &format!("{parent}}}1"));
    let grandchild: i32 = c.line("READY").split(' ').nth(1).unwrap().parse().unwrap();
    let _g = Pid(grandchild);
    assert_eq!(nm.peer_present(), Some(true));
    c.kill();
    let mut tx = nm.tx_ring(0).unwrap();
    let t0 = Instant::now();
    let err = loop {
        if let Err(e) = tx.sync() {
            break e;
        }
        assert!(
            t0.elapsed() < BOUND,
            "the killed peer is still seen alive (its forked child holds its descriptors)"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(matches!(err, Error::PeerGone(_)), "{err}");
    assert_eq!(nm.peer_present(), Some(false));
    // The forked child keeps no name alive: once this side closes, a new pair starts afresh.
    drop((tx, nm));
    let (a, b) = (open(&format!("{parent}{{1")), open(&format!("{parent}}}1")));
    one_frame(&a, &b).unwrap();
}

/// Defect 8: another user who pre-creates the old object's path (a file, or a symlink) or
/// binds the first rendezvous name (handing out a memfd of its own) blocks nothing: the
/// pipes work, between two processes, and nothing of the squatter's is used.
#[test]
fn another_user_cannot_squat_a_parent_name() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("sq");
    let mut s = foreign.spawn("foreign-squat", &parent);
    s.line("READY");
    let cleanup = |p: &str| {
        let _ = std::fs::remove_file(format!("/dev/shm/netmap-rs.{}.{p}", uid()));
    };
    for p in [parent.clone(), format!("{parent}2")] {
        let me = try_open(&format!("{p}{{1"));
        let r = me.and_then(|me| {
            let mut c = spawn("recv-one", &format!("{p}}}1"));
            c.line("READY");
            let mut tx = me.tx_ring(0).unwrap();
            tx.send(&[9; LEN])?;
            tx.sync()?;
            Ok(c.line("GOT"))
        });
        cleanup(&p);
        assert_eq!(r.unwrap(), "GOT 9", "{p}: the pipe across processes failed");
    }
}

/// Defect 8: with every candidate name taken by another user, the open fails at once, saying
/// why and what to do.
#[test]
fn a_parent_name_squatted_everywhere_fails_with_cause_and_fix() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("sqa");
    let mut s = foreign.spawn("foreign-squat-all", &parent);
    s.line("READY");
    let t0 = Instant::now();
    let e = try_open(&format!("{parent}{{1")).unwrap_err();
    assert!(t0.elapsed() < BOUND);
    let m = e.to_string();
    assert!(
        m.contains("another user") && m.contains("NETMAP_RS_EMU_NS"),
        "{m}"
    );
}

/// Defect 5: another user can neither wake nor inject into our wake-up sockets, nor fetch
/// our memory: its datagrams are refused, a wait stays asleep, and a descriptor handed out
/// through `AsFd` does not become (or stay) readable.
#[test]
fn another_user_cannot_wake_inject_or_read() {
    if !shared() {
        return;
    }
    let Some(foreign) = Foreign::new() else {
        return;
    };
    let parent = unique("wk");
    let a = open(&format!("{parent}{{1"));
    let b = open(&format!("{parent}}}1"));
    let fd = b.as_fd();
    let mut rx = b.rx_ring(0).unwrap();
    rx.sync().unwrap();
    assert!(!readable(fd));
    let mut r = foreign.spawn("foreign-ring", &parent);
    let rang = r.line("RANG");
    let (tried, sent): (usize, usize) = {
        let mut w = rang.split(' ').skip(1).map(|x| x.parse().unwrap());
        (w.next().unwrap(), w.next().unwrap())
    };
    assert!(tried > 0, "found none of our wake-up sockets");
    rx.sync().unwrap();
    assert!(
        !readable(fd),
        "a foreign datagram keeps the descriptor readable"
    );
    let cpu = thread_cpu();
    let t0 = Instant::now();
    assert!(!b.wait_readable(Some(Duration::from_secs(1))).unwrap());
    let (wall, spent) = (t0.elapsed(), thread_cpu() - cpu);
    assert!(
        spent < wall / 2,
        "a 1 s wait used {spent:?} of CPU: spinning on foreign datagrams"
    );
    assert_eq!(
        sent, 0,
        "another user's datagrams reached {sent} of {tried} sockets"
    );
    let mut f = foreign.spawn("foreign-fetch", &parent);
    let fetched = f.line("FETCHED");
    assert!(
        fetched.ends_with(" 0"),
        "another user got descriptors: {fetched}"
    );
    // And the pipe still works.
    drop(rx);
    one_frame(&a, &b).unwrap();
}

/// Defect 7 (the process side; the memory lock held by a frozen process is in the crate's
/// unit tests): a peer stopped with SIGSTOP for 5 s holds up nothing here for longer than
/// the bound: sending, receiving, opening and closing carry on.
#[test]
fn a_frozen_peer_holds_up_nothing() {
    if !shared() {
        return;
    }
    let parent = unique("frz");
    let me = open(&format!("{parent}{{1"));
    let mut c = spawn("echo", &format!("{parent}}}1"));
    c.line("READY");
    c.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    let (done, ops) = mpsc::channel();
    let name = parent.clone();
    let me = std::sync::Arc::new(me);
    let me2 = me.clone();
    std::thread::spawn(move || {
        let step = |what: &str, t: Instant| done.send((what.to_string(), t.elapsed())).unwrap();
        let t = Instant::now();
        let mut tx = me2.tx_ring(0).unwrap();
        while tx.space() > 0 {
            tx.send(&[1; LEN]).unwrap();
        }
        tx.sync().unwrap();
        let _ = me2.wait_writable(Some(Duration::from_millis(200)));
        step("send", t);
        let t = Instant::now();
        let mut rx = me2.rx_ring(0).unwrap();
        rx.sync().unwrap();
        let _ = me2.wait_readable(Some(Duration::from_millis(200)));
        step("receive", t);
        let t = Instant::now();
        let other = try_open(&format!("{name}{{2"));
        step("open", t);
        let t = Instant::now();
        drop(other);
        step("close", t);
        let t = Instant::now();
        drop(tx);
        drop(rx);
        drop(me2);
        step("close the frozen peer's pipe", t);
    });
    for _ in 0..5 {
        let (what, took) = ops
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("an operation blocked on the frozen peer"));
        eprintln!("{what}: {took:?}");
        assert!(took < BOUND, "{what} took {took:?}");
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(frozen.elapsed()));
    c.signal(libc::SIGCONT);
    drop(me);
}

/// Processes joining while the last other user leaves always meet: the memory is handed from
/// a live user or made afresh, never mapped from a user that is going away. Each round, this
/// process makes the memory, a child joins it, this process closes (the child is then its
/// only user and serves it), reopens, and sends: the child must receive.
#[test]
fn a_memory_passes_from_user_to_user_without_splitting() {
    if !shared() {
        return;
    }
    let parent = unique("pass");
    for round in 0..8 {
        let me = open(&format!("{parent}{{1"));
        let mut c = spawn("recv-one", &format!("{parent}}}1"));
        c.line("READY");
        drop(me);
        let me = open(&format!("{parent}{{1"));
        assert_eq!(me.peer_present(), Some(true), "round {round}: split");
        let mut tx = me.tx_ring(0).unwrap();
        tx.send(&[round; LEN]).unwrap();
        tx.sync().unwrap();
        assert_eq!(c.line("GOT"), format!("GOT {round}"), "round {round}");
        drop(tx);
        drop(me);
        drop(c);
    }
}

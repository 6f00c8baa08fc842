//! The emulated backend: netmap pipes without the kernel module, within a process or across
//! processes of one user.
//!
//! It lays out memory exactly as netmap does — a `netmap_if` per registration, rings with
//! `buf_ofs`, a buffer pool indexed by `buf_idx` — in one region per parent name (so pipes
//! `a{1` and `a{2` share buffers, as kernel pipes of one parent share an allocator). On Linux
//! the region is an unnamed shared memory object ([`shm`], a sealed `memfd`) that every
//! process of the user opening a pipe of that parent maps, handed from process to process over
//! a rendezvous socket per parent name ([`rendezvous`]); elsewhere (and under Miri, or with
//! `NETMAP_RS_EMU_SHARED=0`) it is private to the process. Either way the allocator, the pipe
//! table and the protocol state live in the region's control area ([`ctl`]), and the backend
//! implements the netmap pipe protocol ([`pipe`]):
//!
//! - TX ring `i` of one end and RX ring `i` of the other share their buffers slot for slot.
//!   A txsync hands the slots `[hwcur, head)` to the peer (copying slot metadata, and the
//!   buffer index when `NS_BUF_CHANGED` is set: zero copy) and advances the peer's hardware
//!   tail past the last complete packet (`NS_MOREFRAG`).
//! - An rxsync releases `[hwcur, head)`, propagates swapped buffers back to the TX slots, and
//!   moves the sender's tail to `head - 1`: the sender never gets more room than the receiver
//!   has freed (back-pressure), nothing is dropped and order is kept.
//! - User-visible `tail`s change only in the owner's own sync, as with the kernel; `head` and
//!   `cur` are validated at every sync the way the kernel does.
//! - The two sides of a link share no lock: each protocol word has one writer (see [`pipe`]);
//!   threads of one process syncing the same ring side take a local mutex (the kring lock).
//!
//! Readiness, as in the kernel (a wait queue per ring plus one per file): each registration
//! has a [`Note`] per direction (its descriptor: level semantics, what `poll` on a netmap
//! fd reports), and an async ring handle gets a note of its own ring, which only that
//! handle ever clears. A sync of one ring can therefore never consume the signal a waiter on
//! another ring needs. Notes are rung across processes ([`wake`]).
//!
//! Trust across processes (Linux, shared memory):
//!
//! - A peer process that maps the same memory may crash at any instruction, may be buggy or
//!   hostile. Whatever it writes, this process gets no undefined behaviour, no out-of-bounds
//!   access, no panic, no unbounded wait and no busy loop. It may corrupt packet bytes and
//!   lose packets on the pipes it shares.
//! - Another local user (another uid) can neither read, inject, wake, block, slow down nor
//!   redirect anything of ours: the memory has no name ([`shm`]), the rendezvous checks user
//!   ids both ways and skips names another user took ([`rendezvous`]), and bells accept
//!   datagrams from the memory's own ringer alone ([`wake`]).
//! - Every wait on another process is bounded by [`PEER_TIMEOUT`]: joining a memory, and
//!   the memory lock (taken before anything that needs it, with that deadline; a close that
//!   cannot get it in time returns anyway and leaves the rest to a thread, [`reaper`]). No
//!   process-wide mutex is held across such a wait.
//! - Nothing outlives the processes using a memory: no file, no socket name, no pages; a
//!   child forked without `exec` does not keep its parent's state alive ([`fork`]).
//!
//! Crashes: an end is owned by one process at a time, through a lock the kernel drops when
//! the process dies. A watcher thread (running while shared pipes are open) looks every
//! [`WATCH_PERIOD`] for peers that were killed while bound, and wakes the survivor's waiters:
//! its sends then fail with [`Error::PeerGone`], and its receives drain what was delivered
//! before failing the same way. A peer that closes normally is not an error (netmap allows
//! an end to come and go).

mod ctl;
#[cfg(all(target_os = "linux", not(miri)))]
mod fork;
mod memory;
pub(crate) mod notify;
mod pipe;
mod reaper;
mod registry;
#[cfg(all(target_os = "linux", not(miri)))]
mod rendezvous;
#[cfg(all(target_os = "linux", not(miri)))]
mod shm;
mod table;
#[cfg(all(target_os = "linux", not(miri)))]
mod unix;
pub(crate) mod wake;
mod watch;

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::abi::{NR_EXCLUSIVE, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY};
use crate::backend::wait::{wait_loop, WaitParts};
use crate::backend::{
    Armed, Backend, Driver, MemIdentity, OpenOptions, Opened, Readiness, RingWaker,
};
use crate::error::Error;
use crate::os::poll_list;
use crate::port_name::{PipeRole, PortKind, PortSpec, RingSelect};
use crate::ring::{if_bytes, write_if, Dir};
use pipe::Pipe;
#[cfg(test)]
use registry::set_next_mem_id;
use registry::{find_mem, find_pipe, registry, release_pipe, PipeRef};
use wake::{Cell, Note};

/// Default slots per pipe ring (as netmap's default for pipes).
pub const DEFAULT_SLOTS: u32 = 1024;
/// Buffer size of emulated memory (netmap's default).
pub const BUF_SIZE: u32 = 2048;
/// Largest ring the emulated backend builds.
pub const MAX_SLOTS: u32 = 32768;
/// Most rings per direction of an emulated pipe.
pub const MAX_RINGS: u16 = 64;
/// How often the watcher looks for peers killed while bound.
pub const WATCH_PERIOD: Duration = Duration::from_millis(100);
/// The longest the emulated backend waits for another process: to be handed a shared
/// memory, and for the memory lock another process holds. A peer stopped (SIGSTOP, a
/// debugger) or stuck for longer makes an open fail with [`Error::PortBusy`], and a close
/// return anyway (finishing in the background); sends and receives never wait for a peer.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

const TX: usize = 0;
const RX: usize = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain bookkeeping behind; continue.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn end_index(role: PipeRole) -> usize {
    match role {
        PipeRole::Master => 0,
        PipeRole::Slave => 1,
    }
}

/// One registration of one pipe end: what a file descriptor is to the kernel backend.
pub(crate) struct Port {
    /// Dropped by hand, under the watcher's lock (see `watch`).
    pipe: ManuallyDrop<Arc<Pipe>>,
    end: usize,
    /// The registration's `netmap_if`.
    if_off: usize,
    if_size: usize,
    tx: Vec<usize>,
    rx: Vec<usize>,
    rx_note: Arc<Note>,
    tx_note: Arc<Note>,
    /// Set once the RX descriptor was handed out through `AsFd`: it is then always signalled.
    exposed: AtomicBool,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("pipe", &self.pipe.name)
            .field("end", &self.end)
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

/// Checks the request against what the emulated backend builds; returns (rings, slots).
fn geometry(spec: &PortSpec, opts: &OpenOptions) -> Result<(usize, u32), Error> {
    match &spec.kind {
        PortKind::Pipe { .. } => {}
        PortKind::Vale { .. } => {
            return Err(Error::FallbackUnsupported(format!(
                "{}: VALE switches are not emulated; load the netmap module, or use a pipe \
                 name such as \"{}{{1\"",
                spec.ifname, spec.ifname
            )))
        }
        PortKind::Nic => {
            return Err(Error::FallbackUnsupported(format!(
                "{}: the emulated backend has no network interfaces; load the netmap module \
                 for NIC ports, or use a pipe name such as \"{}{{1\"",
                spec.ifname, spec.ifname
            )))
        }
    }
    let nrings = opts.tx_rings.max(opts.rx_rings).max(1);
    if nrings > MAX_RINGS {
        return Err(Error::BindFail(format!(
            "{nrings} rings requested; the emulated backend builds at most {MAX_RINGS}"
        )));
    }
    let nslots = match opts.tx_slots.max(opts.rx_slots) {
        0 => DEFAULT_SLOTS,
        s => s,
    };
    if !(4..=MAX_SLOTS).contains(&nslots) {
        return Err(Error::BindFail(format!(
            "{nslots} slots per ring requested; the emulated backend takes 4..={MAX_SLOTS}"
        )));
    }
    if opts.extra_bufs != 0 {
        return Err(Error::FallbackUnsupported(
            "extra buffers (nr_extra_bufs) are not emulated".into(),
        ));
    }
    Ok((nrings as usize, nslots))
}

/// Opens a pipe end on the emulated backend. Every failure leaves no trace: nothing is bound
/// until everything that can fail has been acquired.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let (nrings, nslots) = geometry(spec, opts)?;
    let PortKind::Pipe { parent, id, role } = &spec.kind else {
        unreachable!("geometry() accepts pipes only")
    };
    let master_name = format!("{parent}{{{id}");
    let mem = find_mem(parent)?;
    // The memory lock for the whole open, with a deadline (a peer process may hold it).
    let hold = mem.hold(Instant::now() + PEER_TIMEOUT)?;
    let pipe = PipeRef(Some(find_pipe(&mem, &master_name, nrings, nslots)?));
    let end = end_index(*role);
    let all: Vec<usize> = match spec.rings {
        RingSelect::AllNic => (0..pipe.nrings).collect(),
        RingSelect::OneNic(k) if (k as usize) < pipe.nrings => vec![k as usize],
        RingSelect::OneNic(k) => {
            return Err(Error::BindFail(format!(
                "{}: ring {k} requested but the pipe has {} ring(s) per direction (0..{})",
                spec.ifname, pipe.nrings, pipe.nrings
            )))
        }
        _ => unreachable!("the name parser refuses host rings on pipes"),
    };
    let tx = if opts.flags & NR_RX_RINGS_ONLY != 0 {
        Vec::new()
    } else {
        all.clone()
    };
    let rx = if opts.flags & NR_TX_RINGS_ONLY != 0 {
        Vec::new()
    } else {
        all
    };
    // Everything that can fail, before anything is bound.
    let rx_note = Arc::new(note(&pipe, end, RX, &rx, 0)?);
    let tx_note = Arc::new(note(&pipe, end, TX, &tx, 0)?);
    let nr = pipe.nrings;
    let if_size = if_bytes(2 * (nr + 1));
    let if_off = pipe.mem.alloc_if(if_size)?;
    if let Err(e) = bind(&pipe, spec, end, &tx, &rx, opts.flags & NR_EXCLUSIVE != 0) {
        pipe.mem.free_if(if_off, if_size);
        return Err(e);
    }
    // Bound: from here on Port's Drop undoes the bindings; nothing below fails.
    let port = Port {
        pipe: ManuallyDrop::new(Arc::clone(&pipe)),
        end,
        if_off,
        if_size,
        tx,
        rx,
        rx_note,
        tx_note,
        exposed: AtomicBool::new(false),
    };
    port.tx_note.install();
    port.rx_note.install();
    pipe.reset_user_pointers(end, &port.tx, &port.rx);
    // ring_ofs: nr NIC tx + 1 host tx, nr NIC rx + 1 host rx; 0 for rings not bound here.
    let mut ofs = vec![0isize; 2 * (nr + 1)];
    for &i in &port.tx {
        ofs[i] = pipe.ring_off[end][TX][i] as isize - if_off as isize;
    }
    for &i in &port.rx {
        ofs[nr + 1 + i] = pipe.ring_off[end][RX][i] as isize - if_off as isize;
    }
    // TX ring i of one end and RX ring i of the other share their buffers slot for slot;
    // both are named by the TX ring's offset.
    let off = &pipe.ring_off;
    let slot_groups = (port.tx.iter().map(|&i| (off[end][TX][i], off[end][TX][i])))
        .chain(
            port.rx
                .iter()
                .map(|&i| (off[end][RX][i], off[1 - end][TX][i])),
        )
        .collect();
    let name = match role {
        PipeRole::Master => master_name,
        PipeRole::Slave => format!("{parent}}}{id}"),
    };
    // SAFETY: the interface area was just allocated for this registration and is not yet
    // visible to anyone.
    unsafe {
        write_if(
            &pipe.mem.region,
            if_off,
            &name,
            [nr as u32, nr as u32, 1, 1],
            &ofs,
        )
    };
    tracing::debug!(port = %name, rings = nr, slots = pipe.nslots, "emulated pipe end opened");
    drop(pipe);
    drop(hold);
    if mem.shm().is_some() {
        watch::ensure();
    }
    let region = mem.region.clone();
    let g = &mem.ctl.g;
    let pool = g.ring_end..g.ring_end + g.nbufs as usize * BUF_SIZE as usize;
    let mem = MemIdentity::Emulated {
        mem_id: mem.id,
        base: region.base().as_ptr() as usize,
    };
    Ok(Opened {
        backend: Backend::Emulated(port),
        pool,
        slot_groups,
        region,
        if_off,
        mem,
        extra_bufs: 0,
    })
}

/// Marks rings `tx`/`rx` of pipe end `end` bound, or says why they cannot be.
fn bind(
    pipe: &Pipe,
    spec: &PortSpec,
    end: usize,
    tx: &[usize],
    rx: &[usize],
    exclusive: bool,
) -> Result<(), Error> {
    let mut b = lock(&pipe.bound);
    let any_bound = b.rings[end].iter().flatten().any(|x| *x);
    if b.exclusive[end] || (exclusive && any_bound) {
        return Err(Error::PortBusy(format!(
            "{}: the pipe end is already open{} (in this process or another)",
            spec.ifname,
            if b.exclusive[end] {
                " in exclusive mode"
            } else {
                ""
            }
        )));
    }
    for (dir, list) in [(TX, tx), (RX, rx)] {
        if let Some(&i) = list.iter().find(|&&i| b.rings[end][dir][i]) {
            return Err(Error::PortBusy(format!(
                "{}: {} ring {i} of this pipe end is already bound by another registration \
                 (in this process or another)",
                spec.ifname,
                if dir == TX { "tx" } else { "rx" }
            )));
        }
    }
    if !any_bound {
        // The first registration of this end in this process: own the end machine-wide.
        pipe.claim_end(end).map_err(|pid| {
            Error::PortBusy(format!(
                "{}: the pipe end is already open in another process (pid {pid})",
                spec.ifname
            ))
        })?;
        // The other end's peer is now this process, alive: a killed predecessor no longer
        // counts (the watcher only looks at pipes with one end here).
        pipe.peer_gone[1 - end].store(false, Ordering::Release);
    }
    for (dir, list) in [(TX, tx), (RX, rx)] {
        for &i in list {
            b.rings[end][dir][i] = true;
        }
    }
    b.exclusive[end] = exclusive;
    Ok(())
}

/// A note over the cells (`kind` 0: registration, 1: ring handle) of rings `list` of `end`.
fn note(pipe: &Pipe, end: usize, dir: usize, list: &[usize], kind: usize) -> Result<Note, Error> {
    let ctl = &pipe.mem.ctl;
    let cells = list
        .iter()
        .map(|&i| Cell::new(ctl, ctl.cell(pipe.slot, end, dir, i, kind)))
        .collect();
    Ok(Note::new(pipe.mem.ringer(), cells)?)
}

impl Port {
    /// After a sync cleared the registration's notifier: signal it again if some ring still
    /// has work for the user. The descriptor thus reports the rings' state (as `poll` on a
    /// netmap fd does), and a sync never swallows a signal another waiter on the same
    /// descriptor still needs.
    #[inline]
    fn resignal(&self, rx: bool) {
        let (note, list, dir) = if rx {
            (&self.rx_note, &self.rx, RX)
        } else {
            (&self.tx_note, &self.tx, TX)
        };
        if !note.is_armed() {
            return;
        }
        let ready = list.iter().any(|&i| {
            let r = &self.pipe.raw[self.end][dir][i];
            r.load_tail() != r.load_cur()
        });
        if ready {
            note.notify();
        }
    }
}

impl Driver for Port {
    fn txsync(&self) -> Result<(), Error> {
        self.tx_note.clear();
        for &i in &self.tx {
            self.pipe.txsync(self.end, i)?;
        }
        self.resignal(false);
        Ok(())
    }

    fn rxsync(&self) -> Result<(), Error> {
        self.rx_note.clear();
        for &i in &self.rx {
            self.pipe.rxsync(self.end, i)?;
        }
        self.resignal(true);
        Ok(())
    }

    /// A readiness source for ring `idx` (position in this registration's list) alone.
    /// Replaces the ring's previous one, if any (one live handle per ring).
    fn ring_waker(&self, dir: Dir, idx: usize) -> Result<RingWaker, Error> {
        let tx = dir == Dir::Tx;
        let (list, dir) = if tx { (&self.tx, TX) } else { (&self.rx, RX) };
        let i = *list.get(idx).ok_or(Error::InvalidRingIndex(idx))?;
        let note = Arc::new(note(&self.pipe, self.end, dir, &[i], 1)?);
        note.install();
        tracing::trace!(pipe = %self.pipe.name, ring = i, tx, "ring notifier installed");
        Ok(RingWaker::notifier(note))
    }

    /// Whether the other end of the pipe is open (in this process or a live other one).
    fn peer_present(&self) -> Option<bool> {
        Some(self.pipe.peer_bound(self.end))
    }

    /// The RX descriptor for a caller that will poll it itself (through `AsFd`): from now on
    /// every delivery signals it, as the kernel's fd always reports readiness.
    fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        if !self.exposed.swap(true, Ordering::AcqRel) {
            self.rx_note.arm();
            self.resignal(true);
        }
        self.rx_note.as_fd()
    }

    /// Like `poll(2)` on a netmap fd: syncs the wanted directions (the kernel's poll handler
    /// does the same), then sleeps on the notifiers until a wanted direction is ready.
    fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        let _rx_armed = want.readable.then(|| Armed::new(&*self.rx_note));
        let _tx_armed = want.writable.then(|| Armed::new(&*self.tx_note));
        // Each sync clears its notifier and signals it again if a ring has work, so a
        // wake-up in the poll is never lost to another thread's sync.
        let sync = || {
            if want.readable {
                self.rxsync()?;
            }
            if want.writable {
                self.txsync()?;
            }
            Ok(())
        };
        let parts = WaitParts {
            sync: &sync,
            check,
            sleep: &|left| {
                let notes = [
                    (&self.rx_note, want.readable),
                    (&self.tx_note, want.writable),
                ];
                let fds = notes.into_iter().filter(|n| n.1);
                poll_list(fds.map(|(n, _)| (n.as_fd(), libc::POLLIN)), left).map_err(Error::from)
            },
            retry: &|| None,
        };
        wait_loop(want, timeout, parts)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if *self.exposed.get_mut() {
            self.rx_note.disarm();
        }
        let pipe = &self.pipe;
        {
            let mut b = lock(&pipe.bound);
            for &i in &self.tx {
                b.rings[self.end][TX][i] = false;
            }
            for &i in &self.rx {
                b.rings[self.end][RX][i] = false;
            }
            b.exclusive[self.end] = false;
            if !b.any(self.end) {
                pipe.release_end(self.end);
                pipe.peer_gone[self.end].store(false, Ordering::Release);
            }
        }
        if pipe.mem.shm().is_some() {
            // The other end may be another process's, now with nobody here to watch it.
            watch::ensure();
        }
        // The rest needs the memory lock. The last reference to the pipe (and so to its
        // memory) goes here, never in the watcher thread: closing the last port tears the
        // pipe down before it returns, unless another process holds the memory lock past
        // PEER_TIMEOUT; then the reaper finishes it when it can.
        let _w = watch::quiet();
        // SAFETY: `self.pipe` is not used after this: the value is being dropped.
        let pipe = unsafe { ManuallyDrop::take(&mut self.pipe) };
        let mem = pipe.mem.clone();
        let (off, size) = (self.if_off, self.if_size);
        let e = match mem.hold(Instant::now() + PEER_TIMEOUT) {
            Ok(h) => {
                mem.free_if(off, size);
                release_pipe(pipe);
                drop(h);
                return;
            }
            Err(e) => e,
        };
        tracing::warn!(error = %e, "closing an emulated port is deferred");
        let m = mem.clone();
        reaper::defer(
            mem,
            Box::new(move || {
                m.free_if(off, size);
                release_pipe(pipe);
            }),
        );
    }
}

#[cfg(test)]
mod tests;

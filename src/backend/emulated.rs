//! The in-process emulated backend: netmap pipes without the kernel module.
//!
//! It lays out memory exactly as netmap does — a `netmap_if` per registration, rings with
//! `buf_ofs`, a buffer pool indexed by `buf_idx` — in an anonymous region per parent name (so
//! pipes `a{1` and `a{2` share buffers, as kernel pipes of one parent share an allocator), and
//! implements the netmap pipe protocol:
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
//! - Per link state is guarded by a mutex (the kernel's kring lock); readiness is signalled
//!   through a [`Notifier`] per direction.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::abi::{NR_EXCLUSIVE, NR_RX_RINGS_ONLY, NR_TX_RINGS_ONLY, NS_BUF_CHANGED, NS_MOREFRAG};
use crate::backend::{Backend, MemIdentity, OpenOptions, Opened, Readiness};
use crate::error::Error;
use crate::notify::{poll_fds, Notifier};
use crate::port_name::{PipeRole, PortKind, PortSpec, RingSelect};
use crate::region::Region;
use crate::sync::raw::{
    distance, if_bytes, in_cyclic_range, init_ring, next, prev, ring_bytes, runs, write_if,
    RawRing, RingInit,
};

/// Default slots per pipe ring (as netmap's default for pipes).
pub const DEFAULT_SLOTS: u32 = 1024;
/// Buffer size of emulated memory (netmap's default).
pub const BUF_SIZE: u32 = 2048;
/// Largest ring the emulated backend builds.
pub const MAX_SLOTS: u32 = 32768;
/// Most rings per direction of an emulated pipe.
pub const MAX_RINGS: u16 = 64;

const TX: usize = 0;
const RX: usize = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain bookkeeping behind; continue.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Memory: one region per parent name, with an interface area, a ring area and a buffer pool.
// ---------------------------------------------------------------------------------------------

struct EmuMem {
    region: Arc<Region>,
    id: u16,
    if_end: usize,
    ring_end: usize,
    nbufs: u32,
    alloc: Mutex<MemAlloc>,
}

#[derive(Default)]
struct MemAlloc {
    if_next: usize,
    if_free: Vec<(usize, usize)>,
    ring_next: usize,
    ring_free: Vec<(usize, usize)>,
    buf_next: u32,
    buf_free: Vec<u32>,
}

fn memory_size() -> usize {
    if cfg!(miri) {
        return 1 << 20;
    }
    std::env::var("NETMAP_RS_EMU_MEM_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|mb| (4..=65536).contains(mb))
        .map(|mb| mb << 20)
        .unwrap_or(256 << 20)
}

impl EmuMem {
    fn new(id: u16) -> Result<EmuMem, Error> {
        let len = memory_size();
        let region = Region::anonymous(len)?;
        let if_end = (len / 256).max(16 << 10);
        let ring_end = if_end + (len / 16).max(64 << 10);
        let nbufs = ((len - ring_end) / BUF_SIZE as usize) as u32;
        Ok(EmuMem {
            region: Arc::new(region),
            id,
            if_end,
            ring_end,
            nbufs,
            alloc: Mutex::new(MemAlloc {
                if_next: 0,
                ring_next: if_end,
                // Buffers 0 and 1 are reserved, as in the kernel.
                buf_next: 2,
                ..Default::default()
            }),
        })
    }

    fn exhausted(what: &str) -> Error {
        Error::BindFail(format!(
            "emulated netmap memory has no room for {what}: use fewer or smaller rings, close \
             unused pipes, or raise NETMAP_RS_EMU_MEM_MB (default 256)"
        ))
    }

    fn alloc_area(
        free: &mut Vec<(usize, usize)>,
        next: &mut usize,
        end: usize,
        size: usize,
        align: usize,
    ) -> Option<usize> {
        let size = size.next_multiple_of(align);
        if let Some(pos) = free.iter().position(|&(_, s)| s == size) {
            return Some(free.swap_remove(pos).0);
        }
        let off = next.next_multiple_of(align);
        if off + size > end {
            return None;
        }
        *next = off + size;
        Some(off)
    }

    fn alloc_if(&self, size: usize) -> Result<usize, Error> {
        let mut a = lock(&self.alloc);
        let a = &mut *a;
        Self::alloc_area(&mut a.if_free, &mut a.if_next, self.if_end, size, 64)
            .ok_or_else(|| Self::exhausted("another interface"))
    }

    fn free_if(&self, off: usize, size: usize) {
        lock(&self.alloc)
            .if_free
            .push((off, size.next_multiple_of(64)));
    }

    fn alloc_ring(&self, num_slots: u32) -> Result<usize, Error> {
        let mut a = lock(&self.alloc);
        let a = &mut *a;
        Self::alloc_area(
            &mut a.ring_free,
            &mut a.ring_next,
            self.ring_end,
            ring_bytes(num_slots),
            128,
        )
        .ok_or_else(|| Self::exhausted("another ring"))
    }

    fn free_ring(&self, off: usize, num_slots: u32) {
        lock(&self.alloc)
            .ring_free
            .push((off, ring_bytes(num_slots).next_multiple_of(128)));
    }

    fn alloc_bufs(&self, n: usize) -> Result<Vec<u32>, Error> {
        let mut a = lock(&self.alloc);
        let fresh = (self.nbufs - a.buf_next) as usize;
        if a.buf_free.len() + fresh < n {
            return Err(Self::exhausted(&format!("{n} more buffers")));
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match a.buf_free.pop() {
                Some(b) => out.push(b),
                None => {
                    out.push(a.buf_next);
                    a.buf_next += 1;
                }
            }
        }
        Ok(out)
    }

    fn free_bufs(&self, bufs: impl IntoIterator<Item = u32>) {
        let mut a = lock(&self.alloc);
        a.buf_free.extend(bufs.into_iter().filter(|b| *b >= 2));
    }
}

// ---------------------------------------------------------------------------------------------
// Pipes.
// ---------------------------------------------------------------------------------------------

/// Kernel-side state of one direction of one ring pair: TX ring `i` of the sending end and RX
/// ring `i` of the receiving end. Guarded by a mutex, like the kernel's kring lock.
struct Link {
    tx_hwcur: u32,
    tx_hwtail: u32,
    /// Last slot the sender may fill, as released by the receiver (`prev(rx_hwcur)`).
    pipe_tail: u32,
    rx_hwcur: u32,
    rx_hwtail: u32,
    /// The RX tail the receiving user was last shown.
    rx_tail_pub: u32,
    rx_note: Option<Arc<Notifier>>,
    tx_note: Option<Arc<Notifier>>,
}

struct Bindings {
    /// `[end][TX/RX][ring]`: bound by some registration.
    rings: [[Vec<bool>; 2]; 2],
    exclusive: [bool; 2],
}

struct Pipe {
    mem: Arc<EmuMem>,
    /// Master end's name, for messages.
    name: String,
    nrings: usize,
    nslots: u32,
    /// `[end][TX/RX][ring]` offsets in the region.
    ring_off: [[Vec<usize>; 2]; 2],
    raw: [[Vec<RawRing>; 2]; 2],
    /// `links[sending end][ring]`.
    links: [Vec<Mutex<Link>>; 2],
    bound: Mutex<Bindings>,
}

struct Registry {
    mems: HashMap<String, Weak<EmuMem>>,
    pipes: HashMap<String, Weak<Pipe>>,
    next_mem_id: u16,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            mems: HashMap::new(),
            pipes: HashMap::new(),
            next_mem_id: 1,
        })
    })
}

fn end_index(role: PipeRole) -> usize {
    match role {
        PipeRole::Master => 0,
        PipeRole::Slave => 1,
    }
}

impl Pipe {
    fn create(mem: Arc<EmuMem>, name: String, nrings: usize, nslots: u32) -> Result<Pipe, Error> {
        let mut ring_off: [[Vec<usize>; 2]; 2] = Default::default();
        let mut raw: [[Vec<RawRing>; 2]; 2] = Default::default();
        let mut links: [Vec<Mutex<Link>>; 2] = Default::default();
        let mut allocated: Vec<usize> = Vec::new();
        let mut bufs_taken: Vec<u32> = Vec::new();
        let result = (|| {
            for offs in ring_off.iter_mut() {
                for dir in [TX, RX] {
                    for _ in 0..nrings {
                        let off = mem.alloc_ring(nslots)?;
                        allocated.push(off);
                        offs[dir].push(off);
                    }
                }
            }
            // Initialise every ring, then give TX ring i of end e and RX ring i of the other
            // end the same buffers.
            let buf_base = mem.ring_end;
            for (e, end_links) in links.iter_mut().enumerate() {
                let pairs = ring_off[e][TX].iter().zip(&ring_off[1 - e][RX]);
                for (i, (&tx_off, &rx_off)) in pairs.enumerate() {
                    let geometry = |off: usize, dir: u16, tail: u32| RingInit {
                        num_slots: nslots,
                        buf_size: BUF_SIZE,
                        buf_ofs: buf_base as i64 - off as i64,
                        ringid: i as u16,
                        dir,
                        tail,
                    };
                    // SAFETY: both ring areas were just allocated for this pipe; nobody else
                    // can reach them until the pipe is published in the registry.
                    unsafe {
                        init_ring(&mem.region, tx_off, geometry(tx_off, 0, nslots - 1));
                        init_ring(&mem.region, rx_off, geometry(rx_off, 1, 0));
                    }
                    let bufs = mem.alloc_bufs(nslots as usize)?;
                    bufs_taken.extend_from_slice(&bufs);
                    let guard = mem.ring_end;
                    let txr = RawRing::new(&mem.region, tx_off, guard)?;
                    let rxr = RawRing::new(&mem.region, rx_off, guard)?;
                    for (k, b) in bufs.iter().enumerate() {
                        // SAFETY: fresh rings owned by this constructor (see above).
                        unsafe {
                            txr.set_buf_idx(k as u32, *b);
                            rxr.set_buf_idx(k as u32, *b);
                        }
                    }
                    end_links.push(Mutex::new(Link {
                        tx_hwcur: 0,
                        tx_hwtail: nslots - 1,
                        pipe_tail: nslots - 1,
                        rx_hwcur: 0,
                        rx_hwtail: 0,
                        rx_tail_pub: 0,
                        rx_note: None,
                        tx_note: None,
                    }));
                }
            }
            for e in 0..2 {
                for dir in [TX, RX] {
                    for &off in &ring_off[e][dir] {
                        raw[e][dir].push(RawRing::new(&mem.region, off, mem.ring_end)?);
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for off in allocated {
                mem.free_ring(off, nslots);
            }
            mem.free_bufs(bufs_taken);
            return Err(e);
        }
        Ok(Pipe {
            mem,
            name,
            nrings,
            nslots,
            ring_off,
            raw,
            links,
            bound: Mutex::new(Bindings {
                rings: [
                    [vec![false; nrings], vec![false; nrings]],
                    [vec![false; nrings], vec![false; nrings]],
                ],
                exclusive: [false; 2],
            }),
        })
    }

    fn txsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let n = self.nslots;
        let tx = &self.raw[end][TX][i];
        let rx = &self.raw[1 - end][RX][i];
        let mut l = lock(&self.links[end][i]);
        let head = tx.load_head();
        let cur = tx.load_cur();
        if !in_cyclic_range(l.tx_hwcur, head, l.tx_hwtail, n)
            || !in_cyclic_range(head, cur, l.tx_hwtail, n)
        {
            return Err(Error::RingState(format!(
                "{}: tx ring {i}: head {head} / cur {cur} outside [{}, {}]",
                self.name, l.tx_hwcur, l.tx_hwtail
            )));
        }
        // SAFETY (both blocks): TX slots in [hwcur, head) were released by the user, whose
        // Release store of head we loaded with Acquire; they are the kernel side's until the
        // tail passes them again. The same RX slots lie in [rx_hwtail, pipe limit): not yet
        // shown to the receiving user (its tail is at most rx_hwtail). The link lock
        // serialises us with the receiver's rxsync.
        //
        // TX slot k and RX slot k hold the same buffer whenever the slot is on the sending
        // side (swaps are propagated back at rxsync), so whole slots are copied; a swapped-in
        // buffer (NS_BUF_CHANGED) travels with them.
        let mut flags = 0;
        for (start, count) in runs(l.tx_hwcur, head, n) {
            flags |= unsafe { tx.copy_slots_to(rx, start, count) };
        }
        if flags & NS_BUF_CHANGED != 0 {
            let mut k = l.tx_hwcur;
            while k != head {
                // SAFETY: as above.
                unsafe {
                    let ts = tx.slot(k);
                    let f = ts.flags & !NS_BUF_CHANGED;
                    tx.set_len_flags(k, ts.len, f);
                    rx.set_len_flags(k, ts.len, f);
                }
                k = next(k, n);
            }
        }
        // Packets are delivered up to the end of the last complete one (a slot without
        // NS_MOREFRAG); usually that is the last slot.
        let mut complete = None;
        if flags & NS_MOREFRAG == 0 {
            complete = (head != l.tx_hwcur).then_some(head);
        } else {
            let mut k = head;
            while k != l.tx_hwcur {
                let p = prev(k, n);
                // SAFETY: as above.
                if unsafe { tx.slot(p) }.flags & NS_MOREFRAG == 0 {
                    complete = Some(k);
                    break;
                }
                k = p;
            }
        }
        l.tx_hwcur = head;
        let mut delivered = false;
        if let Some(nk) = complete {
            if nk != l.rx_hwtail {
                l.rx_hwtail = nk;
                delivered = true;
            }
        }
        l.tx_hwtail = l.pipe_tail;
        tx.store_tail(l.tx_hwtail);
        if delivered {
            if let Some(note) = &l.rx_note {
                note.notify();
            }
        }
        Ok(())
    }

    fn rxsync(&self, end: usize, i: usize) -> Result<(), Error> {
        let n = self.nslots;
        let rx = &self.raw[end][RX][i];
        let tx = &self.raw[1 - end][TX][i];
        let mut l = lock(&self.links[1 - end][i]);
        let head = rx.load_head();
        let cur = rx.load_cur();
        if !in_cyclic_range(l.rx_hwcur, head, l.rx_tail_pub, n)
            || !in_cyclic_range(head, cur, l.rx_tail_pub, n)
        {
            return Err(Error::RingState(format!(
                "{}: rx ring {i}: head {head} / cur {cur} outside [{}, {}]",
                self.name, l.rx_hwcur, l.rx_tail_pub
            )));
        }
        // SAFETY (all blocks): RX slots in [rx_hwcur, head) were released by the receiving
        // user (Acquire load of head). The same TX slots are not the sending user's: its tail
        // is at most prev(rx_hwcur), so [rx_hwcur, head) lies outside its [head, tail). The
        // link lock is held.
        let mut flags = 0;
        for (start, count) in runs(l.rx_hwcur, head, n) {
            flags |= unsafe { rx.flags_or(start, count) };
        }
        let mut k = if flags & NS_BUF_CHANGED != 0 {
            l.rx_hwcur
        } else {
            head
        };
        while k != head {
            // SAFETY: as above.
            unsafe {
                let rs = rx.slot(k);
                if rs.flags & NS_BUF_CHANGED != 0 {
                    tx.set_buf_idx(k, rs.buf_idx);
                    rx.set_len_flags(k, rs.len, rs.flags & !NS_BUF_CHANGED);
                }
            }
            k = next(k, n);
        }
        let released = head != l.rx_hwcur;
        if released {
            l.rx_hwcur = head;
            l.pipe_tail = prev(head, n);
        }
        l.rx_tail_pub = l.rx_hwtail;
        rx.store_tail(l.rx_hwtail);
        if released {
            if let Some(note) = &l.tx_note {
                note.notify();
            }
        }
        Ok(())
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Give every buffer back: a slot's buffer is the RX copy while the receiver holds it
        // (it may have been swapped), the TX copy otherwise.
        let mut bufs = Vec::new();
        for e in 0..2 {
            for i in 0..self.nrings {
                let l = lock(&self.links[e][i]);
                let tx = &self.raw[e][TX][i];
                let rx = &self.raw[1 - e][RX][i];
                for k in 0..self.nslots {
                    let held = distance(l.rx_hwcur, k, self.nslots)
                        < distance(l.rx_hwcur, l.rx_hwtail, self.nslots);
                    // SAFETY: the pipe is being dropped: no registration (and so no user or
                    // other thread) can reach its rings any more.
                    let b = unsafe {
                        if held {
                            rx.slot(k).buf_idx
                        } else {
                            tx.slot(k).buf_idx
                        }
                    };
                    bufs.push(b);
                }
            }
        }
        self.mem.free_bufs(bufs);
        for e in 0..2 {
            for dir in [TX, RX] {
                for &off in &self.ring_off[e][dir] {
                    self.mem.free_ring(off, self.nslots);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registrations.
// ---------------------------------------------------------------------------------------------

/// One registration of one pipe end: what a file descriptor is to the kernel backend.
pub(crate) struct EmuPort {
    pipe: Arc<Pipe>,
    end: usize,
    /// The registration's `netmap_if` (None if its allocation failed).
    if_off: Option<usize>,
    if_size: usize,
    tx: Vec<usize>,
    rx: Vec<usize>,
    rx_note: Arc<Notifier>,
    tx_note: Arc<Notifier>,
    /// Set once the RX descriptor was handed out through `AsFd`: it is then always signalled.
    exposed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for EmuPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmuPort")
            .field("pipe", &self.pipe.name)
            .field("end", &self.end)
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

/// Opens a pipe end on the emulated backend.
pub(crate) fn open(spec: &PortSpec, opts: &OpenOptions) -> Result<Opened, Error> {
    let (parent, id, role) = match &spec.kind {
        PortKind::Pipe { parent, id, role } => (parent, id, *role),
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
    };
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
    let master_name = format!("{parent}{{{id}");
    let pipe = {
        let mut reg = lock(registry());
        // Forget pipes and memories whose last user is gone.
        reg.pipes.retain(|_, w| w.strong_count() > 0);
        reg.mems.retain(|_, w| w.strong_count() > 0);
        let mem = match reg.mems.get(parent.as_str()).and_then(Weak::upgrade) {
            Some(m) => m,
            None => {
                let id = reg.next_mem_id;
                reg.next_mem_id = reg.next_mem_id.wrapping_add(1).max(1);
                let m = Arc::new(EmuMem::new(id)?);
                reg.mems.insert(parent.clone(), Arc::downgrade(&m));
                m
            }
        };
        match reg.pipes.get(&master_name).and_then(Weak::upgrade) {
            Some(p) => p,
            None => {
                let p = Arc::new(Pipe::create(
                    mem,
                    master_name.clone(),
                    nrings as usize,
                    nslots,
                )?);
                reg.pipes.insert(master_name.clone(), Arc::downgrade(&p));
                p
            }
        }
    };
    let end = end_index(role);
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
    let tx: Vec<usize> = if opts.flags & NR_RX_RINGS_ONLY != 0 {
        Vec::new()
    } else {
        all.clone()
    };
    let rx: Vec<usize> = if opts.flags & NR_TX_RINGS_ONLY != 0 {
        Vec::new()
    } else {
        all
    };
    {
        let mut b = lock(&pipe.bound);
        let any_bound = b.rings[end].iter().flatten().any(|x| *x);
        if b.exclusive[end] || (opts.flags & NR_EXCLUSIVE != 0 && any_bound) {
            return Err(Error::PortBusy(format!(
                "{}: the pipe end is open in exclusive mode or already open",
                spec.ifname
            )));
        }
        for (dir, list) in [(TX, &tx), (RX, &rx)] {
            if let Some(&i) = list.iter().find(|&&i| b.rings[end][dir][i]) {
                return Err(Error::PortBusy(format!(
                    "{}: {} ring {i} of this pipe end is already open",
                    spec.ifname,
                    if dir == TX { "tx" } else { "rx" }
                )));
            }
        }
        for (dir, list) in [(TX, &tx), (RX, &rx)] {
            for &i in list {
                b.rings[end][dir][i] = true;
            }
        }
        b.exclusive[end] = opts.flags & NR_EXCLUSIVE != 0;
    }
    // From here on the bindings must be undone on error: EmuPort's Drop does that.
    let rx_note = Arc::new(Notifier::new()?);
    let tx_note = Arc::new(Notifier::new()?);
    let nr = pipe.nrings;
    let if_size = if_bytes(2 * (nr + 1));
    let if_alloc = pipe.mem.alloc_if(if_size);
    let port = EmuPort {
        pipe: pipe.clone(),
        end,
        if_off: if_alloc.as_ref().ok().copied(),
        if_size,
        tx,
        rx,
        rx_note,
        tx_note,
        exposed: std::sync::atomic::AtomicBool::new(false),
    };
    let if_off = if_alloc?;
    for &i in &port.tx {
        let mut l = lock(&pipe.links[end][i]);
        l.tx_note = Some(port.tx_note.clone());
        // As the kernel does when a ring is (re)bound: user pointers from the kernel's.
        let r = &pipe.raw[end][TX][i];
        r.publish_head(l.tx_hwcur);
        r.store_tail(l.tx_hwtail);
    }
    for &i in &port.rx {
        let mut l = lock(&pipe.links[1 - end][i]);
        l.rx_note = Some(port.rx_note.clone());
        let r = &pipe.raw[end][RX][i];
        r.publish_head(l.rx_hwcur);
        l.rx_tail_pub = l.rx_hwtail;
        r.store_tail(l.rx_hwtail);
        if l.rx_hwtail != l.rx_hwcur {
            port.rx_note.notify();
        }
    }
    // ring_ofs: nr NIC tx + 1 host tx, nr NIC rx + 1 host rx; 0 for rings not bound here.
    let mut ofs = vec![0isize; 2 * (nr + 1)];
    for &i in &port.tx {
        ofs[i] = pipe.ring_off[end][TX][i] as isize - if_off as isize;
    }
    for &i in &port.rx {
        ofs[nr + 1 + i] = pipe.ring_off[end][RX][i] as isize - if_off as isize;
    }
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
    let region = pipe.mem.region.clone();
    let mem = MemIdentity::Emulated {
        mem_id: pipe.mem.id,
    };
    Ok(Opened {
        backend: Backend::Emulated(port),
        region,
        if_off,
        mem,
        extra_bufs: 0,
    })
}

impl EmuPort {
    pub(crate) fn txsync(&self) -> Result<(), Error> {
        self.tx_note.clear();
        for &i in &self.tx {
            self.pipe.txsync(self.end, i)?;
        }
        Ok(())
    }

    pub(crate) fn rxsync(&self) -> Result<(), Error> {
        self.rx_note.clear();
        for &i in &self.rx {
            self.pipe.rxsync(self.end, i)?;
        }
        Ok(())
    }

    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn rx_fd(&self) -> BorrowedFd<'_> {
        self.rx_note.as_fd()
    }

    /// The RX descriptor for a caller that will poll it itself (through `AsFd`): from now on
    /// every delivery signals it, as the kernel's fd always reports readiness.
    pub(crate) fn exposed_rx_fd(&self) -> BorrowedFd<'_> {
        if !self.exposed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.rx_note.arm();
        }
        self.rx_note.as_fd()
    }

    /// Arms (or disarms) the notifier of one direction; see [`Notifier::arm`]. Calls must
    /// pair up.
    pub(crate) fn set_waiting(&self, rx: bool, waiting: bool) {
        let n = if rx { &self.rx_note } else { &self.tx_note };
        if waiting {
            n.arm();
        } else {
            n.disarm();
        }
    }

    #[cfg_attr(not(feature = "tokio-async"), allow(dead_code))]
    pub(crate) fn tx_fd(&self) -> BorrowedFd<'_> {
        self.tx_note.as_fd()
    }

    /// Like `poll(2)` on a netmap fd: syncs the wanted directions (the kernel's poll handler
    /// does the same), then sleeps on the notifiers until a wanted direction is ready.
    pub(crate) fn wait(
        &self,
        want: Readiness,
        timeout: Option<Duration>,
        check: &dyn Fn() -> Readiness,
    ) -> Result<Readiness, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let _rx_armed = want.readable.then(|| Armed::new(self, true));
        let _tx_armed = want.writable.then(|| Armed::new(self, false));
        loop {
            if want.readable {
                self.rxsync()?;
            }
            if want.writable {
                self.txsync()?;
            }
            let r = check();
            if (want.readable && r.readable) || (want.writable && r.writable) {
                return Ok(r);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(r),
                },
                None => None,
            };
            let mut fds = Vec::with_capacity(2);
            if want.readable {
                fds.push((self.rx_note.as_fd(), libc::POLLIN));
            }
            if want.writable {
                fds.push((self.tx_note.as_fd(), libc::POLLIN));
            }
            let rev = poll_fds(&fds, left)?;
            // A level-triggered wake-up may come from a signal already consumed by a sync.
            if want.readable && rev[0] != 0 {
                self.rx_note.clear_hard();
            }
            if want.writable && rev[rev.len() - 1] != 0 {
                self.tx_note.clear_hard();
            }
        }
    }
}

/// A waiter's arming of one direction, undone on drop (on every return path).
struct Armed<'a> {
    port: &'a EmuPort,
    rx: bool,
}

impl<'a> Armed<'a> {
    fn new(port: &'a EmuPort, rx: bool) -> Self {
        port.set_waiting(rx, true);
        Armed { port, rx }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.port.set_waiting(self.rx, false);
    }
}

impl Drop for EmuPort {
    fn drop(&mut self) {
        if *self.exposed.get_mut() {
            self.rx_note.disarm();
        }
        let pipe = &self.pipe;
        for &i in &self.tx {
            lock(&pipe.links[self.end][i]).tx_note = None;
        }
        for &i in &self.rx {
            lock(&pipe.links[1 - self.end][i]).rx_note = None;
        }
        {
            let mut b = lock(&pipe.bound);
            for &i in &self.tx {
                b.rings[self.end][TX][i] = false;
            }
            for &i in &self.rx {
                b.rings[self.end][RX][i] = false;
            }
            b.exclusive[self.end] = false;
        }
        if let Some(off) = self.if_off {
            pipe.mem.free_if(off, self.if_size);
        }
    }
}

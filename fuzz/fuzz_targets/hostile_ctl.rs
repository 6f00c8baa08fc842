//! Pipes opened, used and closed while a hostile peer process writes the control area of
//! their shared memory: allocator cursors and free lists, the buffer bitmap, and the pipe
//! table (slot state, geometry, name, end words, ring offsets, link words, wake-up cells).
//!
//! The peer is played by this target: it maps the same shared object (the memfd, reopened
//! through `/proc/self/fd`), as another process would, and stores words there (atomically, as the crate reads them). Every safe
//! call must return (values or errors), never crash or touch memory outside the region, and
//! what the crate places in the region must stay out of the control area: the header's magic
//! and length survive every operation unless the peer wrote them itself.
//!
//! Run with small memories (the object is made and removed every run):
//! `NETMAP_RS_EMU_MEM_MB=8 cargo +nightly fuzz run hostile_ctl`.
#![no_main]

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use netmap_rs::{zero_copy_forward, BackendChoice, Netmap, NetmapBuilder};

/// The control-area layout (`src/backend/emulated/ctl.rs`, `alloc.rs`), as a peer reads it.
const HDR: usize = 4096;
const SLOT_SIZE: usize = 16384;
const MAX_RINGS: usize = 64;
const S_RING_OFF: usize = 16 + 64 + 16;
const S_LINKS: usize = S_RING_OFF + 4 * MAX_RINGS * 4;
const S_CELLS: usize = S_LINKS + 2 * MAX_RINGS * 32;

/// Where things are in a region of `len` bytes (`Geometry::for_len`).
struct Layout {
    len: usize,
    bitmap_words: usize,
    slots_off: usize,
    max_pipes: usize,
    if_start: usize,
    if_end: usize,
    ring_end: usize,
}

impl Layout {
    fn for_len(len: usize) -> Layout {
        let bitmap_words = (len / 2048).div_ceil(64);
        let slots_off = (HDR + bitmap_words * 8).next_multiple_of(4096);
        let max_pipes = (len >> 22).clamp(4, 64);
        let if_start = slots_off + max_pipes * SLOT_SIZE;
        let if_end = if_start + (len / 256).max(16 << 10);
        let ring_end = if_end + (len / 16).max(64 << 10);
        Layout {
            len,
            bitmap_words,
            slots_off,
            max_pipes,
            if_start,
            if_end,
            ring_end,
        }
    }
}

/// The peer's mapping of the shared object.
struct Peer {
    base: *mut u8,
    l: Layout,
}

impl Peer {
    /// Maps the memory this process shares (an unnamed memfd, reopened through
    /// `/proc/self/fd`: a mapping of its own, as a peer process has).
    fn map() -> Option<Peer> {
        let fd = std::fs::read_dir("/proc/self/fd").ok()?.find_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            if !target.to_string_lossy().starts_with("/memfd:netmap-rs-emu") {
                return None;
            }
            let path = CString::new(e.path().to_str()?).ok()?;
            // SAFETY: a valid C string; the result is checked.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            (fd >= 0).then_some(fd)
        })?;
        // SAFETY: an all-zero stat is a valid value; fd is ours.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fd is open and st a live stat struct.
        let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
        let len = st.st_size as usize;
        let p = if ok && len >= 4 << 20 {
            // SAFETY: a shared mapping of the whole object; checked below.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                )
            }
        } else {
            libc::MAP_FAILED
        };
        // SAFETY: fd is ours; the mapping stays valid after close.
        unsafe { libc::close(fd) };
        (p != libc::MAP_FAILED).then(|| Peer {
            base: p.cast(),
            l: Layout::for_len(len),
        })
    }

    fn w64(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.l.if_start);
        // SAFETY: an aligned word inside the mapping (the control area), accessed only
        // atomically here and by the crate.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast()) }
    }

    fn w32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.l.if_start);
        // SAFETY: as for `w64`.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
    }

    /// The header's magic and length.
    fn header(&self) -> (u64, u64) {
        (
            self.w64(0).load(Ordering::Relaxed),
            self.w64(8).load(Ordering::Relaxed),
        )
    }

    /// A value for a word: raw, from the top, near an area boundary, or ring-aligned.
    fn value(&self, mode: u8, v: u32) -> u64 {
        let l = &self.l;
        match mode & 3 {
            0 => v as u64,
            1 => u64::MAX - v as u64,
            2 => {
                let base = [0, l.if_start, l.if_end, l.ring_end, l.len][v as usize % 5];
                (base as u64).wrapping_add((v >> 8) as u64 % 512).wrapping_sub(256)
            }
            _ => (v as u64 % (l.len as u64 / 128 + 2)) * 128,
        }
    }

    /// One hostile store, chosen by `a` and `v`. Returns whether it hit the magic or length.
    fn scribble(&self, a: u8, b: u8, v: u32) -> bool {
        let l = &self.l;
        let val = self.value(b, v);
        match a % 6 {
            // Header: magic, length, cursors, hint, the first free entries.
            0 => {
                let off = (b as usize >> 2) % 32 * 8;
                self.w64(off).store(val, Ordering::Relaxed);
                off < 16
            }
            // Free lists (64 interface entries, then 128 ring entries).
            1 => {
                let off = 64 + (v as usize >> 8) % (192 * 2) * 8;
                self.w64(off).store(self.value(b >> 2, v), Ordering::Relaxed);
                false
            }
            // The buffer bitmap.
            2 => {
                let off = HDR + (v as usize) % l.bitmap_words * 8;
                let bits = [0, u64::MAX, v as u64 | (v as u64) << 32, !(1 << (v % 64))];
                self.w64(off).store(bits[b as usize % 4], Ordering::Relaxed);
                false
            }
            // Slot words: state, geometry, name, end state and pid.
            3 => {
                let off = self.slot(b) + (v as usize >> 8) % 24 * 4;
                // Small values too: the slot states (0..=3), end states, ring counts.
                let val = if b & 0x40 == 0 { v % 8 } else { self.value(b >> 4, v) as u32 };
                self.w32(off).store(val, Ordering::Relaxed);
                false
            }
            // Ring offset words of rings 0..4.
            4 => {
                let k = (v as usize >> 8) % 16;
                let off = self.slot(b) + S_RING_OFF + (k / 4 * MAX_RINGS + k % 4) * 4;
                self.w32(off).store(self.value(b >> 4, v) as u32, Ordering::Relaxed);
                false
            }
            // Link words of rings 0..4, or wake-up cells.
            _ => {
                let k = (v as usize >> 8) % 64;
                let off = if b & 0x80 == 0 {
                    S_LINKS + ((k / 32) * MAX_RINGS + k / 8 % 4) * 32 + k % 8 * 4
                } else {
                    S_CELLS + k * 4
                };
                let off = self.slot(b) + off;
                let val = if b & 0x40 == 0 { v % 80 } else { self.value(b >> 4, v) as u32 };
                self.w32(off).store(val, Ordering::Relaxed);
                false
            }
        }
    }

    fn slot(&self, b: u8) -> usize {
        self.l.slots_off + (b as usize & 3) % self.l.max_pipes * SLOT_SIZE
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of this length; nothing refers to it after this.
        unsafe { libc::munmap(self.base.cast(), self.l.len) };
    }
}

fn parent() -> String {
    format!("hc{}", std::process::id())
}

fn open(name: &str, slots: u32, rings: usize) -> Option<Netmap> {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_slots(slots)
        .num_tx_rings(rings)
        .num_rx_rings(rings)
        .build()
        .ok()
}

/// One end of a pipe of its own parent name, open for the whole session: the watcher thread
/// (which runs while this process has exactly one end of a shared pipe) then never exits.
/// Otherwise it starts and stops with the runs, and a thread exiting while LeakSanitizer
/// looks shows its thread-local destructor record (32 bytes from
/// `__cxa_thread_atexit_impl`) as leaked.
static WATCHED: Mutex<Option<Netmap>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    {
        let mut w = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none() {
            *w = open(&format!("hcw{}{{0", std::process::id()), 8, 1);
        }
    }
    let p = parent();
    // Keeps the memory (and the peer's view of it) for the whole run.
    let Some(keep) = open(&format!("{p}{{0"), 8, 1) else {
        return;
    };
    // Fuzzing nothing silently would be worse than stopping.
    let peer = Peer::map().expect("no shared emulated memory to write into (sharing off?)");
    let mut header = peer.header();
    // Ports of pipes 1..=3, both ends: [pipe][end].
    let mut ports: [[Option<Netmap>; 2]; 3] = Default::default();
    for op in data.chunks_exact(6) {
        let (a, b) = (op[0], op[1]);
        let v = u32::from_le_bytes([op[2], op[3], op[4], op[5]]);
        let (k, end) = ((b as usize >> 1) % 3, b as usize & 1);
        match a % 10 {
            0..=3 => {
                if peer.scribble(a / 10, b, v) {
                    header = peer.header();
                }
            }
            4 => {
                let name = if end == 0 { format!("{p}{{{}", k + 1) } else { format!("{p}}}{}", k + 1) };
                ports[k][end] = open(&name, 4 + v % 61, 1 + (v >> 8) as usize % 2);
            }
            5 => ports[k][end] = None,
            6 => {
                if let Some(Ok(mut tx)) = ports[k][end].as_ref().map(|n| n.tx_ring(0)) {
                    for i in 0..v % 20 {
                        let _ = tx.send(&[i as u8; 60]);
                    }
                    let _ = tx.sync();
                }
            }
            7 => {
                if let Some(Ok(mut rx)) = ports[k][end].as_ref().map(|n| n.rx_ring(0)) {
                    let _ = rx.sync();
                    for f in rx.batch(v as usize % 40) {
                        std::hint::black_box(f.payload().iter().map(|b| *b as u64).sum::<u64>());
                    }
                    let _ = rx.sync();
                }
            }
            8 => {
                let k2 = (v as usize) % 3;
                if let (Some(x), Some(y)) = (&ports[k][end], &ports[k2][1 - end]) {
                    if let (Ok(mut rx), Ok(mut tx)) = (x.rx_ring(0), y.tx_ring(0)) {
                        let _ = zero_copy_forward(&mut rx, &mut tx, v as usize % 20);
                        let _ = tx.sync();
                        let _ = rx.sync();
                    }
                }
            }
            _ => {
                let _ = keep.peer_present();
                if let Ok(mut tx) = keep.tx_ring(0) {
                    let _ = tx.send(&[7; 60]);
                    let _ = tx.sync();
                }
            }
        }
        assert_eq!(
            peer.header(),
            header,
            "the crate wrote over the control area's header"
        );
    }
    drop(ports);
    drop(keep);
});

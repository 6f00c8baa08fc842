//! [`Waiter`]: a ring handle's reusable wait for readiness of its own ring, over the ring's
//! own readiness source, following the protocol in the module docs above (arm, sync, look;
//! sleep; sync and look again; clear readiness only when the ring still lacks work).

use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::ReusableBoxFuture;

use super::{no_runtime, AsyncPort};
use crate::error::Error;
use crate::sync::{Armed, Dir, RingWaker};

impl AsyncPort {
    fn ring_ready(&self, dir: Dir, idx: usize, need: u32) -> bool {
        self.netmap.ring_ready(dir, idx, need)
    }

    fn sync(&self, dir: Dir) -> Result<(), Error> {
        self.netmap.sync_dir(dir)
    }
}

/// Sleeps until ring `idx` has `need` packets or free slots in direction `dir`.
/// Cancel-safe: it consumes nothing.
async fn wait_ready(
    port: Arc<AsyncPort>,
    fd: Arc<AsyncFd<RingWaker>>,
    resync: Option<(Arc<Resync>, bool)>,
    dir: Dir,
    idx: usize,
    need: u32,
) -> io::Result<()> {
    let waker = fd.get_ref();
    // Ask for signals before the sync below: a delivery after that sync finds the waker
    // armed and produces an edge. Disarmed when this future completes or is dropped.
    let _armed = Armed::new(waker);
    // Look once more now that signals are on: a delivery between the caller's last sync and
    // the arming above produced no signal, so only a sync can see it.
    waker.clear();
    port.sync(dir)?;
    if port.ring_ready(dir, idx, need) {
        return Ok(());
    }
    let mut interval = FIRST_RESYNC;
    loop {
        // The timer: always on the kernel module (see `resync.rs`); elsewhere only while the
        // driver says no event may come (AF_XDP frames a busy device did not take).
        let timer = resync
            .as_ref()
            .filter(|(_, always)| *always || port.netmap.retry_after().is_some())
            .map(|(t, _)| &**t);
        let guard = woken(&fd, timer, &mut interval).await?;
        waker.clear();
        port.sync(dir)?;
        if port.ring_ready(dir, idx, need) {
            return Ok(());
        }
        // Still not enough after a sync: only now may readiness be cleared. If an edge came
        // in since the guard was taken, Tokio keeps the readiness and we loop at once.
        if let Some(mut guard) = guard {
            guard.clear_ready();
        }
    }
}

#[cfg(target_os = "linux")]
use super::resync::{self, Resync, FIRST as FIRST_RESYNC};

/// No safety net where the kernel backend does not exist (or has no timerfd).
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct Resync;
#[cfg(not(target_os = "linux"))]
const FIRST_RESYNC: std::time::Duration = std::time::Duration::ZERO;

/// Waits for the ring's readiness source; with a [`Resync`] timer (the kernel module), also
/// for the timer, armed to `interval` (then lengthened). `None`: the timer fired.
async fn woken<'a>(
    fd: &'a AsyncFd<RingWaker>,
    resync: Option<&Resync>,
    interval: &mut std::time::Duration,
) -> io::Result<Option<tokio::io::unix::AsyncFdReadyGuard<'a, RingWaker>>> {
    let writable = fd.get_ref().reports_writable();
    #[cfg(target_os = "linux")]
    if let Some(timer) = resync {
        timer.arm(*interval)?;
        return std::future::poll_fn(|cx| {
            let r = if writable {
                fd.poll_write_ready(cx)
            } else {
                fd.poll_read_ready(cx)
            };
            if let Poll::Ready(g) = r {
                return Poll::Ready(g.map(Some));
            }
            ready!(timer.poll_expired(cx))?;
            tracing::trace!("ring wait: no edge within {interval:?}; syncing again");
            *interval = resync::longer(*interval);
            Poll::Ready(Ok(None))
        })
        .await;
    }
    let _ = (resync, interval);
    Ok(Some(if writable {
        fd.writable().await?
    } else {
        fd.readable().await?
    }))
}

/// A ring handle's reusable, owned wait for readiness of its ring (one allocation per
/// handle), over the ring's own readiness source.
pub(crate) struct Waiter {
    port: Arc<AsyncPort>,
    /// The source as registered with the reactor: for as long as the waiter lives, or, for a
    /// transient source ([`RingWaker::transient`]: a queue socket), only while a wait is in
    /// progress; `idle` then holds it between waits.
    fd: Option<Arc<AsyncFd<RingWaker>>>,
    idle: Option<RingWaker>,
    interest: Interest,
    dir: Dir,
    idx: usize,
    /// The safety-net timer (see `resync.rs`) and whether every sleep arms it (the kernel
    /// module) or only those the driver asks for (AF_XDP TX); `None` elsewhere.
    resync: Option<(Arc<Resync>, bool)>,
    fut: ReusableBoxFuture<'static, io::Result<()>>,
    active: bool,
    /// What the active wait waits for (packets or free slots).
    need: usize,
}

/// Registers `waker` with the current runtime's reactor (giving it back on failure).
fn register(
    waker: RingWaker,
    interest: Interest,
) -> Result<AsyncFd<RingWaker>, (RingWaker, io::Error)> {
    // SAFETY: the descriptor belongs to the RingWaker (an OwnedFd, or an eventfd owned by
    // the Arc'd notifier it holds). The AsyncFd owns the RingWaker, so the descriptor stays
    // open and names the same file for as long as it is registered, and `as_raw_fd` returns
    // the same number every time.
    unsafe { AsyncFd::register_with_interest(waker, interest) }.map_err(|e| e.into_parts())
}

/// A [`Resync`] timer, with whether every sleep arms it: for a port on the netmap kernel
/// module (Linux) driven by a multi-thread runtime, always (on a current-thread runtime the
/// reactor's poll runs on the thread that syncs, so the two never overlap and no edge is lost
/// that way); for an AF_XDP TX ring, when the driver asks (a busy device leaves frames that
/// no completion will announce); else none.
fn resync_for(port: &AsyncPort, dir: Dir) -> Result<Option<(Arc<Resync>, bool)>, Error> {
    #[cfg(target_os = "linux")]
    {
        let kind = port.netmap.backend();
        let always = kind == crate::BackendKind::Kernel
            && tokio::runtime::Handle::current().runtime_flavor()
                != tokio::runtime::RuntimeFlavor::CurrentThread;
        if always || (kind == crate::BackendKind::Xdp && dir == Dir::Tx) {
            return Ok(Some((Arc::new(Resync::new()?), always)));
        }
    }
    let _ = (port, dir);
    Ok(None)
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("dir", &self.dir)
            .field("ring", &self.idx)
            .field("active", &self.active)
            .finish()
    }
}

impl Waiter {
    /// Takes ring `idx`'s readiness source and registers it with the current runtime's
    /// reactor (a transient source: at each wait).
    pub(crate) fn new(port: Arc<AsyncPort>, dir: Dir, idx: usize) -> Result<Waiter, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Io(no_runtime("taking an async ring handle")));
        }
        let waker = port.netmap.ring_waker(dir, idx)?;
        let interest = if waker.reports_writable() {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let (fd, idle) = if waker.transient() {
            (None, Some(waker))
        } else {
            let fd = register(waker, interest).map_err(|(_, e)| Error::Io(e))?;
            (Some(Arc::new(fd)), None)
        };
        let resync = resync_for(&port, dir)?;
        Ok(Waiter {
            port,
            fd,
            idle,
            interest,
            resync,
            dir,
            idx,
            fut: ReusableBoxFuture::new(async { Ok(()) }),
            active: false,
            need: 0,
        })
    }

    /// The registered source, registering a transient one now.
    fn registered(&mut self) -> io::Result<Arc<AsyncFd<RingWaker>>> {
        if let Some(fd) = &self.fd {
            return Ok(fd.clone());
        }
        let waker = self
            .idle
            .take()
            .ok_or_else(|| io::Error::other("ring waiter lost its readiness source"))?;
        match register(waker, self.interest) {
            Ok(fd) => Ok(self.fd.insert(Arc::new(fd)).clone()),
            Err((waker, e)) => {
                self.idle = Some(waker);
                Err(e)
            }
        }
    }

    /// Ends a wait: a transient source leaves the reactor. (A finished wait's future has
    /// dropped its reference to the source; a withdrawn one is replaced before this.)
    fn end_wait(&mut self) {
        self.active = false;
        if let Some(fd) = self.fd.take_if(|f| f.get_ref().transient()) {
            match Arc::try_unwrap(fd) {
                Ok(fd) => self.idle = Some(fd.into_inner()),
                Err(fd) => self.fd = Some(fd),
            }
        }
    }

    /// Whether a wait for `need` is in progress (started, not yet complete). A wait left
    /// active for another amount (by a future that was dropped) is withdrawn here, its
    /// arming undone: it would complete only at its own `need`, and the caller, who now
    /// waits for a different amount, starts a fresh wait, which syncs and looks again first.
    pub(crate) fn is_active_for(&mut self, need: usize) -> bool {
        if self.active && self.need != need {
            // Its arming is undone with the future.
            self.fut.set(async { Ok(()) });
            self.end_wait();
        }
        self.active
    }

    /// Starts a wait for `need` packets (RX) or free slots (TX).
    pub(crate) fn start(&mut self, need: usize) {
        self.need = need;
        let need = u32::try_from(need).unwrap_or(u32::MAX);
        self.active = true;
        let fd = match self.registered() {
            Ok(fd) => fd,
            Err(e) => {
                self.fut.set(async move { Err(e) });
                return;
            }
        };
        self.fut.set(wait_ready(
            self.port.clone(),
            fd,
            self.resync.clone(),
            self.dir,
            self.idx,
            need,
        ));
    }

    /// Sleeps until `look` finds work: the wait of a ring whose driver reads packets in
    /// place (`RxRing::for_each_frame` on `afpacket:`), where the sync of the usual wait
    /// would copy them into slots. `look` runs once the source is registered (what arrived
    /// before, even what another thread's sync moved into the ring's slots meanwhile, is
    /// seen then; what arrives after is reported by the socket) and after each report.
    /// Readiness is cleared only when `look` found nothing after it was reported (Tokio keeps
    /// a report newer than the guard). Cancel-safe: `look` runs only inside a poll, and a
    /// dropped wait leaves the source registered for the next.
    pub(crate) async fn lend_wait(
        &mut self,
        mut look: impl FnMut() -> io::Result<bool>,
    ) -> io::Result<()> {
        if self.active {
            // A wait left by a dropped future: withdrawn, as `is_active_for` does.
            self.fut.set(async { Ok(()) });
            self.end_wait();
        }
        let fd = self.registered()?;
        let r = async {
            if look()? {
                return Ok(());
            }
            loop {
                let mut guard = fd.readable().await?;
                if look()? {
                    return Ok(());
                }
                guard.clear_ready();
            }
        }
        .await;
        drop(fd);
        self.end_wait();
        r
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(self.fut.poll(cx));
        self.end_wait();
        Poll::Ready(r)
    }
}

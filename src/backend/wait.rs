//! The shape of `poll(2)` on a netmap descriptor, for the backends that build it themselves
//! (emulated, AF_XDP, AF_PACKET): sync the wanted directions, look at the rings, and sleep
//! on the backend's descriptors until something may have changed or the timeout passes.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::Readiness;
use crate::error::Error;
use crate::os::poll_fds;

/// What a backend's wait is made of.
pub(crate) struct WaitParts<'a> {
    /// Syncs the wanted directions (the kernel's poll handler does the same).
    pub sync: &'a dyn Fn() -> Result<(), Error>,
    /// Readiness of the rings after the sync.
    pub check: &'a dyn Fn() -> Readiness,
    /// Sleeps until a wanted direction may have work or the time (`None`: no limit) passes.
    pub sleep: &'a dyn Fn(Option<Duration>) -> Result<(), Error>,
    /// How long to sleep at most before syncing again, when the driver knows no event may
    /// come (frames the kernel would not take yet: see `Driver::retry_after`).
    pub retry: &'a dyn Fn() -> Option<Duration>,
}

/// Loops sync → check → poll until a wanted direction is ready or `timeout` passes; returns
/// the last readiness seen.
pub(crate) fn wait_loop(
    want: Readiness,
    timeout: Option<Duration>,
    parts: WaitParts<'_>,
) -> Result<Readiness, Error> {
    // A timeout too long to add to now (Duration::MAX) is no timeout.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        (parts.sync)()?;
        let r = (parts.check)();
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
        let left = match (left, (parts.retry)()) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        };
        (parts.sleep)(left)?;
    }
}

/// A `sleep` of [`WaitParts`] over one descriptor per direction, each readable (`POLLIN`) when
/// its direction may have work: polls those of the wanted directions.
pub(crate) fn poll_wanted(
    want: Readiness,
    rx: BorrowedFd<'_>,
    tx: BorrowedFd<'_>,
    left: Option<Duration>,
) -> std::io::Result<()> {
    let (rx, tx) = ((rx, libc::POLLIN), (tx, libc::POLLIN));
    match (want.readable, want.writable) {
        (true, true) => poll_fds(&[rx, tx], left).map(drop),
        (true, false) => poll_fds(&[rx], left).map(drop),
        (false, true) => poll_fds(&[tx], left).map(drop),
        (false, false) => poll_fds(&[], left).map(drop),
    }
}

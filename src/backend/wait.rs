//! The shape of `poll(2)` on a netmap descriptor, for the backends that build it themselves
//! (emulated, AF_XDP, AF_PACKET): sync the wanted directions, look at the rings, and sleep
//! on the backend's descriptors until something may have changed or the timeout passes.

use std::time::{Duration, Instant};

use super::Readiness;
use crate::error::Error;

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

/// The sleep to ask for before `deadline` (`None`: no deadline, so `Some(None)`), or `None`
/// once it has passed.
pub(crate) fn time_left(deadline: Option<Instant>) -> Option<Option<Duration>> {
    match deadline {
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(Some(left)),
            _ => None,
        },
        None => Some(None),
    }
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
        let Some(left) = time_left(deadline) else {
            return Ok(r);
        };
        let left = match (left, (parts.retry)()) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        };
        (parts.sleep)(left)?;
    }
}

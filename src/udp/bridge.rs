//! Sharing a netmap NIC with the host stack: what a UDP endpoint on a port with host rings
//! (`netmap:eth0*`) does with the traffic that is not its own, as netmap's `bridge`
//! application does between `eth0` and `eth0^`.
//!
//! A netmap NIC port takes the interface from the host stack: what the NIC receives goes to
//! the port's RX rings only, and what the stack sends goes to the host RX ring, not to the
//! wire. With the host rings in the same registration (`*`), the endpoint passes both on:
//!
//! - NIC RX → host TX: frames at the front of a NIC RX ring that are not the endpoint's
//!   are moved to the host TX ring by swapping buffers (zero copy: one registration, one
//!   memory), before the endpoint's own datagrams are taken; frames that are not ours
//!   between the endpoint's datagrams of one batch are copied there (a batch cannot leave a
//!   hole behind it). The host stack gets the moved frames at once (the host ring is synced
//!   before the endpoint's datagrams are lent), the copied ones at the endpoint's next
//!   receiving call (or at the end of `serve`).
//! - host RX → NIC TX ring 0: everything, zero copy.
//!
//! A full destination ring is synced once; what still does not fit is dropped and counted
//! ([`UdpStats::bridge_dropped`]), as a full ring drops in the kernel. The same code copies
//! instead of swapping where the two rings do not share memory.

use super::endpoint::Endpoint;
use super::UdpStats;
use crate::error::Error;
use crate::sync::{forward_filtered, zero_copy_forward, Frame, RxRing, TxRing};

/// Copies `frame` to the host TX ring `host` (syncing it once when full).
pub(crate) fn copy_to_host(host: &mut TxRing, frame: &Frame<'_>, stats: &mut UdpStats) {
    match copy(host, frame.payload()) {
        Ok(true) => stats.to_host += 1,
        Ok(false) => stats.bridge_dropped += 1,
        Err(e) => {
            stats.bridge_dropped += 1;
            tracing::warn!(error = %e, "a frame for the host stack was dropped");
        }
    }
}

/// Copies `bytes` to `tx`, syncing it once when full; `false` when it stays full.
fn copy(tx: &mut TxRing, bytes: &[u8]) -> Result<bool, Error> {
    match tx.send(bytes) {
        Ok(()) => Ok(true),
        Err(Error::InsufficientSpace) => {
            tx.sync()?;
            match tx.send(bytes) {
                Ok(()) => Ok(true),
                Err(Error::InsufficientSpace) => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Passes the frames at the front of NIC RX ring `rx` that are not `endpoint`'s to the host
/// TX ring `host` (zero copy), up to the first datagram of the endpoint, which stays at the
/// cursor. Syncs `host` when it queued frames. Returns whether the endpoint's datagram
/// waits at the cursor.
pub(crate) fn foreign_to_host(
    rx: &mut RxRing,
    host: &mut TxRing,
    endpoint: &mut Endpoint,
) -> Result<bool, Error> {
    let mut ours = false;
    loop {
        match rx.peek() {
            None => break,
            // A corrupt slot: consumed and logged by peek.
            Some(Err(_)) => {
                endpoint.stats.malformed += 1;
                continue;
            }
            Some(Ok(f)) => {
                if !endpoint.is_foreign(&f) {
                    ours = true;
                    break;
                }
            }
        }
        move_one(rx, host, &mut endpoint.stats)?;
    }
    if host.pending() > 0 {
        host.sync()?;
    }
    Ok(ours)
}

/// Moves the frame at `rx`'s cursor to `host` (zero copy, or a copy where the rings do not
/// share memory); syncs `host` once when it is full, then drops the frame (counted).
fn move_one(rx: &mut RxRing, host: &mut TxRing, stats: &mut UdpStats) -> Result<(), Error> {
    for attempt in 0..2 {
        match forward_filtered(rx, host, 1, |_| true) {
            Ok(1) => {
                stats.to_host += 1;
                return Ok(());
            }
            Ok(_) if attempt == 0 => host.sync()?,
            Ok(_) => break,
            Err(Error::MemoryMismatch) => {
                if let Some(Ok(f)) = rx.peek() {
                    copy_to_host(host, &f, stats);
                }
                rx.consume();
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    rx.consume();
    stats.bridge_dropped += 1;
    Ok(())
}

/// Puts everything the host stack sent (host RX ring `host`) on NIC TX ring `nic`, zero
/// copy (copied where the rings do not share memory); syncs `nic` once when it is full and
/// drops what still does not fit (counted). Hands both rings to the kernel when it moved
/// anything.
pub(crate) fn host_to_nic(
    host: &mut RxRing,
    nic: &mut TxRing,
    stats: &mut UdpStats,
) -> Result<(), Error> {
    if host.available() == 0 {
        return Ok(());
    }
    let mut synced = false;
    loop {
        let n = match zero_copy_forward(host, nic, usize::MAX) {
            Ok(n) => n,
            Err(Error::MemoryMismatch) => copy_all(host, nic, stats)?,
            Err(e) => return Err(e),
        };
        stats.from_host += n as u64;
        if host.available() == 0 {
            break;
        }
        if synced {
            while host.consume() {
                stats.bridge_dropped += 1;
            }
            break;
        }
        nic.sync()?;
        synced = true;
    }
    nic.sync()?;
    host.sync()
}

/// Copies frames from `rx` to `tx` while `tx` has room; returns how many. A frame `tx`
/// cannot take (too long for its buffers) is dropped (counted).
fn copy_all(rx: &mut RxRing, tx: &mut TxRing, stats: &mut UdpStats) -> Result<usize, Error> {
    let mut n = 0;
    while let Some(f) = rx.peek() {
        let Ok(f) = f else { continue };
        match tx.send(f.payload()) {
            Ok(()) => n += 1,
            Err(Error::InsufficientSpace) => break,
            Err(Error::PacketTooLarge(_)) => stats.bridge_dropped += 1,
            Err(e) => return Err(e),
        }
        rx.consume();
    }
    Ok(n)
}

/// The host rings of a bridged synchronous endpoint.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// The host RX rings (what the host stack sends).
    pub(crate) host_rx: Vec<RxRing>,
    /// The host TX ring frames for the host stack go to.
    pub(crate) host_tx: TxRing,
}

/// Splits a port's rings into NIC rings and a [`Bridge`] of its host rings: `None` when
/// the registration has no host rings, or only host rings (`eth0^`: served as any port).
pub(crate) fn split(
    rx: Vec<RxRing>,
    tx: Vec<TxRing>,
) -> (Vec<RxRing>, Vec<TxRing>, Option<Bridge>) {
    let has_nic = rx.iter().any(|r| !r.is_host()) && tx.iter().any(|r| !r.is_host());
    let has_host = rx.iter().any(|r| r.is_host()) && tx.iter().any(|r| r.is_host());
    if !(has_nic && has_host) {
        return (rx, tx, None);
    }
    let (host_rx, rx): (Vec<_>, Vec<_>) = rx.into_iter().partition(|r| r.is_host());
    let (mut host_tx, tx): (Vec<_>, Vec<_>) = tx.into_iter().partition(|r| r.is_host());
    // Any further host TX ring stays unused (netmap gives one by default).
    let host_tx = host_tx.swap_remove(0);
    (rx, tx, Some(Bridge { host_rx, host_tx }))
}

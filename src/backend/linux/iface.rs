//! What the Linux backends need to know about a network interface before binding to it:
//! index, administrative state, MTU and queue count (`ETHTOOL_GCHANNELS`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::os;
use super::sys;
use crate::error::Error;
use crate::os::cvt;

/// A network interface as seen when a backend opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    /// Name, as given.
    pub name: String,
    /// Kernel interface index.
    pub index: u32,
    /// Whether the interface is administratively up (`IFF_UP`).
    pub up: bool,
    /// MTU in bytes (IP payload; an Ethernet frame may be 14 bytes longer).
    pub mtu: u32,
    /// Number of queues (channels): the largest of the RX, TX and combined counts reported by
    /// `ETHTOOL_GCHANNELS`, or of the `queues/rx-N` entries in sysfs, or 1.
    pub queues: u32,
}

impl Interface {
    /// Looks the interface up by name. Errors: [`Error::NoSuchInterface`].
    pub(crate) fn lookup(name: &str) -> Result<Interface, Error> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['\0', '/']) {
            return Err(Error::no_such_interface(name, "not a valid interface name"));
        }
        let cname = CString::new(name)
            .map_err(|_| Error::no_such_interface(name, "not a valid interface name"))?;
        // SAFETY: cname is a valid NUL-terminated string for the duration of the call.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(Error::no_such_interface(name, "no interface has this name"));
        }
        let sock = os::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .or_else(|_| os::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0))
            .map_err(|e| io_context(e, "socket for interface ioctls"))?;
        let mut req = ifreq(name);
        ioctl_ifreq(&sock, libc::SIOCGIFFLAGS, &mut req)
            .map_err(|e| lookup_error(name, e, "SIOCGIFFLAGS"))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
        let mut req = ifreq(name);
        ioctl_ifreq(&sock, libc::SIOCGIFMTU, &mut req)
            .map_err(|e| lookup_error(name, e, "SIOCGIFMTU"))?;
        // SAFETY: SIOCGIFMTU filled the mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32;
        let queues = channels(&sock, name)
            .ok()
            .map(|c| c.rx_count.max(c.tx_count).max(c.combined_count))
            .filter(|&n| n > 0)
            .or_else(|| sysfs_rx_queues(name))
            .unwrap_or(1);
        Ok(Interface {
            name: name.to_string(),
            index,
            up: flags & libc::IFF_UP != 0,
            mtu,
            queues,
        })
    }

    /// Like [`lookup`](Self::lookup), and also fails with [`Error::InterfaceDown`] when the
    /// interface is not up.
    pub(crate) fn lookup_up(name: &str) -> Result<Interface, Error> {
        let i = Interface::lookup(name)?;
        if !i.up {
            return Err(Error::InterfaceDown(i.name));
        }
        Ok(i)
    }

    /// Fails with [`Error::QueueOutOfRange`] unless `queue < self.queues`.
    pub(crate) fn check_queue(&self, queue: u32) -> Result<(), Error> {
        if queue >= self.queues {
            return Err(Error::QueueOutOfRange {
                interface: self.name.clone(),
                queue,
                available: self.queues,
            });
        }
        Ok(())
    }

    /// Longest Ethernet frame (without FCS) the interface sends: MTU + 14.
    pub(crate) fn max_frame(&self) -> usize {
        self.mtu as usize + 14
    }

    /// Refuses an interface whose MTU admits frames longer than `port_max` (the longest frame
    /// a port receives whole): frames are never lost or cut without a word.
    pub(crate) fn check_rx_limit(&self, port_max: usize) -> Result<(), Error> {
        if self.max_frame() > port_max {
            return Err(Error::MtuTooLarge {
                interface: self.name.clone(),
                mtu: self.mtu,
                max_frame: port_max,
            });
        }
        Ok(())
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is a C struct/union of integers, arrays and a raw pointer: all-zero is a
    // valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

fn ioctl_ifreq(sock: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq the kernel reads and writes during the call; the data
    // pointer (for SIOCETHTOOL) is set by the caller to a live buffer.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) };
    cvt(r).map(drop)
}

/// `ETHTOOL_GCHANNELS` on the interface.
fn channels(sock: &OwnedFd, name: &str) -> io::Result<sys::EthtoolChannels> {
    let mut ch = sys::EthtoolChannels {
        cmd: sys::ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_data = (&mut ch as *mut sys::EthtoolChannels).cast();
    ioctl_ifreq(sock, sys::SIOCETHTOOL, &mut req)?;
    Ok(ch)
}

fn sysfs_rx_queues(name: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    let n = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32;
    (n > 0).then_some(n)
}

fn lookup_error(name: &str, e: io::Error, op: &str) -> Error {
    if e.raw_os_error() == Some(libc::ENODEV) {
        Error::no_such_interface(name, format!("{op}: ENODEV"))
    } else {
        io_context(e, &format!("{op} on {name}"))
    }
}

/// An [`Error::Io`] whose message names the operation as well as the OS error.
pub(crate) fn io_context(e: io::Error, what: &str) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_nonsense_is_not() {
        let lo = Interface::lookup("lo").expect("lo exists on Linux");
        assert_eq!(lo.index, 1);
        assert!(lo.mtu >= 1500);
        assert!(lo.queues >= 1);
        let e = Interface::lookup("nmrs-nope0").unwrap_err();
        assert!(
            matches!(e, Error::NoSuchInterface { ref name, .. } if name == "nmrs-nope0"),
            "{e}"
        );
        assert!(e.to_string().contains("ip link show"));
        let e = Interface::lookup("this-name-is-too-long").unwrap_err();
        assert!(matches!(e, Error::NoSuchInterface { .. }));
        assert!(matches!(
            lo.check_queue(lo.queues),
            Err(Error::QueueOutOfRange { queue, available, .. }) if queue == lo.queues && available == lo.queues
        ));
    }
}

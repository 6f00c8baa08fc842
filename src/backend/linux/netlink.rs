//! rtnetlink for XDP: which program an interface has (`RTM_GETLINK` → `IFLA_XDP`), and
//! attaching/detaching a program by fd (`RTM_SETLINK` with `IFLA_XDP_FD`/`IFLA_XDP_FLAGS`) for
//! kernels without XDP BPF links (before 5.9).

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, OwnedFd};

use super::os;
use super::sys;

/// What netlink reports about the XDP program(s) of an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct XdpState {
    /// `XDP_ATTACHED_*`: none, driver, generic (skb), hardware or several.
    pub attached: u8,
    /// Id of the attached program (0 when none, or when several are attached).
    pub prog_id: u32,
    /// Id of the native-mode program, if reported.
    pub drv_prog_id: u32,
    /// Id of the generic-mode program, if reported.
    pub skb_prog_id: u32,
}

impl XdpState {
    /// Whether any XDP program is attached.
    pub(crate) fn any(&self) -> bool {
        self.attached != sys::XDP_ATTACHED_NONE
    }

    /// One id of an attached program (the single one, else native, else generic), or 0.
    pub(crate) fn some_id(&self) -> u32 {
        [self.prog_id, self.drv_prog_id, self.skb_prog_id]
            .into_iter()
            .find(|&i| i != 0)
            .unwrap_or(0)
    }

    /// Whether the program with kernel id `id` is attached in any mode.
    pub(crate) fn has(&self, id: u32) -> bool {
        id != 0 && [self.prog_id, self.drv_prog_id, self.skb_prog_id].contains(&id)
    }
}

/// A failed netlink request: the errno and the kernel's extended-ACK message, if any.
#[derive(Debug)]
pub(crate) struct NlError {
    /// The OS error.
    pub error: io::Error,
    /// The extended ACK text (`NLMSGERR_ATTR_MSG`), empty when the kernel sent none.
    pub message: String,
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{} ({})", self.error, self.message)
        }
    }
}

impl From<io::Error> for NlError {
    fn from(error: io::Error) -> Self {
        NlError {
            error,
            message: String::new(),
        }
    }
}

pub(super) fn open() -> io::Result<OwnedFd> {
    let fd = os::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    // Extended ACKs carry the kernel's reason text; capped ACKs keep replies short. Both are
    // optional (older kernels lack them).
    let _ = os::setsockopt(fd.as_fd(), libc::SOL_NETLINK, sys::NETLINK_EXT_ACK, &1i32);
    let _ = os::setsockopt(fd.as_fd(), libc::SOL_NETLINK, sys::NETLINK_CAP_ACK, &1i32);
    Ok(fd)
}

pub(super) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

pub(super) fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_ne_bytes());
}
pub(super) fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_ne_bytes());
}

/// A request: `nlmsghdr` + `ifinfomsg` for `ifindex`, attributes appended by the caller.
pub(super) fn link_request(msg_type: u16, flags: u16, ifindex: u32, seq: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    put_u32(&mut b, 0); // nlmsg_len, patched in finish()
    put_u16(&mut b, msg_type);
    put_u16(&mut b, flags);
    put_u32(&mut b, seq);
    put_u32(&mut b, 0); // nlmsg_pid: the kernel
                        // ifinfomsg: family (u8), pad (u8), type (u16), index (i32), flags (u32), change (u32)
    b.push(libc::AF_UNSPEC as u8);
    b.push(0);
    put_u16(&mut b, 0);
    put_u32(&mut b, ifindex);
    put_u32(&mut b, 0);
    put_u32(&mut b, 0);
    b
}

pub(super) fn finish(mut b: Vec<u8>) -> Vec<u8> {
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b
}

/// Iterates `(type without flags, payload)` over the attributes in `buf`.
pub(super) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < sys::NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & sys::NLA_TYPE_MASK;
        if len < sys::NLA_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[sys::NLA_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, payload))
    })
}

pub(super) fn u32_of(p: &[u8]) -> u32 {
    p.get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// Iterates `(type, flags, payload)` over the whole messages in `buf` (stops at a truncated
/// or malformed one).
pub(super) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u16, &[u8])> {
    let hdr = size_of::<libc::nlmsghdr>();
    std::iter::from_fn(move || {
        if buf.len() < hdr {
            return None;
        }
        let len = u32_of(&buf[0..4]) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        if len < hdr || len > buf.len() {
            return None;
        }
        let payload = &buf[hdr..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, flags, payload))
    })
}

/// The outcome an `NLMSG_ERROR` message's payload reports: `Ok` for an ACK (code 0).
pub(super) fn ack(payload: &[u8], flags: u16) -> Result<(), NlError> {
    let code = i32::from_ne_bytes(
        payload
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 4]),
    );
    match code {
        0 => Ok(()),
        _ => Err(error_ack(payload, flags, code)),
    }
}

/// Parses one reply: `Ok(Some(payload))` for a data message of `want_type`, `Ok(None)` for a
/// successful ACK, `Err` for an error ACK.
fn parse_reply(buf: &[u8], want_type: u16) -> Result<Option<Vec<u8>>, NlError> {
    for (ty, flags, payload) in messages(buf) {
        if ty == libc::NLMSG_ERROR as u16 {
            return ack(payload, flags).map(|()| None);
        }
        if ty == want_type {
            return Ok(Some(payload.to_vec()));
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected rtnetlink reply").into())
}

/// The error an `NLMSG_ERROR` message with a non-zero `code` carries (its extended-ACK text,
/// when the kernel sent one).
pub(super) fn error_ack(payload: &[u8], flags: u16, code: i32) -> NlError {
    let hdr = size_of::<libc::nlmsghdr>();
    // nlmsgerr: error (4) + the request's nlmsghdr (16, capped) + TLVs.
    let mut message = String::new();
    if flags & sys::NLM_F_ACK_TLVS != 0 && payload.len() > 4 + hdr {
        for (t, p) in attrs(&payload[4 + hdr..]) {
            if t == sys::NLMSGERR_ATTR_MSG {
                let end = p.iter().position(|&c| c == 0).unwrap_or(p.len());
                message = String::from_utf8_lossy(&p[..end]).into_owned();
            }
        }
    }
    NlError {
        error: io::Error::from_raw_os_error(-code),
        message,
    }
}

pub(super) fn roundtrip(req: &[u8], want_type: u16) -> Result<Option<Vec<u8>>, NlError> {
    let fd = open()?;
    os::send(fd.as_fd(), req)?;
    let mut buf = vec![0u8; 32 * 1024];
    let n = os::recv(fd.as_fd(), &mut buf)?;
    parse_reply(&buf[..n], want_type)
}

/// The XDP state of interface `ifindex`.
pub(crate) fn xdp_query(ifindex: u32) -> Result<XdpState, NlError> {
    let req = finish(link_request(
        libc::RTM_GETLINK,
        libc::NLM_F_REQUEST as u16,
        ifindex,
        1,
    ));
    let payload = roundtrip(&req, libc::RTM_NEWLINK)?.ok_or_else(|| {
        NlError::from(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_GETLINK without data",
        ))
    })?;
    let mut st = XdpState::default();
    let ifinfo = size_of::<libc::ifinfomsg>();
    if payload.len() < ifinfo {
        return Ok(st);
    }
    for (ty, p) in attrs(&payload[ifinfo..]) {
        if ty != sys::IFLA_XDP {
            continue;
        }
        for (t, v) in attrs(p) {
            match t {
                sys::IFLA_XDP_ATTACHED => st.attached = v.first().copied().unwrap_or(0),
                sys::IFLA_XDP_PROG_ID => st.prog_id = u32_of(v),
                sys::IFLA_XDP_DRV_PROG_ID => st.drv_prog_id = u32_of(v),
                sys::IFLA_XDP_SKB_PROG_ID => st.skb_prog_id = u32_of(v),
                _ => {}
            }
        }
    }
    Ok(st)
}

/// Attaches program `prog_fd` to `ifindex` with `flags` (`XDP_FLAGS_*`), or detaches with
/// `prog_fd = -1` (the mode bit in `flags` must match the attached program's mode). With
/// `expected_fd`, the change applies only if that program is the one attached
/// (`XDP_FLAGS_REPLACE` + `IFLA_XDP_EXPECTED_FD`, kernel 5.7+).
pub(crate) fn xdp_set(
    ifindex: u32,
    prog_fd: i32,
    flags: u32,
    expected_fd: Option<i32>,
) -> Result<(), NlError> {
    let mut b = link_request(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        ifindex,
        2,
    );
    // IFLA_XDP { IFLA_XDP_FD: s32, IFLA_XDP_FLAGS: u32 [, IFLA_XDP_EXPECTED_FD: s32] }.
    let flags = flags
        | if expected_fd.is_some() {
            sys::XDP_FLAGS_REPLACE
        } else {
            0
        };
    let nested_len = 4 + 8 + 8 + if expected_fd.is_some() { 8 } else { 0 };
    put_u16(&mut b, nested_len);
    put_u16(&mut b, sys::IFLA_XDP | sys::NLA_F_NESTED);
    put_u16(&mut b, 8);
    put_u16(&mut b, sys::IFLA_XDP_FD);
    b.extend_from_slice(&prog_fd.to_ne_bytes());
    put_u16(&mut b, 8);
    put_u16(&mut b, sys::IFLA_XDP_FLAGS);
    put_u32(&mut b, flags);
    if let Some(fd) = expected_fd {
        put_u16(&mut b, 8);
        put_u16(&mut b, sys::IFLA_XDP_EXPECTED_FD);
        b.extend_from_slice(&fd.to_ne_bytes());
    }
    roundtrip(&finish(b), 0).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_query_parses() {
        // Needs no privilege: any process may read link attributes.
        let st = xdp_query(1).expect("RTM_GETLINK on lo");
        assert!(!st.any() || st.some_id() != 0);
    }

    #[test]
    fn error_ack_carries_errno_and_message() {
        // An NLMSG_ERROR with -EBUSY, a capped request header and an extack message TLV.
        let mut b = Vec::new();
        let msg = b"busy here\0";
        let total = 16 + 4 + 16 + align4(4 + msg.len());
        put_u32(&mut b, total as u32);
        put_u16(&mut b, libc::NLMSG_ERROR as u16);
        put_u16(&mut b, sys::NLM_F_ACK_TLVS);
        put_u32(&mut b, 2);
        put_u32(&mut b, 0);
        b.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        put_u16(&mut b, (4 + msg.len()) as u16);
        put_u16(&mut b, sys::NLMSGERR_ATTR_MSG);
        b.extend_from_slice(msg);
        b.resize(total, 0);
        let e = parse_reply(&b, 0).unwrap_err();
        assert_eq!(e.error.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(e.message, "busy here");
        // A truncated message is rejected, not read past its end.
        assert!(parse_reply(&b[..10], 0).is_err());
    }
}

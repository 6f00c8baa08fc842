//! The netmap port-name grammar, parsed into a typed [`PortSpec`] before any system call.
//!
//! ```text
//! [netmap: | xdp: | afpacket:]<interface>[<rings>][/<flags>][@<mem>][#<filter>]
//!   interface: eth0 | vale<ID>:<port> | <parent>{<pipe-id> | <parent>}<pipe-id>
//!   rings:     (none) all NIC rings | ^ host rings | ^N one host ring
//!              | * NIC and host rings | -N one NIC ring
//!   flags:     x exclusive, z zero-copy monitor, t tx monitor, r rx monitor,
//!              T tx rings only, R rx rings only
//!   mem:       a memory allocator id (decimal)
//!   filter:    udp=PORT[,PORT...] and/or ether=TYPE[,TYPE...], comma-separated
//!              (xdp: and afpacket: only; see [`XdpFilter`])
//! ```
//!
//! The registration mode goes into `nr_mode` and the flags into `nr_flags`; a mode is never
//! OR-ed into the flags.
//!
//! The prefix picks the packet engine ([`NamePrefix`]): `netmap:` the netmap module, `xdp:` an
//! AF_XDP socket per queue (`xdp:eth0-2` is queue 2), `afpacket:` one AF_PACKET socket for the
//! whole interface. A bare name lets the backend choice decide. The Linux sockets carry
//! interfaces only: host rings, VALE ports, pipes, monitors and `@mem` are netmap features and
//! are refused on `xdp:`/`afpacket:` names with the reason.

use std::fmt;

use crate::abi;

mod filter;
use crate::error::Error;
pub use filter::{XdpFilter, MAX_ETHERTYPES};

/// What kind of netmap port a name designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    /// A network interface (`eth0`).
    Nic,
    /// A port of a VALE software switch (`vale0:p1`).
    Vale {
        /// Switch name, `vale` plus its id (`vale0`).
        switch: String,
        /// Port name on the switch (`p1`).
        port: String,
    },
    /// One end of a netmap pipe (`x{1` master, `x}1` slave).
    Pipe {
        /// The parent port name (`x`).
        parent: String,
        /// The pipe identifier (any text, `1` or `foo`).
        id: String,
        /// Which end.
        role: PipeRole,
    },
}

/// The two ends of a netmap pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PipeRole {
    /// `{`: the master end.
    Master,
    /// `}`: the slave end.
    Slave,
}

impl PipeRole {
    /// The other end.
    pub fn peer(self) -> PipeRole {
        match self {
            PipeRole::Master => PipeRole::Slave,
            PipeRole::Slave => PipeRole::Master,
        }
    }
}

/// The packet engine a name asks for by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NamePrefix {
    /// No prefix: the backend choice decides (netmap when `/dev/netmap` exists, else AF_XDP,
    /// else AF_PACKET for interfaces; see [`crate::BackendChoice`]).
    #[default]
    Bare,
    /// `netmap:`: the netmap module (the emulated backend for pipes without it).
    Netmap,
    /// `xdp:`: AF_XDP sockets (Linux).
    Xdp,
    /// `afpacket:`: an AF_PACKET socket (Linux).
    AfPacket,
}

impl NamePrefix {
    /// The prefix text, with its colon (`""` for a bare name).
    pub fn as_str(self) -> &'static str {
        match self {
            NamePrefix::Bare => "",
            NamePrefix::Netmap => "netmap:",
            NamePrefix::Xdp => "xdp:",
            NamePrefix::AfPacket => "afpacket:",
        }
    }

    /// Splits a known prefix off `name`.
    fn split(name: &str) -> (NamePrefix, &str) {
        for p in [NamePrefix::Netmap, NamePrefix::Xdp, NamePrefix::AfPacket] {
            if let Some(rest) = name.strip_prefix(p.as_str()) {
                return (p, rest);
            }
        }
        (NamePrefix::Bare, name)
    }

    /// Whether the prefix names a Linux socket engine (AF_XDP or AF_PACKET).
    pub fn is_linux_socket(self) -> bool {
        matches!(self, NamePrefix::Xdp | NamePrefix::AfPacket)
    }
}

/// Which rings a registration binds (`nr_mode`, with `nr_ringid` for the single-ring modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingSelect {
    /// All hardware (NIC) rings: no suffix.
    AllNic,
    /// All host-stack rings: `^`.
    Host,
    /// One host-stack ring: `^N`.
    OneHost(u16),
    /// All NIC rings and all host rings: `*`.
    NicAndHost,
    /// One NIC ring: `-N`.
    OneNic(u16),
}

impl RingSelect {
    /// The `NR_REG_*` value for `nr_mode`.
    pub fn mode(self) -> u32 {
        match self {
            RingSelect::AllNic => abi::NR_REG_ALL_NIC,
            RingSelect::Host => abi::NR_REG_SW,
            RingSelect::OneHost(_) => abi::NR_REG_ONE_SW,
            RingSelect::NicAndHost => abi::NR_REG_NIC_SW,
            RingSelect::OneNic(_) => abi::NR_REG_ONE_NIC,
        }
    }

    /// The value for `nr_ringid`.
    pub fn ring_id(self) -> u16 {
        match self {
            RingSelect::OneHost(n) | RingSelect::OneNic(n) => n,
            _ => 0,
        }
    }

    /// Whether host-stack rings are included.
    pub fn includes_host(self) -> bool {
        matches!(
            self,
            RingSelect::Host | RingSelect::OneHost(_) | RingSelect::NicAndHost
        )
    }
}

/// A parsed netmap port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The prefix the name was given with (`Bare` when none; an opened port reports the
    /// engine it got).
    pub prefix: NamePrefix,
    /// The interface part that goes into `nr_name` (`eth0`, `vale0:p1`, `x{1`).
    pub ifname: String,
    /// What kind of port it is.
    pub kind: PortKind,
    /// Which rings to bind.
    pub rings: RingSelect,
    /// `NR_*` registration flags from the `/` suffix.
    pub flags: u64,
    /// Memory allocator id from the `@` suffix (0: the port's default).
    pub mem_id: u16,
    /// The packets the port takes from its interface, from the `#` suffix or
    /// [`NetmapBuilder::filter`](crate::NetmapBuilder::filter) (`None`: all of them).
    pub filter: Option<XdpFilter>,
}

const FLAG_CHARS: &[(char, u64)] = &[
    ('x', abi::NR_EXCLUSIVE),
    ('z', abi::NR_ZCOPY_MON),
    ('t', abi::NR_MONITOR_TX),
    ('r', abi::NR_MONITOR_RX),
    ('R', abi::NR_RX_RINGS_ONLY),
    ('T', abi::NR_TX_RINGS_ONLY),
];

fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidPortName {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn parse_num(name: &str, digits: &str, what: &str) -> Result<u16, Error> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            name,
            format!("{what} must be a decimal number, found {digits:?}"),
        ));
    }
    digits
        .parse::<u16>()
        .map_err(|_| bad(name, format!("{what} {digits} is out of range (0..=65535)")))
}

impl PortSpec {
    /// Parses a netmap port name.
    ///
    /// ```
    /// use netmap_rs::port_name::{PortSpec, RingSelect};
    /// let spec = PortSpec::parse("netmap:eth0-2/x").unwrap();
    /// assert_eq!(spec.ifname, "eth0");
    /// assert_eq!(spec.rings, RingSelect::OneNic(2));
    /// assert!(PortSpec::parse("eth0/q").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<PortSpec, Error> {
        let full = name;
        let (prefix, rest) = NamePrefix::split(name);
        if rest.is_empty() {
            return Err(bad(full, "the interface name is empty"));
        }
        if let Some(c) = rest
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '\0')
        {
            return Err(bad(full, format!("contains the character {c:?}")));
        }
        // The filter is the last suffix: everything after the first '#'.
        let (rest, filter) = match rest.split_once('#') {
            Some((r, f)) => (
                r,
                Some(XdpFilter::parse_terms(f).map_err(|e| bad(full, e))?),
            ),
            None => (rest, None),
        };
        // The interface part runs up to the first suffix character.
        let end = rest.find(['-', '*', '^', '/', '@']).unwrap_or(rest.len());
        let ifname = &rest[..end];
        let mut tail = &rest[end..];
        if ifname.is_empty() {
            return Err(bad(full, "the interface name is empty"));
        }
        if ifname.len() >= abi::NETMAP_REQ_IFNAMSIZ {
            return Err(bad(
                full,
                format!(
                    "the interface part is {} bytes; netmap allows at most {}",
                    ifname.len(),
                    abi::NETMAP_REQ_IFNAMSIZ - 1
                ),
            ));
        }
        let kind = Self::classify(full, ifname)?;

        // Ring selection.
        let rings = if let Some(t) = tail.strip_prefix('^') {
            let n = t.find(['/', '@']).unwrap_or(t.len());
            let (digits, after) = t.split_at(n);
            tail = after;
            if digits.is_empty() {
                RingSelect::Host
            } else {
                RingSelect::OneHost(parse_num(full, digits, "host ring number")?)
            }
        } else if let Some(t) = tail.strip_prefix('*') {
            tail = t;
            RingSelect::NicAndHost
        } else if let Some(t) = tail.strip_prefix('-') {
            let n = t.find(['/', '@']).unwrap_or(t.len());
            let (digits, after) = t.split_at(n);
            tail = after;
            RingSelect::OneNic(parse_num(full, digits, "ring number")?)
        } else {
            RingSelect::AllNic
        };

        // Flags.
        let mut flags = 0u64;
        if let Some(t) = tail.strip_prefix('/') {
            let n = t.find('@').unwrap_or(t.len());
            let (chars, after) = t.split_at(n);
            tail = after;
            if chars.is_empty() {
                return Err(bad(full, "'/' must be followed by flags (x z t r R T)"));
            }
            for c in chars.chars() {
                match FLAG_CHARS.iter().find(|(fc, _)| *fc == c) {
                    Some((_, bit)) => flags |= bit,
                    None => {
                        return Err(bad(
                            full,
                            format!("unknown flag {c:?} (known: x z t r R T)"),
                        ))
                    }
                }
            }
        }

        // Memory id.
        let mut mem_id = 0;
        if let Some(t) = tail.strip_prefix('@') {
            mem_id = parse_num(full, t, "memory id")?;
            tail = "";
        }
        if !tail.is_empty() {
            return Err(bad(
                full,
                format!("unexpected text {tail:?} after the rings"),
            ));
        }
        if matches!(kind, PortKind::Pipe { .. })
            && !matches!(rings, RingSelect::AllNic | RingSelect::OneNic(_))
        {
            return Err(bad(
                full,
                "pipes have no host rings: use no suffix or -N with a pipe",
            ));
        }
        if prefix.is_linux_socket() {
            Self::check_socket_name(full, prefix, &kind, rings, flags, mem_id)?;
        }
        if filter.is_some() && !matches!(kind, PortKind::Nic) {
            return Err(bad(
                full,
                "a #filter selects packets an interface receives; VALE ports and pipes have \
                 none: drop the # suffix",
            ));
        }
        Ok(PortSpec {
            prefix,
            ifname: ifname.to_string(),
            kind,
            rings,
            flags,
            mem_id,
            filter,
        })
    }

    /// What `xdp:` and `afpacket:` names may ask for: an interface, a queue (AF_XDP), TX- or
    /// RX-only and exclusive.
    fn check_socket_name(
        full: &str,
        prefix: NamePrefix,
        kind: &PortKind,
        rings: RingSelect,
        flags: u64,
        mem_id: u16,
    ) -> Result<(), Error> {
        let p = prefix.as_str();
        let module = "which the netmap kernel module provides (modprobe netmap, then use a \
                      netmap: name)";
        match kind {
            PortKind::Nic => {}
            PortKind::Vale { .. } => {
                return Err(bad(
                    full,
                    format!("{p} names an interface; VALE switches are netmap ports, {module}"),
                ))
            }
            PortKind::Pipe { .. } => {
                return Err(bad(
                    full,
                    format!("{p} names an interface; pipes are netmap ports, {module}"),
                ))
            }
        }
        if rings.includes_host() {
            return Err(bad(
                full,
                format!(
                    "{p} has no host-stack rings (^, ^N, *): they are a netmap feature, {module}"
                ),
            ));
        }
        if prefix == NamePrefix::AfPacket && matches!(rings, RingSelect::OneNic(_)) {
            return Err(bad(
                full,
                "afpacket: sees every queue of the interface; drop the -N suffix, use xdp:IF-N \
                 for one queue, or spread the interface over rings with \
                 NetmapBuilder::num_rx_rings(n) (a PACKET_FANOUT group; build_per_ring opens \
                 afpacket:IF-0, -1, ...)",
            ));
        }
        let monitors = abi::NR_ZCOPY_MON | abi::NR_MONITOR_TX | abi::NR_MONITOR_RX;
        if flags & monitors != 0 {
            return Err(bad(
                full,
                format!("{p} has no monitor ports (z t r), {module}"),
            ));
        }
        if mem_id != 0 {
            return Err(bad(
                full,
                format!(
                    "{p} ports have memory of their own; @mem selects a netmap allocator, {module}"
                ),
            ));
        }
        Ok(())
    }

    fn classify(full: &str, ifname: &str) -> Result<PortKind, Error> {
        if let Some(pos) = ifname.find(['{', '}']) {
            let parent = &ifname[..pos];
            let id = &ifname[pos + 1..];
            if parent.is_empty() {
                return Err(bad(full, "a pipe needs a parent name before '{' or '}'"));
            }
            if id.is_empty() {
                return Err(bad(full, "a pipe needs an identifier after '{' or '}'"));
            }
            if id.contains(['{', '}']) {
                return Err(bad(full, "a pipe name has one '{' or '}'"));
            }
            let role = if ifname.as_bytes()[pos] == b'{' {
                PipeRole::Master
            } else {
                PipeRole::Slave
            };
            return Ok(PortKind::Pipe {
                parent: parent.to_string(),
                id: id.to_string(),
                role,
            });
        }
        if ifname.starts_with("vale") {
            if let Some((switch, port)) = ifname.split_once(':') {
                if port.is_empty() {
                    return Err(bad(full, "a VALE name needs a port after ':' (vale0:p1)"));
                }
                return Ok(PortKind::Vale {
                    switch: switch.to_string(),
                    port: port.to_string(),
                });
            }
        }
        if ifname.contains(':') {
            return Err(bad(
                full,
                "':' is only allowed in VALE names (valeX:port) and the netmap: prefix",
            ));
        }
        Ok(PortKind::Nic)
    }

    /// Whether this names a pipe end.
    pub fn is_pipe(&self) -> bool {
        matches!(self.kind, PortKind::Pipe { .. })
    }

    /// Whether this names a VALE port.
    pub fn is_vale(&self) -> bool {
        matches!(self.kind, PortKind::Vale { .. })
    }
}

impl fmt::Display for PortSpec {
    /// Formats the spec back into its name (with the prefix it has, none for a bare name),
    /// which parses back to an equal spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix.as_str(), self.ifname)?;
        match self.rings {
            RingSelect::AllNic => {}
            RingSelect::Host => f.write_str("^")?,
            RingSelect::OneHost(n) => write!(f, "^{n}")?,
            RingSelect::NicAndHost => f.write_str("*")?,
            RingSelect::OneNic(n) => write!(f, "-{n}")?,
        }
        if self.flags != 0 {
            f.write_str("/")?;
            for (c, bit) in FLAG_CHARS {
                if self.flags & bit != 0 {
                    write!(f, "{c}")?;
                }
            }
        }
        if self.mem_id != 0 {
            write!(f, "@{}", self.mem_id)?;
        }
        if let Some(filter) = &self.filter {
            write!(f, "#{filter}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

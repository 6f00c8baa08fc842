//! What the kernel (and the driver) dropped or refused: [`PortStats`], one type for every
//! backend. A counter the backend cannot count is `None`, never a made-up 0.

/// Drop and error counters of a port ([`Netmap::stats`](crate::Netmap::stats)) or of one
/// of its rings ([`Netmap::ring_stats`](crate::Netmap::ring_stats)), counted since the port
/// was opened.
///
/// Each field names the kernel counter it is. `None`: this backend (or this kernel) does not
/// count it; the netmap module and the emulated pipes count none of these (a pipe never
/// drops: a full ring holds the sender back).
///
/// | field | AF_XDP (`XDP_STATISTICS`, per queue) | AF_PACKET (`PACKET_STATISTICS`) |
/// |---|---|---|
/// | `rx_packets` | — | `tp_packets` (includes `tp_drops`) |
/// | `rx_ring_full` | `rx_ring_full` | `tp_drops` |
/// | `rx_dropped` | `rx_dropped` | — |
/// | `rx_invalid` | `rx_invalid_descs` | — |
/// | `rx_fill_empty` | `rx_fill_ring_empty_descs` | — |
/// | `rx_truncated` | — | counted by this crate |
/// | `rx_freeze` | — | `tp_freeze_q_cnt` (`TPACKET_V3` only: `None`) |
/// | `tx_invalid` | `tx_invalid_descs` | — |
/// | `tx_ring_empty` | `tx_ring_empty_descs` | — |
///
/// Kernels before 5.9 report only the first three AF_XDP counters (`rx_dropped`,
/// `rx_invalid_descs`, `tx_invalid_descs`); the others are `None` there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortStats {
    /// Packets the kernel handed to the socket, dropped ones included (AF_PACKET
    /// `tp_packets`).
    pub rx_packets: Option<u64>,
    /// Packets dropped because the receive ring was full: the application did not read fast
    /// enough (AF_XDP `rx_ring_full`, AF_PACKET `tp_drops`).
    pub rx_ring_full: Option<u64>,
    /// Packets AF_XDP dropped for another reason, mostly a frame longer than a buffer (AF_XDP
    /// `rx_dropped`).
    pub rx_dropped: Option<u64>,
    /// Invalid RX descriptors (AF_XDP `rx_invalid_descs`; 0 unless the fill ring was given a
    /// bad address).
    pub rx_invalid: Option<u64>,
    /// Times the kernel found the fill ring empty and had no buffer to receive into (AF_XDP
    /// `rx_fill_ring_empty_descs`): receive rings not released fast enough.
    pub rx_fill_empty: Option<u64>,
    /// Frames the crate dropped because the kernel cut them (AF_PACKET, `tp_snaplen <
    /// tp_len`: the MTU was raised after the port was opened; reopen the port).
    pub rx_truncated: Option<u64>,
    /// Times the kernel froze the receive queue, every block waiting for the receiver
    /// (AF_PACKET `tp_freeze_q_cnt`, on `TPACKET_V3` blocks only: `None` with
    /// `block_timeout(Duration::ZERO)`).
    pub rx_freeze: Option<u64>,
    /// TX descriptors the kernel refused (AF_XDP `tx_invalid_descs`: a bad address or a frame
    /// longer than the device takes).
    pub tx_invalid: Option<u64>,
    /// Times the kernel went to send and found the TX ring empty (AF_XDP
    /// `tx_ring_empty_descs`; counts wakeups with nothing to do, not losses).
    pub tx_ring_empty: Option<u64>,
}

impl PortStats {
    /// Every packet lost on the receive side that this backend counts (`rx_ring_full +
    /// rx_dropped + rx_truncated`, those that are `Some`); `None` when it counts none.
    pub fn rx_lost(&self) -> Option<u64> {
        [self.rx_ring_full, self.rx_dropped, self.rx_truncated]
            .into_iter()
            .flatten()
            .reduce(|a, b| a + b)
    }

    /// Field by field sum of two ports' or rings' counters (for a total over several ports,
    /// such as one per thread): `None` where either is `None`, since a total is only known
    /// when every part counts it.
    pub fn merge(&self, o: &PortStats) -> PortStats {
        let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        PortStats {
            rx_packets: add(self.rx_packets, o.rx_packets),
            rx_ring_full: add(self.rx_ring_full, o.rx_ring_full),
            rx_dropped: add(self.rx_dropped, o.rx_dropped),
            rx_invalid: add(self.rx_invalid, o.rx_invalid),
            rx_fill_empty: add(self.rx_fill_empty, o.rx_fill_empty),
            rx_truncated: add(self.rx_truncated, o.rx_truncated),
            rx_freeze: add(self.rx_freeze, o.rx_freeze),
            tx_invalid: add(self.tx_invalid, o.tx_invalid),
            tx_ring_empty: add(self.tx_ring_empty, o.tx_ring_empty),
        }
    }
}

impl std::fmt::Display for PortStats {
    /// The counters this backend has, `name value` separated by spaces (`-` when none).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = [
            ("rx_packets", self.rx_packets),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid", self.rx_invalid),
            ("rx_fill_empty", self.rx_fill_empty),
            ("rx_truncated", self.rx_truncated),
            ("rx_freeze", self.rx_freeze),
            ("tx_invalid", self.tx_invalid),
            ("tx_ring_empty", self.tx_ring_empty),
        ];
        let mut any = false;
        for (name, v) in fields {
            if let Some(v) = v {
                write!(f, "{}{name} {v}", if any { " " } else { "" })?;
                any = true;
            }
        }
        if !any {
            f.write_str("-")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::PortStats;

    #[test]
    fn none_is_not_zero_and_merges_to_none() {
        let none = PortStats::default();
        assert_eq!(none.rx_lost(), None);
        assert_eq!(none.to_string(), "-");
        let a = PortStats {
            rx_ring_full: Some(3),
            rx_dropped: Some(1),
            ..PortStats::default()
        };
        assert_eq!(a.rx_lost(), Some(4));
        assert_eq!(a.merge(&a).rx_ring_full, Some(6));
        assert_eq!(a.merge(&none).rx_ring_full, None);
        assert_eq!(a.to_string(), "rx_ring_full 3 rx_dropped 1");
    }

    /// The emulated pipes count no drop (a full ring holds the sender back): every field is
    /// `None`, through the public call, for the port and for its ring.
    #[test]
    fn the_emulated_backend_counts_nothing() {
        use crate::backend::BackendChoice;
        use crate::sync::NetmapBuilder;
        let open = |n: &str| {
            NetmapBuilder::new(n)
                .backend(BackendChoice::Emulated)
                .build()
                .unwrap()
        };
        let (a, _b) = (open("stats22{0"), open("stats22}0"));
        assert_eq!(a.stats().unwrap(), PortStats::default());
        assert_eq!(a.ring_stats(0).unwrap(), PortStats::default());
        assert!(
            a.ring_stats(1).is_err(),
            "one ring: index 1 is out of range"
        );
    }
}

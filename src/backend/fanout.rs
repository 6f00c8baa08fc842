//! How an `afpacket:` port with several rings spreads packets over them: the
//! `PACKET_FANOUT` mode of the group its sockets join.

/// The `PACKET_FANOUT` mode of an `afpacket:` port opened with
/// [`NetmapBuilder::num_rx_rings`](crate::NetmapBuilder::num_rx_rings)`(n)`: the port opens
/// `n` AF_PACKET sockets in one fanout group, RX ring `i` (and TX ring `i`) being socket `i`,
/// and the kernel picks the socket of each received packet with this mode. Set with
/// [`NetmapBuilder::fanout`](crate::NetmapBuilder::fanout); [`FanoutMode::Hash`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FanoutMode {
    /// By the flow hash of the packet (`PACKET_FANOUT_HASH`): the packets of one flow
    /// (addresses, ports) always land on the same ring, in order.
    #[default]
    Hash,
    /// Round robin over the sockets (`PACKET_FANOUT_LB`): flows are split over rings.
    LoadBalance,
    /// By the CPU that received the packet (`PACKET_FANOUT_CPU`), ring `cpu % n`.
    Cpu,
    /// At random (`PACKET_FANOUT_RND`).
    Random,
    /// By the packet's recorded receive queue (`PACKET_FANOUT_QM`), ring `queue % n`:
    /// follows the NIC's own RSS spreading.
    QueueMapping,
}

impl FanoutMode {
    /// The kernel's `PACKET_FANOUT_*` value.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn kernel_value(self) -> u32 {
        match self {
            FanoutMode::Hash => 0,
            FanoutMode::LoadBalance => 1,
            FanoutMode::Cpu => 2,
            FanoutMode::Random => 4,
            FanoutMode::QueueMapping => 5,
        }
    }
}

/// A fanout group id for a new port: the low bits of the process id and a per-process
/// counter, so ports of one process never share a group and those of other processes
/// rarely do (the kernel's ids are 16 bits, per network namespace).
pub(crate) fn new_fanout_group() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    ((std::process::id() as u16) << 6) ^ n
}

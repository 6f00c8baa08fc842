//! Opening ports on one memory: [`NetmapBuilder::share_memory_with`] and
//! [`NetmapBuilder::memory_for_ports`].

use crate::sync::builder::NetmapBuilder;
use crate::sync::port::Netmap;

impl NetmapBuilder {
    /// Opens the port on the memory of `other`, as netmap opens ports on one allocator
    /// (`@mem`): buffer `i` is then the same buffer on both ports,
    /// [`Netmap::shares_memory_with`] is true and
    /// [`zero_copy_forward`](crate::zero_copy_forward) swaps buffers between their rings
    /// instead of copying (a bridge between two interfaces without a copy by this process).
    ///
    /// AF_XDP only: two `xdp:` ports, on the same or different interfaces, share one UMEM
    /// (`XDP_SHARED_UMEM`; Linux 5.10+ across queues and interfaces), each queue socket
    /// with fill and completion rings of its own. `other` must have been opened with room
    /// for more ports ([`memory_for_ports`](Self::memory_for_ports)); this port takes its
    /// rings and buffers from that room
    /// ([`Error::MemoryExhausted`](crate::Error::MemoryExhausted) when they do not fit) and
    /// gives back at close the buffers it holds then. The memory lives while any port on it
    /// (or a builder naming it) does: the ports close in any order. Other backends fail with
    /// [`Error::CannotShareMemory`](crate::Error::CannotShareMemory), saying why and what to
    /// do instead (AF_PACKET's frames are per socket; the netmap module and emulated pipes
    /// choose their memory by name).
    ///
    /// ```no_run
    /// use netmap_rs::NetmapBuilder;
    /// let a = NetmapBuilder::new("xdp:eth0").memory_for_ports(2).build()?;
    /// let b = NetmapBuilder::new("xdp:eth1").share_memory_with(&a).build()?;
    /// assert!(a.shares_memory_with(&b));
    /// # Ok::<(), netmap_rs::Error>(())
    /// ```
    pub fn share_memory_with(mut self, other: &Netmap) -> Self {
        self.share = Some(other.inner.backend.share_with(other.name()));
        self
    }

    /// Gives the port's memory room for `ports` ports of its size (queues and slots), itself
    /// included, so that others can open on it with
    /// [`share_memory_with`](Self::share_memory_with). Default 1: the port alone. AF_XDP
    /// only (the UMEM is registered, and its pages pinned, whole at the first open: it
    /// cannot grow later); the other backends ignore it.
    pub fn memory_for_ports(mut self, ports: usize) -> Self {
        self.mem_ports = u32::try_from(ports).unwrap_or(u32::MAX);
        self
    }
}

//! [`NetmapBuilder`]: how a port is opened (name, rings, slots, backend and driver options).

use std::time::Duration;

use crate::abi;
use crate::backend::{self, BackendChoice, OpenOptions};
use crate::error::Error;
use crate::port_name::{PortSpec, RingSelect, XdpFilter};
use crate::sync::port::Netmap;

/// Builds a [`Netmap`] port.
///
/// ```no_run
/// use netmap_rs::NetmapBuilder;
/// let nm = NetmapBuilder::new("netmap:eth0").num_tx_rings(1).num_rx_rings(1).build()?;
/// # Ok::<(), netmap_rs::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder opens nothing until build() or build_per_ring()"]
pub struct NetmapBuilder {
    name: String,
    tx_rings: usize,
    rx_rings: usize,
    tx_slots: u32,
    rx_slots: u32,
    extra_bufs: u32,
    flags: u64,
    backend: Option<BackendChoice>,
    huge_pages: bool,
    fanout: Option<backend::FanoutMode>,
    block_timeout: Option<Duration>,
    filter: Option<XdpFilter>,
    busy_poll: Option<Duration>,
    /// Set by `share_memory_with` (`share.rs`).
    pub(super) share: Option<backend::ShareWith>,
    /// Set by `memory_for_ports` (`share.rs`).
    pub(super) mem_ports: u32,
}

impl NetmapBuilder {
    /// A builder for the port `name` (any netmap name: `eth0`, `netmap:eth0^`, `vale0:p1`,
    /// `pipe{1`, ...; see [`crate::port_name`]).
    pub fn new(name: &str) -> Self {
        NetmapBuilder {
            name: name.to_string(),
            tx_rings: 0,
            rx_rings: 0,
            tx_slots: 0,
            rx_slots: 0,
            extra_bufs: 0,
            flags: 0,
            backend: None,
            huge_pages: false,
            fanout: None,
            block_timeout: None,
            filter: None,
            busy_poll: None,
            share: None,
            mem_ports: 0,
        }
    }

    /// Number of TX rings to ask for (pipes and VALE ports are created with it; NICs keep
    /// their own). 0 keeps the default.
    pub fn num_tx_rings(mut self, num: usize) -> Self {
        self.tx_rings = num;
        self
    }

    /// Number of RX rings to ask for. 0 keeps the default.
    pub fn num_rx_rings(mut self, num: usize) -> Self {
        self.rx_rings = num;
        self
    }

    /// Slots per ring, both directions. 0 keeps the default.
    pub fn num_slots(mut self, slots: u32) -> Self {
        self.tx_slots = slots;
        self.rx_slots = slots;
        self
    }

    /// Slots per TX ring. 0 keeps the default.
    pub fn tx_slots(mut self, slots: u32) -> Self {
        self.tx_slots = slots;
        self
    }

    /// Slots per RX ring. 0 keeps the default.
    pub fn rx_slots(mut self, slots: u32) -> Self {
        self.rx_slots = slots;
        self
    }

    /// Extra buffers to allocate with the registration (`nr_extra_bufs`, kernel backend).
    pub fn extra_buffers(mut self, n: u32) -> Self {
        self.extra_bufs = n;
        self
    }

    /// Adds raw `NR_*` registration flags (see [`crate::abi`]), OR-ed with those of the name.
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags |= u64::from(flags);
        self
    }

    fn flag(mut self, bit: u64, on: bool) -> Self {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
        self
    }

    /// Exclusive access to the bound rings (`NR_EXCLUSIVE`, like the `/x` suffix).
    pub fn exclusive(self, on: bool) -> Self {
        self.flag(abi::NR_EXCLUSIVE, on)
    }

    /// Do not txsync from poll (`NR_NO_TX_POLL`).
    pub fn no_tx_poll(self, on: bool) -> Self {
        self.flag(abi::NR_NO_TX_POLL, on)
    }

    /// Always rxsync from poll (`NR_DO_RX_POLL`).
    pub fn do_rx_poll(self, on: bool) -> Self {
        self.flag(abi::NR_DO_RX_POLL, on)
    }

    /// Bind only the TX rings (`NR_TX_RINGS_ONLY`, like `/T`).
    pub fn tx_only(self) -> Self {
        self.flag(abi::NR_TX_RINGS_ONLY, true)
    }

    /// Bind only the RX rings (`NR_RX_RINGS_ONLY`, like `/R`).
    pub fn rx_only(self) -> Self {
        self.flag(abi::NR_RX_RINGS_ONLY, true)
    }

    /// Puts the port's buffer pool and rings on huge pages (`MAP_HUGETLB`) where this crate
    /// allocates them: the AF_XDP (the pool is the UMEM) and AF_PACKET backends. Fewer TLB
    /// misses per packet, as DPDK and xsk-rs do. When the system has too few free huge pages
    /// (`/proc/sys/vm/nr_hugepages`), the port opens on ordinary pages and an INFO event says
    /// how many to reserve; [`Netmap::uses_huge_pages`] tells which. The netmap module and
    /// the emulated pipes allocate their own memory and ignore it.
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// The `PACKET_FANOUT` mode of an `afpacket:` port: with
    /// [`num_rx_rings`](Self::num_rx_rings)`(n)` the port opens `n` AF_PACKET sockets in
    /// one fanout group, RX and TX ring `i` being socket `i`, and the kernel spreads
    /// received packets over them by `mode`. Without this call an `afpacket:` port with more
    /// than one ring uses [`FanoutMode::Hash`](backend::FanoutMode::Hash) (each flow on one
    /// ring, in order). The group id is fresh for each [`build`](Self::build); the
    /// registrations of one [`build_per_ring`](Self::build_per_ring) (named
    /// `afpacket:IF-0`, `afpacket:IF-1`, ...) share one. Other backends refuse it.
    pub fn fanout(mut self, mode: backend::FanoutMode) -> Self {
        self.fanout = Some(mode);
        self
    }

    /// How long an `afpacket:` port's kernel may hold received packets in a `TPACKET_V3`
    /// block before handing the block over (the block retire timeout, rounded up to whole
    /// milliseconds). The kernel hands a block over when it is full (64 KiB at 1 ms, 1 MiB from
    /// 16 ms on at the default ring size: about 450 or 7,000 small packets) or when this
    /// passes, with one wake-up for the whole block instead of one per
    /// packet: under light load a packet waits up to about this long (plus the kernel's timer
    /// tick) before the receiver sees it: for captures and sinks, not for request/response
    /// traffic. Default [`DEFAULT_BLOCK_TIMEOUT`](crate::DEFAULT_BLOCK_TIMEOUT), zero: no
    /// blocks (`TPACKET_V2`, one frame and one wake-up per packet, the lowest latency; also the
    /// choice with [`busy_poll`](Self::busy_poll), which cannot see packets in a block the
    /// kernel has not handed over yet). `Duration::from_millis(1)` is the finest block
    /// timeout. Other backends ignore it.
    pub fn block_timeout(mut self, timeout: Duration) -> Self {
        self.block_timeout = Some(timeout);
        self
    }

    /// Takes only the packets `filter` matches from the interface (UDP destination ports,
    /// ethertypes); everything else reaches the host stack as if the port were not open. The
    /// same as a `#` suffix on the name (`xdp:eth0#udp=53`); giving both with different
    /// filters is an error. On `xdp:` the redirect program applies it per queue; on
    /// `afpacket:` a classic BPF socket filter does. The netmap module and emulated pipes
    /// refuse it. See [`XdpFilter`] for the exact rule.
    pub fn filter(mut self, filter: XdpFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The name parsed, with the builder's filter in it.
    fn spec(&self) -> Result<PortSpec, Error> {
        let mut spec = PortSpec::parse(&self.name)?;
        if let Some(f) = &self.filter {
            let bad = |reason: String| Error::InvalidPortName {
                name: self.name.clone(),
                reason,
            };
            f.check().map_err(bad)?;
            match &spec.filter {
                Some(named) if named != f => {
                    return Err(bad(format!(
                        "the name's filter #{named} differs from NetmapBuilder::filter({f}): \
                         give one of them"
                    )))
                }
                _ => spec.filter = Some(f.clone()),
            }
        }
        Ok(spec)
    }

    /// Busy polling, for a thread that owns a core, as DPDK's poll-mode drivers run: a blocking
    /// wait ([`Netmap::wait`], [`Netmap::wait_readable`], [`Netmap::wait_writable`]) syncs the
    /// wanted directions and looks at the rings in a loop for up to `spin` before it sleeps.
    /// Lower latency and, where a sleep and a wake-up cost more than a packet (AF_XDP,
    /// AF_PACKET), higher rates, for a core at 100%. `Duration::MAX` never sleeps: a wait then
    /// ends when a ring is ready or its timeout passes.
    ///
    /// On AF_XDP it also asks the kernel to let the socket drive the queue's NAPI processing
    /// (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` of `spin` capped at 1 s, `SO_BUSY_POLL_BUDGET`
    /// 64); a kernel or device that refuses them leaves the spinning alone (logged at debug).
    /// The Tokio layer never spins (a task must yield); its waits are unchanged.
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.busy_poll = Some(spin);
        self
    }

    /// Which backend to use; without this call `NETMAP_RS_BACKEND` decides, else `Auto`.
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend = Some(choice);
        self
    }

    fn options(&self, spec: &PortSpec) -> Result<OpenOptions, Error> {
        let rings = |n: usize, what: &str| {
            u16::try_from(n).map_err(|_| {
                Error::BindFail(format!(
                    "{n} {what} rings requested; netmap takes at most 65535"
                ))
            })
        };
        let flags = spec.flags | self.flags;
        if flags & abi::NR_TX_RINGS_ONLY != 0 && flags & abi::NR_RX_RINGS_ONLY != 0 {
            return Err(Error::BindFail(
                "tx-only and rx-only together would bind no ring".into(),
            ));
        }
        Ok(OpenOptions {
            tx_rings: rings(self.tx_rings, "tx")?,
            rx_rings: rings(self.rx_rings, "rx")?,
            tx_slots: self.tx_slots,
            rx_slots: self.rx_slots,
            extra_bufs: self.extra_bufs,
            flags,
            huge_pages: self.huge_pages,
            fanout: self.fanout,
            fanout_group: None,
            block_timeout: self.block_timeout,
            share: self.share.clone(),
            mem_ports: self.mem_ports,
        })
    }

    fn choice(&self) -> Result<BackendChoice, Error> {
        match self.backend {
            Some(c) => Ok(c),
            None => BackendChoice::from_env(),
        }
    }

    /// Opens the port.
    pub fn build(self) -> Result<Netmap, Error> {
        let spec = self.spec()?;
        let opts = self.options(&spec)?;
        let nm = Netmap::open_spec(spec, &opts, self.choice()?)?;
        Ok(nm.with_busy_poll(self.busy_poll))
    }

    /// Opens the port once per NIC ring pair (`name-0`, `name-1`, ...), one registration and
    /// one file descriptor each, for thread-per-ring designs: each thread then syncs only its
    /// own rings. The name must not already select rings.
    pub fn build_per_ring(self) -> Result<Vec<Netmap>, Error> {
        let spec = self.spec()?;
        if spec.rings != RingSelect::AllNic {
            return Err(Error::InvalidPortName {
                name: self.name.clone(),
                reason: "build_per_ring opens every ring itself: give the name without a ring \
                         suffix"
                    .into(),
            });
        }
        let mut opts = self.options(&spec)?;
        let choice = self.choice()?;
        // The per-ring sockets of an afpacket: fanout port join one group.
        opts.fanout_group = Some(backend::new_fanout_group());
        // Learn the ring count from a full registration, then release it.
        let n = {
            let probe = Netmap::open_spec(spec.clone(), &opts, choice)?;
            probe.num_tx_rings().max(probe.num_rx_rings())
        };
        (0..n)
            .map(|i| {
                let mut s = spec.clone();
                s.rings = RingSelect::OneNic(i as u16);
                Ok(Netmap::open_spec(s, &opts, choice)?.with_busy_poll(self.busy_poll))
            })
            .collect()
    }
}

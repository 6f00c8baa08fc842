//! Helpers shared by the integration tests.

use netmap_rs::{Netmap, NetmapBuilder};

/// Both ends of netmap pipe `name` (`name{0` and `name}0`) with `slots` slots per ring.
#[allow(dead_code)] // not every test crate opens plain pipes
pub fn pipe(name: &str, slots: u32) -> (Netmap, Netmap) {
    let open = |n: String| NetmapBuilder::new(&n).num_slots(slots).build().unwrap();
    (open(format!("{name}{{0")), open(format!("{name}}}0")))
}

/// The packets of a pcap file written by a tap (nanosecond timestamps),
/// checking each record's captured and original lengths agree.
#[allow(dead_code)] // not every test crate reads pcap files
pub fn pcap_packets(data: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&data[..4], &0xa1b2_3c4du32.to_le_bytes(), "pcap magic");
    let word = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as usize;
    let (mut off, mut out) = (24, Vec::new());
    while off < data.len() {
        let (incl, orig) = (word(off + 8), word(off + 12));
        assert_eq!(incl, orig, "a tap records whole packets");
        out.push(data[off + 16..off + 16 + incl].to_vec());
        off += 16 + incl;
    }
    assert_eq!(off, data.len(), "no trailing bytes");
    out
}

/// Writes `netmap-rs test begin: WHAT` to the kernel log when the test runs on the netmap
/// module, and `netmap-rs test end: WHAT` when dropped (also when the test fails).
#[allow(dead_code)] // not every test crate brackets a test
pub struct KernelLogBracket(Option<&'static str>);

#[allow(dead_code)]
impl KernelLogBracket {
    /// Writes the begin line (on the kernel module only).
    pub fn new(what: &'static str) -> Self {
        let on_kernel = std::env::var("NETMAP_RS_BACKEND").as_deref() == Ok("kernel");
        let b = KernelLogBracket(on_kernel.then_some(what));
        b.log("begin");
        b
    }

    fn log(&self, edge: &str) {
        if let Some(what) = self.0 {
            use std::io::Write;
            let line = format!("netmap-rs test {edge}: {what}\n");
            if let Err(e) = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .and_then(|mut f| f.write_all(line.as_bytes()))
            {
                println!("could not write to /dev/kmsg: {e}");
            }
        }
    }
}

impl Drop for KernelLogBracket {
    fn drop(&mut self) {
        self.log("end");
    }
}

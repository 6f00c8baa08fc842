//! Helpers shared by the integration tests.

use netmap_rs::{Netmap, NetmapBuilder};

/// Both ends of netmap pipe `name` (`name{0` and `name}0`) with `slots` slots per ring.
pub fn pipe(name: &str, slots: u32) -> (Netmap, Netmap) {
    let open = |n: String| NetmapBuilder::new(&n).num_slots(slots).build().unwrap();
    (open(format!("{name}{{0")), open(format!("{name}}}0")))
}

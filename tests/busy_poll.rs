//! `NetmapBuilder::busy_poll`: blocking waits that spin before (or instead of) sleeping, on
//! netmap pipes (emulated, or the kernel's when the module is loaded).

use std::time::Duration;

use netmap_rs::prelude::*;

#[test]
fn busy_polling_waits_spin_then_sleep_and_still_time_out() {
    // Spinning for ever (no sleep), and spinning 5 ms before sleeping: both see a packet sent
    // later and both end at their timeout when none comes.
    for spin in [Duration::MAX, Duration::from_millis(5)] {
        let tag = if spin == Duration::MAX {
            "busyA"
        } else {
            "busyB"
        };
        let a = NetmapBuilder::new(&format!("{tag}{{0")).build().unwrap();
        let b = NetmapBuilder::new(&format!("{tag}}}0"))
            .busy_poll(spin)
            .build()
            .unwrap();
        assert_eq!(b.busy_poll(), Some(spin));
        assert_eq!(a.busy_poll(), None);
        let mut rx = b.rx_ring(0).unwrap();
        assert!(!b.wait_readable(Some(Duration::from_millis(20))).unwrap());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let mut tx = a.tx_ring(0).unwrap();
            tx.send(b"spin").unwrap();
            tx.sync().unwrap();
            a
        });
        assert!(b.wait_readable(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(rx.recv().unwrap().payload(), b"spin");
        drop(t.join().unwrap());
    }
}

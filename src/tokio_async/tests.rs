//! Unit tests of the readiness protocol (emulated backend).

use super::*;
use crate::backend::BackendChoice;
use crate::NetmapBuilder;
use std::future::poll_fn;
use std::time::Duration;

fn open(name: &str, rings: usize, slots: u32) -> Netmap {
    NetmapBuilder::new(name)
        .backend(BackendChoice::Emulated)
        .num_tx_rings(rings)
        .num_rx_rings(rings)
        .num_slots(slots)
        .build()
        .unwrap()
}

/// A packet delivered while nobody waits produces no signal; a wait that starts afterwards
/// must still see it (it syncs after arming) instead of sleeping on a quiet descriptor.
#[tokio::test]
async fn a_wait_sees_deliveries_made_before_it_armed() {
    let a = open("armrace{0", 1, 8);
    let b = TokioNetmap::new(open("armrace}0", 1, 8)).unwrap();
    let mut tx = a.tx_ring(0).unwrap();
    tx.send(b"quiet").unwrap();
    tx.sync().unwrap(); // no waiter armed: no signal
    let mut rx = b.rx_ring(0).unwrap();
    let mut w = Waiter::new(b.port.clone(), Dir::Rx, 0).unwrap();
    w.start(1);
    tokio::time::timeout(Duration::from_secs(2), poll_fn(|cx| w.poll(cx)))
        .await
        .expect("the wait slept on a delivery it could have seen")
        .unwrap();
    assert_eq!(rx.get_mut().recv().unwrap().payload(), b"quiet");
}

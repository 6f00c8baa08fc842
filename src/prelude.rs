//! Common imports: `use netmap_rs::prelude::*;`.

pub use crate::backend::{BackendChoice, BackendKind, PortStats, Readiness};
pub use crate::error::Error;
pub use crate::sync::{
    zero_copy_forward, BatchReservation, Frame, Netmap, NetmapBuilder, RxBatch, RxRing, TxRing,
};
#[cfg(feature = "tokio-async")]
pub use crate::tokio_async::{
    AsyncNetmapRxPort, AsyncNetmapRxRing, AsyncNetmapTxRing, NetmapFramed, TokioNetmap,
};

//! The counters MOVER_GET_STATE reports, moved by the engine thread while it runs and read
//! by the state machine and the REST view; reset in place so every reader keeps its handle.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one session's mover.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records since MOVER_STOP: during a backup, those written (across cartridges); during a
    /// recovery, the stream's record number under the head.
    pub record_num: AtomicU64,
    /// Image bytes moved between the data connection and the tape.
    pub bytes_moved: AtomicU64,
    /// What is left of the current MOVER_READ.
    pub bytes_left_to_read: AtomicU64,
}

impl Progress {
    /// Back to zero for the next operation (MOVER_STOP). In place: the registry and the
    /// state machine hold the same counters, and a replaced one would freeze their view.
    pub fn reset(&self) {
        self.record_num.store(0, Ordering::Relaxed);
        self.bytes_moved.store(0, Ordering::Relaxed);
        self.bytes_left_to_read.store(0, Ordering::Relaxed);
    }
}

//! The MOVER (spec §3.6): the state machine as plain data, the data connections (TCP and
//! in-process LOCAL), and the engine thread that streams records between them and the tape.

pub mod engine;
pub mod local;
pub mod net;
pub mod state;

pub use engine::{Command, Event, Progress, SharedDrive};
pub use state::{Mover, TapeAccess, Window, INFINITE};

//! The MOVER (spec §3.6): the state machine as plain data, and the engine thread that streams
//! records between a data connection (`crate::dataconn`) and the tape.

pub mod engine;
pub mod progress;
pub mod state;

pub use engine::{Command, Event, SharedDrive};
pub use progress::Progress;
pub use state::{Effect, Mover, MoverRequest, TapeAccess, Window, INFINITE};

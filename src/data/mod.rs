//! The DATA server (spec §3.5): its state machine as plain data and, as they land, the
//! backup and recover drivers that turn a file tree into an image stream and back.

pub mod backup;
pub mod dumpdates;
pub mod env;
pub mod recover;
pub mod state;

pub use state::DataMachine;

/// An established data connection, waiting for DATA_START_BACKUP or DATA_START_RECOVER.
#[derive(Debug)]
pub enum DataConn {
    Tcp(std::net::TcpStream),
    Local(crate::mover::local::DataEnd),
}

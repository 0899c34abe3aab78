//! The DATA server (spec §3.5): its state machine as plain data and, as they land, the
//! backup and recover drivers that turn a file tree into an image stream and back.

pub mod backup;
pub mod dumpdates;
pub mod env;
pub mod paths;
pub mod recover;
pub mod state;

pub use state::DataMachine;

/// An established data connection, waiting for DATA_START_BACKUP or DATA_START_RECOVER.
#[derive(Debug)]
pub enum DataConn {
    Tcp(std::net::TcpStream),
    Local(crate::mover::local::DataEnd),
}

/// The image formats ("backup types") the DATA server writes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Butype {
    /// BSD/Linux dump: inode history (FH_ADD_DIR + FH_ADD_NODE).
    Dump,
    /// POSIX pax: path history (FH_ADD_FILE).
    Tar,
}

impl Butype {
    pub fn parse(name: &str) -> Option<Butype> {
        match name.to_ascii_lowercase().as_str() {
            "dump" => Some(Butype::Dump),
            "tar" => Some(Butype::Tar),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Butype::Dump => "dump",
            Butype::Tar => "tar",
        }
    }
}

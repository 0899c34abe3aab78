//! The DATA server (spec §3.5): its state machine as plain data, and the backup and recover
//! drivers that turn a file tree into an image stream and back.

pub mod backup;
pub mod dumpdates;
pub mod env;
pub mod history;
pub mod paths;
pub mod post;
pub mod recover;
pub mod state;

pub use state::DataMachine;

pub use crate::dataconn::DataConn;

/// The image formats ("backup types") the DATA server writes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Butype {
    /// BSD/Linux dump: inode history (FH_ADD_DIR + FH_ADD_NODE).
    Dump,
    /// POSIX pax: path history (FH_ADD_FILE).
    Tar,
}

impl Butype {
    /// The `bu_type` of DATA_START_BACKUP or DATA_START_RECOVER, in any case; none for a
    /// type this server does not offer.
    pub fn parse(name: &str) -> Option<Butype> {
        match name.to_ascii_lowercase().as_str() {
            "dump" => Some(Butype::Dump),
            "tar" => Some(Butype::Tar),
            _ => None,
        }
    }

    /// The lower-case name, as the `TYPE` variable and the REST view's `backup_engine` give it.
    pub fn name(self) -> &'static str {
        match self {
            Butype::Dump => "dump",
            Butype::Tar => "tar",
        }
    }
}

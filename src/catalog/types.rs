//! The catalog's plain types and the open database handle, shared by the queries of
//! [`super`] and its table modules (kept apart so no table module imports the catalog back).

use rusqlite::{Connection, OptionalExtension};

/// The schema version this build writes; older catalogs are migrated up to it on open.
pub const SCHEMA_VERSION: i64 = 3;

/// Why the catalog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database failed (open, query, constraint); the text names the file.
    #[error("catalog {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The directory for the database could not be created.
    #[error("catalog directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer ndmpd whose schema this one does not know.
    #[error("catalog {path} has schema version {found}; this ndmpd knows up to {SCHEMA_VERSION}")]
    Newer {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
    },
    /// The change asked for contradicts what the catalog holds (a name taken, a server still
    /// used by a schedule, no such row); the text says what.
    #[error("{0}")]
    Refused(String),
    /// No catalog location: none given, and neither XDG_DATA_HOME nor HOME is set.
    #[error("no catalog location: give --catalog, NDMPD_CATALOG, XDG_DATA_HOME or HOME")]
    NoLocation,
}

/// How a backup ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started; a backup still in this state after its DMA is gone was cut off.
    Running,
    /// The DATA server and the mover ended successfully.
    Completed,
    /// Something went wrong; `message` says what.
    Failed,
    /// The job was aborted (DATA or mover halted ABORTED).
    Aborted,
}

impl Status {
    /// The word stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }

    /// The status a stored word names (anything unknown reads as running).
    pub fn parse(s: &str) -> Status {
        match s {
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "aborted" => Status::Aborted,
            _ => Status::Running,
        }
    }
}

/// One piece of an image: the part of the stream on one cartridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MediaPart {
    /// The cartridge's volume tag (or label); `None` when it could not be known (a drive
    /// outside any changer).
    pub cartridge: Option<String>,
    /// The tape file the part is in, from 0 at the beginning of the cartridge.
    pub file: u32,
    /// The image stream offset the part starts at.
    pub offset: u64,
}

/// What is known of a backup when it starts.
#[derive(Debug, Clone, Default)]
pub struct NewBackup {
    /// The DATA server, `host:port`.
    pub server: String,
    /// The tape server in a three-way job.
    pub tape_server: Option<String>,
    /// The path backed up.
    pub path: String,
    /// The tape drive name.
    pub drive: String,
    /// Dump level.
    pub level: u32,
    /// "dump" or "tar".
    pub butype: String,
    /// Mover record size in bytes.
    pub record_size: u32,
    /// Seconds since the epoch.
    pub started: u64,
    /// The schedule that ran it (its uuid); none for a CLI backup.
    pub schedule_id: Option<String>,
    /// The catalog server (filer) backed up, when it is one.
    pub server_id: Option<i64>,
    /// A name for people (the schedule's name and the date, for a scheduled run).
    pub name: String,
    /// A description for people.
    pub description: String,
    /// The host backed up; the host part of `server` when empty.
    pub hostname: String,
}

/// How a backup ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The end state.
    pub status: Status,
    /// Every byte of the image is on the cartridges listed.
    pub complete: bool,
    /// Bytes of the image stream.
    pub bytes: u64,
    /// DUMP_DATE from the environment DATA_GET_ENV returned.
    pub dump_date: Option<String>,
    /// Why it failed, in words.
    pub message: Option<String>,
    /// Seconds since the epoch.
    pub ended: u64,
    /// The cartridges and tape files, in stream order.
    pub media: Vec<MediaPart>,
}

/// One backup as the catalog holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backup {
    /// Its id, unique in this catalog.
    pub id: i64,
    /// The DATA server.
    pub server: String,
    /// The tape server in a three-way job.
    pub tape_server: Option<String>,
    /// The path backed up.
    pub path: String,
    /// The tape drive.
    pub drive: String,
    /// Dump level.
    pub level: u32,
    /// "dump" or "tar".
    pub butype: String,
    /// DUMP_DATE, when the DATA server gave one.
    pub dump_date: Option<String>,
    /// Mover record size in bytes.
    pub record_size: u32,
    /// Bytes of the image stream.
    pub bytes: u64,
    /// Start, seconds since the epoch.
    pub started: u64,
    /// End, seconds since the epoch; none while running.
    pub ended: Option<u64>,
    /// How it ended.
    pub status: Status,
    /// Every byte of the image is on the cartridges listed.
    pub complete: bool,
    /// Why it failed.
    pub message: Option<String>,
    /// Cartridges and tape files, in stream order.
    pub media: Vec<MediaPart>,
    /// Its id for REST clients: a random UUID, unique.
    pub uuid: String,
    /// The schedule that ran it (its uuid).
    pub schedule_id: Option<String>,
    /// The catalog server (filer) it backed up.
    pub server_id: Option<i64>,
    /// A name for people.
    pub name: String,
    /// A description for people.
    pub description: String,
    /// File history entries stored for it in `files`.
    pub files: u64,
    /// Retention dropped it: its image may be overwritten once its cartridge is recycled.
    pub expired: bool,
    /// The host backed up.
    pub hostname: String,
    /// The software that wrote it ("ndmpd 0.1.0").
    pub sw_version: String,
}

/// An open catalog.
pub struct Catalog {
    pub(super) conn: Connection,
    pub(super) path: String,
    /// The file as given to [`Catalog::open`], for [`Catalog::reopen`].
    pub(super) file: std::path::PathBuf,
}

/// A random (version 4) UUID, as text.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    // without an entropy source, the clock and pid still make ids distinct in practice
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A `rusqlite` optional row, as `Option`.
pub(crate) fn optional<T>(r: rusqlite::Result<T>) -> rusqlite::Result<Option<T>> {
    r.optional()
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

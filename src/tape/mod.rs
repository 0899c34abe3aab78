//! Tape drives behind the TAPE and MOVER servers: one `TapeDevice` trait with NDMP's tape
//! semantics (spec §3.4), implemented by file-backed virtual cartridges and Linux st drives.

pub mod library;
pub mod st;
pub mod vtape;

use std::fmt;

/// Why a tape operation did not complete. Each maps to one NDMP error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapeError {
    /// A filemark was met where a record was expected (read) or spacing stopped at one.
    #[error("filemark")]
    Eof,
    /// Logical end of medium (early warning) on write, or blank tape on read/space forward.
    #[error("end of medium")]
    Eom,
    /// Beginning of tape reached while spacing backwards.
    #[error("beginning of tape")]
    Bot,
    /// The cartridge is write-protected and the operation would write.
    #[error("write protected")]
    WriteProtected,
    /// No cartridge is in the drive, or it was unloaded.
    #[error("no tape loaded")]
    NoTape,
    /// The operation is not possible on this device (e.g. raw CDBs on a virtual tape).
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// Anything else, with the cause; also physical end of medium and CRC mismatches.
    #[error("I/O error: {0}")]
    Io(String),
}

impl From<std::io::Error> for TapeError {
    fn from(e: std::io::Error) -> Self {
        TapeError::Io(e.to_string())
    }
}

/// What a successful write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written: the whole record.
    pub bytes: usize,
    /// The write crossed the early-warning mark: the next write fails with `Eom` once, then
    /// writes succeed again until physical end of medium (spec §3.4.6).
    pub early_warning: bool,
}

/// Spacing over filemarks or records. `resid` is how many of the requested items were not
/// spaced over because the operation stopped early (at a filemark, BOT or blank tape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spaced {
    /// Items requested but not spaced over.
    pub resid: u32,
    /// Why it stopped early, if it did.
    pub stopped: Option<TapeError>,
}

/// The position and capacity figures of TAPE_GET_STATE. `None` means unknown (reported as
/// all ones, or with the matching `unsupported` bit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapeStatus {
    /// The tape file the head is in, counted from 0 at the beginning of the tape.
    pub file_num: Option<u32>,
    /// The record the head is at, counted from 0 at the start of the current file.
    pub block_no: Option<u32>,
    /// 0 = variable block size.
    pub block_size: u32,
    /// Recovered errors counted since the tape was opened.
    pub soft_errors: Option<u32>,
    /// The cartridge's capacity in bytes.
    pub total_space: Option<u64>,
    /// The capacity still free, in bytes.
    pub space_remain: Option<u64>,
    /// The cartridge may not be written.
    pub write_protected: bool,
}

/// A tape drive with a cartridge in it. Methods block; callers run them off the async
/// runtime. Positions follow real drives: after reading or spacing over a record the head is
/// on its EOT side.
pub trait TapeDevice: Send + fmt::Debug {
    /// Writes one record (one tape block in variable-block mode).
    fn write_record(&mut self, data: &[u8]) -> Result<Written, TapeError>;

    /// Writes `records` in order, stopping after one that reports early warning or at the
    /// first that fails. Returns how many were written and the error that stopped it. Devices
    /// that can write several records in one system call override it.
    fn write_records(&mut self, records: &[&[u8]]) -> (usize, Result<(), TapeError>) {
        write_each(self, records)
    }

    /// Reads the next record into `buf`. A record longer than `buf` is truncated and the
    /// excess discarded (spec §3.4.7); the full record length is returned alongside the bytes
    /// copied. At a filemark: `Err(Eof)` and the head stays on its BOT side. At blank tape:
    /// `Err(Eom)`.
    fn read_record(&mut self, buf: &mut [u8]) -> Result<(usize, usize), TapeError>;

    /// Writes `count` filemarks at the head (MTIO EOF).
    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError>;

    /// Positive counts space forward (FSF), negative backward (BSF). Forward leaves the head
    /// on the EOT side of the last filemark passed, backward on its BOT side.
    fn space_filemarks(&mut self, count: i64) -> Result<Spaced, TapeError>;

    /// Positive counts space forward (FSR), negative backward (BSR); stops at a filemark
    /// without crossing it.
    fn space_records(&mut self, count: i64) -> Result<Spaced, TapeError>;

    /// Moves the head to the beginning of the tape (MTIO REW).
    fn rewind(&mut self) -> Result<(), TapeError>;

    /// Rewinds and ejects (MTIO OFF).
    fn unload(&mut self) -> Result<(), TapeError>;

    /// Test unit ready.
    fn ready(&mut self) -> Result<(), TapeError>;

    /// The position, block size and capacity figures of TAPE_GET_STATE.
    fn status(&mut self) -> Result<TapeStatus, TapeError>;

    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), TapeError>;
}

/// `write_records` one record at a time.
pub fn write_each<D: TapeDevice + ?Sized>(
    dev: &mut D,
    records: &[&[u8]],
) -> (usize, Result<(), TapeError>) {
    for (i, r) in records.iter().enumerate() {
        match dev.write_record(r) {
            Ok(w) if w.early_warning => return (i + 1, Ok(())),
            Ok(_) => {}
            Err(e) => return (i, Err(e)),
        }
    }
    (records.len(), Ok(()))
}

//! Whole tape files between a cartridge and a byte stream: one file read out record by
//! record, or a stream appended as records and a filemark (`ndmpd vtape cat` and `append`).

use super::format::MAX_RECORD;
use super::Vtape;
use crate::tape::{TapeDevice, TapeError};
use std::io::{self, Read, Write};
use std::path::Path;

/// The largest record a cartridge holds, so the largest `record_size` of [`append_tape_file`].
pub const MAX_RECORD_SIZE: usize = MAX_RECORD;

/// Why a copy stopped. The tape and stream errors show as themselves, so a caller can print
/// them as they are.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The cartridge (opening, spacing, reading or writing it).
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// The stream on the other side.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The tape file number asked for is past the last tape file.
    #[error("{}", no_tape_file(*file, *files))]
    NoTapeFile {
        /// The number asked for (0 = the first).
        file: u32,
        /// How many tape files the cartridge holds.
        files: u64,
    },
    /// An append's record size outside 1 ..= [`MAX_RECORD_SIZE`].
    #[error("record size {0} is not 1 byte to 16 MiB")]
    RecordSize(usize),
}

/// The words of [`CopyError::NoTapeFile`]: how many tape files there are to choose from.
fn no_tape_file(file: u32, files: u64) -> String {
    match files {
        0 => format!("the cartridge is blank: there is no tape file {file}"),
        1 => format!("the cartridge has 1 tape file (number 0): there is no tape file {file}"),
        n => format!(
            "the cartridge has {n} tape files (0 to {}): there is no tape file {file}",
            n - 1
        ),
    }
}

/// Writes tape file `file` (0 = the first) of the cartridge at `path` to `out`: the data of
/// each record up to the next filemark or the end of data. Returns the bytes written. A
/// number past the last tape file is an error, not an empty file.
pub fn read_tape_file(path: &Path, file: u32, out: &mut impl Write) -> Result<u64, CopyError> {
    let mut t = Vtape::open(path, false)?;
    let files = t.tape_files();
    if u64::from(file) >= files {
        return Err(CopyError::NoTapeFile { file, files });
    }
    if file > 0 {
        let s = t.space_filemarks(i64::from(file))?;
        if s.resid > 0 {
            return Err(CopyError::NoTapeFile { file, files });
        }
    }
    // a buffer of the largest record, so no record is ever cut short
    let mut buf = vec![0u8; MAX_RECORD];
    let mut bytes = 0u64;
    loop {
        match t.read_record(&mut buf) {
            Ok((n, _)) => {
                out.write_all(&buf[..n])?;
                bytes += n as u64;
            }
            Err(TapeError::Eof) | Err(TapeError::Eom) => return Ok(bytes),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Appends everything `input` yields at the end of data of the cartridge at `path`, as
/// records of `record_size` bytes (the last one may be shorter), then one filemark, and
/// makes it durable. Returns the number of records written.
///
/// The caller holds the cartridge's lock (a session may have it open in a drive).
pub fn append_tape_file(
    path: &Path,
    input: &mut impl Read,
    record_size: usize,
) -> Result<u64, CopyError> {
    if record_size == 0 || record_size > MAX_RECORD {
        return Err(CopyError::RecordSize(record_size));
    }
    let mut t = Vtape::open(path, true)?;
    // to end of data: past every filemark, then past the records after the last one
    t.space_filemarks(i64::MAX)?;
    t.space_records(i64::MAX)?;
    let mut buf = vec![0u8; record_size];
    let mut records = 0u64;
    loop {
        // a pipe or socket hands over less than asked; only the last record may be short
        let mut n = 0;
        while n < record_size {
            match input.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        t.write_record(&buf[..n])?;
        records += 1;
        if n < record_size {
            break;
        }
    }
    t.write_filemarks(1)?;
    t.flush()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most 3 bytes per read, as a slow pipe would.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn append_then_read_back_each_tape_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("VT0001.vtape");
        Vtape::create(&path, "VT0001", 1 << 20).unwrap();
        let first: Vec<u8> = (0..25u8).collect();
        let second = b"second file".to_vec();
        assert_eq!(
            append_tape_file(&path, &mut Trickle(&first), 10).unwrap(),
            3
        );
        assert_eq!(append_tape_file(&path, &mut &second[..], 4).unwrap(), 3);
        assert_eq!(append_tape_file(&path, &mut &b""[..], 4).unwrap(), 0);

        let i = Vtape::inspect(&path).unwrap();
        let records: Vec<(u64, u32, u32)> = i
            .files
            .iter()
            .map(|f| (f.records, f.min_record, f.max_record))
            .collect();
        assert_eq!(records[..3], [(3, 5, 10), (3, 3, 4), (0, 0, 0)]);

        let mut out = Vec::new();
        assert_eq!(read_tape_file(&path, 0, &mut out).unwrap(), 25);
        assert_eq!(out, first);
        out.clear();
        assert_eq!(read_tape_file(&path, 1, &mut out).unwrap(), 11);
        assert_eq!(out, second);
        out.clear();
        assert_eq!(read_tape_file(&path, 2, &mut out).unwrap(), 0);
        assert!(out.is_empty());
        // three filemarks make three tape files, the last one empty; a fourth is not there
        let err = read_tape_file(&path, 3, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the cartridge has 3 tape files (0 to 2): there is no tape file 3"
        );
        assert!(out.is_empty());
        let err = read_tape_file(&path, 9, &mut out).unwrap_err();
        assert!(matches!(err, CopyError::NoTapeFile { file: 9, files: 3 }));
    }

    #[test]
    fn append_refuses_a_record_size_a_cartridge_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("VT0002.vtape");
        Vtape::create(&path, "VT0002", 1 << 20).unwrap();
        for size in [0, MAX_RECORD_SIZE + 1] {
            assert!(matches!(
                append_tape_file(&path, &mut &b"x"[..], size),
                Err(CopyError::RecordSize(s)) if s == size
            ));
        }
        let i = Vtape::inspect(&path).unwrap();
        assert_eq!((i.records, i.filemarks), (0, 0), "nothing written");
        let err = read_tape_file(&path, 0, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the cartridge is blank: there is no tape file 0"
        );
    }

    #[test]
    fn records_after_the_last_filemark_are_a_tape_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("VT0003.vtape");
        Vtape::create(&path, "VT0003", 1 << 20).unwrap();
        let mut t = Vtape::open(&path, true).unwrap();
        assert_eq!(t.tape_files(), 0);
        t.write_record(b"first").unwrap();
        assert_eq!(t.tape_files(), 1);
        t.write_filemarks(1).unwrap();
        assert_eq!(t.tape_files(), 1);
        t.write_record(b"unterminated").unwrap();
        assert_eq!(t.tape_files(), 2);
        t.flush().unwrap();
        drop(t);
        let mut out = Vec::new();
        read_tape_file(&path, 1, &mut out).unwrap();
        assert_eq!(out, b"unterminated");
        let err = read_tape_file(&path, 2, &mut out).unwrap_err();
        assert!(matches!(err, CopyError::NoTapeFile { file: 2, files: 2 }));
    }
}

//! `Vtape::inspect`: one sequential pass over a whole cartridge that checks every CRC and
//! reports its tape files, for `ndmpd vtape inspect` and tests.

use super::format::{
    ew_mark, io_err, mode_read_only, CartHeader, Damage, HeaderFault, Verdict, VtapeInfo,
    DATA_START, ITEM_HDR,
};
use crate::tape::TapeError;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// One tape file: the records between two filemarks (or BOT and the first one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TapeFile {
    /// The file's number, counted from 0 at the beginning of the tape.
    pub file_num: u64,
    /// How many records it holds.
    pub records: u64,
    /// Payload bytes of its records, item headers not counted.
    pub bytes: u64,
    /// Smallest record in bytes; 0 for a file without records.
    pub min_record: u32,
    /// Largest record in bytes; 0 for a file without records.
    pub max_record: u32,
    /// Ends with a filemark (only the last file may not).
    pub terminated: bool,
}

/// The first record or header that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    /// The tape file it is in.
    pub file_num: u64,
    /// Record number within the file (the block number).
    pub record: u64,
    /// Byte offset of the item's header in the cartridge file.
    pub offset: u64,
    /// What is wrong with it, for people.
    pub reason: String,
}

/// What [`super::Vtape::inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// The cartridge's header and fill level.
    pub info: VtapeInfo,
    /// Every file ended by a filemark, and the records after the last filemark if any.
    pub files: Vec<TapeFile>,
    /// Filemarks on the whole cartridge.
    pub filemarks: u64,
    /// Records on the whole cartridge.
    pub records: u64,
    /// Payload bytes of all records.
    pub record_bytes: u64,
    /// Byte offset in the cartridge file just past the last intact item.
    pub end_of_data: u64,
    /// Bytes after end of data left by a write that a crash cut short, or by an overwrite in
    /// place that a crash interrupted; the next writable open drops them.
    pub torn_bytes: u64,
    /// A header that is complete but invalid: nothing after it can be located.
    pub damaged_at: Option<u64>,
    /// Records whose payload CRC does not match, plus an invalid header if any.
    pub bad_records: u64,
    /// The first of them, if any.
    pub first_bad: Option<BadRecord>,
}

impl Inspection {
    /// Every record and header checked out (a torn tail is not damage: it is what a crash
    /// during a write leaves, and no acknowledged data is in it).
    pub fn crc_ok(&self) -> bool {
        self.first_bad.is_none() && self.damaged_at.is_none()
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        writeln!(
            f,
            "label {}  capacity {}  used {}  early warning at {}{}",
            i.label,
            i.capacity,
            i.used,
            i.early_warning,
            if i.write_protected {
                "  write-protected"
            } else {
                ""
            }
        )?;
        for t in &self.files {
            writeln!(
                f,
                "file {:>5}: {:>10} records {:>16} bytes  record size {}..{}{}",
                t.file_num,
                t.records,
                t.bytes,
                t.min_record,
                t.max_record,
                if t.terminated { "" } else { "  (no filemark)" }
            )?;
        }
        writeln!(
            f,
            "{} records, {} bytes, {} filemarks; end of data at byte {}",
            self.records, self.record_bytes, self.filemarks, self.end_of_data
        )?;
        if self.torn_bytes > 0 {
            writeln!(
                f,
                "torn write: {} bytes after end of data, not data (dropped at the next writable open)",
                self.torn_bytes
            )?;
        }
        if let Some(at) = self.damaged_at {
            writeln!(f, "damaged: unreadable item header at byte {at}; the rest of the cartridge cannot be located")?;
        }
        match &self.first_bad {
            None => writeln!(f, "CRC check: ok"),
            Some(b) => writeln!(
                f,
                "CRC check: FAILED, {} bad; first: file {} record {} at byte offset {}: {}",
                self.bad_records, b.file_num, b.record, b.offset, b.reason
            ),
        }
    }
}

/// Feeds `len` bytes from `r` into `crc`, straight out of the reader's buffer.
fn hash_payload<R: BufRead>(
    r: &mut R,
    len: u64,
    crc: &mut crc32fast::Hasher,
) -> std::io::Result<()> {
    let mut rest = len;
    while rest > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(usize::try_from(rest).unwrap_or(usize::MAX));
        crc.update(&buf[..n]);
        r.consume(n);
        rest -= n as u64;
    }
    Ok(())
}

/// See [`super::Vtape::inspect`]. Fails only when the file cannot be opened or read or its
/// cartridge header is invalid; damage further in is reported in the result.
pub fn inspect(path: &Path) -> Result<Inspection, TapeError> {
    let file = File::open(path).map_err(|e| io_err(format!("{}: {e}", path.display())))?;
    let hdr = CartHeader::read(&file)?;
    let meta = file.metadata()?;
    let file_len = meta.len();
    let mut out = Inspection {
        info: VtapeInfo {
            label: hdr.label.clone(),
            capacity: hdr.capacity,
            early_warning: ew_mark(hdr.capacity),
            write_protected: hdr.write_protected || mode_read_only(&meta),
            used: 0,
        },
        files: Vec::new(),
        filemarks: 0,
        records: 0,
        record_bytes: 0,
        end_of_data: DATA_START,
        torn_bytes: 0,
        damaged_at: None,
        bad_records: 0,
        first_bad: None,
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(DATA_START))?;
    let mut cur = TapeFile::default();
    let mut off = DATA_START;
    let mut seq = 0u64;
    while off < file_len {
        let remain = file_len - off;
        let mut b = [0u8; ITEM_HDR as usize];
        if remain < ITEM_HDR {
            break;
        }
        r.read_exact(&mut b)?;
        let fault = match hdr.judge(&b, off, seq, remain) {
            Verdict::Torn => break,
            Verdict::Damaged(Damage::Sequence(found)) => {
                format!("sequence {found} where {seq} was expected")
            }
            Verdict::Damaged(Damage::Header(HeaderFault::BadLength)) => {
                "impossible record length".to_string()
            }
            Verdict::Damaged(Damage::Header(_)) => "corrupt item header".to_string(),
            Verdict::Item(h) if h.filemark => {
                cur.terminated = true;
                let next = cur.file_num + 1;
                out.files.push(std::mem::take(&mut cur));
                cur.file_num = next;
                out.filemarks += 1;
                off += ITEM_HDR;
                seq += 1;
                continue;
            }
            Verdict::Item(h) => {
                let mut crc = crc32fast::Hasher::new();
                hash_payload(&mut r, u64::from(h.len), &mut crc)?;
                if crc.finalize() != h.crc {
                    out.bad_records += 1;
                    out.first_bad.get_or_insert(BadRecord {
                        file_num: cur.file_num,
                        record: cur.records,
                        offset: off,
                        reason: "CRC mismatch".into(),
                    });
                }
                if cur.records == 0 || h.len < cur.min_record {
                    cur.min_record = h.len;
                }
                cur.max_record = cur.max_record.max(h.len);
                cur.records += 1;
                cur.bytes += u64::from(h.len);
                out.records += 1;
                out.record_bytes += u64::from(h.len);
                off += h.size();
                seq += 1;
                continue;
            }
        };
        out.damaged_at = Some(off);
        out.bad_records += 1;
        out.first_bad.get_or_insert(BadRecord {
            file_num: cur.file_num,
            record: cur.records,
            offset: off,
            reason: fault,
        });
        break;
    }
    if cur.records > 0 {
        out.files.push(cur);
    }
    out.end_of_data = off;
    out.info.used = off - DATA_START;
    if out.damaged_at.is_none() {
        out.torn_bytes = file_len.saturating_sub(off);
    }
    Ok(out)
}

//! The bytes of a cartridge file: the two header slots, the 32-byte item headers in front of
//! every record and filemark, and the sidecar index. Parsing never trusts a length.

use super::super::TapeError;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};

/// Largest early-warning zone.
const MAX_EW_ZONE: u64 = 64 << 20;

/// A cartridge's header and fill level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VtapeInfo {
    /// The label in the cartridge header: the volume tag (barcode) a changer reports.
    pub label: String,
    /// Bytes of records and filemarks (headers included) the cartridge holds.
    pub capacity: u64,
    /// Where the early-warning zone starts, in the same bytes as `used`: the first write that
    /// ends beyond it reports early warning.
    pub early_warning: u64,
    /// The cartridge's write-protect flag is set or its file is not writable.
    pub write_protected: bool,
    /// Bytes used (from an open cartridge: up to end of data; from `read_info`: the file
    /// size, which may include a torn record that the next open drops).
    pub used: u64,
}

/// Start of the early-warning zone for `capacity`.
pub(super) fn ew_mark(capacity: u64) -> u64 {
    capacity - (capacity / 100).min(MAX_EW_ZONE)
}

pub(super) fn io_err(msg: impl Into<String>) -> TapeError {
    TapeError::Io(msg.into())
}

/// The file has no write permission bits. Checked explicitly because root may open it for
/// writing anyway.
pub(super) fn mode_read_only(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o222 == 0
}

/// Bytes in front of every record and every filemark.
pub const ITEM_HDR: u64 = 32;
/// Size of one cartridge header slot; two slots, at 0 and `SLOT`.
pub const SLOT: usize = 512;
/// Where the first item starts: the header page, so items never share a page with it.
pub const DATA_START: u64 = 4096;
/// Largest record accepted; a header claiming more is corrupt.
pub const MAX_RECORD: usize = 16 << 20;
/// Longest label, in bytes.
pub const MAX_LABEL: usize = 128;

const CART_MAGIC: &[u8; 8] = b"NDMPVTAP";
const VERSION: u32 = 1;
const REC_MAGIC: &[u8; 4] = b"VTRC";
const FM_MAGIC: &[u8; 4] = b"VTFM";
const FLAG_WP: u32 = 1;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// One cartridge header slot, as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartHeader {
    /// Bumped on every rewrite; the valid slot with the highest value wins.
    pub update: u64,
    /// The cartridge's write-protect tab.
    pub write_protected: bool,
    /// Bytes of records and filemarks (item headers included) the cartridge holds.
    pub capacity: u64,
    /// Random per cartridge and per erase: a sidecar index of another tape never matches.
    pub tape_id: u64,
    /// Bumped (durably) before truncating items a sidecar index may describe.
    pub generation: u64,
    /// When the cartridge was made, in seconds since the Unix epoch.
    pub created: u64,
    /// The cartridge's label, at most [`MAX_LABEL`] bytes of UTF-8.
    pub label: String,
    /// Which slot it was read from (0 or 1).
    pub slot: usize,
}

impl CartHeader {
    /// The slot's bytes, CRC included.
    pub fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[0..8].copy_from_slice(CART_MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let flags = if self.write_protected { FLAG_WP } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.update.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..40].copy_from_slice(&self.tape_id.to_le_bytes());
        b[40..48].copy_from_slice(&self.generation.to_le_bytes());
        b[48..56].copy_from_slice(&self.created.to_le_bytes());
        b[56..64].copy_from_slice(&DATA_START.to_le_bytes());
        let label = self.label.as_bytes();
        let n = label.len().min(MAX_LABEL);
        b[64..68].copy_from_slice(&(n as u32).to_le_bytes());
        b[68..68 + n].copy_from_slice(&label[..n]);
        let crc = crc32fast::hash(&b[..SLOT - 4]);
        b[SLOT - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8], slot: usize) -> Result<CartHeader, String> {
        if b.len() < SLOT || &b[0..8] != CART_MAGIC {
            return Err("not a virtual tape cartridge".into());
        }
        if crc32fast::hash(&b[..SLOT - 4]) != u32_at(b, SLOT - 4) {
            return Err("cartridge header CRC mismatch".into());
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(format!("unsupported cartridge version {version}"));
        }
        if u64_at(b, 56) != DATA_START {
            return Err("unsupported cartridge data offset".into());
        }
        let n = u32_at(b, 64) as usize;
        if n > MAX_LABEL {
            return Err("cartridge label too long".into());
        }
        let label = String::from_utf8(b[68..68 + n].to_vec())
            .map_err(|_| "cartridge label is not UTF-8".to_string())?;
        Ok(CartHeader {
            update: u64_at(b, 16),
            write_protected: u32_at(b, 12) & FLAG_WP != 0,
            capacity: u64_at(b, 24),
            tape_id: u64_at(b, 32),
            generation: u64_at(b, 40),
            created: u64_at(b, 48),
            label,
            slot,
        })
    }

    /// The newest valid slot. Either slot may be torn by a crash during a rewrite, never both.
    pub fn read(f: &File) -> Result<CartHeader, TapeError> {
        let mut b = [0u8; 2 * SLOT];
        let mut got = 0;
        while got < b.len() {
            match f.read_at(&mut b[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got < 2 * SLOT {
            return Err(TapeError::Io(
                "not a virtual tape cartridge (too short)".into(),
            ));
        }
        let a = CartHeader::decode(&b[..SLOT], 0);
        let c = CartHeader::decode(&b[SLOT..], 1);
        match (a, c) {
            (Ok(a), Ok(c)) => Ok(if c.update > a.update { c } else { a }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(c)) => Ok(c),
            (Err(e), Err(_)) => Err(TapeError::Io(e)),
        }
    }

    /// Writes the next version into the older slot and syncs it, so the previous version
    /// survives a torn write.
    pub fn rewrite(&mut self, f: &File) -> Result<(), TapeError> {
        let mut next = self.clone();
        next.update += 1;
        next.slot = 1 - self.slot;
        f.write_all_at(&next.encode(), (next.slot * SLOT) as u64)?;
        f.sync_data()?;
        *self = next;
        Ok(())
    }
}

/// What an item header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemHeader {
    /// A filemark rather than a record.
    pub filemark: bool,
    /// The record's payload length in bytes; 0 for a filemark.
    pub len: u32,
    /// Items from BOT, counting records and filemarks.
    pub seq: u64,
    /// CRC-32 of the record's payload; 0 for a filemark.
    pub crc: u32,
}

/// Why 32 bytes are not a valid item header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    /// All zeros: space the file system allocated but a crash never filled.
    Zero,
    /// Wrong magic, reserved bytes or header CRC.
    Corrupt,
    /// A valid CRC over an impossible length.
    BadLength,
}

impl ItemHeader {
    /// The header's 32 bytes, with their own CRC.
    pub fn encode(&self) -> [u8; ITEM_HDR as usize] {
        let mut b = [0u8; ITEM_HDR as usize];
        b[0..4].copy_from_slice(if self.filemark { FM_MAGIC } else { REC_MAGIC });
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks and decodes 32 header bytes; says why they are not a header.
    pub fn decode(b: &[u8; ITEM_HDR as usize]) -> Result<ItemHeader, HeaderFault> {
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderFault::Zero);
        }
        let filemark = match &b[0..4] {
            m if m == REC_MAGIC => false,
            m if m == FM_MAGIC => true,
            _ => return Err(HeaderFault::Corrupt),
        };
        if b[20..28].iter().any(|&x| x != 0) || crc32fast::hash(&b[..28]) != u32_at(b, 28) {
            return Err(HeaderFault::Corrupt);
        }
        let h = ItemHeader {
            filemark,
            len: u32_at(b, 4),
            seq: u64_at(b, 8),
            crc: u32_at(b, 16),
        };
        // a zero-length record is never written (TAPE_WRITE of 0 bytes is a no-op)
        let len_ok = if filemark {
            h.len == 0 && h.crc == 0
        } else {
            h.len > 0 && h.len as usize <= MAX_RECORD
        };
        if !len_ok {
            return Err(HeaderFault::BadLength);
        }
        Ok(h)
    }

    /// Bytes the item takes in the file: header and payload.
    pub fn size(&self) -> u64 {
        ITEM_HDR + u64::from(self.len)
    }
}

/// Reads exactly `buf.len()` bytes at `off`; `Ok(false)` if the file ends first.
pub fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The sidecar index `<cartridge>.idx`: the run list of [`super::index::Index`], valid only
/// for the cartridge's `tape_id` and `generation`. A cache: when it is missing, stale or
/// damaged the item headers are scanned instead.
pub mod sidecar {
    use super::*;

    const MAGIC: &[u8; 8] = b"NDMPVIDX";
    /// magic, version, tape_id, generation, items, end, run count
    const HEAD: usize = 8 + 4 + 8 * 5;
    const RUN: usize = 16;
    /// Never read a sidecar bigger than this (a hostile file must not exhaust memory).
    pub const MAX_BYTES: u64 = 256 << 20;

    /// One run: `count` consecutive items of the same kind and length.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RunRec {
        /// Filemarks rather than records.
        pub filemark: bool,
        /// Each record's payload length; 0 for filemarks.
        pub len: u32,
        /// How many items.
        pub count: u64,
    }

    /// A decoded sidecar index.
    pub struct Sidecar {
        /// The `tape_id` of the cartridge it describes.
        pub tape_id: u64,
        /// The cartridge `generation` it is valid for.
        pub generation: u64,
        /// Items (records and filemarks) the runs add up to.
        pub items: u64,
        /// File offset just past the last item: end of data.
        pub end: u64,
        /// The items from BOT, as runs.
        pub runs: Vec<RunRec>,
    }

    /// The sidecar's bytes, CRC included.
    pub fn encode(s: &Sidecar) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD + s.runs.len() * RUN + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&1u32.to_le_bytes());
        for v in [s.tape_id, s.generation, s.items, s.end, s.runs.len() as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for r in &s.runs {
            b.extend_from_slice(&r.len.to_le_bytes());
            b.extend_from_slice(&u32::from(r.filemark).to_le_bytes());
            b.extend_from_slice(&r.count.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// The sidecar in `b`, or `None` if its magic, version, CRC or run count is wrong.
    pub fn decode(b: &[u8]) -> Option<Sidecar> {
        if b.len() < HEAD + 4 || &b[..8] != MAGIC || u32_at(b, 8) != 1 {
            return None;
        }
        let body = b.len() - 4;
        if crc32fast::hash(&b[..body]) != u32_at(b, body) {
            return None;
        }
        let n = u64_at(b, 44);
        if (body - HEAD) as u64 != n.checked_mul(RUN as u64)? {
            return None;
        }
        let runs = b[HEAD..body]
            .chunks_exact(RUN)
            .map(|c| RunRec {
                len: u32_at(c, 0),
                filemark: u32_at(c, 4) != 0,
                count: u64_at(c, 8),
            })
            .collect();
        Some(Sidecar {
            tape_id: u64_at(b, 12),
            generation: u64_at(b, 20),
            items: u64_at(b, 28),
            end: u64_at(b, 36),
            runs,
        })
    }
}

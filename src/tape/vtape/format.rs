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
    /// size, which may include a torn record, or old items an overwrite in place has not
    /// reached yet, that the close or the next writable open drops).
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
/// The version written. Version 1 (read as well) has no `stale_from` and only items of
/// generation 0; its bytes mean the same in version 2.
const VERSION: u32 = 2;
/// Where `stale_from` sits in a header slot (after the longest label).
const STALE_AT: usize = 200;
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
    /// Bumped (durably) before any item is overwritten, and before truncating items a sidecar
    /// index may describe. Items carry the generation they were written in.
    pub generation: u64,
    /// When the cartridge was made, in seconds since the Unix epoch.
    pub created: u64,
    /// The cartridge's label, at most [`MAX_LABEL`] bytes of UTF-8.
    pub label: String,
    /// Where the last overwrite in place started: from this offset on, only items of the
    /// current generation are data, and anything else is what that overwrite left of older
    /// items (end of data). `None` when nothing was ever overwritten in place.
    pub stale_from: Option<u64>,
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
        let stale = self.stale_from.unwrap_or(0);
        b[STALE_AT..STALE_AT + 8].copy_from_slice(&stale.to_le_bytes());
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
        if version != 1 && version != VERSION {
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
        // version 1 leaves these bytes zero, and no item starts before DATA_START
        let stale_from = Some(u64_at(b, STALE_AT)).filter(|&s| s >= DATA_START);
        Ok(CartHeader {
            update: u64_at(b, 16),
            write_protected: u32_at(b, 12) & FLAG_WP != 0,
            capacity: u64_at(b, 24),
            tape_id: u64_at(b, 32),
            generation: u64_at(b, 40),
            created: u64_at(b, 48),
            label,
            stale_from,
            slot,
        })
    }

    /// What the 32 header bytes `b` at `off` are, for the walk from BOT that expects item
    /// number `seq` there with `remain` bytes of file from `off` on (at least [`ITEM_HDR`]).
    pub fn judge(&self, b: &[u8; ITEM_HDR as usize], off: u64, seq: u64, remain: u64) -> Verdict {
        let decoded = ItemHeader::decode(b, self.tape_id);
        if self.stale_from.is_some_and(|s| off >= s) {
            // written since the last overwrite in place began: of this generation, or not data
            return match decoded {
                Ok(h) if h.generation == self.generation && h.seq == seq => {
                    if h.size() > remain {
                        Verdict::Torn
                    } else {
                        Verdict::Item(h)
                    }
                }
                _ => Verdict::Torn,
            };
        }
        match decoded {
            Ok(h) if h.seq != seq => Verdict::Damaged(Damage::Sequence(h.seq)),
            Ok(h) if h.size() > remain => Verdict::Torn,
            Ok(h) => Verdict::Item(h),
            Err(HeaderFault::Zero) if remain <= ITEM_HDR + MAX_RECORD as u64 => Verdict::Torn,
            Err(fault) => Verdict::Damaged(Damage::Header(fault)),
        }
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

/// What the walk from BOT makes of the header bytes where it expects the next item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next item.
    Item(ItemHeader),
    /// End of data: the rest of the file is a write a crash cut short, or what an overwrite in
    /// place left of older items. Not data; a writable open cuts it off.
    Torn,
    /// Before any overwrite's start, so it should be data, and is not.
    Damaged(Damage),
}

/// Why an item that should be there is not readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// A valid header with another item number.
    Sequence(u64),
    /// Header bytes that are not a valid header.
    Header(HeaderFault),
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
    /// The cartridge generation it was written in.
    pub generation: u64,
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
    /// The header's 32 bytes, with their own CRC (keyed by the cartridge's `tape_id` from
    /// generation 1 on).
    pub fn encode(&self, tape_id: u64) -> [u8; ITEM_HDR as usize] {
        let mut b = [0u8; ITEM_HDR as usize];
        b[0..4].copy_from_slice(if self.filemark { FM_MAGIC } else { REC_MAGIC });
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc.to_le_bytes());
        b[20..28].copy_from_slice(&self.generation.to_le_bytes());
        let crc = header_crc(&b, tape_id);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Checks and decodes 32 header bytes of the cartridge `tape_id`; says why they are not a
    /// header.
    pub fn decode(b: &[u8; ITEM_HDR as usize], tape_id: u64) -> Result<ItemHeader, HeaderFault> {
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderFault::Zero);
        }
        let filemark = match &b[0..4] {
            m if m == REC_MAGIC => false,
            m if m == FM_MAGIC => true,
            _ => return Err(HeaderFault::Corrupt),
        };
        if header_crc(b, tape_id) != u32_at(b, 28) {
            return Err(HeaderFault::Corrupt);
        }
        let h = ItemHeader {
            filemark,
            len: u32_at(b, 4),
            seq: u64_at(b, 8),
            crc: u32_at(b, 16),
            generation: u64_at(b, 20),
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

/// The CRC over header bytes 0..28. Generation 0 (all of version 1) hashes the bytes alone;
/// later generations put the cartridge's random `tape_id` first, so header-shaped bytes in a
/// record's payload (a backed-up cartridge, or a crafted file) that an overwrite in place
/// leaves past end of data can never pass for an item.
fn header_crc(b: &[u8; ITEM_HDR as usize], tape_id: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if u64_at(b, 20) != 0 {
        h.update(&tape_id.to_le_bytes());
    }
    h.update(&b[..28]);
    h.finalize()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(generation: u64) -> ItemHeader {
        ItemHeader {
            filemark: false,
            len: 4096,
            seq: 7,
            crc: 0x1234_5678,
            generation,
        }
    }

    #[test]
    fn a_header_of_a_later_generation_belongs_to_its_own_cartridge_only() {
        let (mine, other) = (0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321);
        for generation in [1, 2, u64::MAX] {
            let b = header(generation).encode(mine);
            assert_eq!(ItemHeader::decode(&b, mine), Ok(header(generation)));
            assert_eq!(ItemHeader::decode(&b, other), Err(HeaderFault::Corrupt));
        }
        // generation 0 is version 1's header, the same on every cartridge
        let b = header(0).encode(mine);
        assert_eq!(ItemHeader::decode(&b, other), Ok(header(0)));
        assert_eq!(&b[20..28], &[0u8; 8]);
        let mut plain = b;
        plain[28..].copy_from_slice(&crc32fast::hash(&b[..28]).to_le_bytes());
        assert_eq!(plain, b);
    }

    #[test]
    fn from_the_overwrite_start_only_the_current_generation_is_data() {
        let hdr = CartHeader {
            update: 1,
            write_protected: false,
            capacity: 1 << 30,
            tape_id: 99,
            generation: 3,
            created: 0,
            label: "T".into(),
            stale_from: Some(DATA_START + 1000),
            slot: 0,
        };
        let at = |generation: u64, off: u64| {
            let b = header(generation).encode(99);
            hdr.judge(&b, off, 7, 1 << 20)
        };
        // before the overwrite's start, any generation
        assert_eq!(at(1, DATA_START), Verdict::Item(header(1)));
        assert_eq!(at(3, DATA_START + 1000), Verdict::Item(header(3)));
        assert_eq!(at(2, DATA_START + 1000), Verdict::Torn);
        assert_eq!(at(0, DATA_START + 5000), Verdict::Torn);
        // bytes that are no header: damage before the start, end of data after it
        let junk = [0x5au8; ITEM_HDR as usize];
        assert!(matches!(
            hdr.judge(&junk, DATA_START, 7, 1 << 20),
            Verdict::Damaged(_)
        ));
        assert_eq!(
            hdr.judge(&junk, DATA_START + 2000, 7, 1 << 20),
            Verdict::Torn
        );
        // the slot keeps it; version 1 slots had zero there
        let slot = hdr.encode();
        let back = CartHeader::decode(&slot, 0).unwrap();
        assert_eq!(back.stale_from, Some(DATA_START + 1000));
        assert_eq!(
            CartHeader {
                stale_from: None,
                ..hdr
            }
            .encode()[200..208],
            [0u8; 8]
        );
    }
}

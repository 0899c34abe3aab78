//! Reading an image record by record: recognising headers of either byte order, checking
//! magic and checksum, and decoding the fields recover needs (doc §2, §7.6).

use std::io::{self, BufRead, Read};

use super::super::record::{CHECKSUM, MAX_ADDR, NFS_MAGIC, OFF_ADDR, OFF_COUNT, TP_BSIZE};
use crate::format::recover::RecoverError;

/// FreeBSD UFS2 header magic (doc §8): same records, other field offsets; not read.
const FS_UFS2_MAGIC: u32 = 0x1954_0119;
/// 4.2BSD "old file system" magic (doc §8): another dinode layout; not read.
const OFS_MAGIC: u32 = 60011;
const DR_COMPRESSED: u32 = 0x0080;

/// Largest write to a restored file, and the input buffer.
pub const CHUNK: usize = 256 * 1024;
/// Map records covering every u32 inode number; more is not a dump.
pub const MAX_MAP_RECORDS: u32 = 1 << 19;

/// One 1 KiB record.
pub type Block = [u8; TP_BSIZE];

/// Byte order the image was written in, found from the magic of its first header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Little,
    Big,
}

impl Order {
    pub fn u16(self, b: &[u8], off: usize) -> u16 {
        let a = [b[off], b[off + 1]];
        match self {
            Order::Little => u16::from_le_bytes(a),
            Order::Big => u16::from_be_bytes(a),
        }
    }

    pub fn u32(self, b: &[u8], off: usize) -> u32 {
        let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        match self {
            Order::Little => u32::from_le_bytes(a),
            Order::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        match self {
            Order::Little => u64::from_le_bytes(a),
            Order::Big => u64::from_be_bytes(a),
        }
    }

    /// The 256-word sum a valid header has in this order.
    fn sum(self, b: &Block) -> u32 {
        (0..TP_BSIZE)
            .step_by(4)
            .fold(0u32, |acc, off| acc.wrapping_add(self.u32(b, off)))
    }
}

/// What a record that should be a header turned out to be.
pub enum Kind {
    Header(Order),
    /// A valid header of a layout recover does not read (UFS2, 4.2BSD).
    Foreign(&'static str),
    NotHeader,
}

/// Classifies a record: a header needs the NFS magic and a good checksum in one order.
pub fn classify(b: &Block) -> Kind {
    for order in [Order::Little, Order::Big] {
        let magic = order.u32(b, 24);
        if order.sum(b) != CHECKSUM {
            continue;
        }
        match magic {
            NFS_MAGIC => return Kind::Header(order),
            FS_UFS2_MAGIC => return Kind::Foreign("FreeBSD UFS2 dump"),
            OFS_MAGIC => return Kind::Foreign("4.2BSD old-format dump"),
            _ => {}
        }
    }
    Kind::NotHeader
}

pub const TS_TAPE: u32 = 1;
pub const TS_INODE: u32 = 2;
pub const TS_BITS: u32 = 3;
pub const TS_ADDR: u32 = 4;
pub const TS_END: u32 = 5;
pub const TS_CLRI: u32 = 6;
pub const DR_NEWINODEFMT: u32 = 0x0002;
pub const DR_EXTATTRIBUTES: u32 = 0x8000;
pub const EXT_XATTR: u32 = 3;

/// The decoded fields of one header.
#[derive(Clone)]
pub struct Header {
    pub ctype: u32,
    pub date: u32,
    pub volume: u32,
    pub inumber: u32,
    /// Full st_mode.
    pub mode: u32,
    pub size: u64,
    /// (seconds, microseconds).
    pub atime: (u32, u32),
    pub mtime: (u32, u32),
    pub ctime: (u32, u32),
    pub nlink: u16,
    pub uid: u32,
    pub gid: u32,
    /// Device number in the Linux "huge" encoding (`di_db[0]`).
    pub rdev: u32,
    pub flags: u32,
    /// Raw `c_count`: block-map entries, or map records for TS_CLRI/TS_BITS.
    pub count: u32,
    pub addr: [u8; MAX_ADDR],
    pub extattr: u32,
}

impl Header {
    /// Decodes a record already classified as a header of `order`. `newfmt` (from the
    /// volume header's DR_NEWINODEFMT) says whether the 32-bit owner fields are valid.
    pub fn parse(b: &Block, order: Order, newfmt: bool) -> Header {
        let mut addr = [0u8; MAX_ADDR];
        addr.copy_from_slice(&b[OFF_ADDR..OFF_ADDR + MAX_ADDR]);
        let (uid, gid) = if newfmt {
            (order.u32(b, 144), order.u32(b, 148))
        } else {
            (u32::from(order.u16(b, 36)), u32::from(order.u16(b, 38)))
        };
        Header {
            ctype: order.u32(b, 0),
            date: order.u32(b, 4),
            volume: order.u32(b, 12),
            inumber: order.u32(b, 20),
            mode: u32::from(order.u16(b, 32)),
            size: order.u64(b, 40),
            atime: (order.u32(b, 48), order.u32(b, 52)),
            mtime: (order.u32(b, 56), order.u32(b, 60)),
            ctime: (order.u32(b, 64), order.u32(b, 68)),
            nlink: order.u16(b, 34),
            uid,
            gid,
            rdev: order.u32(b, 72),
            flags: order.u32(b, 888),
            count: order.u32(b, OFF_COUNT),
            addr,
            extattr: order.u32(b, 900),
        }
    }

    pub fn is_xattr(&self) -> bool {
        self.ctype == TS_INODE && self.flags & DR_EXTATTRIBUTES != 0
    }

    /// Block-map entries this TS_INODE/TS_ADDR header carries (at most 512).
    pub fn entries(&self) -> usize {
        (self.count as usize).min(MAX_ADDR)
    }

    pub fn ifmt(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// Reads `h`'s data records into nothing.
pub fn skip_blocks(tape: &mut Tape<'_>, h: &Header) -> Result<(), RecoverError> {
    let mut buf = [0u8; TP_BSIZE];
    for i in 0..h.entries() {
        if h.addr[i] != 0 {
            tape.data(&mut buf)?;
        }
    }
    Ok(())
}

/// A reader that never reads past the 1 KiB record it is in, so a DAR reader asks its
/// source for no byte beyond the records it needs (`BufReader` would read ahead).
pub struct RecordReader<'a> {
    input: &'a mut dyn Read,
    buf: Box<Block>,
    /// `buf[pos..len]` is read and not yet consumed; `len` is where the record's bytes read
    /// so far end.
    pos: usize,
    len: usize,
}

impl<'a> RecordReader<'a> {
    pub fn new(input: &'a mut dyn Read) -> Self {
        RecordReader {
            input,
            buf: Box::new([0u8; TP_BSIZE]),
            pos: 0,
            len: 0,
        }
    }
}

impl Read for RecordReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let got = self.fill_buf()?;
        let n = got.len().min(out.len());
        out[..n].copy_from_slice(&got[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for RecordReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.len {
            if self.len == TP_BSIZE {
                (self.pos, self.len) = (0, 0);
            }
            let n = self.input.read(&mut self.buf[self.len..])?;
            self.len += n;
        }
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
    }
}

/// The image as a sequence of records, with the position for messages and DAR checks.
pub struct Tape<'a> {
    input: &'a mut dyn BufRead,
    /// Bytes consumed so far.
    pub offset: u64,
    pub order: Order,
    /// DR_NEWINODEFMT of the volume header: 32-bit owners and 4.4BSD directory entries.
    pub newfmt: bool,
    /// `c_date` of the first header; a resynchronised header must carry it too.
    pub date: u32,
    /// Records skipped while looking for a header (reported once per gap).
    pub skipped: u64,
}

impl<'a> Tape<'a> {
    pub fn new(input: &'a mut dyn BufRead) -> Self {
        Tape {
            input,
            offset: 0,
            order: Order::Little,
            newfmt: true,
            date: 0,
            skipped: 0,
        }
    }

    /// Reads one whole record. Ok(false) at end of input on a record boundary; a partial
    /// record is `Truncated`.
    pub fn record(&mut self, buf: &mut Block) -> Result<bool, RecoverError> {
        let mut got = 0;
        while got < TP_BSIZE {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecoverError::Input(e)),
            }
        }
        self.offset += got as u64;
        match got {
            0 => Ok(false),
            TP_BSIZE => Ok(true),
            _ => Err(RecoverError::Truncated {
                offset: self.offset,
            }),
        }
    }

    /// Reads the input to its end, whatever it holds (a read error ends it too), so a sender
    /// is never left blocked.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.offset += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// `n` data records that must be there, handed to `out` in the pieces the input holds
    /// them in (no copy into a record buffer first); a short input is `Truncated` after the
    /// pieces it did hold.
    pub fn data_run(&mut self, n: usize, out: &mut dyn FnMut(&[u8])) -> Result<(), RecoverError> {
        let mut left = n * TP_BSIZE;
        while left > 0 {
            let got = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RecoverError::Input(e)),
            };
            if got.is_empty() {
                return Err(RecoverError::Truncated {
                    offset: self.offset,
                });
            }
            let k = got.len().min(left);
            out(&got[..k]);
            self.input.consume(k);
            self.offset += k as u64;
            left -= k;
        }
        Ok(())
    }

    /// A data record that must be there.
    pub fn data(&mut self, buf: &mut Block) -> Result<(), RecoverError> {
        if self.record(buf)? {
            Ok(())
        } else {
            Err(RecoverError::Truncated {
                offset: self.offset,
            })
        }
    }

    /// Reads the first header: it fixes the byte order, the inode format and the date.
    /// Anything but a valid header here means the input is not a dump image.
    pub fn first(&mut self) -> Result<Header, RecoverError> {
        let mut b = [0u8; TP_BSIZE];
        if !self.record(&mut b)? {
            return Err(RecoverError::Truncated { offset: 0 });
        }
        let order = match classify(&b) {
            Kind::Header(o) => o,
            Kind::Foreign(what) => return Err(RecoverError::Unsupported(what.into())),
            Kind::NotHeader => return Err(RecoverError::NotDump { offset: 0 }),
        };
        self.order = order;
        let flags = order.u32(&b, 888);
        let ctype = order.u32(&b, 0);
        if ctype == TS_TAPE {
            self.newfmt = flags & DR_NEWINODEFMT != 0;
        }
        if flags & DR_COMPRESSED != 0 {
            return Err(RecoverError::Unsupported("compressed dump".into()));
        }
        let h = Header::parse(&b, order, self.newfmt);
        self.date = h.date;
        Ok(h)
    }

    /// The next header. A record that is not one is skipped, and so is everything up to
    /// the next valid header of this dump (same byte order and `c_date`), as restore does;
    /// `warn` hears about each such gap. None at end of input.
    pub fn next(&mut self, warn: &mut dyn FnMut(String)) -> Result<Option<Header>, RecoverError> {
        let mut b = [0u8; TP_BSIZE];
        let mut gap_start = None;
        loop {
            if !self.record(&mut b)? {
                if let Some(at) = gap_start {
                    warn(format!(
                        "bad header at byte {at}: no valid header follows before the end"
                    ));
                }
                return Ok(None);
            }
            let at = self.offset - TP_BSIZE as u64;
            let ok = matches!(classify(&b), Kind::Header(o) if o == self.order)
                && (gap_start.is_none() || self.order.u32(&b, 4) == self.date);
            if ok {
                if let Some(start) = gap_start {
                    warn(format!(
                        "bad header at byte {start} (wrong magic or checksum); skipped {} \
                         bytes to the next valid header",
                        at - start
                    ));
                }
                return Ok(Some(Header::parse(&b, self.order, self.newfmt)));
            }
            if gap_start.is_none() {
                gap_start = Some(at);
            }
            self.skipped += 1;
        }
    }
}

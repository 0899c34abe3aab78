//! The 1 KiB header records of a dump image and the directory-entry encoding: pure byte
//! layout (little-endian, Linux `NFS_MAGIC` flavour), no file system access.

/// Every record of the image is this long; data records carry one block of an inode.
pub const TP_BSIZE: usize = 1024;
/// Block-map entries one header can carry.
pub const MAX_ADDR: usize = 512;
/// `c_magic` of the Linux/4.4BSD "new file system" layout.
pub const NFS_MAGIC: u32 = 60012;
/// The sum of a header's 256 words must come to this.
pub const CHECKSUM: u32 = 84446;

pub const TS_TAPE: u32 = 1;
pub const TS_INODE: u32 = 2;
pub const TS_BITS: u32 = 3;
pub const TS_ADDR: u32 = 4;
pub const TS_END: u32 = 5;
pub const TS_CLRI: u32 = 6;

pub const DR_NEWHEADER: u32 = 0x0001;
pub const DR_NEWINODEFMT: u32 = 0x0002;
pub const DR_EXTATTRIBUTES: u32 = 0x8000;
pub const EXT_XATTR: u32 = 3;

/// Inode numbers one bitmap record covers.
pub const INODES_PER_MAP_RECORD: u32 = (TP_BSIZE * 8) as u32;
/// restore reads a directory this large as a byte-swapped image (doc §5.1).
pub const MAX_DIR_SIZE: u64 = 0x0fff_ffff;

// Field offsets (doc §2).
pub const OFF_TYPE: usize = 0;
pub const OFF_DATE: usize = 4;
pub const OFF_DDATE: usize = 8;
pub const OFF_VOLUME: usize = 12;
pub const OFF_TAPEA: usize = 16;
pub const OFF_INUMBER: usize = 20;
pub const OFF_MAGIC: usize = 24;
pub const OFF_CHECKSUM: usize = 28;
const OFF_MODE: usize = 32;
const OFF_NLINK: usize = 34;
const OFF_OUID: usize = 36;
const OFF_OGID: usize = 38;
const OFF_SIZE: usize = 40;
const OFF_ATIME: usize = 48;
const OFF_MTIME: usize = 56;
const OFF_CTIME: usize = 64;
const OFF_RDEV: usize = 72;
const OFF_UID: usize = 144;
const OFF_GID: usize = 148;
pub const OFF_COUNT: usize = 160;
pub const OFF_ADDR: usize = 164;
const OFF_LABEL: usize = 676;
const OFF_LEVEL: usize = 692;
const OFF_FILESYS: usize = 696;
const OFF_DEV: usize = 760;
const OFF_HOST: usize = 824;
pub const OFF_FLAGS: usize = 888;
const OFF_NTREC: usize = 896;
const OFF_EXTATTR: usize = 900;

/// One header record being assembled.
pub type Record = [u8; TP_BSIZE];

/// The inode fields a TS_INODE header carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dinode {
    /// Full st_mode (type bits and 07777).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// (seconds, microseconds); the format has no room for nanoseconds.
    pub atime: (u32, u32),
    pub mtime: (u32, u32),
    pub ctime: (u32, u32),
    /// Device number in the Linux "huge" encoding, 0 for non-devices.
    pub rdev: u32,
}

pub fn put_u16(r: &mut Record, off: usize, v: u16) {
    r[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(r: &mut Record, off: usize, v: u32) {
    r[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(r: &mut Record, off: usize, v: u64) {
    r[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
pub fn get_u32(r: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([r[off], r[off + 1], r[off + 2], r[off + 3]])
}

/// Copies `s` into a fixed NUL-terminated field of `len` bytes, cutting it to `len - 1`.
fn put_str(r: &mut Record, off: usize, len: usize, s: &[u8]) {
    let n = s.len().min(len - 1);
    r[off..off + n].copy_from_slice(&s[..n]);
    r[off + n..off + len].fill(0);
}

/// Clamps a signed seconds value to the signed 32-bit dump dates (`c_date`, `c_ddate`).
pub fn date32(secs: i64) -> u32 {
    secs.clamp(0, i64::from(i32::MAX)) as u32
}

/// Converts (seconds, nanoseconds) to the unsigned (seconds, microseconds) inode time;
/// times before 1970 are clamped to 0 because the field is unsigned.
pub fn time32(secs: i64, nsec: i64) -> (u32, u32) {
    if secs < 0 {
        return (0, 0);
    }
    if secs > i64::from(u32::MAX) {
        return (u32::MAX, 999_999);
    }
    (secs as u32, (nsec.clamp(0, 999_999_999) / 1000) as u32)
}

/// Linux "huge" dev_t encoding that restore hands to mknod() unchanged (doc §5.4).
pub fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// A header with the fields every record of one dump shares (doc §6 rule 1).
pub fn base_header(c_type: u32, date: u32, ddate: u32, inumber: u32) -> Record {
    let mut r = [0u8; TP_BSIZE];
    put_u32(&mut r, OFF_TYPE, c_type);
    put_u32(&mut r, OFF_DATE, date);
    put_u32(&mut r, OFF_DDATE, ddate);
    put_u32(&mut r, OFF_VOLUME, 1);
    put_u32(&mut r, OFF_INUMBER, inumber);
    put_u32(&mut r, OFF_MAGIC, NFS_MAGIC);
    put_u32(&mut r, OFF_FLAGS, DR_NEWINODEFMT);
    r
}

/// Volume-header strings and blocking for TS_TAPE.
pub struct VolumeInfo<'a> {
    pub level: u32,
    pub label: &'a [u8],
    pub filesys: &'a [u8],
    pub host: &'a [u8],
    pub ntrec: u32,
}

/// TS_TAPE: the first record of the image.
pub fn tape_header(date: u32, ddate: u32, v: &VolumeInfo<'_>) -> Record {
    let mut r = base_header(TS_TAPE, date, ddate, 0);
    put_u32(&mut r, OFF_FLAGS, DR_NEWHEADER | DR_NEWINODEFMT);
    // The address area stays zero: with DR_NEWINODEFMT restore reads it as the per-volume
    // "first inode" table, and a non-zero entry made restore 0.4b47 skip the first file
    // of pass IV ("not found on tape") when inode numbers are large.
    let label: &[u8] = if v.label.is_empty() { b"none" } else { v.label };
    put_str(&mut r, OFF_LABEL, 16, label);
    put_u32(&mut r, OFF_LEVEL, v.level);
    put_str(&mut r, OFF_FILESYS, 64, v.filesys);
    put_str(&mut r, OFF_DEV, 64, v.filesys);
    put_str(&mut r, OFF_HOST, 64, v.host);
    put_u32(&mut r, OFF_NTREC, v.ntrec);
    r
}

/// Fills the dinode part of a TS_INODE/TS_ADDR header.
pub fn set_dinode(r: &mut Record, d: &Dinode) {
    put_u16(r, OFF_MODE, d.mode as u16);
    put_u16(r, OFF_NLINK, d.nlink.min(u32::from(u16::MAX)) as u16);
    put_u16(r, OFF_OUID, d.uid as u16);
    put_u16(r, OFF_OGID, d.gid as u16);
    put_u64(r, OFF_SIZE, d.size);
    for (off, (s, us)) in [
        (OFF_ATIME, d.atime),
        (OFF_MTIME, d.mtime),
        (OFF_CTIME, d.ctime),
    ] {
        put_u32(r, off, s);
        put_u32(r, off + 4, us);
    }
    put_u32(r, OFF_RDEV, d.rdev);
    put_u32(r, OFF_UID, d.uid);
    put_u32(r, OFF_GID, d.gid);
}

/// Marks a header as the extended-attribute record of its inode (doc §5.6).
pub fn set_xattr_flags(r: &mut Record) {
    put_u32(r, OFF_FLAGS, DR_NEWINODEFMT | DR_EXTATTRIBUTES);
    put_u32(r, OFF_EXTATTR, EXT_XATTR);
}

/// Sets `c_size` of a header (used for the attribute blob length).
pub fn set_size(r: &mut Record, size: u64) {
    put_u64(r, OFF_SIZE, size);
}

/// Stores the record's own position and the checksum; the last step before writing.
pub fn seal(r: &mut Record, tapea: u64) {
    // c_tapea is a u32 record index; it wraps after 4 TiB and restore ignores it.
    put_u32(r, OFF_TAPEA, tapea as u32);
    put_u32(r, OFF_CHECKSUM, 0);
    let sum = sum_words(r);
    put_u32(r, OFF_CHECKSUM, CHECKSUM.wrapping_sub(sum));
}

/// Sum of the 256 little-endian words of a record, mod 2^32.
pub fn sum_words(r: &[u8]) -> u32 {
    r.chunks_exact(4).fold(0u32, |acc, w| {
        acc.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    })
}

/// Directory-entry `d_type` for a full st_mode.
pub fn dtype_of(mode: u32) -> u8 {
    ((mode >> 12) & 0xf) as u8
}

/// Encodes directory data: 4.4BSD entries packed into 1 KiB blocks, no entry crossing a
/// block boundary, the slack of each block absorbed into its last entry (doc §5.1).
/// Names must be 1..=255 bytes; longer ones are cut (the caller never passes them).
pub struct DirPacker {
    data: Vec<u8>,
    last: Option<usize>,
}

impl Default for DirPacker {
    fn default() -> Self {
        Self::new()
    }
}

impl DirPacker {
    pub fn new() -> Self {
        DirPacker {
            data: Vec::new(),
            last: None,
        }
    }

    /// Minimum record length of an entry with a name of `len` bytes.
    pub fn reclen(len: usize) -> usize {
        (8 + len + 1 + 3) & !3
    }

    pub fn push(&mut self, ino: u32, dtype: u8, name: &[u8]) {
        let name = &name[..name.len().min(255)];
        let len = Self::reclen(name.len());
        if self.data.len() % TP_BSIZE + len > TP_BSIZE {
            self.close_block();
        }
        let at = self.data.len();
        self.data.extend_from_slice(&ino.to_le_bytes());
        self.data.extend_from_slice(&(len as u16).to_le_bytes());
        self.data.push(dtype);
        self.data.push(name.len() as u8);
        self.data.extend_from_slice(name);
        self.data.resize(at + len, 0);
        self.last = Some(at);
    }

    /// Extends the block's last entry to the block end so restore sees no gap.
    fn close_block(&mut self) {
        let rem = self.data.len() % TP_BSIZE;
        if rem == 0 {
            return;
        }
        let pad = TP_BSIZE - rem;
        if let Some(at) = self.last {
            let old = u16::from_le_bytes([self.data[at + 4], self.data[at + 5]]);
            let new = (old as usize + pad) as u16;
            self.data[at + 4..at + 6].copy_from_slice(&new.to_le_bytes());
        }
        self.data.resize(self.data.len() + pad, 0);
    }

    /// The directory data, a whole number of 1 KiB blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.close_block();
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_header_sums_to_checksum() {
        let mut r = base_header(TS_INODE, 1_700_000_000, 0, 42);
        set_dinode(
            &mut r,
            &Dinode {
                mode: 0o100644,
                size: 5000,
                uid: 70000,
                ..Default::default()
            },
        );
        seal(&mut r, 123);
        assert_eq!(sum_words(&r), CHECKSUM);
        assert_eq!(get_u32(&r, OFF_TAPEA), 123);
        assert_eq!(get_u32(&r, OFF_MAGIC), NFS_MAGIC);
        assert_eq!(get_u32(&r, 144), 70000);
        assert_eq!(u16::from_le_bytes([r[36], r[37]]), 70000u32 as u16);
    }

    #[test]
    fn tape_header_strings_are_cut_and_terminated() {
        let long = [b'x'; 100];
        let v = VolumeInfo {
            level: 3,
            label: &long,
            filesys: &long,
            host: b"h",
            ntrec: 10,
        };
        let mut r = tape_header(5, 4, &v);
        seal(&mut r, 0);
        assert_eq!(&r[OFF_LABEL..OFF_LABEL + 16], b"xxxxxxxxxxxxxxx\0");
        assert_eq!(r[OFF_FILESYS + 63], 0);
        assert_eq!(get_u32(&r, OFF_FLAGS), 3);
        assert!(r[OFF_ADDR..OFF_ADDR + 512].iter().all(|&b| b == 0));
        assert_eq!(sum_words(&r), CHECKSUM);
    }

    #[test]
    fn dir_entries_never_cross_a_block() {
        let mut p = DirPacker::new();
        let names: Vec<Vec<u8>> = (0..200).map(|i| vec![b'a'; 1 + (i * 7) % 255]).collect();
        for (i, n) in names.iter().enumerate() {
            p.push(i as u32 + 3, 8, n);
        }
        let data = p.finish();
        assert_eq!(data.len() % TP_BSIZE, 0);
        let mut off = 0;
        let mut seen = 0;
        while off < data.len() {
            let reclen = u16::from_le_bytes([data[off + 4], data[off + 5]]) as usize;
            let namlen = data[off + 7] as usize;
            assert_eq!(reclen % 4, 0);
            assert!(reclen >= DirPacker::reclen(namlen));
            assert_eq!(
                off / TP_BSIZE,
                (off + reclen - 1) / TP_BSIZE,
                "entry crosses 1 KiB"
            );
            assert_eq!(&data[off + 8..off + 8 + namlen], &names[seen][..]);
            seen += 1;
            off += reclen;
        }
        assert_eq!(seen, names.len());
    }

    #[test]
    fn times_and_devices() {
        assert_eq!(time32(-5, 7), (0, 0));
        assert_eq!(time32(10, 123_456_789), (10, 123_456));
        assert_eq!(
            encode_rdev(240, 300000),
            (300000 & 0xff) | (240 << 8) | ((300000 & !0xff) << 12)
        );
        assert_eq!(date32(-1), 0);
        assert_eq!(date32(i64::MAX), i32::MAX as u32);
    }
}

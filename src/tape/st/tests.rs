//! Tests of the st backend: the C layout and constants, the errno table, open's checks, and
//! the NDMP mapping run against `Model`, a model of st.c's state machine in variable-block mode.

use super::*;
use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::sync::{Arc, Mutex};

#[test]
fn layout_matches_linux_mtio_h() {
    // struct mtop { short mt_op; int mt_count; }
    assert_eq!(size_of::<MtOp>(), 8);
    assert_eq!(offset_of!(MtOp, mt_op), 0);
    assert_eq!(offset_of!(MtOp, mt_count), 4);
    // struct mtget { long ×5; __kernel_daddr_t (int) ×2 } and struct mtpos { long }, as
    // printed by a C program against <linux/mtio.h> on x86_64.
    #[cfg(target_pointer_width = "64")]
    {
        assert_eq!(size_of::<MtGet>(), 48);
        assert_eq!(offset_of!(MtGet, mt_type), 0);
        assert_eq!(offset_of!(MtGet, mt_resid), 8);
        assert_eq!(offset_of!(MtGet, mt_dsreg), 16);
        assert_eq!(offset_of!(MtGet, mt_gstat), 24);
        assert_eq!(offset_of!(MtGet, mt_erreg), 32);
        assert_eq!(offset_of!(MtGet, mt_fileno), 40);
        assert_eq!(offset_of!(MtGet, mt_blkno), 44);
        assert_eq!(size_of::<MtPos>(), 8);
    }
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn request_codes_match_the_c_macros() {
    // _IOW('m', 1, struct mtop), _IOR('m', 2, struct mtget), _IOR('m', 3, struct mtpos)
    assert_eq!(
        nix::request_code_write!(b'm', 1, size_of::<MtOp>()) as u64,
        0x4008_6d01
    );
    assert_eq!(
        nix::request_code_read!(b'm', 2, size_of::<MtGet>()) as u64,
        0x8030_6d02
    );
    assert_eq!(
        nix::request_code_read!(b'm', 3, size_of::<MtPos>()) as u64,
        0x8008_6d03
    );
}

/// `#define NAME value` and `#define NAME(x) ((x) & value)` lines of a C header.
fn header_defines(text: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 3 || t[0] != "#define" {
            continue;
        }
        let name = t[1].trim_end_matches("(x)").to_string();
        for tok in &t[2..] {
            let tok = tok.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let v = match tok.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16).ok(),
                None => tok.parse().ok(),
            };
            if let Some(v) = v {
                out.insert(name, v);
                break;
            }
        }
    }
    out
}

#[test]
fn constants_match_the_kernel_header() {
    let Ok(text) = std::fs::read_to_string("/usr/include/linux/mtio.h") else {
        // a broken install under CI (scripts/test.sh installs linux-libc-dev), a note elsewhere
        assert!(
            std::env::var("CI").map_or(true, |v| v.is_empty() || v == "0" || v == "false"),
            "/usr/include/linux/mtio.h is missing: apt-get install linux-libc-dev"
        );
        eprintln!("NOTE: /usr/include/linux/mtio.h is not installed (linux-libc-dev); skipping");
        return;
    };
    let defs = header_defines(&text);
    let ours: [(&str, i64); 17] = [
        ("MTFSF", MTFSF.into()),
        ("MTBSF", MTBSF.into()),
        ("MTFSR", MTFSR.into()),
        ("MTBSR", MTBSR.into()),
        ("MTWEOF", MTWEOF.into()),
        ("MTREW", MTREW.into()),
        ("MTOFFL", MTOFFL.into()),
        ("MTNOP", MTNOP.into()),
        ("MTSETBLK", MTSETBLK.into()),
        ("GMT_BOT", GMT_BOT),
        ("GMT_EOT", GMT_EOT),
        ("GMT_EOD", GMT_EOD),
        ("GMT_WR_PROT", GMT_WR_PROT),
        ("GMT_ONLINE", GMT_ONLINE),
        ("GMT_DR_OPEN", GMT_DR_OPEN),
        ("MT_ST_BLKSIZE_MASK", MT_ST_BLKSIZE_MASK),
        ("MT_ST_SOFTERR_MASK", MT_ST_SOFTERR_MASK),
    ];
    for (name, value) in ours {
        assert_eq!(defs.get(name), Some(&value), "{name}");
    }
    let squashed: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for def in [
        "#define MTIOCTOP _IOW('m', 1, struct mtop)",
        "#define MTIOCGET _IOR('m', 2, struct mtget)",
        "#define MTIOCPOS _IOR('m', 3, struct mtpos)",
    ] {
        assert!(
            squashed.iter().any(|l| l.starts_with(def)),
            "{def} not in the header"
        );
    }
}

#[test]
fn errno_mapping_table() {
    let exact = [
        (Errno::ENOMEDIUM, TapeError::NoTape),
        (Errno::EACCES, TapeError::WriteProtected),
        (Errno::EROFS, TapeError::WriteProtected),
        (Errno::ENOSPC, TapeError::Eom),
    ];
    for (e, want) in exact {
        assert_eq!(errno_error("op", e), want, "{e}");
    }
    assert!(matches!(
        errno_error("op", Errno::ENOSYS),
        TapeError::NotSupported(_)
    ));
    let io = [
        (Errno::ENOTTY, "not a tape device"),
        (Errno::EINVAL, "block limits"),
        (Errno::ENOMEM, "longer than the buffer"),
        (Errno::EOVERFLOW, "could not allocate"),
        (Errno::EBUSY, "busy"),
        (Errno::ENXIO, "not available"),
        (Errno::ENODEV, "not available"),
        (Errno::EIO, "EIO"),
        (Errno::EFAULT, "Bad address"),
    ];
    for (e, text) in io {
        match errno_error("op", e) {
            TapeError::Io(m) => assert!(m.starts_with("op: ") && m.contains(text), "{e}: {m}"),
            other => panic!("{e} mapped to {other:?}"),
        }
    }
}

#[test]
fn cap_ladder_covers_common_block_limits() {
    let mut n = MAX_BLOCK;
    let mut seen = vec![n];
    while n > 1 << 20 {
        n = next_lower_cap(n);
        seen.push(n);
    }
    assert_eq!(
        seen,
        [0xff_ffff, 0x80_0000, 0x7f_ffff, 0x40_0000, 0x3f_ffff, 0x20_0000, 0x1f_ffff, 0x10_0000]
    );
}

fn expect_io(r: Result<StTape, TapeError>, text: &str) {
    match r {
        Err(TapeError::Io(m)) => assert!(m.contains(text), "{m:?} lacks {text:?}"),
        other => panic!("expected Io containing {text:?}, got {other:?}"),
    }
}

#[test]
fn open_rejects_a_regular_file() {
    let f = tempfile::NamedTempFile::new().unwrap();
    expect_io(StTape::open(f.path(), false), "not a character device");
    expect_io(StTape::open(f.path(), true), "not a character device");
}

#[test]
fn open_rejects_a_directory_and_a_missing_path() {
    let d = tempfile::tempdir().unwrap();
    expect_io(StTape::open(d.path(), false), "not a character device");
    let missing = d.path().join("nst9");
    expect_io(StTape::open(&missing, false), "nst9");
}

#[test]
fn open_rejects_dev_null() {
    // A character device, but its ioctls answer ENOTTY.
    let p = Path::new("/dev/null");
    if !p.exists() {
        panic!("no /dev/null on this machine");
    }
    expect_io(StTape::open(p, false), "not a SCSI tape device");
    expect_io(StTape::open(p, true), "not a SCSI tape device");
}

// ---------------------------------------------------------------------------------------------
// A model of st.c (drivers/scsi/st.c: st_write, read_tape/st_read, st_ioctl/st_int_ioctl,
// MTIOCGET) in variable-block mode, with the state the mapping depends on.

#[derive(Clone, Debug, PartialEq)]
enum Obj {
    Rec(Vec<u8>),
    Fm,
}

/// st.h's `eof` states, in st's order (st compares them); ST_FM_HIT never outlives a read
/// in variable-block mode and ST_EOM_ERROR (write-behind data lost) is not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Eof {
    No,
    Fm,
    EomOk,
    Eod1,
    Eod2,
    Eod,
}

#[derive(Debug)]
struct Model {
    tape: Vec<Obj>,
    pos: usize,
    file: c_int,
    block: c_int,
    eof: Eof,
    writing: bool,
    loaded: bool,
    wp: bool,
    block_size: c_long,
    /// A write leaving more objects than this on tape crosses early warning.
    ew_at: usize,
    /// Nothing can be written at or beyond this object index (VOLUME OVERFLOW).
    phys_end: usize,
    /// READ BLOCK LIMITS' maximum; 0 = unknown (no check).
    max_block: usize,
    /// st's write-behind: a write's early warning is reported by the next call into st.
    async_writes: bool,
    pending_ew: bool,
    /// Reading the object at this index fails (medium error).
    bad_at: Option<usize>,
    soft: c_long,
    ops: Vec<(c_short, c_int)>,
    writes: usize,
}

impl Model {
    fn new() -> Model {
        Model {
            tape: Vec::new(),
            pos: 0,
            file: 0,
            block: 0,
            eof: Eof::No,
            writing: false,
            loaded: true,
            wp: false,
            // A default fixed block size, which open must switch off.
            block_size: 512,
            ew_at: usize::MAX,
            phys_end: usize::MAX,
            max_block: 0,
            async_writes: false,
            pending_ew: false,
            bad_at: None,
            soft: 0,
            ops: Vec::new(),
            writes: 0,
        }
    }

    /// flush_buffer() when writing: the write-behind's early warning surfaces as ENOSPC.
    fn flush_write_behind(&mut self) -> nix::Result<()> {
        if self.writing && self.pending_ew {
            self.pending_ew = false;
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    fn weof(&mut self, n: usize) {
        self.tape.truncate(self.pos);
        self.tape.extend(std::iter::repeat_n(Obj::Fm, n));
        self.pos += n;
        if self.file >= 0 {
            self.file += n as c_int;
        }
        // st sets 0 even for a count of 0.
        self.block = 0;
        self.eof = Eof::No;
        self.writing = false;
    }

    fn write(&mut self, data: &[u8]) -> nix::Result<usize> {
        self.writes += 1;
        if !self.loaded {
            return Err(Errno::ENOMEDIUM);
        }
        if self.max_block > 0 && data.len() > self.max_block {
            return Err(Errno::EINVAL);
        }
        if self.wp {
            return Err(Errno::EACCES);
        }
        // write_behind_check() at the start of st_write.
        if self.pending_ew {
            self.pending_ew = false;
            self.eof = Eof::EomOk;
        }
        if self.eof == Eof::EomOk {
            self.eof = Eof::Eod1;
            return Err(Errno::ENOSPC);
        }
        self.writing = true;
        if self.pos >= self.phys_end {
            // VOLUME OVERFLOW: nothing written, st answers ENOSPC and arms the alternation.
            self.eof = Eof::EomOk;
            return Err(Errno::ENOSPC);
        }
        self.tape.truncate(self.pos);
        self.tape.push(Obj::Rec(data.to_vec()));
        self.pos += 1;
        if self.block >= 0 {
            self.block += 1;
        }
        if self.pos > self.ew_at {
            if self.async_writes && self.eof < Eof::EomOk {
                self.pending_ew = true;
                self.eof = Eof::No;
            } else {
                self.eof = Eof::EomOk;
            }
        } else if self.eof == Eof::Eod1 {
            self.eof = Eof::EomOk;
        } else if self.eof != Eof::EomOk {
            self.eof = Eof::No;
        }
        Ok(data.len())
    }

    fn read(&mut self, buf: &mut [u8]) -> nix::Result<usize> {
        if !self.loaded {
            return Err(Errno::ENOMEDIUM);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.max_block > 0 && buf.len() > self.max_block {
            return Err(Errno::EINVAL);
        }
        self.flush_write_behind()?;
        self.writing = false;
        if self.eof >= Eof::Eod1 {
            return match self.eof {
                Eof::Eod1 => {
                    self.eof = Eof::Eod2;
                    Ok(0)
                }
                Eof::Eod2 => {
                    self.eof = Eof::Eod;
                    Ok(0)
                }
                _ => Err(Errno::EIO),
            };
        }
        if self.bad_at == Some(self.pos) {
            self.pos += 1;
            self.block = -1;
            return Err(Errno::EIO);
        }
        match self.tape.get(self.pos).cloned() {
            None => {
                // BLANK CHECK: 0 once right after a filemark, EIO otherwise.
                self.block = -1;
                if self.eof == Eof::Fm {
                    self.eof = Eof::Eod;
                    Ok(0)
                } else {
                    Err(Errno::EIO)
                }
            }
            Some(Obj::Fm) => {
                // The READ stops past the filemark.
                self.pos += 1;
                self.eof = Eof::Fm;
                self.block = 0;
                if self.file >= 0 {
                    self.file += 1;
                }
                Ok(0)
            }
            Some(Obj::Rec(r)) => {
                self.pos += 1;
                if self.block >= 0 {
                    self.block += 1;
                }
                if r.len() > buf.len() {
                    // ILI with a negative residue: the block is skipped.
                    return Err(Errno::ENOMEM);
                }
                buf[..r.len()].copy_from_slice(&r);
                if self.eof == Eof::Fm {
                    self.eof = Eof::No;
                }
                Ok(r.len())
            }
        }
    }

    fn op(&mut self, op: c_short, count: c_int) -> nix::Result<()> {
        self.ops.push((op, count));
        if !self.loaded {
            return Err(Errno::ENOMEDIUM);
        }
        self.flush_write_behind()?;
        let mut count = count;
        if self.writing && matches!(op, MTREW | MTOFFL | MTBSF) {
            // st writes the filemark a file that was being written lacks.
            self.weof(1);
            if op == MTBSF {
                count += 1;
            }
        }
        if op != MTNOP && op != MTSETBLK {
            self.writing = false;
        }
        let n = count as usize;
        match op {
            MTFSF => {
                let f0 = self.file;
                for done in 0..n {
                    loop {
                        match self.tape.get(self.pos) {
                            None => {
                                self.block = -1;
                                self.file = if f0 >= 0 { f0 + done as c_int } else { f0 };
                                self.eof = Eof::Eod;
                                return Err(Errno::EIO);
                            }
                            Some(Obj::Fm) => {
                                self.pos += 1;
                                break;
                            }
                            Some(Obj::Rec(_)) => self.pos += 1,
                        }
                    }
                }
                if f0 >= 0 {
                    self.file = f0 + count;
                }
                self.block = 0;
                self.eof = Eof::Fm;
                Ok(())
            }
            MTBSF => {
                let f0 = self.file;
                for done in 0..n {
                    loop {
                        if self.pos == 0 {
                            self.block = 0;
                            if f0 >= 0 {
                                self.file = f0 - done as c_int;
                            }
                            self.eof = Eof::No;
                            return Err(Errno::EIO);
                        }
                        self.pos -= 1;
                        if self.tape[self.pos] == Obj::Fm {
                            break;
                        }
                    }
                }
                if f0 >= 0 {
                    self.file = f0 - count;
                }
                self.block = -1;
                self.eof = Eof::No;
                Ok(())
            }
            MTFSR => {
                let b0 = self.block;
                let calc = if b0 >= 0 { b0 + count } else { b0 };
                for done in 0..n {
                    match self.tape.get(self.pos) {
                        None => {
                            let undone = count - done as c_int;
                            self.block = if calc >= undone { calc - undone } else { -1 };
                            self.eof = Eof::Eod;
                            return Err(Errno::EIO);
                        }
                        Some(Obj::Fm) => {
                            self.pos += 1;
                            if self.file >= 0 {
                                self.file += 1;
                            }
                            self.block = 0;
                            self.eof = Eof::Fm;
                            return Err(Errno::EIO);
                        }
                        Some(Obj::Rec(_)) => self.pos += 1,
                    }
                }
                self.block = calc;
                self.eof = Eof::No;
                Ok(())
            }
            MTBSR => {
                let b0 = self.block;
                let calc = if b0 >= 0 { b0 - count } else { b0 };
                for done in 0..n {
                    if self.pos == 0 {
                        let undone = count - done as c_int;
                        self.block = calc + undone;
                        self.eof = Eof::No;
                        return Err(Errno::EIO);
                    }
                    if self.tape[self.pos - 1] == Obj::Fm {
                        self.pos -= 1;
                        self.file -= 1;
                        self.block = -1;
                        self.eof = Eof::No;
                        return Err(Errno::EIO);
                    }
                    self.pos -= 1;
                }
                self.block = calc;
                self.eof = Eof::No;
                Ok(())
            }
            MTWEOF => {
                if self.wp {
                    return Err(Errno::EACCES);
                }
                self.weof(n);
                Ok(())
            }
            MTREW => {
                self.pos = 0;
                self.file = 0;
                self.block = 0;
                self.eof = Eof::No;
                Ok(())
            }
            MTOFFL => {
                self.pos = 0;
                self.loaded = false;
                self.file = -1;
                self.block = -1;
                Ok(())
            }
            MTNOP => Ok(()),
            MTSETBLK => {
                self.block_size = c_long::from(count);
                Ok(())
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn get(&mut self) -> nix::Result<MtGet> {
        self.flush_write_behind()?;
        let mut gstat = 0;
        if self.wp {
            gstat |= GMT_WR_PROT;
        }
        if self.block == 0 {
            gstat |= if self.file == 0 { GMT_BOT } else { 0x8000_0000 };
        }
        if self.eof == Eof::EomOk {
            gstat |= GMT_EOT;
        } else if self.eof >= Eof::EomOk {
            gstat |= GMT_EOD;
        }
        gstat |= if self.loaded { GMT_ONLINE } else { GMT_DR_OPEN };
        let erreg = std::mem::take(&mut self.soft);
        Ok(MtGet {
            mt_type: 0x72,
            mt_resid: 0,
            mt_dsreg: self.block_size & MT_ST_BLKSIZE_MASK,
            mt_gstat: gstat,
            mt_erreg: erreg,
            mt_fileno: self.file,
            mt_blkno: self.block,
        })
    }

    fn pos(&mut self) -> nix::Result<c_long> {
        if !self.loaded {
            return Err(Errno::EIO);
        }
        if self.pos == 0 {
            // get_location(): at beginning of partition 0 st resets its numbers.
            self.file = 0;
            self.block = 0;
        }
        Ok(self.pos as c_long)
    }
}

#[derive(Clone)]
struct Fake(Arc<Mutex<Model>>);

impl Fake {
    fn m(&self) -> std::sync::MutexGuard<'_, Model> {
        self.0.lock().unwrap()
    }
}

impl Driver for Fake {
    fn read(&mut self, buf: &mut [u8]) -> nix::Result<usize> {
        self.m().read(buf)
    }
    fn write(&mut self, data: &[u8]) -> nix::Result<usize> {
        self.m().write(data)
    }
    fn op(&mut self, op: c_short, count: c_int) -> nix::Result<()> {
        self.m().op(op, count)
    }
    fn get(&mut self) -> nix::Result<MtGet> {
        self.m().get()
    }
    fn pos(&mut self) -> nix::Result<c_long> {
        self.m().pos()
    }
}

fn modelled(model: Model, writable: bool) -> (Result<StTape, TapeError>, Fake) {
    let fake = Fake(Arc::new(Mutex::new(model)));
    let mut t = StTape::with_driver(Box::new(fake.clone()), "/dev/nst-model".into(), writable);
    (t.check_open().map(|_| t), fake)
}

fn open_model(model: Model) -> (StTape, Fake) {
    let (t, f) = modelled(model, true);
    (t.unwrap(), f)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn spaced(resid: u32, stopped: Option<TapeError>) -> Spaced {
    Spaced { resid, stopped }
}

fn pos(t: &mut StTape) -> (Option<u32>, Option<u32>) {
    let s = t.status().unwrap();
    (s.file_num, s.block_no)
}

#[test]
fn open_sets_variable_blocks_and_reports_no_tape_and_write_protect() {
    let (t, f) = open_model(Model::new());
    assert_eq!(f.m().block_size, 0);
    assert!(f.m().ops.contains(&(MTSETBLK, 0)));
    drop(t);

    let mut m = Model::new();
    m.loaded = false;
    assert_eq!(modelled(m, false).0.unwrap_err(), TapeError::NoTape);

    let mut m = Model::new();
    m.wp = true;
    assert_eq!(modelled(m, true).0.unwrap_err(), TapeError::WriteProtected);
    let mut m = Model::new();
    m.wp = true;
    let mut t = modelled(m, false).0.unwrap();
    assert!(t.status().unwrap().write_protected);
    assert!(matches!(t.write_record(b"x"), Err(TapeError::Io(m)) if m.contains("read-only")));
    assert!(matches!(t.write_filemarks(1), Err(TapeError::Io(_))));
}

#[test]
fn records_and_filemarks_round_trip() {
    let (mut t, f) = open_model(Model::new());
    let sizes = [1, 512, 4096, 65536, 65537, (1 << 20) + 3];
    for (i, &n) in sizes.iter().enumerate() {
        let w = t.write_record(&pattern(n, i as u8)).unwrap();
        assert_eq!(
            w,
            Written {
                bytes: n,
                early_warning: false
            }
        );
    }
    assert_eq!(pos(&mut t), (Some(0), Some(6)));
    t.write_filemarks(1).unwrap();
    t.write_record(&pattern(100, 50)).unwrap();
    t.write_record(&pattern(200, 51)).unwrap();
    t.write_filemarks(1).unwrap();
    assert_eq!(pos(&mut t), (Some(2), Some(0)));
    assert_eq!(f.m().tape.len(), 10);

    t.rewind().unwrap();
    assert_eq!(pos(&mut t), (Some(0), Some(0)));
    let mut buf = vec![0u8; 2 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(t.read_record(&mut buf).unwrap(), (n, n));
        assert_eq!(buf[..n], pattern(n, i as u8)[..]);
    }
    // The filemark: Eof, and again Eof, because the head stays on its BOT side.
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(pos(&mut t), (Some(0), Some(6)));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(pos(&mut t), (Some(0), Some(6)));
    // Past it into the next file.
    assert_eq!(t.space_filemarks(1).unwrap(), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(1), Some(0)));
    assert_eq!(t.read_record(&mut buf).unwrap(), (100, 100));
    assert_eq!(t.read_record(&mut buf).unwrap(), (200, 200));
    assert_eq!(buf[..200], pattern(200, 51)[..]);
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(t.space_filemarks(1).unwrap(), spaced(0, None));
    // Blank tape after the last filemark: st returns 0 once (GMT_EOD), then EIO.
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eom));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eom));
}

#[test]
fn long_records_are_truncated_not_lost() {
    let (mut t, _f) = open_model(Model::new());
    t.write_record(&pattern(100_000, 1)).unwrap();
    t.write_record(&pattern(10, 2)).unwrap();
    t.write_record(&pattern(70_000, 3)).unwrap();
    t.rewind().unwrap();
    let mut small = [0u8; 1000];
    assert_eq!(t.read_record(&mut small).unwrap(), (100_000, 1000));
    assert_eq!(small[..], pattern(100_000, 1)[..1000]);
    // The record after it is intact: st's ENOMEM skip was undone.
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(t.read_record(&mut buf).unwrap(), (10, 10));
    assert_eq!(buf[..10], pattern(10, 2)[..]);
    assert_eq!(pos(&mut t), (Some(0), Some(2)));
    // An empty buffer still reports the record's length.
    assert_eq!(t.read_record(&mut []).unwrap(), (70_000, 0));
    assert_eq!(pos(&mut t), (Some(0), Some(3)));
}

#[test]
fn blank_tape_reads_as_eom_and_medium_errors_as_io() {
    // A fresh cartridge: st answers EIO without any status bit; the FSR probe finds blank.
    let (mut t, f) = open_model(Model::new());
    let mut buf = vec![0u8; 4096];
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eom));
    // Reading right after writing, with no filemark: blank too.
    t.write_record(b"abc").unwrap();
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eom));
    assert_eq!(f.m().tape.len(), 1);

    let mut m = Model::new();
    m.tape = vec![
        Obj::Rec(pattern(10, 0)),
        Obj::Rec(pattern(10, 1)),
        Obj::Rec(pattern(10, 2)),
    ];
    m.bad_at = Some(1);
    let (mut t, f) = open_model(m);
    assert_eq!(t.read_record(&mut buf).unwrap(), (10, 10));
    assert!(matches!(t.read_record(&mut buf), Err(TapeError::Io(m)) if m.contains("EIO")));
    // The probe was undone: the next read gets the record after the bad one.
    assert_eq!(f.m().pos, 2);
    assert_eq!(t.read_record(&mut buf).unwrap(), (10, 10));
    assert_eq!(buf[..10], pattern(10, 2)[..]);
}

fn eom_sequence(async_writes: bool) {
    let mut m = Model::new();
    m.ew_at = 3;
    m.phys_end = 6;
    m.async_writes = async_writes;
    let (mut t, f) = open_model(m);
    let rec = |i: u8| pattern(1000, i);
    for i in 0..3 {
        assert!(!t.write_record(&rec(i)).unwrap().early_warning);
    }
    // Crossing early warning: NO_ERR, flagged.
    assert_eq!(
        t.write_record(&rec(3)).unwrap(),
        Written {
            bytes: 1000,
            early_warning: true
        }
    );
    // Then exactly one Eom with nothing written.
    assert_eq!(t.write_record(&rec(4)), Err(TapeError::Eom));
    assert_eq!(f.m().tape.len(), 4);
    // Then writes succeed (st's alternating ENOSPC is absorbed)...
    assert!(!t.write_record(&rec(5)).unwrap().early_warning);
    assert!(!t.write_record(&rec(6)).unwrap().early_warning);
    // ...until physical end: Io.
    assert!(matches!(t.write_record(&rec(7)), Err(TapeError::Io(m)) if m.contains("physical end")));
    let tape = f.m().tape.clone();
    assert_eq!(
        tape,
        [0, 1, 2, 3, 5, 6].map(|i| Obj::Rec(rec(i))).to_vec(),
        "only the accepted records are on tape"
    );
    // A filemark past early warning succeeds.
    let mut m = f.m();
    m.phys_end = usize::MAX;
    drop(m);
    t.write_filemarks(1).unwrap();
}

#[test]
fn early_warning_sequence_follows_the_spec() {
    eom_sequence(false);
}

#[test]
fn early_warning_sequence_with_st_write_behind() {
    eom_sequence(true);
}

fn two_files() -> Model {
    // file 0: r0 r1 r2 FM, file 1: r3 r4 FM, then blank.
    let mut m = Model::new();
    let r = |i: usize| Obj::Rec(pattern(100 + i, i as u8));
    m.tape = vec![r(0), r(1), r(2), Obj::Fm, r(3), r(4), Obj::Fm];
    m
}

#[test]
fn space_records_forward_stops_before_a_filemark() {
    let (mut t, _f) = open_model(two_files());
    let mut buf = vec![0u8; 4096];
    assert_eq!(t.space_records(2).unwrap(), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(0), Some(2)));
    assert_eq!(t.space_records(5).unwrap(), spaced(4, Some(TapeError::Eof)));
    assert_eq!(pos(&mut t), (Some(0), Some(3)));
    // BOT side of the filemark: reads meet it, further FSRs move nothing.
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    assert_eq!(t.space_records(3).unwrap(), spaced(3, Some(TapeError::Eof)));
    assert_eq!(pos(&mut t), (Some(0), Some(3)));
    // Into blank tape: Eom with resid.
    assert_eq!(t.space_filemarks(2).unwrap(), spaced(0, None));
    assert_eq!(t.space_records(3).unwrap(), spaced(3, Some(TapeError::Eom)));
}

#[test]
fn space_records_backward_stops_after_a_filemark_and_at_bot() {
    let (mut t, _f) = open_model(two_files());
    let mut buf = vec![0u8; 4096];
    assert_eq!(t.space_filemarks(1).unwrap(), spaced(0, None));
    assert_eq!(t.read_record(&mut buf).unwrap(), (103, 103));
    assert_eq!(
        t.space_records(-4).unwrap(),
        spaced(3, Some(TapeError::Eof))
    );
    // EOT side of the filemark: the next read is the file's first record.
    assert_eq!(pos(&mut t), (Some(1), Some(0)));
    assert_eq!(
        t.space_records(-2).unwrap(),
        spaced(2, Some(TapeError::Eof))
    );
    assert_eq!(t.read_record(&mut buf).unwrap(), (103, 103));
    assert_eq!(buf[..103], pattern(103, 3)[..]);

    t.rewind().unwrap();
    assert_eq!(t.space_records(2).unwrap(), spaced(0, None));
    assert_eq!(
        t.space_records(-5).unwrap(),
        spaced(3, Some(TapeError::Bot))
    );
    assert_eq!(pos(&mut t), (Some(0), Some(0)));
}

#[test]
fn space_filemarks_both_ways() {
    let (mut t, _f) = open_model(two_files());
    let mut buf = vec![0u8; 4096];
    assert_eq!(t.space_filemarks(2).unwrap(), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(2), Some(0)));
    // Blank tape: NO_ERR with resid.
    assert_eq!(
        t.space_filemarks(3).unwrap(),
        spaced(3, Some(TapeError::Eom))
    );
    // BSF 1: BOT side of the last filemark, so a read meets it; st forgets the block number.
    assert_eq!(t.space_filemarks(-1).unwrap(), spaced(0, None));
    assert_eq!(pos(&mut t), (Some(1), None));
    assert_eq!(t.read_record(&mut buf), Err(TapeError::Eof));
    // Back to BOT with resid.
    assert_eq!(
        t.space_filemarks(-5).unwrap(),
        spaced(4, Some(TapeError::Bot))
    );
    assert_eq!(pos(&mut t), (Some(0), Some(0)));
    assert_eq!(t.read_record(&mut buf).unwrap(), (100, 100));
}

#[test]
fn zero_counts_do_nothing() {
    let (mut t, f) = open_model(two_files());
    let before = f.m().ops.len();
    assert_eq!(t.space_filemarks(0).unwrap(), spaced(0, None));
    assert_eq!(t.space_records(0).unwrap(), spaced(0, None));
    t.write_filemarks(0).unwrap();
    assert_eq!(t.write_record(&[]).unwrap().bytes, 0);
    assert_eq!(f.m().ops.len(), before);
    assert_eq!(f.m().writes, 0);
}

#[test]
fn flush_syncs_with_zero_filemarks_and_keeps_the_block_number() {
    let (mut t, f) = open_model(Model::new());
    // Nothing written: no I/O at all.
    let before = f.m().ops.len();
    t.flush().unwrap();
    assert_eq!(f.m().ops.len(), before);
    for i in 0..3 {
        t.write_record(&pattern(10, i)).unwrap();
    }
    t.flush().unwrap();
    assert!(f.m().ops.contains(&(MTWEOF, 0)));
    // st now says block 0; the status still says 3.
    assert_eq!(f.m().block, 0);
    assert_eq!(pos(&mut t), (Some(0), Some(3)));
    t.write_record(&pattern(10, 4)).unwrap();
    assert_eq!(pos(&mut t), (Some(0), Some(4)));
    t.flush().unwrap();
    assert_eq!(pos(&mut t), (Some(0), Some(4)));
    t.write_filemarks(1).unwrap();
    assert_eq!(pos(&mut t), (Some(1), Some(0)));
    assert_eq!(f.m().tape.len(), 5);
}

#[test]
fn reads_shrink_to_the_drive_block_limit() {
    let mut m = Model::new();
    m.max_block = 1 << 20;
    let (mut t, _f) = open_model(m);
    t.write_record(&pattern(5000, 9)).unwrap();
    assert!(
        matches!(t.write_record(&vec![0; (1 << 20) + 1]), Err(TapeError::Io(m)) if m.contains("block limits"))
    );
    assert!(
        matches!(t.write_record(&vec![0; MAX_BLOCK + 1]), Err(TapeError::Io(m)) if m.contains("limit"))
    );
    t.rewind().unwrap();
    let mut buf = vec![0u8; 16 << 20];
    assert_eq!(t.read_record(&mut buf).unwrap(), (5000, 5000));
    assert_eq!(t.read_cap, 1 << 20);
}

#[test]
fn ready_unload_and_status() {
    let mut m = two_files();
    m.soft = 2;
    let (mut t, _f) = open_model(m);
    t.ready().unwrap();
    let s = t.status().unwrap();
    assert_eq!(s.block_size, 0);
    assert_eq!(s.soft_errors, Some(2));
    assert_eq!(s.total_space, None);
    assert!(!s.write_protected);
    t.unload().unwrap();
    assert_eq!(t.ready(), Err(TapeError::NoTape));
    let s = t.status().unwrap();
    assert_eq!((s.file_num, s.block_no), (None, None));
    let mut buf = [0u8; 10];
    assert_eq!(t.read_record(&mut buf), Err(TapeError::NoTape));
    assert_eq!(t.write_record(b"x"), Err(TapeError::NoTape));
    assert_eq!(t.rewind(), Err(TapeError::NoTape));
}

#[test]
fn unknown_position_recovers_at_bot() {
    let (mut t, f) = open_model(two_files());
    {
        let mut m = f.m();
        m.pos = 2;
        m.file = -1;
        m.block = -1;
    }
    assert_eq!(pos(&mut t), (None, None));
    // BSF to BOT with st's counters lost: READ POSITION brings them back.
    assert_eq!(t.space_filemarks(-3).unwrap().stopped, Some(TapeError::Bot));
    assert_eq!(pos(&mut t), (Some(0), Some(0)));
}

//! Linux SCSI tape drives (`/dev/nst*`) as a `TapeDevice`: one read(), write() or mtio ioctl
//! per operation, with the st driver's quirks mapped onto NDMP's tape model (spec §3.4).

use super::{Spaced, TapeDevice, TapeError, TapeStatus, Written};
use libc::{c_int, c_long, c_short};
use nix::errno::Errno;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `struct mtop` of `<linux/mtio.h>`: the argument of MTIOCTOP.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
// Only the kernel reads the fields.
#[allow(dead_code)]
struct MtOp {
    mt_op: c_short,
    mt_count: c_int,
}

/// `struct mtget` of `<linux/mtio.h>` (`__kernel_daddr_t` is `int`): the result of MTIOCGET.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MtGet {
    // Kept for the kernel's layout; the drive type says nothing NDMP needs.
    #[allow(dead_code)]
    mt_type: c_long,
    /// st stores the current partition here, not a residual count, so it is never used.
    #[allow(dead_code)]
    mt_resid: c_long,
    mt_dsreg: c_long,
    mt_gstat: c_long,
    mt_erreg: c_long,
    mt_fileno: c_int,
    mt_blkno: c_int,
}

/// `struct mtpos` of `<linux/mtio.h>`: the result of MTIOCPOS (READ POSITION).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MtPos {
    mt_blkno: c_long,
}

/// The raw ioctls; `libc` has no mtio definitions, so the request codes come from nix's `_IOW`
/// and `_IOR` with our structs' sizes (checked against the C header by the tests).
mod sys {
    use super::{MtGet, MtOp, MtPos};

    nix::ioctl_write_ptr!(
        /// MTIOCTOP = `_IOW('m', 1, struct mtop)`.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to a valid `MtOp`.
        mtioctop,
        b'm',
        1,
        MtOp
    );
    nix::ioctl_read!(
        /// MTIOCGET = `_IOR('m', 2, struct mtget)`.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to writable memory for one `MtGet`.
        mtiocget,
        b'm',
        2,
        MtGet
    );
    nix::ioctl_read!(
        /// MTIOCPOS = `_IOR('m', 3, struct mtpos)`.
        ///
        /// # Safety
        /// `fd` must be open and `data` must point to writable memory for one `MtPos`.
        mtiocpos,
        b'm',
        3,
        MtPos
    );
}

// MTIOCTOP operations (<linux/mtio.h>), only those used here.
const MTFSF: c_short = 1;
const MTBSF: c_short = 2;
const MTFSR: c_short = 3;
const MTBSR: c_short = 4;
const MTWEOF: c_short = 5;
const MTREW: c_short = 6;
const MTOFFL: c_short = 7;
const MTNOP: c_short = 8;
const MTSETBLK: c_short = 20;

// Generic status bits in `mt_gstat` (the GMT_* macros' masks).
const GMT_BOT: c_long = 0x4000_0000;
const GMT_EOT: c_long = 0x2000_0000;
const GMT_EOD: c_long = 0x0800_0000;
const GMT_WR_PROT: c_long = 0x0400_0000;
const GMT_ONLINE: c_long = 0x0100_0000;
const GMT_DR_OPEN: c_long = 0x0004_0000;

/// Block size bits of `mt_dsreg` (the density is in the top byte).
const MT_ST_BLKSIZE_MASK: c_long = 0xff_ffff;
/// Recovered-error count in `mt_erreg`; st zeroes it after every MTIOCGET.
const MT_ST_SOFTERR_MASK: c_long = 0xffff;

/// The largest variable block: READ(6)/WRITE(6) carry a 24-bit length, and st does not stop a
/// larger count when the drive's block limits are unknown (it would truncate the CDB field).
pub const MAX_BLOCK: usize = 0xff_ffff;
/// SPACE and WRITE FILEMARKS counts are 24-bit (SPACE's signed): larger requests go in chunks.
const MAX_COUNT: u64 = 0x7f_ffff;
/// Reads below this size that st rejects with EINVAL are the caller's problem (min block
/// size), not a sign that our cap exceeds the drive's maximum block size.
const MIN_CAP: usize = 64 << 10;
/// Alignment of the internal read buffer, so st can DMA into it directly.
const BUF_ALIGN: usize = 4096;
/// The major number of SCSI tape nodes (Documentation/admin-guide/devices.txt).
const SCSI_TAPE_MAJOR: u64 = 9;

/// The system calls `StTape` makes. A trait so the NDMP mapping can be tested against a model
/// of st's state machine: there is no tape drive on the build machines.
trait Driver: Send {
    fn read(&mut self, buf: &mut [u8]) -> nix::Result<usize>;
    fn write(&mut self, data: &[u8]) -> nix::Result<usize>;
    fn op(&mut self, op: c_short, count: c_int) -> nix::Result<()>;
    fn get(&mut self) -> nix::Result<MtGet>;
    fn pos(&mut self) -> nix::Result<c_long>;
}

/// An open device node.
struct Node(OwnedFd);

/// st takes its per-drive mutex interruptibly before doing anything, so EINTR means nothing
/// happened and the call can simply be repeated.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

impl Driver for Node {
    fn read(&mut self, buf: &mut [u8]) -> nix::Result<usize> {
        retry(|| nix::unistd::read(self.0.as_fd(), buf))
    }

    fn write(&mut self, data: &[u8]) -> nix::Result<usize> {
        retry(|| nix::unistd::write(self.0.as_fd(), data))
    }

    fn op(&mut self, op: c_short, count: c_int) -> nix::Result<()> {
        let arg = MtOp {
            mt_op: op,
            mt_count: count,
        };
        let fd = self.0.as_raw_fd();
        // SAFETY: `fd` is owned by `self` and open for the whole call; `arg` is an initialised
        // MtOp with the kernel's layout (size and offsets are tested) that the kernel only
        // reads (_IOW) during the call.
        retry(|| unsafe { sys::mtioctop(fd, &arg) }).map(drop)
    }

    fn get(&mut self) -> nix::Result<MtGet> {
        let mut g = MtGet::default();
        let fd = self.0.as_raw_fd();
        // SAFETY: `fd` is open (owned by `self`); `g` is a live, writable MtGet whose size is
        // the one encoded in the request code, so the kernel writes only inside it.
        retry(|| unsafe { sys::mtiocget(fd, &mut g) })?;
        Ok(g)
    }

    fn pos(&mut self) -> nix::Result<c_long> {
        let mut p = MtPos::default();
        let fd = self.0.as_raw_fd();
        // SAFETY: as for MTIOCGET: an open fd and a writable MtPos of the encoded size.
        retry(|| unsafe { sys::mtiocpos(fd, &mut p) })?;
        Ok(p.mt_blkno)
    }
}

/// Where the drive stands relative to the early-warning mark, for the spec's write sequence
/// (§3.4.6): NO_ERR with early warning, one EOM_ERR, then success until physical end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EomState {
    /// Before early warning (or repositioned since).
    Clear,
    /// The last write crossed early warning; the next write answers `Eom`.
    Warned,
    /// `Eom` was reported; writes go on until physical end.
    Past,
}

/// A block number st got wrong or forgot, which we know better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockFix {
    /// st reports `-1` for this file (it forgets the block number on MTBSF) but we know it.
    Known { file: c_int, block: u32 },
    /// st restarted its count at 0 when flush wrote zero filemarks; the true number is st's
    /// plus `bias` (None: unknown) until the head leaves this file.
    Offset { file: c_int, bias: Option<u32> },
}

/// A Linux SCSI tape drive opened through its st device node.
///
/// How st's behaviour (drivers/scsi/st.c, Documentation/scsi/st.rst) maps to the trait:
///
/// | NDMP / trait                         | st                                                    |
/// |--------------------------------------|-------------------------------------------------------|
/// | write crossing early warning: NO_ERR + `early_warning` | write() returns the full count and st's state turns EOM (MTIOCGET shows `GMT_EOT`); with write-behind, MTIOCGET itself answers ENOSPC |
/// | the next write: `Eom`, nothing written | answered here without calling write()               |
/// | later writes succeed                 | st alternates ENOSPC (nothing written) and success; one ENOSPC is retried once |
/// | physical end: `Io`                   | ENOSPC twice in a row (VOLUME OVERFLOW plus the alternation) |
/// | read at a filemark: `Eof`, head on its BOT side | read() returns 0 *past* the mark; MTBSF 1 steps back |
/// | read at blank tape: `Eom`            | 0 with `GMT_EOD` after a filemark, else EIO; an FSR probe tells blank (BLANK CHECK sets `GMT_EOD`) from a medium error |
/// | record longer than the buffer: truncated, full length reported | ENOMEM after st skipped the block; MTBSR 1 and a re-read into a 16 MiB buffer |
/// | FSR stops at a filemark on its BOT side | SPACE crosses it; MTBSF 1 steps back             |
/// | BSR stops at a filemark on its EOT side | SPACE crosses it; MTFSF 1 steps forward          |
/// | `resid`                              | from `mt_fileno`/`mt_blkno` before and after (st's `mt_resid` is the partition number, not a residual), else from MTIOCPOS |
/// | flush                                | MTWEOF 0 (WRITE FILEMARKS 0 synchronises the drive buffer); MTNOP only empties st's own buffer |
///
/// Dropping it closes the node; st then writes a filemark itself if the last operation was a
/// write (the TAPE server writes the implicit filemark before that).
pub struct StTape {
    drv: Box<dyn Driver>,
    /// The device path, for messages.
    name: String,
    writable: bool,
    eom: EomState,
    fix: Option<BlockFix>,
    /// Records were written that the drive may still hold in its buffer.
    unsynced: bool,
    /// Recovered errors since open (st hands them out per MTIOCGET and then forgets them).
    soft_errors: u32,
    /// The largest read count st accepts; lowered when st's block limits reject it.
    read_cap: usize,
    /// Holds a record longer than the caller's buffer; allocated on first need.
    big: Vec<u8>,
}

impl fmt::Debug for StTape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StTape")
            .field("name", &self.name)
            .field("writable", &self.writable)
            .field("eom", &self.eom)
            .field("fix", &self.fix)
            .field("unsynced", &self.unsynced)
            .field("read_cap", &self.read_cap)
            .finish_non_exhaustive()
    }
}

/// Turns one errno from st into the trait's error, for the cases callers do not refine
/// themselves. `what` names the operation for the message.
fn errno_error(what: &str, e: Errno) -> TapeError {
    match e {
        // st's "no cartridge" (drive state ST_NO_TAPE) for I/O and every mtio operation.
        Errno::ENOMEDIUM => TapeError::NoTape,
        // st refuses write() and MTWEOF with EACCES when the cartridge is write protected.
        Errno::EACCES => TapeError::WriteProtected,
        // A blocking open for writing of a write-protected cartridge (we open non-blocking
        // and check GMT_WR_PROT instead, but a caller may still meet it).
        Errno::EROFS => TapeError::WriteProtected,
        // Early warning on write; write_record turns st's sequence into the spec's.
        Errno::ENOSPC => TapeError::Eom,
        // st does not implement this mtio operation.
        Errno::ENOSYS => TapeError::NotSupported("operation not implemented by the st driver"),
        // An ioctl on something that is not a tape driver (regular file, /dev/null).
        Errno::ENOTTY => TapeError::Io(format!("{what}: not a tape device (ENOTTY)")),
        // rw_checks: the count is outside the drive's block limits (READ BLOCK LIMITS).
        Errno::EINVAL => TapeError::Io(format!(
            "{what}: the drive rejects this size (EINVAL: outside its block limits)"
        )),
        // A record longer than the read count; read_record recovers it, elsewhere an error.
        Errno::ENOMEM => TapeError::Io(format!("{what}: record longer than the buffer (ENOMEM)")),
        // st could not allocate a driver buffer for a transfer it cannot do directly.
        Errno::EOVERFLOW => TapeError::Io(format!(
            "{what}: st could not allocate a buffer this large (EOVERFLOW)"
        )),
        // Another process has the node open (st allows one open at a time).
        Errno::EBUSY => TapeError::Io(format!("{what}: device busy (EBUSY)")),
        // Mode not defined, or the SCSI device is gone / in error recovery.
        Errno::ENXIO | Errno::ENODEV => {
            TapeError::Io(format!("{what}: device not available ({e})"))
        }
        // Medium or hardware error, or the position was lost in a bus reset (st then
        // refuses I/O until a rewind).
        Errno::EIO => TapeError::Io(format!("{what}: I/O error (EIO)")),
        _ => TapeError::Io(format!("{what}: {}", e.desc())),
    }
}

/// The next read count to try when st rejects `n`: drives report maximum block sizes like
/// 0xffffff, 0x800000 or 0x7fffff, so alternate between powers of two and one less.
fn next_lower_cap(n: usize) -> usize {
    if n.is_power_of_two() {
        n - 1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// `remaining` items were asked for and `moved` (if known) of them were done before the stop;
/// an unknown count reports everything as not done, which is never an overstatement.
fn resid(remaining: u64, moved: Option<u64>, chunk: u64) -> u32 {
    clamp_u32(remaining - moved.map_or(0, |m| m.min(chunk)))
}

fn st_delta(before: c_int, after: c_int) -> Option<u64> {
    (before >= 0 && after >= 0).then(|| (i64::from(after) - i64::from(before)).unsigned_abs())
}

impl StTape {
    /// Opens the device node read-only or read-write (O_NONBLOCK at open so a drive with no
    /// cartridge doesn't hang, then cleared), sets variable-block mode (MTSETBLK 0), and
    /// reports NoTape / WriteProtected / Io clearly (GMT_DR_OPEN, GMT_WR_PROT from MTIOCGET).
    pub fn open(path: &Path, writable: bool) -> Result<StTape, TapeError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| TapeError::Io(format!("{name}: {e}")))?;
        // An ioctl on a regular file answers ENOTTY; say what is wrong before trying.
        if !meta.file_type().is_char_device() {
            return Err(TapeError::Io(format!(
                "{name}: not a character device (a SCSI tape drive is a /dev/nstN node)"
            )));
        }
        let rdev = meta.rdev();
        if nix::sys::stat::major(rdev) == SCSI_TAPE_MAJOR && nix::sys::stat::minor(rdev) & 0x80 == 0
        {
            // Bit 7 of the minor is st's no-rewind bit: this node rewinds on every close, so
            // the position a DMA set up is lost between sessions.
            tracing::warn!("{name} is a rewinding tape node; use the /dev/nst* node");
        }
        // O_NONBLOCK: st's open otherwise waits up to ST_BLOCK_SECONDS for a cartridge and
        // refuses a write-protected one with EROFS; we want to check and say which it is.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| open_error(&name, e))?;
        let fd = OwnedFd::from(file);
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| errno_error(&format!("{name}: F_GETFL"), e))?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))
            .map_err(|e| errno_error(&format!("{name}: F_SETFL"), e))?;
        let mut tape = StTape::with_driver(Box::new(Node(fd)), name, writable);
        tape.check_open()?;
        Ok(tape)
    }

    fn with_driver(drv: Box<dyn Driver>, name: String, writable: bool) -> StTape {
        StTape {
            drv,
            name,
            writable,
            eom: EomState::Clear,
            fix: None,
            unsynced: false,
            soft_errors: 0,
            read_cap: MAX_BLOCK,
            big: Vec::new(),
        }
    }

    /// After open: is it a tape, is a cartridge loaded, may we write, variable-block mode.
    fn check_open(&mut self) -> Result<(), TapeError> {
        let g = match self.get() {
            Ok(g) => g,
            Err(e @ (Errno::ENOTTY | Errno::EINVAL)) => {
                return Err(TapeError::Io(format!(
                    "{}: not a SCSI tape device (MTIOCGET: {e:?})",
                    self.name
                )))
            }
            Err(e) => return Err(errno_error(&format!("{}: MTIOCGET", self.name), e)),
        };
        // GMT_DR_OPEN is st's "no medium"; without GMT_ONLINE the drive is still loading or
        // otherwise not ready, which for NDMP is also "no tape loaded".
        if g.mt_gstat & GMT_DR_OPEN != 0 || g.mt_gstat & GMT_ONLINE == 0 {
            return Err(TapeError::NoTape);
        }
        if self.writable && g.mt_gstat & GMT_WR_PROT != 0 {
            return Err(TapeError::WriteProtected);
        }
        // Variable-block mode makes one record one tape block (spec §3.4.6). Setting it even
        // when already 0 marks the block size as chosen, so st does not apply an
        // administrator's default block size when writing starts at BOT.
        self.drv.op(MTSETBLK, 0).map_err(|e| {
            errno_error(
                &format!("{}: setting variable-block mode (MTSETBLK 0)", self.name),
                e,
            )
        })?;
        let g = self
            .get()
            .map_err(|e| errno_error(&format!("{}: MTIOCGET", self.name), e))?;
        let block_size = g.mt_dsreg & MT_ST_BLKSIZE_MASK;
        if block_size != 0 {
            return Err(TapeError::Io(format!(
                "{}: the drive stays in fixed-block mode ({block_size} bytes)",
                self.name
            )));
        }
        Ok(())
    }

    /// MTIOCGET, collecting the soft-error count st hands out once.
    fn get(&mut self) -> nix::Result<MtGet> {
        let g = self.drv.get()?;
        let soft = u32::try_from(g.mt_erreg & MT_ST_SOFTERR_MASK).unwrap_or(0);
        self.soft_errors = self.soft_errors.saturating_add(soft);
        Ok(g)
    }

    /// READ POSITION, when the drive supports it. Also how st notices BOT when it lost the
    /// position: at beginning of partition 0 it resets its file and block numbers to 0.
    fn tell(&mut self) -> Option<i64> {
        // c_long is i32 on 32-bit targets.
        #[allow(clippy::useless_conversion)]
        self.drv.pos().ok().map(i64::from)
    }

    fn err(&self, what: &str, e: Errno) -> TapeError {
        errno_error(&format!("{}: {what}", self.name), e)
    }

    /// The block number within the current file, with what we know better than st applied.
    fn true_block(&self, g: &MtGet) -> Option<u32> {
        match self.fix {
            Some(BlockFix::Known { file, block }) if g.mt_fileno == file && g.mt_blkno < 0 => {
                Some(block)
            }
            Some(BlockFix::Offset { file, bias }) if g.mt_fileno == file => {
                let st = u32::try_from(g.mt_blkno).ok()?;
                bias?.checked_add(st)
            }
            _ => u32::try_from(g.mt_blkno).ok(),
        }
    }

    /// The head moved by `delta` blocks within the file: st counts for itself, except where
    /// it had forgotten the number.
    fn shift_known(&mut self, delta: i64) {
        if let Some(BlockFix::Known { file, block }) = self.fix {
            self.fix = u32::try_from(i64::from(block) + delta)
                .ok()
                .map(|block| BlockFix::Known { file, block });
        }
    }

    /// The head went somewhere st's file and block numbers describe on their own.
    fn repositioned(&mut self) {
        self.fix = None;
        // SCSI drives write out buffered data before any positioning command or filemark.
        self.unsynced = false;
    }

    /// One read() of at most `buf.len()` bytes, lowering our cap when st's block limits
    /// reject the count (rw_checks fails before any SCSI command, so the tape did not move).
    fn read_capped(&mut self, buf: &mut [u8]) -> nix::Result<usize> {
        loop {
            let n = buf.len().min(self.read_cap);
            match self.drv.read(&mut buf[..n]) {
                Err(Errno::EINVAL) if n == self.read_cap && n > MIN_CAP => {
                    self.read_cap = next_lower_cap(n);
                }
                r => return r,
            }
        }
    }

    /// Reads the next block whole into the internal buffer and copies what fits into `buf`.
    fn read_via_big(&mut self, buf: &mut [u8]) -> Result<Option<(usize, usize)>, Errno> {
        let mut big = std::mem::take(&mut self.big);
        if big.is_empty() {
            big = vec![0; MAX_BLOCK + BUF_ALIGN];
        }
        let off = big.as_ptr().align_offset(BUF_ALIGN).min(BUF_ALIGN);
        let r = self.read_capped(&mut big[off..off + MAX_BLOCK]);
        let out = match r {
            Ok(0) => Ok(None),
            Ok(full) => {
                let copied = full.min(buf.len());
                buf[..copied].copy_from_slice(&big[off..off + copied]);
                Ok(Some((full, copied)))
            }
            Err(e) => Err(e),
        };
        self.big = big;
        out
    }

    /// read() returned 0: a filemark (st has moved past it) or end of data.
    fn zero_read(&mut self, pre_file: c_int, pre_block: Option<u32>) -> TapeError {
        match self.get() {
            // st reports 0 once more at blank tape after a filemark (GMT_EOD), and at
            // physical end of medium (GMT_EOT).
            Ok(g) if g.mt_gstat & (GMT_EOD | GMT_EOT) != 0 => TapeError::Eom,
            Ok(_) => {
                // The READ crossed the filemark; the trait (and MTIO FSR's rule) keeps the
                // head on its BOT side so the next read meets it again.
                if let Err(e) = self.drv.op(MTBSF, 1) {
                    return self.err("stepping back over the filemark (MTBSF 1)", e);
                }
                // MTBSF makes st forget the block number; it is the one before the read.
                self.fix = match pre_block {
                    Some(block) if pre_file >= 0 => Some(BlockFix::Known {
                        file: pre_file,
                        block,
                    }),
                    _ => None,
                };
                TapeError::Eof
            }
            Err(e) => self.err("status after reading a filemark", e),
        }
    }

    /// read() failed with EIO: blank tape or a real error. st answers a read at blank tape
    /// that does not follow a filemark with plain EIO and no status bit, so ask SPACE, whose
    /// BLANK CHECK st does record (GMT_EOD).
    fn read_eio(&mut self) -> TapeError {
        let before = match self.get() {
            Ok(g) if g.mt_gstat & GMT_EOD != 0 => return TapeError::Eom,
            Ok(g) => g,
            Err(e) => return self.err("status after a read error", e),
        };
        let read_error = TapeError::Io(format!("{}: read: I/O error (EIO)", self.name));
        match self.drv.op(MTFSR, 1) {
            Ok(()) => {
                // A record follows: the read failed on the medium. Undo the probe.
                let _ = self.drv.op(MTBSR, 1);
                read_error
            }
            Err(Errno::EIO) => match self.get() {
                Ok(g) if g.mt_gstat & GMT_EOD != 0 => TapeError::Eom,
                Ok(g) => {
                    if before.mt_fileno >= 0 && g.mt_fileno == before.mt_fileno + 1 {
                        // The probe crossed a filemark; put the head back before it.
                        let _ = self.drv.op(MTBSF, 1);
                    }
                    read_error
                }
                Err(_) => read_error,
            },
            Err(_) => read_error,
        }
    }

    fn space_filemarks_inner(&mut self, count: i64) -> Result<Spaced, TapeError> {
        let forward = count > 0;
        let op = if forward { MTFSF } else { MTBSF };
        let total = count.unsigned_abs();
        let mut done = 0u64;
        while done < total {
            let chunk = (total - done).min(MAX_COUNT);
            let before = self.get().map_err(|e| self.err("status", e))?;
            match self.drv.op(op, chunk as c_int) {
                Ok(()) => done += chunk,
                Err(Errno::EIO) => {
                    let mut after = self.get().map_err(|e| self.err("status", e))?;
                    if !forward && after.mt_gstat & GMT_BOT == 0 && self.tell() == Some(0) {
                        // st lost count (or a drive reported the residue with the wrong
                        // sign); READ POSITION at BOT resets st's numbers to 0.
                        after = self.get().map_err(|e| self.err("status", e))?;
                    }
                    let stopped = if forward && after.mt_gstat & (GMT_EOD | GMT_EOT) != 0 {
                        // FSF into blank tape (or the end of the medium): NO_ERR with resid,
                        // head after the last recorded block or filemark (spec §3.4.5).
                        TapeError::Eom
                    } else if !forward && after.mt_gstat & GMT_BOT != 0 {
                        TapeError::Bot
                    } else {
                        return Err(self.err("spacing over filemarks", Errno::EIO));
                    };
                    let moved = st_delta(before.mt_fileno, after.mt_fileno);
                    return Ok(Spaced {
                        resid: resid(total - done, moved, chunk),
                        stopped: Some(stopped),
                    });
                }
                Err(e) => return Err(self.err("spacing over filemarks", e)),
            }
        }
        Ok(Spaced {
            resid: 0,
            stopped: None,
        })
    }

    fn space_records_inner(&mut self, count: i64) -> Result<Spaced, TapeError> {
        let forward = count > 0;
        let op = if forward { MTFSR } else { MTBSR };
        let total = count.unsigned_abs();
        let mut done = 0u64;
        while done < total {
            let chunk = (total - done).min(MAX_COUNT);
            let before = self.get().map_err(|e| self.err("status", e))?;
            let b0 = self.true_block(&before);
            // READ POSITION counts what st cannot: blocks passed before an FSR met a filemark
            // (st only notes the new file), or before a BSR stop when st lost the block number.
            let p0 = if forward || b0.is_none() {
                self.tell()
            } else {
                None
            };
            match self.drv.op(op, chunk as c_int) {
                Ok(()) => {
                    done += chunk;
                    self.shift_known(if forward {
                        chunk as i64
                    } else {
                        -(chunk as i64)
                    });
                }
                Err(Errno::EIO) => {
                    let after = self.get().map_err(|e| self.err("status", e))?;
                    let remaining = total - done;
                    return if forward {
                        self.fsr_stopped(before, after, b0, p0, remaining, chunk)
                    } else {
                        self.bsr_stopped(before, after, b0, p0, remaining, chunk)
                    };
                }
                Err(e) => return Err(self.err("spacing over records", e)),
            }
        }
        Ok(Spaced {
            resid: 0,
            stopped: None,
        })
    }

    /// An FSR ended early: blank tape, or a filemark st crossed.
    fn fsr_stopped(
        &mut self,
        before: MtGet,
        after: MtGet,
        b0: Option<u32>,
        p0: Option<i64>,
        remaining: u64,
        chunk: u64,
    ) -> Result<Spaced, TapeError> {
        if after.mt_gstat & (GMT_EOD | GMT_EOT) != 0 {
            // st computed the block number from the sense data's residue.
            let moved = st_delta(before.mt_blkno, after.mt_blkno).or_else(|| {
                let p1 = self.tell()?;
                Some(p1.checked_sub(p0?)?.unsigned_abs())
            });
            self.fix = None;
            return Ok(Spaced {
                resid: resid(remaining, moved, chunk),
                stopped: Some(TapeError::Eom),
            });
        }
        // st adds 1 to a known file number, or leaves an unknown one and zeroes the block.
        let crossed = if before.mt_fileno >= 0 {
            after.mt_fileno == before.mt_fileno + 1
        } else {
            after.mt_blkno == 0
        };
        if !crossed {
            return Err(self.err("spacing over records", Errno::EIO));
        }
        // SPACE stops on the filemark's EOT side; NDMP wants its BOT side, so the next read
        // or FSR meets it again (spec §3.4.5).
        self.drv
            .op(MTBSF, 1)
            .map_err(|e| self.err("stepping back over the filemark (MTBSF 1)", e))?;
        let moved = p0.and_then(|p0| Some(self.tell()?.checked_sub(p0)?.unsigned_abs()));
        self.fix = match (b0, moved) {
            (Some(b0), Some(m)) if before.mt_fileno >= 0 => Some(BlockFix::Known {
                file: before.mt_fileno,
                block: b0.saturating_add(clamp_u32(m)),
            }),
            _ => None,
        };
        Ok(Spaced {
            resid: resid(remaining, moved, chunk),
            stopped: Some(TapeError::Eof),
        })
    }

    /// A BSR ended early: beginning of tape, or a filemark st crossed.
    fn bsr_stopped(
        &mut self,
        before: MtGet,
        mut after: MtGet,
        b0: Option<u32>,
        p0: Option<i64>,
        remaining: u64,
        chunk: u64,
    ) -> Result<Spaced, TapeError> {
        // st subtracts 1 from the file number, known or not.
        if after.mt_fileno < before.mt_fileno {
            // SPACE stops on the filemark's BOT side; NDMP wants its EOT side (spec §3.4.5).
            self.drv
                .op(MTFSF, 1)
                .map_err(|e| self.err("stepping forward over the filemark (MTFSF 1)", e))?;
            // The head is at the start of the file it was in: every block before it passed.
            let moved = b0.map(u64::from).or_else(|| {
                let p1 = self.tell()?;
                Some(p0?.checked_sub(p1)?.unsigned_abs())
            });
            self.fix = None;
            return Ok(Spaced {
                resid: resid(remaining, moved, chunk),
                stopped: Some(TapeError::Eof),
            });
        }
        if after.mt_gstat & GMT_BOT == 0 {
            // st may have lost count; READ POSITION lets it notice BOT.
            let at = self.tell();
            after = self.get().map_err(|e| self.err("status", e))?;
            if after.mt_gstat & GMT_BOT == 0 && at != Some(0) {
                return Err(self.err("spacing over records", Errno::EIO));
            }
        }
        self.fix = None;
        let moved = b0.map(u64::from).or_else(|| Some(p0?.unsigned_abs()));
        Ok(Spaced {
            resid: resid(remaining, moved, chunk),
            stopped: Some(TapeError::Bot),
        })
    }
}

fn open_error(name: &str, e: std::io::Error) -> TapeError {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOMEDIUM) => TapeError::NoTape,
        Some(Errno::EROFS) => TapeError::WriteProtected,
        // At open, EACCES is the node's permissions, not a write-protected cartridge.
        Some(Errno::EACCES | Errno::EPERM) => TapeError::Io(format!("{name}: permission denied")),
        Some(Errno::EBUSY) => TapeError::Io(format!(
            "{name}: busy (another process has the drive open; st allows one)"
        )),
        Some(Errno::ENXIO | Errno::ENODEV) => {
            TapeError::Io(format!("{name}: no such device (is the drive attached?)"))
        }
        _ => TapeError::Io(format!("{name}: {e}")),
    }
}

impl TapeDevice for StTape {
    fn write_record(&mut self, data: &[u8]) -> Result<Written, TapeError> {
        // Spec §3.4.6: a zero-length write does nothing, whatever the drive's state.
        if data.is_empty() {
            return Ok(Written {
                bytes: 0,
                early_warning: false,
            });
        }
        if !self.writable {
            return Err(TapeError::Io(format!("{}: opened read-only", self.name)));
        }
        if data.len() > MAX_BLOCK {
            return Err(TapeError::Io(format!(
                "{}: a {} byte record exceeds the {MAX_BLOCK} byte limit of a tape block",
                self.name,
                data.len()
            )));
        }
        if self.eom == EomState::Warned {
            // The spec's one EOM_ERR after early warning, with nothing written. st would
            // answer ENOSPC itself after a synchronous write, but not after a write-behind
            // whose early warning only our MTIOCGET saw.
            self.eom = EomState::Past;
            return Err(TapeError::Eom);
        }
        let mut retried = false;
        loop {
            match self.drv.write(data) {
                Ok(n) if n == data.len() => break,
                // In variable-block mode a record is one block; part of one is a failure.
                Ok(n) => {
                    return Err(TapeError::Io(format!(
                        "{}: short write: {n} of {} bytes",
                        self.name,
                        data.len()
                    )))
                }
                Err(Errno::ENOSPC) => match self.eom {
                    // st refused before we saw a warning: this is the one Eom.
                    EomState::Clear | EomState::Warned => {
                        self.eom = EomState::Past;
                        return Err(TapeError::Eom);
                    }
                    // Past early warning st refuses every other write without writing
                    // (st.rst, "EOM Behaviour When Writing"); the spec wants them to succeed.
                    EomState::Past if !retried => retried = true,
                    // Refused twice running: one of them was a real attempt, so the drive
                    // reported VOLUME OVERFLOW.
                    EomState::Past => {
                        return Err(TapeError::Io(format!(
                            "{}: physical end of medium",
                            self.name
                        )))
                    }
                },
                Err(e) => return Err(self.err("write", e)),
            }
        }
        self.unsynced = true;
        self.shift_known(1);
        // Early warning shows as GMT_EOT once st noted it; a write-behind that crossed it is
        // reported only by the next call into st, which is this MTIOCGET failing ENOSPC.
        let crossed = match self.get() {
            Ok(g) => g.mt_gstat & GMT_EOT != 0,
            Err(Errno::ENOSPC) => true,
            Err(e) => return Err(self.err("write (completion)", e)),
        };
        let early_warning = crossed && self.eom == EomState::Clear;
        if early_warning {
            self.eom = EomState::Warned;
        }
        Ok(Written {
            bytes: data.len(),
            early_warning,
        })
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<(usize, usize), TapeError> {
        // Where the head is, for the block number st forgets when Eof steps back.
        let (pre_file, pre_block) = match self.get() {
            Ok(g) => (g.mt_fileno, self.true_block(&g)),
            Err(_) => (-1, None),
        };
        let first = if buf.is_empty() {
            // st treats a zero count as a no-op returning 0, which would look like a filemark.
            self.read_via_big(buf)
        } else {
            match self.read_capped(buf) {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some((n, n))),
                Err(Errno::ENOMEM) => {
                    // The block is longer than `buf` and st has already moved past it: step
                    // back and read it whole, then truncate as the spec says (§3.4.7).
                    if buf.len() >= self.read_cap {
                        let _ = self.drv.op(MTBSR, 1);
                        return Err(TapeError::Io(format!(
                            "{}: record longer than {} bytes, the largest read st accepts",
                            self.name, self.read_cap
                        )));
                    }
                    self.drv
                        .op(MTBSR, 1)
                        .map_err(|e| self.err("stepping back over a long record (MTBSR 1)", e))?;
                    self.read_via_big(buf)
                }
                Err(e) => Err(e),
            }
        };
        match first {
            Ok(Some((full, copied))) => {
                self.shift_known(1);
                Ok((full, copied))
            }
            Ok(None) => Err(self.zero_read(pre_file, pre_block)),
            Err(Errno::EIO) => Err(self.read_eio()),
            Err(Errno::ENOMEM) => {
                let _ = self.drv.op(MTBSR, 1);
                Err(TapeError::Io(format!(
                    "{}: record longer than {} bytes, the largest read st accepts",
                    self.name, self.read_cap
                )))
            }
            Err(e) => Err(self.err("read", e)),
        }
    }

    fn write_filemarks(&mut self, count: u32) -> Result<(), TapeError> {
        if count == 0 {
            return Ok(());
        }
        if !self.writable {
            return Err(TapeError::Io(format!("{}: opened read-only", self.name)));
        }
        let mut left = u64::from(count);
        while left > 0 {
            let chunk = left.min(MAX_COUNT);
            // Written past early warning st reports success, as the spec wants.
            let r = self.drv.op(MTWEOF, chunk as c_int);
            self.repositioned();
            r.map_err(|e| self.err("writing filemarks", e))?;
            left -= chunk;
        }
        Ok(())
    }

    fn space_filemarks(&mut self, count: i64) -> Result<Spaced, TapeError> {
        if count == 0 {
            return Ok(Spaced {
                resid: 0,
                stopped: None,
            });
        }
        self.repositioned();
        if count < 0 {
            // Back before the early-warning mark, possibly: a later crossing warns again.
            self.eom = EomState::Clear;
        }
        self.space_filemarks_inner(count)
    }

    fn space_records(&mut self, count: i64) -> Result<Spaced, TapeError> {
        if count == 0 {
            return Ok(Spaced {
                resid: 0,
                stopped: None,
            });
        }
        self.unsynced = false;
        if count < 0 {
            self.eom = EomState::Clear;
        }
        self.space_records_inner(count)
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        let r = self.drv.op(MTREW, 1);
        self.repositioned();
        self.eom = EomState::Clear;
        r.map_err(|e| self.err("rewind", e))
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        // MTOFFL rewinds and ejects (SCSI START STOP UNIT with LOAD clear).
        let r = self.drv.op(MTOFFL, 1);
        self.repositioned();
        self.eom = EomState::Clear;
        r.map_err(|e| self.err("unload", e))
    }

    /// st learns whether a cartridge is loaded at open and when a command fails; MTNOP
    /// reports that state (ENOMEDIUM or EIO when not ready) and surfaces a deferred
    /// write-behind error, and GMT_ONLINE confirms it.
    fn ready(&mut self) -> Result<(), TapeError> {
        let g = self.get().map_err(|e| self.err("status", e))?;
        if g.mt_gstat & GMT_ONLINE == 0 {
            return Err(TapeError::NoTape);
        }
        match self.drv.op(MTNOP, 1) {
            Ok(()) => Ok(()),
            Err(Errno::ENOMEDIUM) => Err(TapeError::NoTape),
            Err(e) => Err(self.err("test unit ready", e)),
        }
    }

    fn status(&mut self) -> Result<TapeStatus, TapeError> {
        let mut g = self.get().map_err(|e| self.err("status", e))?;
        if g.mt_gstat & GMT_ONLINE != 0 && (g.mt_fileno < 0 || self.true_block(&g).is_none()) {
            // Unknown position: READ POSITION makes st reset its numbers if the head is at
            // BOT, as the spec wants (file_num and blockno return to 0 at BOT).
            if self.tell() == Some(0) {
                g = self.get().map_err(|e| self.err("status", e))?;
            }
        }
        Ok(TapeStatus {
            file_num: u32::try_from(g.mt_fileno).ok(),
            block_no: self.true_block(&g),
            block_size: u32::try_from(g.mt_dsreg & MT_ST_BLKSIZE_MASK).unwrap_or(0),
            soft_errors: Some(self.soft_errors),
            // Capacity needs LOG SENSE through SCSI generic; st does not report it.
            total_space: None,
            space_remain: None,
            write_protected: g.mt_gstat & GMT_WR_PROT != 0,
        })
    }

    /// WRITE FILEMARKS with a count of 0 makes the drive write out its buffer (SSC); st has
    /// no other way to ask for it (MTNOP only empties st's own buffer into the drive). st
    /// then restarts its block count at 0, so the true number is kept as an offset.
    fn flush(&mut self) -> Result<(), TapeError> {
        if !self.unsynced {
            // Nothing written since the last filemark or repositioning, which both make the
            // drive write out its buffer; st's own write-behind was already waited for by
            // write_record's MTIOCGET. No I/O, so no error when the drive has been emptied.
            return Ok(());
        }
        let g = self.get().map_err(|e| self.err("status", e))?;
        let block = self.true_block(&g);
        self.drv
            .op(MTWEOF, 0)
            .map_err(|e| self.err("flush (MTWEOF 0)", e))?;
        self.unsynced = false;
        self.fix = (g.mt_fileno >= 0).then_some(BlockFix::Offset {
            file: g.mt_fileno,
            bias: block,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The filesystem under a cartridge, watched cheaply while the cartridge is written, so that a
//! filling disk is early warning and then end of medium for the tape, never ENOSPC.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Early warning when a write leaves the filesystem with less free space than this: four of
/// the largest records, so a DMA that goes on writing past the warning (and other writers on
/// the same filesystem between two checks) still has room.
pub const MARGIN: u64 = 64 << 20;

/// Past the warning, a record that would leave less free space than this is end of medium:
/// the rest is kept for the filemarks a DMA writes when it closes the tape and for the index.
pub const FLOOR: u64 = 1 << 20;

/// Free space is asked for again (statvfs) after this many bytes were written; in between it
/// is estimated from what this cartridge wrote. Near the margin it is asked for every write.
pub const CHECK_EVERY: u64 = 8 << 20;

/// Where the filesystem's free space stands against [`MARGIN`] and [`FLOOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// At least the margin is free.
    Clear,
    /// Under the margin, above the floor: early warning.
    Warning,
    /// Under the floor: end of medium.
    Full,
}

/// What a write of some size would do to the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlook {
    /// The zone before the write (after the bytes it cuts off are given back).
    pub before: Zone,
    /// The zone after it.
    pub after: Zone,
}

/// The bytes an unprivileged writer may still put on the filesystem of `f` (root's reserve
/// is not counted: ndmpd leaves it to the system).
pub fn free_bytes(f: &File) -> io::Result<u64> {
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: fstatvfs fills the struct it is given and reads nothing else.
    let r = unsafe { libc::fstatvfs(f.as_raw_fd(), s.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatvfs returned 0, so the struct is filled.
    Ok(avail(unsafe { &s.assume_init() }))
}

/// [`free_bytes`] of the filesystem holding `path` (a symlink is followed).
pub fn free_bytes_at(path: &Path) -> io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: c is a NUL-terminated path; statvfs fills the struct it is given.
    let r = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the struct is filled.
    Ok(avail(unsafe { &s.assume_init() }))
}

#[allow(clippy::unnecessary_cast)] // the field types differ between C libraries
fn avail(s: &libc::statvfs) -> u64 {
    (s.f_bavail as u64).saturating_mul(s.f_frsize as u64)
}

/// The write failed because the filesystem (or the user's quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn zone(free: u64) -> Zone {
    if free >= MARGIN {
        Zone::Clear
    } else if free >= FLOOR {
        Zone::Warning
    } else {
        Zone::Full
    }
}

/// The free space of one cartridge's filesystem as this cartridge last saw it.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Free bytes at the last statvfs less what was written since; `None` until asked, or
    /// after a truncation or a failed write made the estimate worthless.
    free: Option<u64>,
    /// Bytes written since the last statvfs.
    unchecked: u64,
}

impl Watch {
    /// Nothing known yet: the first write asks.
    pub fn new() -> Watch {
        Watch {
            free: None,
            unchecked: 0,
        }
    }

    /// Where writing `need` bytes, after cutting `freed` bytes off the end of the file, would
    /// leave the filesystem of `f`. Asks the filesystem when the estimate is old or near the
    /// margin; a filesystem that cannot tell its free space never limits a write.
    pub fn outlook(&mut self, f: &File, freed: u64, need: u64) -> Outlook {
        let due = match self.free {
            None => true,
            Some(free) => {
                self.unchecked.saturating_add(need) >= CHECK_EVERY
                    || free.saturating_add(freed).saturating_sub(need) < MARGIN
            }
        };
        if due {
            self.unchecked = 0;
            self.free = Some(match free_bytes(f) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!("free space of a cartridge's filesystem unknown: {e}");
                    u64::MAX
                }
            });
        }
        let now = self.free.unwrap_or(u64::MAX).saturating_add(freed);
        Outlook {
            before: zone(now),
            after: zone(now.saturating_sub(need)),
        }
    }

    /// `bytes` more are on the filesystem.
    pub fn wrote(&mut self, bytes: u64) {
        self.unchecked = self.unchecked.saturating_add(bytes);
        if let Some(f) = &mut self.free {
            if *f != u64::MAX {
                *f = f.saturating_sub(bytes);
            }
        }
    }

    /// The estimate is wrong (the file was cut, or a write failed part way): ask next time.
    pub fn forget(&mut self) {
        self.free = None;
    }

    /// The last estimate had at least the margin free (or none was made yet).
    pub fn clear(&self) -> bool {
        self.free.is_none_or(|f| f >= MARGIN)
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

#[cfg(test)]
mod tests;

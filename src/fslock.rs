//! An exclusive lock on a lock file, for state files rewritten whole (read, change, rename).
//! flock locks belong to the open file description, so threads and processes alike take turns.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens (creating) `path` and waits for an exclusive flock on it; the lock lasts until the
/// returned file is closed, or the process dies.
pub fn lock_file(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

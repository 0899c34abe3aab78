//! The POSIX pax ("tar") image format: a writer that streams one directory tree as an
//! archive GNU tar extracts, reporting file history, and readers that restore or list one.
//!
//! What the archive carries: ustar headers, with a pax 'x' header before a member whenever
//! the ustar fields cannot say everything (names and link targets that do not fit, sizes
//! and ids too large, sub-second times, atime and ctime, extended attributes as
//! `SCHILY.xattr.*`, POSIX ACLs also as `SCHILY.acl.*` text for GNU tar's --acls); files
//! with holes in GNU's sparse 1.0 form; hard links as type '1' members naming the first
//! name archived.
//!
//! What the reader does with damage (the rules of the dump reader, `dump::reader`):
//! - the first block is not a header (bad checksum or magic): `RecoverError::NotTar`
//!   before anything is created;
//! - a later bad header: a `Warning` naming its offset, then reading resumes at the next
//!   valid header; the member it started is reported not restored when its name is known;
//! - end of input before the end marker: `RecoverError::Truncated` once what was read is
//!   finished (the file being written closed, directory attributes applied);
//! - sizes beyond the bounds (`MAX_PAX`, `MAX_SPARSE_ENTRIES`), sparse maps that lie,
//!   unreadable numbers, refused names ("..", NUL, empty): a `Warning` or an
//!   `Event::Restored` with `ok: false` naming the member; reading goes on in step.
//!
//! Nothing is created outside `dest_root`: every path is opened one component at a time
//! with O_NOFOLLOW from a descriptor of the root (`fsops`), so neither a symlink already
//! in the destination nor one restored from the archive can redirect later members.

mod header;
mod read;
mod restore;
mod write;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;

pub use crate::format::dump::{DumpError, FileKind, NodeStat, Summary};
use crate::format::out::{ImageOut, Stream};
use crate::format::recover;
pub use header::{MAX_PAX, MAX_SPARSE_ENTRIES};
pub use restore::ListEntry;
pub use write::{Event, TarOptions};

/// Writes a tar archive of the tree at `root` to `out`, reporting history and warnings
/// through `events`, and stopping with `DumpError::Aborted` soon after `abort` is set.
///
/// One pass over the tree: members are written depth-first, each directory before its
/// entries, entries sorted by name, so the same tree always gives the same archive; the
/// estimate comes from the share of the tree walked and is refreshed as the walk goes.
/// Member names are "./", "./sub/", "./sub/b.txt". Objects on other file systems, sockets,
/// and files that vanish or cannot be opened are left out with a warning (and counted in
/// `Summary::skipped`). A file that shrinks while read is padded with zeros to the size in
/// its header, one that grows is cut there (with a warning). Data goes out in writes of
/// `format::out::STREAM_CHUNK`.
pub fn write_tar(
    root: &Path,
    opts: &TarOptions,
    out: &mut dyn Write,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
) -> Result<Summary, DumpError> {
    write::write_tar(root, opts, &mut Stream(out), events, abort)
}

/// [`write_tar`] into an image sink: file data is read straight into the buffers the sink
/// takes whole (the LOCAL connection's tape records), in the sink's chunk size.
pub fn write_tar_to(
    root: &Path,
    opts: &TarOptions,
    out: &mut dyn ImageOut,
    events: &mut dyn FnMut(Event<'_>),
    abort: &AtomicBool,
) -> Result<Summary, DumpError> {
    write::write_tar(root, opts, out, events, abort)
}

/// Restores the members `opts` selects from the archive `input`, reading it once, front to
/// back, up to the end marker, then to the end of input (so a sender never stays blocked;
/// data other than zeros there gives one warning).
///
/// Selections work as in `dump::reader::read_dump`: none restores everything, the root's
/// attributes going onto `dest_root`; a directory selects its subtree; `dest` moves a
/// selection; an in-place selection brings its parent directories' attributes along. A
/// hard-link member links to the name restored earlier for its target, and fails (with
/// the reason) when that name was not restored. Owners are set only with
/// `restore_owner` and as root. Directory attributes (mode, times, attributes) are set at
/// the end, deepest first, so their times stick. One `Event::Restored` per name. Error
/// handling: see the module documentation.
pub fn read_tar(
    input: &mut dyn Read,
    opts: &recover::RecoverOptions,
    events: &mut dyn FnMut(recover::Event),
    abort: &AtomicBool,
) -> Result<recover::Summary, recover::RecoverError> {
    restore::read_tar(input, opts, events, abort)
}

/// `read_tar` over buffered input: member data is written straight from its buffers (the
/// DATA server's connection lends the mover's record buffers), no copy in between.
pub fn read_tar_buffered(
    input: &mut dyn std::io::BufRead,
    opts: &recover::RecoverOptions,
    events: &mut dyn FnMut(recover::Event),
    abort: &AtomicBool,
) -> Result<recover::Summary, recover::RecoverError> {
    restore::read_tar_buffered(input, opts, events, abort)
}

/// DAR: restores the one member whose first header starts `input` (the caller has
/// positioned the stream at its `fh_info`) to `dest` (under `opts.dest_root`: absolute, or
/// relative to it). Reads exactly the member's headers and padded data, nothing after, so
/// the next member can be read from the same stream. A directory is restored itself, with
/// its attributes; a hard-link member is reported not restored (restore its target).
/// `opts.select` is not used.
pub fn read_one_tar(
    input: &mut dyn Read,
    dest: &Path,
    opts: &recover::RecoverOptions,
    events: &mut dyn FnMut(recover::Event),
    abort: &AtomicBool,
) -> Result<recover::Summary, recover::RecoverError> {
    restore::read_one_tar(input, dest, opts, events, abort)
}

/// Lists an archive for file history: one `ListEntry` per member, with the paths, stats
/// and fh_info the writer reported. Data is read and dropped; damage gives warnings as in
/// `read_tar`; after the end marker `ended` is set and the input is drained. Returns the
/// bytes read.
pub fn list_tar(
    input: &mut dyn Read,
    events: &mut dyn FnMut(ListEntry<'_>),
    warn: &mut dyn FnMut(String),
    abort: &AtomicBool,
    ended: &AtomicBool,
) -> Result<u64, recover::RecoverError> {
    restore::list_tar(input, events, warn, abort, ended)
}

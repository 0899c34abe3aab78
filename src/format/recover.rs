//! What every image reader (dump, tar) shares: the options of a recover, the mapping of its
//! selections to destinations, the events it reports with its totals, and why it stops.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One path to restore.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Path relative to the image root, e.g. "sub/b.txt" or "sub" ("" or "." = the root).
    /// A directory selects its whole subtree.
    pub path: Vec<u8>,
    /// Where it goes: a path under `dest_root` (absolute, or relative to `dest_root`).
    /// None = `dest_root` joined with `path`; then the parent directories on the way are
    /// restored too (attributes only, not their other contents), as restore does.
    pub dest: Option<PathBuf>,
}

/// What to restore and where.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Paths to restore; empty = everything, the image root's attributes going onto
    /// `dest_root` itself.
    pub select: Vec<Selection>,
    /// Everything is created below this directory (created if missing; the caller has
    /// validated it, so symlinks in the path up to it are followed, none below it).
    pub dest_root: PathBuf,
    /// Set owners and groups from the image (only effective as root).
    pub restore_owner: bool,
    /// Leave an existing non-directory at a destination name alone (the name is reported
    /// not restored) instead of replacing it. Replacing is atomic either way: a file is
    /// written without a name (or under a temporary one) and put over the old one only when
    /// complete.
    pub keep_existing: bool,
    /// Set by the reader once it has read the image's end marker: what follows is padding
    /// it only drains, so a caller may stop waiting for more input after a short lull.
    pub ended: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RecoverOptions {
    /// The selections, each checked and reduced to components and a destination.
    pub(crate) fn selections(&self) -> Result<Vec<Sel>, RecoverError> {
        self.select
            .iter()
            .map(|s| normalize(s, &self.dest_root))
            .collect()
    }

    /// A descriptor of the destination root (created if missing).
    pub(crate) fn open_dest(&self) -> Result<std::os::fd::OwnedFd, RecoverError> {
        crate::format::fsops::open_root(&self.dest_root).map_err(|source| {
            RecoverError::Destination {
                path: self.dest_root.clone(),
                source,
            }
        })
    }
}

/// What the reader tells its caller while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One name was restored, or could not be: `path` is relative to the image root
    /// ("." for the root) or, for `read_one`, the destination given.
    Restored {
        /// Relative to the image root ("." for the root), or the destination of `read_one`.
        path: Vec<u8>,
        /// Whether it was restored.
        ok: bool,
        /// Why not, when `ok` is false; None when it is true.
        why: Option<String>,
    },
    /// Damage in the image or an attribute that could not be set; reading goes on.
    Warning(String),
}

/// Totals of a backup (writers) or a recover (readers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Image bytes written, or read.
    pub bytes: u64,
    /// Non-directory objects written, or created (once per inode, whatever its names).
    pub files: u64,
    /// Directories written, or created or updated.
    pub dirs: u64,
    /// Objects left out (excluded, vanished, unreadable, another file system), or selected
    /// names that could not be restored.
    pub skipped: u64,
}

/// Why a recover stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The input is not a dump image: its first record is not a valid header.
    #[error("not a dump image: no valid header at byte {offset}")]
    NotDump {
        /// Byte offset of the record that is not a header.
        offset: u64,
    },
    /// The input is not a tar archive: no valid header where the first one must be.
    #[error("not a tar archive: no valid header at byte {offset}")]
    NotTar {
        /// Byte offset of the block that is not a header.
        offset: u64,
    },
    /// The image is a later volume (the number it carries) of a multi-volume dump.
    #[error("the image starts with volume {0}, not volume 1")]
    NotVolume1(u32),
    /// A dump this reader cannot read (FreeBSD UFS2, old 4.2BSD, compressed); the text says
    /// which.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The input ended before the image's end marker, or inside a record; what was read has
    /// been finished first.
    #[error("the image ends early, at byte {offset}")]
    Truncated {
        /// Byte offset where more input was needed.
        offset: u64,
    },
    /// The dump has no root directory (inode 2), so no path in it can be resolved.
    #[error("the root directory (inode 2) is not in the image")]
    NoRoot,
    /// The image would take more memory than the reader's limits allow (directory entries, name
    /// bytes, inode maps); the text says which.
    #[error("image too large to restore: {0}")]
    TooLarge(String),
    /// A single-inode restore (DAR) found no TS_INODE header where it started reading.
    #[error("record at byte {offset} is not the start of an inode")]
    NotInode {
        /// Byte offset of that record, counted from where the read started.
        offset: u64,
    },
    /// A single-inode restore (DAR) found another inode than the one it was sent for.
    #[error("expected inode {expected}, the image has inode {found} there")]
    WrongInode {
        /// The inode number the restore was asked for.
        expected: u32,
        /// The inode number of the record there.
        found: u32,
    },
    /// A selection whose path is absolute or holds ".." or NUL, or whose destination leaves
    /// the destination root (or, for `read_one`, is the root itself).
    #[error("bad selection {0}")]
    BadSelection(String),
    /// The destination root could not be opened or created.
    #[error("destination {path}: {source}")]
    Destination {
        /// The destination root.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Reading the input failed.
    #[error("reading the image: {0}")]
    Input(#[source] io::Error),
    /// The caller's abort flag was set.
    #[error("aborted")]
    Aborted,
}

/// A selection reduced to image (archive) path components and a destination relative path.
pub(crate) struct Sel {
    pub comps: Vec<Vec<u8>>,
    /// Destination relative to the destination root, components joined by '/'.
    pub dest: Vec<u8>,
    /// Dest is the image path itself (parents get their image attributes).
    pub in_place: bool,
    pub found: bool,
}

fn bad_sel(what: &[u8], why: &str) -> RecoverError {
    RecoverError::BadSelection(format!("{:?}: {why}", String::from_utf8_lossy(what)))
}

/// Splits a relative path into components, dropping "" and "."; ".." is refused.
fn components(p: &[u8]) -> Result<Vec<Vec<u8>>, RecoverError> {
    let mut out = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(bad_sel(p, "contains ..")),
            c if c.contains(&0) => return Err(bad_sel(p, "contains NUL")),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// A destination as a path relative to `dest_root`, refusing anything that leaves it.
pub(crate) fn dest_rel(dest: &Path, root: &Path) -> Result<Vec<u8>, RecoverError> {
    let rel = if dest.is_absolute() {
        dest.strip_prefix(root).map_err(|_| {
            bad_sel(
                dest.as_os_str().as_bytes(),
                "destination outside the destination root",
            )
        })?
    } else {
        dest
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.as_bytes()),
            Component::CurDir => {}
            _ => {
                return Err(bad_sel(
                    dest.as_os_str().as_bytes(),
                    "destination leaves the destination root",
                ))
            }
        }
    }
    Ok(parts.join(&b'/'))
}

fn normalize(s: &Selection, root: &Path) -> Result<Sel, RecoverError> {
    if s.path.first() == Some(&b'/') {
        return Err(bad_sel(&s.path, "absolute path"));
    }
    let comps = components(&s.path)?;
    let own = comps.join(&b'/');
    let (dest, in_place) = match &s.dest {
        None => (own, true),
        Some(d) => {
            let d = dest_rel(d, root)?;
            let same = d == own;
            (d, same)
        }
    };
    Ok(Sel {
        comps,
        dest,
        in_place,
        found: false,
    })
}

/// ("a/b", "c") of "a/b/c"; ("", "c") of "c".
pub(crate) fn split_last(rel: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (rel[..i].to_vec(), rel[i + 1..].to_vec()),
        None => (Vec::new(), rel.to_vec()),
    }
}

/// A relative path for messages, the empty one (the root) shown as ".".
pub(crate) fn show(p: &[u8]) -> String {
    if p.is_empty() {
        ".".into()
    } else {
        String::from_utf8_lossy(p).into_owned()
    }
}

/// Where a reader's events go, and the totals they add up to.
pub(crate) struct Reporter<'e> {
    pub events: &'e mut dyn FnMut(Event),
    pub sum: Summary,
}

impl Reporter<'_> {
    pub fn warn(&mut self, s: String) {
        (self.events)(Event::Warning(s));
    }

    /// One name restored or not (`path` "" is the root, reported as ".").
    pub fn report(&mut self, path: &[u8], res: Result<(), String>) {
        let ok = res.is_ok();
        if !ok {
            self.sum.skipped += 1;
        }
        (self.events)(Event::Restored {
            path: if path.is_empty() {
                b".".to_vec()
            } else {
                path.to_vec()
            },
            ok,
            why: res.err(),
        });
    }
}

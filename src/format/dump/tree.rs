//! The mapping pass: walks the tree once, breadth-first, recording each directory's entries
//! and attributes and each object's identity, so maps and numbers exist before any data.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::types::{DumpError, DumpOptions, Event, FileKind};

/// Highest real inode number used unchanged as the dump inode number. Above it the maps
/// (one bit per number up to the largest, written twice and held by restore) would grow
/// past 32 MiB each, so such objects get numbers from the overflow rule instead.
///
/// The whole rule: the dump root is 2; every other object whose real inode number is in
/// 3..=IDENTITY_LIMIT keeps it; the rest (real number 0, 1, 2 or above the limit) are
/// sorted by real number and numbered upwards from the highest kept number. Only those
/// overflow numbers can shift between dumps (a warning says so at level > 0).
pub const IDENTITY_LIMIT: u64 = 1 << 28;

/// One object of the tree (a directory, or a non-directory with all its names). Kept
/// small: non-directories are stat'ed again when written, so only identity is stored.
pub struct Node {
    pub kind: FileKind,
    /// Real inode number (the device is `Tree::dev` for every object).
    pub ino: u64,
    /// Where to find a name of this object: (directory index, entry index).
    pub loc: (u32, u32),
    /// Names of this object inside the dumped tree.
    pub names: u32,
    /// Dump inode number (set by `number`).
    pub num: u32,
    /// Goes on this dump (TS_BITS).
    pub dumped: bool,
    /// A regular file the scan found empty: the read-ahead stats it by name instead of
    /// opening it (nothing to read).
    pub empty: bool,
}

/// A directory's attributes at scan time and its entries, in the order they are written.
pub struct Dir {
    pub node: u32,
    pub parent: u32,
    pub md: Metadata,
    pub entries: Vec<(Box<[u8]>, u32)>,
}

/// A directory entry as the scan found it.
enum Seen {
    /// Stat'ed.
    Stat(Metadata),
    /// Not in the changed set: known from the directory entry alone.
    Unchanged { ino: u64, kind: FileKind },
}

/// The scanned tree. `dirs` is in breadth-first order, `dirs[0]` is the root, `nodes[0]`
/// the root's node.
pub struct Tree {
    pub root: PathBuf,
    /// st_dev of the root: objects elsewhere are not dumped.
    pub dev: u64,
    pub nodes: Vec<Node>,
    pub dirs: Vec<Dir>,
    pub skipped: u64,
    /// Roughly how many image bytes the dumped objects take (headers, data blocks in use,
    /// directory data): what DATA_GET_STATE's estimate counts down from.
    pub estimate: u64,
    /// Some objects got overflow numbers (see `number`).
    pub overflowed: bool,
}

/// The kind of object `md` describes; a type this format has no kind for counts as a file.
pub fn kind_of(md: &Metadata) -> FileKind {
    FileKind::of_mode(md.mode()).unwrap_or(FileKind::File)
}

/// The metadata of a backup root, which must be a directory.
pub(crate) fn root_dir(root: &Path) -> Result<Metadata, DumpError> {
    let md = std::fs::symlink_metadata(root).map_err(|source| DumpError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !md.is_dir() {
        return Err(DumpError::Root {
            path: root.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    Ok(md)
}

/// An open directory. A name opened through it costs the kernel one path component to
/// look up instead of a walk from `/` through every directory above it.
pub(crate) struct DirFd(std::os::fd::OwnedFd);

impl DirFd {
    /// Opens the directory at `path` (not following a symlink in its last component).
    pub(crate) fn open(path: &Path) -> io::Result<DirFd> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)?;
        Ok(DirFd(f.into()))
    }

    /// Opens the entry `name` of this directory for reading, with extra open `flags`.
    pub(crate) fn open_file(&self, name: &[u8], flags: i32) -> io::Result<std::fs::File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let c =
            std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a NUL-terminated name relative to a descriptor this value owns.
        let fd = unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | flags,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

impl std::os::fd::AsFd for DirFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Shell-style match of a file name against `*` (any run) and `?` (any one byte).
pub fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Position after the last '*' and the name position it is currently absorbing up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

impl Tree {
    /// The path of a node, rebuilt from the entry names up to the root.
    pub fn path(&self, mut node: u32) -> PathBuf {
        let mut parts: Vec<&[u8]> = Vec::new();
        while node != 0 {
            let (d, e) = self.nodes[node as usize].loc;
            let dir = &self.dirs[d as usize];
            parts.push(&dir.entries[e as usize].0);
            node = dir.node;
        }
        let mut p = self.root.clone();
        for part in parts.iter().rev() {
            p.push(OsStr::from_bytes(part));
        }
        p
    }

    /// Walks `root` breadth-first. Entries of each directory are sorted by name so the same
    /// tree always gives the same image. Problems below the root become warnings.
    pub fn scan(
        root: &Path,
        opts: &DumpOptions,
        events: &mut dyn FnMut(Event<'_>),
        abort: &AtomicBool,
    ) -> Result<Tree, DumpError> {
        let md = root_dir(root)?;
        let root_dev = md.dev();
        let mut seen_dirs: HashSet<u64> = HashSet::from([md.ino()]);
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut tree = Tree {
            root: root.to_path_buf(),
            dev: root_dev,
            nodes: vec![Node {
                kind: FileKind::Dir,
                ino: md.ino(),
                loc: (0, 0),
                names: 1,
                num: 2,
                dumped: true,
                empty: false,
            }],
            dirs: vec![Dir {
                node: 0,
                parent: 0,
                md,
                entries: Vec::new(),
            }],
            skipped: 0,
            estimate: 0,
            overflowed: false,
        };
        // what a snapshot provider says may have changed: other files are not stat'ed
        let changed = opts.changed.as_deref().filter(|_| opts.level > 0);
        let lister = Lister {
            opts,
            changed,
            root_dev,
            abort,
        };
        let ahead = Ahead::new(tree.root.clone());
        std::thread::scope(|s| {
            for k in 0..LISTERS {
                let (ahead, lister) = (&ahead, &lister);
                // a thread that cannot be had leaves the listing to the others, or to this one
                let _ = std::thread::Builder::new()
                    .name(format!("scan-{k}"))
                    .spawn_scoped(s, move || ahead.work(lister));
            }
            let _stop = ahead.stopper();
            tree.walk(&ahead, &lister, &mut links, &mut seen_dirs, events)
        })?;
        tree.number()?;
        tree.select(opts);
        Ok(tree)
    }

    /// The breadth-first walk: each directory's listing, from the listers or made here, placed
    /// in name order; the directories it finds are handed to the listers as they are found.
    fn walk(
        &mut self,
        ahead: &Ahead,
        lister: &Lister<'_>,
        links: &mut HashMap<u64, u32>,
        seen_dirs: &mut HashSet<u64>,
        events: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), DumpError> {
        let tree = self;
        let mut d = 0usize;
        // directories handed to the listers so far (the root is theirs from the start)
        let mut known = 1;
        while d < tree.dirs.len() {
            let mut found: Vec<(Vec<u8>, Seen)> = Vec::new();
            for item in ahead.take(d, lister)? {
                match item {
                    Listed::Entry(name, seen) => found.push((name, seen)),
                    Listed::Skipped(why) => {
                        if let Some(msg) = why {
                            warn(events, msg);
                        }
                        tree.skipped += 1;
                    }
                    Listed::Warning(msg) => warn(events, msg),
                }
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let parent_node = tree.dirs[d].node;
            for (name, seen) in found {
                let m = match seen {
                    Seen::Stat(m) => m,
                    Seen::Unchanged { ino, kind } => {
                        // not stat'ed, so no link count: any name of an inode seen before
                        // is another link to it
                        let loc = (d as u32, tree.dirs[d].entries.len() as u32);
                        let idx = match links.get(&ino) {
                            Some(&idx) => {
                                tree.nodes[idx as usize].names += 1;
                                idx
                            }
                            None => {
                                let idx = u32::try_from(tree.nodes.len())
                                    .map_err(|_| DumpError::TooManyInodes)?;
                                links.insert(ino, idx);
                                tree.nodes.push(Node {
                                    kind,
                                    ino,
                                    loc,
                                    names: 1,
                                    num: 0,
                                    dumped: false,
                                    empty: false,
                                });
                                idx
                            }
                        };
                        tree.dirs[d].entries.push((name.into_boxed_slice(), idx));
                        continue;
                    }
                };
                let kind = kind_of(&m);
                let loc = (d as u32, tree.dirs[d].entries.len() as u32);
                if kind == FileKind::Dir && !seen_dirs.insert(m.ino()) {
                    warn(
                        events,
                        format!(
                            "{}: directory seen twice (bind mount?), not dumped",
                            tree.path(tree.dirs[d].node)
                                .join(OsStr::from_bytes(&name))
                                .display()
                        ),
                    );
                    tree.skipped += 1;
                    continue;
                }
                if kind != FileKind::Dir && m.nlink() > 1 {
                    if let Some(&idx) = links.get(&m.ino()) {
                        tree.nodes[idx as usize].names += 1;
                        tree.dirs[d].entries.push((name.into_boxed_slice(), idx));
                        continue;
                    }
                }
                let idx = u32::try_from(tree.nodes.len()).map_err(|_| DumpError::TooManyInodes)?;
                if kind != FileKind::Dir && m.nlink() > 1 {
                    links.insert(m.ino(), idx);
                }
                let changed = m.mtime().max(m.ctime()) >= lister.opts.base_date;
                if changed || kind == FileKind::Dir {
                    // a header, then the data blocks in use (holes cost nothing)
                    let data = match kind {
                        FileKind::File => m.len().min(m.blocks() * 512),
                        FileKind::Dir => m.len(),
                        _ => 0,
                    };
                    tree.estimate += 1024 + data.div_ceil(1024) * 1024;
                }
                tree.nodes.push(Node {
                    kind,
                    ino: m.ino(),
                    loc,
                    names: 1,
                    num: 0,
                    dumped: changed,
                    empty: kind == FileKind::File && m.len() == 0,
                });
                if kind == FileKind::Dir {
                    tree.dirs.push(Dir {
                        node: idx,
                        parent: parent_node,
                        md: m,
                        entries: Vec::new(),
                    });
                }
                tree.dirs[d].entries.push((name.into_boxed_slice(), idx));
            }
            let found_dirs = tree.dirs[known..].iter().map(|x| tree.path(x.node));
            ahead.add(found_dirs);
            known = tree.dirs.len();
            d += 1;
        }
        Ok(())
    }

    /// Assigns dump inode numbers. Rule: the root is 2; any other object whose real inode
    /// number is in 3..=IDENTITY_LIMIT keeps it (so a level 1 of the same file system gives
    /// the same numbers as the level 0, which `restore -r` needs); the rest (real number
    /// 0, 1, 2 or too large) are sorted by real number and numbered upwards from the
    /// highest kept number. Only those overflow numbers can shift between dumps.
    fn number(&mut self) -> Result<(), DumpError> {
        let mut max = 2u64;
        let mut overflow: Vec<(u64, u32)> = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate().skip(1) {
            let ino = n.ino;
            if (3..=IDENTITY_LIMIT).contains(&ino) {
                n.num = ino as u32;
                max = max.max(ino);
            } else {
                overflow.push((ino, i as u32));
            }
        }
        overflow.sort_unstable();
        self.overflowed = !overflow.is_empty();
        for (_, i) in overflow {
            max += 1;
            self.nodes[i as usize].num =
                u32::try_from(max).map_err(|_| DumpError::TooManyInodes)?;
        }
        Ok(())
    }

    /// Chooses what goes on the dump: everything at level 0; otherwise objects changed at
    /// or after the base date, plus every directory on the path to one (restore -r needs
    /// the chain of directories to place them), plus the root.
    fn select(&mut self, opts: &DumpOptions) {
        if opts.level == 0 {
            self.nodes.iter_mut().for_each(|n| n.dumped = true);
            return;
        }
        // Reverse breadth-first order visits children before their parents.
        for d in (0..self.dirs.len()).rev() {
            let dir = &self.dirs[d];
            let any = dir
                .entries
                .iter()
                .any(|(_, c)| self.nodes[*c as usize].dumped);
            if any {
                let node = dir.node as usize;
                self.nodes[node].dumped = true;
            }
        }
        self.nodes[0].dumped = true;
    }
}

/// Threads listing directories ahead of the walk: with the walk's own thread, the stat calls
/// of a tree of small files run on two cores rather than one.
const LISTERS: usize = 2;

/// Directories listed ahead of the one the walk is at, at most: bounds what waits in memory.
const LIST_AHEAD: usize = 64;

/// What a directory's listing found, in the order it was read.
enum Listed {
    /// An entry to place.
    Entry(Vec<u8>, Seen),
    /// An entry not dumped (excluded silently, or with a warning saying why).
    Skipped(Option<String>),
    /// A warning, the entry (or the rest of the directory) unread.
    Warning(String),
}

/// What every listing needs from the scan.
struct Lister<'a> {
    opts: &'a DumpOptions,
    changed: Option<&'a crate::format::changed::Changed>,
    root_dev: u64,
    abort: &'a AtomicBool,
}

impl Lister<'_> {
    /// Reads directory `path` and stats its entries (those a snapshot provider says are
    /// unchanged are known from the entry alone).
    fn list(&self, path: &Path) -> Result<Vec<Listed>, DumpError> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                return Ok(vec![Listed::Warning(format!(
                    "{}: cannot read directory: {e}",
                    path.display()
                ))])
            }
        };
        let mut out = Vec::new();
        for ent in rd {
            if self.abort.load(Ordering::Relaxed) {
                return Err(DumpError::Aborted);
            }
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    out.push(Listed::Warning(format!(
                        "{}: reading directory: {e}",
                        path.display()
                    )));
                    break;
                }
            };
            let name = ent.file_name().into_vec();
            if self
                .opts
                .exclude
                .iter()
                .any(|p| glob_match(p.as_bytes(), &name))
            {
                out.push(Listed::Skipped(None));
                continue;
            }
            if let Some(c) = self.changed {
                use std::os::unix::fs::DirEntryExt;
                let ino = ent.ino();
                if let Some(kind) = ent.file_type().ok().and_then(FileKind::of_entry) {
                    if !c.contains(ino) {
                        out.push(Listed::Entry(name, Seen::Unchanged { ino, kind }));
                        continue;
                    }
                }
            }
            out.push(match ent.metadata() {
                Ok(m) if m.dev() != self.root_dev => Listed::Skipped(Some(format!(
                    "{}: another file system, not dumped",
                    ent.path().display()
                ))),
                Ok(m) => Listed::Entry(name, Seen::Stat(m)),
                Err(e) => {
                    Listed::Skipped(Some(format!("{}: {e}; not dumped", ent.path().display())))
                }
            });
        }
        Ok(out)
    }
}

/// Directories known to the walk, handed out in order to the listing threads, and their
/// listings until the walk takes them.
struct Ahead {
    state: std::sync::Mutex<AheadState>,
    /// Work for the listers: a directory to list, or the end.
    work: std::sync::Condvar,
    /// A listing done, for the walk.
    done: std::sync::Condvar,
}

struct AheadState {
    /// Path of every directory known, by index in `Tree::dirs`.
    paths: Vec<PathBuf>,
    /// The next directory not yet claimed by anyone.
    next: usize,
    /// The directory the walk is at.
    at: usize,
    /// Listings made ahead, until the walk takes them; None while one is being made.
    ready: HashMap<usize, Option<Result<Vec<Listed>, DumpError>>>,
    stop: bool,
}

impl Ahead {
    fn new(root: PathBuf) -> Self {
        Ahead {
            state: std::sync::Mutex::new(AheadState {
                paths: vec![root],
                next: 0,
                at: 0,
                ready: HashMap::new(),
                stop: false,
            }),
            work: std::sync::Condvar::new(),
            done: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Directories the walk found, to be listed, in its order.
    fn add(&self, paths: impl Iterator<Item = PathBuf>) {
        let mut st = self.lock();
        let before = st.paths.len();
        st.paths.extend(paths);
        if st.paths.len() > before {
            self.work.notify_all();
        }
    }

    /// A lister's loop: claims the next directory within reach of the walk, lists it.
    fn work(&self, lister: &Lister<'_>) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            if st.next < st.paths.len() && st.next < st.at + LIST_AHEAD {
                let i = st.next;
                st.next += 1;
                st.ready.insert(i, None);
                // claimed paths are not needed again: a tree of a million directories does
                // not keep them all
                let path = std::mem::take(&mut st.paths[i]);
                drop(st);
                // a listing that panicked must still be answered, or the walk would wait
                let listed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lister.list(&path)))
                        .unwrap_or_else(|_| {
                            Ok(vec![Listed::Warning(format!(
                                "{}: listing the directory failed; its entries are not dumped",
                                path.display()
                            ))])
                        });
                st = self.lock();
                st.ready.insert(i, Some(listed));
                self.done.notify_all();
            } else {
                st = self.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// The listing of directory `d`: made ahead, being made (waited for), or made here.
    fn take(&self, d: usize, lister: &Lister<'_>) -> Result<Vec<Listed>, DumpError> {
        let mut st = self.lock();
        st.at = d;
        self.work.notify_all();
        if st.next <= d {
            // no lister got to it: list it here, and what comes before it is taken already
            st.next = d + 1;
            let path = std::mem::take(&mut st.paths[d]);
            drop(st);
            return lister.list(&path);
        }
        loop {
            match st.ready.remove(&d) {
                Some(Some(listed)) => return listed,
                Some(None) => {
                    st.ready.insert(d, None);
                    st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                // claimed but not marked: cannot happen (a claim marks it in the same step)
                None => {
                    return Ok(vec![Listed::Warning(format!(
                        "directory {d} of the scan was lost; its entries are not dumped"
                    ))])
                }
            }
        }
    }

    /// Stops the listers when dropped: at the walk's end, or when it returns early.
    fn stopper(&self) -> impl Drop + '_ {
        struct Stop<'a>(&'a Ahead);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.lock().stop = true;
                self.0.work.notify_all();
            }
        }
        Stop(self)
    }
}

fn warn(events: &mut dyn FnMut(Event<'_>), msg: String) {
    events(Event::Warning(msg));
}

/// What the writers take from a stat, whether from a `Metadata` (an open file, a path) or
/// from a `statx` of a name in an open directory (which std cannot give).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// st_mode: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// The file system's device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Names the inode has.
    pub nlink: u64,
    /// The device a device node stands for.
    pub rdev: u64,
    /// Last access (seconds, nanoseconds).
    pub atime: (i64, i64),
    /// Last modification (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Last change of the inode (seconds, nanoseconds).
    pub ctime: (i64, i64),
}

impl From<&Metadata> for Stat {
    fn from(md: &Metadata) -> Self {
        Stat {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            blocks: md.blocks(),
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            rdev: md.rdev(),
            atime: (md.atime(), md.atime_nsec()),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

impl Stat {
    /// `name` in directory `dir`, not followed if it is a symlink.
    fn at(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<Stat> {
        // SAFETY: statx is plain old data; all-zero is a valid value of it.
        let mut x: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated name relative to a valid descriptor, and a buffer of the
        // size the kernel writes.
        let r = unsafe {
            libc::statx(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT,
                libc::STATX_BASIC_STATS,
                &mut x,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let t = |t: libc::statx_timestamp| (t.tv_sec, i64::from(t.tv_nsec));
        Ok(Stat {
            mode: u32::from(x.stx_mode),
            uid: x.stx_uid,
            gid: x.stx_gid,
            size: x.stx_size,
            blocks: x.stx_blocks,
            dev: libc::makedev(x.stx_dev_major, x.stx_dev_minor),
            ino: x.stx_ino,
            nlink: u64::from(x.stx_nlink),
            rdev: libc::makedev(x.stx_rdev_major, x.stx_rdev_minor),
            atime: t(x.stx_atime),
            mtime: t(x.stx_mtime),
            ctime: t(x.stx_ctime),
        })
    }

    /// `name` in `dir` when it is an empty regular file of file system `dev` without
    /// extended attributes, told by its name alone (a `statx` and a `listxattrat`): two
    /// system calls where opening it takes four or more. None otherwise, or when the kernel
    /// cannot list attributes by name: the caller then opens it and asks the descriptor.
    pub fn empty_at(dir: std::os::fd::BorrowedFd<'_>, name: &[u8], dev: u64) -> Option<Stat> {
        let c = std::ffi::CString::new(name).ok()?;
        let md = Stat::at(dir, &c).ok()?;
        if !(md.is_file() && md.size == 0 && md.dev == dev) {
            return None;
        }
        super::xattr::none_at(dir, &c)?.then_some(md)
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.o", b"main.o"));
        assert!(!glob_match(b"*.o", b"main.c"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYYb"));
        assert!(glob_match(b"core", b"core"));
        assert!(!glob_match(b"core", b"core2"));
    }

    /// The walk with the listers ahead of it gives what a plain breadth-first walk gives:
    /// the same directories in the same order, each with its entries sorted by name, with a
    /// wide and deep tree (more directories than the listers may run ahead) and exclusions.
    #[test]
    fn listing_ahead_keeps_the_breadth_first_order() {
        use super::*;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // 3 levels: 12 x 12 directories, each with a few files, some excluded
        for a in 0..12 {
            for b in 0..12 {
                let d = root.join(format!("d{a:02}")).join(format!("e{b:02}"));
                std::fs::create_dir_all(&d).unwrap();
                for f in 0..3 {
                    std::fs::write(d.join(format!("f{f}")), [a as u8, b as u8, f]).unwrap();
                }
                std::fs::write(d.join("skip.tmp"), b"x").unwrap();
            }
        }
        let opts = DumpOptions {
            exclude: vec!["*.tmp".into()],
            ..Default::default()
        };
        let mut warnings = 0;
        let tree = Tree::scan(
            root,
            &opts,
            &mut |e| {
                if let Event::Warning(_) = e {
                    warnings += 1
                }
            },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(warnings, 0);
        assert_eq!(tree.skipped, 144);
        // the plain walk: a queue of paths, entries sorted
        let mut want: Vec<(PathBuf, Vec<Vec<u8>>)> = Vec::new();
        let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
        while let Some(p) = queue.pop_front() {
            let mut names: Vec<Vec<u8>> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_vec())
                .filter(|n| !n.ends_with(b".tmp"))
                .collect();
            names.sort();
            for n in &names {
                let c = p.join(OsStr::from_bytes(n));
                if c.is_dir() {
                    queue.push_back(c);
                }
            }
            want.push((p, names));
        }
        let got: Vec<(PathBuf, Vec<Vec<u8>>)> = tree
            .dirs
            .iter()
            .map(|d| {
                let names = d.entries.iter().map(|(n, _)| n.to_vec()).collect();
                (tree.path(d.node), names)
            })
            .collect();
        assert_eq!(got.len(), 1 + 12 + 144);
        assert_eq!(got, want);
    }
}

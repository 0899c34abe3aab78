//! The file-history batcher: turns the image writers' history events into FH_ADD_FILE,
//! FH_ADD_DIR and FH_ADD_NODE posts of up to `BATCH` entries, in the order a DMA needs them.

use super::env::Hist;
use super::post::{log, Out};
use crate::format::dump::{FileKind, HistEvent, NodeStat};
use crate::wire::messages::{FhAddDirPost, FhAddFilePost, FhAddNodePost};
use crate::wire::types::*;
use crate::wire::{NdmpString, Request};
use bytes::Bytes;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Entries per FH message: big enough to amortise the header, small enough to keep a DMA's
/// catalogue busy steadily.
const BATCH: usize = 1024;

/// The dump root's inode number.
const ROOT_INODE: u64 = 2;

/// Deeper paths than this are cut short rather than followed (a loop guard).
const MAX_DEPTH: usize = 4096;

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::DIR,
        FileKind::File => FileType::REG,
        FileKind::Symlink => FileType::SLINK,
        FileKind::Fifo => FileType::FIFO,
        FileKind::Socket => FileType::SOCK,
        FileKind::CharDev => FileType::CSPEC,
        FileKind::BlockDev => FileType::BSPEC,
    }
}

fn secs(t: i64) -> u32 {
    t.clamp(0, i64::from(u32::MAX)) as u32
}

/// The file-history attributes of one inode: Unix, every field supported, times clamped to
/// the 32-bit range of the wire.
pub fn file_stat(s: &NodeStat) -> FileStat {
    FileStat {
        unsupported: 0,
        fs_type: FsType::UNIX,
        ftype: file_type(s.kind),
        mtime: secs(s.mtime),
        atime: secs(s.atime),
        ctime: secs(s.ctime),
        owner: s.uid,
        group: s.gid,
        fattr: s.mode & 0o7777,
        size: s.size,
        links: s.nlink,
    }
}

/// Batches history; directory entries always go out before the nodes they name. For path
/// history (HIST=f) it remembers each inode's first (parent, name) to spell its path.
pub(super) struct History {
    mode: Hist,
    dirs: Vec<Dir>,
    nodes: Vec<Node>,
    /// The batched FH_ADD_FILE entries: where each path is in `paths`, and the rest.
    files: Vec<PendingFile>,
    /// The batch's paths end to end: one buffer, cut into the entries' names when the batch
    /// is posted, instead of one allocation per path.
    paths: Vec<u8>,
    names: Names,
    /// The components of the path being spelled, leaf first: kept to spare an allocation
    /// per entry.
    parts: Vec<(u32, u16)>,
    out: mpsc::Sender<Out>,
    /// The session is gone: stop producing.
    closed: bool,
}

impl History {
    /// An empty batcher for history of kind `mode`, posting through `out`.
    pub(super) fn new(mode: Hist, out: mpsc::Sender<Out>) -> Self {
        History {
            mode,
            dirs: Vec::new(),
            nodes: Vec::new(),
            files: Vec::new(),
            paths: Vec::new(),
            names: Names::default(),
            parts: Vec::new(),
            out,
            closed: false,
        }
    }

    pub(super) fn send(&mut self, o: Out) {
        if self.closed {
            return;
        }
        let fh = o.fh_entries();
        crate::metrics::fh_enqueue(fh);
        if self.out.blocking_send(o).is_err() {
            crate::metrics::fh_unqueue(fh);
            self.closed = true;
        }
    }

    /// Appends "/dir/name" of an inode, from the names seen so far, to `paths`; the dump
    /// root is "/".
    fn path(&mut self, mut inode: u64) {
        self.parts.clear();
        while inode != ROOT_INODE && self.parts.len() < MAX_DEPTH {
            match self.names.get(inode) {
                Some((parent, name)) => {
                    self.parts.push(name);
                    inode = parent;
                }
                None => break,
            }
        }
        let p = &mut self.paths;
        let start = p.len();
        for &name in self.parts.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(self.names.name(name));
        }
        if p.len() == start {
            p.push(b'/');
        }
    }

    fn add_path(&mut self, e: HistEvent<'_>) {
        match e {
            HistEvent::Dir {
                dir_inode,
                name,
                inode,
            } => {
                if name != b"." && name != b".." {
                    self.names.insert(inode, dir_inode, name);
                }
            }
            HistEvent::Node {
                inode,
                stat,
                fh_info,
            } => {
                let start = self.paths.len();
                self.path(inode);
                self.push_file(start, stat, inode, fh_info);
            }
        }
    }

    /// One path-history entry ("/" for the root, "/sub/b.txt").
    pub(super) fn add_file(&mut self, path: &[u8], stat: &NodeStat, node: u64, fh_info: u64) {
        let start = self.paths.len();
        self.paths.extend_from_slice(path);
        self.push_file(start, stat, node, fh_info)
    }

    /// Batches an entry whose path is `paths[start..]`.
    fn push_file(&mut self, start: usize, stat: &NodeStat, node: u64, fh_info: u64) {
        self.files.push(PendingFile {
            path: start..self.paths.len(),
            stat: file_stat(stat),
            node,
            fh_info,
        });
        if self.files.len() >= BATCH {
            self.flush();
        }
    }

    /// Takes one event of the image writer, posting a batch when one is full.
    pub(super) fn add(&mut self, e: HistEvent<'_>) {
        if self.mode == Hist::Path {
            return self.add_path(e);
        }
        match e {
            HistEvent::Dir {
                dir_inode,
                name,
                inode,
            } => self.dirs.push(Dir {
                name: vec![FileName::Unix {
                    unix_name: name.into(),
                }],
                node: inode,
                parent: dir_inode,
            }),
            HistEvent::Node {
                inode,
                stat,
                fh_info,
            } => self.nodes.push(Node {
                stats: vec![file_stat(stat)],
                node: inode,
                fh_info,
            }),
        }
        if self.dirs.len() >= BATCH || self.nodes.len() >= BATCH {
            self.flush();
        }
    }

    /// Posts whatever is batched: file entries, then directory entries, then nodes.
    pub(super) fn flush(&mut self) {
        if !self.files.is_empty() {
            // the next batch's paths take about as much room as this one's
            let room = self.paths.capacity();
            let paths = Bytes::from(std::mem::replace(&mut self.paths, Vec::with_capacity(room)));
            let files = self
                .files
                .drain(..)
                .map(|f| File {
                    name: vec![FileName::Unix {
                        unix_name: NdmpString(paths.slice(f.path)),
                    }],
                    stat: vec![f.stat],
                    node: f.node,
                    fh_info: f.fh_info,
                })
                .collect();
            self.send(Out::Post(Request::FhAddFile(FhAddFilePost { files })));
        }
        if !self.dirs.is_empty() {
            let dirs = std::mem::take(&mut self.dirs);
            self.send(Out::Post(Request::FhAddDir(FhAddDirPost { dirs })));
        }
        if !self.nodes.is_empty() {
            let nodes = std::mem::take(&mut self.nodes);
            self.send(Out::Post(Request::FhAddNode(FhAddNodePost { nodes })));
        }
    }

    /// Posts a WARNING LOG_MESSAGE, in order with the history.
    pub(super) fn warn(&mut self, text: String) {
        self.send(Out::Post(log(LogType::WARNING, text)));
    }
}

/// An FH_ADD_FILE entry waiting for its batch to be posted.
struct PendingFile {
    /// Its path's place in `History::paths`.
    path: std::ops::Range<usize>,
    stat: FileStat,
    node: u64,
    fh_info: u64,
}

/// The first (parent, name) of every inode seen in a directory, for spelling paths (HIST=f).
/// A million files make a million entries, so they are packed: the names in one byte arena,
/// the map's entries 16 bytes (inode, parent, name's place), hashed by a multiply rather than
/// SipHash. Boxed names and 64-bit pairs cost twice the memory and a third more CPU.
/// Dump inode numbers are 32-bit; a larger one (never from a dump image) goes in `wide`.
#[derive(Default)]
struct Names {
    map: HashMap<u32, Link, BuildInode>,
    wide: HashMap<u64, (u64, u32, u16), BuildInode>,
    arena: Vec<u8>,
}

/// Where an inode's first name is: its directory, and its bytes in the arena.
#[derive(Clone, Copy)]
struct Link {
    parent: u32,
    at: u32,
    len: u16,
}

impl Names {
    /// Remembers `name` in `parent` for `inode` unless it has a name already (a hard link's
    /// later names are not its path). Names beyond 4 GiB of them all are not remembered.
    fn insert(&mut self, inode: u64, parent: u64, name: &[u8]) {
        let (Ok(at), Ok(len)) = (u32::try_from(self.arena.len()), u16::try_from(name.len())) else {
            return;
        };
        let mut added = false;
        match (u32::try_from(inode), u32::try_from(parent)) {
            (Ok(i), Ok(parent)) => {
                self.map.entry(i).or_insert_with(|| {
                    added = true;
                    Link { parent, at, len }
                });
            }
            _ => {
                self.wide.entry(inode).or_insert_with(|| {
                    added = true;
                    (parent, at, len)
                });
            }
        }
        if added {
            self.arena.extend_from_slice(name);
        }
    }

    /// The parent of `inode` and where its name is.
    fn get(&self, inode: u64) -> Option<(u64, (u32, u16))> {
        let link = u32::try_from(inode).ok().and_then(|i| self.map.get(&i));
        match link {
            Some(l) => Some((u64::from(l.parent), (l.at, l.len))),
            None => self.wide.get(&inode).map(|&(p, at, len)| (p, (at, len))),
        }
    }

    /// The bytes of a name [`Names::get`] gave.
    fn name(&self, (at, len): (u32, u16)) -> &[u8] {
        let at = at as usize;
        &self.arena[at..at + usize::from(len)]
    }
}

/// Hashes an inode number with one 128-bit multiply by a per-map random odd key, folded:
/// cheap, spreads consecutive numbers, and an image crafted to collide cannot know the key.
#[derive(Clone)]
struct BuildInode(u64);

impl Default for BuildInode {
    fn default() -> Self {
        // RandomState is seeded from the OS once per thread and varied per instance
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        BuildInode(seed | 1)
    }
}

impl std::hash::BuildHasher for BuildInode {
    type Hasher = InodeHasher;
    fn build_hasher(&self) -> InodeHasher {
        InodeHasher { key: self.0, h: 0 }
    }
}

/// See [`BuildInode`].
struct InodeHasher {
    key: u64,
    h: u64,
}

impl std::hash::Hasher for InodeHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        let m = u128::from(self.h ^ n).wrapping_mul(u128::from(self.key));
        self.h = (m as u64) ^ ((m >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: FileKind) -> NodeStat {
        NodeStat {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            nlink: 1,
        }
    }

    fn dir(h: &mut History, dir_inode: u64, name: &[u8], inode: u64) {
        h.add(HistEvent::Dir {
            dir_inode,
            name,
            inode,
        });
    }

    #[test]
    fn path_history_spells_first_names_and_wide_inodes() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut h = History::new(Hist::Path, tx);
        let wide = 1u64 << 40;
        dir(&mut h, 2, b".", 2);
        dir(&mut h, 2, b"..", 2);
        dir(&mut h, 2, b"a", 10);
        dir(&mut h, 10, b"b", 11);
        // a hard link's later name is not its path
        dir(&mut h, 2, b"link", 11);
        dir(&mut h, 2, b"w", wide);
        dir(&mut h, wide, b"x", 12);
        for (inode, kind) in [
            (2, FileKind::Dir),
            (10, FileKind::Dir),
            (wide, FileKind::Dir),
            (11, FileKind::File),
            (12, FileKind::File),
            (99, FileKind::File),
        ] {
            h.add(HistEvent::Node {
                inode,
                stat: &stat(kind),
                fh_info: inode,
            });
        }
        h.flush();
        drop(h);
        let Some(Out::Post(Request::FhAddFile(p))) = rx.blocking_recv() else {
            panic!("no FH_ADD_FILE")
        };
        let got: Vec<(String, u64)> = p
            .files
            .iter()
            .map(|f| match &f.name[0] {
                FileName::Unix { unix_name } => (unix_name.to_string(), f.node),
                other => panic!("{other:?}"),
            })
            .collect();
        let want = [
            ("/", 2),
            ("/a", 10),
            ("/w", wide),
            ("/a/b", 11),
            ("/w/x", 12),
            // an inode no directory named: the root's name, as before
            ("/", 99),
        ];
        let want: Vec<(String, u64)> = want.iter().map(|&(p, n)| (p.into(), n)).collect();
        assert_eq!(got, want);
    }
}

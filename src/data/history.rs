//! The file-history batcher: turns the image writers' history events into FH_ADD_FILE,
//! FH_ADD_DIR and FH_ADD_NODE posts of up to `BATCH` entries, in the order a DMA needs them.
//! Entries are written as XDR as they come: no owned entry is built per file.

use super::env::Hist;
use super::post::{log, Out};
use crate::format::dump::{FileKind, HistEvent, NodeStat};
use crate::wire::fh::{FhBody, FhKind};
use crate::wire::types::*;
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
    dirs: FhBody,
    nodes: FhBody,
    files: FhBody,
    /// The path being spelled (HIST=f from dump events).
    path: Vec<u8>,
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
            dirs: FhBody::new(FhKind::Dir),
            nodes: FhBody::new(FhKind::Node),
            files: FhBody::new(FhKind::File),
            path: Vec::new(),
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

    /// Spells "/dir/name" of an inode, from the names seen so far, in `path`; the dump root
    /// is "/".
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
        let p = &mut self.path;
        p.clear();
        for &name in self.parts.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(self.names.name(name));
        }
        if p.is_empty() {
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
                self.path(inode);
                let stat = file_stat(stat);
                self.files.push_file(&self.path, &stat, inode, fh_info);
                self.full();
            }
        }
    }

    /// One path-history entry ("/" for the root, "/sub/b.txt").
    pub(super) fn add_file(&mut self, path: &[u8], stat: &NodeStat, node: u64, fh_info: u64) {
        self.files.push_file(path, &file_stat(stat), node, fh_info);
        self.full();
    }

    /// Posts the batches when one is full.
    fn full(&mut self) {
        if self.files.len() >= BATCH || self.dirs.len() >= BATCH || self.nodes.len() >= BATCH {
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
            } => self.dirs.push_dir(name, inode, dir_inode),
            HistEvent::Node {
                inode,
                stat,
                fh_info,
            } => self.nodes.push_node(&file_stat(stat), inode, fh_info),
        }
        self.full();
    }

    /// Posts whatever is batched: file entries, then directory entries, then nodes.
    pub(super) fn flush(&mut self) {
        for kind in [FhKind::File, FhKind::Dir, FhKind::Node] {
            let body = match kind {
                FhKind::File => &mut self.files,
                FhKind::Dir => &mut self.dirs,
                FhKind::Node => &mut self.nodes,
            };
            if body.is_empty() {
                continue;
            }
            let entries = body.len() as u64;
            let body = body.take();
            self.send(Out::Fh {
                code: kind.code(),
                body,
                entries,
            });
        }
    }

    /// Posts a WARNING LOG_MESSAGE, in order with the history.
    pub(super) fn warn(&mut self, text: String) {
        self.send(Out::Post(log(LogType::WARNING, text)));
    }
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
/// cheap, and an image crafted to collide cannot know the key (beyond the 16 numbers of a
/// block, which share a bucket group by design).
/// Also keys the DMA's join of FH_ADD_DIR names with FH_ADD_NODE attributes.
#[derive(Clone)]
pub(crate) struct BuildInode(u64);

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
pub(crate) struct InodeHasher {
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
        // Blocks of 16 consecutive numbers hash alike but for the top bits: they land in one
        // bucket group, told apart by the tag hashbrown takes from those bits. Inodes come in
        // order, so a million lookups walk memory instead of missing the cache twice each.
        let m = u128::from(self.h ^ (n >> 4)).wrapping_mul(u128::from(self.key));
        self.h = ((m as u64) ^ ((m >> 64) as u64)) ^ ((n & 15) << 60);
    }

    fn finish(&self) -> u64 {
        self.h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Request;

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

    /// The post an `Out::Fh` carries, decoded by the generic decoder.
    fn decoded(o: Out) -> Request {
        match o {
            Out::Fh {
                code,
                body,
                entries,
            } => {
                let r = Request::decode(code, &mut crate::wire::XdrReader::new(body)).unwrap();
                assert_eq!(crate::data::post::fh_entries(&r), entries);
                r
            }
            other => panic!("not file history: {other:?}"),
        }
    }

    #[test]
    fn node_history_posts_full_batches_dirs_before_nodes() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut h = History::new(Hist::Node, tx);
        let n = BATCH as u64 + 3;
        dir(&mut h, 2, b".", 2);
        for i in 0..n {
            dir(&mut h, 2, format!("f{i}").as_bytes(), 100 + i);
        }
        for i in 0..n {
            let mut st = stat(FileKind::File);
            st.size = i;
            h.add(HistEvent::Node {
                inode: 100 + i,
                stat: &st,
                fh_info: i * 512,
            });
        }
        h.flush();
        drop(h);
        let mut got = Vec::new();
        while let Some(o) = rx.blocking_recv() {
            got.push(decoded(o));
        }
        let kinds: Vec<(MessageCodeName, usize)> = got
            .iter()
            .map(|r| match r {
                Request::FhAddDir(d) => ("dir", d.dirs.len()),
                Request::FhAddNode(n) => ("node", n.nodes.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        // the first full batch of entries, then the rest of them, then the nodes
        assert_eq!(
            kinds,
            [("dir", BATCH), ("dir", 4), ("node", BATCH), ("node", 3)]
        );
        let Request::FhAddDir(d) = &got[1] else {
            unreachable!()
        };
        let last = d.dirs.last().unwrap();
        assert_eq!((last.node, last.parent), (100 + n - 1, 2));
        assert_eq!(
            last.name,
            vec![FileName::Unix {
                unix_name: format!("f{}", n - 1).as_str().into()
            }]
        );
        let Request::FhAddNode(p) = &got[3] else {
            unreachable!()
        };
        let last = p.nodes.last().unwrap();
        assert_eq!((last.node, last.fh_info), (100 + n - 1, (n - 1) * 512));
        assert_eq!(
            last.stats,
            vec![file_stat(&{
                let mut st = stat(FileKind::File);
                st.size = n - 1;
                st
            })]
        );
    }

    type MessageCodeName = &'static str;

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
        let Some(Request::FhAddFile(p)) = rx.blocking_recv().map(decoded) else {
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

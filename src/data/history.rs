//! The file-history batcher: turns the image writers' history events into FH_ADD_FILE,
//! FH_ADD_DIR and FH_ADD_NODE posts of up to `BATCH` entries, in the order a DMA needs them.

use super::backup::{log, Out};
use super::env::Hist;
use crate::format::dump::{FileKind, HistEvent, NodeStat};
use crate::wire::messages::{FhAddDirPost, FhAddFilePost, FhAddNodePost};
use crate::wire::types::*;
use crate::wire::Request;
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
    files: Vec<File>,
    names: std::collections::HashMap<u64, (u64, Box<[u8]>)>,
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
            names: std::collections::HashMap::new(),
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

    /// "/dir/name" of an inode from the names seen so far; the dump root is "/".
    fn path(&self, mut inode: u64) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = Vec::new();
        while inode != ROOT_INODE {
            match self.names.get(&inode) {
                Some((parent, name)) if parts.len() < MAX_DEPTH => {
                    parts.push(name);
                    inode = *parent;
                }
                _ => break,
            }
        }
        let mut p = Vec::new();
        for part in parts.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(part);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        p
    }

    fn add_path(&mut self, e: HistEvent<'_>) {
        match e {
            HistEvent::Dir {
                dir_inode,
                name,
                inode,
            } => {
                if name != b"." && name != b".." {
                    self.names
                        .entry(inode)
                        .or_insert_with(|| (dir_inode, name.into()));
                }
            }
            HistEvent::Node {
                inode,
                stat,
                fh_info,
            } => {
                let path = self.path(inode);
                self.add_file(&path, stat, inode, fh_info);
            }
        }
    }

    /// One path-history entry ("/" for the root, "/sub/b.txt").
    pub(super) fn add_file(&mut self, path: &[u8], stat: &NodeStat, node: u64, fh_info: u64) {
        self.files.push(File {
            name: vec![FileName::Unix {
                unix_name: path.into(),
            }],
            stat: vec![file_stat(stat)],
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
            let files = std::mem::take(&mut self.files);
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

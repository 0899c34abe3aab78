//! A backup recorded in the catalog: its row from start to end, its cartridges, and its file
//! history (HIST=y) stored as it arrives, in batches. Used by `ndmpd dma backup` and the
//! scheduler of `ndmpd serve`.

use super::backup::{backup_with, BackupFailed, BackupJob, BackupReport};
use super::restore::{escape_name, unix_name};
use super::session::Progress;
use crate::catalog::{self, Catalog, CatalogError, FileBatch, NewBackup, Status};
use crate::data::history::BuildInode;
use crate::wire::types::{FileStat, FileType};
use crate::wire::Request;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// History entries held before they are written to the catalog in one transaction: each
/// commit waits for the disk, writes its pages to the WAL and may checkpoint them (and the
/// catalog's load re-prepares its statements), so a million entries go in 16 commits. The
/// batch holds them packed, about 70 bytes an entry.
pub const HISTORY_BATCH: usize = 65536;

/// What the catalog row says besides the job: who ran it and why.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The schedule that runs it (its UUID).
    pub schedule_id: Option<String>,
    /// The catalog server backed up.
    pub server_id: Option<i64>,
    /// A name for people; "backup ID" when empty.
    pub name: String,
    /// A description for people.
    pub description: String,
}

/// How a recorded backup went.
#[derive(Debug)]
pub struct Recorded {
    /// Its catalog id.
    pub id: i64,
    /// What the backup did (or why it failed, and what it wrote anyway).
    pub result: Result<BackupReport, BackupFailed>,
    /// How it was recorded as ending.
    pub status: Status,
    /// File history entries stored in the catalog.
    pub files: u64,
    /// Whether the catalog failed to store file history or the end of the job; the backup
    /// itself may still have succeeded.
    pub catalog_error: Option<CatalogError>,
}

/// Runs `job` recorded in `cat`: a `running` row first, then its end, cartridges and file
/// history. Errors are only those that kept the row from being written at all.
pub async fn recorded_backup(
    cat: &mut Catalog,
    job: &BackupJob,
    rec: &Recording,
    progress: impl FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<Recorded, CatalogError> {
    let id = cat.insert(&NewBackup {
        server: job.server.clone(),
        tape_server: job.tape_server.clone(),
        path: job.path.clone(),
        drive: job.tape.clone(),
        level: job.level,
        butype: job.butype.clone(),
        record_size: job.record_size,
        started: catalog::now(),
        schedule_id: rec.schedule_id.clone(),
        server_id: rec.server_id,
        name: rec.name.clone(),
        description: rec.description.clone(),
        hostname: String::new(),
    })?;
    let (result, files, mut catalog_error) = match Loader::start(cat, id) {
        Some(loader) => {
            let tx = loader.posts.clone();
            let result = backup_with(
                job,
                progress,
                |r| {
                    // a loader that stopped has its error to tell at the end
                    let _ = tx.send(r);
                },
                cancel,
            )
            .await;
            drop(tx);
            let (files, error) = loader.finish();
            (result, files, error)
        }
        None => {
            let mut sink = HistorySink::new(cat, id);
            let result = backup_with(job, progress, |r| sink.add(&r), cancel).await;
            sink.end();
            (result, sink.stored, sink.error.take())
        }
    };
    let outcome = match &result {
        Ok(rep) => catalog::Outcome {
            status: Status::Completed,
            complete: true,
            bytes: rep.bytes,
            dump_date: rep
                .env
                .iter()
                .find(|(k, _)| k == "DUMP_DATE")
                .map(|(_, v)| v.clone()),
            message: None,
            ended: catalog::now(),
            media: rep.media.clone(),
        },
        Err(f) => catalog::Outcome {
            status: if f.aborted {
                Status::Aborted
            } else {
                Status::Failed
            },
            complete: false,
            bytes: f.bytes,
            dump_date: None,
            message: Some(f.error.to_string()),
            ended: catalog::now(),
            media: f.media.clone(),
        },
    };
    if let Err(e) = cat.finish(id, &outcome) {
        catalog_error.get_or_insert(e);
    }
    Ok(Recorded {
        id,
        result,
        status: outcome.status,
        files,
        catalog_error,
    })
}

/// File history posts waiting for the loader: each holds up to 16,384 decoded entries (a few
/// MiB), so this bounds what a loader that lags behind holds; a full queue makes the DMA stop
/// reading posts, and the server waits, as it did when the DMA stored them itself.
const POSTS_QUEUED: usize = 16;

/// File history stored by a thread of its own, on its own connection to the catalog, at the
/// lowest CPU priority: on a machine whose cores the backup keeps busy (the DMA beside the
/// server, or the scheduler inside it), the catalog takes what CPU the backup leaves.
struct Loader {
    path: String,
    posts: std::sync::mpsc::SyncSender<Request>,
    thread: std::thread::JoinHandle<(u64, Option<CatalogError>)>,
}

impl Loader {
    /// None when the second connection or the thread cannot be had: history is then stored
    /// by the caller, as it comes.
    fn start(cat: &Catalog, id: i64) -> Option<Loader> {
        let mut own = cat.reopen().ok()?;
        let (posts, queue) = std::sync::mpsc::sync_channel::<Request>(POSTS_QUEUED);
        let thread = std::thread::Builder::new()
            .name("catalog-load".into())
            .spawn(move || {
                // SAFETY: setpriority with this thread's id (Linux: one thread's nice value)
                // changes nothing but its scheduling; a refusal leaves it at normal priority.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                }
                let mut sink = HistorySink::new(&mut own, id);
                for post in queue {
                    sink.add(&post);
                }
                sink.end();
                (sink.stored, sink.error.take())
            })
            .ok()?;
        Some(Loader {
            path: cat.path().to_string(),
            posts,
            thread,
        })
    }

    /// Waits for every queued post to be stored (the senders must be gone): entries stored,
    /// and the catalog's first error.
    fn finish(self) -> (u64, Option<CatalogError>) {
        drop(self.posts);
        let path = self.path;
        self.thread.join().unwrap_or_else(|_| {
            (
                0,
                Some(CatalogError::Refused(format!(
                    "catalog {path}: the thread storing file history stopped"
                ))),
            )
        })
    }
}

/// The word the catalog stores for a file type.
pub fn kind_word(t: FileType) -> &'static str {
    match t {
        FileType::DIR => "dir",
        FileType::REG => "file",
        FileType::SLINK => "symlink",
        FileType::FIFO => "fifo",
        FileType::SOCK => "socket",
        FileType::CSPEC => "chardev",
        FileType::BSPEC => "blockdev",
        _ => "other",
    }
}

/// Appends the catalog's spelling of `path` to `out`.
fn spell(path: &[u8], out: &mut String) {
    // printable ASCII without a backslash is its own escape: no per-character walk
    let plain = path
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\');
    match std::str::from_utf8(path) {
        Ok(p) if plain => out.push_str(p),
        _ => out.push_str(&escape_name(path)),
    }
}

/// Adds the row of `path` with `stat` to `batch`.
fn push_row(batch: &mut FileBatch, path: &[u8], stat: &FileStat, fh_info: u64) {
    batch.push_with(
        |out| spell(path, out),
        kind_word(stat.ftype),
        stat.size,
        u64::from(stat.mtime),
        (fh_info != u64::MAX).then_some(fh_info),
    );
}

/// File history on its way to the catalog. Path history (tar's FH_ADD_FILE) is stored as
/// it comes; dump's directory entries (FH_ADD_DIR) wait for their node (FH_ADD_NODE) to
/// give size and times, and a directory's own entry stays to build the paths under it.
/// Entries go out every [`HISTORY_BATCH`].
pub struct HistorySink<'a> {
    cat: &'a mut Catalog,
    id: i64,
    batch: FileBatch,
    dirs: Joiner,
    /// Entries stored so far.
    pub stored: u64,
    /// The first error the catalog gave; history stops being stored after it.
    pub error: Option<CatalogError>,
}

impl<'a> HistorySink<'a> {
    /// History of backup `id` into `cat`.
    pub fn new(cat: &'a mut Catalog, id: i64) -> Self {
        HistorySink {
            cat,
            id,
            batch: FileBatch::default(),
            dirs: Joiner::default(),
            stored: 0,
            error: None,
        }
    }

    /// Takes one post; anything but file history is ignored.
    pub fn add(&mut self, r: &Request) {
        if self.error.is_some() {
            return;
        }
        match r {
            Request::FhAddFile(f) => {
                for e in &f.files {
                    if let (Some(path), Some(stat)) = (unix_name(&e.name), e.stat.first()) {
                        push_row(&mut self.batch, path, stat, e.fh_info);
                        self.pushed();
                    }
                }
            }
            Request::FhAddDir(d) => self.dirs.add(&d.dirs),
            Request::FhAddNode(n) => {
                for e in &n.nodes {
                    let Some(stat) = e.stats.first() else {
                        continue;
                    };
                    let paths = self.dirs.paths(e.node);
                    if stat.ftype != FileType::DIR {
                        // only directories name what is under them
                        self.dirs.forget(e.node);
                    }
                    for i in 0..paths {
                        push_row(&mut self.batch, self.dirs.path(i), stat, e.fh_info);
                        self.pushed();
                    }
                }
            }
            _ => {}
        }
    }

    fn pushed(&mut self) {
        if self.batch.len() >= HISTORY_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() || self.error.is_some() {
            return;
        }
        let n = self.batch.len() as u64;
        match self.cat.add_batch(self.id, &mut self.batch) {
            Ok(()) => self.stored += n,
            Err(e) => self.error = Some(e),
        }
        self.batch.clear();
    }

    /// Stores what is left.
    pub fn end(&mut self) {
        self.flush();
        self.dirs = Joiner::default();
    }
}

/// Dump history's directory entries (FH_ADD_DIR) kept until their node (FH_ADD_NODE) comes:
/// node -> every (parent, name) it has, not "." or "..", and the root (the first "."). A
/// million entries are packed: names in one byte arena, the first name of a node in a block
/// of 16 consecutive node numbers (a hard link's later names aside); the path of the
/// directory the last node was in is kept, as the next node is most often in it too. The
/// owned map of name vectors it replaces cost half the DMA's time of a million-file backup.
#[derive(Default)]
struct Joiner {
    first: FirstNames,
    /// Names after the first (hard links).
    more: HashMap<u64, Vec<Link>, BuildInode>,
    arena: Vec<u8>,
    /// Bytes of the arena still named by an entry: when the arena is more than twice that,
    /// it is compacted, so forgotten names do not pile up.
    live: usize,
    root: Option<u64>,
    /// The directory whose path is in `dir_path`, and the nodes that path went through.
    cached: Option<u64>,
    dir_path: Vec<u8>,
    chain: Vec<u64>,
    parts: Vec<Link>,
    /// The paths of the node last asked for, end to end, and where each ends.
    out: Vec<u8>,
    ends: Vec<usize>,
}

/// One name of a node: its directory and its bytes in the arena.
#[derive(Clone, Copy)]
struct Link {
    parent: u64,
    at: usize,
    len: usize,
}

impl Joiner {
    /// Takes the entries of one FH_ADD_DIR.
    fn add(&mut self, dirs: &[crate::wire::types::Dir]) {
        for e in dirs {
            match unix_name(&e.name) {
                // the first "." names the root (spec: the root is its own parent)
                Some(b".") => {
                    self.root.get_or_insert(e.node);
                }
                Some(b"..") | None => {}
                Some(n) => self.insert(e.node, e.parent, n),
            }
        }
        // a directory named only now may lengthen the kept path
        self.cached = None;
    }

    fn insert(&mut self, node: u64, parent: u64, name: &[u8]) {
        let link = Link {
            parent,
            at: self.arena.len(),
            len: name.len(),
        };
        // one probe of the map for a new node, the common case
        if let Err(f) = self.first.insert_new(node, link) {
            let arena = &self.arena;
            let same = |l: &Link| l.parent == parent && &arena[l.at..l.at + l.len] == name;
            if same(&f) || self.more.get(&node).is_some_and(|m| m.iter().any(same)) {
                return;
            }
            self.more.entry(node).or_default().push(link);
        }
        self.arena.extend_from_slice(name);
        self.live += name.len();
    }

    /// Spells every path of `node` ("/" for the root or a node no entry names) into
    /// [`Joiner::path`]`(0..n)`; returns n.
    fn paths(&mut self, node: u64) -> usize {
        self.out.clear();
        self.ends.clear();
        let first = match self.first.get(node) {
            Some(f) if Some(node) != self.root => f,
            _ => {
                self.out.push(b'/');
                self.ends.push(1);
                return 1;
            }
        };
        let more = self.more.get(&node).map_or(0, Vec::len);
        for i in 0..=more {
            let l = if i == 0 {
                first
            } else {
                self.more[&node][i - 1]
            };
            self.spell_dir(l.parent);
            self.out.extend_from_slice(&self.dir_path);
            self.out.push(b'/');
            self.out.extend_from_slice(&self.arena[l.at..l.at + l.len]);
            self.ends.push(self.out.len());
        }
        self.ends.len()
    }

    /// Path `i` of the node last given to [`Joiner::paths`].
    fn path(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }

    /// Puts the path of directory `node` (by first names) in `dir_path`, "" for the root.
    fn spell_dir(&mut self, node: u64) {
        if self.cached == Some(node) {
            return;
        }
        self.parts.clear();
        self.chain.clear();
        let mut at = node;
        while Some(at) != self.root && self.parts.len() < 4096 {
            match self.first.get(at) {
                Some(l) => {
                    self.chain.push(at);
                    self.parts.push(l);
                    at = l.parent;
                }
                None => break,
            }
        }
        self.dir_path.clear();
        for l in self.parts.iter().rev() {
            self.dir_path.push(b'/');
            self.dir_path
                .extend_from_slice(&self.arena[l.at..l.at + l.len]);
        }
        self.cached = Some(node);
    }

    /// Drops what is known of `node` (a file: nothing is named under it).
    fn forget(&mut self, node: u64) {
        let Some(f) = self.first.remove(node) else {
            return;
        };
        self.live -= f.len;
        if let Some(m) = self.more.remove(&node) {
            self.live -= m.iter().map(|l| l.len).sum::<usize>();
        }
        if self.cached.is_some() && self.chain.contains(&node) {
            self.cached = None;
        }
        if self.arena.len() > 2 * self.live + (1 << 20) {
            self.compact();
        }
    }

    /// Copies the names still in use to a fresh arena.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(2 * self.live);
        let old = std::mem::take(&mut self.arena);
        let mut keep = |l: &mut Link| {
            let at = arena.len();
            arena.extend_from_slice(&old[l.at..l.at + l.len]);
            l.at = at;
        };
        self.first.values_mut().for_each(&mut keep);
        self.more.values_mut().flatten().for_each(&mut keep);
        self.arena = arena;
    }
}

/// The first name of each node, in blocks of 16 consecutive node numbers: a file system
/// numbers the files of a directory mostly in a run, and dump posts nodes in number order, so
/// a million names and lookups touch a block each in turn rather than a random bucket each
/// (the DMA's join of a million-file history: 250 to 60 ms on its own). A block holds only
/// the names it has, so scattered numbers cost a block header each, not 16 slots.
#[derive(Default)]
struct FirstNames {
    blocks: HashMap<u64, Block, BuildInode>,
}

/// The names of one block of [`FirstNames`]: bit i of `present` says whether node
/// 16 × block + i has one; `links` holds those there are, in the order of their bits.
#[derive(Default)]
struct Block {
    present: u16,
    links: Vec<Link>,
}

impl Block {
    /// Where the link of bit `bit` is, or would go, in `links`.
    fn rank(&self, bit: u32) -> usize {
        (self.present & ((1u16 << bit) - 1)).count_ones() as usize
    }
}

impl FirstNames {
    fn split(node: u64) -> (u64, u32) {
        (node >> 4, (node & 15) as u32)
    }

    /// The first name of `node`.
    fn get(&self, node: u64) -> Option<Link> {
        let (key, bit) = Self::split(node);
        let b = self.blocks.get(&key)?;
        (b.present & (1 << bit) != 0).then(|| b.links[b.rank(bit)])
    }

    /// Gives `node` its first name; a node that has one already keeps it, and it is returned.
    fn insert_new(&mut self, node: u64, link: Link) -> Result<(), Link> {
        let (key, bit) = Self::split(node);
        let b = self.blocks.entry(key).or_default();
        let at = b.rank(bit);
        if b.present & (1 << bit) != 0 {
            return Err(b.links[at]);
        }
        if b.links.capacity() == 0 {
            // a block of one name (scattered numbers) holds one slot, not a Vec's first four
            b.links.reserve_exact(1);
        }
        b.links.insert(at, link);
        b.present |= 1 << bit;
        Ok(())
    }

    /// Takes the first name of `node` away; a block left empty goes.
    fn remove(&mut self, node: u64) -> Option<Link> {
        let (key, bit) = Self::split(node);
        let b = self.blocks.get_mut(&key)?;
        if b.present & (1 << bit) == 0 {
            return None;
        }
        let l = b.links.remove(b.rank(bit));
        b.present &= !(1 << bit);
        if b.present == 0 {
            self.blocks.remove(&key);
        }
        Some(l)
    }

    /// Every name held.
    fn values_mut(&mut self) -> impl Iterator<Item = &mut Link> {
        self.blocks.values_mut().flat_map(|b| b.links.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{FhAddDirPost, FhAddFilePost, FhAddNodePost};
    use crate::wire::types::FileName;
    use crate::wire::types::{Dir, File, FsType, Node};

    fn stat(ftype: FileType, size: u64) -> FileStat {
        FileStat {
            unsupported: 0,
            fs_type: FsType::UNIX,
            ftype,
            mtime: 1000,
            atime: 0,
            ctime: 0,
            owner: 0,
            group: 0,
            fattr: 0o644,
            size,
            links: 1,
        }
    }

    fn name(n: &str) -> Vec<FileName> {
        vec![FileName::Unix {
            unix_name: n.into(),
        }]
    }

    #[test]
    fn dump_history_joins_names_and_nodes_into_paths_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let id = cat.insert(&NewBackup::default()).unwrap();
        let mut sink = HistorySink::new(&mut cat, id);
        let d = |n: &str, node, parent| Dir {
            name: name(n),
            node,
            parent,
        };
        sink.add(&Request::FhAddDir(FhAddDirPost {
            dirs: vec![
                d(".", 2, 2),
                d("..", 2, 2),
                d("etc", 10, 2),
                d("hosts", 11, 10),
                d("link-to-hosts", 11, 2),
            ],
        }));
        // more than a batch of files in one directory
        let many: Vec<Dir> = (0..HISTORY_BATCH as u64 + 5)
            .map(|i| d(&format!("f{i}"), 100 + i, 10))
            .collect();
        sink.add(&Request::FhAddDir(FhAddDirPost { dirs: many }));
        let node = |n, t, size| Node {
            stats: vec![stat(t, size)],
            node: n,
            fh_info: if n == 11 { 4096 } else { u64::MAX },
        };
        let mut nodes = vec![
            node(2, FileType::DIR, 0),
            node(10, FileType::DIR, 0),
            node(11, FileType::REG, 42),
        ];
        nodes.extend((0..HISTORY_BATCH as u64 + 5).map(|i| node(100 + i, FileType::REG, i)));
        sink.add(&Request::FhAddNode(FhAddNodePost { nodes }));
        sink.end();
        assert_eq!(sink.stored, HISTORY_BATCH as u64 + 5 + 4);
        assert!(sink.error.is_none());
        let got = cat.files(id, Some("/etc/hosts"), 10, 0).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].kind.as_str(),
                got[0].size,
                got[0].mtime,
                got[0].fh_info
            ),
            ("file", 42, 1000, Some(4096))
        );
        let link = cat.files(id, Some("/link-to-hosts"), 10, 0).unwrap();
        assert_eq!(link[0].size, 42);
        let root = cat.files(id, Some("/"), 1, 0).unwrap();
        assert_eq!((root[0].path.as_str(), root[0].kind.as_str()), ("/", "dir"));
        let last = format!("/etc/f{}", HISTORY_BATCH + 4);
        assert_eq!(cat.files(id, Some(&last), 10, 0).unwrap()[0].fh_info, None);
        assert_eq!(
            cat.get(id).unwrap().unwrap().files,
            HISTORY_BATCH as u64 + 9
        );
    }

    #[test]
    fn tar_history_is_stored_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let id = cat.insert(&NewBackup::default()).unwrap();
        let mut sink = HistorySink::new(&mut cat, id);
        sink.add(&Request::FhAddFile(FhAddFilePost {
            files: vec![
                File {
                    name: name("/srv/a"),
                    stat: vec![stat(FileType::REG, 5)],
                    node: 0,
                    fh_info: 512,
                },
                File {
                    name: name("/srv/l"),
                    stat: vec![stat(FileType::SLINK, 1)],
                    node: 0,
                    fh_info: 1024,
                },
            ],
        }));
        sink.end();
        let all = cat.files(id, None, 10, 0).unwrap();
        assert_eq!(
            all.iter()
                .map(|e| (e.path.as_str(), e.kind.as_str(), e.fh_info))
                .collect::<Vec<_>>(),
            [
                ("/srv/a", "file", Some(512)),
                ("/srv/l", "symlink", Some(1024))
            ]
        );
    }

    /// The loader thread stores every post it is given on its own connection, more than a
    /// queue's worth and across a batch boundary, and the catalog it was started from sees
    /// them once it has finished.
    #[test]
    fn the_loader_stores_every_post_on_its_own_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let id = cat.insert(&NewBackup::default()).unwrap();
        let loader = Loader::start(&cat, id).expect("a loader");
        let per_post = HISTORY_BATCH / 4 + 3;
        let posts = POSTS_QUEUED * 2;
        let tx = loader.posts.clone();
        for p in 0..posts {
            let files = (0..per_post)
                .map(|i| File {
                    name: name(&format!("/p{p:03}/f{i:06}")),
                    stat: vec![stat(FileType::REG, i as u64)],
                    node: 0,
                    fh_info: i as u64,
                })
                .collect();
            tx.send(Request::FhAddFile(FhAddFilePost { files }))
                .unwrap();
        }
        drop(tx);
        let (stored, error) = loader.finish();
        assert!(error.is_none(), "{error:?}");
        assert_eq!(stored, (posts * per_post) as u64);
        let row = cat.get(id).unwrap().unwrap();
        assert_eq!(row.files, stored);
        let last = cat
            .files(id, Some(&format!("/p{:03}", posts - 1)), 5, 0)
            .unwrap();
        assert_eq!(last.len(), 5);
        assert_eq!(last[0].path, format!("/p{:03}/f000000", posts - 1));
    }

    /// The block map against a plain map: names given, refused when a node has one, read
    /// and taken away, over runs of numbers and scattered ones (blocks of one name, blocks
    /// emptied and refilled), with every name still there after each step.
    #[test]
    fn first_names_in_blocks_answer_as_a_plain_map() {
        let mut f = FirstNames::default();
        let mut m: HashMap<u64, Link> = HashMap::new();
        let mut g = crate::wire::sample::Gen::new(21);
        for step in 0..20_000u64 {
            let r = g.next_u64();
            // a run of 64 numbers, scattered numbers, and the top of the range
            let node = match r % 3 {
                0 => 1000 + (r >> 8) % 64,
                1 => (r >> 8) % (1 << 40),
                _ => u64::MAX - (r >> 8) % 20,
            };
            let link = Link {
                parent: step,
                at: step as usize,
                len: 1,
            };
            if (r >> 4).is_multiple_of(3) {
                assert_eq!(
                    f.remove(node).map(|l| l.parent),
                    m.remove(&node).map(|l| l.parent)
                );
            } else {
                let had = m.get(&node).map(|l| l.parent);
                assert_eq!(f.insert_new(node, link).err().map(|l| l.parent), had);
                m.entry(node).or_insert(link);
            }
            assert_eq!(
                f.get(node).map(|l| l.parent),
                m.get(&node).map(|l| l.parent)
            );
        }
        for (node, l) in &m {
            assert_eq!(f.get(*node).map(|l| l.parent), Some(l.parent));
        }
        assert_eq!(f.values_mut().count(), m.len());
        for node in m.keys() {
            assert!(f.remove(*node).is_some());
        }
        assert!(f.blocks.is_empty(), "emptied blocks go");
    }

    /// The joiner against the plain model it packs (node -> every (parent, name), paths by
    /// first names, files forgotten once posted), over hard links, a directory named after
    /// nodes under it were joined, deep paths and names long enough to compact the arena.
    #[test]
    fn packed_join_spells_what_the_plain_model_spells() {
        use std::collections::HashMap;
        #[derive(Default)]
        struct Model {
            names: HashMap<u64, Vec<(u64, Vec<u8>)>>,
            root: Option<u64>,
        }
        impl Model {
            fn dir_path(&self, mut at: u64) -> Vec<u8> {
                let mut parts = vec![];
                while Some(at) != self.root && parts.len() < 4096 {
                    match self.names.get(&at).and_then(|n| n.first()) {
                        Some((p, n)) => {
                            parts.push(n.clone());
                            at = *p;
                        }
                        None => break,
                    }
                }
                parts
                    .iter()
                    .rev()
                    .flat_map(|p| [b"/".to_vec(), p.clone()])
                    .flatten()
                    .collect()
            }
            fn paths(&self, node: u64) -> Vec<Vec<u8>> {
                match self.names.get(&node) {
                    Some(ns) if Some(node) != self.root => ns
                        .iter()
                        .map(|(p, n)| [self.dir_path(*p), b"/".to_vec(), n.clone()].concat())
                        .collect(),
                    _ => vec![b"/".to_vec()],
                }
            }
        }
        let mut j = Joiner::default();
        let mut m = Model::default();
        let d = |n: &[u8], node, parent| Dir {
            name: vec![FileName::Unix {
                unix_name: crate::wire::NdmpString(bytes::Bytes::copy_from_slice(n)),
            }],
            node,
            parent,
        };
        let add = |j: &mut Joiner, m: &mut Model, dirs: Vec<Dir>| {
            for e in &dirs {
                match unix_name(&e.name) {
                    Some(b".") => {
                        m.root.get_or_insert(e.node);
                    }
                    Some(b"..") | None => {}
                    Some(n) => {
                        let v = m.names.entry(e.node).or_default();
                        if !v.contains(&(e.parent, n.to_vec())) {
                            v.push((e.parent, n.to_vec()));
                        }
                    }
                }
            }
            j.add(&dirs);
        };
        let check = |j: &mut Joiner, m: &mut Model, node: u64, dir: bool| {
            let n = j.paths(node);
            let got: Vec<Vec<u8>> = (0..n).map(|i| j.path(i).to_vec()).collect();
            assert_eq!(got, m.paths(node), "node {node}");
            if !dir {
                j.forget(node);
                m.names.remove(&node);
            }
        };
        let long = |i: u64| format!("{i:0>120}").into_bytes();
        add(
            &mut j,
            &mut m,
            vec![d(b".", 2, 2), d(b"..", 2, 2), d(b"a", 10, 2)],
        );
        // files under 11 before 11 has a name; then its name, the same entry again, and a
        // hard link (12 in two directories)
        add(
            &mut j,
            &mut m,
            (0..20_000).map(|i| d(&long(i), 1000 + i, 11)).collect(),
        );
        for i in 0..10 {
            check(&mut j, &mut m, 1000 + i, false);
        }
        add(
            &mut j,
            &mut m,
            vec![
                d(b"b", 11, 10),
                d(b"b", 11, 10),
                d(b"h1", 12, 11),
                d(b"h2", 12, 10),
            ],
        );
        check(&mut j, &mut m, 2, true);
        check(&mut j, &mut m, 10, true);
        check(&mut j, &mut m, 11, true);
        check(&mut j, &mut m, 12, false);
        // 2.4 MB of names forgotten: the arena is compacted on the way
        for i in 10..20_000 {
            check(&mut j, &mut m, 1000 + i, false);
        }
        assert!(j.arena.len() < 1 << 21, "arena {} bytes", j.arena.len());
        // a node never named, a forgotten one, and a deep chain
        check(&mut j, &mut m, 99, false);
        check(&mut j, &mut m, 12, false);
        add(
            &mut j,
            &mut m,
            (0..5000)
                .map(|i| d(b"x", 50_000 + i + 1, 50_000 + i))
                .collect(),
        );
        add(&mut j, &mut m, vec![d("é\\\n".as_bytes(), 50_000, 11)]);
        check(&mut j, &mut m, 55_000, false);
        check(&mut j, &mut m, 52_500, true);
        check(&mut j, &mut m, 50_000, true);
    }
}

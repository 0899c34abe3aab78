//! A backup recorded in the catalog: its row from start to end, its cartridges, and its file
//! history (HIST=y) stored as it arrives, in batches. Used by `ndmpd dma backup` and the
//! scheduler of `ndmpd serve`.

use super::backup::{backup_with, BackupFailed, BackupJob, BackupReport};
use super::restore::{escape_name, unix_name, DirNames};
use super::session::Progress;
use crate::catalog::{self, Catalog, CatalogError, FileEntry, NewBackup, Status};
use crate::wire::types::{FileStat, FileType};
use crate::wire::Request;
use tokio_util::sync::CancellationToken;

/// History entries held before they are written to the catalog in one transaction.
pub const HISTORY_BATCH: usize = 2000;

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
    let mut sink = HistorySink::new(cat, id);
    let result = backup_with(job, progress, |r| sink.add(r), cancel).await;
    sink.end();
    let (files, mut catalog_error) = (sink.stored, sink.error.take());
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

fn entry(path: &[u8], stat: &FileStat, fh_info: u64) -> FileEntry {
    FileEntry {
        path: escape_name(path),
        kind: kind_word(stat.ftype).into(),
        size: stat.size,
        mtime: u64::from(stat.mtime),
        fh_info: (fh_info != u64::MAX).then_some(fh_info),
    }
}

/// File history on its way to the catalog. Path history (tar's FH_ADD_FILE) is stored as
/// it comes; dump's directory entries (FH_ADD_DIR) wait for their node (FH_ADD_NODE) to
/// give size and times, and a directory's own entry stays to build the paths under it.
/// Entries go out every [`HISTORY_BATCH`].
pub struct HistorySink<'a> {
    cat: &'a mut Catalog,
    id: i64,
    batch: Vec<FileEntry>,
    dirs: DirNames,
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
            batch: Vec::with_capacity(HISTORY_BATCH),
            dirs: DirNames::default(),
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
                        self.push(entry(path, stat, e.fh_info));
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
                    for p in paths {
                        self.push(entry(&p, stat, e.fh_info));
                    }
                }
            }
            _ => {}
        }
    }

    fn push(&mut self, e: FileEntry) {
        self.batch.push(e);
        if self.batch.len() >= HISTORY_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() || self.error.is_some() {
            return;
        }
        match self.cat.add_files(self.id, &self.batch) {
            Ok(()) => self.stored += self.batch.len() as u64,
            Err(e) => self.error = Some(e),
        }
        self.batch.clear();
    }

    /// Stores what is left.
    pub fn end(&mut self) {
        self.flush();
        self.dirs = DirNames::default();
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
}

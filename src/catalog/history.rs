//! The catalog's file history (what each backup holds, searchable by path) and its restores
//! (what was restored from which backup, where, how it ended).

use super::types::{new_uuid, now, Backup, Catalog, CatalogError, Status};
use rusqlite::params;
use std::collections::HashMap;

/// One name in a backup's file history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileEntry {
    /// Its path from the root of the backup, "/dir/name".
    pub path: String,
    /// "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev" or "other".
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Where a restore of it may seek to in the image (the DATA server's fh_info).
    pub fh_info: Option<u64>,
}

/// Rows of one statement of [`Catalog::add_batch`]: 64 rows of 7 columns; the per-statement
/// work (reset, cursor, halt) was a fifth of a one-row insert.
pub const ROWS_PER_INSERT: usize = 64;

/// File history rows on their way to the catalog, held in two buffers (paths end to end, and
/// fixed-size rows) so that gathering a million of them allocates nothing per row.
#[derive(Debug, Default)]
pub struct FileBatch {
    paths: String,
    rows: Vec<BatchRow>,
    order: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct BatchRow {
    end: usize,
    kind: KindWord,
    size: u64,
    mtime: u64,
    fh_info: Option<u64>,
}

/// The catalog's kind words, and any other a caller gives (kept in the path buffer).
#[derive(Debug, Clone, Copy)]
enum KindWord {
    Known(&'static str),
    Other { at: usize, len: usize },
}

const KINDS: [&str; 8] = [
    "file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "other",
];

impl FileBatch {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a row; `kind` as in [`FileEntry::kind`].
    pub fn push(&mut self, path: &str, kind: &str, size: u64, mtime: u64, fh_info: Option<u64>) {
        let kind = match KINDS.iter().find(|k| **k == kind) {
            Some(k) => KindWord::Known(k),
            None => {
                let at = self.paths.len();
                self.paths.push_str(kind);
                KindWord::Other {
                    at,
                    len: kind.len(),
                }
            }
        };
        self.paths.push_str(path);
        self.rows.push(BatchRow {
            end: self.paths.len(),
            kind,
            size,
            mtime,
            fh_info,
        });
    }

    /// Adds a row whose path is built in place: `fill` appends the path to the buffer it is
    /// given (and nothing else).
    pub fn push_with(
        &mut self,
        fill: impl FnOnce(&mut String),
        kind: &'static str,
        size: u64,
        mtime: u64,
        fh_info: Option<u64>,
    ) {
        fill(&mut self.paths);
        self.rows.push(BatchRow {
            end: self.paths.len(),
            kind: KindWord::Known(kind),
            size,
            mtime,
            fh_info,
        });
    }

    /// Drops every row, keeping the buffers.
    pub fn clear(&mut self) {
        self.paths.clear();
        self.rows.clear();
        self.order.clear();
    }

    fn start(&self, i: usize) -> usize {
        match i.checked_sub(1).map(|p| self.rows[p]) {
            None => 0,
            Some(r) => r.end,
        }
    }

    /// Row `i`'s path and kind.
    fn texts(&self, i: usize) -> (&str, &str) {
        let r = &self.rows[i];
        let mut start = self.start(i);
        let kind = match r.kind {
            KindWord::Known(k) => k,
            KindWord::Other { at, len } => {
                start = at + len;
                &self.paths[at..at + len]
            }
        };
        (&self.paths[start..r.end], kind)
    }
}

/// Inserts `batch` into backup `id` in one transaction: rows sorted by path (inserts walk the
/// B-tree's pages in order rather than at random), each numbered `seq` in arrival order after
/// the rows the backup already has.
fn load(conn: &mut rusqlite::Connection, id: i64, batch: &mut FileBatch) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let n = batch.rows.len();
    let changed = tx.execute(
        "UPDATE backups SET files = files + ?2 WHERE id = ?1",
        params![id, n as i64],
    )?;
    if changed != 1 {
        // what the foreign key would have said
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!("no backup {id} to add file history to")),
        ));
    }
    let first: i64 = tx.query_row(
        "SELECT files - ?2 FROM backups WHERE id = ?1",
        params![id, n as i64],
        |r| r.get(0),
    )?;
    let mut order = std::mem::take(&mut batch.order);
    order.clear();
    order.extend(0..n as u32);
    // stable: equal paths keep their seq order; a sorted batch is one pass
    order.sort_by(|&a, &b| batch.texts(a as usize).0.cmp(batch.texts(b as usize).0));
    {
        // OR ROLLBACK: a failed row ends the whole batch, which is what an error here does
        // anyway, and spares SQLite the statement journal a multi-row INSERT otherwise keeps
        const COLS: &str =
            "INSERT OR ROLLBACK INTO files (backup_id, path, seq, kind, size, mtime, fh_info) VALUES ";
        let values = |rows: usize| vec!["(?,?,?,?,?,?,?)"; rows].join(",");
        let mut many = tx.prepare_cached(&format!("{COLS}{}", values(ROWS_PER_INSERT)))?;
        let mut one = tx.prepare_cached(&format!("{COLS}{}", values(1)))?;
        let mut chunks = order.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            bind_rows(&mut many, id, first, batch, chunk)?;
            many.raw_execute()?;
        }
        for &i in chunks.remainder() {
            bind_rows(&mut one, id, first, batch, &[i])?;
            one.raw_execute()?;
        }
    }
    batch.order = order;
    tx.commit()
}

fn bind_rows(
    st: &mut rusqlite::CachedStatement<'_>,
    id: i64,
    first: i64,
    batch: &FileBatch,
    rows: &[u32],
) -> rusqlite::Result<()> {
    for (k, &i) in rows.iter().enumerate() {
        let r = &batch.rows[i as usize];
        let (path, kind) = batch.texts(i as usize);
        let at = k * 7;
        st.raw_bind_parameter(at + 1, id)?;
        st.raw_bind_parameter(at + 2, path)?;
        st.raw_bind_parameter(at + 3, first + i64::from(i))?;
        st.raw_bind_parameter(at + 4, kind)?;
        st.raw_bind_parameter(at + 5, r.size as i64)?;
        st.raw_bind_parameter(at + 6, r.mtime as i64)?;
        st.raw_bind_parameter(at + 7, r.fh_info.map(|v| v as i64))?;
    }
    Ok(())
}

/// A restore from a catalog backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restore {
    /// Its id in the catalog.
    pub id: i64,
    /// Its id for REST clients: a UUID.
    pub uuid: String,
    /// The backup restored from (none once that backup is deleted).
    pub backup_id: Option<i64>,
    /// The paths named; empty: the whole image.
    pub paths: Vec<String>,
    /// Where to, on the DATA server.
    pub destination: String,
    /// How it ended, or running.
    pub status: Status,
    /// Bytes of the image read.
    pub bytes: u64,
    /// Files written.
    pub files: u64,
    /// Start, seconds since the epoch.
    pub started: u64,
    /// End, seconds since the epoch.
    pub ended: Option<u64>,
    /// Why it failed, or what it did not restore.
    pub message: Option<String>,
}

/// What is known of a restore when it starts.
#[derive(Debug, Clone, Default)]
pub struct NewRestore {
    /// The backup restored from.
    pub backup_id: i64,
    /// The paths named; empty: the whole image.
    pub paths: Vec<String>,
    /// Where to, on the DATA server.
    pub destination: String,
}

fn restore_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Restore> {
    let paths: String = r.get(3)?;
    Ok(Restore {
        id: r.get(0)?,
        uuid: r.get(1)?,
        backup_id: r.get(2)?,
        paths: serde_json::from_str(&paths).unwrap_or_default(),
        destination: r.get(4)?,
        status: Status::parse(&r.get::<_, String>(5)?),
        bytes: r.get::<_, i64>(6)? as u64,
        files: r.get::<_, i64>(7)? as u64,
        started: r.get::<_, i64>(8)? as u64,
        ended: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        message: r.get(10)?,
    })
}

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileEntry> {
    Ok(FileEntry {
        path: r.get(0)?,
        kind: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        mtime: r.get::<_, i64>(3)? as u64,
        fh_info: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
    })
}

/// Whether `filter` is a glob (`*`, `?` or `[`) rather than a path prefix.
fn is_glob(filter: &str) -> bool {
    filter.contains(['*', '?', '['])
}

impl Catalog {
    /// Adds file history entries to backup `id` in one transaction, and counts them in its
    /// `files`. Callers give batches (thousands), not whole histories.
    pub fn add_files(&mut self, id: i64, entries: &[FileEntry]) -> Result<(), CatalogError> {
        let mut batch = FileBatch::default();
        for e in entries {
            batch.push(&e.path, &e.kind, e.size, e.mtime, e.fh_info);
        }
        self.add_batch(id, &mut batch)
    }

    /// Adds `batch` to backup `id`'s file history in one transaction, counts it in the
    /// backup's `files`, and empties it. The loader's path: rows bound from the batch's own
    /// buffers, [`ROWS_PER_INSERT`] rows per statement, in key order.
    pub fn add_batch(&mut self, id: i64, batch: &mut FileBatch) -> Result<(), CatalogError> {
        if batch.rows.is_empty() {
            return Ok(());
        }
        let path = self.path().to_string();
        let db = |source| CatalogError::Db {
            path: path.clone(),
            source,
        };
        // The foreign key costs a lookup of the backup per row; the UPDATE below checks the
        // backup once and, as the transaction's first write, holds the write lock until the
        // rows are in, so no one can delete the backup in between. The pragma cannot change
        // inside a transaction, hence around it, and back on whatever happens.
        self.conn()
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(db)?;
        let loaded = load(self.conn_mut(), id, batch);
        let on = self.conn().pragma_update(None, "foreign_keys", "ON");
        batch.clear();
        loaded.map_err(db)?;
        on.map_err(db)
    }

    /// Backup `id`'s file history in path order: all of it, the paths under a prefix
    /// ("/etc" gives /etc and /etc/…), or those matching a glob ("*.conf", "/home/*/x").
    pub fn files(
        &self,
        id: i64,
        filter: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<FileEntry>, CatalogError> {
        let cols = "SELECT path, kind, size, mtime, fh_info FROM files WHERE backup_id = ?1";
        let page = "ORDER BY path LIMIT ?2 OFFSET ?3";
        let (limit, offset) = (limit.min(i64::MAX as u64) as i64, offset as i64);
        let run = |sql: String, args: &[&dyn rusqlite::ToSql]| {
            let mut st = self.conn().prepare(&sql).map_err(|e| self.err(e))?;
            let rows = st
                .query_map(args, entry_row)
                .and_then(|r| r.collect())
                .map_err(|e| self.err(e));
            rows
        };
        match filter.filter(|f| !f.is_empty()) {
            None => run(format!("{cols} {page}"), params![id, limit, offset]),
            Some(g) if is_glob(g) => run(
                format!("{cols} AND path GLOB ?4 {page}"),
                params![id, limit, offset, g],
            ),
            Some(p) => {
                let p = p.trim_end_matches('/');
                let under = format!("{p}/");
                // the range keeps the (backup_id, path) index usable
                let end = format!("{p}/\u{10ffff}");
                run(
                    format!("{cols} AND (path = ?4 OR (path >= ?5 AND path < ?6)) {page}"),
                    params![id, limit, offset, p, under, end],
                )
            }
        }
    }

    /// File history entries whose path contains `name` (case-insensitive for ASCII), newest
    /// backup first, with their backup; at most `limit`.
    pub fn search_files(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<Vec<(Backup, FileEntry)>, CatalogError> {
        let pattern = format!(
            "%{}%",
            name.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let hits: Vec<(i64, FileEntry)> = {
            let mut st = self
                .conn()
                .prepare(
                    "SELECT backup_id, path, kind, size, mtime, fh_info FROM files
                     WHERE path LIKE ?1 ESCAPE '\\' ORDER BY backup_id DESC, path LIMIT ?2",
                )
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map(params![pattern, limit.min(i64::MAX as u64) as i64], |r| {
                    Ok((
                        r.get(0)?,
                        FileEntry {
                            path: r.get(1)?,
                            kind: r.get(2)?,
                            size: r.get::<_, i64>(3)? as u64,
                            mtime: r.get::<_, i64>(4)? as u64,
                            fh_info: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                        },
                    ))
                })
                .and_then(|r| r.collect())
                .map_err(|e| self.err(e))?;
            rows
        };
        let mut backups: HashMap<i64, Backup> = HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for (id, entry) in hits {
            let b = match backups.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match self.get(id)? {
                    Some(b) => v.insert(b),
                    None => continue,
                },
            };
            out.push((b.clone(), entry));
        }
        Ok(out)
    }

    /// Records a restore that starts now, as running; returns its id.
    pub fn insert_restore(&self, r: &NewRestore) -> Result<i64, CatalogError> {
        let paths = serde_json::to_string(&r.paths).unwrap_or_else(|_| "[]".into());
        self.conn()
            .execute(
                "INSERT INTO restores (uuid, backup_id, paths, destination, status, started, pid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    new_uuid(),
                    r.backup_id,
                    paths,
                    r.destination,
                    Status::Running.as_str(),
                    now() as i64,
                    std::process::id()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Records how restore `id` ended.
    pub fn finish_restore(
        &self,
        id: i64,
        status: Status,
        bytes: u64,
        files: u64,
        message: Option<&str>,
    ) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE restores SET status = ?2, bytes = ?3, files = ?4, message = ?5,
                 ended = ?6 WHERE id = ?1",
                params![
                    id,
                    status.as_str(),
                    bytes as i64,
                    files as i64,
                    message,
                    now() as i64
                ],
            )
            .map_err(|e| self.err(e))
            .map(drop)
    }

    /// Restore `id`, if there is one.
    pub fn restore(&self, id: i64) -> Result<Option<Restore>, CatalogError> {
        Ok(self.restores()?.into_iter().find(|r| r.id == id))
    }

    /// Every restore, oldest first.
    pub fn restores(&self) -> Result<Vec<Restore>, CatalogError> {
        let mut st = self
            .conn()
            .prepare(
                "SELECT id, uuid, backup_id, paths, destination, status, bytes, files, started,
                 ended, message FROM restores ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], restore_row)
            .and_then(|r| r.collect())
            .map_err(|e| self.err(e));
        rows
    }
}

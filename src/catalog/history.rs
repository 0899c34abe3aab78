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
        let path = self.path().to_string();
        let db = |source| CatalogError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn_mut().transaction().map_err(db)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO files (backup_id, path, kind, size, mtime, fh_info)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db)?;
            for e in entries {
                st.execute(params![
                    id,
                    e.path,
                    e.kind,
                    e.size as i64,
                    e.mtime as i64,
                    e.fh_info.map(|v| v as i64)
                ])
                .map_err(db)?;
            }
        }
        tx.execute(
            "UPDATE backups SET files = files + ?2 WHERE id = ?1",
            params![id, entries.len() as i64],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
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

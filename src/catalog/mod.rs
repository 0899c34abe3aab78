//! The DMA's catalog of backups: what each `dma backup` wrote, where (cartridges and tape
//! files, in order), and how it ended, so restores can find images by id.
//!
//! Why SQLite (one file, WAL journal) and not one file per backup: a scheduler inside the
//! server is to write the same catalog while operators run the CLI, and each backup is to get
//! a searchable file history. SQLite gives concurrent writers (WAL plus a busy timeout),
//! transactions that leave no half-written record after a crash, and indexed queries over
//! millions of history rows; a directory of per-backup files gives none of the three. The
//! schema has a version table so later releases (the file history table) migrate in place.

use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version this build writes; older catalogs are migrated up to it on open.
pub const SCHEMA_VERSION: i64 = 1;

/// Why the catalog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database failed (open, query, constraint); the text names the file.
    #[error("catalog {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The directory for the database could not be created.
    #[error("catalog directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer ndmpd whose schema this one does not know.
    #[error("catalog {path} has schema version {found}; this ndmpd knows up to {SCHEMA_VERSION}")]
    Newer {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
    },
    /// No catalog location: none given, and neither XDG_DATA_HOME nor HOME is set.
    #[error("no catalog location: give --catalog, NDMPD_CATALOG, XDG_DATA_HOME or HOME")]
    NoLocation,
}

/// How a backup ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started; a backup still in this state after its DMA is gone was cut off.
    Running,
    /// The DATA server and the mover ended successfully.
    Completed,
    /// Something went wrong; `message` says what.
    Failed,
    /// The job was aborted (DATA or mover halted ABORTED).
    Aborted,
}

impl Status {
    /// The word stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "aborted" => Status::Aborted,
            _ => Status::Running,
        }
    }
}

/// One piece of an image: the part of the stream on one cartridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MediaPart {
    /// The cartridge's volume tag (or label); `None` when it could not be known (a drive
    /// outside any changer).
    pub cartridge: Option<String>,
    /// The tape file the part is in, from 0 at the beginning of the cartridge.
    pub file: u32,
    /// The image stream offset the part starts at.
    pub offset: u64,
}

/// What is known of a backup when it starts.
#[derive(Debug, Clone, Default)]
pub struct NewBackup {
    /// The DATA server, `host:port`.
    pub server: String,
    /// The tape server in a three-way job.
    pub tape_server: Option<String>,
    /// The path backed up.
    pub path: String,
    /// The tape drive name.
    pub drive: String,
    /// Dump level.
    pub level: u32,
    /// "dump" or "tar".
    pub butype: String,
    /// Mover record size in bytes.
    pub record_size: u32,
    /// Seconds since the epoch.
    pub started: u64,
}

/// How a backup ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The end state.
    pub status: Status,
    /// Every byte of the image is on the cartridges listed.
    pub complete: bool,
    /// Bytes of the image stream.
    pub bytes: u64,
    /// DUMP_DATE from the environment DATA_GET_ENV returned.
    pub dump_date: Option<String>,
    /// Why it failed, in words.
    pub message: Option<String>,
    /// Seconds since the epoch.
    pub ended: u64,
    /// The cartridges and tape files, in stream order.
    pub media: Vec<MediaPart>,
}

/// One backup as the catalog holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backup {
    /// Its id, unique in this catalog.
    pub id: i64,
    /// The DATA server.
    pub server: String,
    /// The tape server in a three-way job.
    pub tape_server: Option<String>,
    /// The path backed up.
    pub path: String,
    /// The tape drive.
    pub drive: String,
    /// Dump level.
    pub level: u32,
    /// "dump" or "tar".
    pub butype: String,
    /// DUMP_DATE, when the DATA server gave one.
    pub dump_date: Option<String>,
    /// Mover record size in bytes.
    pub record_size: u32,
    /// Bytes of the image stream.
    pub bytes: u64,
    /// Start, seconds since the epoch.
    pub started: u64,
    /// End, seconds since the epoch; none while running.
    pub ended: Option<u64>,
    /// How it ended.
    pub status: Status,
    /// Every byte of the image is on the cartridges listed.
    pub complete: bool,
    /// Why it failed.
    pub message: Option<String>,
    /// Cartridges and tape files, in stream order.
    pub media: Vec<MediaPart>,
}

/// An open catalog.
pub struct Catalog {
    conn: Connection,
    path: String,
}

/// Where the catalog is when `--catalog` is not given: `$NDMPD_CATALOG`, else
/// `$XDG_DATA_HOME/ndmpd/catalog.db`, else `~/.local/share/ndmpd/catalog.db`.
pub fn default_path() -> Result<PathBuf, CatalogError> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("NDMPD_CATALOG") {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = var("XDG_DATA_HOME") {
        return Ok(PathBuf::from(x).join("ndmpd").join("catalog.db"));
    }
    if let Some(h) = var("HOME") {
        return Ok(PathBuf::from(h).join(".local/share/ndmpd/catalog.db"));
    }
    Err(CatalogError::NoLocation)
}

/// The migrations, in order: entry `i` takes a catalog from version `i` to `i + 1`.
/// File history (a later issue) is a table keyed by backup id, added as one more step.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE backups (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        server TEXT NOT NULL,
        tape_server TEXT,
        path TEXT NOT NULL,
        drive TEXT NOT NULL,
        level INTEGER NOT NULL,
        butype TEXT NOT NULL,
        dump_date TEXT,
        record_size INTEGER NOT NULL,
        bytes INTEGER NOT NULL DEFAULT 0,
        started INTEGER NOT NULL,
        ended INTEGER,
        status TEXT NOT NULL,
        complete INTEGER NOT NULL DEFAULT 0,
        message TEXT
    );
    CREATE TABLE media (
        backup_id INTEGER NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        cartridge TEXT,
        file INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        PRIMARY KEY (backup_id, seq)
    );
    CREATE INDEX media_cartridge ON media(cartridge);
"];

impl Catalog {
    /// Opens the catalog at `path`, creating it (and its directory) when missing, in WAL
    /// mode, migrated to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let db = |source| CatalogError::Db {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        // other writers (a second CLI, later the server's scheduler) wait rather than fail
        conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        let mut c = Catalog { conn, path: shown };
        c.migrate()?;
        Ok(c)
    }

    fn err(&self, source: rusqlite::Error) -> CatalogError {
        CatalogError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), CatalogError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| CatalogError::Db {
                path: self.path.clone(),
                source: e,
            })?;
        let path = self.path.clone();
        let db = |source| CatalogError::Db {
            path: path.clone(),
            source,
        };
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(db)?;
        let found: Option<i64> = tx
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(db)?;
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(CatalogError::Newer { path, found });
        }
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute("DELETE FROM schema_version", []).map_err(db)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [v as i64 + 1],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// The database file, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema version of the open catalog.
    pub fn version(&self) -> Result<i64, CatalogError> {
        self.conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Records a backup that starts now, as running; returns its id.
    pub fn insert(&self, b: &NewBackup) -> Result<i64, CatalogError> {
        self.conn
            .execute(
                "INSERT INTO backups (server, tape_server, path, drive, level, butype,
                 record_size, started, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    b.server,
                    b.tape_server,
                    b.path,
                    b.drive,
                    b.level,
                    b.butype,
                    b.record_size,
                    b.started as i64,
                    Status::Running.as_str()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how backup `id` ended and the cartridges it went to, in one transaction.
    pub fn finish(&mut self, id: i64, o: &Outcome) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let db = |source| CatalogError::Db {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        tx.execute(
            "UPDATE backups SET status = ?2, complete = ?3, bytes = ?4, dump_date = ?5,
             message = ?6, ended = ?7 WHERE id = ?1",
            params![
                id,
                o.status.as_str(),
                o.complete,
                o.bytes as i64,
                o.dump_date,
                o.message,
                o.ended as i64
            ],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM media WHERE backup_id = ?1", [id])
            .map_err(db)?;
        for (seq, m) in o.media.iter().enumerate() {
            tx.execute(
                "INSERT INTO media (backup_id, seq, cartridge, file, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, seq as i64, m.cartridge, m.file, m.offset as i64],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// Backup `id`, if the catalog has it.
    pub fn get(&self, id: i64) -> Result<Option<Backup>, CatalogError> {
        Ok(self.query(Some(id))?.into_iter().next())
    }

    /// Every backup, oldest first.
    pub fn list(&self) -> Result<Vec<Backup>, CatalogError> {
        self.query(None)
    }

    /// Whether any backup's image is on cartridge `label`.
    pub fn references(&self, label: &str) -> Result<bool, CatalogError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM media WHERE cartridge = ?1)",
                [label],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn query(&self, id: Option<i64>) -> Result<Vec<Backup>, CatalogError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, server, tape_server, path, drive, level, butype, dump_date,
                 record_size, bytes, started, ended, status, complete, message FROM backups
                 WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([id], |r| {
                Ok(Backup {
                    id: r.get(0)?,
                    server: r.get(1)?,
                    tape_server: r.get(2)?,
                    path: r.get(3)?,
                    drive: r.get(4)?,
                    level: r.get(5)?,
                    butype: r.get(6)?,
                    dump_date: r.get(7)?,
                    record_size: r.get(8)?,
                    bytes: r.get::<_, i64>(9)? as u64,
                    started: r.get::<_, i64>(10)? as u64,
                    ended: r.get::<_, Option<i64>>(11)?.map(|e| e as u64),
                    status: Status::parse(&r.get::<_, String>(12)?),
                    complete: r.get(13)?,
                    message: r.get(14)?,
                    media: Vec::new(),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut st = self
            .conn
            .prepare("SELECT cartridge, file, offset FROM media WHERE backup_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        for b in out.iter_mut() {
            b.media = st
                .query_map([b.id], |r| {
                    Ok(MediaPart {
                        cartridge: r.get(0)?,
                        file: r.get(1)?,
                        offset: r.get::<_, i64>(2)? as u64,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.err(e))?;
        }
        Ok(out)
    }
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_finish_get_list_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/catalog.db");
        let mut c = Catalog::open(&path).unwrap();
        assert_eq!(c.version().unwrap(), SCHEMA_VERSION);
        let id = c
            .insert(&NewBackup {
                server: "a:1".into(),
                path: "/srv".into(),
                drive: "vtape0".into(),
                butype: "dump".into(),
                record_size: 65536,
                started: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.get(id).unwrap().unwrap().status, Status::Running);
        let media = vec![
            MediaPart {
                cartridge: Some("VT0003".into()),
                file: 2,
                offset: 0,
            },
            MediaPart {
                cartridge: Some("VT0004".into()),
                file: 0,
                offset: 1 << 20,
            },
        ];
        c.finish(
            id,
            &Outcome {
                status: Status::Completed,
                complete: true,
                bytes: 3 << 20,
                dump_date: Some("12345".into()),
                message: None,
                ended: 200,
                media: media.clone(),
            },
        )
        .unwrap();
        assert!(c.references("VT0004").unwrap());
        assert!(!c.references("VT0001").unwrap());
        drop(c);
        // reopening migrates nothing and finds the same rows
        let c = Catalog::open(&path).unwrap();
        let all = c.list().unwrap();
        assert_eq!(all.len(), 1);
        let b = &all[0];
        assert_eq!(
            (b.status, b.complete, b.bytes),
            (Status::Completed, true, 3 << 20)
        );
        assert_eq!(b.dump_date.as_deref(), Some("12345"));
        assert_eq!((b.started, b.ended), (100, Some(200)));
        assert_eq!(b.media, media);
        assert!(c.get(id + 1).unwrap().is_none());
    }

    #[test]
    fn a_newer_schema_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(Catalog::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        let e = Catalog::open(&path).err().unwrap().to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }
}

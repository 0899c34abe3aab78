//! The DMA's catalog of backups: what each `dma backup` wrote, where (cartridges and tape
//! files, in order), and how it ended, so restores can find images by id.
//!
//! Why SQLite (one file, WAL journal) and not one file per backup: a scheduler inside the
//! server is to write the same catalog while operators run the CLI, and each backup is to get
//! a searchable file history. SQLite gives concurrent writers (WAL plus a busy timeout),
//! transactions that leave no half-written record after a crash, and indexed queries over
//! millions of history rows; a directory of per-backup files gives none of the three. The
//! schema has a version table so later releases migrate in place (v2: servers, schedules, file
//! history, restores; v3: file history in one B-tree; [`defs`] and [`history`] hold their
//! queries).

mod defs;
mod history;
mod types;

pub use defs::{NewSchedule, NewServer, Schedule, Server};
pub use history::{FileBatch, FileEntry, NewRestore, Restore, ROWS_PER_INSERT};
pub use types::{
    new_uuid, now, Backup, Catalog, CatalogError, MediaPart, NewBackup, Outcome, Status,
    SCHEMA_VERSION,
};

use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
const MIGRATIONS: &[&str] = &[
    "
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
",
    // v2: servers and schedules (the scheduler's, from the config or REST), file history,
    // restores; `pid` says which process runs a `running` row, so a later open can tell a
    // cut-off one from one still running.
    "
    CREATE TABLE servers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        path TEXT NOT NULL,
        user TEXT NOT NULL,
        password_file TEXT,
        butype TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL,
        server_id INTEGER NOT NULL REFERENCES servers(id),
        rrule TEXT NOT NULL,
        retention INTEGER NOT NULL,
        retry_attempts INTEGER NOT NULL,
        retry_delay_secs INTEGER NOT NULL,
        level INTEGER NOT NULL,
        last_backup INTEGER,
        next_backup INTEGER,
        source TEXT NOT NULL
    );
    ALTER TABLE backups ADD COLUMN uuid TEXT;
    ALTER TABLE backups ADD COLUMN schedule_id TEXT REFERENCES schedules(id) ON DELETE SET NULL;
    ALTER TABLE backups ADD COLUMN server_id INTEGER REFERENCES servers(id) ON DELETE SET NULL;
    ALTER TABLE backups ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE backups ADD COLUMN description TEXT NOT NULL DEFAULT '';
    ALTER TABLE backups ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE backups ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE backups ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
    ALTER TABLE backups ADD COLUMN sw_version TEXT NOT NULL DEFAULT '';
    ALTER TABLE backups ADD COLUMN pid INTEGER;
    UPDATE backups SET uuid = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
        || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
        || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
        name = 'backup ' || id;
    CREATE UNIQUE INDEX backups_uuid ON backups(uuid);
    CREATE INDEX backups_schedule ON backups(schedule_id);
    CREATE INDEX backups_server ON backups(server_id);
    CREATE TABLE files (
        backup_id INTEGER NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        fh_info INTEGER
    );
    CREATE INDEX files_backup_path ON files(backup_id, path);
    CREATE TABLE restores (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        backup_id INTEGER REFERENCES backups(id) ON DELETE SET NULL,
        paths TEXT NOT NULL,
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        bytes INTEGER NOT NULL DEFAULT 0,
        files INTEGER NOT NULL DEFAULT 0,
        started INTEGER NOT NULL,
        ended INTEGER,
        message TEXT,
        pid INTEGER
    );
",
    // v3: file history in one B-tree keyed by (backup_id, path, seq) instead of a rowid table
    // plus an index on (backup_id, path): a million-row load inserts into one tree and writes
    // each path once. `seq` numbers a backup's entries in arrival order, so a path posted twice
    // stays twice, listed in the order the index gave (its rowid order) before. A backup's
    // rows are numbered 0.. and its `files` is their count, so the next load goes on from it.
    "
    CREATE TABLE files_v3 (
        backup_id INTEGER NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        fh_info INTEGER,
        PRIMARY KEY (backup_id, path, seq)
    ) WITHOUT ROWID;
    INSERT INTO files_v3 (backup_id, path, seq, kind, size, mtime, fh_info)
        SELECT backup_id, path, row_number() OVER (PARTITION BY backup_id ORDER BY rowid) - 1,
            kind, size, mtime, fh_info FROM files;
    DROP TABLE files;
    ALTER TABLE files_v3 RENAME TO files;
    UPDATE backups SET files = (SELECT count(*) FROM files WHERE backup_id = backups.id);
",
];

/// The message of a row left `running` by a process that is gone.
pub const CUT_OFF: &str = "cut off: ndmpd stopped while it ran";

/// The software version recorded with each backup.
pub fn sw_version() -> String {
    format!("ndmpd {}", env!("CARGO_PKG_VERSION"))
}

/// Whether process `pid` still runs (this one always does).
fn alive(pid: i64) -> bool {
    if pid == i64::from(std::process::id()) {
        return true;
    }
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // signal 0 only checks; EPERM: it exists, owned by someone else
    // SAFETY: kill with signal 0 sends nothing
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The host part of `host:port` (or `[v6]:port`).
fn host_of(server: &str) -> String {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match server.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h.to_string(),
        _ => server.to_string(),
    }
}

/// Puts the catalog in WAL mode. WAL is a property of the file, so after its first open there
/// is nothing to change, and asking first takes no lock. Changing the mode needs the file to
/// itself, and SQLite does not run the busy handler for that: with many processes opening a
/// new catalog at once (parallel CLI backups), the change is retried here, within the busy
/// timeout, until one of them has made it.
fn wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        let asked = conn
            .pragma_query_value(None, "journal_mode", |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                }
            });
        match asked {
            // a file system that cannot share WAL's index keeps its mode: the catalog works
            // on, its writers taking turns over the whole file
            Ok(_) => return Ok(()),
            Err(e) if busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `e` is SQLite's "database is locked" (in any of its extended forms).
fn busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy)
}

/// The page size of a new catalog. File history is most of a catalog and is loaded a
/// million rows at a time into one B-tree: with 32 KiB pages rather than SQLite's 4 KiB the
/// tree is shallower and splits an eighth as often: the bundled DMA's CPU for a million-file
/// dump history went from 2.0-2.3 to 1.65-1.8 s (`scripts/bench-hist-pair.sh`, 3 pairs).
const PAGE_SIZE: i64 = 32 * 1024;

/// How long a connection waits for another's lock before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns of `backups` that [`Catalog::backup_row`] reads, in its order.
const BACKUP_COLUMNS: &str = "id, server, tape_server, path, drive, level, butype, dump_date,
    record_size, bytes, started, ended, status, complete, message, uuid, schedule_id, server_id,
    name, description, files, expired, hostname, sw_version";

impl Catalog {
    /// Opens the catalog at `path`, creating it (and its directory) when missing, in WAL
    /// mode, migrated to [`SCHEMA_VERSION`]. Backups and restores left `running` by a
    /// process that is gone become `failed`, "cut off".
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
        // other writers (a second CLI, the server's scheduler) wait rather than fail
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // takes effect only in a file with nothing in it yet: a catalog made before keeps its
        // pages (WAL cannot change them), and works the same
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(db)?;
        wal(&conn).map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        let mut c = Catalog {
            conn,
            path: shown,
            file: path.to_path_buf(),
        };
        c.migrate()?;
        c.cut_off()?;
        Ok(c)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> CatalogError {
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
        if found < 2 {
            // rows of v1 ran under some DMA version; say which this is not
            tx.execute(
                "UPDATE backups SET sw_version = 'ndmpd (before catalog v2)' WHERE sw_version = ''",
                [],
            )
            .map_err(db)?;
            let servers: Vec<(i64, String)> = {
                let mut st = tx.prepare("SELECT id, server FROM backups").map_err(db)?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|r| r.collect())
                    .map_err(db)?;
                rows
            };
            for (id, server) in servers {
                tx.execute(
                    "UPDATE backups SET hostname = ?2 WHERE id = ?1",
                    params![id, host_of(&server)],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Marks rows whose process is gone (or unknown, from a v1 catalog) as failed.
    fn cut_off(&mut self) -> Result<(), CatalogError> {
        for table in ["backups", "restores"] {
            let rows: Vec<(i64, Option<i64>)> = {
                let mut st = self
                    .conn
                    .prepare(&format!(
                        "SELECT id, pid FROM {table} WHERE status = 'running'"
                    ))
                    .map_err(|e| self.err(e))?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| self.err(e))?;
                rows
            };
            for (id, pid) in rows {
                if pid.is_some_and(alive) {
                    continue;
                }
                self.conn
                    .execute(
                        &format!(
                            "UPDATE {table} SET status = 'failed', message = ?2,
                             ended = coalesce(ended, ?3) WHERE id = ?1 AND status = 'running'"
                        ),
                        params![id, CUT_OFF, now() as i64],
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// A second connection to the same catalog file, for a thread of its own (WAL: it
    /// writes while this one reads; writers take turns).
    pub fn reopen(&self) -> Result<Catalog, CatalogError> {
        Catalog::open(&self.file)
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
        let hostname = if b.hostname.is_empty() {
            host_of(&b.server)
        } else {
            b.hostname.clone()
        };
        self.conn
            .execute(
                "INSERT INTO backups (server, tape_server, path, drive, level, butype,
                 record_size, started, status, uuid, schedule_id, server_id, name, description,
                 hostname, sw_version, pid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17)",
                params![
                    b.server,
                    b.tape_server,
                    b.path,
                    b.drive,
                    b.level,
                    b.butype,
                    b.record_size,
                    b.started as i64,
                    Status::Running.as_str(),
                    new_uuid(),
                    b.schedule_id,
                    b.server_id,
                    b.name,
                    b.description,
                    hostname,
                    sw_version(),
                    std::process::id(),
                ],
            )
            .map_err(|e| self.err(e))?;
        let id = self.conn.last_insert_rowid();
        if b.name.is_empty() {
            self.conn
                .execute(
                    "UPDATE backups SET name = 'backup ' || id WHERE id = ?1",
                    [id],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(id)
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
        Ok(self
            .select("WHERE id = ?1", params![id])?
            .into_iter()
            .next())
    }

    /// The backup with REST id `uuid`, if the catalog has it.
    pub fn backup_by_uuid(&self, uuid: &str) -> Result<Option<Backup>, CatalogError> {
        Ok(self
            .select("WHERE uuid = ?1", params![uuid])?
            .into_iter()
            .next())
    }

    /// Every backup, oldest first.
    pub fn list(&self) -> Result<Vec<Backup>, CatalogError> {
        self.select("", params![])
    }

    /// The backups of catalog server `server_id` that are not expired, oldest first.
    pub fn backups_of_server(&self, server_id: i64) -> Result<Vec<Backup>, CatalogError> {
        self.select("WHERE server_id = ?1 AND expired = 0", params![server_id])
    }

    /// Every backup schedule `schedule_id` ran (expired ones too), oldest first.
    pub fn backups_of_schedule(&self, schedule_id: &str) -> Result<Vec<Backup>, CatalogError> {
        self.select("WHERE schedule_id = ?1", params![schedule_id])
    }

    /// Marks backup `id` expired: retention no longer keeps it.
    pub fn expire(&self, id: i64) -> Result<(), CatalogError> {
        self.conn
            .execute("UPDATE backups SET expired = 1 WHERE id = ?1", [id])
            .map_err(|e| self.err(e))
            .map(drop)
    }

    /// The cartridges that hold images and only images of expired backups: what may be
    /// recycled.
    pub fn recyclable(&self) -> Result<Vec<String>, CatalogError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT m.cartridge FROM media m JOIN backups b ON b.id = m.backup_id
                 WHERE m.cartridge IS NOT NULL GROUP BY m.cartridge
                 HAVING min(b.expired) = 1 ORDER BY m.cartridge",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .and_then(|r| r.collect())
            .map_err(|e| self.err(e));
        rows
    }

    /// Forgets what is on cartridge `label` (it is to be overwritten from file 0): its media
    /// rows go; the backups stay, expired, as history.
    pub fn recycle(&self, label: &str) -> Result<usize, CatalogError> {
        self.conn
            .execute("DELETE FROM media WHERE cartridge = ?1", [label])
            .map_err(|e| self.err(e))
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

    /// The backups matching `filter` (a WHERE clause over `backups`, or nothing), in id
    /// order, with their media.
    fn select(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Backup>, CatalogError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {BACKUP_COLUMNS} FROM backups {filter} ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(args, Self::backup_row)
            .map_err(|e| self.err(e))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        for b in out.iter_mut() {
            b.media = self.media_of(b.id)?;
        }
        Ok(out)
    }

    fn media_of(&self, id: i64) -> Result<Vec<MediaPart>, CatalogError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT cartridge, file, offset FROM media WHERE backup_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([id], |r| {
                Ok(MediaPart {
                    cartridge: r.get(0)?,
                    file: r.get(1)?,
                    offset: r.get::<_, i64>(2)? as u64,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e));
        rows
    }

    /// One row of `SELECT BACKUP_COLUMNS` (media left empty).
    fn backup_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Backup> {
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
            uuid: r.get(15)?,
            schedule_id: r.get(16)?,
            server_id: r.get(17)?,
            name: r.get(18)?,
            description: r.get(19)?,
            files: r.get::<_, i64>(20)? as u64,
            expired: r.get(21)?,
            hostname: r.get(22)?,
            sw_version: r.get(23)?,
        })
    }

    /// Runs `f` on the connection (for the sibling modules).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A mutable connection, for transactions.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
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

    /// A catalog as schema v1 made it: v1's tables, through v1's statements.
    fn v1_catalog(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);",
        )
        .unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        for (server, status) in [("filer:10000", "completed"), ("[::1]:10000", "running")] {
            conn.execute(
                "INSERT INTO backups (server, tape_server, path, drive, level, butype,
                 record_size, started, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    server,
                    None::<String>,
                    "/srv",
                    "vtape0",
                    0,
                    "dump",
                    65536,
                    100,
                    status
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO media (backup_id, seq, cartridge, file, offset)
             VALUES (1, 0, 'VT0001', 3, 0)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_v1_catalog_upgrades_in_place_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        v1_catalog(&path);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.version().unwrap(), SCHEMA_VERSION);
        let all = c.list().unwrap();
        assert_eq!(all.len(), 2);
        let (a, b) = (&all[0], &all[1]);
        assert_eq!((a.id, a.status, a.started), (1, Status::Completed, 100));
        assert_eq!(a.media[0].cartridge.as_deref(), Some("VT0001"));
        assert_eq!(a.media[0].file, 3);
        assert_eq!((a.hostname.as_str(), b.hostname.as_str()), ("filer", "::1"));
        assert_eq!(a.name, "backup 1");
        assert!(!a.expired && a.files == 0 && a.schedule_id.is_none());
        // each got a distinct v4 uuid
        assert_eq!(a.uuid.len(), 36);
        assert_eq!(&a.uuid[14..15], "4");
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(c.backup_by_uuid(&b.uuid).unwrap().unwrap().id, 2);
        // the running v1 row has no process that could finish it
        assert_eq!(b.status, Status::Failed);
        assert_eq!(b.message.as_deref(), Some(CUT_OFF));
        drop(c);
        // a second open migrates nothing more
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.list().unwrap()[0].uuid, a.uuid);
    }

    #[test]
    fn running_rows_of_a_live_process_stay_running_of_a_dead_one_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let c = Catalog::open(&path).unwrap();
        let mine = c.insert(&NewBackup::default()).unwrap();
        let gone = c.insert(&NewBackup::default()).unwrap();
        let r = c
            .insert_restore(&NewRestore {
                backup_id: mine,
                paths: vec!["/a".into()],
                destination: "/tmp/x".into(),
            })
            .unwrap();
        // a pid that cannot be running: above the kernel's pid_max limit
        c.conn
            .execute("UPDATE backups SET pid = 99999999 WHERE id = ?1", [gone])
            .unwrap();
        c.conn
            .execute("UPDATE restores SET pid = 99999999 WHERE id = ?1", [r])
            .unwrap();
        drop(c);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.get(mine).unwrap().unwrap().status, Status::Running);
        let g = c.get(gone).unwrap().unwrap();
        assert_eq!(
            (g.status, g.message.as_deref()),
            (Status::Failed, Some(CUT_OFF))
        );
        let r = c.restore(r).unwrap().unwrap();
        assert_eq!(
            (r.status, r.paths),
            (Status::Failed, vec!["/a".to_string()])
        );
    }

    fn server(name: &str) -> NewServer {
        NewServer {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 10001,
            path: "/srv".into(),
            user: "ndmp".into(),
            butype: "dump".into(),
            source: "rest".into(),
            ..NewServer::default()
        }
    }

    #[test]
    fn servers_and_schedules_crud_with_refusals_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let f1 = c.insert_server(&server("filer1")).unwrap();
        let e = c.insert_server(&server("filer1")).unwrap_err().to_string();
        assert_eq!(e, "a server named \"filer1\" exists already");
        let mut s = server("filer1");
        s.port = 10002;
        s.password_file = Some("/etc/pw".into());
        c.update_server(f1, &s).unwrap();
        let got = c.server(f1).unwrap().unwrap();
        assert_eq!(
            (got.port, got.password_file),
            (10002, Some("/etc/pw".into()))
        );
        assert_eq!(c.server_by_name("filer1").unwrap().unwrap().id, f1);
        let sched = NewSchedule {
            name: "nightly".into(),
            active: true,
            server_id: f1,
            rrule: "FREQ=DAILY".into(),
            retention: 2,
            source: "config".into(),
            ..NewSchedule::default()
        };
        let id = c.insert_schedule(&sched).unwrap();
        let bad = NewSchedule {
            name: "orphan".into(),
            server_id: f1 + 100,
            ..sched.clone()
        };
        let e = c.insert_schedule(&bad).unwrap_err().to_string();
        assert!(e.contains("its server does not exist"), "{e}");
        c.set_schedule_times(&id, Some(5), Some(10)).unwrap();
        c.update_schedule(
            &id,
            &NewSchedule {
                retention: 3,
                ..sched.clone()
            },
        )
        .unwrap();
        let got = c.schedule(&id).unwrap().unwrap();
        assert_eq!(
            (got.retention, got.last_backup, got.next_backup),
            (3, Some(5), Some(10))
        );
        let e = c.delete_server(f1).unwrap_err().to_string();
        assert!(e.contains("backed up by schedule nightly"), "{e}");
        // a backup of the schedule outlives it
        let b = c
            .insert(&NewBackup {
                schedule_id: Some(id.clone()),
                server_id: Some(f1),
                ..NewBackup::default()
            })
            .unwrap();
        assert_eq!(c.backups_of_schedule(&id).unwrap().len(), 1);
        c.delete_schedule(&id).unwrap();
        assert!(c.schedules().unwrap().is_empty());
        c.delete_server(f1).unwrap();
        let kept = c.get(b).unwrap().unwrap();
        assert_eq!((kept.schedule_id, kept.server_id), (None, None));
        assert!(c
            .delete_schedule(&id)
            .unwrap_err()
            .to_string()
            .contains("no schedule"));
    }

    fn entry(path: &str, kind: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: kind.into(),
            size: path.len() as u64,
            mtime: 7,
            fh_info: Some(1),
        }
    }

    #[test]
    fn file_history_by_prefix_glob_page_and_search() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let a = c.insert(&NewBackup::default()).unwrap();
        let b = c.insert(&NewBackup::default()).unwrap();
        c.add_files(a, &[entry("/", "dir"), entry("/etc", "dir")])
            .unwrap();
        c.add_files(
            a,
            &[
                entry("/etc/passwd", "file"),
                entry("/etc2", "file"),
                entry("/home/x/notes.conf", "file"),
            ],
        )
        .unwrap();
        c.add_files(b, &[entry("/etc/passwd", "file")]).unwrap();
        assert_eq!(c.get(a).unwrap().unwrap().files, 5);
        let paths = |v: Vec<FileEntry>| v.into_iter().map(|e| e.path).collect::<Vec<_>>();
        assert_eq!(
            paths(c.files(a, Some("/etc/"), 100, 0).unwrap()),
            ["/etc", "/etc/passwd"]
        );
        assert_eq!(
            paths(c.files(a, Some("*.conf"), 100, 0).unwrap()),
            ["/home/x/notes.conf"]
        );
        assert_eq!(
            paths(c.files(a, None, 2, 1).unwrap()),
            ["/etc", "/etc/passwd"]
        );
        let hits = c.search_files("PASSWD", 10).unwrap();
        assert_eq!(
            hits.iter()
                .map(|(bk, e)| (bk.id, e.path.as_str()))
                .collect::<Vec<_>>(),
            [(b, "/etc/passwd"), (a, "/etc/passwd")]
        );
        assert!(c.search_files("%", 10).unwrap().is_empty());
    }

    /// A catalog as schema v2 made it, with file history through v2's INSERT: a path twice
    /// in backup 1, rows out of path order, and two backups' rows interleaved.
    fn v2_catalog(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (2);",
        )
        .unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        for _ in 0..2 {
            conn.execute(
                "INSERT INTO backups (server, path, drive, level, butype, record_size, started,
                 status, uuid) VALUES ('a:1', '/srv', 'vtape0', 0, 'dump', 65536, 1,
                 'completed', lower(hex(randomblob(16))))",
                [],
            )
            .unwrap();
        }
        let rows: [(i64, &str, &str, i64, Option<i64>); 6] = [
            (1, "/b", "file", 1, Some(512)),
            (2, "/z", "dir", 0, None),
            (1, "/a", "dir", 0, None),
            (1, "/b", "file", 2, Some(1024)),
            (1, "/\\303\\251t\\351", "symlink", 3, Some(7)),
            (2, "/y", "fifo", 0, Some(0)),
        ];
        for (id, p, kind, size, fh) in rows {
            conn.execute(
                "INSERT INTO files (backup_id, path, kind, size, mtime, fh_info)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, p, kind, size, 9, fh],
            )
            .unwrap();
            conn.execute("UPDATE backups SET files = files + 1 WHERE id = ?1", [id])
                .unwrap();
        }
    }

    #[test]
    fn a_v2_catalog_moves_its_file_history_into_one_tree_answering_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        v2_catalog(&path);
        let rows = |c: &Catalog, id| {
            c.files(id, None, 100, 0)
                .unwrap()
                .into_iter()
                .map(|e| (e.path, e.kind, e.size, e.fh_info))
                .collect::<Vec<_>>()
        };
        let r = |p: &str, k: &str, s, f| (p.to_string(), k.to_string(), s, f);
        let mut c = Catalog::open(&path).unwrap();
        assert_eq!(c.version().unwrap(), 3);
        // path order, the twice-posted path in the order it came
        assert_eq!(
            rows(&c, 1),
            [
                r("/\\303\\251t\\351", "symlink", 3, Some(7)),
                r("/a", "dir", 0, None),
                r("/b", "file", 1, Some(512)),
                r("/b", "file", 2, Some(1024)),
            ]
        );
        assert_eq!(
            rows(&c, 2),
            [r("/y", "fifo", 0, Some(0)), r("/z", "dir", 0, None)]
        );
        assert_eq!(
            c.files(1, Some("/b"), 10, 1).unwrap()[0].fh_info,
            Some(1024)
        );
        assert_eq!(c.search_files("/b", 10).unwrap().len(), 2);
        let (files_sql, indexes): (String, i64) = c
            .conn
            .query_row(
                "SELECT (SELECT sql FROM sqlite_master WHERE name = 'files'),
                 (SELECT count(*) FROM sqlite_master WHERE tbl_name = 'files'
                  AND type = 'index' AND sql IS NOT NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(files_sql.contains("WITHOUT ROWID"), "{files_sql}");
        assert_eq!(indexes, 0);
        // loads go on after the migrated rows: the same path again is a third row
        c.add_files(1, &[entry("/b", "file")]).unwrap();
        assert_eq!(c.get(1).unwrap().unwrap().files, 5);
        let b: Vec<_> = rows(&c, 1).into_iter().filter(|e| e.0 == "/b").collect();
        assert_eq!(b.len(), 3);
        assert_eq!(b[2].2, 2, "the new row last: {b:?}");
        // the foreign key still holds the rows to their backup
        c.conn
            .execute("DELETE FROM backups WHERE id = 2", [])
            .unwrap();
        assert!(rows(&c, 2).is_empty());
    }

    #[test]
    fn a_new_catalog_has_large_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page = |c: &Catalog| -> i64 {
            c.conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let new = Catalog::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(page(&new), PAGE_SIZE);
        // a catalog an earlier release made, in WAL with SQLite's default pages
        let old = dir.path().join("old.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.pragma_update(None, "page_size", 4096).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch("CREATE TABLE t (x)").unwrap();
        }
        let mut c = Catalog::open(&old).unwrap();
        assert_eq!(page(&c), 4096);
        let id = c.insert(&NewBackup::default()).unwrap();
        let mut batch = FileBatch::default();
        for i in 0..5000 {
            batch.push(&format!("/d/f{i:05}"), "file", i, 5, None);
        }
        c.add_batch(id, &mut batch).unwrap();
        drop(c);
        let c = Catalog::open(&old).unwrap();
        assert_eq!(page(&c), 4096);
        assert_eq!(c.files(id, None, 10_000, 0).unwrap().len(), 5000);
    }

    #[test]
    fn a_batch_in_any_order_is_listed_in_path_order_duplicates_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let id = c.insert(&NewBackup::default()).unwrap();
        // more rows than one multi-row statement, in reverse order, a path given three
        // times, a kind of a later release, and a backslash-escaped name
        let n = ROWS_PER_INSERT * 2 + 3;
        let mut batch = FileBatch::default();
        for i in (0..n).rev() {
            batch.push(&format!("/d/f{i:04}"), "file", i as u64, 5, Some(i as u64));
        }
        for size in [10, 11, 12] {
            batch.push("/d/f0007", "file", size, 5, None);
        }
        batch.push("/d/door", "door", 1, 5, None);
        batch.push("/d/\\377", "other", 1, 5, None);
        c.add_batch(id, &mut batch).unwrap();
        assert!(batch.is_empty());
        batch.push("/d/f0007", "file", 13, 5, None);
        c.add_batch(id, &mut batch).unwrap();
        assert_eq!(c.get(id).unwrap().unwrap().files, n as u64 + 6);
        let all = c.files(id, None, 10_000, 0).unwrap();
        assert_eq!(all.len(), n + 6);
        let paths: Vec<&str> = all.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert_eq!(all[0].path, "/d/\\377");
        assert_eq!(all[1].kind, "door");
        let seven: Vec<u64> = all
            .iter()
            .filter(|e| e.path == "/d/f0007")
            .map(|e| e.size)
            .collect();
        assert_eq!(seven, [7, 10, 11, 12, 13]);
        let last = &all[n + 5];
        assert_eq!(
            (last.path.as_str(), last.size, last.fh_info),
            ("/d/f0130", 130, Some(130))
        );
        // no backup: refused in words, and the foreign key is on again afterwards
        batch.push("/x", "file", 1, 1, None);
        let e = c.add_batch(id + 1, &mut batch).unwrap_err().to_string();
        assert!(e.contains(&format!("no backup {}", id + 1)), "{e}");
        let fk: i64 = c
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        assert_eq!(c.files(id, None, 10_000, 0).unwrap().len(), n + 6);
    }

    #[test]
    fn expiry_recycling_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let part = |tag: &str, file| MediaPart {
            cartridge: Some(tag.into()),
            file,
            offset: 0,
        };
        let done = |media| Outcome {
            status: Status::Completed,
            complete: true,
            bytes: 1,
            dump_date: None,
            message: None,
            ended: 2,
            media,
        };
        let f = c.insert_server(&server("f")).unwrap();
        let a = c
            .insert(&NewBackup {
                server_id: Some(f),
                ..NewBackup::default()
            })
            .unwrap();
        let b = c.insert(&NewBackup::default()).unwrap();
        assert_eq!(c.backups_of_server(f).unwrap().len(), 1);
        c.finish(a, &done(vec![part("VT1", 0), part("VT2", 0)]))
            .unwrap();
        c.finish(b, &done(vec![part("VT2", 1)])).unwrap();
        assert!(c.recyclable().unwrap().is_empty());
        c.expire(a).unwrap();
        // VT2 still holds b
        assert_eq!(c.recyclable().unwrap(), ["VT1"]);
        assert_eq!(c.recycle("VT1").unwrap(), 1);
        assert!(!c.references("VT1").unwrap());
        let kept = c.get(a).unwrap().unwrap();
        assert!(kept.expired && kept.media == [part("VT2", 0)]);
        assert!(c.backups_of_server(f).unwrap().is_empty());
        let r = c
            .insert_restore(&NewRestore {
                backup_id: b,
                paths: vec![],
                destination: "/d".into(),
            })
            .unwrap();
        c.finish_restore(r, Status::Completed, 10, 3, None).unwrap();
        let all = c.restores().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].status, all[0].bytes, all[0].files, all[0].backup_id),
            (Status::Completed, 10, 3, Some(b))
        );
        assert!(all[0].ended.is_some());
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

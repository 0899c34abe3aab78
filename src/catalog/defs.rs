//! The catalog's servers (filers to back up) and schedules: the scheduler's definitions,
//! copied from the config file (`source = "config"`) or made over REST (`source = "rest"`).

use super::types::{new_uuid, optional, Catalog, CatalogError};
use rusqlite::params;
use std::path::PathBuf;

/// An NDMP server (filer) whose path is backed up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Server {
    /// Its id in the catalog.
    pub id: i64,
    /// Its name, unique.
    pub name: String,
    /// A description for people.
    pub description: String,
    /// Host name or address of its NDMP service.
    pub host: String,
    /// Its NDMP port.
    pub port: u16,
    /// The path backed up (env FILESYSTEM).
    pub path: String,
    /// The NDMP user to log in as.
    pub user: String,
    /// The file holding the password; none: the scheduler's own.
    pub password_file: Option<PathBuf>,
    /// "dump" or "tar".
    pub butype: String,
    /// "config" or "rest": where it was defined.
    pub source: String,
}

/// What a server is made of, without its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct NewServer {
    /// Its name, unique.
    pub name: String,
    /// A description for people.
    #[serde(default)]
    pub description: String,
    /// Host name or address of its NDMP service.
    pub host: String,
    /// Its NDMP port.
    pub port: u16,
    /// The path backed up.
    pub path: String,
    /// The NDMP user to log in as.
    pub user: String,
    /// The file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// "dump" or "tar".
    pub butype: String,
    /// "config" or "rest".
    pub source: String,
}

/// A backup schedule: which server, when (an RFC 5545 RRULE), how many backups to keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Schedule {
    /// Its id: a UUID.
    pub id: String,
    /// Its name, unique.
    pub name: String,
    /// A description for people.
    pub description: String,
    /// Whether it runs.
    pub active: bool,
    /// The catalog server it backs up.
    pub server_id: i64,
    /// The recurrence, RFC 5545 text ("FREQ=DAILY;BYHOUR=1", DTSTART optional).
    pub rrule: String,
    /// Completed backups kept (1-9999); older ones are expired.
    pub retention: u32,
    /// Runs after a failed one, each after `retry_delay_secs`.
    pub retry_attempts: u32,
    /// Seconds between a failed run and its retry.
    pub retry_delay_secs: u64,
    /// Dump level.
    pub level: u32,
    /// When it last ran, seconds since the epoch.
    pub last_backup: Option<u64>,
    /// When it runs next, seconds since the epoch.
    pub next_backup: Option<u64>,
    /// "config" or "rest".
    pub source: String,
}

/// What a schedule is made of, without its id and run times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSchedule {
    /// Its name, unique.
    pub name: String,
    /// A description for people.
    pub description: String,
    /// Whether it runs.
    pub active: bool,
    /// The catalog server it backs up.
    pub server_id: i64,
    /// RFC 5545 text.
    pub rrule: String,
    /// Completed backups kept.
    pub retention: u32,
    /// Runs after a failed one.
    pub retry_attempts: u32,
    /// Seconds between a failed run and its retry.
    pub retry_delay_secs: u64,
    /// Dump level.
    pub level: u32,
    /// "config" or "rest".
    pub source: String,
}

const SERVER_COLUMNS: &str =
    "id, name, description, host, port, path, user, password_file, butype, source";
const SCHEDULE_COLUMNS: &str = "id, name, description, active, server_id, rrule, retention,
    retry_attempts, retry_delay_secs, level, last_backup, next_backup, source";

fn server_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Server> {
    Ok(Server {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        host: r.get(3)?,
        port: r.get(4)?,
        path: r.get(5)?,
        user: r.get(6)?,
        password_file: r.get::<_, Option<String>>(7)?.map(PathBuf::from),
        butype: r.get(8)?,
        source: r.get(9)?,
    })
}

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Schedule> {
    Ok(Schedule {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        active: r.get(3)?,
        server_id: r.get(4)?,
        rrule: r.get(5)?,
        retention: r.get(6)?,
        retry_attempts: r.get(7)?,
        retry_delay_secs: r.get::<_, i64>(8)? as u64,
        level: r.get(9)?,
        last_backup: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        next_backup: r.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        source: r.get(12)?,
    })
}

/// A unique-name violation in words; other errors as the database's.
fn named(c: &Catalog, what: &str, name: &str, e: rusqlite::Error) -> CatalogError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            CatalogError::Refused(format!("a {what} named {name:?} exists already"))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            CatalogError::Refused(format!("{what} {name:?}: its server does not exist"))
        }
        _ => c.err(e),
    }
}

impl Catalog {
    /// The one row `sql` selects with `params`, read by `row`, if there is one.
    fn one_row<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, CatalogError> {
        optional(self.conn().query_row(sql, params, row)).map_err(|e| self.err(e))
    }

    /// Every server, by id.
    pub fn servers(&self) -> Result<Vec<Server>, CatalogError> {
        let mut st = self
            .conn()
            .prepare(&format!("SELECT {SERVER_COLUMNS} FROM servers ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], server_row)
            .and_then(|r| r.collect())
            .map_err(|e| self.err(e));
        rows
    }

    /// Server `id`, if there is one.
    pub fn server(&self, id: i64) -> Result<Option<Server>, CatalogError> {
        self.one_row(
            &format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = ?1"),
            [id],
            server_row,
        )
    }

    /// The server named `name`, if there is one.
    pub fn server_by_name(&self, name: &str) -> Result<Option<Server>, CatalogError> {
        self.one_row(
            &format!("SELECT {SERVER_COLUMNS} FROM servers WHERE name = ?1"),
            [name],
            server_row,
        )
    }

    /// Adds a server; returns its id. A name taken is refused in words.
    pub fn insert_server(&self, s: &NewServer) -> Result<i64, CatalogError> {
        self.conn()
            .execute(
                "INSERT INTO servers (name, description, host, port, path, user, password_file,
                 butype, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    s.name,
                    s.description,
                    s.host,
                    s.port,
                    s.path,
                    s.user,
                    s.password_file.as_ref().map(|p| p.display().to_string()),
                    s.butype,
                    s.source
                ],
            )
            .map_err(|e| named(self, "server", &s.name, e))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Replaces server `id`'s definition.
    pub fn update_server(&self, id: i64, s: &NewServer) -> Result<(), CatalogError> {
        let n = self
            .conn()
            .execute(
                "UPDATE servers SET name = ?2, description = ?3, host = ?4, port = ?5, path = ?6,
                 user = ?7, password_file = ?8, butype = ?9, source = ?10 WHERE id = ?1",
                params![
                    id,
                    s.name,
                    s.description,
                    s.host,
                    s.port,
                    s.path,
                    s.user,
                    s.password_file.as_ref().map(|p| p.display().to_string()),
                    s.butype,
                    s.source
                ],
            )
            .map_err(|e| named(self, "server", &s.name, e))?;
        if n == 0 {
            return Err(CatalogError::Refused(format!("no server {id}")));
        }
        Ok(())
    }

    /// Deletes server `id`; refused while a schedule backs it up. Its backups stay, without
    /// a server.
    pub fn delete_server(&self, id: i64) -> Result<(), CatalogError> {
        let users: Vec<String> = {
            let mut st = self
                .conn()
                .prepare("SELECT name FROM schedules WHERE server_id = ?1 ORDER BY name")
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([id], |r| r.get(0))
                .and_then(|r| r.collect())
                .map_err(|e| self.err(e))?;
            rows
        };
        if !users.is_empty() {
            return Err(CatalogError::Refused(format!(
                "server {id} is backed up by schedule {}: delete or change it first",
                users.join(", ")
            )));
        }
        let n = self
            .conn()
            .execute("DELETE FROM servers WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(CatalogError::Refused(format!("no server {id}")));
        }
        Ok(())
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> Result<Vec<Schedule>, CatalogError> {
        let mut st = self
            .conn()
            .prepare(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], schedule_row)
            .and_then(|r| r.collect())
            .map_err(|e| self.err(e));
        rows
    }

    /// Schedule `id` (its UUID), if there is one.
    pub fn schedule(&self, id: &str) -> Result<Option<Schedule>, CatalogError> {
        self.one_row(
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"),
            [id],
            schedule_row,
        )
    }

    /// The schedule named `name`, if there is one.
    pub fn schedule_by_name(&self, name: &str) -> Result<Option<Schedule>, CatalogError> {
        self.one_row(
            &format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?1"),
            [name],
            schedule_row,
        )
    }

    /// Adds a schedule; returns its UUID. A name taken, or a server that does not exist, is
    /// refused in words.
    pub fn insert_schedule(&self, s: &NewSchedule) -> Result<String, CatalogError> {
        let id = new_uuid();
        self.conn()
            .execute(
                "INSERT INTO schedules (id, name, description, active, server_id, rrule,
                 retention, retry_attempts, retry_delay_secs, level, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    id,
                    s.name,
                    s.description,
                    s.active,
                    s.server_id,
                    s.rrule,
                    s.retention,
                    s.retry_attempts,
                    s.retry_delay_secs as i64,
                    s.level,
                    s.source
                ],
            )
            .map_err(|e| named(self, "schedule", &s.name, e))?;
        Ok(id)
    }

    /// Replaces schedule `id`'s definition (its run times stay).
    pub fn update_schedule(&self, id: &str, s: &NewSchedule) -> Result<(), CatalogError> {
        let n = self
            .conn()
            .execute(
                "UPDATE schedules SET name = ?2, description = ?3, active = ?4, server_id = ?5,
                 rrule = ?6, retention = ?7, retry_attempts = ?8, retry_delay_secs = ?9,
                 level = ?10, source = ?11 WHERE id = ?1",
                params![
                    id,
                    s.name,
                    s.description,
                    s.active,
                    s.server_id,
                    s.rrule,
                    s.retention,
                    s.retry_attempts,
                    s.retry_delay_secs as i64,
                    s.level,
                    s.source
                ],
            )
            .map_err(|e| named(self, "schedule", &s.name, e))?;
        if n == 0 {
            return Err(CatalogError::Refused(format!("no schedule {id}")));
        }
        Ok(())
    }

    /// Records when schedule `id` last ran and runs next.
    pub fn set_schedule_times(
        &self,
        id: &str,
        last: Option<u64>,
        next: Option<u64>,
    ) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE schedules SET last_backup = ?2, next_backup = ?3 WHERE id = ?1",
                params![id, last.map(|v| v as i64), next.map(|v| v as i64)],
            )
            .map_err(|e| self.err(e))
            .map(drop)
    }

    /// Deletes schedule `id`; its backups stay, without a schedule.
    pub fn delete_schedule(&self, id: &str) -> Result<(), CatalogError> {
        let n = self
            .conn()
            .execute("DELETE FROM schedules WHERE id = ?1", [id])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(CatalogError::Refused(format!("no schedule {id}")));
        }
        Ok(())
    }
}

//! The npm.backup 2.0 resources under `/api/npm.backup/2.0/`: backup servers, scheduled
//! backups, completed backups and their contents, device status and restores, over the catalog.
//!
//! The paths, resource names and fields are the seed's (so a client written for it works);
//! ndmpd's additions (butype, level, media, file history, run now, the file search) are marked
//! as extensions in openapi.json. Errors are ONTAP-shaped like the rest of the REST view.

use super::npm_body::{self as body, RuleGiven, ScheduleBody, ServerBody};
use super::npm_state::{conflict, db, internal, not_found, DEFAULT_LIMIT, MAX_LIMIT};
pub use super::npm_state::{Npm, Scheduling, CONFLICT, PREFIX};
use super::query::{RestError, CODE_INVALID_VALUE};
use super::state::{blocking, pairs, Failure, RestState, RestUser};
use crate::catalog::{Backup, Catalog, FileEntry, Schedule, Server, Status};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// The npm.backup routes, added to the REST router.
pub fn routes(r: Router<Arc<RestState>>) -> Router<Arc<RestState>> {
    let p = |s: &str| format!("{PREFIX}{s}");
    r.route(&p("/servers"), get(list_servers).post(post_server))
        .route(
            &p("/servers/items/{id}"),
            get(get_server).patch(patch_server).delete(delete_server),
        )
        .route(
            &p("/scheduled_backups"),
            get(list_schedules).post(post_schedule),
        )
        .route(
            &p("/scheduled_backups/items/{id}"),
            get(get_schedule)
                .patch(patch_schedule)
                .delete(delete_schedule),
        )
        .route(&p("/scheduled_backups/items/{id}/run"), post(run_schedule))
        .route(&p("/backups/server/{server_id}"), get(list_backups))
        .route(
            &p("/completed_backups/server/{server_id}/items/{id}"),
            get(get_backup).delete(expire_backup),
        )
        .route(
            &p("/completed_backups/server/{server_id}/items/{id}/contents"),
            get(backup_contents),
        )
        .route(
            &p("/completed_backups/server/{server_id}/items/{id}/restore"),
            post(restore_backup),
        )
        .route(&p("/device_status"), get(device_status))
        .route(&p("/files"), get(search_files))
}

type Answer = Result<(StatusCode, Value), RestError>;

/// Runs `f` off the async threads with the npm state, or answers 404 when npm.backup is not
/// configured (the web page shows "not configured" on a 404).
async fn on(s: &Arc<RestState>, f: impl FnOnce(&Npm) -> Answer + Send + 'static) -> Response {
    let Some(npm) = s.npm.clone() else {
        let e = RestError::not_found(
            "npm.backup is not configured: add a [scheduler] section to the config file",
            None,
        );
        return Failure(e).into_response();
    };
    match blocking(move || f(&npm)).await {
        Ok(Ok((status, v))) => (status, Json(v)).into_response(),
        Ok(Err(e)) => Failure(e).into_response(),
        Err(f) => f.into_response(),
    }
}

fn ok(v: Value) -> Answer {
    Ok((StatusCode::OK, v))
}

fn id_of(id: &str, target: &str) -> Result<i64, RestError> {
    id.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| {
        RestError::invalid_value(
            target,
            format!("{target} \"{id}\" is not a positive integer"),
        )
        .with_arguments(&[id])
    })
}

// ---- servers

fn server_record(s: &Server) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "desc": s.description,
        "host": s.host,
        "port": s.port,
        "path": s.path,
        "user": s.user,
        "butype": s.butype,
        "password_file": s.password_file.as_ref().map(|p| p.display().to_string()),
        "source": s.source,
    })
}

fn server_body(s: &Server) -> ServerBody {
    ServerBody {
        name: s.name.clone(),
        desc: s.description.clone(),
        host: s.host.clone(),
        port: s.port,
        path: s.path.clone(),
        user: s.user.clone(),
        butype: s.butype.clone(),
        password: None,
        password_file: s.password_file.clone(),
    }
}

fn find_server(c: &Catalog, id: i64) -> Result<Server, RestError> {
    c.server(id)
        .map_err(db)?
        .ok_or_else(|| not_found("backup server", &id.to_string(), "id"))
}

fn from_config(what: &str, name: &str, target: &str) -> RestError {
    conflict(
        format!("{what} \"{name}\" is defined in the config file; edit it there and reload"),
        target,
    )
}

/// Writes `password` to this server's file (mode 0600, created so, never readable by others).
fn store_password(npm: &Npm, id: i64, password: &str) -> Result<PathBuf, RestError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = &npm.password_dir;
    let fail = |e: std::io::Error| {
        internal(format!(
            "the password could not be stored in {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let path = dir.join(format!("{id}.pw"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    // a file left by an older run keeps its mode on open: make sure
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(fail)?;
    f.write_all(password.as_bytes()).map_err(fail)?;
    f.write_all(b"\n").map_err(fail)?;
    Ok(path)
}

fn new_server(b: &ServerBody, password_file: Option<PathBuf>) -> crate::catalog::NewServer {
    crate::catalog::NewServer {
        name: b.name.clone(),
        description: b.desc.clone(),
        host: b.host.clone(),
        port: b.port,
        path: b.path.clone(),
        user: b.user.clone(),
        password_file,
        butype: b.butype.clone(),
        source: "rest".into(),
    }
}

fn name_taken(c: &Catalog, name: &str, except: Option<i64>) -> Result<(), RestError> {
    let taken = c
        .servers()
        .map_err(db)?
        .iter()
        .any(|s| s.name == name && Some(s.id) != except);
    if taken {
        return Err(conflict(
            format!("a backup server named \"{name}\" exists"),
            "name",
        ));
    }
    Ok(())
}

async fn list_servers(State(s): State<Arc<RestState>>) -> Response {
    on(&s, |npm| {
        let items: Vec<Value> = npm
            .with(|c| c.servers().map_err(db))?
            .iter()
            .map(server_record)
            .collect();
        ok(json!({"items": items}))
    })
    .await
}

async fn get_server(State(s): State<Arc<RestState>>, Path(id): Path<String>) -> Response {
    on(&s, move |npm| {
        let id = id_of(&id, "id")?;
        ok(server_record(&npm.with(|c| find_server(c, id))?))
    })
    .await
}

async fn post_server(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    b: axum::body::Bytes,
) -> Response {
    on(&s, move |npm| {
        let sb = body::server(&b, None)?;
        let rec = npm.with(|c| {
            name_taken(c, &sb.name, None)?;
            let id = c
                .insert_server(&new_server(&sb, sb.password_file.clone()))
                .map_err(db)?;
            if let Some(pw) = &sb.password {
                let file = store_password(npm, id, pw)?;
                c.update_server(id, &new_server(&sb, Some(file)))
                    .map_err(db)?;
            }
            find_server(c, id)
        })?;
        tracing::info!(user = %who.0, id = rec.id, name = %rec.name, "backup server added over REST");
        Ok((StatusCode::CREATED, server_record(&rec)))
    })
    .await
}

async fn patch_server(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Response {
    on(&s, move |npm| {
        let id = id_of(&id, "id")?;
        let rec = npm.with(|c| {
            let old = find_server(c, id)?;
            if old.source == "config" {
                return Err(from_config("backup server", &old.name, "id"));
            }
            let sb = body::server(&b, Some(&server_body(&old)))?;
            name_taken(c, &sb.name, Some(id))?;
            let managed = npm.password_dir.join(format!("{id}.pw"));
            let file = match &sb.password {
                Some(pw) => Some(store_password(npm, id, pw)?),
                None => sb.password_file.clone(),
            };
            if file.as_ref() != Some(&managed) {
                // a password given before is no longer used: do not leave it on disk
                let _ = std::fs::remove_file(&managed);
            }
            c.update_server(id, &new_server(&sb, file)).map_err(db)?;
            find_server(c, id)
        })?;
        tracing::info!(user = %who.0, id, name = %rec.name, "backup server changed over REST");
        ok(server_record(&rec))
    })
    .await
}

async fn delete_server(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path(id): Path<String>,
) -> Response {
    on(&s, move |npm| {
        let id = id_of(&id, "id")?;
        npm.with(|c| {
            let old = find_server(c, id)?;
            if old.source == "config" {
                return Err(from_config("backup server", &old.name, "id"));
            }
            let users: Vec<String> = c
                .schedules()
                .map_err(db)?
                .into_iter()
                .filter(|sc| sc.server_id == id)
                .map(|sc| format!("\"{}\"", sc.name))
                .collect();
            if !users.is_empty() {
                return Err(conflict(
                    format!(
                        "backup server \"{}\" is used by scheduled backup {}; delete or change it first",
                        old.name,
                        users.join(", ")
                    ),
                    "id",
                ));
            }
            c.delete_server(id).map_err(db)?;
            let _ = std::fs::remove_file(npm.password_dir.join(format!("{id}.pw")));
            tracing::info!(user = %who.0, id, name = %old.name, "backup server deleted over REST");
            ok(json!({}))
        })
    })
    .await
}

// ---- scheduled backups

/// The recurrence rule text as the seed's `recurrence_rule` object.
pub fn rule_object(text: &str) -> Value {
    let mut o = serde_json::Map::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(d) = line.strip_prefix("DTSTART:") {
            if let Some(t) = ical_epoch(d) {
                o.insert("dtstart".into(), json!(t));
            }
            continue;
        }
        let rule = line.strip_prefix("RRULE:").unwrap_or(line);
        for part in rule.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let k = k.to_ascii_lowercase();
            let ints = || -> Value {
                v.split(',')
                    .filter_map(|n| n.trim().parse::<i64>().ok())
                    .collect::<Vec<_>>()
                    .into()
            };
            let value = match k.as_str() {
                "freq" | "until" | "wkst" | "tzid" => json!(v),
                "interval" | "count" => v.parse::<i64>().map_or(json!(v), |n| json!(n)),
                "byday" => json!(v.split(',').collect::<Vec<_>>()),
                _ => ints(),
            };
            let k = if k == "tzid" { "timezone".into() } else { k };
            o.insert(k, value);
        }
    }
    Value::Object(o)
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch (UTC).
fn ical_epoch(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (d, t) = s.split_once('T').unwrap_or((s, "000000"));
    let n = |x: &str| x.parse::<i64>().ok();
    if d.len() != 8 || t.len() != 6 {
        return None;
    }
    let (y, m, dd) = (n(&d[..4])?, n(&d[4..6])?, n(&d[6..])?);
    let (hh, mm, ss) = (n(&t[..2])?, n(&t[2..4])?, n(&t[4..])?);
    // days from the civil date (proleptic Gregorian), Howard Hinnant's well-known method
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn contents_of(butype: &str, path: &str, level: u32) -> Value {
    json!({
        "config_only": false,
        "modules": [{"module": butype, "options": [
            {"name": "path", "value": path},
            {"name": "level", "value": level.to_string()},
        ]}],
    })
}

fn schedule_record(sc: &Schedule, server: Option<&Server>) -> Value {
    let (butype, path) = server.map_or(("dump", ""), |s| (s.butype.as_str(), s.path.as_str()));
    let mut v = json!({
        "id": sc.id,
        "name": sc.name,
        "desc": sc.description,
        "active": sc.active,
        "retention": sc.retention,
        "retry_attempts": sc.retry_attempts,
        "retry_delay": sc.retry_delay_secs / 60,
        "rrule": rule_object(&sc.rrule),
        "rrule_text": sc.rrule,
        "server_id": sc.server_id,
        "contents": contents_of(butype, path, sc.level),
        "level": sc.level,
        "source": sc.source,
    });
    if let Some(t) = sc.last_backup {
        v["last_backup"] = json!(t);
    }
    if let Some(t) = next_run(sc, crate::catalog::now()) {
        v["next_backup"] = json!(t);
    }
    v
}

/// When the planner will next run `sc`, as of `now`: none for an inactive schedule (the
/// planner skips it, whatever time it stored before); the planner's stored time while it is
/// ahead; else (the planner has not planned it yet after a start or a change, or is launching
/// it) the rule's next time after `now`, as the planner will compute it.
fn next_run(sc: &Schedule, now: u64) -> Option<u64> {
    if !sc.active {
        return None;
    }
    sc.next_backup
        .filter(|&t| t > now)
        .or_else(|| crate::scheduler::next_after(&sc.rrule, now))
}

fn schedule_body(sc: &Schedule) -> ScheduleBody {
    ScheduleBody {
        name: sc.name.clone(),
        desc: sc.description.clone(),
        active: sc.active,
        retention: sc.retention,
        retry_attempts: sc.retry_attempts,
        retry_delay_secs: sc.retry_delay_secs,
        rrule: sc.rrule.clone(),
        server_id: sc.server_id,
        level: sc.level,
    }
}

fn new_schedule(b: &ScheduleBody) -> crate::catalog::NewSchedule {
    crate::catalog::NewSchedule {
        name: b.name.clone(),
        description: b.desc.clone(),
        active: b.active,
        server_id: b.server_id,
        rrule: b.rrule.clone(),
        retention: b.retention,
        retry_attempts: b.retry_attempts,
        retry_delay_secs: b.retry_delay_secs,
        level: b.level,
        source: "rest".into(),
    }
}

/// The rule a request gave, checked by the scheduler's parser, as RFC 5545 text.
fn checked_rule(g: &RuleGiven) -> Result<String, String> {
    match g {
        RuleGiven::Object(o) => crate::scheduler::rrule_from_object(o),
        RuleGiven::Text(t) => crate::scheduler::rrule_from_text(t).map(|_| t.trim().to_string()),
    }
}

fn find_schedule(c: &Catalog, id: &str) -> Result<Schedule, RestError> {
    c.schedule(id)
        .map_err(db)?
        .ok_or_else(|| not_found("scheduled backup", id, "id"))
}

/// The server a schedule names must exist: 400 naming server_id otherwise.
fn check_server_id(c: &Catalog, id: i64) -> Result<Server, RestError> {
    c.server(id).map_err(db)?.ok_or_else(|| {
        RestError::invalid_value(
            "server_id",
            format!("server_id {id}: no backup server has that id (see {PREFIX}/servers)"),
        )
        .with_arguments(&[id.to_string()])
    })
}

fn schedule_with_server(c: &Catalog, sc: &Schedule) -> Result<Value, RestError> {
    let server = c.server(sc.server_id).map_err(db)?;
    Ok(schedule_record(sc, server.as_ref()))
}

fn replan(npm: &Npm) {
    if let Some(h) = &npm.scheduler {
        h.changed();
    }
}

async fn list_schedules(State(s): State<Arc<RestState>>) -> Response {
    on(&s, |npm| {
        let items = npm.with(|c| {
            c.schedules()
                .map_err(db)?
                .iter()
                .map(|sc| schedule_with_server(c, sc))
                .collect::<Result<Vec<_>, _>>()
        })?;
        ok(json!({"items": items}))
    })
    .await
}

async fn get_schedule(State(s): State<Arc<RestState>>, Path(id): Path<String>) -> Response {
    on(&s, move |npm| {
        ok(npm.with(|c| schedule_with_server(c, &find_schedule(c, &id)?))?)
    })
    .await
}

async fn post_schedule(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    b: axum::body::Bytes,
) -> Response {
    on(&s, move |npm| {
        let sb = body::schedule(&b, None, checked_rule)?;
        let rec = npm.with(|c| {
            check_server_id(c, sb.server_id)?;
            let id = c.insert_schedule(&new_schedule(&sb)).map_err(db)?;
            find_schedule(c, &id)
        })?;
        replan(npm);
        tracing::info!(user = %who.0, id = %rec.id, name = %rec.name, rrule = %rec.rrule, "scheduled backup added over REST");
        let v = npm.with(|c| schedule_with_server(c, &rec))?;
        Ok((StatusCode::CREATED, v))
    })
    .await
}

async fn patch_schedule(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path(id): Path<String>,
    b: axum::body::Bytes,
) -> Response {
    on(&s, move |npm| {
        let rec = npm.with(|c| {
            let old = find_schedule(c, &id)?;
            if old.source == "config" {
                return Err(from_config("scheduled backup", &old.name, "id"));
            }
            let sb = body::schedule(&b, Some(&schedule_body(&old)), checked_rule)?;
            check_server_id(c, sb.server_id)?;
            c.update_schedule(&id, &new_schedule(&sb)).map_err(db)?;
            find_schedule(c, &id)
        })?;
        replan(npm);
        tracing::info!(user = %who.0, id = %rec.id, name = %rec.name, "scheduled backup changed over REST");
        ok(npm.with(|c| schedule_with_server(c, &rec))?)
    })
    .await
}

async fn delete_schedule(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path(id): Path<String>,
) -> Response {
    on(&s, move |npm| {
        npm.with(|c| {
            let old = find_schedule(c, &id)?;
            if old.source == "config" {
                return Err(from_config("scheduled backup", &old.name, "id"));
            }
            c.delete_schedule(&id).map_err(db)?;
            tracing::info!(user = %who.0, id = %id, name = %old.name, "scheduled backup deleted over REST");
            Ok(())
        })?;
        replan(npm);
        ok(json!({}))
    })
    .await
}

/// ONTAP's answer to an operation that runs as a job: 202 and the job's link.
fn job_link(uuid: &str) -> Answer {
    Ok((
        StatusCode::ACCEPTED,
        json!({"job": {
            "uuid": uuid,
            "_links": {"self": {"href": format!("/api/cluster/jobs/{uuid}")}},
        }}),
    ))
}

/// `POST …/scheduled_backups/items/{id}/run` (ndmpd's): runs the schedule now, as a job.
async fn run_schedule(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path(id): Path<String>,
) -> Response {
    on(&s, move |npm| {
        let sc = npm.with(|c| find_schedule(c, &id))?;
        let job = npm
            .scheduler()?
            .run_now(&sc.id)
            .map_err(|why| conflict(why, "id"))?;
        tracing::info!(user = %who.0, id = %sc.id, name = %sc.name, job = %job, "scheduled backup run now over REST");
        job_link(&job)
    })
    .await
}

// ---- completed backups

/// The seed's status words for a catalog status.
fn status_word(s: Status) -> &'static str {
    match s {
        Status::Running => "started",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Aborted => "aborted",
    }
}

fn backup_record(b: &Backup, system_id: &str) -> Value {
    let mut v = json!({
        "id": b.uuid,
        "name": b.name,
        "desc": b.description,
        "server_id": b.server_id,
        "status": status_word(b.status),
        "hostname": b.hostname,
        "sw_version": b.sw_version,
        "model": "ndmpd",
        "serial": system_id,
        "created_on": b.started,
        "contents": contents_of(&b.butype, &b.path, b.level),
        "size": b.bytes,
        "level": b.level,
        "butype": b.butype,
        "path": b.path,
        "dump_date": b.dump_date,
        "ended_on": b.ended,
        "message": b.message,
        "media": b.media.iter().map(|m| json!({
            "cartridge": m.cartridge, "file": m.file, "offset": m.offset,
        })).collect::<Vec<_>>(),
        "files": b.files,
    });
    if let Some(sid) = &b.schedule_id {
        v["sid"] = json!(sid);
    }
    v
}

/// The backup `{server_id}/items/{id}` names: 404 unless it is that server's and not expired.
fn find_backup(c: &Catalog, server_id: &str, id: &str) -> Result<Backup, RestError> {
    let sid = id_of(server_id, "server_id")?;
    find_server(c, sid)?;
    c.backup_by_uuid(id)
        .map_err(db)?
        .filter(|b| b.server_id == Some(sid) && !b.expired)
        .ok_or_else(|| not_found("completed backup", id, "id"))
}

async fn list_backups(State(s): State<Arc<RestState>>, Path(server_id): Path<String>) -> Response {
    on(&s, move |npm| {
        let sid = id_of(&server_id, "server_id")?;
        let list = npm.with(|c| {
            find_server(c, sid)?;
            c.backups_of_server(sid).map_err(db)
        })?;
        let completed: Vec<Value> = list
            .iter()
            .map(|b| backup_record(b, &npm.system_id))
            .collect();
        ok(json!({"server_id": sid, "completed": completed}))
    })
    .await
}

async fn get_backup(
    State(s): State<Arc<RestState>>,
    Path((server_id, id)): Path<(String, String)>,
) -> Response {
    on(&s, move |npm| {
        let b = npm.with(|c| find_backup(c, &server_id, &id))?;
        ok(backup_record(&b, &npm.system_id))
    })
    .await
}

/// `DELETE …/items/{id}`: expires the backup (its cartridges are recycled once every image on
/// them is expired); the record stays in the catalog as history.
async fn expire_backup(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path((server_id, id)): Path<(String, String)>,
) -> Response {
    on(&s, move |npm| {
        npm.with(|c| {
            let b = find_backup(c, &server_id, &id)?;
            if b.status == Status::Running {
                return Err(conflict(
                    format!("backup {id} is still running; cancel its job first"),
                    "id",
                ));
            }
            c.expire(b.id).map_err(db)?;
            tracing::info!(user = %who.0, backup = %id, "backup expired over REST");
            Ok(())
        })?;
        ok(json!({}))
    })
    .await
}

/// `limit` and `offset` of a query, checked.
fn paging(q: &[(String, String)]) -> Result<(u64, u64), RestError> {
    let num = |k: &str, default: u64, max: u64| -> Result<u64, RestError> {
        match q.iter().rev().find(|(n, _)| n == k) {
            None => Ok(default),
            Some((_, v)) => v.parse::<u64>().ok().filter(|&n| n <= max).ok_or_else(|| {
                RestError::invalid_value(k, format!("{k} \"{v}\" must be an integer 0-{max}"))
                    .with_arguments(&[v])
            }),
        }
    };
    Ok((
        num("limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        num("offset", 0, u64::MAX)?,
    ))
}

fn known_params(q: &[(String, String)], known: &[&str]) -> Result<(), RestError> {
    match q.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => Err(RestError::unexpected_argument(k)),
        None => Ok(()),
    }
}

fn file_record(f: &FileEntry) -> Value {
    json!({
        "path": f.path,
        "type": f.kind,
        "size": f.size,
        "mtime": f.mtime,
        "fh_info": f.fh_info,
    })
}

/// `GET …/items/{id}/contents?path=GLOB&limit=&offset=` (ndmpd's): the backup's file history.
async fn backup_contents(
    State(s): State<Arc<RestState>>,
    Path((server_id, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = match pairs(q) {
        Ok(q) => q,
        Err(f) => return f.into_response(),
    };
    on(&s, move |npm| {
        known_params(&q, &["path", "limit", "offset"])?;
        let (limit, offset) = paging(&q)?;
        let glob = q
            .iter()
            .rev()
            .find(|(k, _)| k == "path")
            .map(|(_, v)| v.clone());
        let (b, files) = npm.with(|c| {
            let b = find_backup(c, &server_id, &id)?;
            let files = c.files(b.id, glob.as_deref(), limit, offset).map_err(db)?;
            Ok((b, files))
        })?;
        let items: Vec<Value> = files.iter().map(file_record).collect();
        ok(json!({
            "backup_id": b.uuid,
            "server_id": b.server_id,
            "num_records": items.len(),
            "offset": offset,
            "items": items,
        }))
    })
    .await
}

/// `POST …/items/{id}/restore {"paths": [...], "destination": "/dir"}`: restores the backup
/// (all of it when paths is empty) into destination on its server, as a job: 202.
async fn restore_backup(
    State(s): State<Arc<RestState>>,
    Extension(who): Extension<RestUser>,
    Path((server_id, id)): Path<(String, String)>,
    b: axum::body::Bytes,
) -> Response {
    on(&s, move |npm| {
        let r = body::restore(&b)?;
        let backup = npm.with(|c| find_backup(c, &server_id, &id))?;
        if backup.status != Status::Completed {
            return Err(conflict(
                format!(
                    "backup {id} is {}: only a completed backup can be restored",
                    status_word(backup.status)
                ),
                "id",
            ));
        }
        let job = npm
            .scheduler()?
            .restore(&backup.uuid, r.paths.clone(), r.destination.clone())
            .map_err(|why| {
                RestError::new(400, why, CODE_INVALID_VALUE, Some("destination"))
            })?;
        tracing::info!(user = %who.0, backup = %id, destination = %r.destination, paths = r.paths.len(), job = %job, "restore started over REST");
        job_link(&job)
    })
    .await
}

// ---- device status

fn modules() -> Value {
    json!([
        {"short_name": "dump", "group": "filesystem", "group_type": "filesystem",
         "desc": "BSD dump format image of the server's path (NDMP butype dump, levels 0-9)",
         "supported_options": ["path", "level"]},
        {"short_name": "tar", "group": "filesystem", "group_type": "filesystem",
         "desc": "POSIX tar (ustar/pax) image of the server's path (NDMP butype tar)",
         "supported_options": ["path"]},
    ])
}

fn server_name(c: &Catalog, id: Option<i64>, fallback: &str) -> String {
    id.and_then(|id| c.server(id).ok().flatten())
        .map_or_else(|| fallback.to_string(), |s| s.name)
}

fn latest_backup(c: &Catalog) -> Result<Option<Value>, RestError> {
    let Some(b) = c.list().map_err(db)?.into_iter().next_back() else {
        return Ok(None);
    };
    Ok(Some(json!({
        "operation_type": "backup",
        "start_time": b.started,
        "status": status_word(b.status),
        "status_message": b.message.clone().unwrap_or_else(|| format!("{} of {}:{}", status_word(b.status), b.server, b.path)),
        "name": b.name,
        "server_name": server_name(c, b.server_id, &b.server),
        "backup_id": b.uuid,
        "sbu_id": b.schedule_id,
    })))
}

fn latest_restore(c: &Catalog) -> Result<Option<Value>, RestError> {
    let Some(r) = c.restores().map_err(db)?.into_iter().next_back() else {
        return Ok(None);
    };
    let backup = match r.backup_id {
        Some(id) => c.get(id).map_err(db)?,
        None => None,
    };
    let (uuid, server) = backup.map_or((String::new(), String::new()), |b| {
        (b.uuid.clone(), server_name(c, b.server_id, &b.server))
    });
    Ok(Some(json!({
        "operation_type": "restore",
        "start_time": r.started,
        "status": status_word(r.status),
        "status_message": r.message.clone().unwrap_or_else(|| format!("{} to {}", status_word(r.status), r.destination)),
        "server_name": server,
        "backup_id": uuid,
        "destination": r.destination,
    })))
}

/// What runs now, from the registry: the first running backup or restore job, with its
/// bytes as the progress steps.
fn current_operation(s: &RestState) -> Option<Value> {
    let j = s
        .registry
        .jobs()
        .into_iter()
        .find(|j| j.state == "running")?;
    let restore = j.description.to_ascii_lowercase().contains("restore")
        || j.description.to_ascii_lowercase().contains("recover");
    let total = j.estimate.unwrap_or(0).max(j.bytes);
    let info = json!({
        "operation_type": if restore { "restore" } else { "backup" },
        "start_time": j.start_time,
        "status": "started",
        "status_message": j.description,
        "job_uuid": j.uuid,
    });
    let progress = json!({
        "completed": j.bytes,
        "total": total,
        "status_message": format!("{} bytes of {}", j.bytes, if total > 0 { total.to_string() } else { "unknown".into() }),
    });
    Some(if restore {
        json!({"info": info, "progress": progress, "restore_details": {"size": total}})
    } else {
        json!({"info": info, "progress": progress, "backup_details": {
            "size_estimate": {"total_size": total, "data_size": []},
            "contents": {"config_only": false},
        }})
    })
}

async fn device_status(State(s): State<Arc<RestState>>) -> Response {
    let current = current_operation(&s);
    on(&s, move |npm| {
        let (lb, lr) = npm.with(|c| Ok((latest_backup(c)?, latest_restore(c)?)))?;
        let mut v = json!({
            "available_backup_modules": modules(),
            "available_restore_modules": modules(),
            "system_id": npm.system_id,
        });
        if let Some(c) = current {
            v["current_operation"] = c;
        }
        if let Some(b) = lb {
            v["latest_backup"] = b;
        }
        if let Some(r) = lr {
            v["latest_restore"] = r;
        }
        ok(v)
    })
    .await
}

// ---- file search

/// `GET …/files?name=SUBSTRING&limit=N` (ndmpd's): files of kept backups whose path holds
/// the substring, newest backups first as the catalog orders them.
async fn search_files(State(s): State<Arc<RestState>>, RawQuery(q): RawQuery) -> Response {
    let q = match pairs(q) {
        Ok(q) => q,
        Err(f) => return f.into_response(),
    };
    on(&s, move |npm| {
        known_params(&q, &["name", "limit"])?;
        let (limit, _) = paging(&q)?;
        let name = q
            .iter()
            .rev()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                RestError::invalid_value("name", "name (a part of a file name) is required")
            })?;
        let hits = npm.with(|c| c.search_files(&name, limit).map_err(db))?;
        // an expired backup can no longer be restored: its files are not offered
        let items: Vec<Value> = hits
            .iter()
            .filter(|(b, _)| !b.expired)
            .map(|(b, f)| {
                json!({
                    "backup_id": b.uuid,
                    "server_id": b.server_id,
                    "path": f.path,
                    "type": f.kind,
                    "size": f.size,
                    "mtime": f.mtime,
                    "created_on": b.started,
                })
            })
            .collect();
        ok(json!({"num_records": items.len(), "items": items}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_planners_or_the_rules_and_none_when_inactive() {
        let mut sc = Schedule {
            id: "s".into(),
            name: "s".into(),
            description: String::new(),
            active: true,
            server_id: 1,
            rrule: "FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0".into(),
            retention: 1,
            retry_attempts: 0,
            retry_delay_secs: 0,
            level: 0,
            last_backup: None,
            next_backup: None,
            source: "rest".into(),
        };
        // 2026-12-07 00:00 UTC; the rule's next time is 01:00 that day
        let now = 1_796_601_600;
        // not planned yet (just started, or just created over REST): the rule's next time
        assert_eq!(next_run(&sc, now), Some(now + 3600));
        // planned and ahead: the planner's
        sc.next_backup = Some(now + 7200);
        assert_eq!(next_run(&sc, now), Some(now + 7200));
        // passed (being launched): the rule's next time after now
        sc.next_backup = Some(now - 10);
        assert_eq!(next_run(&sc, now), Some(now + 3600));
        // inactive: the planner will not run it, whatever it stored
        sc.active = false;
        sc.next_backup = Some(now + 7200);
        assert_eq!(next_run(&sc, now), None);
    }

    #[test]
    fn rule_text_as_the_seed_object() {
        let o = rule_object("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR;BYHOUR=1,13;COUNT=5");
        assert_eq!(
            o,
            json!({"freq": "WEEKLY", "interval": 2, "byday": ["MO", "FR"], "byhour": [1, 13], "count": 5})
        );
        let o = rule_object("DTSTART:20261207T010000Z\nRRULE:FREQ=DAILY");
        assert_eq!(o, json!({"freq": "DAILY", "dtstart": 1_796_605_200u64}));
    }
}

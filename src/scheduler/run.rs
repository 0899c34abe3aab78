//! One scheduled run (cartridge choice, the recorded backup, retries, retention and
//! recycling) and one catalog restore, each a registry job that can be cancelled.

use super::handle::{lock, read_password, Operation, SchedulerHandle};
use crate::catalog::{Backup, Catalog, NewRestore, Status};
use crate::client::backup::BackupJob;
use crate::client::changer::{ElementKind, Robot};
use crate::client::recorded::{recorded_backup, Recording};
use crate::client::restore::{restore_report, RestoreJob};
use crate::client::{AuthMethod, Progress};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a backup needs from the cartridge chosen for it.
struct Cartridge {
    /// Write from file 0 (a recycled cartridge), keeping its label.
    overwrite: bool,
    /// The label the cartridge in the drive must have.
    label: Option<String>,
}

/// Registers the run as a job and spawns it; returns the job's UUID.
pub(super) fn start_backup(h: SchedulerHandle, schedule_id: String, name: String) -> String {
    let bytes = Arc::new(AtomicU64::new(0));
    let cancel = h.inner.shutdown.child_token();
    let uuid = h.inner.registry.job_start_cancellable(
        format!("scheduled backup {name}"),
        bytes.clone(),
        cancel.clone(),
    );
    let job = uuid.clone();
    tokio::spawn(async move {
        let guard = h.inner.drive.lock().await;
        *lock(&h.inner.current) = Some(Operation {
            kind: "backup",
            job: job.clone(),
            schedule_id: Some(schedule_id.clone()),
            backup_id: None,
            description: format!("scheduled backup {name}"),
            completed: 0,
            total: None,
            status: "running".into(),
            started: crate::catalog::now(),
        });
        let (code, message) = match backup_run(&h, &schedule_id, &job, &bytes, &cancel).await {
            Ok(m) => (0, m),
            Err((code, m)) => {
                tracing::warn!("schedule {name}: {m}");
                (code, m)
            }
        };
        h.inner.registry.job_end(&job, code, message);
        *lock(&h.inner.current) = None;
        drop(guard);
        lock(&h.inner.busy).remove(&schedule_id);
    });
    uuid
}

/// The login for a catalog server (its DATA server): its own user and password file, else the
/// scheduler's. The tape server is always logged in to with the scheduler's ([`tape_login`]).
fn login(
    h: &SchedulerHandle,
    user: &str,
    pw: Option<&std::path::Path>,
) -> Result<(String, Vec<u8>), String> {
    let s = &h.inner.settings;
    let user = if user.is_empty() {
        s.user.clone()
    } else {
        user.to_string()
    };
    let password = match pw {
        Some(p) => read_password(p)?,
        None => s.password.clone(),
    };
    Ok((user, password))
}

/// The scheduler's own login, for this server's tape side and changer.
fn tape_login(h: &SchedulerHandle) -> (String, Vec<u8>) {
    let s = &h.inner.settings;
    (s.user.clone(), s.password.clone())
}

/// The whole run: retries included; the message of its end, or (code, message).
async fn backup_run(
    h: &SchedulerHandle,
    schedule_id: &str,
    job_uuid: &str,
    bytes: &Arc<AtomicU64>,
    cancel: &CancellationToken,
) -> Result<String, (u32, String)> {
    let fail = |m: String| (1u32, m);
    let mut cat = h.catalog().map_err(fail)?;
    let s = cat
        .schedule(schedule_id)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail(format!("schedule {schedule_id} was deleted")))?;
    let server = cat
        .server(s.server_id)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail(format!("schedule {}: its server is gone", s.name)))?;
    let (user, password) = login(h, &server.user, server.password_file.as_deref()).map_err(fail)?;
    let set = &h.inner.settings;
    let mut last_error = String::new();
    for attempt in 0..=s.retry_attempts {
        if attempt > 0 {
            set_status(
                h,
                format!(
                    "retry {attempt} of {} in {} s",
                    s.retry_attempts, s.retry_delay_secs
                ),
            );
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(std::time::Duration::from_secs(s.retry_delay_secs)) => {}
            }
            set_status(h, "running".into());
        }
        if cancel.is_cancelled() {
            break;
        }
        let (tape_user, tape_password) = tape_login(h);
        let cart = match choose_cartridge(h, &mut cat, &tape_user, &tape_password).await {
            Ok(c) => c,
            Err(e) => {
                last_error = format!("choosing a cartridge: {e}");
                continue;
            }
        };
        let job = BackupJob {
            server: format!("{}:{}", server.host, server.port),
            tape_server: Some(set.tape_server.clone()),
            user: user.clone(),
            password: password.clone(),
            tape_login: Some((tape_user, tape_password)),
            auth: AuthMethod::Md5,
            version: 4,
            tape: set.drive.clone(),
            changer: set.changer.clone(),
            path: server.path.clone(),
            level: s.level,
            record_size: set.record_size,
            history: true,
            butype: server.butype.clone(),
            overwrite: cart.overwrite,
            label: cart.label,
            extra_env: Vec::new(),
        };
        let rec = Recording {
            schedule_id: Some(s.id.clone()),
            server_id: Some(server.id),
            name: format!(
                "{} {}",
                s.name,
                crate::timefmt::minutes(crate::catalog::now())
            ),
            description: s.description.clone(),
        };
        let reg = h.inner.registry.clone();
        let uuid = job_uuid.to_string();
        let counter = bytes.clone();
        let progress = move |p: Progress| {
            counter.store(p.bytes, Ordering::Relaxed);
            if let Some(left) = p.est_bytes_remain {
                reg.job_estimate(&uuid, p.bytes + left);
            }
        };
        let r = recorded_backup(&mut cat, &job, &rec, progress, cancel)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Some(op) = lock(&h.inner.current).as_mut() {
            op.backup_id = Some(r.id);
        }
        let now = crate::catalog::now();
        let _ = cat.set_schedule_times(&s.id, Some(now), s.next_backup);
        match (&r.result, r.status) {
            (Ok(rep), _) => {
                bytes.store(rep.bytes, Ordering::Relaxed);
                let expired = retention(&cat, &s.id, s.retention).map_err(fail)?;
                return Ok(format!(
                    "backup {} completed ({} bytes, {} files in its history){}",
                    r.id,
                    rep.bytes,
                    r.files,
                    if expired > 0 {
                        format!("; {expired} older expired")
                    } else {
                        String::new()
                    }
                ));
            }
            (Err(f), Status::Aborted) if cancel.is_cancelled() => {
                return Err((
                    crate::wire::types::DataHaltReason::ABORTED.0,
                    format!("Canceled: backup {} aborted ({f})", r.id),
                ));
            }
            (Err(f), _) => last_error = format!("backup {} {}: {f}", r.id, r.status.as_str()),
        }
    }
    if cancel.is_cancelled() {
        return Err((
            crate::wire::types::DataHaltReason::ABORTED.0,
            "Canceled".into(),
        ));
    }
    Err(fail(format!(
        "failed after {} attempt(s): {last_error}",
        s.retry_attempts + 1
    )))
}

fn set_status(h: &SchedulerHandle, status: String) {
    if let Some(op) = lock(&h.inner.current).as_mut() {
        op.status = status;
    }
}

/// Keeps the newest `keep` completed backups of the schedule; expires older completed ones
/// and the failed or aborted ones older than the oldest kept. Returns how many it expired.
pub(crate) fn retention(cat: &Catalog, schedule_id: &str, keep: u32) -> Result<usize, String> {
    let all: Vec<Backup> = cat
        .backups_of_schedule(schedule_id)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|b| !b.expired && b.status != Status::Running)
        .collect();
    let completed: Vec<&Backup> = all
        .iter()
        .filter(|b| b.status == Status::Completed)
        .collect();
    let keep = keep.max(1) as usize;
    if completed.len() < keep {
        return Ok(0);
    }
    let oldest_kept = completed[completed.len() - keep].id;
    let mut n = 0;
    for b in all.iter().filter(|b| b.id < oldest_kept) {
        cat.expire(b.id).map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// Puts a cartridge in the drive for the next image: a recycled one (every image on it
/// expired; overwritten from file 0, keeping its label) when there is one, else the drive's
/// own (appended to), else the first cartridge the catalog does not know (appended to).
async fn choose_cartridge(
    h: &SchedulerHandle,
    cat: &mut Catalog,
    user: &str,
    password: &[u8],
) -> Result<Cartridge, String> {
    let set = &h.inner.settings;
    let mut robot = Robot::open(
        &set.tape_server,
        user,
        password,
        AuthMethod::Md5,
        4,
        &set.changer,
    )
    .await
    .map_err(|e| format!("changer {} on {}: {e}", set.changer, set.tape_server))?;
    let r = async {
        // a unique borrow: a shared one would need the catalog to be Sync
        let cat: &mut Catalog = &mut *cat;
        let inv = robot.inventory().await.map_err(|e| e.to_string())?;
        let in_drive = inv
            .elements
            .iter()
            .find(|e| e.drive.as_deref() == Some(set.drive.as_str()))
            .ok_or_else(|| format!("changer {} serves no drive {}", set.changer, set.drive))?
            .clone();
        let recyclable = cat.recyclable().map_err(|e| e.to_string())?;
        let pick = |label: &Option<String>| label.as_ref().filter(|l| recyclable.contains(l)).cloned();
        let recycled = if in_drive.full {
            pick(&in_drive.label)
        } else {
            None
        }
        .or_else(|| {
            inv.elements
                .iter()
                .filter(|e| e.kind == ElementKind::Storage && e.full)
                .find_map(|e| pick(&e.label))
        });
        if let Some(label) = recycled {
            robot.mount(&label, &set.drive).await.map_err(|e| e.to_string())?;
            cat.recycle(&label).map_err(|e| e.to_string())?;
            tracing::info!("scheduler: cartridge {label} holds only expired images: recycled, overwritten from file 0");
            return Ok(Cartridge {
                overwrite: true,
                label: Some(label),
            });
        }
        if in_drive.full {
            return Ok(Cartridge {
                overwrite: false,
                label: None,
            });
        }
        for e in inv.elements.iter().filter(|e| e.kind == ElementKind::Storage && e.full) {
            let Some(label) = &e.label else { continue };
            if !cat.references(label).map_err(|e| e.to_string())? {
                robot.mount(label, &set.drive).await.map_err(|e| e.to_string())?;
                return Ok(Cartridge {
                    overwrite: false,
                    label: None,
                });
            }
        }
        Err(format!(
            "drive {} is empty and changer {} has no cartridge that is blank or recyclable",
            set.drive, set.changer
        ))
    }
    .await;
    robot.close().await;
    r
}

/// Registers a restore of catalog backup `b` as a job and spawns it; the job's UUID.
pub(super) fn start_restore(
    h: SchedulerHandle,
    b: Backup,
    paths: Vec<String>,
    dest: String,
) -> String {
    let bytes = Arc::new(AtomicU64::new(0));
    let cancel = h.inner.shutdown.child_token();
    let what = format!("restore of backup {} ({}) to {dest}", b.id, b.name);
    let uuid = h
        .inner
        .registry
        .job_start_cancellable(what.clone(), bytes.clone(), cancel.clone());
    let job = uuid.clone();
    tokio::spawn(async move {
        let guard = h.inner.drive.lock().await;
        *lock(&h.inner.current) = Some(Operation {
            kind: "restore",
            job: job.clone(),
            schedule_id: b.schedule_id.clone(),
            backup_id: Some(b.id),
            description: what,
            completed: 0,
            total: None,
            status: "running".into(),
            started: crate::catalog::now(),
        });
        let (code, message) = match restore_run(&h, &b, paths, dest, &bytes, &cancel).await {
            Ok(m) => (0, m),
            Err(m) => (1, m),
        };
        h.inner.registry.job_end(&job, code, message);
        *lock(&h.inner.current) = None;
        drop(guard);
    });
    uuid
}

async fn restore_run(
    h: &SchedulerHandle,
    b: &Backup,
    paths: Vec<String>,
    dest: String,
    bytes: &Arc<AtomicU64>,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let cat = h.catalog()?;
    let server = match b.server_id {
        Some(id) => cat.server(id).map_err(|e| e.to_string())?,
        None => None,
    };
    let (user, password) = match &server {
        Some(s) => login(h, &s.user, s.password_file.as_deref())?,
        None => login(h, "", None)?,
    };
    let id = cat
        .insert_restore(&NewRestore {
            backup_id: b.id,
            paths: paths.clone(),
            destination: dest.clone(),
        })
        .map_err(|e| e.to_string())?;
    let job = RestoreJob {
        server: b.server.clone(),
        tape_server: b.tape_server.clone(),
        user,
        password,
        tape_login: Some(tape_login(h)),
        auth: AuthMethod::Md5,
        version: 4,
        tape: b.drive.clone(),
        dest,
        paths,
        record_size: b.record_size,
        butype: b.butype.clone(),
        force: false,
        file: None,
        media: b.media.clone(),
        changer: h.inner.settings.changer.clone(),
    };
    let counter = bytes.clone();
    let run = restore_report(&job, move |p: Progress| {
        counter.store(p.bytes, Ordering::Relaxed)
    });
    let r = tokio::select! {
        r = run => Some(r),
        _ = cancel.cancelled() => None,
    };
    let (status, nbytes, files, message) = match &r {
        None => (
            Status::Aborted,
            bytes.load(Ordering::Relaxed),
            0,
            Some("Canceled".to_string()),
        ),
        Some(Err(e)) => (
            Status::Failed,
            bytes.load(Ordering::Relaxed),
            0,
            Some(e.to_string()),
        ),
        Some(Ok(rep)) => {
            let files = rep.counts.map_or(0, |c| c.files);
            match rep.problem() {
                None => (Status::Completed, rep.bytes, files, None),
                Some(p) => (Status::Failed, rep.bytes, files, Some(p.to_string())),
            }
        }
    };
    cat.finish_restore(id, status, nbytes, files, message.as_deref())
        .map_err(|e| e.to_string())?;
    match message {
        None => Ok(format!(
            "restore {id} completed ({nbytes} bytes, {files} files)"
        )),
        Some(m) => Err(format!("restore {id} {}: {m}", status.as_str())),
    }
}

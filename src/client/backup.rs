//! A full or incremental dump or tar backup driven by our own DMA (`ndmpd dma backup`),
//! two-way (DATA and tape on one server, LOCAL) or three-way (TCP), reporting progress.
//!
//! The image is appended after the last file of the cartridge (or starts a blank one, or
//! overwrites it when asked), and goes on on blank cartridges from the changer at the end of
//! the medium. Only blank cartridges are taken for a continuation: one holding anything (an
//! ndmjob label, another DMA's image) is put back, so spanning never destroys data.

use super::changer::{ChangerError, ElementKind, Robot};
use super::connection::ClientError;
use super::job::{position_for_append, read_label, rewind, space_to_end, tape_side, Agents};
use super::session::{AuthMethod, Progress};
use crate::catalog::MediaPart;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{Reply, Request};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What to back up, where to.
#[derive(Debug, Clone)]
pub struct BackupJob {
    /// The DATA server, as `host:port`.
    pub server: String,
    /// The server whose tape drive gets the image; the DATA server's own when `None`.
    pub tape_server: Option<String>,
    /// The user to log in as on the DATA server, and on the tape server without `tape_login`.
    pub user: String,
    /// The password that goes with `user`.
    pub password: Vec<u8>,
    /// The login (user, password) on the tape server when it is not `user`'s: a filer and a
    /// tape server seldom share an NDMP account.
    pub tape_login: Option<(String, Vec<u8>)>,
    /// How to authenticate, to both servers.
    pub auth: AuthMethod,
    /// The NDMP version asked for in CONNECT_OPEN (3 or 4), on both servers.
    pub version: u16,
    /// The tape drive to open on the tape server.
    pub tape: String,
    /// The media changer of the tape server (SCSI_OPEN name) that changes cartridges at the
    /// end of the medium; a server without it (or a drive outside it) gets none.
    pub changer: String,
    /// What to back up: a path the DATA server exports (env FILESYSTEM).
    pub path: String,
    /// Dump level (env LEVEL); 0 backs up everything.
    pub level: u32,
    /// Tape record size in bytes (MOVER_SET_RECORD_SIZE).
    pub record_size: u32,
    /// Ask for file history (env HIST).
    pub history: bool,
    /// "dump" or "tar".
    pub butype: String,
    /// Write at file 0, destroying what the cartridge holds; else append after its last file.
    pub overwrite: bool,
    /// The label (ndmjob label, else the changer's volume tag) the cartridge must have.
    pub label: Option<String>,
    /// More backup environment variables (EXCLUDE, UPDATE, SNAPSHOT, …), sent after the
    /// ones above; a name given here replaces the same name above.
    pub extra_env: Vec<(String, String)>,
}

/// How it went.
#[derive(Debug, Clone, Default)]
pub struct BackupReport {
    /// Bytes the DATA server processed, from its state after the halt.
    pub bytes: u64,
    /// Wall time from DATA_START_BACKUP to the DATA server's halt.
    pub seconds: f64,
    /// File history entries received (dirs, nodes and files).
    pub history_entries: u64,
    /// Text of each warning LOG_MESSAGE, in order.
    pub warnings: Vec<String>,
    /// The environment DATA_GET_ENV returned after the backup: what a restore, or the next
    /// incremental, needs to know.
    pub env: Vec<(String, String)>,
    /// Where the image went: cartridges and tape files, in stream order.
    pub media: Vec<MediaPart>,
}

/// Why a backup failed, and what of its image is on tape anyway.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BackupFailed {
    /// What went wrong.
    pub error: ClientError,
    /// The parts of the image written before it failed.
    pub media: Vec<MediaPart>,
    /// Image bytes on tape, as far as known.
    pub bytes: u64,
    /// The DATA server or the mover halted ABORTED.
    pub aborted: bool,
}

#[derive(Default)]
struct Written {
    media: Vec<MediaPart>,
    bytes: u64,
    aborted: bool,
}

/// Runs the backup to its end; `progress` is called about once a second.
pub async fn backup(
    job: &BackupJob,
    progress: impl FnMut(Progress),
) -> Result<BackupReport, BackupFailed> {
    backup_with(job, progress, |_| {}, &CancellationToken::new()).await
}

/// [`backup`], giving each file history post (FH_ADD_FILE, FH_ADD_DIR, FH_ADD_NODE) to
/// `history` as it arrives, and aborting the job (as `aborted`) once `cancel` is cancelled.
pub async fn backup_with(
    job: &BackupJob,
    progress: impl FnMut(Progress),
    history: impl FnMut(Request),
    cancel: &CancellationToken,
) -> Result<BackupReport, BackupFailed> {
    let mut w = Written::default();
    match run(job, &mut w, progress, history, cancel).await {
        Ok(mut r) => {
            r.media = w.media;
            Ok(r)
        }
        Err(error) => Err(BackupFailed {
            error,
            media: w.media,
            bytes: w.bytes,
            aborted: w.aborted,
        }),
    }
}

fn fail(text: String) -> ClientError {
    ClientError::Unexpected(text)
}

async fn open_robot(job: &BackupJob) -> Result<Robot, ChangerError> {
    let host = job.tape_server.as_deref().unwrap_or(&job.server);
    let (user, password) = tape_side(
        job.tape_server.as_deref(),
        job.tape_login.as_ref(),
        &job.user,
        &job.password,
    );
    Robot::open(host, user, password, job.auth, job.version, &job.changer).await
}

/// The volume tag of the cartridge in the drive, when a changer serves the drive; else why
/// there is none.
async fn volume_tag(job: &BackupJob) -> Result<Result<Option<String>, String>, ClientError> {
    let mut robot = match open_robot(job).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let d = robot.drive_status(&job.tape).await;
    robot.close().await;
    match d {
        Ok(e) if !e.full => Err(fail(format!(
            "drive {} is empty: load a cartridge first (ndmpd dma changer load SLOT --tape {})",
            job.tape, job.tape
        ))),
        Ok(e) => Ok(Ok(e.label)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

async fn run(
    job: &BackupJob,
    w: &mut Written,
    mut progress: impl FnMut(Progress),
    mut history: impl FnMut(Request),
    cancel: &CancellationToken,
) -> Result<BackupReport, ClientError> {
    // asked before the tape is open: the robot pairs drives by opening them
    let volume = volume_tag(job).await?;
    let tag = volume.as_ref().ok().cloned().flatten();
    let mut agents = Agents::login_version(
        &job.server,
        job.tape_server.as_deref(),
        (&job.user, &job.password),
        job.tape_login
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_slice())),
        job.auth,
        job.version,
    )
    .await?;
    agents
        .open_tape(&job.tape, TapeOpenMode::RDWR, job.record_size)
        .await?;
    if let Some(want) = &job.label {
        let on_tape = read_label(agents.tape()).await?;
        let (have, what) = match (on_tape, &tag) {
            (Some(l), _) => (l, "ndmjob label"),
            (None, Some(v)) => (v.clone(), "changer volume tag"),
            (None, None) => {
                return Err(fail(format!(
                    "cannot check --label {want}: the cartridge in {} has no ndmjob label and \
                     no changer volume tag; nothing written",
                    job.tape
                )))
            }
        };
        if &have != want {
            return Err(fail(format!(
                "the cartridge in {} has {what} {have}, not {want}: nothing written",
                job.tape
            )));
        }
    }
    let file = position_for_append(agents.tape(), job.overwrite).await?;
    agents.listen(MoverMode::READ).await?;
    let mut env = vec![
        Pval::new("FILESYSTEM", &job.path),
        Pval::new("LEVEL", &job.level.to_string()),
        Pval::new("HIST", if job.history { "y" } else { "n" }),
        Pval::new("TYPE", &job.butype),
    ];
    for (name, value) in &job.extra_env {
        env.retain(|p| !p.name.to_string().eq_ignore_ascii_case(name));
        env.push(Pval::new(name, value));
    }
    let started = Instant::now();
    agents
        .data
        .call_ok(Request::DataStartBackup(DataStartBackupRequest {
            butype_name: job.butype.as_str().into(),
            env,
        }))
        .await?;
    // from here on the image is written
    w.media.push(MediaPart {
        cartridge: tag,
        file,
        offset: 0,
    });
    let mut report = BackupReport::default();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut data_halted = None;
    let mut mover_halted = None;
    let failed = loop {
        if data_halted.is_some() && mover_halted.is_some() {
            break None;
        }
        if cancel.is_cancelled() {
            w.aborted = true;
            break Some(fail("cancelled: the backup was aborted".into()));
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            if data_halted.is_none() {
                if let Reply::DataGetState(s) =
                    agents.data.call_ok(Request::DataGetState(Void)).await?
                {
                    progress(Progress::from_state(&s, started.elapsed()));
                }
            } else if let Reply::MoverGetState(s) =
                agents.tape().call_ok(Request::MoverGetState(Void)).await?
            {
                // the halt may have been told before the DATA server's
                if s.state == MoverState::HALTED {
                    mover_halted = Some(s.halt_reason);
                }
            }
        }
        let post = match agents.next_post(Duration::from_millis(250)).await {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => break Some(e),
        };
        match post {
            Request::NotifyDataHalted(h) => {
                report.seconds = started.elapsed().as_secs_f64();
                if h.reason != DataHaltReason::SUCCESSFUL {
                    w.aborted = h.reason == DataHaltReason::ABORTED;
                    break Some(fail(format!(
                        "the DATA server halted with {:?}{}",
                        h.reason,
                        warnings(&report)
                    )));
                }
                if let Reply::DataGetState(s) =
                    agents.data.call_ok(Request::DataGetState(Void)).await?
                {
                    report.bytes = s.bytes_processed;
                }
                if let Reply::DataGetEnv(e) = agents.data.call_ok(Request::DataGetEnv(Void)).await?
                {
                    report.env = e
                        .env
                        .iter()
                        .map(|p| (p.name.to_string(), p.value.to_string()))
                        .collect();
                }
                agents.data.call_ok(Request::DataStop(Void)).await?;
                data_halted = Some(h.reason);
            }
            Request::NotifyMoverHalted(h) => {
                if h.reason != MoverHaltReason::CONNECT_CLOSED {
                    w.aborted = h.reason == MoverHaltReason::ABORTED;
                    break Some(fail(format!(
                        "the mover halted with {:?}{}",
                        h.reason,
                        warnings(&report)
                    )));
                }
                mover_halted = Some(h.reason);
            }
            Request::NotifyMoverPaused(p) if p.reason == MoverPauseReason::EOM => {
                w.bytes = p.seek_position;
                if let Err(e) = next_cartridge(job, &mut agents, w, p.seek_position, &volume).await
                {
                    break Some(e);
                }
            }
            Request::NotifyMoverPaused(p) => {
                break Some(fail(format!(
                    "the mover paused ({:?}) at byte {}, which a backup does not expect",
                    p.reason, p.seek_position
                )))
            }
            Request::FhAddDir(ref d) => {
                report.history_entries += d.dirs.len() as u64;
                history(post);
            }
            Request::FhAddNode(ref n) => {
                report.history_entries += n.nodes.len() as u64;
                history(post);
            }
            Request::FhAddFile(ref f) => {
                report.history_entries += f.files.len() as u64;
                history(post);
            }
            Request::LogMessage(l) if l.log_type != LogType::NORMAL => {
                report.warnings.push(l.entry.to_string())
            }
            _ => {}
        }
    };
    if let Some(e) = failed {
        agents.abort().await;
        return Err(e);
    }
    w.bytes = report.bytes;
    // stops the halted mover and closes the tape: its filemark ends the image
    agents.finish().await?;
    Ok(report)
}

fn warnings(r: &BackupReport) -> String {
    if r.warnings.is_empty() {
        String::new()
    } else {
        format!(": {}", r.warnings.join("; "))
    }
}

/// At the end of the medium: closes the full cartridge, unloads it through the changer,
/// loads the first blank one from a storage slot and goes on there. Without a changer the
/// error says what to load and how.
async fn next_cartridge(
    job: &BackupJob,
    agents: &mut Agents,
    w: &mut Written,
    seek: u64,
    volume: &Result<Option<String>, String>,
) -> Result<(), ClientError> {
    let last = w.media.last().cloned().unwrap_or(MediaPart {
        cartridge: None,
        file: 0,
        offset: 0,
    });
    let name = last.cartridge.as_deref().unwrap_or("(no volume tag)");
    let full = format!(
        "the cartridge {name} in {} is full after {seek} bytes of the image (tape file {})",
        job.tape, last.file
    );
    if let Err(why) = volume {
        return Err(fail(format!(
            "{full}, and no changer serves {} ({why}): the image is incomplete. Load a blank \
             cartridge into {} (by hand, or `ndmpd vtape load {} CARTRIDGE` on the tape \
             server) and run the backup again",
            job.tape, job.tape, job.tape
        )));
    }
    // its filemark ends this cartridge's part of the image
    agents.tape().call_ok(Request::TapeClose(Void)).await?;
    if last.offset == seek {
        // nothing of the image went onto it
        w.media.pop();
    }
    let mut robot = open_robot(job)
        .await
        .map_err(|e| fail(format!("{full}; changer {}: {e}", job.changer)))?;
    let r = load_blank(job, agents, &mut robot, w).await;
    robot.close().await;
    match r {
        Ok(Some(tag)) => {
            w.media.push(MediaPart {
                cartridge: Some(tag),
                file: 0,
                offset: seek,
            });
            agents.continue_at(seek).await
        }
        Ok(None) => Err(fail(format!(
            "{full}, and changer {} has no blank cartridge left in a storage slot: the image \
             is incomplete. Put a blank cartridge into a slot (`ndmpd vtape create` on the tape \
             server, or import one) and run the backup again",
            job.changer
        ))),
        Err(e) => Err(fail(format!("{full}; changer {}: {e}", job.changer))),
    }
}

/// Unloads the drive and loads storage slots' cartridges in turn until one is blank; it is
/// left open, rewound. `None` when no slot holds a blank one.
async fn load_blank(
    job: &BackupJob,
    agents: &mut Agents,
    robot: &mut Robot,
    w: &Written,
) -> Result<Option<String>, ChangerError> {
    robot.unload(&job.tape).await?;
    let inv = robot.inventory().await?;
    let drive = inv
        .elements
        .iter()
        .find(|e| e.drive.as_deref() == Some(job.tape.as_str()))
        .map(|e| e.address)
        .ok_or_else(|| ChangerError::Reply(format!("no drive element for {}", job.tape)))?;
    let used: Vec<&str> = w
        .media
        .iter()
        .filter_map(|m| m.cartridge.as_deref())
        .collect();
    for slot in inv.elements.iter().filter(|e| {
        e.kind == ElementKind::Storage
            && e.full
            && e.label.as_deref().is_some_and(|l| !used.contains(&l))
    }) {
        let label = slot.label.clone().unwrap_or_default();
        robot.move_medium(slot.address, drive).await?;
        let t = agents.tape();
        let opened = t
            .call_ok(Request::TapeOpen(TapeOpenRequest {
                device: job.tape.as_str().into(),
                mode: TapeOpenMode::RDWR,
            }))
            .await;
        if opened.is_ok() {
            if space_to_end(t).await?.blank() {
                rewind(t).await?;
                return Ok(Some(label));
            }
            t.call_ok(Request::TapeClose(Void)).await?;
        }
        // write-protected or holding data: back to its slot
        robot.move_medium(drive, slot.address).await?;
    }
    Ok(None)
}

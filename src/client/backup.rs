//! A full or incremental dump or tar backup driven by our own DMA (`ndmpd dma backup`),
//! two-way (DATA and tape on one server, LOCAL) or three-way (TCP), reporting progress.

use super::connection::ClientError;
use super::job::Agents;
use super::session::{AuthMethod, Progress};
use crate::wire::header::Body;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{Reply, Request};
use std::time::{Duration, Instant};

/// What to back up, where to.
#[derive(Debug, Clone)]
pub struct BackupJob {
    /// The DATA server, as `host:port`.
    pub server: String,
    /// The server whose tape drive gets the image; the DATA server's own when `None`.
    pub tape_server: Option<String>,
    /// The user to log in as, on both servers.
    pub user: String,
    /// The password, for both servers.
    pub password: Vec<u8>,
    /// How to authenticate, to both servers.
    pub auth: AuthMethod,
    /// The tape drive to open on the tape server.
    pub tape: String,
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
}

/// Runs the backup to its end; `progress` is called about once a second.
pub async fn backup(
    job: &BackupJob,
    mut progress: impl FnMut(Progress),
) -> Result<BackupReport, ClientError> {
    let mut agents = Agents::login(
        &job.server,
        job.tape_server.as_deref(),
        &job.user,
        &job.password,
        job.auth,
    )
    .await?;
    agents
        .connect(
            &job.tape,
            TapeOpenMode::RDWR,
            job.record_size,
            MoverMode::READ,
        )
        .await?;
    let data = &mut agents.data;
    let env = vec![
        Pval::new("FILESYSTEM", &job.path),
        Pval::new("LEVEL", &job.level.to_string()),
        Pval::new("HIST", if job.history { "y" } else { "n" }),
        Pval::new("TYPE", &job.butype),
    ];
    let started = Instant::now();
    data.call_ok(Request::DataStartBackup(DataStartBackupRequest {
        butype_name: job.butype.as_str().into(),
        env,
    }))
    .await?;
    let mut report = BackupReport::default();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let reason = loop {
        let m = data.recv(Duration::from_millis(250)).await;
        match m {
            Err(ClientError::Timeout(_)) => {}
            Err(e) => return Err(e),
            Ok(None) => return Err(ClientError::Closed),
            Ok(Some(m)) => match m.body {
                Body::Request(Request::NotifyDataHalted(h)) => break h.reason,
                Body::Request(Request::FhAddDir(d)) => {
                    report.history_entries += d.dirs.len() as u64
                }
                Body::Request(Request::FhAddNode(n)) => {
                    report.history_entries += n.nodes.len() as u64
                }
                Body::Request(Request::FhAddFile(f)) => {
                    report.history_entries += f.files.len() as u64
                }
                Body::Request(Request::LogMessage(l)) if l.log_type == LogType::WARNING => {
                    report.warnings.push(l.entry.to_string())
                }
                Body::Request(Request::NotifyMoverPaused(p)) => {
                    return Err(ClientError::Unexpected(format!(
                        "the mover paused ({:?}); this DMA does not change cartridges",
                        p.reason
                    )))
                }
                _ => {}
            },
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            if let Reply::DataGetState(s) = data.call_ok(Request::DataGetState(Void)).await? {
                progress(Progress::from_state(&s, started.elapsed()));
            }
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    if reason != DataHaltReason::SUCCESSFUL {
        return Err(ClientError::Unexpected(format!(
            "the DATA server halted with {reason:?}"
        )));
    }
    if let Reply::DataGetState(s) = data.call_ok(Request::DataGetState(Void)).await? {
        report.bytes = s.bytes_processed;
    }
    if let Reply::DataGetEnv(e) = data.call_ok(Request::DataGetEnv(Void)).await? {
        report.env = e
            .env
            .iter()
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect();
    }
    data.call_ok(Request::DataStop(Void)).await?;
    // the mover halts once it has written the end of the stream
    let halted = agents.finish().await?;
    if halted != MoverHaltReason::CONNECT_CLOSED {
        return Err(ClientError::Unexpected(format!(
            "the mover halted with {halted:?}"
        )));
    }
    Ok(report)
}

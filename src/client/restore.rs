//! `ndmpd dma restore`: a sequential recover of a dump image from tape into a directory on
//! the server, the whole image or named paths, two-way (LOCAL) or three-way (TCP).

use super::job::Agents;
use super::query::{human_bytes, AuthMethod};
use super::{Client, ClientError};
use crate::wire::header::Body;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{Reply, Request};
use std::time::{Duration, Instant};

/// What to restore, from where, to where.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    pub server: String,
    /// The server whose tape drive holds the image; the DATA server's own when `None`.
    pub tape_server: Option<String>,
    pub user: String,
    pub password: Vec<u8>,
    pub auth: AuthMethod,
    pub tape: String,
    /// Directory on the DATA server the image (or the paths) go under.
    pub dest: String,
    /// Paths inside the image ("/sub/file"); empty = everything.
    pub paths: Vec<String>,
    /// At least the record size the image was written with.
    pub record_size: u32,
}

/// How it went.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    pub bytes: u64,
    pub seconds: f64,
    /// (path, restored) for each named path, from LOG_FILE.
    pub files: Vec<(String, bool)>,
    pub warnings: Vec<String>,
}

/// The next post from either connection, waiting at most `wait`.
async fn next_post(agents: &mut Agents, wait: Duration) -> Result<Option<Request>, ClientError> {
    let mut clients: Vec<&mut Client> = vec![&mut agents.data];
    clients.extend(agents.tape.as_mut());
    let step = wait / clients.len() as u32;
    for c in clients {
        match c.recv(step).await {
            Ok(Some(m)) => {
                if let Body::Request(r) = m.body {
                    return Ok(Some(r));
                }
            }
            Ok(None) => return Err(ClientError::Closed),
            Err(ClientError::Timeout(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Runs the restore to its end.
pub async fn restore(job: &RestoreJob) -> Result<RestoreReport, ClientError> {
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
            TapeOpenMode::READ,
            job.record_size,
            MoverMode::WRITE,
        )
        .await?;
    let dest = job.dest.trim_end_matches('/');
    let nlist = job
        .paths
        .iter()
        .map(|p| Name {
            original_path: p.as_str().into(),
            destination_path: format!("{dest}/{}", p.trim_start_matches('/'))
                .as_str()
                .into(),
            name: "".into(),
            other_name: "".into(),
            node: u64::MAX,
            fh_info: u64::MAX,
        })
        .collect();
    let started = Instant::now();
    agents
        .data
        .call_ok(Request::DataStartRecover(DataStartRecoverRequest {
            env: vec![Pval::new("PREFIX", dest), Pval::new("TYPE", "dump")],
            nlist,
            butype_name: "dump".into(),
        }))
        .await?;
    let mut report = RestoreReport::default();
    let mut mover_closed = false;
    let reason = loop {
        let Some(post) = next_post(&mut agents, Duration::from_millis(200)).await? else {
            continue;
        };
        match post {
            Request::NotifyDataRead(r) => {
                agents
                    .tape()
                    .call_ok(Request::MoverRead(MoverRangeRequest {
                        offset: r.offset,
                        length: r.length,
                    }))
                    .await?;
            }
            // the end of the image on this (only) cartridge
            Request::NotifyMoverPaused(_) if !mover_closed => {
                mover_closed = true;
                agents.tape().call_ok(Request::MoverClose(Void)).await?;
            }
            Request::LogFile(f) => report.files.push((
                f.name.to_string(),
                f.recovery_status == RecoveryStatus::SUCCESSFUL,
            )),
            Request::LogMessage(l) if l.log_type != LogType::NORMAL => {
                report.warnings.push(l.entry.to_string())
            }
            Request::NotifyDataHalted(h) => break h.reason,
            _ => {}
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    if let Reply::DataGetState(s) = agents.data.call_ok(Request::DataGetState(Void)).await? {
        report.bytes = s.bytes_processed;
    }
    if reason != DataHaltReason::SUCCESSFUL {
        return Err(ClientError::Unexpected(format!(
            "the DATA server halted with {reason:?}: {}",
            report.warnings.join("; ")
        )));
    }
    agents.data.call_ok(Request::DataStop(Void)).await?;
    if !mover_closed {
        // DATA finished before the mover reached the filemark
        let _ = agents.tape().call(Request::MoverAbort(Void)).await?;
    }
    agents.finish().await?;
    Ok(report)
}

/// Runs `restore` and prints a summary; exit status 1 on failure or a path not restored.
pub async fn run_restore_cli(job: RestoreJob) -> std::process::ExitCode {
    match restore(&job).await {
        Ok(rep) => {
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            let failed: Vec<&str> = rep
                .files
                .iter()
                .filter(|f| !f.1)
                .map(|f| f.0.as_str())
                .collect();
            println!(
                "restore from {} into {}: {} read in {:.2} s, {} of {} named paths restored",
                job.tape,
                job.dest,
                human_bytes(rep.bytes),
                rep.seconds,
                rep.files.len() - failed.len(),
                job.paths.len()
            );
            if failed.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("not restored: {}", failed.join(", "));
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ndmpd dma restore: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

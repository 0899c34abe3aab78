//! `ndmpd dma restore` and `ndmpd dma list`: recover an image from tape into a directory on
//! the server (whole or named paths), or read its file history, two-way or three-way.

use super::changer::Robot;
use super::connection::ClientError;
use super::job::{last_file, seek_file, Agents};
use super::session::{AuthMethod, Progress};
use crate::catalog::MediaPart;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::{Reply, Request};
use std::time::{Duration, Instant};

/// What to restore, from where, to where.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    /// The DATA server, as `host:port`.
    pub server: String,
    /// The server whose tape drive holds the image; the DATA server's own when `None`.
    pub tape_server: Option<String>,
    /// The user to log in as, on both servers.
    pub user: String,
    /// The password, for both servers.
    pub password: Vec<u8>,
    /// How to authenticate, to both servers.
    pub auth: AuthMethod,
    /// The tape drive to open on the tape server.
    pub tape: String,
    /// Directory on the DATA server the image (or the paths) go under; unused by `list`.
    pub dest: String,
    /// Paths inside the image ("/sub/file"); empty = everything.
    pub paths: Vec<String>,
    /// At least the record size the image was written with.
    pub record_size: u32,
    /// "dump" or "tar", as the image was written.
    pub butype: String,
    /// Replace files that exist at the destination (env FORCE=Y); else they are kept.
    pub force: bool,
    /// The tape file the image starts in; `None`: the first part's in `media`, else the last
    /// file on the cartridge.
    pub file: Option<u32>,
    /// The image's cartridges and tape files in stream order, from the catalog; loaded into
    /// the drive through `changer` when they have volume tags. Empty: the cartridge in the
    /// drive.
    pub media: Vec<MediaPart>,
    /// The tape server's media changer (SCSI_OPEN name).
    pub changer: String,
}

/// How it went.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Bytes the DATA server processed, from its state after the halt.
    pub bytes: u64,
    /// Wall time from the start request to the DATA server's halt.
    pub seconds: f64,
    /// (path, restored) for each named path, from LOG_FILE.
    pub files: Vec<(String, bool)>,
    /// Text of each LOG_MESSAGE that is a warning or an error, in order.
    pub warnings: Vec<String>,
}

/// One object of an image's file history, as `list` rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// "/" for the image root, "/sub/file" below it.
    pub path: String,
    /// Its attributes, the first the history gave.
    pub stat: FileStat,
    /// The `fh_info` its history entry carried.
    pub fh_info: u64,
}

/// File history as it arrives: path history as it is, dir/node history joined by node.
#[derive(Default)]
struct Catalog {
    files: Vec<Listed>,
    /// node -> (parent node, name), from FH_ADD_DIR (not "." or "..").
    names: std::collections::HashMap<u64, (u64, String)>,
    root: Option<u64>,
    nodes: Vec<(u64, FileStat, u64)>,
}

impl Catalog {
    fn add(&mut self, r: &Request) {
        match r {
            Request::FhAddFile(f) => {
                for e in &f.files {
                    let path = e.name.iter().find_map(|n| match n {
                        FileName::Unix { unix_name } => Some(unix_name.to_string()),
                        _ => None,
                    });
                    if let (Some(path), Some(stat)) = (path, e.stat.first()) {
                        self.files.push(Listed {
                            path,
                            stat: stat.clone(),
                            fh_info: e.fh_info,
                        });
                    }
                }
            }
            Request::FhAddDir(d) => {
                for e in &d.dirs {
                    let name = e.name.iter().find_map(|n| match n {
                        FileName::Unix { unix_name } => Some(unix_name.to_string()),
                        _ => None,
                    });
                    match name.as_deref() {
                        // the first "." names the root (spec: the root is its own parent)
                        Some(".") => {
                            self.root.get_or_insert(e.node);
                        }
                        Some("..") | None => {}
                        Some(n) => {
                            self.names
                                .entry(e.node)
                                .or_insert((e.parent, n.to_string()));
                        }
                    }
                }
            }
            Request::FhAddNode(n) => {
                for e in &n.nodes {
                    if let Some(stat) = e.stats.first() {
                        self.nodes.push((e.node, stat.clone(), e.fh_info));
                    }
                }
            }
            _ => {}
        }
    }

    /// Everything, sorted by path.
    fn finish(mut self) -> Vec<Listed> {
        for (node, stat, fh_info) in std::mem::take(&mut self.nodes) {
            let mut parts = Vec::new();
            let mut at = node;
            while Some(at) != self.root && parts.len() < 4096 {
                match self.names.get(&at) {
                    Some((parent, name)) => {
                        parts.push(name.as_str());
                        at = *parent;
                    }
                    None => break,
                }
            }
            let path = if parts.is_empty() {
                "/".to_string()
            } else {
                parts.iter().rev().fold(String::new(), |p, n| p + "/" + n)
            };
            self.files.push(Listed {
                path,
                stat,
                fh_info,
            });
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.files
    }
}

/// Runs the restore to its end; `progress` hears the bytes read about once a second.
pub async fn restore(
    job: &RestoreJob,
    progress: impl FnMut(Progress),
) -> Result<RestoreReport, ClientError> {
    recover(job, false, progress).await.map(|(r, _)| r)
}

/// Reads the image's file history (DATA_START_RECOVER_FILEHIST); nothing is written.
pub async fn list(
    job: &RestoreJob,
    progress: impl FnMut(Progress),
) -> Result<(RestoreReport, Vec<Listed>), ClientError> {
    recover(job, true, progress).await
}

async fn recover(
    job: &RestoreJob,
    list: bool,
    mut progress: impl FnMut(Progress),
) -> Result<(RestoreReport, Vec<Listed>), ClientError> {
    let mut agents = Agents::login(
        &job.server,
        job.tape_server.as_deref(),
        &job.user,
        &job.password,
        job.auth,
    )
    .await?;
    if let Some(first) = job.media.first() {
        mount(job, first).await?;
    }
    agents
        .open_tape(&job.tape, TapeOpenMode::READ, job.record_size)
        .await?;
    let file = match job.file.or(job.media.first().map(|m| m.file)) {
        Some(n) => n,
        None => last_file(agents.tape()).await?,
    };
    seek_file(agents.tape(), file).await?;
    agents.listen(MoverMode::WRITE).await?;
    // the part of a spanned image being read
    let mut part = 0;
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
    let mut env = vec![Pval::new("TYPE", &job.butype), Pval::new("HIST", "y")];
    if !list {
        env.push(Pval::new("PREFIX", dest));
        env.push(Pval::new("FORCE", if job.force { "y" } else { "n" }));
    }
    let started = Instant::now();
    let request = DataStartRecoverRequest {
        env,
        nlist,
        butype_name: job.butype.as_str().into(),
    };
    agents
        .data
        .call_ok(if list {
            Request::DataStartRecoverFilehist(request)
        } else {
            Request::DataStartRecover(request)
        })
        .await?;
    let mut report = RestoreReport::default();
    let mut catalog = Catalog::default();
    let mut mover_closed = false;
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let reason = loop {
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            if let Reply::DataGetState(s) = agents.data.call_ok(Request::DataGetState(Void)).await?
            {
                progress(Progress {
                    bytes: s.bytes_processed,
                    elapsed: started.elapsed(),
                });
            }
        }
        let Some(post) = agents.next_post(Duration::from_millis(200)).await? else {
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
            // the end of this cartridge's part of a spanned image: the next cartridge
            Request::NotifyMoverPaused(p) if part + 1 < job.media.len() => {
                part += 1;
                let next = &job.media[part];
                let t = agents.tape();
                t.call_ok(Request::TapeClose(Void)).await?;
                mount(job, next).await?;
                t.call_ok(Request::TapeOpen(TapeOpenRequest {
                    device: job.tape.as_str().into(),
                    mode: TapeOpenMode::READ,
                }))
                .await?;
                seek_file(t, next.file).await?;
                agents.continue_at(p.seek_position).await?;
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
            r @ (Request::FhAddFile(_) | Request::FhAddDir(_) | Request::FhAddNode(_)) => {
                catalog.add(&r)
            }
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
    Ok((report, catalog.finish()))
}

/// Puts the cartridge of `part` into the job's drive through the changer (nothing moves when
/// it is there). A part without a volume tag (written outside a changer) is read from the
/// cartridge in the drive; without a changer the error says which cartridge to load where.
async fn mount(job: &RestoreJob, part: &MediaPart) -> Result<(), ClientError> {
    let Some(label) = &part.cartridge else {
        return Ok(());
    };
    let host = job.tape_server.as_deref().unwrap_or(&job.server);
    let load = |why: String| {
        ClientError::Unexpected(format!(
            "load cartridge {label} into {} (tape file {}): {why}",
            job.tape, part.file
        ))
    };
    let mut robot = Robot::open(host, &job.user, &job.password, job.auth, &job.changer)
        .await
        .map_err(|e| load(format!("no changer {} to do it ({e})", job.changer)))?;
    let r = robot.mount(label, &job.tape).await;
    robot.close().await;
    r.map_err(|e| load(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_joins_dir_and_node_history() {
        let stat = |ftype, size| FileStat {
            unsupported: 0,
            fs_type: FsType::UNIX,
            ftype,
            mtime: 0,
            atime: 0,
            ctime: 0,
            owner: 0,
            group: 0,
            fattr: 0o755,
            size,
            links: 1,
        };
        let dir = |parent, name: &str, node| Dir {
            name: vec![FileName::Unix {
                unix_name: name.into(),
            }],
            node,
            parent,
        };
        let mut c = Catalog::default();
        c.add(&Request::FhAddDir(FhAddDirPost {
            dirs: vec![
                dir(2, ".", 2),
                dir(2, "..", 2),
                dir(2, "sub", 7),
                dir(7, "f", 9),
            ],
        }));
        c.add(&Request::FhAddNode(FhAddNodePost {
            nodes: vec![
                Node {
                    stats: vec![stat(FileType::DIR, 0)],
                    node: 2,
                    fh_info: 1024,
                },
                Node {
                    stats: vec![stat(FileType::REG, 5)],
                    node: 9,
                    fh_info: 9216,
                },
            ],
        }));
        let got: Vec<(String, u64)> = c
            .finish()
            .into_iter()
            .map(|l| (l.path, l.fh_info))
            .collect();
        assert_eq!(got, [("/".to_string(), 1024), ("/sub/f".to_string(), 9216)]);
    }
}

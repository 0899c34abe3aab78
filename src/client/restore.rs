//! `ndmpd dma restore` and `ndmpd dma list`: recover an image from tape into a directory on
//! the server (whole or named paths), or read its file history, two-way or three-way.

use super::changer::Robot;
use super::connection::ClientError;
use super::detect;
use super::job::{last_file, seek_file, tape_side, Agents};
use super::session::{AuthMethod, Progress};
use crate::catalog::MediaPart;
use crate::wire::messages::*;
use crate::wire::types::*;
use crate::wire::xdr::NdmpString;
use crate::wire::{Reply, Request};
use std::time::{Duration, Instant};

/// What to restore, from where, to where.
#[derive(Debug, Clone)]
pub struct RestoreJob {
    /// The DATA server, as `host:port`.
    pub server: String,
    /// The server whose tape drive holds the image; the DATA server's own when `None`.
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
    /// Directory on the DATA server the image (or the paths) go under; unused by `list`.
    pub dest: String,
    /// Paths inside the image ("/sub/file") in the form `list` prints them (see
    /// [`parse_name`]); empty = everything.
    pub paths: Vec<String>,
    /// The record size the image was written with; 0 = the length of the tape's first
    /// record. Given, it must agree with that length.
    pub record_size: u32,
    /// "dump" or "tar"; "" = what the tape's first record is. Given, it must agree.
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

/// What became of one named path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Restored (LOG_FILE SUCCESSFUL).
    Restored,
    /// Something exists at its destination and was kept (no FORCE).
    Kept,
    /// The image does not hold it.
    NotInImage,
    /// Not restored; the server's reason.
    Failed(String),
    /// The server sent no LOG_FILE for it.
    Unreported,
}

/// One named path and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathOutcome {
    /// The path as the job named it.
    pub path: String,
    /// What became of it.
    pub outcome: Outcome,
}

/// The figures of the DATA server's closing message ("recover done: …").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Directories restored (or merged into).
    pub dirs: u64,
    /// Files (every non-directory) written.
    pub files: u64,
    /// Entries not restored: kept, refused, or failed.
    pub not_restored: u64,
}

/// How it went.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Image bytes the DATA server read, from its state after the halt.
    pub bytes: u64,
    /// Wall time from the start request to the DATA server's halt.
    pub seconds: f64,
    /// The record size used: detected, or given and confirmed.
    pub record_size: u32,
    /// The butype used: detected, or given and confirmed.
    pub butype: String,
    /// Each named path and what became of it, in the order named.
    pub paths: Vec<PathOutcome>,
    /// Entries the server kept because they exist (its names), in a whole-image restore.
    pub kept: Vec<String>,
    /// What the DATA server counted, when it said.
    pub counts: Option<Counts>,
    /// Why the DATA server halted.
    pub halt: DataHaltReason,
    /// Text of each LOG_MESSAGE that is a warning or an error, in order.
    pub warnings: Vec<String>,
}

impl RestoreReport {
    /// Why this restore is not a full success — a path not restored, files kept, nothing
    /// written, a halt other than SUCCESSFUL — or `None` when it is one.
    pub fn problem(&self) -> Option<String> {
        let missed = self
            .paths
            .iter()
            .filter(|p| p.outcome != Outcome::Restored)
            .count();
        if missed > 0 {
            return Some(format!(
                "{missed} of {} named paths were not restored",
                self.paths.len()
            ));
        }
        if let Some(c) = self.counts.filter(|c| c.not_restored > 0) {
            let kept = match self.kept.len() {
                0 => String::new(),
                k => format!(" ({k} kept because they exist; --force replaces them)"),
            };
            return Some(format!(
                "{} entries were not restored{kept}",
                c.not_restored
            ));
        }
        if self.counts.is_some_and(|c| c.files + c.dirs == 0) {
            return Some("nothing was written".into());
        }
        if self.halt != DataHaltReason::SUCCESSFUL {
            return Some(format!("the DATA server halted with {:?}", self.halt));
        }
        None
    }
}

/// One object of an image's file history, as `list` rebuilds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// "/" for the image root, "/sub/file" below it, in the escaped form of
    /// [`escape_name`]: what `restore` accepts back.
    pub path: String,
    /// The path's bytes as the image holds them.
    pub raw_path: Vec<u8>,
    /// Its attributes, the first the history gave.
    pub stat: FileStat,
    /// The `fh_info` its history entry carried.
    pub fh_info: u64,
}

/// A file name as text that [`parse_name`] turns back into the same bytes: UTF-8 as it is,
/// a backslash as `\\`, and every byte that is not UTF-8 or is a control character as `\xNN`.
pub fn escape_name(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_control() {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes of a name written as [`escape_name`] writes it; a backslash not followed by
/// `\` or `x` and two hex digits is an error in words.
pub fn parse_name(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let byte = b
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!(
                            "{text:?}: \\x must be followed by two hex digits (a byte such \
                             as \\xff)"
                        )
                    })?;
                out.push(byte);
                i += 4;
            }
            _ => {
                return Err(format!(
                    "{text:?}: a backslash is written \\\\, and a byte that is not UTF-8 \
                     \\xNN (as `dma list` prints them)"
                ))
            }
        }
    }
    Ok(out)
}

/// File history as it arrives: path history as it is, dir/node history joined by node.
#[derive(Default)]
struct Catalog {
    files: Vec<Listed>,
    dirs: DirNames,
    nodes: Vec<(u64, FileStat, u64)>,
}

/// The directory entries of dir/node history (FH_ADD_DIR): node -> every (parent node, name)
/// it has, not "." or ".." (a file with hard links has several), and the root; spells the paths
/// of a node, for listings (the catalog's history sink has a packed one of its own).
#[derive(Default)]
pub(crate) struct DirNames {
    names: std::collections::HashMap<u64, Vec<(u64, Vec<u8>)>>,
    root: Option<u64>,
}

impl DirNames {
    /// Takes the entries of one FH_ADD_DIR.
    pub(crate) fn add(&mut self, dirs: &[Dir]) {
        for e in dirs {
            match unix_name(&e.name) {
                // the first "." names the root (spec: the root is its own parent)
                Some(b".") => {
                    self.root.get_or_insert(e.node);
                }
                Some(b"..") | None => {}
                Some(n) => {
                    let names = self.names.entry(e.node).or_default();
                    let name = (e.parent, n.to_vec());
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
    }

    /// Every path of `node` ("/" for the root or a node no entry names).
    pub(crate) fn paths(&self, node: u64) -> Vec<Vec<u8>> {
        match self.names.get(&node) {
            Some(names) if Some(node) != self.root => names
                .iter()
                .map(|(parent, name)| {
                    let mut p = self.dir_path(*parent);
                    p.push(b'/');
                    p.extend_from_slice(name);
                    p
                })
                .collect(),
            _ => vec![b"/".to_vec()],
        }
    }

    /// The path of directory `node` (by its first name), "" for the root.
    fn dir_path(&self, node: u64) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut at = node;
        while Some(at) != self.root && parts.len() < 4096 {
            match self.names.get(&at).and_then(|n| n.first()) {
                Some((parent, name)) => {
                    parts.push(name);
                    at = *parent;
                }
                None => break,
            }
        }
        let mut path = Vec::new();
        for p in parts.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(p);
        }
        path
    }
}

/// The UNIX name of a file history entry.
pub(crate) fn unix_name(names: &[FileName]) -> Option<&[u8]> {
    names.iter().find_map(|n| match n {
        FileName::Unix { unix_name } => Some(unix_name.as_bytes()),
        _ => None,
    })
}

impl Catalog {
    fn add(&mut self, r: &Request) {
        match r {
            Request::FhAddFile(f) => {
                for e in &f.files {
                    if let (Some(path), Some(stat)) = (unix_name(&e.name), e.stat.first()) {
                        self.files.push(Listed {
                            path: escape_name(path),
                            raw_path: path.to_vec(),
                            stat: stat.clone(),
                            fh_info: e.fh_info,
                        });
                    }
                }
            }
            Request::FhAddDir(d) => self.dirs.add(&d.dirs),
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

    /// Everything, sorted by path; a node with several names once under each.
    fn finish(mut self) -> Vec<Listed> {
        for (node, stat, fh_info) in std::mem::take(&mut self.nodes) {
            let paths = self.dirs.paths(node);
            for raw_path in paths {
                self.files.push(Listed {
                    path: escape_name(&raw_path),
                    raw_path,
                    stat: stat.clone(),
                    fh_info,
                });
            }
        }
        self.files.sort_by(|a, b| a.raw_path.cmp(&b.raw_path));
        self.files
    }
}

/// Runs the restore to its end; `progress` hears the bytes read about once a second. A
/// restore that is not a full success (see [`RestoreReport::problem`]) is an error here;
/// [`restore_report`] returns its report instead.
pub async fn restore(
    job: &RestoreJob,
    progress: impl FnMut(Progress),
) -> Result<RestoreReport, ClientError> {
    let report = restore_report(job, progress).await?;
    match report.problem() {
        None => Ok(report),
        Some(p) => Err(ClientError::Unexpected(format!(
            "{p}: {}",
            report.warnings.join("; ")
        ))),
    }
}

/// Runs the restore to its end and reports what became of each named path (and of the
/// image), whether or not everything was restored; errors are those that stopped the job.
pub async fn restore_report(
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
    let (report, listed) = recover(job, true, progress).await?;
    if report.halt != DataHaltReason::SUCCESSFUL {
        return Err(ClientError::Unexpected(format!(
            "the DATA server halted with {:?}: {}",
            report.halt,
            report.warnings.join("; ")
        )));
    }
    Ok((report, listed))
}

/// `text` with its prefix `name` and ": " taken off, when it has them.
fn after_name<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?.strip_prefix(": ")
}

/// The outcome a failed LOG_FILE stands for, from the warning the server sent for the path
/// (it names the path without its leading '/', or as the DMA sent it).
fn failure(raw: &[u8], warnings: &[String]) -> Outcome {
    let sent = NdmpString::from(raw).to_string();
    let trimmed = String::from_utf8_lossy(raw.strip_prefix(b"/").unwrap_or(raw)).into_owned();
    let why = warnings.iter().find_map(|w| {
        after_name(w, &trimmed)
            .or_else(|| after_name(w, &sent))
            .or_else(|| after_name(w, &String::from_utf8_lossy(raw)))
    });
    match why {
        Some(w) if w.starts_with("exists; not replaced") => Outcome::Kept,
        Some(w) if w.contains("not in the image") => Outcome::NotInImage,
        Some(w) => Outcome::Failed(w.to_string()),
        None => Outcome::Failed("the server gave no reason".into()),
    }
}

/// The figures of "recover done: B image bytes read, D directories, F files, S not restored".
fn counts_of(text: &str) -> Option<Counts> {
    let rest = text.strip_prefix("recover done: ")?;
    let mut n = rest
        .split(", ")
        .map(|part| part.split(' ').next().and_then(|v| v.parse::<u64>().ok()));
    let _bytes = n.next()??;
    Some(Counts {
        dirs: n.next()??,
        files: n.next()??,
        not_restored: n.next()??,
    })
}

async fn recover(
    job: &RestoreJob,
    list: bool,
    mut progress: impl FnMut(Progress),
) -> Result<(RestoreReport, Vec<Listed>), ClientError> {
    let named: Vec<Vec<u8>> = job
        .paths
        .iter()
        .map(|p| parse_name(p))
        .collect::<Result<_, _>>()
        .map_err(ClientError::Unexpected)?;
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
    if let Some(first) = job.media.first() {
        mount(job, first).await?;
    }
    let t = agents.tape();
    t.call_ok(Request::TapeOpen(TapeOpenRequest {
        device: job.tape.as_str().into(),
        mode: TapeOpenMode::READ,
    }))
    .await?;
    let file = match job.file.or(job.media.first().map(|m| m.file)) {
        Some(n) => n,
        None => last_file(t).await?,
    };
    seek_file(t, file).await?;
    // the record size and butype are read off the image's first record, then the head goes
    // back to the start of its file
    let found = detect::probe(t, &job.tape, job.record_size).await?;
    let (record_size, butype) =
        detect::settle(&found, job.record_size, &job.butype).map_err(ClientError::Unexpected)?;
    seek_file(t, file).await?;
    t.call_ok(Request::MoverSetRecordSize(MoverSetRecordSizeRequest {
        len: record_size,
    }))
    .await?;
    agents.listen(MoverMode::WRITE).await?;
    // the part of a spanned image being read
    let mut part = 0;
    let dest = job.dest.trim_end_matches('/');
    let nlist = named
        .iter()
        .map(|p| {
            let mut to = dest.as_bytes().to_vec();
            to.push(b'/');
            to.extend_from_slice(p.strip_prefix(b"/").unwrap_or(p));
            Name {
                original_path: p.as_slice().into(),
                destination_path: to.as_slice().into(),
                name: "".into(),
                other_name: "".into(),
                node: u64::MAX,
                fh_info: u64::MAX,
            }
        })
        .collect();
    let mut env = vec![Pval::new("TYPE", &butype), Pval::new("HIST", "y")];
    if !list {
        env.push(Pval::new("PREFIX", dest));
        env.push(Pval::new("FORCE", if job.force { "y" } else { "n" }));
    }
    let started = Instant::now();
    let request = DataStartRecoverRequest {
        env,
        nlist,
        butype_name: butype.as_str().into(),
    };
    agents
        .data
        .call_ok(if list {
            Request::DataStartRecoverFilehist(request)
        } else {
            Request::DataStartRecover(request)
        })
        .await?;
    let mut report = RestoreReport {
        record_size,
        butype,
        ..RestoreReport::default()
    };
    let mut logged: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut catalog = Catalog::default();
    let mut mover_closed = false;
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let reason = loop {
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            if let Reply::DataGetState(s) = agents.data.call_ok(Request::DataGetState(Void)).await?
            {
                progress(Progress::from_state(&s, started.elapsed()));
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
            Request::LogFile(f) => logged.push((
                f.name.as_bytes().to_vec(),
                f.recovery_status == RecoveryStatus::SUCCESSFUL,
            )),
            Request::LogMessage(l) => {
                let text = l.entry.to_string();
                if let Some(c) = counts_of(&text) {
                    report.counts = Some(c);
                } else if l.log_type != LogType::NORMAL {
                    if text.ends_with(": exists; not replaced (FORCE=Y replaces)") {
                        report.kept.push(text.clone());
                    }
                    report.warnings.push(text);
                }
            }
            Request::NotifyDataHalted(h) => break h.reason,
            r @ (Request::FhAddFile(_) | Request::FhAddDir(_) | Request::FhAddNode(_)) => {
                catalog.add(&r)
            }
            _ => {}
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    report.halt = reason;
    if let Reply::DataGetState(s) = agents.data.call_ok(Request::DataGetState(Void)).await? {
        report.bytes = s.bytes_processed;
    }
    report.paths = job
        .paths
        .iter()
        .zip(&named)
        .map(|(path, raw)| PathOutcome {
            path: path.clone(),
            outcome: match logged.iter().find(|(n, _)| n == raw) {
                Some((_, true)) => Outcome::Restored,
                Some((_, false)) => failure(raw, &report.warnings),
                None => Outcome::Unreported,
            },
        })
        .collect();
    // the kept entries are named by `kept`: the server's warning says no more
    for k in report.kept.iter_mut() {
        k.truncate(k.len() - ": exists; not replaced (FORCE=Y replaces)".len());
    }
    agents.data.call_ok(Request::DataStop(Void)).await?;
    if !mover_closed {
        // DATA finished before the mover reached the filemark, or failed
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
    let (user, password) = tape_side(
        job.tape_server.as_deref(),
        job.tape_login.as_ref(),
        &job.user,
        &job.password,
    );
    let load = |why: String| {
        ClientError::Unexpected(format!(
            "load cartridge {label} into {} (tape file {}): {why}",
            job.tape, part.file
        ))
    };
    let mut robot = Robot::open(host, user, password, job.auth, job.version, &job.changer)
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

    #[test]
    fn a_node_with_two_names_is_listed_under_both() {
        let stat = FileStat {
            unsupported: 0,
            fs_type: FsType::UNIX,
            ftype: FileType::REG,
            mtime: 0,
            atime: 0,
            ctime: 0,
            owner: 0,
            group: 0,
            fattr: 0o644,
            size: 3,
            links: 2,
        };
        let dir = |parent, name: &[u8], node| Dir {
            name: vec![FileName::Unix {
                unix_name: name.into(),
            }],
            node,
            parent,
        };
        let mut c = Catalog::default();
        c.add(&Request::FhAddDir(FhAddDirPost {
            dirs: vec![
                dir(2, b".", 2),
                dir(2, b"sub", 7),
                dir(2, b"a", 9),
                dir(7, b"b\xff", 9),
                // the same entry twice is one name
                dir(2, b"a", 9),
            ],
        }));
        c.add(&Request::FhAddNode(FhAddNodePost {
            nodes: vec![Node {
                stats: vec![stat],
                node: 9,
                fh_info: 4096,
            }],
        }));
        let got: Vec<(String, Vec<u8>, u64)> = c
            .finish()
            .into_iter()
            .map(|l| (l.path, l.raw_path, l.fh_info))
            .collect();
        assert_eq!(
            got,
            [
                ("/a".to_string(), b"/a".to_vec(), 4096),
                ("/sub/b\\xff".to_string(), b"/sub/b\xff".to_vec(), 4096)
            ]
        );
    }

    #[test]
    fn names_escape_and_parse_back_to_the_same_bytes() {
        let cases: [(&[u8], &str); 6] = [
            (b"/sub/file", "/sub/file"),
            (b"/n\xff\xfe", "/n\\xff\\xfe"),
            (b"/back\\slash", "/back\\\\slash"),
            (b"/new\nline\x7f", "/new\\x0aline\\x7f"),
            ("/caf\u{e9}".as_bytes(), "/caf\u{e9}"),
            // a literal "\xff" in a name is not the byte 0xff
            (b"/\\xff", "/\\\\xff"),
        ];
        for (bytes, text) in cases {
            assert_eq!(escape_name(bytes), text);
            assert_eq!(parse_name(text).unwrap(), bytes, "{text}");
        }
        for bad in ["/a\\q", "/a\\", "/a\\x4", "/a\\xg0"] {
            let e = parse_name(bad).unwrap_err();
            assert!(
                e.contains("backslash") || e.contains("two hex digits"),
                "{e}"
            );
        }
    }

    #[test]
    fn outcomes_from_the_servers_words() {
        let warnings = vec![
            "a: exists; not replaced (FORCE=Y replaces)".to_string(),
            "zz: not in the image".to_string(),
            "n\u{fffd}: cannot create: Permission denied".to_string(),
        ];
        assert_eq!(failure(b"/a", &warnings), Outcome::Kept);
        assert_eq!(failure(b"/zz", &warnings), Outcome::NotInImage);
        assert_eq!(
            failure(b"/n\xff", &warnings),
            Outcome::Failed("cannot create: Permission denied".into())
        );
        assert_eq!(
            failure(b"/other", &warnings),
            Outcome::Failed("the server gave no reason".into())
        );
        let done = "recover done: 2529280 image bytes read, 2 directories, 0 files, 4 not restored";
        assert_eq!(
            counts_of(done),
            Some(Counts {
                dirs: 2,
                files: 0,
                not_restored: 4
            })
        );
        assert_eq!(counts_of("backup done: 1 bytes"), None);
    }

    #[test]
    fn a_restore_that_wrote_nothing_or_kept_files_is_a_problem() {
        let mut r = RestoreReport {
            halt: DataHaltReason::SUCCESSFUL,
            counts: Some(Counts {
                dirs: 1,
                files: 3,
                not_restored: 0,
            }),
            ..RestoreReport::default()
        };
        assert_eq!(r.problem(), None);
        r.counts = Some(Counts::default());
        assert_eq!(r.problem().as_deref(), Some("nothing was written"));
        r.counts = Some(Counts {
            dirs: 2,
            files: 0,
            not_restored: 4,
        });
        r.kept = vec!["a".into(); 4];
        let p = r.problem().unwrap();
        assert!(
            p.contains("4 entries were not restored") && p.contains("--force"),
            "{p}"
        );
        r.paths = vec![PathOutcome {
            path: "/a".into(),
            outcome: Outcome::Kept,
        }];
        assert_eq!(
            r.problem().as_deref(),
            Some("1 of 1 named paths were not restored")
        );
    }
}

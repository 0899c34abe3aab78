//! `ndmpd dma`: the bundled DMA's subcommands (query, backup, restore, list, changer) run
//! with the client library and printed for an operator: summaries, progress, tables.

use super::args::{ChangerAction, DmaCommand, ImageArgs, JobArgs, PasswordArgs};
use super::output::{out, outln, print_json};
use super::runtime;
use ndmpd::catalog::{self, Catalog, MediaPart, NewBackup, Outcome, Status};
use ndmpd::client::backup::{backup, BackupJob};
use ndmpd::client::changer::{ChangerError, Robot};
use ndmpd::client::query::human_bytes;
use ndmpd::client::restore::{list, restore, RestoreJob};
use ndmpd::client::{query, AuthMethod, Progress};
use ndmpd::wire::types::{FileStat, FileType};
use std::process::ExitCode;

/// Runs one `ndmpd dma` subcommand. Exit status 2 when no password was given, 1 when the
/// job fails.
pub fn run(cmd: DmaCommand) -> ExitCode {
    match cmd {
        DmaCommand::Query {
            server,
            user,
            auth,
            json,
            password,
        } => {
            let Some(password) = dma_password("query", &password, auth) else {
                return ExitCode::from(2);
            };
            runtime().block_on(query_cli(&server, &user, &password, auth, json))
        }
        DmaCommand::Backup {
            job,
            level,
            no_history,
            overwrite,
            label,
            path,
        } => {
            let Some(password) = dma_password("backup", &job.password, job.auth) else {
                return ExitCode::from(2);
            };
            let catalog = job.catalog.clone();
            let job = BackupJob {
                server: job.server,
                tape_server: job.tape_server,
                user: job.user,
                password,
                auth: job.auth,
                tape: job.tape.unwrap_or_else(|| DEFAULT_TAPE.into()),
                changer: job.changer,
                path,
                level,
                record_size: job.record_size.unwrap_or(DEFAULT_RECORD_SIZE),
                history: !no_history,
                butype: job.butype.unwrap_or_else(|| DEFAULT_BUTYPE.into()),
                overwrite,
                label,
            };
            runtime().block_on(backup_cli(job, catalog))
        }
        DmaCommand::Restore {
            job,
            force,
            from,
            dest,
            paths,
        } => {
            let job = match recover_job("restore", job, from, dest, paths, force) {
                Ok(j) => j,
                Err(code) => return code,
            };
            runtime().block_on(restore_cli(job))
        }
        DmaCommand::List { job, from } => {
            let job = match recover_job("list", job, from, String::new(), Vec::new(), false) {
                Ok(j) => j,
                Err(code) => return code,
            };
            runtime().block_on(list_cli(job))
        }
        DmaCommand::Backups { catalog, json } => backups_cli(catalog, json),
        DmaCommand::Changer {
            server,
            changer,
            user,
            auth,
            password,
            action,
        } => {
            let Some(password) = dma_password("changer", &password, auth) else {
                return ExitCode::from(2);
            };
            let action = action.unwrap_or(ChangerAction::Status { json: false });
            match runtime().block_on(changer_cli(
                &server, &changer, &user, &password, auth, action,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ndmpd dma changer: {server} {changer}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The DMA password from --password-file or NDMPD_PASSWORD (none needed for auth none);
/// `None` after saying what is wrong.
fn dma_password(cmd: &str, password: &PasswordArgs, auth: AuthMethod) -> Option<Vec<u8>> {
    match password.read() {
        Ok(Some(p)) => Some(p),
        Ok(None) if auth == AuthMethod::None => Some(Vec::new()),
        Ok(None) => {
            eprintln!("ndmpd dma {cmd}: give the password with --password-file or NDMPD_PASSWORD");
            None
        }
        Err(e) => {
            eprintln!("ndmpd dma {cmd}: {e}");
            None
        }
    }
}

/// Runs `query` and prints the report (text or JSON) on stdout, or the error on stderr.
/// Exit status 0 on success, 1 on any failure.
async fn query_cli(
    server: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
    json: bool,
) -> ExitCode {
    let report = match query(server, user, password, auth).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ndmpd dma query: {server}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        if let Err(e) = print_json(&report) {
            eprintln!("ndmpd dma query: {server}: {e}");
            return ExitCode::FAILURE;
        }
    } else {
        out!("{report}");
    }
    ExitCode::SUCCESS
}

/// Record size of `dma backup` when none is given.
const DEFAULT_RECORD_SIZE: u32 = 256 << 10;
/// Tape drive when none is given.
const DEFAULT_TAPE: &str = "vtape0";
/// Backup type when none is given.
const DEFAULT_BUTYPE: &str = "dump";

/// The catalog at `path`, else at its default place; `None` after saying why not.
fn open_catalog(cmd: &str, path: Option<std::path::PathBuf>) -> Option<Catalog> {
    let opened = match path {
        Some(p) => Catalog::open(&p),
        None => catalog::default_path().and_then(|p| Catalog::open(&p)),
    };
    opened.map_err(|e| eprintln!("ndmpd dma {cmd}: {e}")).ok()
}

/// "cartridge VT0001 tape file 2", or the list of a spanned image.
fn placement(media: &[MediaPart], drive: &str) -> String {
    let one = |m: &MediaPart| match &m.cartridge {
        Some(c) => format!("{c} tape file {}", m.file),
        None => format!("(the cartridge in {drive}) tape file {}", m.file),
    };
    match media {
        [] => "no cartridge".into(),
        [m] => format!("cartridge {}", one(m)),
        _ => format!(
            "cartridges {}",
            media.iter().map(one).collect::<Vec<_>>().join(", then ")
        ),
    }
}

/// Runs `backup` recorded in the catalog, drawing progress on stderr when it is a terminal,
/// and prints a summary: where the image went and its backup id.
async fn backup_cli(job: BackupJob, catalog: Option<std::path::PathBuf>) -> ExitCode {
    let Some(mut cat) = open_catalog("backup", catalog) else {
        return ExitCode::FAILURE;
    };
    let id = match cat.insert(&NewBackup {
        server: job.server.clone(),
        tape_server: job.tape_server.clone(),
        path: job.path.clone(),
        drive: job.tape.clone(),
        level: job.level,
        butype: job.butype.clone(),
        record_size: job.record_size,
        started: catalog::now(),
    }) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("ndmpd dma backup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tty, bar) = progress_line("written");
    let r = backup(&job, bar).await;
    if tty {
        eprintln!();
    }
    let (outcome, code) = match r {
        Ok(rep) => {
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            outln!(
                "backup of {} (level {}) onto {}: {} in {:.2} s ({:.0} MB/s), {} history entries",
                job.path,
                job.level,
                job.tape,
                human_bytes(rep.bytes),
                rep.seconds,
                rep.bytes as f64 / rep.seconds.max(0.001) / 1e6,
                rep.history_entries
            );
            outln!(
                "backup id {id}: {}, record size {} bytes",
                placement(&rep.media, &job.tape),
                job.record_size
            );
            let dump_date = rep
                .env
                .iter()
                .find(|(k, _)| k == "DUMP_DATE")
                .map(|(_, v)| v.clone());
            if let Some(v) = &dump_date {
                outln!("DUMP_DATE={v} (give it as BASE_DATE to a later incremental)");
            }
            let o = Outcome {
                status: Status::Completed,
                complete: true,
                bytes: rep.bytes,
                dump_date,
                message: None,
                ended: catalog::now(),
                media: rep.media,
            };
            (o, ExitCode::SUCCESS)
        }
        Err(f) => {
            eprintln!("ndmpd dma backup: {f}");
            let status = if f.aborted {
                Status::Aborted
            } else {
                Status::Failed
            };
            eprintln!(
                "backup id {id} recorded as {}, image incomplete ({} on {})",
                status.as_str(),
                human_bytes(f.bytes),
                placement(&f.media, &job.tape)
            );
            let o = Outcome {
                status,
                complete: false,
                bytes: f.bytes,
                dump_date: None,
                message: Some(f.error.to_string()),
                ended: catalog::now(),
                media: f.media,
            };
            (o, ExitCode::FAILURE)
        }
    };
    if let Err(e) = cat.finish(id, &outcome) {
        eprintln!("ndmpd dma backup: {e}");
        return ExitCode::FAILURE;
    }
    code
}

/// `ndmpd dma backups`: the catalog as a table, or JSON.
fn backups_cli(catalog: Option<std::path::PathBuf>, json: bool) -> ExitCode {
    let Some(cat) = open_catalog("backups", catalog) else {
        return ExitCode::FAILURE;
    };
    let all = match cat.list() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ndmpd dma backups: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        if let Err(e) = print_json(&all) {
            eprintln!("ndmpd dma backups: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    outln!(
        "{:>5}  {:<16}  {:<40} {:>5} {:<6} {:<28} {:>10}  status",
        "id",
        "started (UTC)",
        "server:path",
        "level",
        "butype",
        "cartridge:file",
        "size"
    );
    for b in &all {
        let media: Vec<String> = b
            .media
            .iter()
            .map(|m| format!("{}:{}", m.cartridge.as_deref().unwrap_or("?"), m.file))
            .collect();
        let status = if b.complete || b.status == Status::Running {
            b.status.as_str().to_string()
        } else {
            format!("{} (incomplete)", b.status.as_str())
        };
        outln!(
            "{:>5}  {:<16}  {:<40} {:>5} {:<6} {:<28} {:>10}  {}",
            b.id,
            ndmpd::timefmt::minutes(b.started),
            format!("{}:{}", b.server, b.path),
            b.level,
            b.butype,
            if media.is_empty() {
                "-".to_string()
            } else {
                media.join(",")
            },
            human_bytes(b.bytes),
            status
        );
    }
    ExitCode::SUCCESS
}

/// The job of `dma restore` and `dma list`, with what `--backup` takes from the catalog;
/// the exit status after a message (2: no password; 1: no such backup).
fn recover_job(
    what: &str,
    job: JobArgs,
    from: ImageArgs,
    dest: String,
    paths: Vec<String>,
    force: bool,
) -> Result<RestoreJob, ExitCode> {
    let password = dma_password(what, &job.password, job.auth).ok_or(ExitCode::from(2))?;
    let (mut record_size, mut butype, mut media) = (job.record_size, job.butype, Vec::new());
    let mut tape = job.tape;
    if let Some(id) = from.backup {
        let cat = open_catalog(what, job.catalog).ok_or(ExitCode::FAILURE)?;
        let b = match cat.get(id) {
            Ok(Some(b)) => b,
            Ok(None) => {
                eprintln!("ndmpd dma {what}: no backup {id} in catalog {}", cat.path());
                return Err(ExitCode::FAILURE);
            }
            Err(e) => {
                eprintln!("ndmpd dma {what}: {e}");
                return Err(ExitCode::FAILURE);
            }
        };
        if b.media.is_empty() {
            eprintln!(
                "ndmpd dma {what}: backup {id} ({}) wrote nothing to tape",
                b.status.as_str()
            );
            return Err(ExitCode::FAILURE);
        }
        if !b.complete {
            eprintln!(
                "warning: backup {id} is {} and its image incomplete: what is on tape is read",
                b.status.as_str()
            );
        }
        record_size = record_size.or(Some(b.record_size));
        butype = butype.or(Some(b.butype));
        tape = tape.or(Some(b.drive));
        media = b.media;
    }
    Ok(RestoreJob {
        server: job.server,
        tape_server: job.tape_server,
        user: job.user,
        password,
        auth: job.auth,
        tape: tape.unwrap_or_else(|| DEFAULT_TAPE.into()),
        dest,
        paths,
        record_size: record_size.unwrap_or(DEFAULT_RECORD_SIZE),
        butype: butype.unwrap_or_else(|| DEFAULT_BUTYPE.into()),
        force,
        file: from.file,
        media,
        changer: job.changer,
    })
}

/// Runs `restore` and prints a summary; exit status 1 on failure or a path not restored.
async fn restore_cli(job: RestoreJob) -> ExitCode {
    let (tty, bar) = progress_line("read");
    let r = restore(&job, bar).await;
    if tty {
        eprintln!();
    }
    match r {
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
            outln!(
                "restore from {} into {}: {} read in {:.2} s, {} of {} named paths restored",
                job.tape,
                job.dest,
                human_bytes(rep.bytes),
                rep.seconds,
                rep.files.len() - failed.len(),
                job.paths.len()
            );
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("not restored: {}", failed.join(", "));
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ndmpd dma restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `list` and prints one line per object: type and mode, owner, size, mtime (UTC),
/// path and fh_info (what a later restore of that path can seek to).
async fn list_cli(job: RestoreJob) -> ExitCode {
    let (tty, bar) = progress_line("read");
    let r = list(&job, bar).await;
    if tty {
        eprintln!();
    }
    match r {
        Ok((rep, items)) => {
            for w in &rep.warnings {
                eprintln!("warning: {w}");
            }
            for l in &items {
                outln!(
                    "{} {:>5}/{:<5} {:>12} {} {} @{}",
                    mode_string(&l.stat),
                    l.stat.owner,
                    l.stat.group,
                    l.stat.size,
                    ndmpd::timefmt::minutes(u64::from(l.stat.mtime)),
                    l.path,
                    l.fh_info
                );
            }
            eprintln!(
                "{} objects in a {} image on {}",
                items.len(),
                human_bytes(rep.bytes),
                job.tape
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ndmpd dma list: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ls -l`-like type and permission letters.
fn mode_string(s: &FileStat) -> String {
    let t = match s.ftype {
        FileType::DIR => 'd',
        FileType::SLINK => 'l',
        FileType::FIFO => 'p',
        FileType::SOCK => 's',
        FileType::CSPEC => 'c',
        FileType::BSPEC => 'b',
        _ => '-',
    };
    let mut out = String::from(t);
    for shift in [6, 3, 0] {
        let bits = (s.fattr >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// `ndmpd dma changer`: one robot operation.
async fn changer_cli(
    server: &str,
    changer: &str,
    user: &str,
    password: &[u8],
    auth: AuthMethod,
    action: ChangerAction,
) -> Result<(), ChangerError> {
    let mut robot = Robot::open(server, user, password, auth, changer).await?;
    match action {
        ChangerAction::Status { json } => {
            let inv = robot.inventory().await?;
            if json {
                print_json(&inv).map_err(ChangerError::Reply)?;
            } else {
                out!("{inv}");
            }
        }
        ChangerAction::Move { from, to } => {
            robot.move_medium(from, to).await?;
            outln!("moved {from} -> {to}");
        }
        ChangerAction::Load { slot, tape } => {
            let to = robot.load(slot, &tape).await?;
            outln!("loaded {slot} -> {to} ({tape})");
        }
        ChangerAction::Unload { tape } => {
            let (from, to) = robot.unload(&tape).await?;
            outln!("unloaded {from} ({tape}) -> {to}");
        }
    }
    Ok(())
}

/// Draws "N <what>, R MB/s" on stderr when it is a terminal; returns whether it does.
fn progress_line(what: &'static str) -> (bool, impl FnMut(Progress)) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    (tty, move |p: Progress| {
        if tty {
            let rate = p.bytes as f64 / p.elapsed.as_secs_f64().max(0.001) / 1e6;
            eprint!(
                "\r{} {what}, {:.0} MB/s, {}s   ",
                human_bytes(p.bytes),
                rate,
                p.elapsed.as_secs()
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndmpd::wire::types::FsType;

    #[test]
    fn mode_string_like_ls() {
        let stat = |ftype, fattr| FileStat {
            unsupported: 0,
            fs_type: FsType::UNIX,
            ftype,
            mtime: 0,
            atime: 0,
            ctime: 0,
            owner: 0,
            group: 0,
            fattr,
            size: 0,
            links: 1,
        };
        assert_eq!(mode_string(&stat(FileType::DIR, 0o755)), "drwxr-xr-x");
        assert_eq!(mode_string(&stat(FileType::REG, 0o640)), "-rw-r-----");
        assert_eq!(mode_string(&stat(FileType::SLINK, 0o777)), "lrwxrwxrwx");
    }
}

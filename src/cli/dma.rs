//! `ndmpd dma`: the bundled DMA's subcommands (query, backup, restore, list, changer) run
//! with the client library and printed for an operator: summaries, progress, tables.

use super::args::{ChangerAction, DmaArgs, DmaCommand, ImageArgs, JobArgs, PasswordArgs};
use super::output::{out, outln, print_json};
use super::runtime;
use ndmpd::catalog::{self, Catalog, MediaPart, Status};
use ndmpd::client::backup::BackupJob;
use ndmpd::client::changer::{ChangerError, Robot};
use ndmpd::client::query::human_bytes;
use ndmpd::client::recorded::{recorded_backup, Recording};
use ndmpd::client::restore::{escape_name, list, parse_name, restore_report, Outcome, RestoreJob};
use ndmpd::client::{query_version, AuthMethod, ClientError, Progress};
use ndmpd::wire::types::{FileStat, FileType};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// Runs one `ndmpd dma` subcommand. Exit status 2 when no password was given or a name
/// cannot be read, 1 when the job fails or restores less than it was asked.
pub fn run(args: DmaArgs) -> ExitCode {
    let DmaArgs { conn, command } = args;
    let (server, user, auth) = (conn.server(), conn.user(), conn.auth());
    let version = conn.ndmp_version();
    if let DmaCommand::Backups { catalog, json } = command {
        return backups_cli(catalog, json);
    }
    let what = match &command {
        DmaCommand::Query { .. } => "query",
        DmaCommand::Changer { .. } => "changer",
        DmaCommand::Backup { .. } => "backup",
        DmaCommand::Restore { .. } => "restore",
        DmaCommand::List { .. } => "list",
        DmaCommand::Backups { .. } => "backups",
    };
    let Some(password) = dma_password(what, &conn.password(), auth) else {
        return ExitCode::from(2);
    };
    let tape_login = match conn.tape_login(&user, &password) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ndmpd dma {what}: --tape-password-file: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        DmaCommand::Query { json } => {
            runtime().block_on(query_cli(&server, &user, &password, auth, version, json))
        }
        DmaCommand::Backup {
            job,
            level,
            no_history,
            overwrite,
            label,
            env,
            path,
        } => {
            let catalog = job.catalog.clone();
            let job = BackupJob {
                server,
                tape_server: conn.tape_server,
                user,
                password,
                tape_login,
                auth,
                version,
                tape: job.tape.unwrap_or_else(|| DEFAULT_TAPE.into()),
                changer: job.changer,
                path,
                level,
                record_size: job.record_size.unwrap_or(DEFAULT_RECORD_SIZE),
                history: !no_history,
                butype: job.butype.unwrap_or_else(|| DEFAULT_BUTYPE.into()),
                overwrite,
                label,
                extra_env: env,
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
            let paths = match paths.iter().map(|p| arg_name(p)).collect() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("ndmpd dma restore: {e}");
                    return ExitCode::from(2);
                }
            };
            let login = Login {
                server,
                tape_server: conn.tape_server,
                user,
                password,
                tape_login,
                auth,
                version,
            };
            let job = match recover_job("restore", login, job, from, dest, paths, force) {
                Ok(j) => j,
                Err(code) => return code,
            };
            runtime().block_on(restore_cli(job))
        }
        DmaCommand::List { job, from } => {
            let login = Login {
                server,
                tape_server: conn.tape_server,
                user,
                password,
                tape_login,
                auth,
                version,
            };
            let job = match recover_job("list", login, job, from, String::new(), Vec::new(), false)
            {
                Ok(j) => j,
                Err(code) => return code,
            };
            runtime().block_on(list_cli(job))
        }
        DmaCommand::Backups { .. } => unreachable!("answered before the login"),
        DmaCommand::Changer { changer, action } => {
            let action = action.unwrap_or(ChangerAction::Status { json: false });
            match runtime().block_on(changer_cli(
                &server, &changer, &user, &password, auth, version, action,
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

/// A path named on the command line, in the form [`RestoreJob::paths`] takes: one that is
/// UTF-8 is read as `dma list` prints names (and checked here), raw bytes are escaped.
fn arg_name(arg: &OsStr) -> Result<String, String> {
    match arg.to_str() {
        Some(text) => parse_name(text).map(|_| text.to_string()),
        None => Ok(escape_name(arg.as_bytes())),
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
    version: u16,
    json: bool,
) -> ExitCode {
    let report = match query_version(server, user, password, auth, version).await {
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

/// Runs `backup` recorded in the catalog (with its file history), drawing progress on
/// stderr when it is a terminal, and prints a summary: where the image went and its backup id.
async fn backup_cli(job: BackupJob, catalog: Option<std::path::PathBuf>) -> ExitCode {
    let Some(mut cat) = open_catalog("backup", catalog) else {
        return ExitCode::FAILURE;
    };
    let (tty, bar) = progress_line("written");
    let never = tokio_util::sync::CancellationToken::new();
    let r = recorded_backup(&mut cat, &job, &Recording::default(), bar, &never).await;
    if tty {
        eprintln!();
    }
    let rec = match r {
        Ok(rec) => rec,
        Err(e) => {
            eprintln!("ndmpd dma backup: {e}");
            return ExitCode::FAILURE;
        }
    };
    let id = rec.id;
    let code = match &rec.result {
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
            if let Some((_, v)) = rep.env.iter().find(|(k, _)| k == "DUMP_DATE") {
                outln!("DUMP_DATE={v} (give it as BASE_DATE to a later incremental)");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("ndmpd dma backup: {f}");
            eprintln!(
                "backup id {id} recorded as {}, image incomplete ({} on {})",
                rec.status.as_str(),
                human_bytes(f.bytes),
                placement(&f.media, &job.tape)
            );
            ExitCode::FAILURE
        }
    };
    if let Some(e) = rec.catalog_error {
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

/// The servers and login of a `dma` job, from the connection flags.
struct Login {
    server: String,
    tape_server: Option<String>,
    user: String,
    password: Vec<u8>,
    tape_login: Option<(String, Vec<u8>)>,
    auth: AuthMethod,
    version: u16,
}

/// The job of `dma restore` and `dma list`, with what `--backup` takes from the catalog;
/// the exit status after a message (2: no password; 1: no such backup).
fn recover_job(
    what: &str,
    login: Login,
    job: JobArgs,
    from: ImageArgs,
    dest: String,
    paths: Vec<String>,
    force: bool,
) -> Result<RestoreJob, ExitCode> {
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
        server: login.server,
        tape_server: login.tape_server,
        user: login.user,
        password: login.password,
        tape_login: login.tape_login,
        auth: login.auth,
        version: login.version,
        tape: tape.unwrap_or_else(|| DEFAULT_TAPE.into()),
        dest,
        paths,
        // 0 and "": read off the tape (the catalog's, or the operator's, are checked there)
        record_size: record_size.unwrap_or(0),
        butype: butype.unwrap_or_default(),
        force,
        file: from.file,
        media,
        changer: job.changer,
    })
}

/// Runs `restore` and prints a summary, and on stderr every named path not restored with
/// why, and the entries kept because they exist; exit status 1 unless everything named (or
/// the whole image) was restored.
async fn restore_cli(job: RestoreJob) -> ExitCode {
    let (tty, bar) = progress_line("read");
    let r = restore_report(&job, bar).await;
    if tty {
        eprintln!();
    }
    let rep = match r {
        Ok(rep) => rep,
        Err(e) => {
            eprintln!("ndmpd dma restore: {}", client_error(&e));
            return ExitCode::FAILURE;
        }
    };
    for w in rep.warnings.iter().filter(|w| !said_elsewhere(w)) {
        eprintln!("warning: {w}");
    }
    for p in &rep.paths {
        let why = match &p.outcome {
            Outcome::Restored => continue,
            Outcome::Kept => {
                "kept because it exists, not replaced (--force replaces it)".to_string()
            }
            Outcome::NotInImage => "not in the image".to_string(),
            Outcome::Failed(why) => format!("not restored: {why}"),
            Outcome::Unreported => "not restored: the server did not report it".to_string(),
        };
        eprintln!("{}: {why}", p.path);
    }
    // entries kept inside a named directory, or anywhere in a whole image
    let named_kept = rep
        .paths
        .iter()
        .filter(|p| p.outcome == Outcome::Kept)
        .count();
    if rep.kept.len() > named_kept {
        eprintln!(
            "{} kept because they exist, not replaced (--force replaces them): {}",
            rep.kept.len(),
            rep.kept.join(", ")
        );
    }
    let mut summary = format!(
        "restore from {} into {}: {} read ({} image, {}-byte records) in {:.2} s",
        job.tape,
        job.dest,
        human_bytes(rep.bytes),
        rep.butype,
        rep.record_size,
        rep.seconds
    );
    if let Some(c) = rep.counts {
        summary += &format!(
            ", {} files and {} directories written, {} not restored",
            c.files, c.dirs, c.not_restored
        );
    }
    if !rep.paths.is_empty() {
        let done = rep
            .paths
            .iter()
            .filter(|p| p.outcome == Outcome::Restored)
            .count();
        summary += &format!(", {done} of {} named paths restored", rep.paths.len());
    }
    outln!("{summary}");
    match rep.problem() {
        None => ExitCode::SUCCESS,
        Some(p) => {
            eprintln!("ndmpd dma restore: incomplete: {p}");
            ExitCode::FAILURE
        }
    }
}

/// A server warning the restore summary says in its own words: a file kept, a named path
/// not in the image, the server's own count.
fn said_elsewhere(w: &str) -> bool {
    w.ends_with(": exists; not replaced (FORCE=Y replaces)")
        || w.ends_with(": not in the image")
        || w.starts_with("recover incomplete:")
}

/// The text of a job's error; the library's own findings (a record size or butype that
/// contradicts the tape, a bad name) without the "unexpected from the server" prefix.
fn client_error(e: &ClientError) -> String {
    match e {
        ClientError::Unexpected(text) => text.clone(),
        e => e.to_string(),
    }
}

/// Runs `list` and prints one line per name: type and mode, owner, size, mtime (UTC), path
/// (escaped as `restore` reads it back) and fh_info (what a later restore of that path can
/// seek to). A file with hard links has one line per name.
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
                "{} names in a {} image ({} read, {}-byte records) on {}",
                items.len(),
                rep.butype,
                human_bytes(rep.bytes),
                rep.record_size,
                job.tape
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ndmpd dma list: {}", client_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// `ls -l`-like type and permission letters, with setuid, setgid and sticky as `s`/`S`
/// and `t`/`T` in the execute places.
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
    // (shift of the rwx triple, its special bit, the letter for it)
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (s.fattr >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        out.push(match (s.fattr & special != 0, x) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
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
    version: u16,
    action: ChangerAction,
) -> Result<(), ChangerError> {
    let mut robot = Robot::open(server, user, password, auth, version, changer).await?;
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

/// Draws "N <what>, P%, R MB/s, Ts, ETA Es" on stderr when it is a terminal (the percentage
/// and ETA when the server estimates what is left); returns whether it does.
fn progress_line(what: &'static str) -> (bool, impl FnMut(Progress)) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    (tty, move |p: Progress| {
        if tty {
            eprint!("\r{}   ", progress_text(&p, what));
        }
    })
}

/// One progress line, without the carriage return.
fn progress_text(p: &Progress, what: &str) -> String {
    let rate = p.bytes as f64 / p.elapsed.as_secs_f64().max(0.001) / 1e6;
    let mut line = format!("{} {what}", human_bytes(p.bytes));
    if let Some(pct) = p.percent() {
        line += &format!(", {pct:.0}%");
    }
    line += &format!(", {rate:.0} MB/s, {}s", p.elapsed.as_secs());
    if let Some(eta) = p.est_time_remain {
        line += &format!(", ETA {}s", eta.as_secs());
    }
    line
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
        assert_eq!(mode_string(&stat(FileType::REG, 0o4755)), "-rwsr-xr-x");
        assert_eq!(mode_string(&stat(FileType::REG, 0o2644)), "-rw-r-Sr--");
        assert_eq!(mode_string(&stat(FileType::DIR, 0o1777)), "drwxrwxrwt");
        assert_eq!(mode_string(&stat(FileType::DIR, 0o1770)), "drwxrwx--T");
    }

    #[test]
    fn command_line_names_raw_or_escaped() {
        assert_eq!(arg_name(OsStr::new("/a b")).unwrap(), "/a b");
        assert_eq!(arg_name(OsStr::new("/n\\xff")).unwrap(), "/n\\xff");
        assert_eq!(
            arg_name(OsStr::from_bytes(b"/n\\\xff")).unwrap(),
            "/n\\\\\\xff"
        );
        assert!(arg_name(OsStr::new("/n\\q")).is_err());
    }

    #[test]
    fn progress_shows_percent_and_eta_only_when_estimated() {
        let mut p = Progress {
            bytes: 250 << 20,
            elapsed: std::time::Duration::from_secs(10),
            ..Progress::default()
        };
        let plain = progress_text(&p, "read");
        assert!(!plain.contains('%') && !plain.contains("ETA"), "{plain}");
        p.est_bytes_remain = Some(750 << 20);
        p.est_time_remain = Some(std::time::Duration::from_secs(30));
        let est = progress_text(&p, "read");
        assert!(
            est.contains(", 25%,") && est.ends_with(", 10s, ETA 30s"),
            "{est}"
        );
    }
}

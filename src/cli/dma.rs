//! `ndmpd dma`: the bundled DMA's subcommands (query, backup, restore, list, changer) run
//! with the client library, from the parsed flags to the exit status.

use super::args::{ChangerAction, DmaCommand, JobArgs, PasswordArgs};
use super::output::print_json;
use super::runtime;
use ndmpd::client::backup::{self, BackupJob};
use ndmpd::client::changer::{ChangerError, Robot};
use ndmpd::client::restore::{self, RestoreJob};
use ndmpd::client::{query, AuthMethod};
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
            runtime().block_on(query::run_query_cli(&server, &user, &password, auth, json))
        }
        DmaCommand::Backup {
            job,
            level,
            no_history,
            path,
        } => {
            let Some(password) = dma_password("backup", &job.password, job.auth) else {
                return ExitCode::from(2);
            };
            let job = BackupJob {
                server: job.server,
                tape_server: job.tape_server,
                user: job.user,
                password,
                auth: job.auth,
                tape: job.tape,
                path,
                level,
                record_size: job.record_size,
                history: !no_history,
                butype: job.butype,
            };
            runtime().block_on(backup::run_backup_cli(job))
        }
        DmaCommand::Restore {
            job,
            force,
            dest,
            paths,
        } => {
            let Some(job) = recover_job("restore", job, dest, paths, force) else {
                return ExitCode::from(2);
            };
            runtime().block_on(restore::run_restore_cli(job))
        }
        DmaCommand::List { job } => {
            let Some(job) = recover_job("list", job, String::new(), Vec::new(), false) else {
                return ExitCode::from(2);
            };
            runtime().block_on(restore::run_list_cli(job))
        }
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

/// The job of `dma restore` and `dma list`; None (after a message) without a password.
fn recover_job(
    what: &str,
    job: JobArgs,
    dest: String,
    paths: Vec<String>,
    force: bool,
) -> Option<RestoreJob> {
    let password = dma_password(what, &job.password, job.auth)?;
    Some(RestoreJob {
        server: job.server,
        tape_server: job.tape_server,
        user: job.user,
        password,
        auth: job.auth,
        tape: job.tape,
        dest,
        paths,
        record_size: job.record_size,
        butype: job.butype,
        force,
    })
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
                print!("{inv}");
            }
        }
        ChangerAction::Move { from, to } => {
            robot.move_medium(from, to).await?;
            println!("moved {from} -> {to}");
        }
        ChangerAction::Load { slot, tape } => {
            let to = robot.load(slot, &tape).await?;
            println!("loaded {slot} -> {to} ({tape})");
        }
        ChangerAction::Unload { tape } => {
            let (from, to) = robot.unload(&tape).await?;
            println!("unloaded {from} ({tape}) -> {to}");
        }
    }
    Ok(())
}

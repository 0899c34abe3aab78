//! `ndmpd serve`: the configuration the server runs with (file, flags, embedded defaults,
//! first-start password), then the server itself until a signal stops it.

use super::args::ServeArgs;
use super::output::outln;
use super::runtime;
use ndmpd::config::{self, Config, Credentials};
use std::path::PathBuf;
use std::process::ExitCode;

/// The config file (`--config`, else the default path when it exists, else the defaults)
/// with `--data-dir` applied, and whether it came from a file.
pub fn base_config(args: &ServeArgs) -> Result<(Config, bool), String> {
    let default_path = PathBuf::from(config::DEFAULT_CONFIG_PATH);
    let path = args
        .config
        .clone()
        .or_else(|| default_path.exists().then_some(default_path));
    let mut cfg = match &path {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok((cfg, path.is_some()))
}

/// Builds the effective configuration: file, then command-line overrides, then the embedded
/// defaults that make a fresh machine work. Returns it with the DMA logins.
fn effective_config(args: &ServeArgs) -> Result<(Config, Vec<Credentials>), String> {
    let (mut cfg, from_file) = base_config(args)?;
    if !args.listen.is_empty() {
        cfg.listen = args.listen.clone();
    }
    if let Some(r) = args.rest_listen {
        cfg.rest_listen = Some(r);
    }
    for e in &args.export {
        let abs =
            std::path::absolute(e).map_err(|err| format!("--export {}: {err}", e.display()))?;
        cfg.exports.push(config::Export::new(abs));
    }
    if !from_file {
        cfg.apply_embedded_defaults();
    }
    cfg.validate().map_err(|e| e.to_string())?;
    let mut users = config::load_credentials(&cfg).map_err(|e| e.to_string())?;
    if let Some(name) = &args.user {
        let password = args.password.read()?.ok_or_else(|| {
            format!("--user {name}: give the password with --password-file or NDMPD_PASSWORD")
        })?;
        users.retain(|u| &u.name != name);
        users.push(Credentials {
            name: name.clone(),
            password,
        });
    }
    if users.is_empty()
        && !cfg
            .auth
            .methods
            .iter()
            .all(|m| *m == config::AuthMethod::None)
    {
        let (password, created) =
            config::first_start_password(&cfg.data_dir).map_err(|e| e.to_string())?;
        let file = cfg.data_dir.join("password");
        if created {
            outln!(
                "ndmpd: first start. DMA login: user {}, password {} (kept in {}, mode 0600)",
                config::DEFAULT_USER,
                String::from_utf8_lossy(&password),
                file.display()
            );
        } else {
            outln!(
                "ndmpd: DMA login: user {}, password in {}",
                config::DEFAULT_USER,
                file.display()
            );
        }
        users.push(Credentials {
            name: config::DEFAULT_USER.into(),
            password,
        });
    }
    Ok((cfg, users))
}

/// Runs the server until SIGTERM or SIGINT: logging to stderr (filter from NDMPD_LOG),
/// the effective configuration, the listeners. Exit status 2 for a configuration error.
pub fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NDMPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (cfg, users) = match effective_config(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ndmpd: {e}");
            return ExitCode::from(2);
        }
    };
    for e in &cfg.exports {
        if !e.path.is_dir() {
            tracing::warn!("export {} is not a directory", e.path.display());
        }
    }
    if let Err(e) = ndmpd::snapshot::startup(&cfg) {
        eprintln!("ndmpd: {e}");
        return ExitCode::from(2);
    }
    runtime().block_on(async move {
        let server = match ndmpd::server::Server::bind(cfg, users).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                return ExitCode::FAILURE;
            }
        };
        // the handlers exist before the banner says the server is up: a SIGTERM sent as
        // soon as it is read must stop the server gracefully, not kill it
        let signals = signals();
        if let Some(a) = server.rest_addr() {
            outln!("ndmpd: REST view on http://{a}/api/protocols/ndmp/sessions");
        }
        for a in server.local_addrs() {
            outln!("ndmpd: NDMP v4 listening on {a}");
        }
        let token = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal(signals).await;
            tracing::info!("shutting down");
            token.cancel();
        });
        let ran = server.run().await;
        // backup threads still unwinding at the deadline do not keep their snapshots
        ndmpd::snapshot::release_all();
        match ran {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ndmpd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The SIGTERM and SIGINT handlers, installed now.
fn signals() -> Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => None,
    }
}

/// Returns at the first SIGTERM or SIGINT.
async fn wait_for_signal(
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
) {
    match signals {
        Some((mut term, mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        None => {
            // without signal handlers, Ctrl-C still ends the process the default way
            std::future::pending::<()>().await
        }
    }
}

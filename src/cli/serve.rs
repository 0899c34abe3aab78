//! `ndmpd serve`: the configuration the server runs with (file, flags, embedded defaults,
//! first-start password), then the server itself until a signal stops it.

use super::args::{LogFormat, ServeArgs};
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

/// The effective configuration, the DMA logins, and the banner's words about where the
/// configured logins' passwords come from.
type Effective = (Config, Vec<Credentials>, Vec<String>);

/// Builds the effective configuration: file, then command-line overrides, then the embedded
/// defaults that make a fresh machine work. Returns it with the DMA logins.
/// `announce`: print the first-start password (or where it is) on stdout; a reload does not.
fn effective_config(args: &ServeArgs, announce: bool) -> Result<Effective, String> {
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
    let mut logins = Vec::new();
    for u in &cfg.auth.users {
        if args.user.as_ref() == Some(&u.name) {
            continue;
        }
        logins.push(match (&u.password, &u.password_file) {
            (None, Some(f)) => {
                format!("DMA login: user {} (password from {})", u.name, f.display())
            }
            _ => format!("DMA login: user {} (password in the config)", u.name),
        });
    }
    if let Some(name) = &args.user {
        let password = args.password.read()?.ok_or_else(|| {
            format!("--user {name}: give the password with --password-file or NDMPD_PASSWORD")
        })?;
        logins.push(match &args.password.password_file {
            Some(f) => format!("DMA login: user {name} (password from {})", f.display()),
            None => format!("DMA login: user {name} (password from NDMPD_PASSWORD)"),
        });
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
        if announce && created {
            outln!(
                "ndmpd: first start. DMA login: user {}, password {} (kept in {}, mode 0600)",
                config::DEFAULT_USER,
                String::from_utf8_lossy(&password),
                file.display()
            );
        } else if announce {
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
    Ok((cfg, users, logins))
}

/// Runs the server until SIGTERM or SIGINT: logging to stderr (filter from NDMPD_LOG),
/// the effective configuration, the listeners. Exit status 2 for a configuration error.
pub fn serve(args: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NDMPD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // colour codes only for a person at a terminal: the journal and files get plain text
        LogFormat::Plain => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => log
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    let (cfg, users, logins) = match effective_config(&args, true) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ndmpd: {e}");
            return ExitCode::from(2);
        }
    };
    for w in cfg.start_warnings() {
        tracing::warn!("{w}");
        outln!("ndmpd: warning: {w}");
    }
    // the REST snapshot endpoints find operator snapshots in these exports
    ndmpd::snapshot::operator::set_exports(&cfg.exports);
    if let Err(e) = ndmpd::snapshot::startup(&cfg) {
        eprintln!("ndmpd: {e}");
        return ExitCode::from(2);
    }
    let exports = cfg.exports.clone();
    let sched_cfg = cfg.clone();
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
        banner(&exports, &logins, &server);
        if let Some(a) = server.rest_addr() {
            for line in server.rest_notes() {
                tracing::info!("{line}");
                outln!("ndmpd: {line}");
            }
            let scheme = server.rest_scheme();
            outln!("ndmpd: REST view on {scheme}://{a}/api/protocols/ndmp/sessions");
        }
        for a in server.local_addrs() {
            outln!("ndmpd: NDMP v4 listening on {a}");
        }
        match ndmpd::scheduler::Settings::from_config(&sched_cfg, &server.local_addrs()) {
            Ok(None) => {}
            Ok(Some(settings)) => {
                let catalog = settings.catalog.display().to_string();
                match ndmpd::scheduler::start(
                    &sched_cfg,
                    settings,
                    server.registry(),
                    server.shutdown_token(),
                ) {
                    Ok(h) => {
                        let _ = server.shared().scheduler.set(h);
                        outln!(
                            "ndmpd: scheduler on, {} schedule(s), catalog {catalog}",
                            sched_cfg.schedules.len()
                        );
                    }
                    Err(e) => {
                        eprintln!("ndmpd: scheduler: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            Err(e) => {
                eprintln!("ndmpd: scheduler: {e}");
                return ExitCode::from(2);
            }
        }
        let token = server.shutdown_token();
        let reloader = server.reloader();
        tokio::spawn(async move {
            wait_for_signal(signals, || reload(&args, &reloader)).await;
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

/// What the server offers, one line each on stdout and in the log: the configured logins
/// and their password files, the export roots, each drive with its cartridge or device, each
/// changer.
fn banner(exports: &[config::Export], logins: &[String], server: &ndmpd::server::Server) {
    let say = |line: String| {
        tracing::info!("{line}");
        outln!("ndmpd: {line}");
    };
    for l in logins {
        say(l.clone());
    }
    for e in exports {
        say(format!("export {}", e.path.display()));
    }
    if exports.is_empty() {
        say(format!("no export root: {}", config::HOW_TO_EXPORT));
    }
    let library = server.library();
    let loaded = library.loaded();
    for d in library.drives() {
        let what = match (d.kind, &d.path) {
            (config::DeviceKind::Device, Some(p)) => format!("device {}", p.display()),
            (config::DeviceKind::Device, None) => "device (no path)".to_string(),
            (config::DeviceKind::Virtual, Some(p)) => format!("cartridge file {}", p.display()),
            (config::DeviceKind::Virtual, None) => match loaded.get(&d.name) {
                Some(label) => match library.resolve(&d.name) {
                    Some(p) => format!("cartridge {label} ({})", p.display()),
                    None => format!("cartridge {label}"),
                },
                None => "empty (a changer loads it)".to_string(),
            },
        };
        say(format!("drive {} -> {what}", d.name));
    }
    for c in server.changers() {
        let what = match (c.kind, &c.path) {
            (config::DeviceKind::Device, Some(p)) => format!("device {}", p.display()),
            (config::DeviceKind::Device, None) => "device (no path)".to_string(),
            (config::DeviceKind::Virtual, _) => {
                let (slots, ports) = library.slot_counts();
                format!(
                    "virtual library ({slots} slots, {ports} import/export, cartridges in {})",
                    library.cartridge_dir().display()
                )
            }
        };
        say(format!("changer {} -> {what}", c.name));
    }
}

/// Reads the config file again (SIGHUP) and puts it in force; a config that would not start
/// the server is refused in the log, and the one in force stays.
fn reload(args: &ServeArgs, reloader: &ndmpd::server::Reloader) {
    use ndmpd::server::notify;
    tracing::info!("SIGHUP: reloading the configuration");
    notify::reloading();
    let (cfg, users, _) = match effective_config(args, false) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("reload refused: {e}; the configuration in force stays");
            notify::notify("READY=1\nSTATUS=reload refused: the configuration in force stays");
            return;
        }
    };
    for w in cfg.start_warnings() {
        tracing::warn!("{w}");
    }
    ndmpd::snapshot::operator::set_exports(&cfg.exports);
    let summary = format!(
        "configuration reloaded: {} login(s), exports [{}], drives [{}], changers [{}]",
        users.len(),
        cfg.exports
            .iter()
            .map(|e| e.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.tapes
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.changers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    for line in reloader.reload(cfg, users) {
        tracing::warn!("{line}");
    }
    tracing::info!("{summary}");
    notify::notify(&format!("READY=1\nSTATUS={}", reloader.status()));
}

/// The SIGTERM, SIGINT and SIGHUP handlers, installed now.
fn signals() -> Option<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Some(Signals { term, int, hup }),
        _ => None,
    }
}

/// The signals `serve` handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// Returns at the first SIGTERM or SIGINT; calls `on_hup` at each SIGHUP.
async fn wait_for_signal(signals: Option<Signals>, on_hup: impl Fn()) {
    match signals {
        Some(mut s) => loop {
            tokio::select! {
                _ = s.term.recv() => return,
                _ = s.int.recv() => return,
                _ = s.hup.recv() => on_hup(),
            }
        },
        None => {
            // without signal handlers, Ctrl-C still ends the process the default way
            std::future::pending::<()>().await
        }
    }
}
